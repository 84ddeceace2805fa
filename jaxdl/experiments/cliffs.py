"""Cliffs and exploding gradients (Deep Learning sec. 8.2.4, Pascanu, Mikolov & Bengio 2013).

The model is the one-unit recurrent chain ``h_t = tanh(w h_{t-1} + b)`` run for ``T`` steps from ``h_0 = 0.2``
(a ``lax.scan``), with loss ``(h_T - 0.8)^2``. For ``w > 1`` the chain is bistable: ``h_T`` ends near ``+1`` or ``-1``
depending on which side of a separatrix ``b_c(w)`` the bias lies, so the loss is two plateaus joined by a wall
whose width shrinks and whose slope grows exponentially with ``T``: a cliff. On the wall the gradient is thousands
of times larger than on the plateaus.

From points on the wall (located by bisection of ``h_T = 0`` and a scan of the distance to it) one SGD step of a
learning rate that suits the plateaus throws the parameters far away, where ``tanh`` saturates and the gradient
vanishes; the same step with ``optax.clip_by_global_norm`` (through :func:`jaxdl.train.make_optimizer`) moves
``learning_rate * clip_norm`` in the same direction, walks down the wall and reaches the low plateau.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import analysis
from jaxdl.experiments._common import figure, plot_data
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.train import make_optimizer

CLAIM = ("Deep Learning sec. 8.2.4: a deep multiplicative chain has cliffs, where the gradient explodes and a plain "
         "gradient step jumps far off, while gradient clipping by global norm keeps the same step close.")
H0, TARGET = 0.2, 0.8
PLATEAU_OFFSET = 0.1  # distance in b from the wall at which the plateaus' gradient is measured


def cliff_loss(length: int):
    """``loss_fn(params, h0, target) = (h_T - target)^2`` of the chain ``h_t = tanh(w h_{t-1} + b)``, ``T = length``.

    ``params`` is ``{"w": scalar, "b": scalar}``; the recurrence runs in ``lax.scan`` with a static length.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length={length!r} is invalid; expected a positive number of recurrent steps.")

    def final_state(params, h0):
        def step(h, _):
            return jnp.tanh(params["w"] * h + params["b"]), None

        return jax.lax.scan(step, h0, None, length=length)[0]

    def loss_fn(params, h0, target):
        return (final_state(params, h0) - target) ** 2

    loss_fn.final_state = final_state
    return loss_fn


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _separatrix(loss_fn, ws, h0):
    """Bias ``b_c(w)`` where ``h_T`` changes sign, by 80 bisection steps on [-1, 1] (to float64 resolution)."""

    def one(w):
        def body(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            positive = loss_fn.final_state({"w": w, "b": mid}, h0) > 0
            return jnp.where(positive, lo, mid), jnp.where(positive, mid, hi)

        lo, hi = jax.lax.fori_loop(0, 80, body, (jnp.asarray(-1.0, ws.dtype), jnp.asarray(1.0, ws.dtype)))
        return 0.5 * (lo + hi)

    return jax.vmap(one)(ws)


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _grad_norms(loss_fn, ws, bs, h0, target):
    def one(w, b):
        g = jax.grad(loss_fn)({"w": w, "b": b}, h0, target)
        return jnp.hypot(g["w"], g["b"])

    return jax.vmap(jax.vmap(one, in_axes=(None, 0)))(ws, bs)


def cliff_starts(loss_fn, ws, *, grad_norm: float = 1e3):
    """For each ``w``, the point ``(w, b_c(w) - delta)`` on the high side of the wall with the largest ``delta``
    (on a geometric grid from 1e-1 to 1e-12) whose gradient norm reaches ``grad_norm``."""
    h0, target = jnp.asarray(H0, ws.dtype), jnp.asarray(TARGET, ws.dtype)
    bc = _separatrix(loss_fn, ws, h0)
    deltas = jnp.geomspace(1e-1, 1e-12, 221, dtype=ws.dtype)
    norms = np.asarray(_grad_norms(loss_fn, ws, bc[:, None] - deltas[None, :], h0, target))
    reached = norms >= grad_norm
    if not reached.any(axis=1).all():
        bad = np.asarray(ws)[~reached.any(axis=1)].tolist()
        raise ValueError(f"no point with gradient norm >= {grad_norm} next to the wall for w = {bad}.")
    first = reached.argmax(axis=1)
    return np.asarray(bc), np.asarray(deltas)[first], norms[np.arange(len(first)), first]


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "steps"))
def _trajectories(loss_fn, optimizer, starts, h0, target, steps):
    """``steps`` optimizer steps from each start (vmapped); the parameters and loss after every step."""

    def one(p):
        def body(carry, _):
            p, state = carry
            updates, state = optimizer.update(jax.grad(loss_fn)(p, h0, target), state, p)
            p = optax.apply_updates(p, updates)
            return (p, state), (p, loss_fn(p, h0, target))

        _, (path, losses) = jax.lax.scan(body, (p, optimizer.init(p)), None, length=steps)
        return path, losses

    return jax.vmap(one)(starts)


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _values_and_grads(loss_fn, points, h0, target):
    return jax.vmap(lambda p: jax.value_and_grad(loss_fn)(p, h0, target))(points)


