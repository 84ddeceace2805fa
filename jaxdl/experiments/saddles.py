"""Saddle points and the Hessian index (Deep Learning sec. 8.2.3).

Measured on a teacher-student regression network (a tanh MLP fitted to the outputs of a wider random tanh MLP):

1. A census of critical points. Starts are taken along Adam training runs from several initialisations (high loss
   early, low loss late); from each, Levenberg-Marquardt on ``1/2 ||g||^2`` (:func:`analysis.find_critical_points`)
   reaches a nearby critical point of any index. Converged points are classified by their exact Hessian; the rank
   correlation between loss and index over the distinct points (many starts reach the same one) measures the trend
   of Dauphin et al. (2014): the higher the loss, the larger the fraction of negative eigenvalues.
2. ``f(x, y) = x^2 - y^2`` and a network saddle (all hidden units equal, a critical point by permutation symmetry):
   gradient descent with a little noise leaves along the eigenspace of the most negative eigenvalue, gradient
   descent without noise stays on the symmetric set, and Newton's method with the same noise stays at the saddle.

A small weight decay (``1e-2``) is part of the loss: it removes the continuous flat directions of the plain squared
error (units with zero outgoing weight can rotate freely), so critical points are isolated and Newton converges.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

import analysis
from analysis.census import critical_point_census, distinct_critical_points
from analysis.descent import noisy_descent
from jaxdl.experiments._common import figure, plot_data, spearman
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import initialize_mlp, stack
from jaxdl.problems import teacher_student

CLAIM = ("Deep Learning sec. 8.2.3: critical points of high cost are saddle points with many negative Hessian "
         "eigenvalues, and the index grows with the cost (Dauphin et al. 2014); gradient descent with a little noise "
         "escapes a saddle along the eigenvector of the most negative eigenvalue, while Newton's method is attracted "
         "to it.")
WEIGHT_DECAY = 1e-2


def symmetric_start(inputs: int, hidden: int, seed: int, dtype=jnp.float64):
    """A start with all hidden units equal (same incoming weights, bias and outgoing weight).

    The loss is invariant under permuting hidden units, so at such a point the gradient and every Newton or
    Levenberg-Marquardt step keep the units equal: a critical point reached from here is a critical point of the
    network with identical units (Fukumizu & Amari 2000), a saddle when the units would rather differ.
    """
    rng = np.random.default_rng(20_000 + seed)
    w = rng.standard_normal((inputs, 1)) / np.sqrt(inputs)
    _, params = initialize_mlp([inputs, hidden, 1], scheme="zeros", dtype=dtype)
    values = {"layers": {0: {"kernel": jnp.asarray(np.tile(w, (1, hidden)), dtype), "bias": jnp.zeros(hidden, dtype)},
                         1: {"kernel": jnp.full((hidden, 1), 1.0 / hidden, dtype), "bias": jnp.zeros(1, dtype)}}}
    nnx.replace_by_pure_dict(params, values)
    return params


def symmetrize(params):
    """Replace every hidden unit by the average unit (removes rounding-level asymmetry; exact symmetry is what
    keeps noise-free gradient descent on the symmetric set)."""
    layers = nnx.to_pure_dict(params)["layers"]
    k0, b0, k1 = layers[0]["kernel"], layers[0]["bias"], layers[1]["kernel"]
    values = {"layers": {0: {"kernel": jnp.broadcast_to(k0.mean(axis=1, keepdims=True), k0.shape),
                             "bias": jnp.full_like(b0, b0.mean())},
                         1: {"kernel": jnp.full_like(k1, k1.mean()), "bias": layers[1]["bias"]}}}
    out = jax.tree_util.tree_map(lambda a: a, params)
    nnx.replace_by_pure_dict(out, values)
    return out


def _alignment(displacement: np.ndarray, basis: np.ndarray) -> float:
    """``||P d|| / ||d||`` with ``P`` the orthogonal projector onto the columns of ``basis`` (orthonormal)."""
    return float(np.linalg.norm(basis.T @ displacement) / np.linalg.norm(displacement))


def _escape_alignment(path: np.ndarray, saddle: np.ndarray, basis: np.ndarray, radius: float):
    """Alignment of the displacement with ``basis`` at the first step it leaves the ball of ``radius``."""
    dist = np.linalg.norm(path - saddle, axis=1)
    outside = np.flatnonzero(dist > radius)
    if outside.size == 0:
        return float("nan"), -1
    t = int(outside[0])
    return _alignment(path[t] - saddle, basis), t


def measure(*, seed: int, quick: bool) -> dict:
    """The census of critical points, the toy saddle and the network saddle; their paths and curves to plot."""
    if quick:
        inputs, hidden, examples, seeds, snaps, lm_steps = 3, 4, 64, 8, (0, 10, 30, 100, 300, 1000, 3000), 40
    else:
        inputs, hidden, examples, seeds, snaps, lm_steps = 4, 8, 128, 8, (0, 10, 30, 100, 300, 1000, 3000), 100
    with jax.enable_x64(True):
        loss_fn, _, params, x, y = teacher_student(inputs, hidden, examples, seed)
        n = analysis.num_params(params)
        starts = stack([initialize_mlp([inputs, hidden, 1], seed=1000 * seed + i, dtype=jnp.float64)[1]
                        for i in range(seeds)])
        records, converged_fraction, sym = critical_point_census(
            loss_fn, starts, x, y, snapshot_steps=snaps, lm_steps=lm_steps,
            symmetric=symmetric_start(inputs, hidden, seed))
        toy = _toy_saddle(seed, steps=100)
        saddle = symmetrize(sym.params)
        net = _network_saddle(loss_fn, saddle, x, y, seed, max_steps=4000)

    # Starts that reach the same critical point (or a copy of it with the hidden units permuted) count once:
    # repeated copies of one point would weigh it many times in the rank correlation.
    distinct = distinct_critical_points(records)
    losses = np.array([r["loss"] for r in distinct])
    index = np.array([r["index"] for r in distinct])
    rho = spearman(losses, index) if len(distinct) >= 3 else float("nan")
    rho_all = spearman([r["loss"] for r in records], [r["index"] for r in records]) if len(records) >= 3 else \
        float("nan")
    order = np.argsort(losses)
    third = max(1, len(order) // 3)
    low_index, high_index = float(index[order[:third]].mean()), float(index[order[-third:]].mean())
    return {
        "network": {"inputs": inputs, "hidden": hidden, "examples": examples, "num_params": n,
                    "weight_decay": WEIGHT_DECAY},
        "census": {"starts": seeds * len(snaps), "converged_fraction": converged_fraction,
                   "critical_points": records, "distinct_critical_points": len(distinct),
                   "spearman_loss_index": rho, "spearman_loss_index_all_converged_starts": rho_all,
                   "mean_index_lowest_third": low_index, "mean_index_highest_third": high_index,
                   "kinds": {k: sum(r["kind"] == k for r in records) for k in ("minimum", "saddle", "maximum")}},
        "toy_saddle": {k: v for k, v in toy.items() if k != "paths"},
        "network_saddle": {k: v for k, v in net.items() if k not in ("paths", "losses", "dist")},
        # Plot data: the toy paths, and the losses and distances from the network saddle at every step.
        "plot": {"toy_paths": toy["paths"], "network_losses": {k: plot_data(v, 7) for k, v in net["losses"].items()},
                 "network_distance": {k: plot_data(v) for k, v in net["dist"].items()}},
    }


def verdict(m: dict) -> Verdict:
    """Index rising with the loss over the distinct points; noisy GD escapes both saddles, Newton stays."""
    census, toy, net = m["census"], m["toy_saddle"], m["network_saddle"]
    records, rho = census["critical_points"], census["spearman_loss_index"]
    rho_all = census["spearman_loss_index_all_converged_starts"]
    distinct, starts = census["distinct_critical_points"], census["starts"]
    low_index, high_index = census["mean_index_lowest_third"], census["mean_index_highest_third"]
    n, hidden = m["network"]["num_params"], m["network"]["hidden"]
    census_ok = distinct >= 6 and rho > 0.5 and high_index > low_index
    toy_ok = (toy["gd_noise_final_abs_y"] > 1.0 and toy["gd_noise_cosine_ey"] > 0.999
              and toy["gd_no_noise_final_abs_y"] == 0.0 and toy["newton_max_distance_late"] < 10 * toy["noise"])
    net_ok = (net["saddle_index"] > 0 and net["gd_noise_final_loss"] < net["saddle_loss"] - 0.05 * net["saddle_loss"]
              and net["escape_alignment"] > 0.9 and net["newton_final_distance"] < 1e3 * net["noise"]
              and net["gd_no_noise_symmetry_gap"] == 0.0)
    passed = bool(census_ok and toy_ok and net_ok)
    text = (
        f"{len(records)} critical points (|g| <= 1e-9) from {starts} starts of a {n}-parameter network, "
        f"{distinct} distinct: Spearman correlation of loss and index {rho:.2f} over the distinct points "
        f"({rho_all:.2f} counting every start); mean index {low_index:.3f} in the lowest-loss third vs "
        f"{high_index:.3f} in the highest. x^2 - y^2: gradient descent with noise {toy['noise']:.0e} reached "
        f"|y| = {toy['gd_noise_final_abs_y']:.3g} with displacement cosine {toy['gd_noise_cosine_ey']:.4f} to the "
        f"negative-curvature axis (no noise: |y| = {toy['gd_no_noise_final_abs_y']:.1g}); Newton stayed within "
        f"{toy['newton_max_distance_late']:.1e} of the saddle. Network saddle (all {hidden} hidden units equal, "
        f"loss {net['saddle_loss']:.4f}, index {net['saddle_index']:.3f}, lambda_min {net['lambda_min']:.4f}): "
        f"noisy GD fell to loss {net['gd_noise_final_loss']:.4f}, leaving with {net['escape_alignment']:.3f} of the "
        f"displacement in the lambda_min eigenspace (isotropic noise: {net['random_alignment']:.3f}); Newton ended "
        f"{net['newton_final_distance']:.1e} from the saddle.")
    return Verdict(passed, text)


def _toy_saddle(seed: int, *, steps: int, noise: float = 1e-6, learning_rate: float = 0.1):
    """``f(x, y) = x^2 - y^2`` from ``(1, 0)``, on the stable manifold of the saddle at the origin.

    The gradient ``(2x, -2y)`` and Hessian ``diag(2, -2)`` are closed forms, so the iterations run in NumPy: the
    escape direction is the ``y`` axis (eigenvalue -2), and Newton's step ``-H^{-1} g`` lands on the origin
    exactly. The same noise sequence is added after every step of each method.
    """
    hess_inv = np.diag([0.5, -0.5])
    xi = np.random.default_rng(seed).standard_normal((steps, 2)) * noise
    paths = {}
    for name in ("gd_noise", "gd_no_noise", "newton"):
        p = np.array([1.0, 0.0])
        path = [p]
        for t in range(steps):
            g = np.array([2 * p[0], -2 * p[1]])
            p = p - (hess_inv @ g if name == "newton" else learning_rate * g)
            p = p + (xi[t] if name != "gd_no_noise" else 0.0)
            path.append(p)
        paths[name] = np.array(path)
    gd, gd0, newton = paths["gd_noise"], paths["gd_no_noise"], paths["newton"]
    return {
        "noise": noise, "learning_rate": learning_rate, "steps": steps, "lambda_min": -2.0,
        "gd_noise_final_abs_y": float(abs(gd[-1, 1])),
        "gd_noise_cosine_ey": float(abs(gd[-1, 1]) / np.linalg.norm(gd[-1])),
        "gd_noise_final_f": float(gd[-1, 0] ** 2 - gd[-1, 1] ** 2),
        "gd_no_noise_final_abs_y": float(abs(gd0[-1, 1])), "gd_no_noise_final_x": float(gd0[-1, 0]),
        "newton_max_distance_late": float(np.linalg.norm(newton[steps // 2:], axis=1).max()),
        "paths": paths,
    }


def _network_saddle(loss_fn, saddle, x, y, seed: int, *, max_steps: int, noise: float = 1e-7,
                    newton_steps: int = 40):
    info = analysis.classify_critical_point(loss_fn, saddle, x, y, gtol=1e-9)
    H = np.asarray(analysis.dense_hessian(loss_fn, saddle, x, y))
    lam, U = np.linalg.eigh(0.5 * (H + H.T))
    # The most negative eigenvalue is repeated (hidden - 1 times: one difference direction per pair of equal units).
    basis = U[:, lam <= lam[0] + 1e-6 * abs(lam[0])]
    start, _ = ravel_pytree(saddle)
    start = np.asarray(start)
    # Step 1 / lambda_max is stable; noise of size 1e-7 needs about 16 e-folds of growth, (1 + eps |lambda_min|)^t,
    # to reach the 1e-2 radius where the alignment is measured, and a few more to leave the saddle's basin.
    learning_rate = float(1.0 / lam[-1])
    growth = learning_rate * max(-lam[0], 1e-12)
    steps = int(min(max_steps, np.ceil(30.0 / growth)))
    gd, gd_losses = noisy_descent(loss_fn, saddle, x, y, method="gradient", steps=steps, seed=seed,
                                  learning_rate=learning_rate, noise=noise)
    gd0, gd0_losses = noisy_descent(loss_fn, saddle, x, y, method="gradient", steps=steps, seed=seed,
                                    learning_rate=learning_rate)
    newton, newton_losses = noisy_descent(loss_fn, saddle, x, y, method="newton", steps=newton_steps, seed=seed,
                                          noise=noise)
    alignment, exit_step = _escape_alignment(gd, start, basis, radius=1e-2)
    unravel = ravel_pytree(saddle)[1]
    k0 = np.asarray(nnx.to_pure_dict(unravel(jnp.asarray(gd0[-1])))["layers"][0]["kernel"])
    return {
        "noise": noise, "learning_rate": learning_rate, "steps": steps,
        "saddle_loss": info.loss, "saddle_grad_norm": info.grad_norm, "saddle_index": info.index,
        "lambda_min": float(lam[0]), "lambda_min_multiplicity": int(basis.shape[1]),
        "gd_noise_final_loss": float(gd_losses[-1]), "escape_alignment": alignment, "escape_step": exit_step,
        "random_alignment": float(np.sqrt(basis.shape[1] / lam.size)),
        "gd_no_noise_final_loss": float(gd0_losses[-1]),
        "gd_no_noise_symmetry_gap": float(np.max(np.abs(k0 - k0[:, :1]))),
        "newton_final_distance": float(np.linalg.norm(newton[-1] - start)),
        "newton_final_loss": float(newton_losses[-1]),
        "paths": {"gd_noise": gd, "newton": newton},
        "losses": {"gd_noise": gd_losses, "gd_no_noise": gd0_losses, "newton": newton_losses},
        "dist": {"gd_noise": np.linalg.norm(gd - start, axis=1), "newton": np.linalg.norm(newton - start, axis=1)},
    }


def figures(m: dict) -> dict:
    """Index against loss of every critical point; the toy saddle's paths; loss and distance from the network saddle."""
    records, rho, net = m["census"]["critical_points"], m["census"]["spearman_loss_index"], m["network_saddle"]
    toy_noise, paths = m["toy_saddle"]["noise"], {k: np.asarray(v) for k, v in m["plot"]["toy_paths"].items()}
    losses = {k: np.asarray(v) for k, v in m["plot"]["network_losses"].items()}
    dist = {k: np.asarray(v) for k, v in m["plot"]["network_distance"].items()}
    fig, (ax,) = figure(1, width=6)
    for kind, marker in (("minimum", "o"), ("saddle", "s"), ("maximum", "^")):
        sel = [r for r in records if r["kind"] == kind]
        if sel:
            ax.scatter([r["loss"] for r in sel], [r["index"] for r in sel], marker=marker, alpha=0.7,
                       label=f"{kind} ({len(sel)})")
    ax.scatter([net["saddle_loss"]], [net["saddle_index"]], marker="*", s=200, color="k",
               label="all hidden units equal")
    ax.set_xscale("log")
    ax.set_xlabel("loss at the critical point (mean squared error / 2 + decay, log scale)")
    ax.set_ylabel("index: fraction of negative Hessian eigenvalues")
    ax.set_title(f"critical points: Spearman(loss, index) = {rho:.2f} (distinct points)")
    ax.legend(fontsize=8)

    fig2, (a1, a2) = figure(2, width=5)
    grid = np.linspace(-1.2, 1.2, 121)
    gx, gy = np.meshgrid(grid, grid)
    cs = a1.contour(gx, gy, gx**2 - gy**2, levels=15, cmap="coolwarm")
    a1.clabel(cs, fontsize=6)
    for name, style in (("gd_noise", "C0.-"), ("gd_no_noise", "C2--"), ("newton", "C3o-")):
        p = paths[name]
        inside = np.all(np.abs(p) <= 1.2, axis=1)
        a1.plot(p[inside, 0], p[inside, 1], style, ms=3, label=name.replace("_", " "))
    a1.set_xlabel("x (parameter units)")
    a1.set_ylabel("y (parameter units)")
    a1.set_title("$f(x, y) = x^2 - y^2$, start (1, 0)")
    a1.legend(fontsize=8)
    steps = np.arange(paths["gd_noise"].shape[0])
    for name, color in (("gd_noise", "C0"), ("newton", "C3")):
        a2.semilogy(steps, np.maximum(np.abs(paths[name][:, 1]), 1e-300), color=color,
                    label=name.replace("_", " "))
    a2.axhline(toy_noise, color="0.5", ls=":", label=f"noise std {toy_noise:.0e}")
    a2.set_xlabel("step")
    a2.set_ylabel("|y|: distance along the escape direction (log)")
    a2.set_title("escape grows like $(1 + 2\\epsilon)^t$")
    a2.legend(fontsize=8)

    fig3, (b1, b2) = figure(2, width=5)
    for name, color in (("gd_noise", "C0"), ("gd_no_noise", "C2"), ("newton", "C3")):
        b1.plot(np.arange(losses[name].size), losses[name], color=color, label=name.replace("_", " "))
    b1.axhline(net["saddle_loss"], color="k", ls=":", lw=1, label="loss at the saddle")
    b1.set_xlabel("step")
    b1.set_ylabel("training loss (MSE / 2 + decay)")
    b1.set_title("network saddle: all hidden units equal")
    b1.legend(fontsize=8)
    for name, color in (("gd_noise", "C0"), ("newton", "C3")):
        b2.semilogy(np.arange(dist[name].size), np.maximum(dist[name], 1e-300), color=color,
                    label=name.replace("_", " "))
    b2.axhline(1e-2, color="0.5", ls=":", label="radius where alignment is measured")
    b2.set_xlabel("step")
    b2.set_ylabel("distance from the saddle (parameter norm, log)")
    b2.set_title(f"escape alignment with $\\lambda_{{min}}$ eigenspace: {net['escape_alignment']:.3f}")
    b2.legend(fontsize=8)
    return {
        "saddles_index_vs_loss": (fig, "Critical points found by Levenberg-Marquardt on the squared gradient norm, "
                                       "with their exact Hessian index; the star is the symmetric saddle."),
        "saddles_toy": (fig2, "Gradient descent with noise leaves the saddle of x^2 - y^2 along y; without noise it "
                              "converges to the saddle; Newton's method jumps to the saddle and stays."),
        "saddles_network": (fig3, "From the all-units-equal saddle: noisy gradient descent escapes and lowers the "
                                  "loss, noise-free gradient descent keeps the units equal, Newton's method stays at "
                                  "the saddle."),
    }


EXPERIMENT = experiment(
    "saddles", summary="sec. 8.2.3: index of critical points grows with the loss; noisy GD escapes saddles, Newton "
                       "is attracted to them",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
