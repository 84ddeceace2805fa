"""Extreme Hessian eigenpairs by Lanczos with full or partial reorthogonalisation, on a row-major Krylov basis.

The recurrence. Step ``j`` multiplies the unit vector ``q_j``, takes ``alpha_j = q_j^T H q_j``, subtracts
``alpha_j q_j + beta_{j-1} q_{j-1}`` (the three-term recurrence) and then reorthogonalises the remainder against
every stored basis vector once (classical Gram-Schmidt), folding the tiny correction of ``q_j`` into ``alpha_j``;
``beta_j`` is the length of what is left and ``q_{j+1}`` its direction. The Ritz values are the eigenvalues of the
tridiagonal matrix of the ``alpha`` and ``beta`` (:func:`tridiagonal_eigh`, which also handles a breakdown).

Why not matfree's ``tridiag_sym`` (which this module used before, and whose step the source path used): matfree keeps
the basis as an ``(n, k)`` matrix and runs Gram-Schmidt twice against all ``k`` columns, zeros included, at every
step, four full reads of the basis per product. Measured, that cost 2.91x the Hessian-vector products alone at 46.2M
parameters on an H200 and 5.6x at 26k parameters on the 2-core CPU (``BENCHMARKS.md``). Here the basis is ``(k, n)``,
row ``j`` is one contiguous write, and the reorthogonalisation reads only the rows filled so far, ``ROWS`` at a time
in a loop whose trip count grows with ``j``: two reads of the filled part per step, about a quarter of matfree's
traffic over a run. The three-term recurrence before it leaves only rounding to remove, so one pass suffices; the
tests check orthogonality and the spectra against dense ``eigh``.

Partial reorthogonalisation (:func:`_partial_step`, the default of :func:`hessian_eigs`) reads the whole basis only
at the steps where an estimate of the lost orthogonality, updated from the ``alpha`` and ``beta`` alone, says it
must; the other steps orthogonalise against the last two rows only.

The basis can be laid out over devices (``basis_sharding``, a ``NamedSharding`` of the ``(k, n)`` array, usually
over the parameter axis ``n``) so a model whose basis does not fit one device's memory still runs; the products over
the rows then end in one all-reduce of ``ROWS`` numbers per block.

Over a data source (:class:`analysis.Batches`) each product is a pass over the data driven from Python, which a
compiled loop cannot call: :func:`lanczos_ritz_stacked` runs the same step (:func:`lanczos_step`) from the host, one
compiled step per product, for a stack of start vectors in lockstep.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from analysis._checks import check_bool, check_choice, check_key, check_positive_int
from analysis._objective import BlockSpec, check_block, flat_view, make_objective, source_matmat
from analysis.batches import checked_source
from analysis.curvatures import Curvature, with_curvature
from analysis.hessian import num_params

PyTree = Any
WHICH = ("largest", "smallest", "both", "magnitude")
ROWS = 8  # basis rows per block of the reorthogonalisation loop
REORTHOGONALISE = ("partial", "full")
PARTIAL_LEVEL = 0.75  # partial reorthogonalisation keeps every |q_i^T q_j| near or below eps ** 0.75


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


class LanczosState(NamedTuple):
    """The recurrence after some steps: basis rows ``Q (rows, n)`` (rows past the next one are zero),
    ``alpha (m,)`` and ``beta (m,)`` (``beta[j]`` couples ``q_j`` and ``q_{j+1}``)."""

    Q: jax.Array
    alpha: jax.Array
    beta: jax.Array


def lanczos_init(v0: jax.Array, num_matvecs: int, basis_sharding: Any = None) -> LanczosState:
    """The state before step 0: ``q_0 = v0 / ||v0||`` in row 0 of a zero basis of ``num_matvecs + 1`` rows (the last
    receives the direction of the final remainder; padded to a multiple of :data:`ROWS`), laid out by
    ``basis_sharding`` when one is given."""
    rows = -(-(num_matvecs + 1) // ROWS) * ROWS
    Q = jnp.zeros((rows, v0.shape[0]), v0.dtype)
    if basis_sharding is not None:
        Q = jax.lax.with_sharding_constraint(Q, basis_sharding)
    Q = Q.at[0].set(v0 / jnp.linalg.norm(v0))
    zeros = jnp.zeros((num_matvecs,), v0.dtype)
    return LanczosState(Q, zeros, zeros)


def _reorthogonalise(Q: jax.Array, w: jax.Array, filled: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``w - Q_f^T (Q_f w)`` over the first ``filled`` rows ``Q_f`` of ``Q`` (read :data:`ROWS` at a time; the
    blocks past ``filled`` are never read) and the coefficients ``Q_f w`` (zero past ``filled``)."""

    def block(i, carry):
        w_out, coef = carry
        rows = jax.lax.dynamic_slice_in_dim(Q, i * ROWS, ROWS)
        c = rows @ w
        return w_out - c @ rows, jax.lax.dynamic_update_slice_in_dim(coef, c, i * ROWS, 0)

    blocks = (filled + ROWS - 1) // ROWS
    return jax.lax.fori_loop(0, blocks, block, (w, jnp.zeros(Q.shape[0], w.dtype)))


