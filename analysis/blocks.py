"""Every block's curvature in one compiled program: the top eigenvalue and the trace of each diagonal block.

For blocks ``b`` with 0/1 masks ``m_b`` over the flat parameters, the diagonal block ``H_bb`` acts as the masked
operator ``v -> m_b * H (m_b * v)`` on the full vector: it is ``H_bb`` on the block's coordinates and zero elsewhere,
so its nonzero spectrum and its trace are those of ``H_bb``. Each block runs Lanczos from a masked start vector
(the Krylov space never leaves the block) and Hutch++ with masked probes; the masks are arguments of one compiled
program, vectorised over blocks (``vmap``, ``batch_size`` blocks at a time), so a network with ten layers compiles
once, not twenty times, and each Hessian-vector product serves ``batch_size`` blocks.

Over a data source (:class:`analysis.Batches`) the blocks run in lockstep from the host and share every pass over
the data: ``num_matvecs`` passes for all the Lanczos recurrences, one for all the residuals and three for all the
Hutch++ stages (:func:`analysis.trace.hutch_plus_plus_stacked` with one group per block), with the same start
vector and probes as over arrays.

A block smaller than ``num_matvecs`` exhausts its Krylov space: :func:`analysis.lanczos.tridiagonal_eigh` keeps the
valid part, which then holds the block's exact spectrum. Hutch++ with a sketch at least as large as the block is
exact in the same way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from analysis._checks import check_key, check_positive_int
from analysis._objective import block_mask, flat_dtype, flat_view, make_objective, source_matmat
from analysis.batches import checked_source
from analysis.curvatures import Curvature, with_curvature
from analysis.density import default_probe_batch
from analysis.hessian import num_params
from analysis.lanczos import lanczos_ritz, lanczos_ritz_stacked, residual_norms, ritz_pairs
from analysis.trace import hutch_plus_plus, hutch_plus_plus_stacked

PyTree = Any


class BlockCurvature(NamedTuple):
    """Per block, in the order given: its size, top eigenvalue with the residual of its Ritz vector, and Hutch++
    trace with its standard error (arrays of one entry per block)."""

    names: tuple[str, ...]
    num_params: tuple[int, ...]
    top_eigenvalue: jax.Array
    top_residual: jax.Array
    trace: jax.Array
    trace_standard_error: jax.Array


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_matvecs", "trace_matvecs", "batch_size"))
def _block_curvature(loss_fn, params, batch, masks, eig_key, trace_key, num_matvecs, trace_matvecs, batch_size):
    obj = make_objective(loss_fn, params, batch)
    theta = obj.theta
    start = jax.random.normal(eig_key, theta.shape, theta.dtype)

    def one(mask):
        def product(v):
            return mask * obj.hvp(theta, mask * v)

        ritz, S, Q = lanczos_ritz(product, mask * start, num_matvecs)
        value, vector = ritz_pairs(ritz, S, Q, 1, "largest", num_matvecs)
        residual = residual_norms(product(vector[0])[None], value, vector)[0]
        trace, error = hutch_plus_plus(product, trace_key, theta, trace_matvecs, 8)
        return value[0], residual, trace, error

    return jax.lax.map(one, masks, batch_size=batch_size)


@functools.partial(jax.jit, static_argnums=1)
def _masked(masks, rows_per_block, U):
    """``m_b * U`` for rows grouped by block (``rows_per_block`` consecutive rows per block)."""
    return jnp.repeat(masks, rows_per_block, axis=0) * U


_top_pairs = jax.jit(jax.vmap(ritz_pairs, in_axes=(0, 0, 0, None, None, None)), static_argnums=(3, 4, 5))
_top_residuals = jax.jit(jax.vmap(residual_norms))


def _block_curvature_source(run, params, masks, eig_key, trace_key, num_matvecs, trace_matvecs, batch_size):
    """:func:`_block_curvature` over a data source: every pass multiplies one stack of vectors of all blocks."""
    theta, _ = flat_view(params, None)
    matmat = source_matmat(run, None, batch_size)
    blocks = masks.shape[0]

    def product(U):  # rows grouped by block, each through its masked operator
        rows = U.shape[0] // blocks
        return _masked(masks, rows, matmat(_masked(masks, rows, U)))

    start = jax.random.normal(eig_key, theta.shape, theta.dtype)
    ritz, S, Q = lanczos_ritz_stacked(product, _masked(masks, 1, jnp.broadcast_to(start, masks.shape)), num_matvecs)
    values, vectors = _top_pairs(ritz, S, Q, 1, "largest", num_matvecs)  # (blocks, 1) and (blocks, 1, n)
    residuals = _top_residuals(product(vectors[:, 0])[:, None], values, vectors)
    trace, error = hutch_plus_plus_stacked(product, trace_key, theta, trace_matvecs, blocks)
    return values[:, 0], residuals[:, 0], trace, error


def block_curvature(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    blocks: dict[str, Sequence[str]],
    num_matvecs: int = 40,
    trace_matvecs: int = 30,
    key: Optional[jax.Array] = None,
    batch_size: Optional[int] = None,
    curvature: Curvature = "hessian",
) -> BlockCurvature:
    """Top eigenvalue and trace of every diagonal Hessian block, in one compiled program.

    Args:
      loss_fn, params, *batch: as in :func:`analysis.dense_hessian`; the data may be one :class:`analysis.Batches`
        (``num_matvecs + 4`` passes over it, shared by all blocks; see the module notes).
      blocks: ``{name: block}`` with each ``block`` a valid ``block=`` argument (a path prefix or a sequence of
        them, see :func:`analysis.layer_blocks`); the blocks may overlap.
      num_matvecs: Lanczos steps per block (at most ``n``; a smaller block is solved exactly, see the module notes).
      trace_matvecs: Hutch++ products per block (at least 4).
      key: PRNG key (default ``PRNGKey(0)``): one start vector and one set of probes, each masked per block.
      batch_size: blocks vectorised together (memory of ``batch_size`` Krylov bases of ``num_matvecs + 1`` rows of
        ``n``). Default: all blocks while their bases total at most 1 GiB, else as many as fit. Over a data source
        all the bases are held (the blocks run in lockstep) and ``batch_size`` is the number of products vectorised
        per batch.
      curvature: as in :func:`analysis.hessian_eigs`.

    Returns:
      :class:`BlockCurvature`.

    Raises:
      ValueError / TypeError: no blocks, a block that selects nothing, ``num_matvecs`` above ``n``, too few
        ``trace_matvecs``, an invalid key, invalid inputs (see :func:`analysis.hvp`).
    """
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=False)
    if not isinstance(blocks, dict) or not blocks:
        raise ValueError(f"blocks={blocks!r} is invalid; expected a non-empty dict {{name: block}}, e.g. "
                         "analysis.layer_blocks(params).")
    n = num_params(params)
    num_matvecs = check_positive_int(num_matvecs, "num_matvecs")
    if num_matvecs > n:
        raise ValueError(f"num_matvecs={num_matvecs} exceeds the number of parameters n={n}.")
    trace_matvecs = check_positive_int(trace_matvecs, "trace_matvecs", minimum=4)
    if trace_matvecs // 3 > n:
        raise ValueError(f"trace_matvecs={trace_matvecs}: the Hutch++ sketch of {trace_matvecs // 3} exceeds n={n}.")
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    leaves = jax.tree_util.tree_leaves(params)
    dtype = flat_dtype(params)
    masks, sizes = [], []
    for block in blocks.values():
        chosen = block_mask(params, tuple(block) if isinstance(block, list) else block)
        masks.append(jnp.concatenate([jnp.full(jnp.size(leaf), c, dtype) for leaf, c in zip(leaves, chosen)]))
        sizes.append(sum(int(jnp.size(leaf)) for leaf, c in zip(leaves, chosen) if c))
    masks = jnp.stack(masks)
    if batch_size is None:  # the rule of spectral_density: bases of num_matvecs + 1 rows within the budget
        batch_size = default_probe_batch(len(blocks), num_matvecs + 1, n, dtype.itemsize)
    batch_size = check_positive_int(batch_size, "batch_size")
    eig_key, trace_key = jax.random.split(key)
    if source is not None:
        top, residual, trace, error = _block_curvature_source(
            source._run(loss_fn, params, "block_curvature"), params, masks, eig_key, trace_key, num_matvecs,
            trace_matvecs, batch_size)
        return BlockCurvature(tuple(blocks), tuple(sizes), top, residual, trace, error)
    top, residual, trace, error = _block_curvature(loss_fn, params, batch, masks, eig_key, trace_key, num_matvecs,
                                                   trace_matvecs, batch_size)
    return BlockCurvature(tuple(blocks), tuple(sizes), top, residual, trace, error)
