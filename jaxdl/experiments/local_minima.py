"""Local minima of higher cost than the global one (Deep Learning sec. 8.2.2).

Two constructions, each verified by the gradient (about 0), the exact Hessian (positive semidefinite) and a point of
lower loss elsewhere:

1. **No hidden units.** One sigmoid unit ``sigma(w x + b)`` with squared error on four points (Sontag & Sussmann
   1989 and Brady, Raghavan & Slawny 1989 showed that such units have local minima). The local minimum fits the two
   points with ``x < 0`` exactly and saturates on the two with ``x > 0``, which then contribute no gradient: a basin
   of cost 0.405 next to the global minimum of cost 0.110. A dense grid of the 2-D loss surface confirms both.
2. **Dead ReLUs.** A ReLU network whose hidden units are all inactive on the data predicts a constant; every
   parameter but the output bias gets zero gradient, and small perturbations keep the units dead, so the point is a
   (flat) local minimum of cost ``var(y) / 2``, far above what the same network reaches when trained from a random
   initialization. The Hessian is singular there, so the second-order test is inconclusive; random perturbations
   inside the ball that keeps the units dead verify the minimum directly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

import analysis
from jaxdl.experiments._common import figure, plot_data
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import initialize_mlp
from jaxdl.train import train_scan

CLAIM = ("Deep Learning sec. 8.2.2: even networks without hidden units can have local minima of higher cost than the "
         "global minimum; at such a point the gradient vanishes, the Hessian is positive semidefinite, and a point of "
         "lower cost exists elsewhere.")
# Four points on the line: the global minimum compromises between them, the local one gives up on x > 0.
SIGMOID_X = (-3.0, -1.0, 2.5, 3.0)
SIGMOID_Y = (0.9, 0.1, 0.9, 0.9)


def sigmoid_unit_problem(dtype=jnp.float64):
    """``(loss_fn, params, x, y)`` for one sigmoid unit (an :class:`jaxdl.models.MLP` ``[1, 1]``, i.e. no hidden
    layer) with mean squared error on the four points ``SIGMOID_X`` -> ``SIGMOID_Y``."""
    apply, params = initialize_mlp([1, 1], scheme="zeros", dtype=dtype)

    def loss_fn(p, x, y):
        return jnp.mean((jax.nn.sigmoid(apply(p, x)[:, 0]) - y) ** 2)

    return loss_fn, params, jnp.asarray(SIGMOID_X, dtype)[:, None], jnp.asarray(SIGMOID_Y, dtype)


def _wb(params):
    layer = nnx.to_pure_dict(params)["layers"][0]
    return float(layer["kernel"][0, 0]), float(layer["bias"][0])


def _with_wb(params, w, b):
    """``params`` with kernel ``w`` and bias ``b``; ``w`` and ``b`` may be arrays of equal length (a stack)."""
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    out = jax.tree_util.tree_map(lambda a: a, params)
    nnx.replace_by_pure_dict(out, {"layers": {0: {"kernel": jnp.asarray(w.reshape(w.shape + (1, 1))),
                                                  "bias": jnp.asarray(b.reshape(b.shape + (1,)))}}})
    return out


def _index(tree, i):
    """The ``i``-th member of a stacked pytree, sliced on the host (no device op to compile)."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[i]), tree)


def perturbation_test(loss_fn, params, *batch, radius: float, samples: int, seed: int = 0) -> float:
    """``min_k loss(params + radius u_k) - loss(params)`` over ``samples`` random unit directions ``u_k`` (NumPy
    generator ``seed``): non-negative (up to rounding) at a local minimum whose basin contains that sphere. All
    ``samples`` points are evaluated in one compiled, ``vmap``-ed call.

    Raises:
      ValueError: ``radius <= 0`` or ``samples < 1``.
    """
    if not radius > 0 or isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"radius={radius!r}, samples={samples!r} are invalid; expected radius > 0, samples >= 1.")
    flat, _ = ravel_pytree(params)
    u = np.random.default_rng(seed).standard_normal((samples, flat.shape[0]))
    u = jnp.asarray(u / np.linalg.norm(u, axis=1, keepdims=True), flat.dtype)
    return float(_perturbation_gap(loss_fn, params, batch, u, radius))


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _perturbation_gap(loss_fn, params, batch, units, radius):
    flat, unravel = ravel_pytree(params)
    moved = jax.vmap(lambda d: loss_fn(unravel(flat + radius * d), *batch))(units)
    return jnp.min(moved) - loss_fn(params, *batch)


