"""The main job: train the default network, analyse its curvature, plot, and write ``reports/<name>/``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

import analysis
from analysis import plots
from jaxdl import data as data_lib
from jaxdl.models import MLP, split
from jaxdl.output import environment, write_report
from jaxdl.train import accuracy, init_state, make_optimizer, make_train_step, softmax_cross_entropy


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Settings of ``jaxdl report``; the defaults are the built-in default job (digits MLP 64-32-32-10, tanh)."""

    hidden: tuple[int, ...] = (32, 32)
    activation: str = "tanh"
    optimizer: str = "sgd"
    learning_rate: float = 0.5
    steps: int = 300
    eval_every: int = 10
    seed: int = 0
    float64: bool = False
    k: int = 5
    lanczos_matvecs: int = 120
    trace_matvecs: int = 90
    slq_matvecs: int = 90
    slq_probes: int = 8
    dense_limit: int = 12000

    def validate(self) -> "ReportConfig":
        for name in ("steps", "eval_every", "k", "lanczos_matvecs", "trace_matvecs", "slq_matvecs", "slq_probes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid; expected a positive integer.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} is invalid; expected a positive number.")
        if any((not isinstance(h, int)) or h <= 0 for h in self.hidden):
            raise ValueError(f"hidden={self.hidden} is invalid; expected positive layer widths.")
        return self


