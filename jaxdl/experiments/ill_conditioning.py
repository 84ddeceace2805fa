"""Ill-conditioning (Deep Learning book sec. 8.2.1, Figure 8.1 and eq. 8.10).

The book: during training the gradient norm often does not shrink while g^T H g grows by more than an order of
magnitude, and learning still succeeds (the error falls) although it becomes slow; a step -eps g raises the loss when
1/2 eps^2 g^T H g exceeds eps g^T g. Measured here on an MLP trained on digits with minibatch SGD, with the exact
non-null condition number of the full-batch Hessian at checkpoints and eq. 8.10 checked against actual changes.
"""

from __future__ import annotations

import jax
import numpy as np

import analysis
from analysis import plots
from analysis.monitor import CurvatureMonitor
from jaxdl.config import ReportConfig
from jaxdl.experiments._registry import ExperimentResult, register
from jaxdl.problem import build_problem, exact_hessian_float64
from jaxdl.train import fit, make_optimizer


def _probe_sweep(loss_fn, params, x, y, ratios):
    """Steps of size eps = r * 2 g^T g / g^T H g along -g: eq. 8.10 prediction vs the actual change."""
    gc = analysis.gradient_curvature(loss_fn, params, x, y)
    eps = np.asarray(ratios) * 2 * float(gc.gTg) / float(gc.gTHg)
    step = jax.jit(lambda p, e: loss_fn(jax.tree_util.tree_map(lambda a, g: a - e * g, p, gc.grad), x, y))
    actual = np.array([float(step(params, e)) - float(gc.loss) for e in eps])
    predicted = np.array([float(gc.predicted_change(e)) for e in eps])
    return eps, predicted, actual


