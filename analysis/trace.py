"""Stochastic Hessian trace estimates with standard errors: Hutchinson and Hutch++.

Hutchinson (1989): ``tr(H) ~ mean_i z_i^T H z_i`` over Rademacher probes (matfree's ``monte_carlo_trace`` integrand
and ``sampler_signs``). Hutch++ (Meyer, Musco, Musco & Woodruff 2021) spends a third of the products on a sketch
``Q = orth(H S)``, takes ``tr(Q^T H Q)`` exactly and applies Hutchinson only to the deflated remainder
``(I - QQ^T) H (I - QQ^T)``: with a decaying spectrum its variance is far lower at equal cost.

Over a data source (:class:`analysis.Batches`) the products of independent vectors share a pass over the data:
Hutchinson takes one pass, Hutch++ three (sketch, projection, deflated probes), with the same probes as the array
path.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import matfree.stochtrace

from analysis._checks import check_choice, check_key, check_positive_int
from analysis._objective import BlockSpec, check_block, flat_view, make_objective, source_matmat
from analysis.batches import checked_source
from analysis.curvatures import Curvature, with_curvature
from analysis.hessian import num_params

PyTree = Any
METHODS = ("hutchinson", "hutch++")


class TraceEstimate(NamedTuple):
    """``estimate`` of ``tr(H)`` with its ``standard_error`` (sample std of the stochastic part / sqrt(probes))."""

    estimate: jax.Array
    standard_error: jax.Array
    num_matvecs: int
    method: str


def hutchinson(matvec: Callable, key: jax.Array, like: jax.Array, num_probes: int, batch_size: int):
    """Mean and standard error of ``z^T A z`` over ``num_probes`` Rademacher probes (products mapped, not vmapped
    all at once, so memory stays at ``batch_size`` products)."""
    probes = matfree.stochtrace.sampler_signs(like, num=num_probes)(key)
    integrand = matfree.stochtrace.monte_carlo_trace()
    samples = jax.lax.map(lambda z: integrand(matvec, z), probes, batch_size=batch_size)
    return jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(num_probes)


def hutch_plus_plus(matvec: Callable, key: jax.Array, like: jax.Array, num_matvecs: int, batch_size: int):
    """Hutch++ with ``num_matvecs`` products: ``s`` sketch, ``s`` projected, the rest Hutchinson on the remainder.

    The three stages run as three iterations of one ``lax.scan`` around a single product site, so the network's
    Hessian-vector product is compiled once rather than once per stage (measured on the tiny ResNet report of the
    tests: half the compile time of the trace programs). Each stage multiplies ``max(s, rest)`` vectors; when
    ``num_matvecs`` is not a multiple of 3 the first two stages pad with up to two zero vectors each, whose products
    are discarded.
    """
    sketch = num_matvecs // 3
    rest = num_matvecs - 2 * sketch
    width = rest  # >= sketch
    k_sketch, k_probe = jax.random.split(key)
    S = matfree.stochtrace.sampler_signs(like, num=sketch)(k_sketch)  # (s, n)
    Z = matfree.stochtrace.sampler_signs(like, num=rest)(k_probe)

    def padded(V):
        return jnp.zeros((width, like.shape[0]), like.dtype).at[: V.shape[0]].set(V)

    def deflate(Q, V):  # rows of V, projected off range(Q)
        return V - (V @ Q) @ Q.T

    def vectors(stage, Q, previous):
        def sketch_stage():
            return Q, padded(S)

        def project_stage():
            Qs, _ = jnp.linalg.qr(previous[:sketch].T)  # (n, s) orthonormal basis of range(H S)
            return Qs, padded(Qs.T)

        def probe_stage():
            return Q, deflate(Q, Z)

        return jax.lax.switch(stage, (sketch_stage, project_stage, probe_stage))

    def body(carry, stage):
        Q, previous = carry
        Q, V = vectors(stage, Q, previous)
        products = jax.lax.map(matvec, V, batch_size=batch_size)
        return (Q, products), products

    init = (jnp.zeros((like.shape[0], sketch), like.dtype), jnp.zeros((width, like.shape[0]), like.dtype))
    (Q, _), products = jax.lax.scan(body, init, jnp.arange(3))
    top = jnp.sum(Q.T * products[1, :sketch])
    mean, sem = _mean_and_error(Z, deflate(Q, products[2]))
    return top + mean, sem


def _mean_and_error(probes, products):
    """Hutchinson's mean and standard error from probes and their products (matfree's integrand, product given)."""
    integrand = matfree.stochtrace.monte_carlo_trace()
    samples = jax.vmap(lambda z, hz: integrand(lambda _: hz, z))(probes, products)
    return jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(probes.shape[0])


_stacked_mean_and_error = jax.jit(_mean_and_error)  # the host-driven (data source) paths call it outside jit


def hutchinson_stacked(matmat: Callable, key: jax.Array, like: jax.Array, num_probes: int):
    """:func:`hutchinson` with ``matmat(Z (p, n)) -> (p, n)`` applied to all probes at once (one pass)."""
    probes = matfree.stochtrace.sampler_signs(like, num=num_probes)(key)
    return _stacked_mean_and_error(probes, matmat(probes))


def hutch_plus_plus_stacked(matmat: Callable, key: jax.Array, like: jax.Array, num_matvecs: int, groups: int = 1):
    """:func:`hutch_plus_plus` with the products of each stage in one ``matmat`` call (three passes), for
    ``groups`` operators at once: ``matmat`` takes ``(groups * p, n)`` rows, group-major, and applies operator ``g``
    to the ``p`` rows of group ``g`` (every group gets the same probes, as :func:`hutch_plus_plus` with the same
    key). Returns the estimates and standard errors, ``(groups,)`` each."""
    sketch = num_matvecs // 3
    rest = num_matvecs - 2 * sketch
    n = like.shape[0]
    k_sketch, k_probe = jax.random.split(key)
    S = matfree.stochtrace.sampler_signs(like, num=sketch)(k_sketch)
    Y = matmat(jnp.tile(S, (groups, 1))).reshape(groups, sketch, n)
    Q = _orthonormal_rows(Y)  # (groups, s, n): per group, an orthonormal basis of range(H S), as rows
    top = jnp.sum(Q * matmat(Q.reshape(groups * sketch, n)).reshape(groups, sketch, n), axis=(1, 2))
    probes = matfree.stochtrace.sampler_signs(like, num=rest)(k_probe)
    deflated = _deflate(Q, jnp.broadcast_to(probes, (groups, rest, n)))
    products = _deflate(Q, matmat(deflated.reshape(groups * rest, n)).reshape(groups, rest, n))
    mean, sem = _grouped_mean_and_error(probes, products)
    return top + mean, sem


@jax.jit
def _orthonormal_rows(Y):
    return jnp.swapaxes(jax.vmap(lambda y: jnp.linalg.qr(y.T)[0])(Y), 1, 2)


@jax.jit
def _deflate(Q, V):
    """Per group, the rows of ``V`` projected off the span of the rows of ``Q``."""
    return V - jnp.einsum("gps,gsn->gpn", jnp.einsum("gpn,gsn->gps", V, Q), Q)


_grouped_mean_and_error = jax.jit(jax.vmap(_mean_and_error, in_axes=(None, 0)))


@functools.partial(
    jax.jit, static_argnames=("loss_fn", "num_matvecs", "method", "microbatched", "block", "batch_size")
)
def _hessian_trace(loss_fn, params, batch, key, num_matvecs, method, microbatched, block, batch_size):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    matvec = functools.partial(obj.hvp, obj.theta)
    if method == "hutchinson":
        return hutchinson(matvec, key, obj.theta, num_matvecs, batch_size)
    return hutch_plus_plus(matvec, key, obj.theta, num_matvecs, batch_size)


def hessian_trace(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    num_matvecs: int = 30,
    key: Optional[jax.Array] = None,
    method: str = "hutch++",
    microbatched: bool = False,
    block: BlockSpec = None,
    batch_size: int = 8,
    curvature: Curvature = "hessian",
) -> TraceEstimate:
    """Estimate ``tr(H)`` with ``num_matvecs`` Hessian-vector products, with a standard error.

    Args:
      loss_fn, params, *batch, microbatched, block: as in :func:`analysis.dense_hessian`; the data may be one
        :class:`analysis.Batches` (one pass over it for Hutchinson, three for Hutch++).
      num_matvecs: total Hessian-vector products (Hutch++ needs at least 3 and spends them in thirds; with fewer
        than two stochastic probes no standard error exists, so Hutchinson needs at least 2, Hutch++ at least 4).
      key: PRNG key (default ``PRNGKey(0)``).
      method: ``"hutchinson"`` or ``"hutch++"``.
      batch_size: products vectorised at a time (per batch of a data source).
      curvature: ``"hessian"`` (default), or for a :func:`analysis.supervised_loss` ``"ggn"``, ``"fisher"``,
        ``"empirical_fisher"`` or :class:`analysis.MCFisher` (see ``analysis/curvatures.py``).

    Returns:
      :class:`TraceEstimate`. The estimate is unbiased; the true trace lies within 3 standard errors in about 99%
      of runs.

    Raises:
      ValueError / TypeError: too few or too many ``num_matvecs``, an unknown ``method``, ``batch_size < 1``, a
        ``block`` that selects nothing, a ``key`` that is not one PRNG key, invalid inputs (see :func:`analysis.hvp`).

    Example:
      >>> loss = lambda w: 0.5 * jnp.sum(jnp.arange(1.0, 5.0) * w**2)
      >>> float(hessian_trace(loss, jnp.ones(4), num_matvecs=12).estimate)
      10.0
    """
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched)
    method = check_choice(method, "method", METHODS)
    minimum = 2 if method == "hutchinson" else 4
    num_matvecs = check_positive_int(num_matvecs, "num_matvecs", minimum=minimum)
    batch_size = check_positive_int(batch_size, "batch_size")
    block = check_block(params, block)
    n = num_params(params, block)
    if method == "hutch++" and num_matvecs // 3 > n:
        raise ValueError(f"num_matvecs={num_matvecs}: the Hutch++ sketch of {num_matvecs // 3} exceeds n={n}.")
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    if source is not None:
        theta, _ = flat_view(params, block)
        matmat = source_matmat(source._run(loss_fn, params, "hessian_trace"), block, batch_size)
        if method == "hutchinson":
            est, sem = hutchinson_stacked(matmat, key, theta, num_matvecs)
        else:
            est, sem = (value[0] for value in hutch_plus_plus_stacked(matmat, key, theta, num_matvecs))
        return TraceEstimate(est, sem, num_matvecs, method)
    est, sem = _hessian_trace(loss_fn, params, batch, key, num_matvecs, method, microbatched, block, batch_size)
    return TraceEstimate(est, sem, num_matvecs, method)