def lanczos_step(state: LanczosState, w: jax.Array, j: Any) -> LanczosState:
    """Step ``j`` given ``w = H q_j``, reorthogonalising fully: ``alpha_j``, ``beta_j`` and the next basis row.

    Breakdown: a remainder at rounding level (``beta_j <= 50 sqrt(m) eps ||T||``, the rule of
    :func:`tridiagonal_eigh`) means the Krylov space is exhausted; its direction is noise, and continuing from it
    would orthogonalise noise against a basis that already spans the space, which can grow without bound. The next
    row is then zero, and so is every row after it (a zero row multiplies to zero): ``beta_j`` is kept for
    :func:`tridiagonal_eigh` to cut the matrix there."""
    Q, alpha, beta = state
    q = Q[j]
    a = jnp.vdot(q, w)
    w = w - a * q - jnp.where(j > 0, beta[j - 1], 0) * Q[jnp.maximum(j - 1, 0)]
    w, coef = _reorthogonalise(Q, w, j + 1)
    return _append(state, w, j, a + coef[j])


def _append(state: LanczosState, w: jax.Array, j: Any, a: jax.Array) -> LanczosState:
    """Record ``alpha_j = a`` and ``beta_j = ||w||`` and store ``w``'s direction as row ``j + 1`` (zero after a
    breakdown, see :func:`lanczos_step`)."""
    Q, alpha, beta = state
    b = jnp.linalg.norm(w)
    alpha = alpha.at[j].set(a)
    beta = beta.at[j].set(b)
    scale = jnp.maximum(jnp.max(jnp.abs(alpha)), jnp.max(jnp.abs(beta)))
    kept = b > 50 * jnp.sqrt(alpha.shape[0]) * jnp.finfo(w.dtype).eps * scale
    Q = Q.at[j + 1].set(jnp.where(kept, w / jnp.where(kept, b, 1), 0))
    return LanczosState(Q, alpha, beta)


class _Orthogonality(NamedTuple):
    """Partial reorthogonalisation's bookkeeping: estimates of ``|q_j^T q_k|`` for the current row ``j`` (``omega``)
    and the previous one (``omega_prev``), one entry per basis row; whether the next step must reorthogonalise
    (``force``); and how many steps have (``count``)."""

    omega: jax.Array
    omega_prev: jax.Array
    force: jax.Array
    count: jax.Array


