"""Extreme Hessian eigenpairs by Lanczos with full reorthogonalisation (matfree ``tridiag_sym``)."""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import matfree.decomp

from analysis._checks import check_bool, check_choice, check_inputs, check_key, check_positive_int
from analysis._objective import BlockSpec, check_block, make_objective
from analysis.hessian import num_params

PyTree = Any
WHICH = ("largest", "smallest", "both", "magnitude")


class HessianEigs(NamedTuple):
    """Ritz pairs of the Hessian.

    Attributes:
      eigenvalues: ``(k,)`` ascending (``2k`` for ``which="both"``).
      residuals: ``||H v - lambda v||`` of each unit Ritz vector, computed with one extra Hessian-vector product
        each. An eigenvalue is accurate to about ``residual`` (to ``residual**2 / gap`` when isolated).
      eigenvectors: params-shaped pytree whose leaves carry a leading ``k`` axis (None unless requested).
      num_matvecs: Lanczos steps taken (plus ``k`` products for the residuals).
    """

    eigenvalues: jax.Array
    residuals: jax.Array
    eigenvectors: Optional[PyTree]
    num_matvecs: int


def lanczos_ritz(matvec: Callable, v0: jax.Array, num_matvecs: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Ritz values (ascending), their coordinate vectors in the Krylov basis, and the basis rows ``Q (m, n)``.

    The small tridiagonal eigenproblem runs in float64 when ``jax_enable_x64`` is on.
    """
    decompose = matfree.decomp.tridiag_sym(num_matvecs, reortho="full", materialize=True, custom_vjp=False)
    Q, T, *_ = decompose(matvec, v0)
    wide = jnp.float64 if jax.config.jax_enable_x64 else T.dtype
    ritz, S = jnp.linalg.eigh(T.astype(wide))
    return ritz, S, Q


def select_indices(m: int, k: int, which: str, ritz: jax.Array) -> jax.Array:
    """Indices into ascending Ritz values for the requested end(s) of the spectrum, in ascending value order."""
    if which == "largest":
        return jnp.arange(m - k, m)
    if which == "smallest":
        return jnp.arange(k)
    if which == "both":
        return jnp.concatenate([jnp.arange(k), jnp.arange(m - k, m)])
    idx = jnp.argsort(-jnp.abs(ritz))[:k]
    return idx[jnp.argsort(ritz[idx])]


@functools.partial(
    jax.jit, static_argnames=("loss_fn", "k", "which", "num_matvecs", "return_vectors", "microbatched", "block")
)
def _hessian_eigs(loss_fn, params, batch, key, k, which, num_matvecs, return_vectors, microbatched, block):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    theta = obj.theta
    v0 = jax.random.normal(key, theta.shape, theta.dtype)
    ritz, S, Q = lanczos_ritz(lambda v: obj.hvp(theta, v), v0, num_matvecs)
    idx = select_indices(num_matvecs, k, which, ritz)
    values = ritz[idx]
    vectors = (S[:, idx].T.astype(Q.dtype) @ Q)  # (k_out, n) unit Ritz vectors
    vectors = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
    Hv = jax.lax.map(lambda u: obj.hvp(theta, u), vectors)
    residuals = jnp.linalg.norm(Hv - values[:, None].astype(Hv.dtype) * vectors, axis=1)
    eigvecs = jax.vmap(obj.unravel)(vectors) if return_vectors else None
    return values, residuals, eigvecs


def hessian_eigs(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    k: int = 5,
    which: str = "largest",
    num_matvecs: Optional[int] = None,
    key: Optional[jax.Array] = None,
    return_vectors: bool = False,
    microbatched: bool = False,
    block: BlockSpec = None,
) -> HessianEigs:
    """Extreme eigenvalues of the Hessian of ``loss_fn`` at ``params``, with residual norms.

    Lanczos with full reorthogonalisation (matfree ``tridiag_sym``) runs ``num_matvecs`` Hessian-vector products in
    one compiled loop with no host synchronisation, then one more product per returned pair for its residual.

    Args:
      loss_fn, params, *batch, microbatched, block: as in :func:`analysis.dense_hessian`.
      k: eigenpairs per requested end of the spectrum.
      which: ``"largest"``, ``"smallest"`` (most negative), ``"both"`` (k from each end) or ``"magnitude"``
        (largest ``|lambda|``).
      num_matvecs: Krylov dimension; default ``min(n, max(3 k', k' + 60))`` with ``k'`` the number of pairs.
      key: PRNG key of the random start vector (default ``PRNGKey(0)``); same key, same bits.
      return_vectors: also return unit eigenvectors as params-shaped pytrees with a leading ``k`` axis.

    Returns:
      :class:`HessianEigs` sorted ascending.

    Raises:
      ValueError / TypeError: ``k <= 0``, ``k`` pairs more than parameters, ``num_matvecs < k`` or ``> n``, unknown
        ``which``, a ``block`` that selects nothing, a ``key`` that is not one PRNG key, invalid inputs (see
        :func:`analysis.hvp`).

    Example:
      >>> loss = lambda w, x: 0.5 * jnp.sum(x * w**2)
      >>> hessian_eigs(loss, jnp.ones(4), jnp.arange(1.0, 5.0), k=2).eigenvalues
      Array([3., 4.], dtype=float32)
    """
    check_inputs(loss_fn, params, batch, microbatched=microbatched)
    which = check_choice(which, "which", WHICH)
    k = check_positive_int(k, "k")
    return_vectors = check_bool(return_vectors, "return_vectors")
    block = check_block(params, block)
    n = num_params(params, block)
    pairs = 2 * k if which == "both" else k
    if pairs > n:
        raise ValueError(f"k={k} asks for {pairs} eigenpairs but the Hessian has only n={n} parameters.")
    if num_matvecs is None:
        num_matvecs = min(n, max(3 * pairs, pairs + 60))
    num_matvecs = check_positive_int(num_matvecs, "num_matvecs")
    if num_matvecs < pairs:
        raise ValueError(f"num_matvecs={num_matvecs} is smaller than the {pairs} eigenpairs requested.")
    if num_matvecs > n:
        raise ValueError(f"num_matvecs={num_matvecs} exceeds the number of parameters n={n}.")
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    values, residuals, vectors = _hessian_eigs(
        loss_fn, params, batch, key, k, which, num_matvecs, return_vectors, microbatched, block
    )
    return HessianEigs(values, residuals, vectors, num_matvecs)
