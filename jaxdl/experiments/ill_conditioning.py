"""Ill-conditioning (Deep Learning book sec. 8.2.1, Figure 8.1 and eq. 8.10).

The book: during training the gradient norm often does not shrink while g^T H g grows by more than an order of
magnitude, and learning still succeeds (the error falls) although it becomes slow; a step -eps g raises the loss when
1/2 eps^2 g^T H g exceeds eps g^T g. Measured here on a deep, narrow tanh MLP (four hidden layers of 16, default
initialisation) trained on digits with minibatch SGD, with the exact non-null condition number of the full-batch
Hessian at checkpoints and eq. 8.10 checked against actual changes. The full run repeats the training for five seeds
and for one to four hidden layers: on digits the effect needs depth (a one- or two-hidden-layer network learns the
task while its gradient shrinks), which the depth sweep shows rather than hides.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import analysis
from analysis import plots
from analysis.monitor import CurvatureMonitor
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.problems import classification_problem, exact_hessian_float64
from jaxdl.train import fit, make_optimizer

CLAIM = ("Deep Learning sec. 8.2.1: the gradient norm does not shrink while g^T H g grows by over an order of "
         "magnitude and the error still falls; eq. 8.10 predicts when a step raises the loss.")
BOOK = ("grad_not_shrinking", "curvature_grows_10x", "error_falls_by_half")  # the three checks of _book_checks


def _probe_sweep(loss_fn, params, x, y, ratios):
    """Steps of size eps = r * 2 g^T g / g^T H g along -g: eq. 8.10's prediction, the actual change, and the next
    Taylor term eps^3 phi_3 / 6 of phi(e) = L(theta - e g), with phi_3 its exact third derivative at 0 by nested
    forward-mode derivatives. Where the prediction is smaller than that term, the second-order model cannot decide
    the sign of the change."""
    gc = analysis.gradient_curvature(loss_fn, params, x, y)
    eps = np.asarray(ratios) * 2 * float(gc.gTg) / float(gc.gTHg)

    def phi(e, p, g, *batch):
        return loss_fn(jax.tree_util.tree_map(lambda a, d: a - e * d, p, g), *batch)

    def derivative(f):
        return lambda e, *args: jax.jvp(lambda t: f(t, *args), (e,), (jnp.ones_like(e),))[1]

    args = (params, gc.grad, x, y)  # arguments of the compiled functions, never constants in them
    losses = jax.jit(jax.vmap(phi, in_axes=(0,) + (None,) * len(args)))(jnp.asarray(eps, gc.loss.dtype), *args)
    third = float(jax.jit(derivative(derivative(derivative(phi))))(jnp.zeros((), gc.loss.dtype), *args))
    actual = np.asarray(losses, np.float64) - float(gc.loss)
    predicted = np.array([float(gc.predicted_change(e)) for e in eps])
    return eps, predicted, actual, eps**3 * third / 6


def _window_medians(values: np.ndarray, width: int) -> np.ndarray:
    """Medians of consecutive windows of ``width`` values (the minibatch quantities are noisy)."""
    return np.array([np.median(values[i:i + width]) for i in range(0, len(values) - width + 1, width)])


def _as_steps(values: np.ndarray) -> np.ndarray:
    """The 5% window medians of :func:`_book_checks`, repeated over their windows (a step curve to plot)."""
    width = max(1, len(values) // 20)
    medians = np.repeat(_window_medians(values, width), width)
    return np.concatenate([medians, np.full(len(values) - len(medians), np.nan)])


def _book_checks(grad_norm: np.ndarray, gTHg: np.ndarray, err_start: float, err_end: float) -> dict:
    """The book's three claims on one run, on medians of windows of 5% of the monitored steps."""
    width = max(1, len(grad_norm) // 20)
    gn, ghg = _window_medians(grad_norm, width), _window_medians(gTHg, width)
    growth = float(np.max(ghg) / ghg[0]) if ghg[0] > 0 else float("inf")
    return {"grad_norm_first": float(gn[0]), "grad_norm_last": float(gn[-1]), "gTHg_first": float(ghg[0]),
            "gTHg_max": float(np.max(ghg)), "gTHg_growth": growth, "test_error_start": err_start,
            "test_error_end": err_end, "grad_not_shrinking": bool(gn[-1] >= 0.5 * gn[0]),
            "curvature_grows_10x": bool(growth >= 10), "error_falls_by_half": bool(err_end < 0.5 * err_start)}


def _train(hidden, seed, steps, every, lr, batch, *, lanczos_steps=0, checkpoints=0):
    """Train with the monitor; with ``checkpoints`` also the exact float64 condition number at that many points."""
    problem = classification_problem("digits", hidden, "tanh", seed, jnp.float32)
    ds, loss_fn, acc = problem.data, problem.loss_fn, problem.accuracy_fn
    eval_loss = jax.jit(loss_fn)
    opt = make_optimizer("sgd", lr)
    monitor = CurvatureMonitor(every=every, learning_rate=lr, lanczos_steps=lanczos_steps)
    evaluate = lambda p: {"test_error": 1 - float(acc(p, ds.x_test, ds.y_test)),  # noqa: E731
                          "train_loss": float(eval_loss(p, ds.x_train, ds.y_train))}
    segments = max(1, checkpoints)
    seg = steps // segments
    state, mstate, cond_steps, conds, parts = None, None, [], [], []
    for _ in range(segments):
        state, hist = fit(loss_fn, problem.params, opt, (ds.x_train, ds.y_train), steps=seg, batch_size=batch,
                          key=jax.random.PRNGKey(seed), monitor=monitor, evaluate=evaluate,
                          eval_every=max(1, steps // 20), state=state, monitor_state=mstate)
        parts.append(hist)
        mstate = hist.monitor_state
        if checkpoints:
            H = exact_hessian_float64(state.params, "digits", hidden, "tanh")
            cond_steps.append(int(state.step))
            conds.append(analysis.condition_number(np.linalg.eigvalsh(0.5 * (H + H.T))))
    rec = {k: np.concatenate([h.monitor[k] for h in parts]) for k in parts[0].monitor}
    out = {"problem": problem, "state": state, "mon_step": np.concatenate([h.monitor_step for h in parts]),
           "rec": rec, "ev_step": np.concatenate([h.evals["step"] for h in parts]),
           "test_error": np.concatenate([h.evals["test_error"] for h in parts]), "cond_steps": cond_steps,
           "conds": conds}
    out["checks"] = _book_checks(np.sqrt(rec["gTg"]), rec["gTHg"], float(out["test_error"][0]),
                                 float(out["test_error"][-1]))
    return out


def _holds(checks: dict) -> bool:
    """Whether the book's three claims hold on one run (a :func:`_book_checks` dict)."""
    return all(checks[k] for k in BOOK)


def _probe_outcome(probe: dict) -> tuple[np.ndarray, int]:
    """Actual changes of the probe steps whose prediction is positive and larger than the third-order Taylor term,
    and the number of smaller positive predictions (left undecided)."""
    predicted, actual, cubic = (np.asarray(probe[k]) for k in ("predicted", "actual", "third_order_term"))
    decided = predicted > np.abs(cubic)  # positive, and larger than the next Taylor term
    return actual[decided], int(np.sum((predicted > 0) & ~decided))


def measure(*, seed: int, quick: bool) -> dict:
    """Train with the curvature monitor and probe eq. 8.10 at the end; the full run adds other seeds and depths."""
    hidden = (16, 16, 16) if quick else (16, 16, 16, 16)
    steps, every, lr, batch = (600, 5, 0.05, 32) if quick else (1500, 10, 0.05, 32)
    main = _train(hidden, seed, steps, every, lr, batch, lanczos_steps=6, checkpoints=2 if quick else 4)
    problem, state, rec, checks = main["problem"], main["state"], main["rec"], main["checks"]
    ds, loss_fn = problem.data, problem.loss_fn

    eps, predicted, actual, cubic = _probe_sweep(loss_fn, state.params, ds.x_train, ds.y_train,
                                                 np.array([0.25, 0.5, 0.75, 0.9, 1.1, 1.5, 2.0, 3.0]))
    probe = {"eps": eps, "predicted": predicted, "actual": actual, "third_order_term": cubic}
    rises, _ = _probe_outcome(probe)

    # Robustness (full run only): the same training for other seeds, and for one to four hidden layers.
    seeds, depths = {}, {}
    if not quick:
        for s in range(seed + 1, seed + 5):
            seeds[s] = _train(hidden, s, steps, every, lr, batch)["checks"]
        for depth in (1, 2, 3):
            depths[depth] = [_train(hidden[:depth], s, steps, every, lr, batch)["checks"] for s in range(seed, seed + 3)]
        depths[len(hidden)] = [checks] + [seeds[s] for s in range(seed + 1, seed + 3)]
    return {
        "hidden": list(hidden), "steps": steps, "learning_rate": lr, "batch_size": batch, **checks,
        "condition_numbers": {s: c._asdict() for s, c in zip(main["cond_steps"], main["conds"])},
        "probe": probe, "other_seeds": seeds, "by_depth": depths,
        "checks": {**{k: checks[k] for k in BOOK},
                   "positive_prediction_means_rise": bool(rises.size > 0 and np.all(rises > 0))},
        # Plot data: the monitored minibatch quantities and the test error during training.
        "monitor": {"step": main["mon_step"], **{k: rec[k] for k in ("gTg", "gTHg", "predicted_change",
                                                                     "actual_change", "top_eigenvalue")}},
        "evaluations": {"step": main["ev_step"], "test_error": main["test_error"]},
    }


def verdict(m: dict) -> Verdict:
    """The book's three claims on the main run, and every decided probe step raising the loss."""
    seeds, depths = m["other_seeds"], m["by_depth"]  # the main run's checks are top-level keys of m
    rises, undecided = _probe_outcome(m["probe"])
    predicted, actual = np.asarray(m["probe"]["predicted"]), np.asarray(m["probe"]["actual"])
    sign_agree = float(np.mean(np.sign(predicted) == np.sign(actual)))
    prediction_holds = bool(rises.size > 0 and np.all(rises > 0))
    passed = bool(_holds(m) and prediction_holds)
    conds = [c["condition_number"] for c in m["condition_numbers"].values()]
    seed_line = ""
    if seeds:
        growths = [m["gTHg_growth"]] + [c["gTHg_growth"] for c in seeds.values()]
        seed_line = (f" Over {len(growths)} seeds the three claims hold in "
                     f"{sum(_holds(c) for c in [m, *seeds.values()])}; g^T H g growth "
                     f"{min(growths):.1f}x-{max(growths):.1f}x. By depth (hidden layers: seeds where all three hold, "
                     f"median growth): " + ", ".join(
                         f"{d}: {sum(_holds(c) for c in cs)}/{len(cs)}, "
                         f"{np.median([c['gTHg_growth'] for c in cs]):.1f}x" for d, cs in sorted(depths.items())) + ".")
    text = (
        f"Minibatch gradient norm {m['grad_norm_first']:.3g} (median of the first 5% of monitored steps) -> "
        f"{m['grad_norm_last']:.3g} (last 5%); g^T H g {m['gTHg_first']:.3g} -> max window median "
        f"{m['gTHg_max']:.3g} ({m['gTHg_growth']:.1f}x); test error {m['test_error_start']:.3f} -> "
        f"{m['test_error_end']:.3f}; non-null condition number {conds[0]:.3g} -> {conds[-1]:.3g}. Along -g at the "
        f"end, {int(np.sum(rises > 0))} of the {rises.size} probe steps whose eq. 8.10 prediction is positive and "
        f"larger than the third-order Taylor term raised the loss"
        f"{f' ({undecided} smaller positive prediction(s) left undecided)' if undecided else ''}; predicted and "
        f"actual signs agree for {sign_agree:.0%} of probes." + seed_line
    )
    return Verdict(passed, text)


def figures(m: dict) -> dict:
    """Book Fig. 8.1 from the monitor, test error, condition number, eq. 8.10 scatter, sharpness, depth sweep."""
    mon, evals, lr = m["monitor"], m["evaluations"], m["learning_rate"]
    mon_step, gTHg = np.asarray(mon["step"]), np.asarray(mon["gTHg"])
    grad_norm = np.sqrt(np.asarray(mon["gTg"]))
    positive = np.where(gTHg > 0, gTHg, np.nan)
    out = {
        "gradient_norm_and_curvature": (plots.curves_figure(
            mon_step, {"gradient norm ||g||": grad_norm, "g^T H g": positive,
                       "||g||, median of 5% windows": _as_steps(grad_norm),
                       "g^T H g, median of 5% windows": _as_steps(gTHg)},
            ylabel="value (log scale)", title="Book Fig. 8.1: gradient norm vs curvature along g", log=True),
            f"Minibatch ||g|| and g^T H g at monitored steps, with the medians of windows of 5% of them that the "
            f"checks use (log scale; {int(np.sum(gTHg <= 0))} steps with g^T H g <= 0, negative curvature along g, "
            f"are left out)."),
        "test_error": (plots.curves_figure(np.asarray(evals["step"]), {"test error": np.asarray(evals["test_error"])},
                                           ylabel="classification error (fraction)", title="The error still falls"),
                       "Test classification error during training."),
        "condition_number": (plots.curves_figure(
            np.array([int(s) for s in m["condition_numbers"]]),
            {"non-null condition number": np.array([c["condition_number"] for c in m["condition_numbers"].values()])},
            ylabel="max|lambda| / min|lambda| over |lambda| > tol (log)", title="Condition number of the Hessian",
            log=True),
            "Exact condition number of the non-null full-batch Hessian spectrum (float64) at checkpoints (null "
            "tolerance n eps max|lambda|)."),
        "predicted_vs_actual": (plots.predicted_vs_actual_figure(
            np.asarray(mon["predicted_change"]), np.asarray(mon["actual_change"]),
            probe=(np.asarray(m["probe"]["predicted"]), np.asarray(m["probe"]["actual"]))),
            "Eq. 8.10 predicted loss change vs the actual change, per monitored step (dots) and for probe steps of "
            "growing size at the end of training (crosses)."),
        "top_eigenvalue": (plots.curves_figure(
            mon_step, {"top Hessian eigenvalue (minibatch, warm Lanczos)": np.asarray(mon["top_eigenvalue"])},
            ylabel="lambda_max", title="Sharpness during training", hlines=[(2 / lr, "2 / eps (edge of stability)")]),
            "Top Hessian eigenvalue of the minibatch loss by 6 warm-started Lanczos steps."),
    }
    depths = m["by_depth"]
    if depths:
        ds_ = sorted(depths)
        out["growth_by_depth"] = (plots.curves_figure(
            np.array(ds_), {f"seed {i}": np.array([depths[d][i]["gTHg_growth"] for d in ds_]) for i in range(3)},
            ylabel="max / first window median of g^T H g (log)", title="Curvature growth needs depth", log=True,
            hlines=[(10.0, "10x (the book's order of magnitude)")], xlabel="hidden layers (width 16)"),
            "Growth of g^T H g over training against the number of hidden layers, three seeds each, same learning "
            "rate, batch and steps.")
    return out


EXPERIMENT = experiment(
    "ill-conditioning", summary="sec. 8.2.1: gradient norm stays, g^T H g grows, error falls; eq. 8.10 vs actual",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
