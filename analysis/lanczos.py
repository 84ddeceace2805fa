"""Extreme Hessian eigenpairs by Lanczos with full reorthogonalisation (matfree ``tridiag_sym``).

Over a data source (:class:`analysis.Batches`) each Hessian-vector product is a pass over the data driven from
Python, which matfree's compiled loop cannot call: :func:`lanczos_ritz_stacked` runs the same recurrence from the
host, one compiled matfree step per product.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import matfree.decomp

from analysis._checks import check_bool, check_choice, check_key, check_positive_int
from analysis._objective import BlockSpec, check_block, flat_view, make_objective, source_matmat
from analysis.batches import checked_source
from analysis.curvatures import Curvature, with_curvature
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
    ritz, S = tridiagonal_eigh(T)
    return ritz, S, Q


def tridiagonal_eigh(T: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition of the Lanczos matrix, in float64 when ``jax_enable_x64`` is on.

    Breakdown: when the Krylov space of the start vector is exhausted (an invariant subspace: a low-rank GGN, or
    ``num_matvecs`` near ``n``), the next off-diagonal ``beta_j`` is rounding noise, and the vectors built from
    normalised noise lose orthogonality (measured: ``|Q Q^T - I| = 1`` on a rank-14 GGN at 32 steps), which yields
    spurious Ritz values above the spectrum. Only the leading block before the first ``beta_j <= tol`` is a
    Rayleigh-Ritz projection, ``tol = 50 sqrt(m) eps ||T||``; the Ritz values of the rest are returned as NaN (their
    vectors are the unit coordinates of the discarded block). Without a breakdown nothing changes.
    """
    eps = jnp.finfo(T.dtype).eps
    wide = jnp.float64 if jax.config.jax_enable_x64 else T.dtype
    T = T.astype(wide)
    m = T.shape[0]
    alpha, beta = jnp.diagonal(T), jnp.diagonal(T, 1)
    scale = jnp.max(jnp.abs(T))
    kept = 1 + jnp.sum(jnp.cumprod(jnp.abs(beta) > 50 * jnp.sqrt(m) * eps * scale))  # size of the valid block
    index = jnp.arange(m)
    inside = index < kept
    # Decouple the discarded block and move its diagonal above the spectrum, each entry distinct, so eigh returns
    # it as unit vectors that cannot mix with the kept block's.
    alpha = jnp.where(inside, alpha, (1 + scale) * (2 + index))
    beta = jnp.where(index[1:] < kept, beta, 0)
    ritz, S = jnp.linalg.eigh(jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1))
    valid = jnp.sum(jnp.where(inside[:, None], S * S, 0), axis=0) > 0.5
    return jnp.where(valid, ritz, jnp.nan), S


# matfree's tridiag_sym runs its recurrence in a compiled fori_loop and closure-converts the matvec into a traced
# function, so it cannot call a product that is a Python loop over a data source (a jax.pure_callback could, but it
# hands its inputs to the host CPU and is meant for host code, not for launching device work from inside a running
# program). What had to be written is only the driver: the Python loop below. Each step is matfree's own
# full-reorthogonalisation Arnoldi step (the one tridiag_sym(reortho="full") runs, pinned by matfree<0.7), fed the
# product computed outside, and the symmetrisation into the tridiagonal matrix is matfree's too, so the array path and
# the source path run one algorithm; the breakdown handling of tridiagonal_eigh applies to both.
@functools.partial(jax.jit, donate_argnums=(0, 1))
def _arnoldi_steps(Q, H, v, length, Hu, idx):
    """One step for each of a stack of recurrences; returns the state and the next unit vector to multiply."""

    def one(Q, H, v, length, Hu):
        return matfree.decomp._hessenberg_forward_step(Q, H, v, length, lambda _: Hu, idx=idx, reortho="full")

    Q, H, v, length = jax.vmap(one)(Q, H, v, length, Hu)
    return Q, H, v, length, v / length[:, None]


@jax.jit
def _stacked_ritz(H):
    def one(H):
        T = 0.5 * (H + H.T)
        return tridiagonal_eigh(matfree.decomp._todense_tridiag_sym(jnp.diagonal(T), jnp.diagonal(T, 1)))

    return jax.vmap(one)(H)


def lanczos_ritz_stacked(matmat: Callable, V0: jax.Array, num_matvecs: int):
    """:func:`lanczos_ritz` for a stack of start vectors ``V0 (p, n)`` run in lockstep from the host.

    ``matmat(U (p, n)) -> (p, n)`` multiplies all ``p`` current basis vectors at once (one pass over a data source
    serves every recurrence). Returns ``ritz (p, m)``, ``S (p, m, m)`` and ``Q (p, m, n)``; memory holds the ``p``
    Krylov bases.
    """
    p, n = V0.shape
    Q = jnp.zeros((p, n, num_matvecs), V0.dtype)
    H = jnp.zeros((p, num_matvecs, num_matvecs), V0.dtype)
    length = jnp.sqrt(jnp.sum(V0 * V0, axis=1))
    v, u = V0, V0 / length[:, None]
    for i in range(num_matvecs):
        Q, H, v, length, u = _arnoldi_steps(Q, H, v, length, matmat(u), i)
    ritz, S = _stacked_ritz(H)
    return ritz, S, jnp.swapaxes(Q, 1, 2)


