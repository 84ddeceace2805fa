"""Echo state networks (Deep Learning sec. 10.8): a fixed random reservoir and a ridge readout in closed form.

The reservoir is ``h_t = (1 - a) h_{t-1} + a tanh(W h_{t-1} + W_in u_t + b)`` with leak rate ``a`` in (0, 1], ``W``
scaled to a chosen spectral radius and never trained; only the linear readout ``y_t = h_t W_out + b_out`` is learned,
by ridge regression on centred states with the bias unpenalised (the same normal equations as reservoirpy's
``Ridge``). Pure functions do the work (``run_reservoir``, ``readout_statistics``, ``solve_readout``); the ``ESN``
module keeps the weights, the readout and the current state, as reservoirpy's ``ESN`` does.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from analysis._checks import check_key, check_number, check_positive_int
from jaxdl.models._readout import (
    accumulator_dtype,
    check_ridge,
    check_sequence,
    check_solution,
    empty_accumulator,
    finish,
    fold,
    ridge_regression,
    solve_readout,
)


class SparseRows(NamedTuple):
    """A sparse matrix in ELL layout stored slot-major: ``values`` and ``indices`` are ``(width, n)`` and row ``i``
    of the product is ``sum_j values[j, i] * x[indices[j, i]]``. Slot-major gathers are contiguous per slot: about
    1.6x faster than row-major on a 2-core CPU at n = 1000, fan-in 10 (measured in a ``lax.scan`` step)."""

    values: jax.Array
    indices: jax.Array


Recurrent = Union[jax.Array, SparseRows]


class ReservoirWeights(NamedTuple):
    """``w_in (units, in)``, recurrent ``w`` (dense ``(units, units)`` or ``SparseRows``), ``bias (units,)``."""

    w_in: jax.Array
    w: Recurrent
    bias: jax.Array


class Reservoir(nnx.Variable):
    """Fixed (never trained) reservoir weights: not an ``nnx.Param``, so optimisers and ``nnx.grad`` skip them."""


class Readout(nnx.Variable):
    """Readout weights solved in closed form."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def check_leak(leak) -> float:
    """A leak rate in (0, 1] (a real number, not a bool)."""
    return check_number(leak, "leak", positive=True, maximum=1.0)


def check_spectral_radius(spectral_radius) -> float:
    """A finite positive spectral radius (a real number, not a bool)."""
    return check_number(spectral_radius, "spectral_radius", positive=True)


def check_fraction(value, name: str) -> float:
    """A connectivity: a real number in (0, 1]."""
    return check_number(value, name, positive=True, maximum=1.0)


