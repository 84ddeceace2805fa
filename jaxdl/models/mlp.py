"""Multilayer perceptron in Flax NNX with a pure ``apply(params, x)`` boundary."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.objective import _listing, non_param_state

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "identity": lambda x: x,
}


class MLP(nnx.Module):
    """Dense layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them, linear output.

    Example:
      >>> model = MLP([64, 32, 32, 10], rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((5, 64))).shape
      (5, 10)
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "tanh", rngs: nnx.Rngs, dtype=jnp.float32):
        sizes = list(sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
            raise ValueError(f"sizes={sizes} is invalid; expected at least two positive integer layer widths.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is unknown; expected one of {sorted(ACTIVATIONS)}.")
        self.activation = activation
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, dtype=dtype, param_dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


def split(model: nnx.Module):
    """``(apply, params)``: a pure ``apply(params, x)`` and the parameter ``State`` of an NNX model.

    Only for models whose state is all ``nnx.Param``. A model with BatchNorm statistics, RNG streams (Dropout) or
    other variables raises ``ValueError`` pointing to :func:`jaxdl.models.curvature_objective`, which holds that
    state fixed and asks which BatchNorm and Dropout mode to differentiate.
    """
    other = non_param_state(model)
    if other:
        kinds = sorted({type(v).__name__ for _, v in other})
        raise ValueError(
            f"{type(model).__name__} has state that is not nnx.Param ({_listing(other)}); split covers parameter-only "
            f"models. For a model with {'/'.join(kinds)} use jaxdl.models.curvature_objective(model, loss, "
            "batch_norm='running' or 'batch', dropout='off' or a key), which differentiates the nnx.Param leaves "
            "only and holds the rest fixed."
        )
    graphdef, params = nnx.split(model, nnx.Param)

    def apply(p, x):
        return nnx.merge(graphdef, p)(x)

    return apply, params
