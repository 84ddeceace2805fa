"""Hessian spectral density by stochastic Lanczos quadrature (SLQ; Ghorbani, Krishnan & Xiao 2019).

Each probe ``z`` gives a Gauss quadrature rule of the spectral measure ``mu_z = sum_i (q_i^T z)^2 delta_{lambda_i}``
from ``num_matvecs`` Lanczos steps: nodes are the Ritz values, weights the squared first components of the Ritz
vectors. The average over probes is an unbiased estimate of the empirical spectral measure
``(1/n) sum_i delta_{lambda_i}`` (for the moments up to degree ``2 num_matvecs - 1``).

Probes run ``batch_size`` at a time as one vectorised recurrence (``vmap``): each Lanczos step multiplies the Hessian
with a block of ``batch_size`` vectors, whose primal passes through the network are shared. How much that saves
depends on the device: on the 2-core CPU of ``BENCHMARKS.md`` it ranged from 0.74x to 1.24x of one probe at a time
(``python benchmarks/probes.py``). Each probe's recurrence is unchanged: the same key gives the same probes whatever
``batch_size`` is, and the same nodes and weights up to rounding.

Over a data source (:class:`analysis.Batches`) the probes' recurrences run in lockstep from the host, so each of the
``num_matvecs`` passes over the data serves every probe (memory: ``num_probes`` Krylov bases).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from analysis._checks import check_finite, check_key, check_number, check_positive_int
from analysis._objective import BlockSpec, check_block, flat_dtype, flat_view, make_objective, source_matmat
from analysis.batches import checked_source
from analysis.curvatures import Curvature, with_curvature
from analysis.hessian import num_params
from analysis.lanczos import lanczos_ritz, lanczos_ritz_stacked

PyTree = Any


class SpectralDensity(NamedTuple):
    """Quadrature nodes and weights, ``(num_probes, num_matvecs)`` each; each probe's weights sum to 1."""

    nodes: jax.Array
    weights: jax.Array

    def density(self, grid: jax.Array, sigma: float) -> jax.Array:
        """Gaussian-broadened density ``phi(t) = mean_probes sum_j w_j N(t; node_j, sigma^2)`` on ``grid``.

        Integrates to 1 over the real line. ``grid`` must be a finite 1-D array, ``sigma`` a positive finite width.
        """
        check_number(sigma, "sigma", positive=True)
        grid = _check_points(grid, "grid")
        z = (grid[:, None, None] - self.nodes[None]) / sigma
        kernel = jnp.exp(-0.5 * z**2) / (sigma * jnp.sqrt(2 * jnp.pi))
        return jnp.sum(kernel * self.weights[None], axis=(1, 2)) / self.nodes.shape[0]

    def measure(self) -> tuple[jax.Array, jax.Array]:
        """The averaged discrete measure: sorted nodes and their weights (summing to 1)."""
        nodes, weights = self.nodes.ravel(), self.weights.ravel() / self.nodes.shape[0]
        order = jnp.argsort(nodes)
        return nodes[order], weights[order]

    def wasserstein1(self, eigenvalues: jax.Array) -> jax.Array:
        """Wasserstein-1 distance from this measure to the empirical measure of exact ``eigenvalues``.

        ``W1 = integral |F_slq(t) - F_exact(t)| dt`` computed exactly between the two step CDFs.
        """
        nodes, weights = self.measure()
        eigs = jnp.sort(_check_points(eigenvalues, "eigenvalues").astype(nodes.dtype))
        return wasserstein1_discrete(nodes, weights, eigs, jnp.full(eigs.shape, 1.0 / eigs.shape[0], nodes.dtype))


def _check_points(values: Any, name: str) -> jax.Array:
    """A non-empty, finite 1-D array of real numbers (points on the line)."""
    arr = jnp.asarray(values)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"{name} has shape {arr.shape}; expected a non-empty 1-D array.")
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{name} has dtype {arr.dtype}; expected real numbers.")
    check_finite({}, (), extra={name: arr})
    return arr


def wasserstein1_discrete(x: jax.Array, wx: jax.Array, y: jax.Array, wy: jax.Array) -> jax.Array:
    """W1 between discrete measures on the line (``x``, ``y`` sorted; weights each summing to 1).

    Raises:
      ValueError / TypeError: points or weights that are not finite 1-D arrays of real numbers, or weights whose
        length differs from their points'.
    """
    x, wx, y, wy = (_check_points(a, name) for a, name in ((x, "x"), (wx, "wx"), (y, "y"), (wy, "wy")))
    for points, weights, pname, wname in ((x, wx, "x", "wx"), (y, wy, "y", "wy")):
        if weights.shape != points.shape:
            raise ValueError(f"{wname} has shape {weights.shape}; expected {points.shape}, one weight per point of "
                             f"{pname}.")
    points = jnp.sort(jnp.concatenate([x, y]))
    cdf_x = jnp.concatenate([jnp.zeros(1, wx.dtype), jnp.cumsum(wx)])[jnp.searchsorted(x, points, side="right")]
    cdf_y = jnp.concatenate([jnp.zeros(1, wy.dtype), jnp.cumsum(wy)])[jnp.searchsorted(y, points, side="right")]
    return jnp.sum(jnp.abs(cdf_x - cdf_y)[:-1] * jnp.diff(points))


