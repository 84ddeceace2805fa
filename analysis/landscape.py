"""Loss landscapes: 1-D slices, linear interpolation and 2-D surfaces, evaluated in one batched, compiled call.

Every routine evaluates ``loss_fn(params + alpha d1 + beta d2, *batch)`` on a grid of coefficients. The grid is
mapped with ``jax.lax.map`` (vectorised ``chunk_size`` points at a time with ``vmap``, 32 by default), never
a Python loop over grid points, and the parameters, the directions, the grid and the data are arguments of the
compiled function (STYLE.md rule 3), so a second call with new values of the same shapes does not retrace.

* :func:`interpolate`: the loss on the segment from ``params_a`` to ``params_b`` (Goodfellow, Vinyals & Saxe 2015).
* :func:`loss_along_direction`: a 1-D slice, e.g. along a Hessian eigenvector (see :func:`analysis.hessian_direction`).
* :func:`loss_surface_2d`: a 2-D surface spanned by two directions, e.g. two :func:`filter_normalized_direction`
  draws (Li, Xu, Taylor, Studer & Goldstein 2018).

The data may be one :class:`analysis.Batches` source: one pass over it evaluates every grid point on each batch (the
same compiled grid, once per batch shape) and accumulates the weighted mean loss per point.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from analysis._checks import check_bool, check_finite, check_key, check_like, check_params, check_positive_int
from analysis.batches import Batches, checked_source

PyTree = Any
# Grid points per vmapped chunk: a 41 x 41 grid on 1,797 digits then holds ~35 MB of activations, not ~2 GB.
DEFAULT_CHUNK = 32


def _checked(loss_fn: Callable, params: PyTree, batch: tuple, directions: dict, grids: dict) -> list[jax.Array]:
    """Boundary checks shared by every routine: ``directions`` (name -> pytree) shaped like ``params``, ``grids``
    (name -> coefficients) non-empty and 1-D, and one finiteness check of parameters, data, directions and grids
    that names the first bad value (the data of a :class:`analysis.Batches` are checked as they are consumed).
    Returns the grids as floating-point arrays."""
    for name, direction in directions.items():
        check_like(direction, params, name)
    arrays = {}
    for name, values in grids.items():
        arr = jnp.asarray(values)
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array of coefficients; got shape {arr.shape}.")
        arrays[name] = arr if jnp.issubdtype(arr.dtype, jnp.floating) else arr.astype(jnp.result_type(float))
    checked_source(loss_fn, params, batch, microbatched=False, extra={**directions, **arrays})
    return list(arrays.values())


def _evaluate(loss_fn, params, directions: tuple, coefficients: jax.Array, batch, chunk_size: Optional[int]):
    """``loss_fn(params + sum_k c_k d_k, *batch)`` for every row ``c`` of ``coefficients``, ``chunk_size`` rows at a
    time (validated here)."""
    if chunk_size is not None:
        chunk_size = min(check_positive_int(chunk_size, "chunk_size"), coefficients.shape[0])
    if len(batch) == 1 and isinstance(batch[0], Batches):
        run = batch[0]._run(loss_fn, params, "loss landscape")
        return run.accumulate(_grid_term, (directions, coefficients), (("chunk_size", chunk_size),))
    return _evaluate_grid(loss_fn, params, directions, coefficients, batch, chunk_size)


def _grid_term(loss_fn, params, operand, batch, *, chunk_size):
    """Per-batch term of a data source: the loss at every grid point on this batch."""
    directions, coefficients = operand
    return _evaluate_grid(loss_fn, params, directions, coefficients, batch, chunk_size)


def _moved(params: PyTree, coefficients: jax.Array, directions: tuple) -> PyTree:
    """``params + sum_k c_k d_k`` leaf by leaf, in the dtype of each parameter leaf."""

    def leaf(p, *ds):
        out = p
        for c, d in zip(coefficients, ds):
            out = out + c.astype(p.dtype) * d.astype(p.dtype)
        return out

    return jax.tree_util.tree_map(leaf, params, *directions)


@functools.partial(jax.jit, static_argnames=("loss_fn", "chunk_size"))
def _evaluate_grid(loss_fn, params, directions, coefficients, batch, chunk_size):
    # coefficients: (points, len(directions)); one loss per row.
    def one(c):
        return loss_fn(_moved(params, c, directions), *batch)

    if chunk_size is None:
        return jax.vmap(one)(coefficients)
    return jax.lax.map(one, coefficients, batch_size=chunk_size)


def loss_along_direction(
    loss_fn: Callable,
    params: PyTree,
    direction: PyTree,
    alphas: Any,
    *batch: Any,
    chunk_size: Optional[int] = DEFAULT_CHUNK,
) -> jax.Array:
    """The 1-D slice ``alpha -> loss_fn(params + alpha direction, *batch)``.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar`` (any scalar function of the parameters works, e.g. an error
        rate).
      params: the centre of the slice, any pytree of floating-point arrays.
      direction: a pytree with the structure and shapes of ``params`` (not normalised here: pass a unit Hessian
        eigenvector, a :func:`filter_normalized_direction`, or ``params_b - params_a``).
      alphas: ``(m,)`` coefficients.
      *batch: data arrays passed to ``loss_fn`` after the parameters, or one :class:`analysis.Batches` (each value
        is then the weighted mean over its batches: the full-data loss for a mean ``loss_fn``).
      chunk_size: grid points evaluated together by ``vmap``: memory grows with it (each point holds the activations
        of one forward pass over the batch), while chunks run one after another; None evaluates all ``m`` at once.

    Returns:
      ``(m,)`` loss values.

    Raises:
      ValueError / TypeError: ``direction`` not shaped like ``params``, empty or non-1-D ``alphas``, NaN/inf in
        parameters, direction, coefficients or data, ``chunk_size < 1``, a non-scalar loss.

    Example:
      >>> loss = lambda p, x: jnp.sum((p - x) ** 2)
      >>> loss_along_direction(loss, jnp.zeros(2), jnp.ones(2), jnp.array([0.0, 1.0]), jnp.ones(2))
      Array([2., 0.], dtype=float32)
    """
    (alphas,) = _checked(loss_fn, params, batch, {"direction": direction}, {"alphas": alphas})
    return _evaluate(loss_fn, params, (direction,), alphas[:, None], batch, chunk_size)


def interpolate(
    loss_fn: Callable,
    params_a: PyTree,
    params_b: PyTree,
    alphas: Any,
    *batch: Any,
    chunk_size: Optional[int] = DEFAULT_CHUNK,
) -> jax.Array:
    """Loss on the line ``(1 - alpha) params_a + alpha params_b`` (Goodfellow, Vinyals & Saxe 2015).

    ``alpha = 0`` is ``params_a`` (e.g. the initialization), ``alpha = 1`` is ``params_b`` (e.g. the trained
    solution); values outside [0, 1] extrapolate.

    Args:
      loss_fn, *batch, chunk_size: as in :func:`loss_along_direction`.
      params_a, params_b: two pytrees of the same structure and shapes.
      alphas: ``(m,)`` coefficients.

    Returns:
      ``(m,)`` loss values.

    Example:
      >>> loss = lambda p: jnp.sum(p**2)
      >>> interpolate(loss, jnp.zeros(2), jnp.ones(2), jnp.array([0.0, 0.5, 1.0]))
      Array([0. , 0.5, 2. ], dtype=float32)
    """
    (alphas,) = _checked(loss_fn, params_a, batch, {"params_b": params_b}, {"alphas": alphas})
    direction = jax.tree_util.tree_map(jnp.subtract, params_b, params_a)
    return _evaluate(loss_fn, params_a, (direction,), alphas[:, None], batch, chunk_size)


def loss_surface_2d(
    loss_fn: Callable,
    params: PyTree,
    d1: PyTree,
    d2: PyTree,
    alphas: Any,
    betas: Any,
    *batch: Any,
    chunk_size: Optional[int] = DEFAULT_CHUNK,
) -> jax.Array:
    """The surface ``(alpha, beta) -> loss_fn(params + alpha d1 + beta d2, *batch)`` on a grid.

    With two :func:`filter_normalized_direction` draws this is the plot of Li et al. (2018), whose filter-wise
    normalisation makes surfaces of differently scaled networks comparable.

    Args:
      loss_fn, params, *batch, chunk_size: as in :func:`loss_along_direction`.
      d1, d2: directions shaped like ``params``.
      alphas: ``(m,)`` coefficients of ``d1`` (rows of the result).
      betas: ``(k,)`` coefficients of ``d2`` (columns of the result).

    Returns:
      ``(m, k)`` losses, ``out[i, j] = loss(params + alphas[i] d1 + betas[j] d2)``.

    Example:
      >>> loss = lambda p: p[0] ** 2 - p[1] ** 2
      >>> e1, e2 = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
      >>> loss_surface_2d(loss, jnp.zeros(2), e1, e2, jnp.array([0.0, 1.0]), jnp.array([0.0, 2.0]))
      Array([[ 0., -4.],
             [ 1., -3.]], dtype=float32)
    """
    alphas, betas = _checked(loss_fn, params, batch, {"d1": d1, "d2": d2}, {"alphas": alphas, "betas": betas})
    grid_a, grid_b = jnp.meshgrid(alphas, betas.astype(alphas.dtype), indexing="ij")
    coefficients = jnp.stack([grid_a.ravel(), grid_b.ravel()], axis=1)
    values = _evaluate(loss_fn, params, (d1, d2), coefficients, batch, chunk_size)
    return values.reshape(alphas.shape[0], betas.shape[0])


def filter_normalize(direction: PyTree, params: PyTree, *, ignore_vectors: bool = True) -> PyTree:
    """Rescale ``direction`` filter by filter to the norms of the parameters' filters (Li et al. 2018, sec. 4).

    A filter is one output unit: the slice ``[..., j]`` along the last axis of a weight array (Flax kernels are
    ``(in, out)`` for dense layers and ``(h, w, in, out)`` for convolutions). Each becomes
    ``d[..., j] * ||theta[..., j]|| / ||d[..., j]||``. Vectors and scalars (biases, normalisation scales) are set to
    zero when ``ignore_vectors`` (the paper's choice), otherwise rescaled as one filter. A filter whose direction is
    exactly zero stays zero.

    Args:
      direction: a pytree shaped like ``params``.
      params: the parameters whose filter norms set the scale.
      ignore_vectors: zero the direction on leaves with fewer than two axes.

    Returns:
      The normalised direction, shaped like ``params``.

    Raises:
      ValueError / TypeError: ``direction`` not shaped like ``params``, non-floating parameters, NaN/inf in either,
        a non-bool ``ignore_vectors``.

    Example:
      >>> p = {"kernel": jnp.array([[3.0, 0.0], [4.0, 1.0]]), "bias": jnp.ones(2)}
      >>> d = filter_normalize({"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, p)
      >>> d["kernel"], d["bias"]
      (Array([[3.535534  , 0.70710677],
             [3.535534  , 0.70710677]], dtype=float32), Array([0., 0.], dtype=float32))
    """
    check_like(direction, params, "direction")
    check_params(params)
    check_finite(params, (), extra={"direction": direction})
    return _filter_normalize(direction, params, check_bool(ignore_vectors, "ignore_vectors"))


@functools.partial(jax.jit, static_argnames=("ignore_vectors",))
def _filter_normalize(direction, params, ignore_vectors):
    def leaf(d, p):
        d = jnp.asarray(d, jnp.result_type(p))
        if jnp.ndim(p) < 2:
            if ignore_vectors:
                return jnp.zeros_like(d)
            axes = None
        else:
            axes = tuple(range(jnp.ndim(p) - 1))
        d_norm = jnp.sqrt(jnp.sum(d * d, axis=axes, keepdims=True))
        p_norm = jnp.sqrt(jnp.sum(p * p, axis=axes, keepdims=True))
        # A zero filter of the direction has no direction to rescale; leave it at zero rather than divide by 0.
        scale = jnp.where(d_norm > 0, p_norm / jnp.where(d_norm > 0, d_norm, 1), 0)
        return d * scale

    return jax.tree_util.tree_map(leaf, direction, params)


def filter_normalized_direction(key: jax.Array, params: PyTree, *, ignore_vectors: bool = True) -> PyTree:
    """A Gaussian random direction, filter-normalised to ``params`` (Li et al. 2018).

    Same key, same direction bit for bit; draw two with ``jax.random.split`` for a 2-D surface (in high dimension
    they are nearly orthogonal, as the paper notes).

    Args:
      key: PRNG key.
      params: the parameters (any pytree of floating-point arrays).
      ignore_vectors: see :func:`filter_normalize`.

    Returns:
      A direction shaped like ``params``.

    Raises:
      ValueError / TypeError: a ``key`` that is not one PRNG key, empty or non-floating parameters, NaN/inf in
        them, a non-bool ``ignore_vectors``.

    Example:
      >>> d = filter_normalized_direction(jax.random.PRNGKey(0), {"kernel": jnp.ones((3, 2))})
      >>> jnp.linalg.norm(d["kernel"], axis=0)
      Array([1.7320507, 1.7320508], dtype=float32)
    """
    key = check_key(key)
    check_params(params)
    check_finite(params, ())
    return _random_direction(key, params, check_bool(ignore_vectors, "ignore_vectors"))


@functools.partial(jax.jit, static_argnames=("ignore_vectors",))
def _random_direction(key, params, ignore_vectors):
    # One draw for all parameters, cut into leaves: a single random-number kernel to compile, whatever the depth.
    flat, unravel = ravel_pytree(params)
    noise = unravel(jax.random.normal(key, flat.shape, flat.dtype))
    return _filter_normalize(noise, params, ignore_vectors)


def second_difference(alphas: Any, values: Any) -> np.ndarray:
    """Central second differences of a 1-D slice on a uniform grid: ``(f(a+h) - 2 f(a) + f(a-h)) / h^2``.

    Along a unit Hessian eigenvector this tends to the eigenvalue as ``h -> 0`` (error ``O(h^2)``), a check of a
    slice against the spectrum.

    Args:
      alphas: ``(m,)`` evenly spaced coefficients, ``m >= 3``.
      values: ``(m,)`` losses on them.

    Returns:
      ``(m - 2,)`` curvature estimates at ``alphas[1:-1]`` (float64 numpy).

    Raises:
      ValueError: fewer than 3 points, mismatched lengths, NaN/inf in either, or an uneven grid.
    """
    a, f = np.asarray(alphas, np.float64), np.asarray(values, np.float64)
    if a.ndim != 1 or a.shape != f.shape or a.size < 3:
        raise ValueError(f"alphas and values must be 1-D of equal length >= 3; got {a.shape} and {f.shape}.")
    for name, arr in (("alphas", a), ("values", f)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(arr)))} NaN/inf value(s); expected finite "
                             "values.")
    h = np.diff(a)
    if not np.allclose(h, h[0], rtol=1e-6, atol=0):
        raise ValueError("alphas must be evenly spaced for central second differences.")
    return (f[2:] - 2 * f[1:-1] + f[:-2]) / h[0] ** 2
