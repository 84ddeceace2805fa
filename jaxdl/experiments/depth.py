"""Depth (Deep Learning sec. 6.4.1): a deep ReLU network with few parameters represents a function that no shallow
network of equal or larger size can approximate (Telgarsky 2016; Montufar et al. 2014).

The function is the tent map composed ``k`` times, a sawtooth with ``2**(k-1)`` teeth. A ReLU network of ``k``
hidden layers of width 2 (``6k + 1`` parameters) computes it exactly, because ``tent(x) = 2 relu(x) - 4 relu(x - 1/2)``.
A one-hidden-layer ReLU network with ``m`` units is piecewise linear with at most ``m`` kinks, so at least
``2**(k-1) - m`` teeth contain no kink; on such a tooth the best line is the constant 1/2 (the tooth is symmetric)
with mean squared error 1/12. Hence, exactly, RMS error >= sqrt((1 - m / 2**(k-1)) / 12) for every shallow network
with m < 2**(k-1) units, whatever its training. The experiment measures the constructed deep network, trains
shallow networks of growing width and deep networks of the same depth, and plots error against parameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import tent_composition
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import init_stack
from jaxdl.train import train_scan
from jaxdl.models import MLP, split

CLAIM = ("Deep Learning sec. 6.4.1: some functions need exponentially many units in a shallow network but few in a "
         "deep one; a deep ReLU network with fewer parameters beats shallow ones of equal or larger size on the "
         "k-fold tent-map composition (Telgarsky 2016).")


def sawtooth_network(depth: int, dtype=jnp.float32):
    """``(apply, params)`` of an :class:`jaxdl.models.MLP` ``[1, 2, ..., 2, 1]`` (``depth`` hidden ReLU layers)
    computing ``sawtooth(x, depth)`` exactly on [0, 1]; ``6 * depth + 1`` parameters."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth={depth!r} is invalid; expected a positive integer.")
    apply, params = split(MLP([1] + [2] * depth + [1], activation="relu", rngs=nnx.Rngs(0), dtype=dtype))
    # Layer 0 computes relu([x, x - 1/2]); every later layer reads t = 2 h1 - 4 h2 (one tent) and does the same.
    layers = {0: {"kernel": jnp.array([[1.0, 1.0]], dtype), "bias": jnp.array([0.0, -0.5], dtype)}}
    for i in range(1, depth):
        layers[i] = {"kernel": jnp.array([[2.0, 2.0], [-4.0, -4.0]], dtype), "bias": jnp.array([0.0, -0.5], dtype)}
    layers[depth] = {"kernel": jnp.array([[2.0], [-4.0]], dtype), "bias": jnp.zeros((1,), dtype)}
    nnx.replace_by_pure_dict(params, {"layers": layers})
    return apply, params


def shallow_error_bound(units: int, depth: int) -> float:
    """Lower bound on the RMS error over [0, 1] of any one-hidden-layer ReLU network with ``units`` units against
    ``sawtooth(., depth)``: ``sqrt(max(0, 1 - units / 2**(depth-1)) / 12)`` (see the module docstring)."""
    teeth = 2 ** (depth - 1)
    return math.sqrt(max(0.0, 1.0 - units / teeth) / 12.0)