def run_report(config: ReportConfig, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Train, analyse and write the report; returns the report folder."""
    config.validate()
    if config.float64:
        with jax.enable_x64(True):
            return _run(config, Path(out_dir), progress)
    return _run(config, Path(out_dir), progress)


def _run(config: ReportConfig, out_dir: Path, progress: bool) -> Path:
    t_start = time.perf_counter()
    dtype = jnp.float64 if config.float64 else jnp.float32
    ds = data_lib.digits(dtype=dtype)
    model = MLP([ds.num_features, *config.hidden, ds.num_classes], activation=config.activation,
                rngs=nnx.Rngs(config.seed), dtype=dtype)
    apply, params = split(model)
    loss_fn = softmax_cross_entropy(apply)
    acc_fn = accuracy(apply)
    eval_loss = jax.jit(loss_fn)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    train_step = make_train_step(loss_fn, optimizer)
    state = init_state(params, optimizer)

    history: dict[str, list[float]] = {k: [] for k in ("step", "train_loss", "test_loss", "train_acc", "test_acc")}

    def record(step: int, p) -> None:
        history["step"].append(step)
        history["train_loss"].append(float(eval_loss(p, ds.x_train, ds.y_train)))
        history["test_loss"].append(float(eval_loss(p, ds.x_test, ds.y_test)))
        history["train_acc"].append(float(acc_fn(p, ds.x_train, ds.y_train)))
        history["test_acc"].append(float(acc_fn(p, ds.x_test, ds.y_test)))

    record(0, state.params)
    for step in tqdm(range(1, config.steps + 1), desc="training", disable=not progress):
        state, _ = train_step(state, ds.x_train, ds.y_train)
        if step % config.eval_every == 0 or step == config.steps:
            record(step, state.params)
    t_train = time.perf_counter() - t_start

    params = state.params
    batch = (ds.x_train, ds.y_train)
    key = jax.random.PRNGKey(config.seed)
    k_eig, k_trace, k_slq = jax.random.split(key, 3)
    n = analysis.num_params(params)
    bar = tqdm(total=5, desc="curvature analysis", disable=not progress)
    gc = analysis.gradient_curvature(loss_fn, params, *batch)
    bar.update()
    eigs = analysis.hessian_eigs(loss_fn, params, *batch, k=config.k, which="both",
                                 num_matvecs=min(n, config.lanczos_matvecs), key=k_eig)
    bar.update()
    trace = analysis.hessian_trace(loss_fn, params, *batch, num_matvecs=config.trace_matvecs, key=k_trace)
    bar.update()
    slq = analysis.spectral_density(loss_fn, params, *batch, num_matvecs=min(n, config.slq_matvecs),
                                    num_probes=config.slq_probes, key=k_slq)
    bar.update()
    exact: Optional[np.ndarray] = None
    results_exact: dict[str, Any] = {"computed": False, "reason": f"n={n} exceeds dense_limit={config.dense_limit}"}
    if n <= config.dense_limit:
        exact = np.asarray(analysis.hessian_spectrum(loss_fn, params, *batch))
        cond = analysis.condition_number(exact)
        results_exact = {
            "computed": True,
            "condition": cond._asdict(),
            "trace": float(exact.sum()),
            "top_k": exact[-config.k:],
            "bottom_k": exact[: config.k],
            "slq_wasserstein1": float(slq.wasserstein1(exact)),
        }
    bar.update()
    bar.close()
    t_analysis = time.perf_counter() - t_start - t_train

    lo = float(min(slq.nodes.min(), eigs.eigenvalues.min()))
    hi = float(max(slq.nodes.max(), eigs.eigenvalues.max()))
    pad = 0.05 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, 800)
    sigma = (hi - lo) / 200
    density = np.asarray(slq.density(grid, sigma))

    figures = {
        "training": plots.curves_figure(
            np.array(history["step"]),
            {"train loss": history["train_loss"], "test loss": history["test_loss"]},
            ylabel="softmax cross-entropy (nats)", title="Loss during training", log=True),
        "accuracy": plots.curves_figure(
            np.array(history["step"]),
            {"train accuracy": history["train_acc"], "test accuracy": history["test_acc"]},
            ylabel="accuracy (fraction correct)", title="Accuracy during training"),
        "spectral_density": plots.spectral_density_figure(grid, density, exact_eigenvalues=exact, sigma=sigma),
        "extreme_eigenvalues": plots.eigenvalues_figure(np.asarray(eigs.eigenvalues), np.asarray(eigs.residuals)),
    }
    captions = {
        "training": "Training and test loss of the MLP on scikit-learn digits (full-batch training).",
        "accuracy": "Training and test accuracy.",
        "spectral_density": "Hessian spectral density at the end of training by stochastic Lanczos quadrature "
                            "(log scale), over the histogram of the exact spectrum where n allows a dense Hessian.",
        "extreme_eigenvalues": f"The {config.k} most negative and {config.k} largest Hessian eigenvalues by Lanczos; "
                               "error bars are residual norms ||Hv - lambda v||.",
    }
    results = {
        "config": dataclasses.asdict(config),
        "environment": environment(),
        "model": {"sizes": [ds.num_features, *config.hidden, ds.num_classes], "num_params": n},
        "history": history,
        "final": {
            "train_loss": history["train_loss"][-1], "test_loss": history["test_loss"][-1],
            "train_acc": history["train_acc"][-1], "test_acc": history["test_acc"][-1],
            "gTg": float(gc.gTg), "gTHg": float(gc.gTHg),
            "predicted_change_at_lr": float(gc.predicted_change(config.learning_rate)),
        },
        "lanczos": {"eigenvalues": eigs.eigenvalues, "residuals": eigs.residuals, "num_matvecs": eigs.num_matvecs},
        "trace": {"estimate": float(trace.estimate), "standard_error": float(trace.standard_error),
                  "method": trace.method, "num_matvecs": trace.num_matvecs},
        "slq": {"num_matvecs": int(slq.nodes.shape[1]), "num_probes": int(slq.nodes.shape[0])},
        "exact": results_exact,
        "timing_s": {"training": t_train, "analysis": t_analysis},
    }
    summary = _summary_html(results)
    return write_report(out_dir, title="jaxdl curvature report: digits MLP", results=results, figures=figures,
                        captions=captions, summary_html=summary)


def _summary_html(r: dict[str, Any]) -> str:
    rows = [
        ("parameters", f"{r['model']['num_params']}"),
        ("final train / test loss", f"{r['final']['train_loss']:.4f} / {r['final']['test_loss']:.4f}"),
        ("final train / test accuracy", f"{r['final']['train_acc']:.3f} / {r['final']['test_acc']:.3f}"),
        ("g<sup>T</sup>g, g<sup>T</sup>Hg", f"{r['final']['gTg']:.4g}, {r['final']['gTHg']:.4g}"),
        ("trace (Hutch++)", f"{r['trace']['estimate']:.4g} &plusmn; {r['trace']['standard_error']:.2g}"),
        ("Lanczos eigenvalues", ", ".join(f"{float(v):.4g}" for v in np.asarray(r["lanczos"]["eigenvalues"]))),
    ]
    ex = r["exact"]
    if ex["computed"]:
        c = ex["condition"]
        rows += [
            ("exact trace", f"{ex['trace']:.4g}"),
            ("condition number (non-null)", f"{c['condition_number']:.4g} (null tolerance {c['null_tolerance']:.2g})"),
            ("negative / near-zero / positive", f"{c['num_negative']} / {c['num_near_zero']} / {c['num_positive']}"),
            ("SLQ Wasserstein-1 to exact", f"{ex['slq_wasserstein1']:.3g}"),
        ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"