def spectral_radius_dense(w: np.ndarray) -> float:
    """Largest eigenvalue modulus from all eigenvalues, in float64 on the host (reference and init scaling)."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(w, dtype=np.float64)))))


def host_rng(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by a JAX PRNG key: reservoirs are drawn on the host (their spectral radius needs
    host eigenvalues anyway), with no per-shape compilation, and the same key still gives the same bits."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())


def exact_mask(key: jax.Array, shape: tuple[int, int], density: float) -> np.ndarray:
    """A boolean mask with exactly ``round(density * size)`` (at least one) ``True`` entries at uniformly random
    positions, as ``scipy.sparse.random`` (used by reservoirpy) draws them: independent coin flips would sometimes
    starve the input layer."""
    size = shape[0] * shape[1]
    count = max(1, int(round(density * size)))
    mask = np.zeros(size, bool)
    mask[host_rng(key).choice(size, count, replace=False)] = True
    return mask.reshape(shape)


def to_dense(w: Recurrent) -> jax.Array:
    """The ``(n, n)`` matrix of a dense or ``SparseRows`` recurrent weight."""
    if not isinstance(w, SparseRows):
        return jnp.asarray(w)
    width, n = w.values.shape
    rows = jnp.tile(jnp.arange(n), width)
    return jnp.zeros((n, n), w.values.dtype).at[rows, w.indices.reshape(-1)].add(w.values.reshape(-1))


def _to_rows(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ELL layout of a dense matrix, rows padded with zero weights (pointing at column 0) to the widest row rounded
    up to a multiple of 8, so that reservoirs drawn with other seeds mostly share one shape (and one compilation)."""
    counts = np.count_nonzero(dense, axis=1)
    width = 8 * max(1, -(-int(counts.max()) // 8))
    idx = np.zeros((dense.shape[0], width), np.int32)
    vals = np.zeros((dense.shape[0], width))
    for i, row in enumerate(dense):
        cols = np.flatnonzero(row)
        idx[i, : cols.size], vals[i, : cols.size] = cols, row[cols]
    return vals, idx


def reservoir_matrix(
    key: jax.Array, units: int, *, spectral_radius: float, connectivity: float = 0.1, fan_in: Optional[int] = None,
    sparse: Optional[bool] = None, dtype=jnp.float32,
) -> Recurrent:
    """A random recurrent matrix with normal weights rescaled to exactly ``spectral_radius`` (sec. 10.8).

    Args:
      key: PRNG key.
      units: reservoir size ``n``.
      spectral_radius: target largest eigenvalue modulus (computed from all eigenvalues, float64).
      connectivity: with ``fan_in=None``, this fraction of the entries (exactly, at random positions: an
        Erdos-Renyi graph with a fixed number of edges, as reservoirpy's default ``rc_connectivity=0.1``) is
        non-zero.
      fan_in: if given, every unit receives exactly ``fan_in`` connections instead (Lukosevicius 2012 recommends a
        fixed small fan-in: a step then costs ``n * fan_in`` whatever ``n``).
      sparse: store as ``SparseRows`` (a gather of the non-zeros per step) or dense. Default: sparse unless
        ``connectivity > 0.5``.
      dtype: storage dtype.

    Returns:
      A dense ``(units, units)`` array or ``SparseRows``.

    Raises:
      ValueError: ``spectral_radius <= 0``, ``connectivity`` outside (0, 1], ``fan_in`` outside [1, units], or a
        draw with no non-zero eigenvalue.

    Example:
      >>> w = reservoir_matrix(jax.random.PRNGKey(0), 50, spectral_radius=0.9)
      >>> round(spectral_radius_dense(to_dense(w)), 6)
      0.9
    """
    spectral_radius = check_spectral_radius(spectral_radius)
    check_positive_int(units, "units")
    rng = host_rng(check_key(key))
    if fan_in is None:
        check_fraction(connectivity, "connectivity")
        mask = exact_mask(key, (units, units), connectivity)
        dense = np.where(mask, rng.standard_normal((units, units)), 0.0)
        sparse = connectivity <= 0.5 if sparse is None else sparse
    else:
        _check(isinstance(fan_in, int) and not isinstance(fan_in, bool) and 1 <= fan_in <= units,
               f"fan_in={fan_in!r} is invalid; expected an integer in [1, units={units}].")
        idx = np.stack([rng.choice(units, fan_in, replace=False) for _ in range(units)])
        vals = rng.standard_normal((units, fan_in))
        dense = np.zeros((units, units))
        dense[np.repeat(np.arange(units), fan_in), idx.reshape(-1)] = vals.reshape(-1)
        sparse = True if sparse is None else sparse
    radius = spectral_radius_dense(dense)
    _check(radius > 1e-12, "the random reservoir has spectral radius 0 (nilpotent draw); use another key or "
                           "a higher connectivity.")
    dense = dense * (spectral_radius / radius)
    if not sparse:
        return jnp.asarray(dense, dtype)
    vals, idx = _to_rows(dense)
    return SparseRows(jnp.asarray(vals.T, dtype), jnp.asarray(idx.T, jnp.int32))


def input_matrix(key, units: int, in_features: int, *, input_scaling: float = 1.0, connectivity: float = 0.1,
                 dtype=jnp.float32) -> jax.Array:
    """Input weights ``+-input_scaling`` (fair coin) on exactly ``round(connectivity * units * in_features)`` random
    entries (reservoirpy's ``bernoulli`` input initializer with ``input_connectivity``)."""
    check_key(key)
    check_positive_int(units, "units")
    check_positive_int(in_features, "in_features")
    check_number(input_scaling, "input_scaling", positive=True)
    check_fraction(connectivity, "input_connectivity")
    signs = np.where(host_rng(jax.random.fold_in(key, 1)).random((units, in_features)) < 0.5, 1.0, -1.0)
    mask = exact_mask(key, (units, in_features), connectivity)
    return jnp.asarray(input_scaling * signs * mask, dtype)


def recurrent_matvec(w: Recurrent, h: jax.Array) -> jax.Array:
    """``W h`` for a dense matrix or ``SparseRows`` (a gather of ``n * fan_in`` entries)."""
    if isinstance(w, SparseRows):
        return jnp.sum(w.values * h[w.indices], axis=0)
    return w @ h


def reservoir_step(weights: ReservoirWeights, h: jax.Array, u: jax.Array, leak) -> jax.Array:
    """One leaky-integrator update ``(1 - a) h + a tanh(W h + W_in u + b)``."""
    pre = recurrent_matvec(weights.w, h) + weights.w_in @ u + weights.bias
    return (1.0 - leak) * h + leak * jnp.tanh(pre)


def _scan_drive(weights: ReservoirWeights, h0, drive, leak, unroll: int = 1):
    """The recurrence given the input drive ``W_in u_t + b`` of every step (one matrix product for all steps)."""

    def body(h, d):
        h = (1.0 - leak) * h + leak * jnp.tanh(recurrent_matvec(weights.w, h) + d)
        return h, h

    return jax.lax.scan(body, h0, drive, unroll=unroll)


@functools.partial(jax.jit, static_argnames="unroll")
def run_reservoir(
    weights: ReservoirWeights, h0: jax.Array, inputs: jax.Array, leak, *, unroll: int = 1
) -> tuple[jax.Array, jax.Array]:
    """The final state and the states ``(T, units)`` driven by ``inputs (T, in)`` from ``h0`` (``lax.scan``, its
    loop unrolled ``unroll`` times: fewer loop iterations, which pays on an accelerator)."""
    return _scan_drive(weights, h0, inputs @ weights.w_in.T + weights.bias, leak, unroll)


@functools.partial(jax.jit, static_argnames=("warmup", "chunk", "unroll"))
def readout_statistics(
    weights: ReservoirWeights, h0, inputs, targets, leak, *, warmup: int = 0, chunk: int = 1024, unroll: int = 1
):
    """Run the reservoir and accumulate the readout's normal equations over steps ``t >= warmup``, chunk by chunk.

    States are never stored whole: each chunk of ``chunk`` steps is scanned, then folded into the Gram matrix
    (upper block triangle only, ``jaxdl.models._readout``), so memory is ``O(chunk n + n^2)`` for any length. Sums
    are float64 when x64 is enabled.

    Returns:
      ``(final_state, ReadoutStatistics)``.
    """
    acc = accumulator_dtype(h0.dtype)
    n, m = h0.shape[0], targets.shape[1]
    h, _ = jax.lax.scan(lambda h, u: (reservoir_step(weights, h, u, leak), None), h0, inputs[:warmup])
    inputs, targets = inputs[warmup:], targets[warmup:]
    x_shift, y_shift = reservoir_step(weights, h, inputs[0], leak), targets[0]

    def chunk_body(carry, block):
        h, stats = carry
        h, xs = _scan_drive(weights, h, block[0] @ weights.w_in.T + weights.bias, leak, unroll)
        return (h, fold(stats, xs, block[1], x_shift, y_shift)), None

    steps = inputs.shape[0]
    full = (steps // chunk) * chunk
    blocks = (inputs[:full].reshape(-1, chunk, inputs.shape[1]), targets[:full].reshape(-1, chunk, m))
    (h, stats), _ = jax.lax.scan(chunk_body, (h, empty_accumulator(n, m, acc)), blocks)
    if full < steps:
        (h, stats), _ = chunk_body((h, stats), (inputs[full:], targets[full:]))
    return h, finish(stats, steps, x_shift, y_shift)


class ReservoirState(nnx.Variable):
    """The current reservoir state, carried from ``fit`` to ``__call__`` as in reservoirpy."""


class ESN(nnx.Module):
    """Echo state network: fixed leaky tanh reservoir, ridge readout (Deep Learning sec. 10.8).

    Defaults follow reservoirpy's ``Reservoir``/``Ridge``: normal recurrent weights with 10% connectivity rescaled to
    ``spectral_radius``, input weights ``+-input_scaling`` with 10% connectivity, zero bias unless ``bias_scaling``
    (then ``U(-bias_scaling, bias_scaling)``). See :func:`reservoir_matrix` for ``connectivity``, ``fan_in`` and
    ``sparse``; ``unroll`` unrolls the time loop ``lax.scan`` runs (for speed on an accelerator; the arithmetic is
    the same). The sums of the readout run in float64 when x64 is enabled: with ``ridge = 1e-5`` a float32 Gram
    matrix loses the directions the readout needs (float32 states are fine).

    Example:
      >>> esn = ESN(1, 100, 1, spectral_radius=1.25, leak=0.3, ridge=1e-5, rngs=nnx.Rngs(0))
      >>> u = jnp.sin(jnp.arange(300.0) / 5)[:, None]
      >>> esn = esn.fit(u[:-1], u[1:], warmup=50)
      >>> esn(u[:10]).shape
      (10, 1)
    """

    def __init__(
        self, in_features: int, units: int, out_features: int = 1, *, spectral_radius: float = 1.25,
        leak: float = 0.3, input_scaling: float = 1.0, bias_scaling: float = 0.0, connectivity: float = 0.1,
        input_connectivity: float = 0.1, fan_in: Optional[int] = None, sparse: Optional[bool] = None,
        ridge: float = 1e-5, unroll: int = 1, rngs: nnx.Rngs, dtype=jnp.float32,
    ):
        for v, k in ((in_features, "in_features"), (units, "units"), (out_features, "out_features")):
            check_positive_int(v, k)
        self.leak, self.ridge = check_leak(leak), check_ridge(ridge)
        _check(isinstance(unroll, int) and not isinstance(unroll, bool) and unroll > 0,
               f"unroll={unroll!r} is invalid; expected a positive integer.")
        self.unroll = unroll
        check_number(bias_scaling, "bias_scaling", minimum=0)
        check_number(input_scaling, "input_scaling", positive=True)
        check_spectral_radius(spectral_radius)
        check_fraction(input_connectivity, "input_connectivity")
        w = reservoir_matrix(rngs.params(), units, spectral_radius=spectral_radius, connectivity=connectivity,
                             fan_in=fan_in, sparse=sparse, dtype=dtype)
        self.sparse = isinstance(w, SparseRows)
        self.w = Reservoir(w.values if self.sparse else w)
        self.w_indices = Reservoir(w.indices if self.sparse else jnp.zeros((0,), jnp.int32))
        self.w_in = Reservoir(input_matrix(rngs.params(), units, in_features, input_scaling=input_scaling,
                                           connectivity=input_connectivity, dtype=dtype))
        self.bias = Reservoir(jnp.asarray(bias_scaling * host_rng(rngs.params()).uniform(-1.0, 1.0, units), dtype))
        self.w_out = Readout(jnp.zeros((units, out_features), dtype))
        self.b_out = Readout(jnp.zeros((out_features,), dtype))
        self.state = ReservoirState(jnp.zeros((units,), dtype))
        self.in_features, self.units, self.out_features = in_features, units, out_features

    @property
    def weights(self) -> ReservoirWeights:
        w = SparseRows(self.w[...], self.w_indices[...]) if self.sparse else self.w[...]
        return ReservoirWeights(self.w_in[...], w, self.bias[...])

    def reset(self, state: Optional[jax.Array] = None) -> None:
        """Set the reservoir state (zeros by default)."""
        self.state[...] = jnp.zeros_like(self.state[...]) if state is None else jnp.asarray(state, self.state.dtype)

    def run(self, inputs: jax.Array) -> jax.Array:
        """Reservoir states ``(T, units)`` for ``inputs (T, in)`` from the current state (which advances)."""
        inputs = check_sequence(inputs, "inputs", self.in_features)
        h, states = run_reservoir(self.weights, self.state[...], inputs.astype(self.state.dtype), self.leak,
                                  unroll=self.unroll)
        self.state[...] = h
        return states

    def fit(self, inputs: jax.Array, targets: jax.Array, *, warmup: int = 0, chunk: int = 1024) -> "ESN":
        """Teacher-forced training: drive with ``inputs``, solve the readout on steps ``>= warmup``.

        Raises:
          ValueError: wrong ranks or widths, empty or non-finite sequences, lengths that differ, ``warmup`` leaving
            no step, a non-finite solution.
        """
        inputs = check_sequence(inputs, "inputs", self.in_features)
        targets = check_sequence(targets, "targets", self.out_features)
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs has {inputs.shape[0]} steps but targets has {targets.shape[0]}.")
        _check(isinstance(warmup, int) and 0 <= warmup < inputs.shape[0],
               f"warmup={warmup!r} is invalid; expected an integer in [0, {inputs.shape[0]}).")
        _check(isinstance(chunk, int) and chunk > 0, f"chunk={chunk!r} is invalid; expected a positive integer.")
        dtype = self.state.dtype
        h, stats = readout_statistics(self.weights, self.state[...], inputs.astype(dtype), targets.astype(dtype),
                                      self.leak, warmup=warmup, chunk=chunk, unroll=self.unroll)
        w, b = solve_readout(stats, self.ridge)
        check_solution(w, self.ridge)
        self.w_out[...], self.b_out[...], self.state[...] = w.astype(dtype), b.astype(dtype), h
        return self

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Readout predictions ``(T, out)`` for ``inputs (T, in)`` from the current state (which advances)."""
        inputs = check_sequence(inputs, "inputs", self.in_features)
        h, ys = _predict(self.weights, self.state[...], inputs.astype(self.state.dtype), self.leak,
                         self.w_out[...], self.b_out[...], unroll=self.unroll)
        self.state[...] = h
        return ys

    def generate(self, num_steps: int) -> jax.Array:
        """Closed-loop generation: each prediction is fed back as the next input (needs ``out == in``)."""
        _check(self.in_features == self.out_features,
               f"closed-loop generation needs out_features == in_features, got {self.out_features} and "
               f"{self.in_features}.")
        _check(isinstance(num_steps, int) and num_steps > 0,
               f"num_steps={num_steps!r} is invalid; expected a positive integer.")
        h, ys = _generate(self.weights, self.state[...], self.leak, self.w_out[...], self.b_out[...],
                          num_steps=num_steps)
        self.state[...] = h
        return ys


@functools.partial(jax.jit, static_argnames="unroll")
def _predict(weights, h0, inputs, leak, w_out, b_out, *, unroll: int = 1):
    def body(h, d):
        h = (1.0 - leak) * h + leak * jnp.tanh(recurrent_matvec(weights.w, h) + d)
        return h, h @ w_out + b_out

    return jax.lax.scan(body, h0, inputs @ weights.w_in.T + weights.bias, unroll=unroll)


@functools.partial(jax.jit, static_argnames="num_steps")
def _generate(weights, h0, leak, w_out, b_out, *, num_steps: int):
    def body(h, _):
        y = h @ w_out + b_out
        return reservoir_step(weights, h, y, leak), y

    return jax.lax.scan(body, h0, None, length=num_steps)


def memory_capacity(states: jax.Array, delayed: jax.Array, *, train_steps: int, ridge: float = 1e-8) -> jax.Array:
    """Per-delay memory ``MC_k = corr(u_{t-k}, y_k(t))^2`` on held-out steps (Jaeger 2002); ``MC = sum_k MC_k``.

    Args:
      states: reservoir states ``(T, n)`` driven by an i.i.d. input (washout already removed).
      delayed: ``(T, K)`` targets ``u_{t-k}`` for ``k = 1..K`` (:func:`jaxdl.data.delay_lines`).
      train_steps: the first ``train_steps`` steps fit one ridge readout per delay; the rest score it.
      ridge: ridge penalty.

    Returns:
      ``(K,)`` squared correlations in [0, 1].
    """
    _check(isinstance(train_steps, int) and 0 < train_steps < states.shape[0] - 1,
           f"train_steps={train_steps!r} is invalid; expected an integer in (0, {states.shape[0] - 1}).")
    w, b = ridge_regression(states[:train_steps], delayed[:train_steps], ridge)
    pred = states[train_steps:] @ w.astype(states.dtype) + b.astype(states.dtype)
    target = delayed[train_steps:]
    pc, tc = pred - pred.mean(0), target - target.mean(0)
    return (pc * tc).sum(0) ** 2 / ((pc * pc).sum(0) * (tc * tc).sum(0))
