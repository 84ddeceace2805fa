"""Universal approximation (Deep Learning sec. 6.4.1): one hidden layer fits a continuous function on a compact set,
and the error falls as the layer widens.

Every width is trained in the same compiled program: networks of width ``w`` are the first ``w`` units of a
``[1, W_max, 1]`` :class:`jaxdl.models.MLP` with the output weights of the other units masked to zero (their
gradients are then exactly zero), vmapped over widths and seeds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import function_1d
from jaxdl.experiments._common import figure, loglog_slope
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import init_stack
from jaxdl.train import train_scan
from jaxdl.models import MLP, split
from jaxdl.models.mlp import ACTIVATIONS

CLAIM = ("Deep Learning sec. 6.4.1 (universal approximation, Hornik et al. 1989, Cybenko 1989): a network with one "
         "hidden layer approximates a continuous function on a compact set, with error falling as the width grows.")


def _masked(params, mask):
    """Zero the output weights of hidden units outside ``mask``: a narrower network inside a wide one."""

    def leaf(path, value):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        return value * mask[:, None] if keys[:3] == ["layers", 1, "kernel"] else value

    return jax.tree_util.tree_map_with_path(leaf, params)


def _spread_breakpoints(params, key):
    """Hidden biases ``b = -w u`` with ``u ~ U(-1, 1)``: each unit's transition ``x = -b / w`` falls inside the
    domain [-1, 1] instead of all at 0 (zero biases would make every unit start as the same function of ``x``)."""
    d = nnx.to_pure_dict(params)
    w = d["layers"][0]["kernel"][..., 0, :]
    d["layers"][0]["bias"] = -w * jax.random.uniform(key, w.shape, w.dtype, -1.0, 1.0)
    nnx.replace_by_pure_dict(params, d)
    return params


def van_der_corput(count: int) -> np.ndarray:
    """The first ``count`` points of the base-2 van der Corput sequence in [0, 1): nested, and the first ``2**j``
    points are an evenly spaced grid, so every prefix spreads its points over the interval."""
    points = np.zeros(count)
    for i in range(count):
        n, denom = i, 1.0
        while n:
            denom *= 2.0
            points[i] += (n & 1) / denom
            n >>= 1
    return points


def least_squares_widths(activation: str, widths, data, key: jax.Array, slope_scale: float = 6.0):
    """Test RMS error of the best output layer over a fixed hidden layer, for every width (float64).

    Unit ``j`` has its transition at the ``j``-th van der Corput point of [-1, 1] (the first ``w`` points spread
    evenly for every ``w``) and slope ``slope_scale`` times a standard normal draw; the output layer is the exact
    least-squares solution, a convex problem solved to machine precision. The networks are nested (width ``w``
    uses the first ``w`` units), so the training error cannot increase with width; a one-hidden-layer network
    with the best hidden layer does better still.
    """
    with jax.enable_x64(True):
        arrays = [jnp.asarray(a, jnp.float64) for a in (data.x_train, data.y_train, data.x_test, data.y_test)]
        masks = jnp.stack([(jnp.arange(max(widths)) < n).astype(jnp.float64) for n in widths])
        centres = jnp.asarray(2.0 * van_der_corput(max(widths)) - 1.0)
        errors = _least_squares(activation, masks, centres, key, slope_scale, *arrays)
        return [float(e) for e in errors]


@jax.jit(static_argnames=("activation",))
def _least_squares(activation, masks, centres, key, slope_scale, x_tr, y_tr, x_te, y_te):
    act = ACTIVATIONS[activation]
    w = slope_scale * jax.random.normal(key, (masks.shape[1],), x_tr.dtype)
    b = -w * centres

    def one(mask):
        # Masked columns are zero, so the minimum-norm solution gives them zero weight: the narrower network.
        def features(x):
            return jnp.concatenate([act(x * w + b) * mask, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)

        theta = jnp.linalg.lstsq(features(x_tr), y_tr)[0]
        return jnp.sqrt(jnp.mean((features(x_te) @ theta - y_te) ** 2))

    return jax.vmap(one)(masks)


def fit_widths(activation: str, widths, seeds: int, steps: int, data, seed: int = 0):
    """Train ``[1, w, 1]`` networks for every ``w`` in ``widths`` and ``seeds`` seeds in one compiled program.

    Returns ``(rms, max_abs, predictions)``: test-grid RMS and max errors of shape ``(len(widths), seeds)`` and the
    predictions ``(len(widths), seeds, num_test)``.
    """
    width_max = max(widths)
    apply, template = split(MLP([1, width_max, 1], activation=activation, rngs=nnx.Rngs(0)))
    params = init_stack(template, jax.random.PRNGKey(seed), len(widths) * seeds)
    params = jax.tree_util.tree_map(lambda a: a.reshape(len(widths), seeds, *a.shape[1:]), params)
    params = _spread_breakpoints(params, jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    masks = jnp.stack([(jnp.arange(width_max) < w).astype(jnp.float32) for w in widths])

    def loss_fn(p, mask, x, y):
        return jnp.mean((apply(_masked(p, mask), x) - y) ** 2)

    # Adam with a cosine decay: the wide networks need the late small steps to reach their lower error floor.
    optimizer = optax.adam(optax.cosine_decay_schedule(0.02, steps, alpha=0.01))

    def one(p, mask, x, y, x_test, y_test):
        p, _ = train_scan(loss_fn, optimizer, p, mask, x, y, steps=steps)
        pred = apply(_masked(p, mask), x_test)[:, 0]
        err = pred - y_test[:, 0]
        return jnp.sqrt(jnp.mean(err**2)), jnp.max(jnp.abs(err)), pred

    run = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None, None, None, None, None)),
                           in_axes=(0, 0, None, None, None, None)))
    return run(params, masks, data.x_train, data.y_train, data.x_test, data.y_test)


def measure(*, seed: int, quick: bool) -> dict:
    """Trained and least-squares errors of one hidden layer against its width, and the fits of a few widths."""
    widths, seeds, steps = ((1, 4, 32), 2, 2000) if quick else ((1, 2, 4, 8, 16, 32, 64, 128), 3, 3000)
    activations = ("tanh",) if quick else ("tanh", "relu")
    data = function_1d("wiggle", num_train=128 if quick else 512, num_test=513, seed=seed)
    scale = float(jnp.std(data.y_test))
    results, fits, checks = {}, {}, {}
    shown = sorted({0, len(widths) // 2, len(widths) - 1})  # the widths whose fits are drawn
    for act in activations:
        rms, mx, pred = fit_widths(act, widths, seeds, steps, data, seed)
        best = jnp.argmin(rms, axis=1)  # best of the seeds: the claim is about a width, training noise aside
        ls = least_squares_widths(act, widths, data, jax.random.fold_in(jax.random.PRNGKey(seed), 2))
        trained = np.asarray(jnp.min(rms, axis=1))
        results[act] = {
            "trained_rms_error_best": trained.tolist(),
            "trained_rms_error_median": np.asarray(jnp.median(rms, axis=1)).tolist(),
            "trained_max_error_best": np.asarray(mx[jnp.arange(len(widths)), best]).tolist(),
            "least_squares_rms_error": ls,
            "trained_loglog_slope": loglog_slope(widths, trained),
        }
        best_pred = np.asarray(pred[jnp.arange(len(widths)), best])
        fits[act] = {str(widths[i]): best_pred[i] for i in shown}
        ls = np.asarray(ls)
        # Steps count as falling until the error reaches float64 least-squares round-off (1e-6 of the target std).
        live = ls[:-1] > 1e-6 * scale
        checks[act] = {
            "trained_ratio_widest_to_narrowest": float(trained[-1] / trained[0]),
            "trained_best_width": int(widths[int(np.argmin(trained))]),
            "least_squares_ratio_widest_to_narrowest": float(ls[-1] / ls[0]),
            "least_squares_fraction_of_steps_reducing_error": float(np.mean((np.diff(ls) < 0)[live])),
        }
    return {"function": "sin(3 pi x) + 0.5 cos(7 x) on [-1, 1]", "widths": list(widths), "seeds": seeds,
            "steps": steps, "target_std": scale, "results": results, "checks": checks,
            "fits": {"x": np.asarray(data.x_test[:, 0]), "target": np.asarray(data.y_test[:, 0]),
                     "best_seed_predictions": fits}}


def verdict(m: dict) -> Verdict:
    """For every activation the widest network's error is under a tenth of the narrowest's (trained) and under a
    hundredth with a least-squares output layer, whose error falls with nearly every added width."""
    widths, seeds, results, checks = m["widths"], m["seeds"], m["results"], m["checks"]
    passed = all(c["trained_ratio_widest_to_narrowest"] < 0.1 and c["least_squares_ratio_widest_to_narrowest"] < 0.01
                 and c["least_squares_fraction_of_steps_reducing_error"] >= 0.8 for c in checks.values())
    text = f"Target std {m['target_std']:.2f}. " + " ".join(
        f"{act}: trained RMS error (best of {seeds} seeds) "
        + ", ".join(f"w={w}: {e:.1e}" for w, e in zip(widths, r["trained_rms_error_best"]))
        + f" (widest/narrowest {checks[act]['trained_ratio_widest_to_narrowest']:.1e}, lowest at "
        f"w={checks[act]['trained_best_width']}); least-squares output layer "
        + ", ".join(f"{e:.1e}" for e in r["least_squares_rms_error"])
        + f" (widest/narrowest {checks[act]['least_squares_ratio_widest_to_narrowest']:.1e})."
        for act, r in results.items())
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Test errors against width, log-log, and the target with trained fits of a few widths."""
    widths, results = m["widths"], m["results"]
    fig, (ax0, ax1) = figure(2)
    for i, (act, r) in enumerate(results.items()):
        ax0.loglog(widths, r["trained_rms_error_best"], "o-", color=f"C{i}", label=f"{act}: trained (Adam), RMS")
        ax0.loglog(widths, r["trained_max_error_best"], "s:", color=f"C{i}", alpha=0.6, label=f"{act}: trained, max")
        ax0.loglog(widths, np.maximum(r["least_squares_rms_error"], 1e-12), "^--", color=f"C{i}",
                   label=f"{act}: fixed hidden + least-squares output")
    ax0.set_xlabel("hidden units (log)")
    ax0.set_ylabel("test error on [-1, 1] (log)")
    ax0.set_title("one hidden layer: error vs width")
    ax0.legend(fontsize=7)
    act = next(iter(results))
    x = np.asarray(m["fits"]["x"])
    ax1.plot(x, np.asarray(m["fits"]["target"]), "k", lw=2.5, label="target")
    for width, pred in m["fits"]["best_seed_predictions"][act].items():
        ax1.plot(x, np.asarray(pred), lw=1.2, label=f"{act}, {width} units")
    ax1.set_xlabel("input x")
    ax1.set_ylabel("output f(x)")
    ax1.set_title("trained fits of increasing width")
    ax1.legend(fontsize=8)
    return {"universal_error_vs_width": (fig, "Left: test RMS and maximum error against hidden width, log-log; trained "
                                              "networks (Adam, full batch) and the exact least-squares output layer "
                                              "over a fixed hidden layer (float64), which shows what the width can "
                                              "represent below the optimizer's floor. Right: the target and trained "
                                              "fits.")}


EXPERIMENT = experiment(
    "universal-approximation",
    summary="sec. 6.4.1: one hidden layer fits a continuous 1-D function; error falls with width",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