def measure(*, seed: int, quick: bool) -> dict:
    """Locate starts on the wall, run plain and clipped SGD from each; the slice, surface and curves to plot."""
    length, learning_rate, clip_norm = 40, 0.1, 1.0
    count, steps = (4, 100) if quick else (24, 300)
    with jax.enable_x64(True):
        loss_fn = cliff_loss(length)
        rng = np.random.default_rng(seed)
        ws = jnp.asarray(np.sort(rng.uniform(1.2, 1.6, count)))
        bc, deltas, g0 = cliff_starts(loss_fn, ws)
        starts = {"w": ws, "b": jnp.asarray(bc - deltas)}
        h0, target = jnp.asarray(H0), jnp.asarray(TARGET)
        # The plateaus for comparison: gradient norms at distance PLATEAU_OFFSET from the wall, on both sides.
        plateau = np.asarray(_grad_norms(loss_fn, ws, jnp.asarray(bc[:, None] + np.array([-1, 1]) * PLATEAU_OFFSET),
                                         h0, target))
        paths, losses = {}, {}
        for name, clip in (("plain", None), ("clipped", clip_norm)):
            opt = make_optimizer("sgd", learning_rate, clip_norm=clip)
            path, loss = _trajectories(loss_fn, opt, starts, h0, target, steps)
            paths[name] = np.stack([np.asarray(path["w"]), np.asarray(path["b"])], -1)  # (count, steps, 2)
            losses[name] = np.asarray(loss)
        start_xy = np.stack([np.asarray(ws), bc - deltas], -1)
        # Loss and gradient at the starts and after the first plain step, in one compiled call.
        points = {"w": jnp.asarray(np.concatenate([start_xy[:, 0], paths["plain"][:, 0, 0]])),
                  "b": jnp.asarray(np.concatenate([start_xy[:, 1], paths["plain"][:, 0, 1]]))}
        values, grads = jax.device_get(_values_and_grads(loss_fn, points, h0, target))
        start_loss = values[:count]
        g_after = np.hypot(grads["w"], grads["b"])[count:]
        first_direction = -np.array([grads["w"][0], grads["b"][0]]) / np.hypot(grads["w"][0], grads["b"][0])
        slice_data = _slice(loss_fn, start_xy[0], first_direction, float(bc[0]), paths, h0, target)

    first = {k: np.linalg.norm(paths[k][:, 0] - start_xy, axis=1) for k in paths}
    far = {k: np.linalg.norm(paths[k][:, -1] - start_xy, axis=1) for k in paths}
    final = {k: losses[k][:, -1] for k in paths}
    return {
        "setting": {"length": length, "learning_rate": learning_rate, "clip_norm": clip_norm, "steps": steps,
                    "starts": count, "h0": H0, "target": TARGET},
        "starts": {"w": np.asarray(ws).tolist(), "b_wall": bc.tolist(), "distance_to_wall": deltas.tolist(),
                   "grad_norm": g0.tolist(), "loss": start_loss.tolist()},
        "plateau_grad_norm": {"offset_from_wall": PLATEAU_OFFSET, "min": float(plateau.min()),
                              "median": float(np.median(plateau)), "max": float(plateau.max())},
        "first_step_length": {k: v.tolist() for k, v in first.items()},
        "median_first_step_ratio_plain_over_clipped": float(np.median(first["plain"] / first["clipped"])),
        "grad_norm_after_plain_step": g_after.tolist(),
        "final_distance_from_start": {k: v.tolist() for k, v in far.items()},
        "final_loss": {k: v.tolist() for k, v in final.items()},
        "fraction_clipped_lower_final_loss": float(np.mean(final["clipped"] < final["plain"])),
        # Plot data: the slice and surface around the first start, its two paths, and every loss curve.
        "plot": {**slice_data, "start": start_xy[0], "first_start_paths": {k: v[0] for k, v in paths.items()},
                 "loss_curves": {k: plot_data(v) for k, v in losses.items()}},
    }


