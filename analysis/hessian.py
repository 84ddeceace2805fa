"""Hessian-vector products and exact (dense) Hessians of ``loss_fn(params, *batch)``.

The data may be one :class:`analysis.Batches` source: a product is then one pass over it, and the dense Hessian too
(each batch's Hessian is computed whole and accumulated with its weight).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from analysis._checks import check_like, check_positive_int
from analysis._convolutions import for_backend
from analysis._objective import BlockSpec, block_mask, check_block, flat_view, make_objective, source_matmat
from analysis.batches import checked_source
from analysis.curvatures import Curvature, curvature_of, with_curvature

PyTree = Any


@functools.partial(jax.jit, static_argnames=("loss_fn", "microbatched"))
def _hvp_tree(loss_fn, params, v, batch, microbatched):
    @for_backend  # convolutions in the layout XLA:CPU keeps fast inside the microbatch scan
    def hvp_one(*mb):
        return jax.jvp(lambda p: jax.grad(loss_fn)(p, *mb), (params,), (v,))[1]

    if not microbatched:
        return hvp_one(*batch)
    count = jax.tree_util.tree_leaves(batch)[0].shape[0]
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)

    def body(acc, mb):
        return jax.tree_util.tree_map(jnp.add, acc, hvp_one(*mb)), None

    total, _ = jax.lax.scan(body, zero, batch)
    return jax.tree_util.tree_map(lambda t: t / count, total)


def hvp(loss_fn: Callable, params: PyTree, v: PyTree, *batch: Any, microbatched: bool = False,
        curvature: Curvature = "hessian") -> PyTree:
    """Hessian-vector product ``H v`` by forward-over-reverse differentiation (``jvp`` of ``grad``), or the product
    with another curvature matrix of a supervised loss (``curvature=``).

    Costs about one gradient evaluation (1.2x on the digits MLP, see BENCHMARKS.md) and never forms ``H``.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar``.
      params: any pytree of floating-point arrays.
      v: a pytree with the structure, shapes and dtypes of ``params``, finite.
      *batch: data arrays, passed to ``loss_fn`` after ``params``, or one :class:`analysis.Batches` (the product
        of the weighted mean loss over its batches: the full-data mean loss's for a mean ``loss_fn``).
      microbatched: every batch array has a leading microbatch axis; the product is averaged over it.
      curvature: ``"hessian"`` (default), or for a :func:`analysis.supervised_loss` ``"ggn"``, ``"fisher"``,
        ``"empirical_fisher"`` or :class:`analysis.MCFisher` (see ``analysis/curvatures.py``).

    Returns:
      ``H v`` with the structure of ``params``.

    Raises:
      ValueError / TypeError: for a mismatched ``v``, NaN/inf in ``params``, ``v`` or the data, an empty batch, a
        loss that fails on the batch's shapes or does not return a scalar.

    Example:
      >>> loss = lambda p, x: jnp.sum(p["w"] ** 2 * x)
      >>> hvp(loss, {"w": jnp.ones(3)}, {"w": jnp.ones(3)}, jnp.arange(3.0))["w"]
      Array([0., 2., 4.], dtype=float32)
    """
    check_like(v, params, same_dtype=True)
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched, extra={"v": v})
    if source is not None:
        theta, unravel = flat_view(params, None)
        flat_v = ravel_pytree(v)[0].astype(theta.dtype)
        return unravel(source_matmat(source._run(loss_fn, params, "hvp"), None)(flat_v[None])[0])
    if curvature_of(loss_fn) != "hessian":
        return _curvature_product_tree(loss_fn, params, v, batch, microbatched)
    return _hvp_tree(loss_fn, params, v, batch, microbatched)


@functools.partial(jax.jit, static_argnames=("loss_fn", "microbatched"))
def _curvature_product_tree(loss_fn, params, v, batch, microbatched):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched)
    return obj.unravel(obj.hvp(obj.theta, ravel_pytree(v)[0].astype(obj.theta.dtype)))


@functools.partial(jax.jit, static_argnames=("loss_fn", "microbatched", "block", "block_size"))
def _dense_hessian(loss_fn, params, batch, microbatched, block, block_size):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    return _hessian_rows(obj, block_size)


def _dense_hessian_term(loss_fn, params, operand, batch, *, block, block_size):
    """Per-batch term of a data source: that batch's whole Hessian (one pass then gives the dense Hessian)."""
    return _hessian_rows(make_objective(loss_fn, params, batch, block=block), block_size)


def _hessian_rows(obj, block_size):
    n = obj.theta.shape[0]

    def column(i):
        return obj.hvp(obj.theta, jax.nn.one_hot(i, n, dtype=obj.theta.dtype))

    # Rows H e_i, computed block_size at a time: peak memory is the (n, n) result plus block_size products.
    return jax.lax.map(column, jnp.arange(n), batch_size=min(block_size, n))


def dense_hessian(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    microbatched: bool = False,
    block: BlockSpec = None,
    block_size: int = 64,
    curvature: Curvature = "hessian",
) -> jax.Array:
    """The exact ``(n, n)`` Hessian (or another curvature matrix, ``curvature=``) in ``ravel_pytree`` order.

    Built from ``n`` Hessian-vector products against basis vectors, ``block_size`` of them vectorised at a time, so
    memory stays at the result plus ``block_size`` products (10,000 parameters: 400 MB in float32).

    Args:
      loss_fn, params, *batch, microbatched: as in :func:`hvp` (with a :class:`analysis.Batches`, one pass over it).
      block: restrict to a sub-tree of parameters (e.g. ``"layers/0"``; see :func:`analysis.layer_blocks`); the
        others are held fixed. The order is then ``ravel_pytree`` of the selected leaves.
      block_size: basis vectors per vectorised batch of products.
      curvature: ``"hessian"`` (default), or for a :func:`analysis.supervised_loss` ``"ggn"``, ``"fisher"``,
        ``"empirical_fisher"`` or :class:`analysis.MCFisher` (see ``analysis/curvatures.py``).

    Returns:
      ``H`` with ``H[i, j] = d^2 loss / d theta_i d theta_j``.

    Example:
      >>> dense_hessian(lambda p, x: jnp.sum(x * p**3), jnp.ones(2), jnp.array([1.0, 2.0]))
      Array([[ 6.,  0.],
             [ 0., 12.]], dtype=float32)
    """
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched)
    block = check_block(params, block)
    block_size = check_positive_int(block_size, "block_size")
    if source is not None:
        run = source._run(loss_fn, params, "dense_hessian")
        return run.accumulate(_dense_hessian_term, None, (("block", block), ("block_size", block_size)))
    return _dense_hessian(loss_fn, params, batch, microbatched, block, block_size)


def num_params(params: PyTree, block: BlockSpec = None) -> int:
    """Number of scalar parameters (of ``block`` if given)."""
    mask = block_mask(params, block)
    return int(sum(jnp.size(leaf) for leaf, m in zip(jax.tree_util.tree_leaves(params), mask) if m))


def hessian_spectrum(
    loss_fn: Callable, params: PyTree, *batch: Any, microbatched: bool = False, block: BlockSpec = None,
    block_size: int = 64, curvature: Curvature = "hessian",
) -> jax.Array:
    """All eigenvalues of the exact Hessian (or ``curvature``), ascending (``eigvalsh`` of :func:`dense_hessian`)."""
    H = dense_hessian(loss_fn, params, *batch, microbatched=microbatched, block=block, block_size=block_size,
                      curvature=curvature)
    return _eigvalsh_sym(H)


@jax.jit
def _eigvalsh_sym(H):
    return jnp.linalg.eigvalsh(0.5 * (H + H.T))