def _sigmoid_part(seed: int, grid_points: int, gd_runs_wanted: bool = True):
    loss_fn, params, x, y = sigmoid_unit_problem()
    ws = np.linspace(-6.0, 6.0, grid_points)
    bs = np.linspace(-8.0, 8.0, grid_points)
    e_w, e_b = _with_wb(params, 1.0, 0.0), _with_wb(params, 0.0, 1.0)
    surface = np.asarray(analysis.loss_surface_2d(loss_fn, params, e_w, e_b, ws, bs, x, y))  # params are 0
    # Local minima of the grid (strictly below their 8 neighbours, interior), refined to critical points.
    inner = surface[1:-1, 1:-1]
    neighbours = np.stack([surface[1 + di:surface.shape[0] - 1 + di, 1 + dj:surface.shape[1] - 1 + dj]
                           for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)])
    # Saturated plateaus are flat to rounding; a basin must drop by more than that below every neighbour.
    cells = np.argwhere(np.all(inner < neighbours - 1e-9, axis=0)) + 1
    stacked = _with_wb(params, ws[cells[:, 0]], bs[cells[:, 1]])
    found = analysis.find_critical_points(loss_fn, stacked, x, y, steps=30, gtol=1e-12)
    minima = []
    for i in np.flatnonzero(np.asarray(found.converged)):
        point = _index(found.params, i)
        info = analysis.classify_critical_point(loss_fn, point, x, y, gtol=1e-12)
        w, b = _wb(point)
        if info.kind == "minimum" and not any(abs(w - m["w"]) + abs(b - m["b"]) < 1e-6 for m in minima):
            minima.append({"w": w, "b": b, "loss": info.loss, "grad_norm": info.grad_norm, "kind": info.kind,
                           "eigenvalues": info.eigenvalues.tolist(), "params": point})
    if len(minima) < 2:
        raise RuntimeError(f"expected two minima of the sigmoid unit, found {len(minima)}; the grid is too coarse.")
    minima.sort(key=lambda m: m["loss"])
    glob, local = minima[0], minima[-1]
    segment = np.linspace(0.0, 1.0, 101)
    path = np.asarray(analysis.interpolate(loss_fn, local["params"], glob["params"], segment, x, y))
    gap = perturbation_test(loss_fn, local["params"], x, y, radius=0.05, samples=256, seed=seed)
    ended, gd_runs = None, 0
    if gd_runs_wanted:
        # Plain gradient descent from a grid of starts: where the runs end (descriptive; skipped when quick).
        starts_w, starts_b = np.meshgrid(np.linspace(-5, 5, 11), np.linspace(-6, 6, 13), indexing="ij")
        gd_starts = _with_wb(params, starts_w.ravel(), starts_b.ravel())
        run_gd = jax.jit(jax.vmap(lambda p, x, y: train_scan(loss_fn, optax.sgd(1.0), p, x, y, steps=3000)[0],
                                  in_axes=(0, None, None)))
        ends = run_gd(gd_starts, x, y)
        end_w, end_b = (np.asarray(nnx.to_pure_dict(ends)["layers"][0][k]).reshape(-1) for k in ("kernel", "bias"))
        # Within 0.05 of a minimum in (w, b), or elsewhere (still crawling along a saturated plateau).
        ended = {name: float(np.mean(np.hypot(end_w - m["w"], end_b - m["b"]) < 0.05))
                 for name, m in (("global", glob), ("local", local))}
        gd_runs = int(end_w.size)
    return {"problem": {"x": list(SIGMOID_X), "y": list(SIGMOID_Y)}, "grid": (np.asarray(ws), np.asarray(bs), surface),
            "minima": [{k: v for k, v in m.items() if k != "params"} for m in minima],
            "barrier_on_segment": float(path.max() - local["loss"]), "segment_loss": path,
            "perturbation_min_change": gap, "gd_end_fractions": ended, "gd_starts": gd_runs,
            "grid_min_loss": float(surface.min())}


