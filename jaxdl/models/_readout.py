"""Closed-form ridge readouts for reservoir models (echo state networks, liquid state machines; sec. 10.8).

The readout solves ``min ||X W + b - Y||^2 + ridge ||W||^2`` with the bias unpenalised, i.e. on centred data:
``W = (Xc^T Xc + ridge I)^{-1} Xc^T Yc`` and ``b = mean(Y) - mean(X) W`` (the normal equations reservoirpy's
``Ridge`` solves). The Gram matrix is accumulated chunk by chunk from streamed states, so a sequence of any length
needs ``O(chunk n + n^2)`` memory, and only its upper block triangle is multiplied (the matrix is symmetric: about
``(b + 1) / 2b`` of a full product for ``b`` column blocks).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BLOCK = 256  # column block of the symmetric Gram update: large enough for an efficient matrix product.


def check_ridge(ridge) -> float:
    if isinstance(ridge, bool) or not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge={ridge!r} is invalid; expected a finite penalty >= 0.")
    return float(ridge)


def check_sequence(x, name: str, features=None) -> jax.Array:
    """A concrete ``(time, features)`` array with at least one step and finite values."""
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} has shape {x.shape}; expected rank 2, (time, features).")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has shape {x.shape}: the sequence is empty; expected at least one time step.")
    if features is not None and x.shape[1] != features:
        raise ValueError(f"{name} has {x.shape[1]} features; expected {features}.")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN/inf values; expected finite values.")
    return x


class ReadoutStatistics(NamedTuple):
    """Sums for the centred ridge problem over ``count`` rows, taken around shifts ``x_shift`` and ``y_shift``.

    The shifts (the first row) make the later centring subtract small numbers (a shifted-data algorithm).
    """

    count: jax.Array
    x_shift: jax.Array
    y_shift: jax.Array
    sum_dx: jax.Array
    sum_dy: jax.Array
    dxdx: jax.Array
    dxdy: jax.Array


def accumulator_dtype(dtype):
    """Sums run in float64 whenever x64 is enabled, whatever the state dtype."""
    return jnp.float64 if jax.config.jax_enable_x64 else dtype


def _bounds(n: int) -> list[tuple[int, int]]:
    b = max(1, round(n / BLOCK))
    edges = np.linspace(0, n, b + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


class Accumulator(NamedTuple):
    """Running sums; ``blocks`` holds the upper block triangle of ``dx^T dx`` in row-major pair order."""

    sum_dx: jax.Array
    sum_dy: jax.Array
    blocks: tuple
    dxdy: jax.Array


def empty_accumulator(n: int, m: int, acc) -> Accumulator:
    bounds = _bounds(n)
    blocks = tuple(jnp.zeros((i1 - i0, j1 - j0), acc) for a, (i0, i1) in enumerate(bounds)
                   for (j0, j1) in bounds[a:])
    return Accumulator(jnp.zeros(n, acc), jnp.zeros(m, acc), blocks, jnp.zeros((n, m), acc))


def fold(state: Accumulator, xs: jax.Array, ys: jax.Array, x_shift, y_shift) -> Accumulator:
    """Add rows ``xs (C, n)``, ``ys (C, m)`` to the sums (one product per upper-triangle block)."""
    acc = state.sum_dx.dtype
    dx, dy = xs - x_shift, ys - y_shift
    cols = dx.T  # (n, C): row blocks of the transposed chunk multiply faster than column slices of the chunk.
    bounds = _bounds(xs.shape[1])
    pieces = [cols[i0:i1] for i0, i1 in bounds]
    products = [pieces[a] @ pieces[c].T for a in range(len(bounds)) for c in range(a, len(bounds))]
    blocks = tuple(g + p.astype(acc) for g, p in zip(state.blocks, products))
    return Accumulator(state.sum_dx + dx.sum(0).astype(acc), state.sum_dy + dy.sum(0).astype(acc), blocks,
                       state.dxdy + (cols @ dy).astype(acc))


def finish(state: Accumulator, count: int, x_shift, y_shift) -> ReadoutStatistics:
    """Assemble the symmetric Gram matrix from its upper block triangle."""
    acc = state.sum_dx.dtype
    bounds = _bounds(state.sum_dx.shape[0])
    b = len(bounds)
    grid = [[None] * b for _ in range(b)]
    it = iter(state.blocks)
    for a in range(b):
        for c in range(a, b):
            grid[a][c] = next(it)
            grid[c][a] = grid[a][c].T
    gram = jnp.block(grid) if b > 1 else grid[0][0]
    return ReadoutStatistics(jnp.asarray(count, acc), x_shift.astype(acc), y_shift.astype(acc), state.sum_dx,
                             state.sum_dy, gram, state.dxdy)


@jax.jit
def state_statistics(states: jax.Array, targets: jax.Array) -> ReadoutStatistics:
    """:class:`ReadoutStatistics` of given ``states (T, n)`` and ``targets (T, m)``."""
    acc = accumulator_dtype(states.dtype)
    x_shift, y_shift = states[0], targets[0]
    state = fold(empty_accumulator(states.shape[1], targets.shape[1], acc), states, targets, x_shift, y_shift)
    return finish(state, states.shape[0], x_shift, y_shift)


@jax.jit
def solve_readout(stats: ReadoutStatistics, ridge) -> tuple[jax.Array, jax.Array]:
    """Ridge readout ``(W (n, m), b (m,))`` from :class:`ReadoutStatistics`; the bias is not penalised."""
    mx, my = stats.sum_dx / stats.count, stats.sum_dy / stats.count
    gram = stats.dxdx - stats.count * jnp.outer(mx, mx)
    cross = stats.dxdy - stats.count * jnp.outer(mx, my)
    gram = gram + ridge * jnp.eye(gram.shape[0], dtype=gram.dtype)
    # LU rather than Cholesky: in float32 rounding can leave a barely indefinite Gram matrix when ridge is tiny.
    w = jnp.linalg.solve(gram, cross)
    b = (stats.y_shift + my) - (stats.x_shift + mx) @ w
    return w, b


def check_solution(w, ridge) -> None:
    if not bool(jnp.all(jnp.isfinite(w))):
        raise ValueError(f"the ridge readout is not finite (ridge={ridge}); the features are collinear: use a "
                         "larger ridge (or enable float64).")


def ridge_regression(x: jax.Array, y: jax.Array, ridge: float) -> tuple[jax.Array, jax.Array]:
    """Closed-form ridge ``(W, b)`` of ``y (T, m)`` on ``x (T, n)``, centred, bias not penalised.

    Raises:
      ValueError: ``ridge < 0``; arrays of the wrong rank, empty, non-finite or of different lengths; a
        non-finite solution (``ridge = 0`` with collinear features).

    Example:
      >>> x = jnp.arange(10.0)[:, None]
      >>> w, b = ridge_regression(x, 3 * x + 1, 0.0)
      >>> round(float(w[0, 0]), 3), round(float(b[0]), 3)
      (3.0, 1.0)
    """
    ridge = check_ridge(ridge)
    x, y = check_sequence(x, "x"), check_sequence(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}; expected the same length.")
    w, b = solve_readout(state_statistics(x, y), ridge)
    check_solution(w, ridge)
    return w, b
