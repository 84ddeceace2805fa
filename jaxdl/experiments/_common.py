"""What the experiments share: figure scaffolding (matplotlib, Agg backend), plot data for the metrics, and the
small statistics their verdicts quote (log-log slopes, rank correlations, errors)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 5.0, height: float = 3.8):
    """``(fig, axes)``: a constrained-layout figure with ``nrows x ncols`` axes of ``width x height`` inches each,
    ``axes`` a flat list."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained",
                             squeeze=False)
    return fig, list(axes.ravel())


def plot_data(values, digits: int = 5) -> np.ndarray:
    """Plot data for the metrics: float64 rounded to ``digits`` significant digits (invisible in a figure, short in
    ``results.json``)."""
    a = np.asarray(values, np.float64)
    finite = np.isfinite(a) & (a != 0)
    magnitude = np.floor(np.log10(np.abs(np.where(finite, a, 1.0))))
    scale = 10.0 ** (digits - 1 - magnitude)
    return np.where(finite, np.round(a * scale) / scale, a)


def tile(images, rows: int, cols: int, side: int = 8, pad: float = np.nan) -> np.ndarray:
    """``rows x cols`` tiles of flattened ``side x side`` images in one array, separated by one ``pad`` pixel."""
    images = np.asarray(images, np.float64)[: rows * cols]
    out = np.full((rows * (side + 1) - 1, cols * (side + 1) - 1), pad)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (side + 1) : r * (side + 1) + side, c * (side + 1) : c * (side + 1) + side] = img.reshape(side, side)
    return out


def image_grid(images, *, rows: int, cols: int, title: str, side: int = 8, symmetric: bool = False,
               row_labels: Sequence[str] = ()) -> Figure:
    """``rows x cols`` tiles of ``side x side`` images (rows of ``images`` flattened) drawn as one image: values 0
    (white) to 1 (black), or a diverging scale symmetric about 0 (filters) when ``symmetric``."""
    grid = tile(images, rows, cols, side)
    fig, ax = plt.subplots(figsize=(0.45 * cols + 1.2, 0.45 * rows + 0.8), layout="constrained")
    if symmetric:
        vmax = float(np.nanmax(np.abs(grid)))
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    else:
        cmap = plt.get_cmap("gray_r").copy()
        cmap.set_bad("#8fb3d9")  # separators
        ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([(side + 1) * r + side / 2 - 0.5 for r in range(len(row_labels))], list(row_labels))
    ax.set_title(title, fontsize=10)
    return fig


def curves(x, series: Mapping[str, np.ndarray], *, xlabel: str, ylabel: str, title: str,
           hlines: Sequence[tuple[float, str]] = (), logx: bool = False, logy: bool = False,
           ylim: tuple[float, float] | None = None) -> Figure:
    """Named series against ``x`` with optional reference lines; log axes on request."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
    for name, y in series.items():
        ax.plot(np.asarray(x)[: len(y)], np.asarray(y), label=name, marker="o" if len(y) < 15 else None)
    for i, (value, name) in enumerate(hlines):
        ax.axhline(value, ls="--", lw=1.0, color=f"C{(i + len(series)) % 10}", label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x`` in float64 (``nan`` for fewer than two points)."""
    if len(x) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64)), 1)[0])


def spearman(a, b) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (scipy)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def rmse(pred, target) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)))


def r2(pred, target) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (per-column means for ``SS_tot``)."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return float(1.0 - np.sum((pred - target) ** 2) / np.sum((target - target.mean(0)) ** 2))
