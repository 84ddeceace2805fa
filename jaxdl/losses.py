"""Loss functions built from a pure ``apply(params, x)``: ``loss_fn(params, *batch) -> scalar`` for training and for
the curvature analysis alike."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def masked_mse(apply: Callable) -> Callable:
    """``loss_fn(params, x, y, mask)``: mean squared error of ``apply(params, x)`` over the steps where ``mask`` is 1
    (sequence tasks whose targets exist only at some steps)."""

    def loss_fn(params, x, y, mask):
        err = jnp.sum((apply(params, x) - y) ** 2, axis=-1)
        return jnp.sum(err * mask) / jnp.sum(mask)

    return loss_fn


def softmax_cross_entropy(apply: Callable) -> Callable:
    """``loss_fn(params, x, y)``: mean softmax cross-entropy of ``apply(params, x)`` against integer labels."""
    if not callable(apply):
        raise TypeError(f"apply must be callable, got {type(apply).__name__}.")

    def loss_fn(params, x, y):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(params, x), y))

    return loss_fn


def accuracy(apply: Callable) -> Callable:
    """``accuracy_fn(params, x, y)``: fraction of argmax predictions equal to the labels."""
    if not callable(apply):
        raise TypeError(f"apply must be callable, got {type(apply).__name__}.")

    @jax.jit
    def accuracy_fn(params, x, y):
        return jnp.mean(jnp.argmax(apply(params, x), axis=-1) == y)

    return accuracy_fn
