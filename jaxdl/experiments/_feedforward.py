"""Small helpers shared by the feedforward-family experiments (XOR, universal approximation, depth, dropout,
autoencoders): full-batch training inside one ``lax.scan``, seeds stacked for ``vmap``, and figure scaffolding.

These experiments train dozens of small networks for thousands of steps, so instead of :func:`jaxdl.train.fit`
(one jitted step per Python iteration) the whole loop of :func:`jaxdl.train.make_train_step` steps is scanned and
the networks are vmapped: ``fit`` is :func:`jaxdl.train.train_scan`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import matplotlib
import optax
from flax import nnx

from jaxdl.train import train_scan as fit  # noqa: F401 - re-exported for the experiments

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PyTree = Any


def fit_lbfgs(loss_fn: Callable, params: PyTree, *batch, steps: int):
    """``steps`` iterations of optax's L-BFGS (zoom line search) on ``loss_fn(params, *batch)`` in one ``lax.scan``;
    for small smooth problems that first-order methods converge on too slowly (a linear autoencoder's principal
    subspace). Returns ``(params, losses)``."""
    optimizer = optax.lbfgs()

    def value_fn(p):
        return loss_fn(p, *batch)

    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def step(carry, _):
        p, state = carry
        value, grads = value_and_grad(p, state=state)
        updates, state = optimizer.update(grads, state, p, value=value, grad=grads, value_fn=value_fn)
        return (optax.apply_updates(p, updates), state), value

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params, losses


def stack(trees: Sequence[PyTree]) -> PyTree:
    """Stack a list of identically shaped pytrees along a new leading axis (one network per seed, for vmap)."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def init_stack(params: PyTree, key: jax.Array, num: int) -> PyTree:
    """``num`` fresh initialisations of the ``nnx.Linear`` parameters in ``params``, stacked on a leading axis.

    Kernels are drawn as Flax's ``nnx.Linear`` default does (LeCun normal, ``lecun_normal()``) and biases are zero,
    so this equals building ``num`` models with different seeds, at the cost of one compiled function instead of
    ``num`` eager constructions.
    """
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


def figure(ncols: int = 1, *, width: float = 5.0, height: float = 3.8):
    """A constrained-layout figure with ``ncols`` axes side by side."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained", squeeze=False)
    return fig, list(axes[0])


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    lx, ly = jnp.log(jnp.asarray(x, jnp.float32)), jnp.log(jnp.asarray(y, jnp.float32))
    return float(jnp.polyfit(lx, ly, 1)[0])