def _relu_part(seed: int, steps: int):
    rng = np.random.default_rng(7)
    x = np.sort(rng.uniform(-1.0, 1.0, 64))[:, None]
    y_host = np.sin(3.0 * x)
    x, y = jnp.asarray(x), jnp.asarray(y_host)
    sizes = [1, 16, 1]
    apply, params = initialize_mlp(sizes, scheme="he", activation="relu", seed=3, dtype=jnp.float64)

    def loss_fn(p, x, y):
        return 0.5 * jnp.mean((apply(p, x) - y) ** 2)

    values = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(params))["layers"]
    # Every hidden unit dead on [-1, 1]: pre-activation w x + b <= |w| - 1 <= -margin.
    kernel = np.clip(values[0]["kernel"] * 0.3, -0.5, 0.5)
    margin = float(1.0 - np.max(np.abs(kernel)))
    dead = jax.tree_util.tree_map(lambda a: a, params)
    nnx.replace_by_pure_dict(dead, {"layers": {
        0: {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(-np.ones(sizes[1]))},
        1: {"kernel": jnp.asarray(values[1]["kernel"]), "bias": jnp.asarray([np.mean(y_host)])}}})
    info = analysis.classify_critical_point(loss_fn, dead, x, y, gtol=1e-12, atol=1e-10)
    # A perturbation of norm r changes each pre-activation by at most r (|x| + 1) <= 2 r: the units stay dead.
    radius = 0.2 * margin
    gap = perturbation_test(loss_fn, dead, x, y, radius=radius, samples=512, seed=seed)
    trained, _ = jax.jit(lambda p, x, y: train_scan(loss_fn, optax.adam(0.01), p, x, y, steps=steps))(params, x, y)
    return {"sizes": sizes, "loss": info.loss, "half_variance": float(0.5 * np.var(y_host)), "grad_norm": info.grad_norm,
            "kind": info.kind, "min_eigenvalue": info.min_eigenvalue, "max_eigenvalue": info.max_eigenvalue,
            "num_near_zero": info.num_near_zero, "num_params": int(info.eigenvalues.size), "margin": margin,
            "perturbation_radius": radius, "perturbation_min_change": gap,
            "trained_loss": float(loss_fn(trained, x, y)), "train_steps": steps}


