"""Helpers shared by the recurrent-family experiments: whole training loops in one ``lax.scan`` and figure
scaffolding (Agg backend)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import matplotlib
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PyTree = Any


def train_scan(loss_fn: Callable, optimizer: optax.GradientTransformation, params: PyTree, *batch, steps: int):
    """``steps`` full-batch optimizer steps of ``loss_fn(params, *batch)`` in one ``lax.scan``; returns
    ``(params, losses)`` (the loss before each step). Jit or vmap the call site."""

    def step(carry, _):
        p, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params, losses


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
