"""The ``jaxdl`` command: ``report``, ``experiment NAME`` and ``list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is invalid; expected a positive integer")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is invalid; expected a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxdl", description="Deep-learning theory of training, measured: curvature reports and experiments."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("report", help="train the default network, analyse its curvature, write a report folder")
    rep.add_argument("--out", default="reports/default", help="output folder (default: reports/default)")
    rep.add_argument("--steps", type=_positive_int, default=None, help="training steps (default 300)")
    rep.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default 0.5)")
    rep.add_argument("--seed", type=int, default=None, help="PRNG seed (default 0)")
    rep.add_argument("--float64", action="store_true", help="run everything in float64")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")

    exp = sub.add_parser("experiment", help="run one registered experiment (see `jaxdl list`)")
    exp.add_argument("name", help="experiment name")
    exp.add_argument("--out", default=None, help="output folder (default: reports/<name>)")
    exp.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    exp.add_argument("--quick", action="store_true", help="the small, seconds-long setting used by the tests")

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
        return _experiment(parser, args)
    return _report(parser, args)


def _report(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import dataclasses

    from jaxdl.report import ReportConfig, run_report

    overrides = {"steps": args.steps, "learning_rate": args.lr, "seed": args.seed}
    config = dataclasses.replace(ReportConfig(), **{k: v for k, v in overrides.items() if v is not None},
                                 float64=args.float64)
    try:
        config.validate()
    except ValueError as err:
        parser.error(str(err))
    out = run_report(config, args.out, progress=not args.quiet)
    print(f"report written to {out}/index.html")
    return 0


def _experiment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from jaxdl.experiments import EXPERIMENTS
    from jaxdl.output import environment, write_report
    import html

    if args.name not in EXPERIMENTS:
        parser.error(f"unknown experiment {args.name!r}; choose from: {', '.join(sorted(EXPERIMENTS)) or '(none)'}")
    result = EXPERIMENTS[args.name].run(seed=args.seed, quick=args.quick)
    out = Path(args.out or f"reports/{args.name}")
    status = "supported" if result.passed else "NOT supported"
    summary = f"<p><b>Claim:</b> {html.escape(result.claim)}</p><p><b>Verdict ({status}):</b> {html.escape(result.verdict)}</p>"
    record = {"name": result.name, "claim": result.claim, "passed": result.passed, "verdict": result.verdict,
              "seed": args.seed, "quick": args.quick, "metrics": result.metrics, "environment": environment()}
    path = write_report(out, title=f"jaxdl experiment: {result.name}", results=record, figures=result.figures,
                        captions=result.captions, summary_html=summary)
    print(f"{result.name}: claim {status}. {result.verdict}")
    print(f"report written to {path}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