def _partial_step(state: LanczosState, orth: _Orthogonality, w: jax.Array, j: Any
                  ) -> tuple[LanczosState, _Orthogonality]:
    """Step ``j`` given ``w = H q_j``, reorthogonalising against the whole basis only when the estimated loss of
    orthogonality of ``q_{j+1}`` exceeds ``eps ** (3/4)`` (:data:`PARTIAL_LEVEL`; Simon's partial
    reorthogonalisation).

    The remainder is always orthogonalised twice against ``q_j`` and ``q_{j-1}`` (two rows: the three-term
    recurrence and one local pass), and its overlaps with those two rows are measured. Its overlaps with the older
    rows are estimated without reading them, by the recurrence the computed vectors obey (Simon 1984, after Paige):
    ``beta_j w_{j+1,k} = beta_k w_{j,k+1} + (alpha_k - alpha_j) w_{j,k} + beta_{k-1} w_{j,k-1}
    - beta_{j-1} w_{j-1,k} + theta``, with the rounding term ``theta = eps (beta_k + beta_j)`` given the sign that
    makes ``|w|`` grow (a deterministic upper model instead of Simon's random one; measured about 10x above the true
    overlaps). When the largest estimate passes the level, the remainder is reorthogonalised against every filled
    row (:func:`_reorthogonalise`), and so is the next one (the row before it carries estimates near the level); the
    estimates then restart at ``eps``.

    Why ``eps ** (3/4)`` rather than Simon's ``sqrt(eps)``: semi-orthogonality at ``sqrt(eps)`` already keeps the
    Ritz values as accurate as full reorthogonalisation, but the Ritz vectors, and so the reported residuals, only
    to about ``sqrt(eps) ||H||`` (measured: 7.5x the residual of full reorthogonalisation on a float32 MLP, and
    residuals of 2e-8 instead of 1e-13 in float64); at ``eps ** (3/4)`` the float32 residual is 1.7x, for 24 instead
    of 9 full passes in 90 steps. The tests check the measured overlaps, spectra and residuals against dense
    ``eigh``."""
    Q, alpha, beta = state
    rows = Q.shape[0]
    eps = jnp.finfo(w.dtype).eps
    q, q_prev = Q[j], Q[jnp.maximum(j - 1, 0)]
    b_prev = jnp.where(j > 0, beta[j - 1], 0)
    a = jnp.vdot(q, w)
    w = w - a * q - b_prev * q_prev
    c, c_prev = jnp.vdot(q, w), jnp.where(j > 0, jnp.vdot(q_prev, w), 0)
    w = w - c * q - c_prev * q_prev
    a = a + c
    b = jnp.linalg.norm(w)

    k = jnp.arange(rows)
    pad = jnp.zeros(rows - alpha.shape[0], w.dtype)
    alpha_k, beta_k = jnp.concatenate([alpha, pad]), jnp.concatenate([beta, pad])
    beta_km1 = jnp.roll(beta_k, 1).at[0].set(0)
    omega, omega_prev = orth.omega, orth.omega_prev
    t = (beta_k * jnp.roll(omega, -1) + (alpha_k - a) * omega + beta_km1 * jnp.roll(omega, 1).at[0].set(0)
         - b_prev * omega_prev)
    t = t + jnp.where(t >= 0, 1, -1) * eps * (beta_k + b)
    older = k < j - 1
    estimate = jnp.where(older & (b > 0), t / jnp.where(b > 0, b, 1), 0)
    needed = orth.force | (jnp.max(jnp.abs(estimate)) > eps ** PARTIAL_LEVEL)

    # A loop whose trip count is zero when no pass is needed reads nothing. Not lax.cond: under vmap (SLQ probes,
    # blocks) a cond becomes a select that computes the full pass for every member at every step, whereas this loop
    # runs only at the steps where some member needs it.
    w, coef = _reorthogonalise(Q, w, jnp.where(needed, j + 1, 0))
    state = _append(state, w, j, a + coef[j])
    q_next = state.Q[j + 1]
    estimate = jnp.where(needed, jnp.where(older, eps, 0), estimate)
    estimate = estimate.at[j].set(jnp.abs(jnp.vdot(q, q_next)) + eps)
    estimate = jnp.where(j > 0, estimate.at[jnp.maximum(j - 1, 0)].set(jnp.abs(jnp.vdot(q_prev, q_next)) + eps),
                         estimate)
    estimate = estimate.at[j + 1].set(1)
    return state, _Orthogonality(estimate, omega, needed & ~orth.force, orth.count + needed)


def lanczos_tridiagonal(state: LanczosState) -> jax.Array:
    """The ``m x m`` symmetric tridiagonal Lanczos matrix."""
    alpha, beta = state.alpha, state.beta[:-1]
    return jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)


def lanczos_ritz(matvec: Callable, v0: jax.Array, num_matvecs: int, basis_sharding: Any = None,
                 reorthogonalise: str = "full") -> tuple[jax.Array, jax.Array, jax.Array]:
    """Ritz values (ascending), their coordinate vectors in the Krylov basis, and the basis rows ``Q (m, n)``, from
    ``num_matvecs`` products in one compiled loop.

    The small tridiagonal eigenproblem runs in float64 when ``jax_enable_x64`` is on.
    """
    state = lanczos_decompose(matvec, v0, num_matvecs, basis_sharding, reorthogonalise)
    ritz, S = tridiagonal_eigh(lanczos_tridiagonal(state))
    return ritz, S, state.Q[:num_matvecs]


def lanczos_decompose(matvec: Callable, v0: jax.Array, num_matvecs: int, basis_sharding: Any = None,
                      reorthogonalise: str = "full") -> LanczosState:
    """The state after ``num_matvecs`` steps from ``v0`` in one compiled loop (``beta[-1]`` is the length of the
    final remainder, ``Q[num_matvecs]`` its direction).

    ``reorthogonalise``: ``"full"`` (every step, :func:`lanczos_step`) or ``"partial"`` (only when the estimated
    loss of orthogonality calls for it, :func:`_partial_step`). Under ``vmap`` a partial step reads the basis when
    any member of the batch needs it.
    """
    return lanczos_decompose_counted(matvec, v0, num_matvecs, basis_sharding, reorthogonalise)[0]


def lanczos_decompose_counted(matvec: Callable, v0: jax.Array, num_matvecs: int, basis_sharding: Any = None,
                              reorthogonalise: str = "full") -> tuple[LanczosState, jax.Array]:
    """:func:`lanczos_decompose` and the number of steps that reorthogonalised against the whole basis."""
    check_choice(reorthogonalise, "reorthogonalise", REORTHOGONALISE)
    state = lanczos_init(v0, num_matvecs, basis_sharding)
    if reorthogonalise == "full":
        def step(j, state):
            return lanczos_step(state, matvec(state.Q[j]), j)

        return jax.lax.fori_loop(0, num_matvecs, step, state), jnp.asarray(num_matvecs)

    def partial(j, carry):
        state, orth = carry
        return _partial_step(state, orth, matvec(state.Q[j]), j)

    rows = state.Q.shape[0]
    omega = jnp.zeros(rows, v0.dtype).at[0].set(1)
    orth = _Orthogonality(omega, jnp.zeros(rows, v0.dtype), jnp.asarray(False), jnp.asarray(0))
    state, orth = jax.lax.fori_loop(0, num_matvecs, partial, (state, orth))
    return state, orth.count


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


