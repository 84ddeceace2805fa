"""Traces of matrix functions by stochastic Lanczos quadrature: ``log det(C + lambda I)`` and
``tr((C + lambda I)^{-1})``, with standard errors.

``tr f(A) ~ mean_j ||z_j||^2 e_1^T f(T_j) e_1`` over Rademacher probes ``z_j`` (Ubaru, Chen & Saad 2017), ``T_j``
the Lanczos matrix of ``num_matvecs`` steps from ``z_j`` (:func:`analysis.lanczos.lanczos_ritz`, full
reorthogonalisation, the quadrature of :mod:`analysis.density`). The standard error is the spread over probes; the
quadrature's own (deterministic) error falls geometrically with ``num_matvecs`` for a smooth ``f`` on the spectrum.
``f`` needs ``C + lambda I`` positive definite: a non-positive Ritz value makes the estimate NaN, not a number.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from analysis._checks import check_key, check_number, check_positive_int
from analysis._objective import BlockSpec, check_block, make_objective
from analysis.batches import checked_source
from analysis.curvatures import Curvature, with_curvature
from analysis.density import quadrature
from analysis.hessian import num_params
from analysis.lanczos import lanczos_ritz
from analysis.trace import TraceEstimate

PyTree = Any


def _positive_log(x):
    return jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1)), jnp.nan)


def _positive_reciprocal(x):
    return jnp.where(x > 0, 1 / jnp.where(x > 0, x, 1), jnp.nan)


FUNCTIONS = {"logdet": _positive_log, "inverse_trace": _positive_reciprocal}


@functools.partial(jax.jit, static_argnames=("loss_fn", "function", "num_matvecs", "num_probes", "microbatched",
                                             "block"))
def _slq(loss_fn, params, batch, key, damping, function, num_matvecs, num_probes, microbatched, block):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    theta, f = obj.theta, FUNCTIONS[function]
    probes = jax.random.rademacher(key, (num_probes, theta.shape[0]), theta.dtype)

    def one(z):
        ritz, S, _ = lanczos_ritz(lambda v: obj.hvp(theta, v) + damping * v, z, num_matvecs)
        nodes, weights = quadrature(ritz, S[0, :], ritz.dtype)
        return jnp.vdot(z, z).astype(ritz.dtype) * jnp.sum(jnp.where(weights > 0, weights * f(nodes), 0))

    samples = jax.lax.map(one, probes)
    return jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(num_probes)


def _estimate(function, loss_fn, params, batch, damping, num_matvecs, num_probes, key, microbatched, block,
              curvature):
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched)
    if source is not None:
        raise ValueError(f"{function} runs its Lanczos recurrences inside one compiled function and cannot take an "
                         "analysis.Batches source; pass the batch arrays (or microbatched=True stacks).")
    damping = check_number(damping, "damping", minimum=0)
    num_matvecs = check_positive_int(num_matvecs, "num_matvecs")
    num_probes = check_positive_int(num_probes, "num_probes", minimum=2)
    block = check_block(params, block)
    n = num_params(params, block)
    if num_matvecs > n:
        raise ValueError(f"num_matvecs={num_matvecs} exceeds the number of parameters n={n}.")
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    est, sem = _slq(loss_fn, params, batch, key, damping, function, num_matvecs, num_probes, microbatched, block)
    return TraceEstimate(est, sem, num_matvecs * num_probes, "slq")


def curvature_logdet(
    loss_fn: Callable, params: PyTree, *batch: Any, damping: float = 0.0, num_matvecs: int = 30,
    num_probes: int = 10, key: Optional[jax.Array] = None, microbatched: bool = False, block: BlockSpec = None,
    curvature: Curvature = "hessian",
) -> TraceEstimate:
    """``log det(C + damping I)`` by stochastic Lanczos quadrature, with a standard error.

    Args:
      loss_fn, params, *batch, microbatched, block: as in :func:`analysis.dense_hessian` (arrays, not a source).
      damping: ``lambda >= 0``; ``C + lambda I`` must be positive definite (the GGN or a Fisher with
        ``damping > 0``; the Hessian at a strict minimum).
      num_matvecs: Lanczos steps per probe (at most ``n``).
      num_probes: Rademacher probes (at least 2, for the standard error).
      key: PRNG key (default ``PRNGKey(0)``).
      curvature: as in :func:`analysis.hessian_eigs`.

    Returns:
      :class:`analysis.TraceEstimate` (``method="slq"``, ``num_matvecs`` = steps x probes); NaN if a Ritz value is
      not positive.

    Raises:
      ValueError / TypeError: negative or non-finite ``damping``, ``num_matvecs`` outside ``[1, n]``,
        ``num_probes < 2``, a data source, invalid inputs (see :func:`analysis.hvp`).

    Example:
      >>> loss = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 2.0, 4.0]) * w**2)
      >>> round(float(curvature_logdet(loss, jnp.ones(3), num_matvecs=3).estimate), 4)  # log 8
      2.0794
    """
    return _estimate("logdet", loss_fn, params, batch, damping, num_matvecs, num_probes, key, microbatched, block,
                     curvature)


def curvature_inverse_trace(
    loss_fn: Callable, params: PyTree, *batch: Any, damping: float = 0.0, num_matvecs: int = 30,
    num_probes: int = 10, key: Optional[jax.Array] = None, microbatched: bool = False, block: BlockSpec = None,
    curvature: Curvature = "hessian",
) -> TraceEstimate:
    """``tr((C + damping I)^{-1})`` by stochastic Lanczos quadrature, with a standard error (arguments as
    :func:`curvature_logdet`).

    Example:
      >>> loss = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 2.0, 4.0]) * w**2)
      >>> round(float(curvature_inverse_trace(loss, jnp.ones(3), num_matvecs=3).estimate), 4)  # 1 + 1/2 + 1/4
      1.75
    """
    return _estimate("inverse_trace", loss_fn, params, batch, damping, num_matvecs, num_probes, key, microbatched,
                     block, curvature)
