"""The ``jaxdl`` command: ``report``, ``experiment NAME`` and ``list``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

from jaxdl.report import MAX_SEED  # imports jaxdl.report.config only (no JAX): a refused --out is instant


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is invalid; expected a positive integer")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; expected a finite number")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is invalid; expected a positive number")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is invalid; expected an integer in [0, {MAX_SEED}]")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Fills ``{choices}`` in a flag's help with the setting's valid values, looked up only when help is shown
    (the lists live beside JAX code; see :func:`jaxdl.report.config.choices`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        if "{choices}" in text:
            from jaxdl.report.config import choices

            text = text.replace("{choices}", ", ".join(choices()[action.dest]))
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxdl", description="Deep-learning theory of training, measured: curvature reports and experiments.",
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser(
        "report", help="train a network, analyse its curvature, write a report folder",
        formatter_class=_HelpFormatter,
        description="Train (with eq. 8.10 monitoring and checkpoints), analyse the Hessian of the trained network "
                    "and write OUT/ with results.json, figures (PNG and PDF) and index.html. Settings come from the "
                    "defaults, then --config FILE (TOML), then these flags.",
    )
    rep.add_argument("--out", default="reports/default", help="output folder (default: reports/default)")
    rep.add_argument("--config", metavar="FILE", help="TOML file with any of the settings (optionally in [report])")
    rep.add_argument("--model", help="model: {choices} (default mlp)")
    rep.add_argument("--hidden", help="hidden layer widths, comma-separated (default 32,32)")
    rep.add_argument("--activation", help="hidden activation: {choices} (default tanh)")
    rep.add_argument("--dataset", help="data set: {choices} (default digits)")
    rep.add_argument("--optimizer", help="optimizer: {choices} (default sgd)")
    rep.add_argument("--lr", dest="learning_rate", type=_positive_float, help="learning rate (default 0.5)")
    rep.add_argument("--momentum", type=_finite_float, help="momentum for --optimizer momentum (default 0.9)")
    rep.add_argument("--clip-norm", dest="clip_norm", type=_positive_float, help="clip gradients to this global norm")
    rep.add_argument("--steps", type=_positive_int, help="training steps (default 300)")
    rep.add_argument("--batch-size", dest="batch_size", type=_positive_int, help="minibatch size (default: full batch)")
    rep.add_argument("--monitor-every", dest="monitor_every", type=_positive_int,
                     help="record g^T g, g^T H g, eq. 8.10 and the top eigenvalue every N steps (default 5)")
    rep.add_argument("--eval-every", dest="eval_every", type=_positive_int, help="evaluation interval (default 10)")
    rep.add_argument("--checkpoint-every", dest="checkpoint_every", type=_positive_int,
                     help="checkpoint interval in steps (default 100)")
    rep.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    rep.add_argument("--width", type=_positive_int, help="resnet20: channels of the first stage (default 8); "
                     "transformer: model width (default 32)")
    rep.add_argument("--depth", type=_positive_int, help="resnet20: weight layers, 6n+2 (default 20); transformer: "
                     "encoder blocks (default 1)")
    rep.add_argument("--num-heads", dest="num_heads", type=_positive_int, help="transformer: attention heads "
                     "(default 4)")
    rep.add_argument("--image-size", dest="image_size", type=_positive_int, help="resnet20: side of the square "
                     "digit images (default 8)")
    rep.add_argument("--analysis-examples", dest="analysis_examples", type=_positive_int,
                     help="analyse the curvature on the first N training examples (default: resnet20 128, "
                          "transformer 512, mlp all)")
    rep.add_argument("--layer-matvecs", dest="layer_matvecs", type=_positive_int,
                     help="Lanczos steps of each per-layer Hessian block")
    rep.add_argument("--seed", type=_seed, help="PRNG seed (default 0)")
    rep.add_argument("--float64", action="store_true", default=None, help="run everything in float64")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.set_defaults(parser=rep)

    exp = sub.add_parser("experiment", help="run one registered experiment (see `jaxdl list`)",
                         formatter_class=_HelpFormatter)
    exp.add_argument("name", help="experiment name")
    exp.add_argument("--out", default=None, help="output folder (default: reports/<name>)")
    exp.add_argument("--seed", type=_seed, default=0, help="PRNG seed (default 0)")
    exp.add_argument("--quick", action="store_true", help="the small, seconds-long setting used by the tests")
    exp.set_defaults(parser=exp)

    sub.add_parser("list", help="list the registered experiments")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        from jaxdl.experiments import EXPERIMENTS

        width = max((len(n) for n in EXPERIMENTS), default=0)
        for name in sorted(EXPERIMENTS):
            print(f"{name:<{width}}  {EXPERIMENTS[name].summary}")
        return 0
    if args.command == "experiment":
        return _experiment(args.parser, args)
    return _report(args.parser, args)


REPORT_FLAGS = ("model", "hidden", "activation", "dataset", "optimizer", "learning_rate", "momentum", "clip_norm",
                "steps", "batch_size", "monitor_every", "eval_every", "checkpoint_every", "seed", "float64", "width",
                "depth", "num_heads", "image_size", "analysis_examples", "layer_matvecs")


def _report(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from jaxdl.report import OutputError, check_report_paths, load_config

    try:
        check_report_paths(args.out)  # first, before JAX is even imported: a refused folder costs nothing
        config = load_config(args.config, **{name: getattr(args, name) for name in REPORT_FLAGS})
        from jaxdl.report import check_report

        check_report(config, args.out, resume=args.resume)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    from jaxdl.report import ResumeError, run_report
    from jaxdl.train import TrainingDiverged

    try:
        out = run_report(config, args.out, progress=not args.quiet, resume=args.resume)
    except (ResumeError, OutputError, TrainingDiverged) as err:
        parser.error(str(err))
    print(f"report written to {out}/index.html")
    print(f"numbers in {out}/results.json; figures as PNG and PDF beside them")
    return 0


def _experiment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from jaxdl.report import OutputError, check_output_dir

    out = Path(args.out or f"reports/{args.name}")
    try:
        check_output_dir(out)  # before the experiment runs: a refused folder costs nothing
    except OutputError as err:
        parser.error(str(err))
    from jaxdl.experiments import EXPERIMENTS
    from jaxdl.report import write_experiment_report

    if args.name not in EXPERIMENTS:
        parser.error(f"unknown experiment {args.name!r}; choose from: {', '.join(sorted(EXPERIMENTS)) or '(none)'}")
    result = EXPERIMENTS[args.name].run(seed=args.seed, quick=args.quick)
    try:
        path = write_experiment_report(result, out, seed=args.seed, quick=args.quick)
    except OutputError as err:
        parser.error(str(err))
    print(f"{result.name}: claim {'supported' if result.passed else 'NOT supported'}. {result.verdict}")
    print(f"report written to {path}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