@functools.partial(jax.jit, donate_argnums=(0,))
def _stacked_step(state, W, j):
    """One step of each recurrence of a stack, given the products ``W (p, n)`` of the current rows."""
    return jax.vmap(lanczos_step, in_axes=(0, 0, None))(state, W, j)


_stacked_init = jax.jit(jax.vmap(lanczos_init, in_axes=(0, None)), static_argnums=1)


@jax.jit
def _stacked_ritz(state):
    return jax.vmap(lambda s: tridiagonal_eigh(lanczos_tridiagonal(s)))(state)


def lanczos_ritz_stacked(matmat: Callable, V0: jax.Array, num_matvecs: int):
    """:func:`lanczos_ritz` for a stack of start vectors ``V0 (p, n)`` run in lockstep from the host.

    ``matmat(U (p, n)) -> (p, n)`` multiplies all ``p`` current basis vectors at once (one pass over a data source
    serves every recurrence). Returns ``ritz (p, m)``, ``S (p, m, m)`` and ``Q (p, m, n)``; memory holds the ``p``
    Krylov bases.
    """
    state = _stacked_init(V0, num_matvecs)
    for j in range(num_matvecs):
        state = _stacked_step(state, matmat(state.Q[:, j]), j)
    ritz, S = _stacked_ritz(state)
    return ritz, S, state.Q[:, :num_matvecs]


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
    jax.jit, static_argnames=("loss_fn", "k", "which", "num_matvecs", "return_vectors", "microbatched", "block",
                              "basis_sharding", "reorthogonalise")
)
def _hessian_eigs(loss_fn, params, batch, key, k, which, num_matvecs, return_vectors, microbatched, block,
                  basis_sharding, reorthogonalise="partial"):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    theta = obj.theta
    v0 = jax.random.normal(key, theta.shape, theta.dtype)
    ritz, S, Q = lanczos_ritz(lambda v: obj.hvp(theta, v), v0, num_matvecs, basis_sharding, reorthogonalise)
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
    basis_sharding: Optional[jax.sharding.Sharding] = None,
    reorthogonalise: str = "partial",
) -> HessianEigs:
    """Extreme eigenvalues of the Hessian of ``loss_fn`` at ``params``, with residual norms.

    Lanczos (row-major basis, see the module notes) runs ``num_matvecs`` Hessian-vector products in one compiled
    loop with no host synchronisation, then one more product per returned pair for its residual.

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
      basis_sharding: layout of the ``(num_matvecs + 1, n)`` Krylov basis over devices, e.g.
        ``NamedSharding(mesh, PartitionSpec(None, "model"))`` to split it over the parameter axis when it does not
        fit one device (its row count is padded to a multiple of 8; ``n`` must divide evenly). Default: the
        compiler's choice (one device, or replicated).
      reorthogonalise: ``"partial"`` (default: against the whole basis only at the steps where the estimated loss
        of orthogonality exceeds ``eps ** (3/4)``, which leaves the Ritz values as accurate as full
        reorthogonalisation and the residuals within a small factor of its) or ``"full"`` (every step). Over an
        :class:`analysis.Batches` source the host-driven loop always reorthogonalises fully.

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
    reorthogonalise = check_choice(reorthogonalise, "reorthogonalise", REORTHOGONALISE)
    if basis_sharding is not None and not isinstance(basis_sharding, jax.sharding.Sharding):
        raise TypeError(f"basis_sharding={basis_sharding!r} is invalid; expected a jax.sharding.Sharding such as "
                        "NamedSharding(mesh, PartitionSpec(None, 'model')).")
    if source is not None:
        if basis_sharding is not None:
            raise ValueError("basis_sharding applies to the compiled loop over array data; over an analysis.Batches "
                             "source the basis lives on the host loop's default device. Pass basis_sharding=None.")
        values, residuals, vectors = _hessian_eigs_source(
            source._run(loss_fn, params, "hessian_eigs"), params, key, k, which, num_matvecs, return_vectors, block
        )
        return HessianEigs(values, residuals, vectors, num_matvecs)
    values, residuals, vectors = _hessian_eigs(
        loss_fn, params, batch, key, k, which, num_matvecs, return_vectors, microbatched, block, basis_sharding,
        reorthogonalise,
    )
    return HessianEigs(values, residuals, vectors, num_matvecs)