def verdict(m: dict) -> Verdict:
    """Wall gradients far above the plateaus, plain steps far longer than clipped ones, clipping ends lower."""
    setting, plateau = m["setting"], m["plateau_grad_norm"]
    length, learning_rate, clip_norm = setting["length"], setting["learning_rate"], setting["clip_norm"]
    count, steps = setting["starts"], setting["steps"]
    g0, g_after = np.asarray(m["starts"]["grad_norm"]), np.asarray(m["grad_norm_after_plain_step"])
    first = {k: np.asarray(v) for k, v in m["first_step_length"].items()}
    far = {k: np.asarray(v) for k, v in m["final_distance_from_start"].items()}
    final = {k: np.asarray(v) for k, v in m["final_loss"].items()}
    ratio, clipped_better = m["median_first_step_ratio_plain_over_clipped"], m["fraction_clipped_lower_final_loss"]
    passed = bool(g0.min() >= 100 * plateau["median"]
                  and np.all(first["clipped"] <= learning_rate * clip_norm * (1 + 1e-9))
                  and np.all(first["plain"] >= 100 * first["clipped"])
                  and np.all(far["clipped"] < 2.0) and np.median(far["plain"]) > 10.0
                  and clipped_better >= 0.75)
    text = (
        f"{count} starts on the wall of the T={length} tanh chain, gradient norms {g0.min():.3g} to {g0.max():.3g} "
        f"(at b = b_wall +/- {plateau['offset_from_wall']} on the plateaus: {plateau['min']:.2g} to "
        f"{plateau['max']:.2g}, median {plateau['median']:.2g}). One SGD step of rate {learning_rate}: plain moves "
        f"the parameters by {np.median(first['plain']):.3g} (median; {ratio:.0f}x the clipped step), landing where "
        f"the gradient norm is {np.median(g_after):.2g} (median); clipped at norm {clip_norm} moves "
        f"{np.max(first['clipped']):.3g}. After {steps} steps the clipped runs are within {np.max(far['clipped']):.3g} "
        f"of their start with median loss {np.median(final['clipped']):.2e}, the plain runs "
        f"{np.median(far['plain']):.3g} away with median loss {np.median(final['plain']):.3g}; clipping ends lower in "
        f"{clipped_better:.0%} of starts.")
    return Verdict(passed, text)


def _slice(loss_fn, start_xy, direction, bc, paths, h0, target):
    """The loss along the first (common) step direction ``-g / |g|`` from the first start, on a symmetric-log grid
    reaching past the plain step, and the 2-D surface around the wall."""
    start = {"w": jnp.asarray(start_xy[0]), "b": jnp.asarray(start_xy[1])}
    reach = float(np.linalg.norm(paths["plain"][0, 0] - start_xy)) * 1.5
    alphas = np.concatenate([-np.geomspace(0.1, 1e-6, 60), [0.0], np.geomspace(1e-6, reach, 200)])
    along = {"w": jnp.asarray(direction[0]), "b": jnp.asarray(direction[1])}
    values = np.asarray(analysis.loss_along_direction(loss_fn, start, along, alphas, h0, target))
    ws = np.linspace(start_xy[0] - 0.3, start_xy[0] + 0.3, 121)
    bs = np.linspace(bc - 0.3, bc + 0.3, 121)
    zero = {"w": jnp.asarray(0.0), "b": jnp.asarray(0.0)}
    surface = np.asarray(analysis.loss_surface_2d(
        loss_fn, zero, {"w": jnp.asarray(1.0), "b": jnp.asarray(0.0)}, {"w": jnp.asarray(0.0), "b": jnp.asarray(1.0)},
        ws, bs, h0, target))
    return {"alphas": alphas, "values": values, "direction": np.asarray(direction), "surface_w": ws, "surface_b": bs,
            "surface": plot_data(surface)}


