"""Damped inverse products ``(C + lambda I)^{-1} b`` of a curvature matrix by conjugate gradients (lineax).

The inverse-curvature products behind influence functions (Koh & Liang 2017), natural-gradient and Newton steps.
The solver is lineax's ``CG`` (not a hand-written one) run on a matrix-free operator whose product is the
library's curvature product plus ``damping * v``; the result carries lineax's iteration count and status and the
true relative residual ``||(C + lambda I) x - b|| / ||b||``, recomputed with one more product after the solve.

CG needs ``C + lambda I`` positive definite: the GGN and the Fishers are positive semi-definite, so any
``damping > 0`` works; the Hessian is indefinite away from a minimum, and CG on it may stall or return a poor
solution, which the residual then shows (nothing is clipped).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import lineax
from jax.flatten_util import ravel_pytree

from analysis._checks import check_like, check_number, check_positive_int
from analysis._objective import BlockSpec, block_mask, check_block, make_objective
from analysis.batches import checked_source
from analysis.curvatures import Curvature, with_curvature

PyTree = Any


class SolveResult(NamedTuple):
    """``solution`` of ``(C + damping I) x = b`` (params-shaped; zeros outside ``block``), the true relative
    ``residual``, lineax's ``num_steps`` and ``converged`` (lineax reported success: the tolerance was met within
    ``max_steps``)."""

    solution: PyTree
    residual: jax.Array
    num_steps: jax.Array
    converged: jax.Array


@functools.partial(jax.jit, static_argnames=("loss_fn", "rtol", "atol", "microbatched", "block", "max_steps"))
def _solve(loss_fn, params, rhs, batch, damping, rtol, atol, microbatched, block, max_steps):
    """``rhs`` is the flat right-hand side of the block, in the order of the block's flat parameters."""
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)

    def apply(v):
        return obj.hvp(obj.theta, v) + damping * v

    operator = lineax.FunctionLinearOperator(apply, jax.ShapeDtypeStruct(rhs.shape, rhs.dtype),
                                             tags=lineax.positive_semidefinite_tag)
    # lineax scales the residual entrywise by atol + rtol |b_i|; entries of b that are exactly zero (a pixel that is
    # never on) would make that scale zero and stop CG at once, so the 2-norm criterion is passed as one absolute
    # tolerance: ||r||_2 <= atol + rtol ||b||_2.
    tolerance = atol + rtol * jnp.linalg.norm(rhs)
    solver = lineax.CG(rtol=0.0, atol=tolerance, max_steps=max_steps, norm=lineax.internal.two_norm)
    sol = lineax.linear_solve(operator, rhs, solver, throw=False)
    residual = jnp.linalg.norm(apply(sol.value) - rhs) / jnp.linalg.norm(rhs)
    return obj.unravel(sol.value), residual, sol.stats["num_steps"], sol.result == lineax.RESULTS.successful


def curvature_solve(
    loss_fn: Callable,
    params: PyTree,
    b: PyTree,
    *batch: Any,
    damping: float,
    rtol: float = 1e-6,
    atol: float = 0.0,
    max_steps: Optional[int] = None,
    microbatched: bool = False,
    block: BlockSpec = None,
    curvature: Curvature = "hessian",
) -> SolveResult:
    """Solve ``(C + damping I) x = b`` by conjugate gradients, ``C`` the Hessian or another curvature matrix.

    Args:
      loss_fn, params, *batch, microbatched, block: as in :func:`analysis.dense_hessian` (arrays, not a data
        source: lineax runs the iteration inside one compiled function).
      b: right-hand side, a pytree like ``params`` (with ``block``, only its entries in the block are used).
      damping: ``lambda >= 0`` added to the diagonal.
      rtol, atol: lineax's stopping tolerances on the residual's 2-norm (``||r|| <= atol + rtol ||b||``).
      max_steps: CG iterations at most (default: lineax's, 10 times the dimension).
      curvature: ``"hessian"`` (default), or for a :func:`analysis.supervised_loss` ``"ggn"``, ``"fisher"``,
        ``"empirical_fisher"`` or :class:`analysis.MCFisher`.

    Returns:
      :class:`SolveResult`.

    Raises:
      ValueError / TypeError: a negative or non-finite ``damping``, ``rtol`` or ``atol``, both tolerances zero,
        ``max_steps < 1``, a ``b`` unlike ``params`` or zero, a data source, invalid inputs (see :func:`analysis.hvp`).

    Example:
      >>> loss = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * w**2)
      >>> curvature_solve(loss, jnp.zeros(2), jnp.ones(2), damping=1.0).solution
      Array([0.5 , 0.25], dtype=float32)
    """
    loss_fn = with_curvature(loss_fn, curvature)
    check_like(b, params, "b", same_dtype=True)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched, extra={"b": b})
    if source is not None:
        raise ValueError("curvature_solve runs CG inside one compiled function and cannot take an analysis.Batches "
                         "source; pass the batch arrays (or microbatched=True stacks).")
    damping = check_number(damping, "damping", minimum=0)
    rtol, atol = check_number(rtol, "rtol", minimum=0), check_number(atol, "atol", minimum=0)
    if rtol == 0 and atol == 0:
        raise ValueError("rtol=0 and atol=0: CG would never stop; give a positive tolerance.")
    if max_steps is not None:
        max_steps = check_positive_int(max_steps, "max_steps")
    block = check_block(params, block)
    rhs = ravel_pytree([leaf for leaf, m in zip(jax.tree_util.tree_leaves(b), block_mask(params, block)) if m])[0]
    if not bool(jnp.any(rhs != 0)):
        raise ValueError("b is zero (in the selected block); the solution is zero and the relative residual is "
                         "undefined.")
    return SolveResult(*_solve(loss_fn, params, rhs, batch, damping, rtol, atol, microbatched, block, max_steps))