def select_indices(m: int, k: int, which: str, ritz: jax.Array) -> jax.Array:
    """Indices into Ritz values (ascending, NaN after a breakdown, see :func:`tridiagonal_eigh`) for the requested
    end(s) of the spectrum, in ascending value order; a NaN is chosen only when fewer than ``k`` values exist."""
    lost = jnp.isnan(ritz)
    largest = jnp.argsort(jnp.where(lost, -jnp.inf, ritz))[m - k:]
    smallest = jnp.argsort(jnp.where(lost, jnp.inf, ritz))[:k]
    if which == "largest":
        return largest
    if which == "smallest":
        return smallest
    if which == "both":
        return jnp.concatenate([smallest, largest])
    idx = jnp.argsort(-jnp.where(lost, -1, jnp.abs(ritz)))[:k]
    return idx[jnp.argsort(jnp.where(lost[idx], -jnp.inf, ritz[idx]))]


@functools.partial(
    jax.jit, static_argnames=("loss_fn", "k", "which", "num_matvecs", "return_vectors", "microbatched", "block")
)
def _hessian_eigs(loss_fn, params, batch, key, k, which, num_matvecs, return_vectors, microbatched, block):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    theta = obj.theta
    v0 = jax.random.normal(key, theta.shape, theta.dtype)
    ritz, S, Q = lanczos_ritz(lambda v: obj.hvp(theta, v), v0, num_matvecs)
    values, vectors = ritz_pairs(ritz, S, Q, k, which, num_matvecs)
    Hv = jax.lax.map(lambda u: obj.hvp(theta, u), vectors)
    residuals = residual_norms(Hv, values, vectors)
    eigvecs = jax.vmap(obj.unravel)(vectors) if return_vectors else None
    return values, residuals, eigvecs


def ritz_pairs(ritz, S, Q, k, which, num_matvecs):
    """The requested Ritz values and their unit Ritz vectors ``(k_out, n)``."""
    idx = select_indices(num_matvecs, k, which, ritz)
    values = ritz[idx]
    vectors = (S[:, idx].T.astype(Q.dtype) @ Q)  # (k_out, n) unit Ritz vectors
    vectors = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
    return values, vectors


def residual_norms(Hv, values, vectors):
    return jnp.linalg.norm(Hv - values[:, None].astype(Hv.dtype) * vectors, axis=1)


_ritz_pairs = jax.jit(ritz_pairs, static_argnums=(3, 4, 5))
_residual_norms = jax.jit(residual_norms)


def _hessian_eigs_source(run, params, key, k, which, num_matvecs, return_vectors, block):
    """Lanczos over a data source: ``num_matvecs`` passes, then one pass for all the residuals."""
    theta, unravel = flat_view(params, block)
    v0 = jax.random.normal(key, theta.shape, theta.dtype)
    matmat = source_matmat(run, block)
    ritz, S, Q = lanczos_ritz_stacked(matmat, v0[None], num_matvecs)
    values, vectors = _ritz_pairs(ritz[0], S[0], Q[0], k, which, num_matvecs)
    residuals = _residual_norms(matmat(vectors), values, vectors)
    eigvecs = jax.vmap(unravel)(vectors) if return_vectors else None
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
    curvature: Curvature = "hessian",
) -> HessianEigs:
    """Extreme eigenvalues of the Hessian of ``loss_fn`` at ``params``, with residual norms.

    Lanczos with full reorthogonalisation (matfree ``tridiag_sym``) runs ``num_matvecs`` Hessian-vector products in
    one compiled loop with no host synchronisation, then one more product per returned pair for its residual.

    Args:
      loss_fn, params, *batch, microbatched, block: as in :func:`analysis.dense_hessian`; the data may be one
        :class:`analysis.Batches` (``num_matvecs + 1`` passes over it, Lanczos driven from the host).
      k: eigenpairs per requested end of the spectrum.
      which: ``"largest"``, ``"smallest"`` (most negative), ``"both"`` (k from each end) or ``"magnitude"``
        (largest ``|lambda|``).
      num_matvecs: Krylov dimension; default ``min(n, max(3 k', k' + 60))`` with ``k'`` the number of pairs.
      key: PRNG key of the random start vector (default ``PRNGKey(0)``); same key, same bits.
      return_vectors: also return unit eigenvectors as params-shaped pytrees with a leading ``k`` axis.
      curvature: ``"hessian"`` (default), or for a :func:`analysis.supervised_loss` ``"ggn"``, ``"fisher"``,
        ``"empirical_fisher"`` or :class:`analysis.MCFisher` (see ``analysis/curvatures.py``).

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
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched)
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
    if source is not None:
        values, residuals, vectors = _hessian_eigs_source(
            source._run(loss_fn, params, "hessian_eigs"), params, key, k, which, num_matvecs, return_vectors, block
        )
        return HessianEigs(values, residuals, vectors, num_matvecs)
    values, residuals, vectors = _hessian_eigs(
        loss_fn, params, batch, key, k, which, num_matvecs, return_vectors, microbatched, block
    )
    return HessianEigs(values, residuals, vectors, num_matvecs)
