"""Matplotlib (Agg) figures from analysis results. Plots never recompute anything; each returns a ``Figure``.

Every figure checks that its series are 1-D and of matching lengths first (a ``ValueError`` naming the argument),
instead of failing inside matplotlib. NaN points are left to matplotlib, which draws them as gaps.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _series(values, name: str, length: Optional[int] = None, *, like: str = "") -> np.ndarray:
    """``values`` as a 1-D array, of ``length`` points when given (that of the argument ``like``)."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (length is not None and arr.size != length):
        expected = f"{length} points, like {like}" if length is not None else "a 1-D array"
        raise ValueError(f"{name} has shape {arr.shape}; expected {expected}.")
    return arr


def _fig(width: float = 6.0, height: float = 4.0) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def spectral_density_figure(
    grid: np.ndarray,
    density: np.ndarray,
    *,
    exact_eigenvalues: Optional[np.ndarray] = None,
    sigma: Optional[float] = None,
    title: str = "Hessian spectral density (SLQ)",
) -> Figure:
    """Log-scale density on ``grid``; the exact eigenvalues (if known) as a normalised histogram behind it."""
    grid = _series(grid, "grid")
    density = _series(density, "density", grid.size, like="grid")
    fig, ax = _fig()
    floor = 1e-12
    if exact_eigenvalues is not None:
        ev = _series(exact_eigenvalues, "exact_eigenvalues")
        ax.hist(ev, bins=120, range=(grid[0], grid[-1]), density=True, color="0.75", label=f"exact ({ev.size} eigenvalues)")
    label = "SLQ" + (f", Gaussian width {sigma:.2g}" if sigma else "")
    ax.plot(grid, np.maximum(density, floor), color="C0", lw=1.5, label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(floor, float(np.max(density)) * 1e-9))
    ax.set_xlabel("eigenvalue $\\lambda$ of the Hessian")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title)
    ax.legend()
    return fig


def eigenvalues_figure(values: np.ndarray, residuals: np.ndarray, *, title: str = "Extreme Hessian eigenvalues") -> Figure:
    """Ritz values with error bars of their residual norms ``||Hv - lambda v||``."""
    values = _series(values, "values")
    residuals = _series(residuals, "residuals", values.size, like="values")
    fig, ax = _fig()
    idx = np.arange(values.size)
    ax.errorbar(idx, values, yerr=residuals, fmt="o", capsize=3)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xticks(idx)
    ax.set_xlabel("Ritz pair (ascending)")
    ax.set_ylabel("eigenvalue $\\lambda$ (bars: residual norm)")
    ax.set_yscale("symlog", linthresh=max(1e-3, float(np.min(np.abs(values[values != 0]), initial=1.0))))
    ax.set_title(title)
    return fig


def curves_figure(
    steps: np.ndarray,
    curves: Mapping[str, np.ndarray],
    *,
    ylabel: str,
    title: str,
    log: bool = False,
    hlines: Sequence[tuple[float, str]] = (),
    xlabel: str = "training step",
) -> Figure:
    """Several named series against a common x axis (step), optionally on a log y scale."""
    steps = _series(steps, "steps")
    for name, y in curves.items():
        if np.ndim(y) != 1 or len(y) > steps.size:
            raise ValueError(f"curves[{name!r}] has shape {np.shape(y)}; expected at most {steps.size} points, "
                             "one per step.")
    fig, ax = _fig()
    for name, y in curves.items():
        ax.plot(steps[: len(y)], np.asarray(y), label=name)
    for value, name in hlines:
        ax.axhline(value, ls="--", color="0.4", lw=1.0, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return fig


def predicted_vs_actual_figure(
    predicted: np.ndarray, actual: np.ndarray, *, probe: Optional[tuple[np.ndarray, np.ndarray]] = None,
    title: str = "Eq. 8.10: predicted vs actual loss change",
) -> Figure:
    """Scatter of the second-order predicted loss change against the measured one, with the diagonal."""
    predicted = _series(predicted, "predicted")
    actual = _series(actual, "actual", predicted.size, like="predicted")
    if probe is not None:
        _series(probe[1], "probe[1]", _series(probe[0], "probe[0]").size, like="probe[0]")
    fig, ax = _fig(5.0, 5.0)
    ax.scatter(predicted, actual, s=10, alpha=0.6, label="monitored training steps")
    values = [predicted, actual]
    if probe is not None:
        ax.scatter(probe[0], probe[1], marker="x", color="C3", s=40, label="probe steps along -g")
        values += [np.asarray(probe[0]), np.asarray(probe[1])]
    allv = np.concatenate([v[np.isfinite(v)] for v in values])
    lim = float(np.max(np.abs(allv))) * 1.1 if allv.size else 1.0
    ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=1, ls="--", label="actual = predicted")
    linthresh = max(float(np.min(np.abs(allv[allv != 0]), initial=lim)), lim * 1e-6)
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_yscale("symlog", linthresh=linthresh)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("predicted change $\\frac{1}{2}\\epsilon^2 g^T H g - \\epsilon g^T g$ (nats, symlog)")
    ax.set_ylabel("actual change of the loss (nats, symlog)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def slices_figure(
    alphas: np.ndarray, slices: Mapping[str, np.ndarray], *, quadratic: Optional[Mapping[str, np.ndarray]] = None,
    title: str = "Loss along Hessian eigenvectors", xlabel: str = "step $\\alpha$ along the unit direction",
) -> Figure:
    """Measured 1-D loss slices (solid) with their second-order models (dashed, same colour)."""
    alphas = _series(alphas, "alphas")
    for group, series in (("slices", slices), ("quadratic", quadratic or {})):
        for name, values in series.items():
            _series(values, f"{group}[{name!r}]", alphas.size, like="alphas")
    fig, ax = _fig()
    for i, (name, values) in enumerate(slices.items()):
        ax.plot(alphas, values, color=f"C{i}", label=name)
        if quadratic and name in quadratic:
            ax.plot(alphas, quadratic[name], color=f"C{i}", ls="--", lw=1, label=f"{name}: quadratic model")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss (nats)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def landscape_2d_figure(
    alphas: np.ndarray, betas: np.ndarray, surface: np.ndarray, *,
    title: str = "Loss landscape, filter-normalised random directions",
) -> Figure:
    """Contours of ``log10(loss)`` over ``(alpha, beta)`` with the trained point at the origin."""
    alphas, betas = _series(alphas, "alphas"), _series(betas, "betas")
    if np.shape(surface) != (alphas.size, betas.size):
        raise ValueError(f"surface has shape {np.shape(surface)}; expected (len(alphas), len(betas)) = "
                         f"{(alphas.size, betas.size)}.")
    fig, ax = _fig(5.5, 4.5)
    z = np.log10(np.maximum(np.asarray(surface), 1e-12))
    cs = ax.contourf(alphas, betas, z.T, levels=30, cmap="viridis")
    ax.contour(alphas, betas, z.T, levels=15, colors="k", linewidths=0.3)
    ax.plot([0], [0], "r*", ms=10, label="trained parameters")
    fig.colorbar(cs, ax=ax, label="log$_{10}$ training loss (nats)")
    ax.set_xlabel("$\\alpha$ (direction 1)")
    ax.set_ylabel("$\\beta$ (direction 2)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return fig