@register("ill-conditioning", "sec. 8.2.1: gradient norm stays, g^T H g grows, error falls; eq. 8.10 vs actual")
def run(*, seed: int = 0, quick: bool = False) -> ExperimentResult:
    hidden = (16,) if quick else (32, 32)
    steps, every, lr, batch = (300, 5, 0.05, 32) if quick else (3000, 10, 0.02, 32)
    checkpoints = 2 if quick else 4
    config = ReportConfig(hidden=hidden, seed=seed)
    problem = build_problem(config)
    ds, params, loss_fn, acc = problem.data, problem.params, problem.loss_fn, problem.accuracy_fn
    eval_loss = jax.jit(loss_fn)
    opt = make_optimizer("sgd", lr)
    monitor = CurvatureMonitor(every=every, learning_rate=lr, lanczos_steps=6)
    key = jax.random.PRNGKey(seed)

    # Train in segments so that the exact spectrum can be taken at checkpoints.
    seg = steps // checkpoints
    state, mstate, cond_steps, conds, hist_parts = None, None, [], [], []
    evaluate = lambda p: {"test_error": 1 - float(acc(p, ds.x_test, ds.y_test)),  # noqa: E731
                          "train_loss": float(eval_loss(p, ds.x_train, ds.y_train))}
    for c in range(checkpoints):
        state, hist = fit(loss_fn, params, opt, (ds.x_train, ds.y_train), steps=seg, batch_size=batch, key=key,
                          monitor=monitor, evaluate=evaluate, eval_every=max(1, seg // 5), state=state,
                          monitor_state=mstate)
        hist_parts.append(hist)
        mstate = hist.monitor_state
        H = exact_hessian_float64(config, state.params)
        spectrum = np.linalg.eigvalsh(0.5 * (H + H.T))
        cond_steps.append(int(state.step))
        conds.append(analysis.condition_number(spectrum))

    mon_step = np.concatenate([h.monitor_step for h in hist_parts])
    rec = {k: np.concatenate([h.monitor[k] for h in hist_parts]) for k in hist_parts[0].monitor}
    ev_step = np.concatenate([h.evals["step"] for h in hist_parts])
    test_err = np.concatenate([h.evals["test_error"] for h in hist_parts])
    grad_norm = np.sqrt(rec["gTg"])

    tenth = max(1, len(mon_step) // 10)
    gn_early, gn_late = np.median(grad_norm[:tenth]), np.median(grad_norm[-tenth:])
    ghg_early, ghg_late = np.median(rec["gTHg"][:tenth]), np.max(rec["gTHg"])
    err_start, err_end = float(test_err[0]), float(test_err[-1])
    eps, predicted, actual = _probe_sweep(loss_fn, state.params, ds.x_train, ds.y_train,
                                          np.array([0.25, 0.5, 0.75, 0.9, 1.1, 1.5, 2.0, 3.0]))
    sign_agree = float(np.mean(np.sign(predicted) == np.sign(actual)))
    rises = actual[predicted > 0]

    grad_not_shrinking = gn_late >= 0.5 * gn_early
    curvature_grows = ghg_late >= 10 * ghg_early
    error_falls = err_end < 0.5 * err_start
    prediction_holds = bool(rises.size > 0 and np.all(rises > 0))
    passed = bool(grad_not_shrinking and curvature_grows and error_falls and prediction_holds)
    verdict = (
        f"Minibatch gradient norm {gn_early:.3g} (first 10% of monitored steps, median) -> {gn_late:.3g} (last 10%); "
        f"g^T H g {ghg_early:.3g} -> max {ghg_late:.3g} ({ghg_late / ghg_early:.1f}x); test error {err_start:.3f} -> "
        f"{err_end:.3f}; non-null condition number {conds[0].condition_number:.3g} -> {conds[-1].condition_number:.3g}. "
        f"Along -g at the end, all {rises.size} steps with a positive eq. 8.10 prediction raised the loss"
        f"{'' if prediction_holds else ' (NOT all)'}; predicted and actual signs agree for {sign_agree:.0%} of probes."
    )

    figures = {
        "gradient_norm_and_curvature": plots.curves_figure(
            mon_step, {"gradient norm ||g||": grad_norm, "g^T H g": rec["gTHg"], "g^T g": rec["gTg"]},
            ylabel="value (log scale)", title="Book Fig. 8.1: gradient norm vs curvature along g", log=True),
        "test_error": plots.curves_figure(ev_step, {"test error": test_err}, ylabel="classification error (fraction)",
                                          title="The error still falls"),
        "condition_number": plots.curves_figure(
            np.array(cond_steps), {"non-null condition number": np.array([c.condition_number for c in conds])},
            ylabel="max|lambda| / min|lambda| over |lambda| > tol (log)", title="Condition number of the Hessian",
            log=True),
        "predicted_vs_actual": plots.predicted_vs_actual_figure(
            rec["predicted_change"], rec["actual_change"], probe=(predicted, actual)),
        "top_eigenvalue": plots.curves_figure(
            mon_step, {"top Hessian eigenvalue (minibatch, warm Lanczos)": rec["top_eigenvalue"]},
            ylabel="lambda_max", title="Sharpness during training", hlines=[(2 / lr, "2 / eps (edge of stability)")]),
    }
    captions = {
        "gradient_norm_and_curvature": "Minibatch ||g||, g^T g and g^T H g at monitored steps (log scale).",
        "test_error": "Test classification error during training.",
        "condition_number": "Exact condition number of the non-null full-batch Hessian spectrum (float64) at "
                            "checkpoints (null tolerance n eps max|lambda|).",
        "predicted_vs_actual": "Eq. 8.10 predicted loss change vs the actual change, per monitored step (dots) and "
                               "for probe steps of growing size at the end of training (crosses).",
        "top_eigenvalue": "Top Hessian eigenvalue of the minibatch loss by 6 warm-started Lanczos steps.",
    }
    metrics = {
        "hidden": list(hidden), "steps": steps, "learning_rate": lr, "batch_size": batch,
        "grad_norm_early": gn_early, "grad_norm_late": gn_late, "gTHg_early": ghg_early, "gTHg_max": ghg_late,
        "test_error_start": err_start, "test_error_end": err_end,
        "condition_numbers": {s: c._asdict() for s, c in zip(cond_steps, conds)},
        "probe": {"eps": eps, "predicted": predicted, "actual": actual},
        "checks": {"grad_not_shrinking": bool(grad_not_shrinking), "curvature_grows_10x": bool(curvature_grows),
                   "error_falls_by_half": bool(error_falls), "positive_prediction_means_rise": prediction_holds},
    }
    return ExperimentResult("ill-conditioning", "Deep Learning sec. 8.2.1: the gradient norm does not shrink while "
                            "g^T H g grows by over an order of magnitude and the error still falls; eq. 8.10 predicts "
                            "when a step raises the loss.", passed, verdict, metrics, figures, captions)
