"""Loss landscapes of a trained digits MLP, every grid evaluated in one batched call (``analysis.landscape``).

1. Linear interpolation from the initialization to the trained solution (Goodfellow, Vinyals & Saxe 2015): the loss
   on the segment falls monotonically, with no barrier in between.
2. 1-D slices along the top and bottom Hessian eigenvectors at the solution (:func:`analysis.hessian_direction`,
   Lanczos): the central second difference of each slice equals the eigenvalue, and the slice along the top
   eigenvector rises far faster than the one along the bottom eigenvector.
3. A 2-D surface spanned by two filter-normalised random directions (Li, Xu, Taylor, Studer & Goldstein 2018): each
   filter of the direction has the norm of the matching filter of the weights, and the trained point is the lowest
   point of the grid.

The whole grid is one ``vmap``-ed, compiled call; the same grid evaluated point by point in a Python loop of
compiled loss calls is timed for comparison.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import analysis
from jaxdl.data import digits_full
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import initialize_mlp
from jaxdl.train import train_scan

CLAIM = ("Loss landscapes (Goodfellow, Vinyals & Saxe 2015; Li et al. 2018): the loss falls monotonically on the "
         "straight line from initialization to the trained solution; slices along Hessian eigenvectors curve as "
         "their eigenvalues say; the trained point is the minimum of a filter-normalised random 2-D slice.")


def _filter_norm_error(direction, params) -> float:
    """Largest relative mismatch between the norms of the direction's and the weights' filters (kernels only)."""
    worst = 0.0
    for d, p in zip(jax.tree_util.tree_leaves(direction), jax.tree_util.tree_leaves(params)):
        if np.ndim(p) < 2:
            worst = max(worst, float(np.max(np.abs(d))))  # vectors are zeroed: any entry is an error
            continue
        dn = np.linalg.norm(np.asarray(d).reshape(-1, np.shape(p)[-1]), axis=0)
        pn = np.linalg.norm(np.asarray(p).reshape(-1, np.shape(p)[-1]), axis=0)
        worst = max(worst, float(np.max(np.abs(dn - pn) / pn)))
    return worst


def measure(*, seed: int, quick: bool) -> dict:
    """Train the MLP, then the interpolation, the two eigenvector slices and the 2-D surface (timed)."""
    if quick:
        sizes, examples, steps, grid, h = [64, 16, 10], 512, 300, 15, 1e-3
    else:
        sizes, examples, steps, grid, h = [64, 32, 32, 10], 1797, 1000, 41, 1e-3
    with jax.enable_x64(True):
        x, y = digits_full(jnp.float64)
        x, y = x[:examples], y[:examples]
        apply, init = initialize_mlp(sizes, scheme="lecun", seed=seed, dtype=jnp.float64)

        def loss_fn(p, x, y):
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y))

        trained, _ = jax.jit(lambda p, x, y: train_scan(loss_fn, optax.sgd(0.5), p, x, y, steps=steps))(init, x, y)
        loss_star = float(loss_fn(trained, x, y))

        alphas = np.linspace(-0.25, 1.25, 61)
        path = np.asarray(analysis.interpolate(loss_fn, init, trained, alphas, x, y))
        i0 = int(np.argmin(np.abs(alphas)))
        inside = path[(alphas >= -1e-12) & (alphas <= 1 + 1e-12)]
        rises = np.diff(inside)
        max_rise = float(rises.max())

        k_lanczos, k1, k2 = jax.random.split(jax.random.PRNGKey(seed), 3)
        # Both ends of the spectrum from one Lanczos run (one compilation).
        eigs = analysis.hessian_eigs(loss_fn, trained, x, y, k=1, which="both", key=k_lanczos, return_vectors=True)
        top, bottom = (analysis.EigenDirection(eigs.eigenvalues[i], jax.tree_util.tree_map(lambda v: v[i],
                                                                                            eigs.eigenvectors),
                                               eigs.residuals[i]) for i in (1, 0))
        # 59 + 2 points: the same shape as the 61-point interpolation grid, so one compiled evaluator serves both.
        wide = np.linspace(-1.0, 1.0, 59)
        # The +-h points ride along in the same batched call as the wide slice.
        both = np.concatenate([wide, [-h, h]])
        slices, curvature = {}, {}
        for name, d in (("top", top), ("bottom", bottom)):
            values = np.asarray(analysis.loss_along_direction(loss_fn, trained, d.direction, both, x, y))
            slices[name] = values[: wide.size]
            curvature[name] = float(analysis.second_difference([-h, 0.0, h], [values[-2], loss_star, values[-1]])[0])

        d1 = analysis.filter_normalized_direction(k1, trained)
        d2 = analysis.filter_normalized_direction(k2, trained)
        norm_error = max(_filter_norm_error(d, trained) for d in (d1, d2))
        coords = np.linspace(-1.0, 1.0, grid)
        surface = analysis.loss_surface_2d(loss_fn, trained, d1, d2, coords, coords, x, y)
        t0 = time.perf_counter()
        surface = np.asarray(jax.block_until_ready(analysis.loss_surface_2d(loss_fn, trained, d1, d2, coords, coords,
                                                                            x, y)))
        batched_time = time.perf_counter() - t0
        # The point-by-point comparison costs a compilation of its own; the quick setting skips it.
        loop_time = None if quick else _python_loop_time(loss_fn, trained, d1, d2, coords, x, y, rows=4)

    centre = grid // 2
    lam_top, lam_bottom = float(top.eigenvalue), float(bottom.eigenvalue)
    top_err = abs(curvature["top"] / lam_top - 1)
    bottom_err = abs(curvature["bottom"] - lam_bottom) / abs(lam_top)
    argmin = np.unravel_index(np.argmin(surface), surface.shape)
    return {
        "setting": {"sizes": sizes, "examples": examples, "train_steps": steps, "optimizer": "sgd 0.5",
                    "grid": grid, "dtype": "float64"},
        "interpolation": {"alphas": alphas.tolist(), "loss": path.tolist(), "loss_init": float(path[i0]),
                          "loss_trained": loss_star, "max_rise_on_0_1": max_rise,
                          "monotone": bool(max_rise <= 1e-12 * abs(path[i0]))},
        "hessian_slices": {"lambda_max": lam_top, "lambda_min": lam_bottom,
                           "residuals": [float(top.residual), float(bottom.residual)],
                           "second_difference_top": curvature["top"], "second_difference_bottom": curvature["bottom"],
                           "step": h, "relative_error_top": top_err, "error_bottom_relative_to_lambda_max": bottom_err,
                           "rise_at_alpha_1": {k: float(v[-1] - loss_star) for k, v in slices.items()}},
        "surface_2d": {"centre_loss": float(surface[centre, centre]), "grid_min": float(surface.min()),
                       "argmin_offset": [int(argmin[0] - centre), int(argmin[1] - centre)],
                       "grid_max": float(surface.max()), "filter_norm_relative_error": norm_error,
                       "points": grid * grid, "batched_seconds": batched_time,
                       "python_loop_seconds_per_point": loop_time,
                       "speedup": None if loop_time is None else loop_time * grid * grid / batched_time},
        # Plot data: the two eigenvector slices and the 2-D surface (grid x grid, first index along direction 1).
        "plot": {"slice_distance": wide, "slices": slices, "surface_coords": coords, "surface": surface},
    }


def verdict(m: dict) -> Verdict:
    """Monotone interpolation, second differences equal to the eigenvalues, the trained point lowest on the grid."""
    interp, hs, surf = m["interpolation"], m["hessian_slices"], m["surface_2d"]
    grid, max_rise, monotone = m["setting"]["grid"], interp["max_rise_on_0_1"], interp["monotone"]
    top_err, bottom_err = hs["relative_error_top"], hs["error_bottom_relative_to_lambda_max"]
    rise, norm_error, loop_time = hs["rise_at_alpha_1"], surf["filter_norm_relative_error"], \
        surf["python_loop_seconds_per_point"]
    centre_min = surf["centre_loss"] <= surf["grid_min"] + 1e-12
    passed = bool(monotone and top_err < 1e-3 and bottom_err < 1e-3 and centre_min and norm_error < 1e-10
                  and rise["top"] > rise["bottom"])
    text = (
        f"Interpolation init -> trained: loss {interp['loss_init']:.4f} -> {interp['loss_trained']:.4f}, largest rise "
        f"between consecutive points on [0, 1] {max_rise:.2e} ({'monotone' if monotone else 'not monotone'}). "
        f"Hessian at the solution: lambda_max {hs['lambda_max']:.4g}, lambda_min {hs['lambda_min']:.3g}; central "
        f"second differences (h = {hs['step']:g}) {hs['second_difference_top']:.4g} and "
        f"{hs['second_difference_bottom']:.3g} (relative error {top_err:.1e}, error {bottom_err:.1e} of lambda_max); "
        f"at alpha = 1 the loss rises by {rise['top']:.3g} along the top and {rise['bottom']:.3g} along the bottom "
        f"eigenvector. Filter-normalised 2-D slice ({grid}x{grid}, filter norms matched to {norm_error:.0e}): centre "
        f"{surf['centre_loss']:.4f}, grid minimum {surf['grid_min']:.4f} at offset {surf['argmin_offset']}; one "
        f"batched call {surf['batched_seconds'] * 1e3:.0f} ms"
        + ("." if loop_time is None else f" vs {loop_time * 1e3:.2f} ms per point in a Python loop "
           f"({surf['speedup']:.0f}x)."))
    return Verdict(passed, text)


def _python_loop_time(loss_fn, params, d1, d2, coords, x, y, rows: int) -> float:
    """Seconds per grid point when each point is a separate compiled call from Python (a few rows of the grid)."""
    @jax.jit
    def point(p, d1, d2, a, b, x, y):
        return loss_fn(jax.tree_util.tree_map(lambda q, u, v: q + a * u + b * v, p, d1, d2), x, y)

    point(params, d1, d2, 0.0, 0.0, x, y).block_until_ready()
    t0 = time.perf_counter()
    for a in coords[:rows]:
        for b in coords:
            point(params, d1, d2, a, b, x, y).block_until_ready()
    return (time.perf_counter() - t0) / (rows * len(coords))


def figures(m: dict) -> dict:
    """The interpolation, the eigenvector slices with their quadratic models, and the filter-normalised surface."""
    plot, hs = m["plot"], m["hessian_slices"]
    alphas, path = np.asarray(m["interpolation"]["alphas"]), np.asarray(m["interpolation"]["loss"])
    wide, slices = np.asarray(plot["slice_distance"]), {k: np.asarray(v) for k, v in plot["slices"].items()}
    coords, surface = np.asarray(plot["surface_coords"]), np.asarray(plot["surface"])
    lam_top, lam_bottom, loss_star = hs["lambda_max"], hs["lambda_min"], m["interpolation"]["loss_trained"]
    fig, (a1, a2, a3) = figure(3, width=4.6)
    a1.plot(alphas, path, "o-", ms=3)
    a1.axvspan(0, 1, color="0.9", zorder=0)
    a1.set_yscale("log")
    a1.set_xlabel("alpha: (1 - alpha) init + alpha trained")
    a1.set_ylabel("training cross-entropy (nats, log)")
    a1.set_title("linear interpolation init -> solution")
    for (name, values), lam, color in zip(slices.items(), (lam_top, lam_bottom), ("C3", "C0")):
        a2.plot(wide, values, color=color, label=f"{name} eigenvector (lambda = {lam:.3g})")
        quadratic = loss_star + 0.5 * lam * wide**2
        a2.plot(wide[quadratic > 0], quadratic[quadratic > 0], color=color, ls=":", lw=1,
                label=f"quadratic model, {name}")
    a2.set_ylim(min(v.min() for v in slices.values()) * 0.9, max(v.max() for v in slices.values()) * 1.1)
    a2.set_yscale("log")
    a2.set_xlabel("distance along the unit eigenvector (parameter units)")
    a2.set_ylabel("training cross-entropy (nats, log)")
    a2.set_title("1-D slices along Hessian eigenvectors")
    a2.legend(fontsize=6)
    levels = np.geomspace(surface.min(), surface.max(), 25)
    cs = a3.contourf(coords, coords, surface.T, levels=levels, norm="log", cmap="viridis")
    fig.colorbar(cs, ax=a3, label="cross-entropy (nats, log scale)")
    a3.plot(0, 0, "w*", ms=12, mec="k", label="trained parameters")
    a3.set_xlabel("alpha (filter-normalised direction 1)")
    a3.set_ylabel("beta (filter-normalised direction 2)")
    a3.set_title("2-D filter-normalised slice")
    a3.legend(fontsize=7)
    return {"landscapes": (fig, "Left: loss on the straight line from initialization (0) to the solution (1). Middle: "
                                "slices along the top and bottom Hessian eigenvectors with their quadratic models. "
                                "Right: loss on the plane of two filter-normalised random directions (Li et al. "
                                "2018).")}


EXPERIMENT = experiment(
    "landscapes", summary="loss landscapes: monotone init-to-solution interpolation, Hessian-eigenvector slices, "
                          "filter-normalised 2-D surface (vmap-batched)",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