def shallow_least_squares(units: int, depth: int, x: jax.Array, y: jax.Array, x_test: jax.Array,
                          y_test: jax.Array) -> float:
    """Smallest test RMS error of a ``[1, units, 1]`` ReLU network whose kinks are placed by hand and whose output
    layer is the exact least-squares solution (float64). One unit is ``relu(x)`` (the linear part on [0, 1]); the
    other ``units - 1`` kinks are tried (a) evenly spaced in (0, 1), (b) at evenly chosen breakpoints of the
    sawtooth and (c) at its first ``units - 1`` breakpoints (fitting some teeth exactly and averaging the rest); the
    best is returned. This is an upper bound on the best error of that width, to compare with
    :func:`shallow_error_bound` (a lower bound) and with gradient training."""
    teeth = 2 ** (depth - 1)
    breakpoints = np.arange(1, 2 * teeth) / (2 * teeth)
    inner = units - 1
    choices = [np.arange(1, inner + 1) / (inner + 1)]
    if inner:
        choices.append(breakpoints[np.round(np.linspace(0, breakpoints.size - 1, min(inner, breakpoints.size)))
                                   .astype(int)])
        choices.append(breakpoints[: min(inner, breakpoints.size)])
    with jax.enable_x64(True):
        arrays = [jnp.asarray(a, jnp.float64) for a in (x, y, x_test, y_test)]
        # Every kink set padded to 2**depth entries with a mask, so one compiled solve serves all widths.
        width = 2**depth
        knots = np.zeros((len(choices), width))
        masks = np.zeros((len(choices), width))
        for i, kinks in enumerate(choices):
            used = np.concatenate([[0.0], kinks[:inner]])[:width]
            knots[i, : used.size], masks[i, : used.size] = used, 1.0
        errors = _masked_least_squares(jnp.asarray(knots), jnp.asarray(masks), *arrays)
        return float(jnp.min(errors))


@jax.jit
def _masked_least_squares(knots, masks, x, y, x_test, y_test):
    def one(knot, mask):
        def features(z):
            return jnp.concatenate([jax.nn.relu(z - knot) * mask, jnp.ones_like(z)], axis=1)

        theta = jnp.linalg.lstsq(features(x), y)[0]  # minimum-norm: masked columns get zero weight
        return jnp.sqrt(jnp.mean((features(x_test) @ theta - y_test) ** 2))

    return jax.vmap(one)(knots, masks)


def _spread_knots(params, key):
    """Biases that put every first-layer unit's kink at a uniform point of [0, 1] (zero biases would put all kinks
    at 0, where a ReLU of a non-negative input is linear on the whole domain)."""
    d = nnx.to_pure_dict(params)
    w = d["layers"][0]["kernel"][..., 0, :]
    d["layers"][0]["bias"] = -w * jax.random.uniform(key, w.shape, w.dtype)
    nnx.replace_by_pure_dict(params, d)
    return params


def train_family(sizes, data, seeds: int, steps: int, key: jax.Array, learning_rate: float = 1e-2):
    """Train ``seeds`` ReLU MLPs of shape ``sizes`` on ``data`` (MSE, Adam with cosine decay, full batch), vmapped.

    Returns ``(test_rms (seeds,), num_params)``."""
    apply, template = split(MLP(list(sizes), activation="relu", rngs=nnx.Rngs(0)))
    k_init, k_knots = jax.random.split(key)
    params = _spread_knots(init_stack(template, k_init, seeds), k_knots)
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))

    def loss_fn(p, x, y):
        return jnp.mean((apply(p, x) - y) ** 2)

    def one(p, x, y, x_test, y_test):
        p, _ = train_scan(loss_fn, optimizer, p, x, y, steps=steps)
        return jnp.sqrt(jnp.mean((apply(p, x_test) - y_test) ** 2))

    rms = jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))(
        params, data.x_train, data.y_train, data.x_test, data.y_test)
    return np.asarray(rms), sum(int(a.size) for a in jax.tree_util.tree_leaves(template))


