"""Pure, jitted training over optax: ``train_step(state, *batch) -> (state, metrics)`` and a small driver.

State is an explicit pytree returned anew each step (STYLE.md rule 5); shuffling is deterministic in the PRNG key;
monitors from ``analysis.monitor`` plug into :func:`fit` and see the state before and after each step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

PyTree = Any
OPTIMIZERS = ("sgd", "momentum", "adam")


class TrainState(NamedTuple):
    params: PyTree
    opt_state: PyTree
    step: jax.Array


def make_optimizer(
    name: str = "sgd", learning_rate: float = 0.1, *, momentum: float = 0.9, clip_norm: Optional[float] = None
) -> optax.GradientTransformation:
    """An optax optimizer by name, validated before anything is built.

    Args:
      name: ``"sgd"``, ``"momentum"`` (heavy ball) or ``"adam"``.
      learning_rate: positive step size.
      momentum: in [0, 1) for ``"momentum"``.
      clip_norm: if given (positive), gradients are first clipped to this global norm (``clip_by_global_norm``).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is unknown; expected one of {', '.join(OPTIMIZERS)}.")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate={learning_rate!r} is invalid; expected a positive number.")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum={momentum} is invalid; expected a value in [0, 1).")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm={clip_norm} is invalid; expected a positive global norm or None.")
    if name == "sgd":
        opt = optax.sgd(learning_rate)
    elif name == "momentum":
        opt = optax.sgd(learning_rate, momentum=momentum)
    else:
        opt = optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm is not None else opt


def init_state(params: PyTree, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted ``train_step(state, *batch) -> (state, {"loss", "grad_norm"})`` (loss before the update)."""

    @jax.jit
    def train_step(state: TrainState, *batch):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, *batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return train_step


def softmax_cross_entropy(apply: Callable) -> Callable:
    """``loss_fn(params, x, y)``: mean softmax cross-entropy of ``apply(params, x)`` against integer labels."""

    def loss_fn(params, x, y):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(params, x), y))

    return loss_fn


def accuracy(apply: Callable) -> Callable:
    """``accuracy_fn(params, x, y)``: fraction of argmax predictions equal to the labels."""

    @jax.jit
    def accuracy_fn(params, x, y):
        return jnp.mean(jnp.argmax(apply(params, x), axis=-1) == y)

    return accuracy_fn
