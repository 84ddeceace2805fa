"""Helpers shared by the recurrent-family experiments: the scanned training loop (:func:`jaxdl.train.train_scan`,
re-exported), masked losses, metrics and figure scaffolding (Agg backend).

These experiments train small networks for thousands of full-batch steps, so the loop is scanned and compiled once
rather than dispatched step by step as :func:`jaxdl.train.fit` does.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import matplotlib

from jaxdl.train import train_scan as train_scan  # noqa: F401 - re-exported for the experiments

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def masked_mse(apply: Callable) -> Callable:
    """``loss(params, x, y, mask)``: mean squared error over the masked steps of ``apply(params, x)``."""

    def loss(params, x, y, mask):
        err = jnp.sum((apply(params, x) - y) ** 2, axis=-1)
        return jnp.sum(err * mask) / jnp.sum(mask)

    return loss


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.5, height: float = 3.6):
    """``(fig, axes)`` with ``axes`` a flat list, constrained layout."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained",
                             squeeze=False)
    return fig, list(axes.ravel())


def rmse(pred, target) -> float:
    return float(jnp.sqrt(jnp.mean((jnp.asarray(pred) - jnp.asarray(target)) ** 2)))


def r2(pred, target) -> float:
    target = jnp.asarray(target)
    return float(1.0 - jnp.sum((pred - target) ** 2) / jnp.sum((target - target.mean(0)) ** 2))