def measure(*, seed: int, quick: bool) -> dict:
    """The constructed deep network, shallow networks (trained and least squares) and trained deep ones."""
    # k = 5 is the smallest depth with shallow rivals at least as large as the deep network (31 parameters) yet
    # below the 2**(k-1) = 16-unit threshold (m = 10..15 units, 31..46 parameters).
    k = 5
    seeds, steps = (2, 500) if quick else (4, 3000)
    shallow_widths = (12,) if quick else (2, 4, 8, 12, 15, 24, 31, 32, 64)
    deep_widths = () if quick else (2, 4, 8)
    data = tent_composition(k, num_train=1024, num_test=4097, seed=seed)
    key = jax.random.PRNGKey(seed)

    apply_c, params_c = sawtooth_network(k)
    constructed_rms = float(jnp.sqrt(jnp.mean((apply_c(params_c, data.x_test) - data.y_test) ** 2)))
    constructed_params = 6 * k + 1

    shallow = []
    for i, m in enumerate(shallow_widths):
        rms, count = train_family((1, m, 1), data, seeds, steps, jax.random.fold_in(key, i))
        ls = shallow_least_squares(m, k, data.x_train, data.y_train, data.x_test, data.y_test)
        shallow.append({"units": m, "params": count, "trained_best_rms": float(rms.min()),
                        "trained_median_rms": float(np.median(rms)), "least_squares_rms": ls,
                        "best_rms": min(ls, float(rms.min())), "lower_bound": shallow_error_bound(m, k)})
    deep = []
    for i, w in enumerate(deep_widths):
        rms, count = train_family((1,) + (w,) * k + (1,), data, seeds, steps, jax.random.fold_in(key, 100 + i))
        deep.append({"width": w, "depth": k, "params": count, "best_rms": float(rms.min()),
                     "median_rms": float(np.median(rms))})

    # Shallow networks at least as large as the constructed deep one but below the 2**(k-1)-unit threshold.
    teeth = 2 ** (k - 1)
    rivals = [s for s in shallow if s["params"] >= constructed_params and s["units"] < teeth]
    min_rival = min((s["best_rms"] for s in rivals), default=float("nan"))
    bound_holds = all(s["best_rms"] >= s["lower_bound"] * (1 - 1e-3) for s in shallow)
    # A trained deep network "wins" only with an error at least 10% below a trained shallow one of >= its size.
    trained_deep_wins = [d for d in deep if any(s["params"] >= d["params"]
                                                and d["best_rms"] < 0.9 * s["trained_best_rms"] for s in shallow)]
    bound_units = np.arange(1, teeth)
    # Every 8th test point: the grid still holds every breakpoint of the sawtooth (multiples of 1 / 2**k).
    curve = slice(None, None, 8)
    return {"depth_k": k, "teeth": teeth, "seeds": seeds, "steps": steps,
            "constructed": {"params": constructed_params, "rms": constructed_rms},
            "shallow": shallow, "deep_trained": deep, "shallow_rivals_min_rms": min_rival,
            "bound_holds": bound_holds, "trained_deep_beating_shallow": [d["width"] for d in trained_deep_wins],
            "shallow_bound_curve": {"params": 3 * bound_units + 1,
                                    "rms": [shallow_error_bound(int(m), k) for m in bound_units]},
            "sawtooth_curve": {"x": np.asarray(data.x_test[curve, 0]), "target": np.asarray(data.y_test[curve, 0]),
                               "constructed": np.asarray(apply_c(params_c, data.x_test[curve])[:, 0])}}


