"""Initial parameters chosen by hand: MLPs with a named initialization scheme, and many initializations stacked on
a leading axis (one network per seed or configuration, trained together under ``jax.vmap``).

The values are drawn from a NumPy generator (or by one compiled function): a few milliseconds instead of seconds of
eager Flax initialisation, and bit for bit the same values for the same seed.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from analysis._checks import check_choice, check_key, check_number, check_positive_int
from jaxdl.models.mlp import MLP, split

PyTree = Any
SCHEMES = ("lecun", "he", "zeros", "constant")


def initialize_mlp(
    sizes: Sequence[int],
    *,
    scheme: str = "lecun",
    activation: str = "tanh",
    seed: int = 0,
    constant: float = 0.0,
    hidden_bias: float = 0.0,
    dtype=jnp.float32,
):
    """An :class:`jaxdl.models.MLP` with chosen initial values, as ``(apply, params)``.

    Args:
      sizes: layer widths, e.g. ``[64, 32, 32, 10]``.
      scheme: kernels drawn ``N(0, 1/fan_in)`` (``"lecun"``), ``N(0, 2/fan_in)`` (``"he"``), all zero
        (``"zeros"``) or all equal to ``constant`` (``"constant"``).
      activation: the MLP's hidden activation.
      seed: NumPy generator seed of the random schemes (same seed, same bits).
      constant: the kernel value of ``scheme="constant"``.
      hidden_bias: initial value of every hidden-layer bias (the output bias is zero).
      dtype: parameter dtype.

    Returns:
      ``(apply, params)`` as from :func:`jaxdl.models.split`.

    Raises:
      ValueError: unknown scheme or activation, invalid sizes, non-finite constant or bias.

    Example:
      >>> apply, params = initialize_mlp([2, 3, 1], scheme="constant", constant=0.5)
      >>> apply(params, jnp.ones((1, 2))).shape
      (1, 1)
    """
    check_choice(scheme, "scheme", SCHEMES)
    check_number(constant, "constant")
    check_number(hidden_bias, "hidden_bias")
    sizes = list(sizes)
    abstract = nnx.eval_shape(lambda: MLP(sizes, activation=activation, rngs=nnx.Rngs(0), dtype=dtype))
    apply, params = split(abstract)
    rng = np.random.default_rng(seed)
    layers = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if scheme in ("lecun", "he"):
            std = math.sqrt((1.0 if scheme == "lecun" else 2.0) / fan_in)
            kernel = rng.standard_normal((fan_in, fan_out)) * std
        else:
            kernel = np.full((fan_in, fan_out), constant if scheme == "constant" else 0.0)
        bias = np.full((fan_out,), hidden_bias if i < len(sizes) - 2 else 0.0)
        layers[i] = {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}
    nnx.replace_by_pure_dict(params, {"layers": layers})
    return apply, params


def stack(trees: Sequence[PyTree]) -> PyTree:
    """Stack a list of identically shaped pytrees along a new leading axis (one network per seed, for vmap)."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def init_stack(params: PyTree, key: jax.Array, num: int) -> PyTree:
    """``num`` fresh initialisations of the ``nnx.Linear`` parameters in ``params``, stacked on a leading axis.

    Kernels are drawn as Flax's ``nnx.Linear`` default does (LeCun normal, ``lecun_normal()``) and biases are zero,
    so this equals building ``num`` models with different seeds, at the cost of one compiled function instead of
    ``num`` eager constructions.
    """
    check_key(key)
    check_positive_int(num, "num", "initialisations")
    init = nnx.initializers.lecun_normal()
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)

    def one(k):
        new = []
        for i, (path, leaf) in enumerate(leaves):
            is_kernel = "kernel" in jax.tree_util.keystr(path)
            new.append(init(jax.random.fold_in(k, i), leaf.shape, leaf.dtype) if is_kernel
                       else jnp.zeros(leaf.shape, leaf.dtype))
        return jax.tree_util.tree_unflatten(treedef, new)

    return jax.jit(jax.vmap(one))(jax.random.split(key, num))