# Default ``batch_size``: as many probes at once as keep their Krylov bases within this many bytes.
BASIS_BUDGET_BYTES = 2**30


def default_probe_batch(num_probes: int, num_matvecs: int, n: int, itemsize: int) -> int:
    """Probes per vectorised block: all of them while their ``num_matvecs x n`` bases fit in
    :data:`BASIS_BUDGET_BYTES`, else as many as fit, at least one."""
    return max(1, min(num_probes, BASIS_BUDGET_BYTES // (num_matvecs * n * itemsize)))


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_matvecs", "num_probes", "microbatched", "block",
                                             "batch_size"))
def _spectral_density(loss_fn, params, batch, key, num_matvecs, num_probes, microbatched, block, batch_size):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    theta = obj.theta
    probes = jax.random.rademacher(key, (num_probes, theta.shape[0]), theta.dtype)

    def one_probe(z):
        ritz, S, _ = lanczos_ritz(lambda v: obj.hvp(theta, v), z, num_matvecs)
        return quadrature(ritz, S[0, :], theta.dtype)

    # batch_size probes per vectorised block (block Hessian products), the blocks one after another: memory holds
    # batch_size Krylov bases of num_matvecs x n.
    return jax.lax.map(one_probe, probes, batch_size=batch_size)


def _spectral_density_source(run, params, key, num_matvecs, num_probes, block):
    theta, _ = flat_view(params, block)
    probes = jax.random.rademacher(key, (num_probes, theta.shape[0]), theta.dtype)  # the array path's probes
    ritz, S, _ = lanczos_ritz_stacked(source_matmat(run, block), probes, num_matvecs)
    return jax.vmap(quadrature, in_axes=(0, 0, None))(ritz, S[:, 0, :], theta.dtype)


def quadrature(ritz: jax.Array, first_row: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    """Gauss quadrature nodes and weights of one probe; Ritz values lost to a breakdown (NaN, see
    :func:`analysis.lanczos.tridiagonal_eigh`) get weight 0 at node 0 (their weight is 0 in exact arithmetic)."""
    lost = jnp.isnan(ritz)
    return jnp.where(lost, 0, ritz).astype(dtype), jnp.where(lost, 0, first_row**2).astype(dtype)


def spectral_density(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    num_matvecs: int = 80,
    num_probes: int = 1,
    key: Optional[jax.Array] = None,
    microbatched: bool = False,
    block: BlockSpec = None,
    curvature: Curvature = "hessian",
    batch_size: Optional[int] = None,
) -> SpectralDensity:
    """Spectral density of the Hessian by stochastic Lanczos quadrature.

    Args:
      loss_fn, params, *batch, microbatched, block: as in :func:`analysis.dense_hessian`; the data may be one
        :class:`analysis.Batches` (``num_matvecs`` passes over it, shared by all probes).
      num_matvecs: Lanczos steps per probe (full reorthogonalisation; at most ``n``).
      num_probes: independent Rademacher probes.
      key: PRNG key (default ``PRNGKey(0)``).
      curvature: ``"hessian"`` (default), or for a :func:`analysis.supervised_loss` ``"ggn"``, ``"fisher"``,
        ``"empirical_fisher"`` or :class:`analysis.MCFisher` (see ``analysis/curvatures.py``).
      batch_size: probes vectorised together (block products; memory of ``batch_size`` Krylov bases). Default: all
        probes while their bases total at most 1 GiB (:data:`BASIS_BUDGET_BYTES`), else as many as fit. ``1`` runs
        the probes one after another. Results do not depend on it beyond rounding. Over a data source all probes
        run in lockstep and ``batch_size`` is not used.

    Returns:
      :class:`SpectralDensity`; ``.density(grid, sigma)`` evaluates a smoothed density and
      ``.wasserstein1(exact_eigenvalues)`` measures the distance to an exact spectrum.

    Raises:
      ValueError / TypeError: ``num_matvecs``, ``num_probes`` or ``batch_size`` below 1, ``num_matvecs > n``, a
        ``block`` that selects nothing, a ``key`` that is not one PRNG key, invalid inputs (see
        :func:`analysis.hvp`).

    Example:
      >>> sd = spectral_density(lambda w: 0.5 * jnp.sum(jnp.arange(4.0) * w**2), jnp.ones(4), num_matvecs=4)
      >>> sd.nodes.shape
      (1, 4)
    """
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched)
    num_matvecs = check_positive_int(num_matvecs, "num_matvecs")
    num_probes = check_positive_int(num_probes, "num_probes")
    block = check_block(params, block)
    n = num_params(params, block)
    if num_matvecs > n:
        raise ValueError(f"num_matvecs={num_matvecs} exceeds the number of parameters n={n}.")
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    if batch_size is None:
        batch_size = default_probe_batch(num_probes, num_matvecs, n, flat_dtype(params).itemsize)
    batch_size = check_positive_int(batch_size, "batch_size")
    if source is not None:
        run = source._run(loss_fn, params, "spectral_density")
        return SpectralDensity(*_spectral_density_source(run, params, key, num_matvecs, num_probes, block))
    nodes, weights = _spectral_density(loss_fn, params, batch, key, num_matvecs, num_probes, microbatched, block,
                                       batch_size)
    return SpectralDensity(nodes, weights)