def verdict(m: dict) -> Verdict:
    """The construction is exact, shallow rivals of at least its size stay above 0.05, and the bound holds."""
    k, teeth, seeds, shallow, deep = m["depth_k"], m["teeth"], m["seeds"], m["shallow"], m["deep_trained"]
    constructed_params, constructed_rms = m["constructed"]["params"], m["constructed"]["rms"]
    min_rival, bound_holds = m["shallow_rivals_min_rms"], m["bound_holds"]
    rivals = [s for s in shallow if s["params"] >= constructed_params and s["units"] < teeth]
    wins = m["trained_deep_beating_shallow"]
    bounds = ", ".join(f"{s['lower_bound']:.3f}" for s in rivals)
    passed = bool(rivals) and constructed_rms < 1e-6 and min_rival > 0.05 and bound_holds
    text = (f"Target: {k}-fold tent map ({teeth} teeth). The constructed deep ReLU network ({k} layers of width 2, "
            f"{constructed_params} parameters) has test RMS error {constructed_rms:.1e}; shallow networks with "
            f"{', '.join(str(s['params']) for s in rivals)} parameters (>= {constructed_params}, < {teeth} units) "
            f"reach at best {min_rival:.3f} (best of hand-placed kinks with a least-squares output layer and "
            f"trained networks), and the exact piece-counting bound "
            f"{bounds} "
            f"{'holds for every shallow width' if bound_holds else 'is VIOLATED'}. "
            + (f"Trained deep networks (best of {seeds} seeds): "
               + ", ".join(f"width {d['width']} ({d['params']} params) {d['best_rms']:.3f}" for d in deep)
               + f"; {len(wins)} of {len(deep)} beat a trained shallow network of equal or larger "
               "size by 10% or more"
               + (" (gradient training from random initialisation did not find the construction)."
                  if not wins else ".") if deep else "Trained deep networks: not run in quick mode."))
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Test error against parameters (with the shallow lower bound), parameters needed against k, and the sawtooth."""
    k, shallow, deep = m["depth_k"], m["shallow"], m["deep_trained"]
    constructed_params, constructed_rms = m["constructed"]["params"], m["constructed"]["rms"]
    fig, (ax0, ax1) = figure(2)
    floor = 1e-8
    ps = [s["params"] for s in shallow]
    ax0.loglog(ps, [max(s["least_squares_rms"], floor) for s in shallow], "o-",
               label="shallow, hand-placed kinks + least squares (floor 1e-8)")
    ax0.loglog(ps, [s["trained_best_rms"] for s in shallow], "v--", label="shallow [1, m, 1], trained (best seed)")
    bound = m["shallow_bound_curve"]
    ax0.loglog(np.asarray(bound["params"]), [max(b, floor) for b in bound["rms"]], "k:",
               label="shallow lower bound (any training)")
    ax0.loglog([d["params"] for d in deep], [d["best_rms"] for d in deep], "s-", label=f"deep, {k} layers, trained")
    ax0.loglog([constructed_params], [max(constructed_rms, floor)], "r*", ms=14,
               label=f"deep, {k} layers of 2, constructed (error {constructed_rms:.0e}; floor 1e-8)")
    ax0.set_xlabel("parameters (log)")
    ax0.set_ylabel("test RMS error (log)")
    ax0.set_title(f"error vs size, {k}-fold tent map")
    ax0.legend(fontsize=7)
    kk = np.arange(1, 11)
    ax1.semilogy(kk, 6 * kk + 1, "o-", label="deep: exact with 6k + 1 parameters")
    ax1.semilogy(kk, 3 * 2.0 ** (kk - 1) + 1, "s-", label="shallow: needs >= 2^(k-1) units (3 per unit)")
    ax1.set_xlabel("composition depth k")
    ax1.set_ylabel("parameters for zero error (log)")
    ax1.set_title("linear vs exponential size")
    ax1.legend(fontsize=8)
    fig2, (ax,) = figure(1, width=6)
    curve = m["sawtooth_curve"]
    x = np.asarray(curve["x"])
    ax.plot(x, np.asarray(curve["target"]), "k", lw=3, label="sawtooth (target)")
    ax.plot(x, np.asarray(curve["constructed"]), "r--", lw=1.2, label="constructed deep network")
    ax.set_xlabel("input x")
    ax.set_ylabel("output")
    ax.set_title(f"tent map composed {k} times")
    ax.legend(fontsize=8)
    return {
        "depth_error_vs_params": (fig, "Left: test RMS error against parameters; the dotted line is the exact lower "
                                       "bound for every shallow network with fewer than 2^(k-1) units. Right: "
                                       "parameters needed for zero error grow linearly in k with depth, "
                                       "exponentially without."),
        "depth_sawtooth": (fig2, "The target and the output of the constructed deep network (they coincide)."),
    }


EXPERIMENT = experiment(
    "depth", summary="sec. 6.4.1: a deep ReLU net with fewer parameters beats any shallow one on tent-map compositions",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
