"""Helpers shared by the recurrent-family experiments: whole training loops in one ``lax.scan`` and figure
scaffolding (Agg backend).

The step is :func:`jaxdl.train.make_train_step`'s; only the loop differs from :func:`jaxdl.train.fit`, which
dispatches one jitted step per Python iteration: these experiments train small networks for thousands of full-batch
steps, so the loop is scanned and compiled once.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import matplotlib
import optax

from jaxdl.train import init_state, make_train_step

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PyTree = Any


def train_scan(loss_fn: Callable, optimizer: optax.GradientTransformation, params: PyTree, *batch, steps: int):
    """``steps`` full-batch steps of :func:`jaxdl.train.make_train_step` on ``loss_fn(params, *batch)`` in one
    ``lax.scan``; returns ``(params, losses)`` (the loss before each step). Jit or vmap the call site."""
    train_step = make_train_step(loss_fn, optimizer)

    def body(state, _):
        state, metrics = train_step(state, *batch)
        return state, metrics["loss"]

    state, losses = jax.lax.scan(body, init_state(params, optimizer), None, length=steps)
    return state.params, losses


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