def figures(m: dict) -> dict:
    """The slice and surface across the cliff around the first start, and the loss curves from every start."""
    sl, learning_rate = m["plot"], m["setting"]["learning_rate"]
    first_plain = m["first_step_length"]["plain"][0]
    start, direction = np.asarray(sl["start"]), np.asarray(sl["direction"])
    paths = {k: np.asarray(v) for k, v in sl["first_start_paths"].items()}  # (steps, 2) from the first start
    losses = {k: np.asarray(v) for k, v in sl["loss_curves"].items()}  # (starts, steps)
    fig, (a1, a2) = figure(2, width=5.2)
    a1.plot(sl["alphas"], sl["values"], color="0.3", label="loss along $-g/|g|$")
    for name, color in (("plain", "C3"), ("clipped", "C0")):
        along = (paths[name] - start) @ direction
        loss = losses[name][0]
        a1.plot(np.concatenate([[0.0], along[:30]]), np.concatenate([[sl["values"][60]], loss[:30]]), "o-",
                color=color, ms=3, lw=0.8, label=f"{name} SGD (first 30 steps, projected)")
    a1.set_xscale("symlog", linthresh=1e-3)
    a1.set_xticks([-0.1, -1e-2, 0, 1e-2, 1, 100])
    a1.set_yscale("log")
    a1.set_xlabel("distance along the first step direction (parameter units, symlog)")
    a1.set_ylabel("loss $(h_T - 0.8)^2$ (log)")
    a1.set_title(f"1-D slice across the cliff; plain first step {first_plain:.3g}")
    a1.legend(fontsize=7)
    ws, bs, surface = np.asarray(sl["surface_w"]), np.asarray(sl["surface_b"]), np.asarray(sl["surface"])
    cs = a2.contourf(ws, bs, surface.T, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=a2, label="loss")
    clipped = np.concatenate([start[None], paths["clipped"]])
    a2.plot(clipped[:, 0], clipped[:, 1], "C0.-", ms=2, label="clipped SGD")
    a2.annotate("", xy=start + 0.25 * (paths["plain"][0] - start) / np.linalg.norm(paths["plain"][0] - start),
                xytext=start, arrowprops={"arrowstyle": "->", "color": "C3", "lw": 2})
    a2.plot([], [], "C3-", lw=2, label=f"plain first step: leaves the plot ({first_plain:.3g} away)")
    a2.plot(*start, "w*", ms=12, mec="k", label="start on the wall")
    a2.set_xlim(ws[0], ws[-1])
    a2.set_ylim(bs[0], bs[-1])
    a2.set_xlabel("recurrent weight w")
    a2.set_ylabel("bias b")
    a2.set_title("loss over (w, b): two plateaus and the wall")
    a2.legend(fontsize=7, loc="lower left")
    fig2, (b1,) = figure(1, width=6)
    for name, color in (("plain", "C3"), ("clipped", "C0")):
        for i in range(losses[name].shape[0]):
            b1.plot(np.arange(1, losses[name].shape[1] + 1), losses[name][i], color=color, alpha=0.4,
                    label=f"{name} SGD, lr {learning_rate}" if i == 0 else None)
    b1.set_yscale("log")
    b1.set_xlabel("step")
    b1.set_ylabel("loss (log)")
    b1.set_title("training from points on the wall")
    b1.legend()
    return {"cliffs_slice_and_surface": (fig, "Left: the loss along the gradient direction from a point on the wall, "
                                              "with both trajectories projected; right: the (w, b) surface with the "
                                              "clipped path and the direction of the plain step, which lands far "
                                              "outside."),
            "cliffs_loss_curves": (fig2, "Loss after each step from every start: plain SGD is thrown onto a "
                                         "saturated plateau, clipped SGD descends.")}


EXPERIMENT = experiment(
    "cliffs", summary="sec. 8.2.4: on the cliff of a recurrent chain a plain step jumps far off; clipping the gradient "
                      "norm keeps the step close",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