def measure(*, seed: int, quick: bool) -> dict:
    """Both constructions; the sigmoid unit's loss surface (at most 121 x 121 of its grid) and segment to plot."""
    with jax.enable_x64(True):
        sig = _sigmoid_part(seed, 61 if quick else 241, gd_runs_wanted=not quick)
        relu = _relu_part(seed, steps=500 if quick else 3000)
    ws, bs, surface = sig["grid"]
    every = max(1, (len(ws) - 1) // 120)  # the full grid of 241 is drawn from every other point
    # Rounded, but kept inside the exact range of the grid, which sets the contour levels.
    drawn = np.clip(plot_data(surface[::every, ::every], 6), surface.min(), surface.max())
    return {"sigmoid_unit": {k: v for k, v in sig.items() if k not in ("grid", "segment_loss")},
            "dead_relu_network": relu,
            "plot": {"w": ws[::every], "b": bs[::every], "surface": drawn, "surface_max": float(surface.max()),
                     "segment_loss": sig["segment_loss"]}}


def verdict(m: dict) -> Verdict:
    """Both points are minima (gradient ~ 0, Hessian PSD, perturbations rise) above a lower point elsewhere."""
    sig, relu = m["sigmoid_unit"], m["dead_relu_network"]
    glob, local = sig["minima"][0], sig["minima"][-1]
    sig_ok = (len(sig["minima"]) >= 2 and local["kind"] == "minimum" and local["grad_norm"] < 1e-10
              and min(local["eigenvalues"]) > 0 and glob["loss"] < local["loss"] - 0.1
              and sig["barrier_on_segment"] > 0 and sig["perturbation_min_change"] > 0
              and sig["grid_min_loss"] >= glob["loss"] - 1e-12)
    relu_ok = (relu["kind"] == "minimum" and relu["grad_norm"] < 1e-12 and relu["perturbation_min_change"] >= -1e-15
               and relu["trained_loss"] < 0.5 * relu["loss"])
    text = (
        f"Sigmoid unit, no hidden layer: local minimum (w, b) = ({local['w']:.3f}, {local['b']:.3f}) with loss "
        f"{local['loss']:.4f}, |g| = {local['grad_norm']:.1e}, Hessian eigenvalues "
        f"{', '.join(f'{v:.3g}' for v in local['eigenvalues'])}; the global minimum ({glob['w']:.3f}, {glob['b']:.3f}) "
        f"has loss {glob['loss']:.4f} (grid minimum {sig['grid_min_loss']:.4f}); the segment between them rises "
        f"{sig['barrier_on_segment']:.3g} above the local minimum and no random point at distance 0.05 is lower (min "
        f"change {sig['perturbation_min_change']:.2e})"
        + ("" if sig["gd_end_fractions"] is None else
           f"; of {sig['gd_starts']} gradient-descent runs from a grid of starts "
           f"{sig['gd_end_fractions']['local']:.0%} end in the local and {sig['gd_end_fractions']['global']:.0%} in "
           "the global minimum")
        + f". Dead-ReLU network: loss {relu['loss']:.4f} = var(y)/2 "
        f"{relu['half_variance']:.4f}, |g| = {relu['grad_norm']:.1e}, Hessian eigenvalues in "
        f"[{relu['min_eigenvalue']:.2g}, {relu['max_eigenvalue']:.3g}] ({relu['num_near_zero']} of "
        f"{relu['num_params']} zero), min change over perturbations of norm {relu['perturbation_radius']:.2f} "
        f"{relu['perturbation_min_change']:.1e}; trained from He init the same network reaches "
        f"{relu['trained_loss']:.4f}.")
    return Verdict(bool(sig_ok and relu_ok), text)


def figures(m: dict) -> dict:
    """The sigmoid unit's loss surface with its two minima, and the loss on the segment between them."""
    sig, plot = m["sigmoid_unit"], m["plot"]
    ws, bs, surface = np.asarray(plot["w"]), np.asarray(plot["b"]), np.asarray(plot["surface"])
    segment_loss = np.asarray(plot["segment_loss"])
    fig, (a1, a2) = figure(2, width=5)
    levels = np.geomspace(max(sig["grid_min_loss"], 1e-3), plot["surface_max"], 25)  # of the whole grid
    cs = a1.contourf(ws, bs, surface.T, levels=levels, cmap="viridis", norm="log")
    fig.colorbar(cs, ax=a1, label="mean squared error (log scale)")
    for point, marker, label in ((sig["minima"][0], "*", "global minimum"),
                                 (sig["minima"][-1], "X", "local minimum")):
        a1.plot(point["w"], point["b"], marker, color="w", ms=14, mec="k",
                label=f"{label}, loss {point['loss']:.3f}")
    a1.set_xlabel("weight w")
    a1.set_ylabel("bias b")
    a1.set_title("one sigmoid unit, squared error, 4 points")
    a1.legend(fontsize=8, loc="lower right")
    segment = np.linspace(0, 1, segment_loss.size)
    a2.plot(segment, segment_loss)
    a2.set_xlabel("alpha: (1 - alpha) local minimum + alpha global minimum")
    a2.set_ylabel("mean squared error")
    a2.set_title("the segment between the minima crosses a barrier")
    return {"local_minima_sigmoid": (fig, "Loss surface of a single sigmoid unit over (w, b) with its two minima, "
                                          "and the loss on the straight segment between them.")}


EXPERIMENT = experiment(
    "local-minima", summary="sec. 8.2.2: a sigmoid unit without hidden layer and a dead-ReLU network have local "
                            "minima of higher cost (gradient ~ 0, Hessian PSD, lower point elsewhere)",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
