"""Sequences generated in code: Mackey-Glass, forecasting splits, and memory tasks for recurrent networks.

Deep Learning ch. 10 trains recurrent networks on sequences; the echo state network literature (sec. 10.8) measures
them on the Mackey-Glass delay differential equation and on delayed-recall tasks. Everything here is deterministic
in its seed or PRNG key.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from analysis._checks import check_key, check_number, check_positive_int

MG_METHODS = ("rk4", "reservoirpy")


def _steps_per(span: float, step: float, what: str) -> int:
    count = span / step
    if abs(count - round(count)) > 1e-9 * max(1.0, count):
        raise ValueError(f"{what}={span} is not a whole multiple of integration_step={step}.")
    return int(round(count))


def _mg_reservoirpy(num_steps, tau, a, b, n, x0, h, seed, history) -> np.ndarray:
    """reservoirpy's discretisation, reproduced operation for operation in float64 (same bits).

    reservoirpy (``reservoirpy.datasets.mackey_glass``) advances ``x`` with a Runge-Kutta-like update in which the
    delayed value is held fixed over the step and the stage increments are combined as ``k2 = 2 k1 + bh k1``,
    ``k3 = 2 k1 + bh k2``, ``k4 = k1 + bh k3`` (``bh = -b h``). It is not the classical RK4 of the delay equation
    but it is what every reservoirpy result is computed on, so comparisons must use it.
    """
    lag = int(math.floor(tau / h))
    if history is None:
        rng = np.random.default_rng(seed)
        past = x0 * np.ones(lag) + 0.2 * (rng.random(lag) - 0.5)
    else:
        if len(history) < lag:
            raise ValueError(f"history has length {len(history)}; expected at least floor(tau / h) = {lag}.")
        past = np.asarray(history, dtype=np.float64)[len(history) - lag:]
    out = np.empty(lag + num_steps)
    out[:lag] = past
    xt = x0
    bh = -b * h
    for i in range(lag, lag + num_steps):
        out[i] = xt
        xtau = out[i - lag] if tau > 0 else 0.0
        k1 = bh * xt + a * xtau / (1 + xtau**n)
        k2 = 2 * k1 + bh * k1
        k3 = 2 * k1 + bh * k2
        k4 = k1 + bh * k3
        xt = xt + (k1 + k2 + k3 + k4) / 6
    return out[lag:]


def _mg_rk4(num_steps, tau, a, b, n, x0, sample_step, dt, history) -> np.ndarray:
    """Classical RK4 on the delay equation with step ``dt``; delayed mid-step values by cubic interpolation."""
    lag = _steps_per(tau, dt, "tau")
    every = _steps_per(sample_step, dt, "sample_step")
    if lag < 2:
        raise ValueError(f"tau / integration_step = {lag}; expected at least 2 integration steps per delay.")
    total = (num_steps - 1) * every + 1
    if history is None:
        past = np.full(lag + 2, x0)
    else:
        if len(history) < lag + 2:
            raise ValueError(f"history has length {len(history)}; expected at least tau / integration_step + 2 = "
                             f"{lag + 2} values on the integration grid.")
        past = np.asarray(history, dtype=np.float64)[len(history) - lag - 2:]
    start = len(past)
    with jax.enable_x64(True):
        buf = jnp.concatenate([jnp.asarray(past, jnp.float64), jnp.zeros(total, jnp.float64)])
        buf = buf.at[start].set(x0)

        def rhs(x, xd):
            return a * xd / (1.0 + xd**n) - b * x

        def step(i, buf):
            # Delayed values at t - tau, t - tau + dt/2 (cubic Lagrange through four grid points), t - tau + dt.
            j = i - lag
            xm1, x0_, x1, x2 = (jax.lax.dynamic_index_in_dim(buf, j + o, keepdims=False) for o in (-1, 0, 1, 2))
            mid = (-xm1 + 9.0 * x0_ + 9.0 * x1 - x2) / 16.0
            x = buf[i]
            k1 = rhs(x, x0_)
            k2 = rhs(x + 0.5 * dt * k1, mid)
            k3 = rhs(x + 0.5 * dt * k2, mid)
            k4 = rhs(x + dt * k3, x1)
            return buf.at[i + 1].set(x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))

        buf = jax.lax.fori_loop(start, start + total - 1, step, buf)
        return np.asarray(buf[start::every][:num_steps])


def mackey_glass(
    num_steps: int,
    *,
    tau: float = 17.0,
    a: float = 0.2,
    b: float = 0.1,
    n: int = 10,
    x0: float = 1.2,
    sample_step: float = 1.0,
    method: str = "rk4",
    integration_step: float = 0.1,
    seed: int = 5555,
    history: Optional[np.ndarray] = None,
    dtype=jnp.float32,
) -> jax.Array:
    """The Mackey-Glass series ``dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t)``, sampled every ``sample_step``.

    Deep Learning sec. 10.8 (echo state networks) is usually demonstrated on this chaotic series with ``tau = 17``.

    Args:
      num_steps: number of samples returned.
      tau, a, b, n, x0: equation parameters and the value at time 0.
      sample_step: time between samples (reservoirpy's ``h``).
      method: ``"rk4"``: classical fourth-order Runge-Kutta with step ``integration_step`` and constant history
        ``x0`` (or ``history``) before time 0, computed in float64. ``"reservoirpy"``: reservoirpy's own recurrence
        with step ``sample_step``, its random history drawn from ``numpy.random.default_rng(seed)`` (reservoirpy's
        default seed is 5555), reproducing ``reservoirpy.datasets.mackey_glass`` value for value.
      integration_step: RK4 step; ``tau`` and ``sample_step`` must be whole multiples of it.
      seed: history seed of the reservoirpy method (unused by ``"rk4"``).
      history: optional past values (oldest first) replacing the default history.
      dtype: dtype of the returned array.

    Returns:
      ``(num_steps, 1)`` array.

    Raises:
      ValueError: non-positive sizes or parameters, unknown ``method``, steps that do not divide ``tau``, a too short
        or non-finite ``history``.

    Example:
      >>> mackey_glass(3, method="reservoirpy")[:, 0]
      Array([1.2      , 1.1375389, 1.061687 ], dtype=float32)
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    n = check_positive_int(n, "n")
    tau, a, b, x0 = (check_number(v, k, positive=True) for v, k in ((tau, "tau"), (a, "a"), (b, "b"), (x0, "x0")))
    sample_step = check_number(sample_step, "sample_step", positive=True)
    if method not in MG_METHODS:
        raise ValueError(f"method={method!r} is invalid; expected one of {', '.join(map(repr, MG_METHODS))}.")
    if history is not None:
        history = np.asarray(history, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(history)):
            raise ValueError("history contains NaN/inf values; expected finite values.")
    if method == "reservoirpy":
        series = _mg_reservoirpy(num_steps, tau, a, b, n, x0, sample_step, seed, history)
    else:
        dt = check_number(integration_step, "integration_step", positive=True)
        series = _mg_rk4(num_steps, tau, a, b, n, x0, sample_step, dt, history)
    return jnp.asarray(series.reshape(-1, 1), dtype=dtype)


def forecasting_split(series: jax.Array, *, horizon: int = 1, test_fraction: float = 0.2):
    """``(x_train, x_test, y_train, y_test)`` for ``horizon``-step-ahead forecasting, reservoirpy's split.

    ``x = series[:-horizon]``, ``y = series[horizon:]``; the last ``round(len(series) * test_fraction)`` pairs are
    the test set (as reservoirpy's ``to_forecasting(series, forecast=horizon, test_size=test_fraction)``).

    Raises:
      ValueError: a series that is not ``(T, features)``, empty, non-finite, too short, or a bad fraction.
    """
    series = jnp.asarray(series)
    if series.ndim != 2:
        raise ValueError(f"series has shape {series.shape}; expected rank 2, (time, features).")
    horizon = check_positive_int(horizon, "horizon")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} is invalid; expected a value in (0, 1).")
    if not bool(jnp.all(jnp.isfinite(series))):
        raise ValueError("series contains NaN/inf values; expected finite values.")
    test_len = round(series.shape[0] * test_fraction)
    if series.shape[0] - horizon - test_len < 1 or test_len < 1:
        raise ValueError(f"series of length {series.shape[0]} is too short for horizon={horizon} and "
                         f"test_fraction={test_fraction}.")
    x, y = series[:-horizon], series[horizon:]
    return x[:-test_len], x[-test_len:], y[:-test_len], y[-test_len:]


class SequenceTask(NamedTuple):
    """Inputs ``(batch, time, in)``, targets ``(batch, time, out)`` and a ``(batch, time)`` loss mask."""

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array


def delay_lines(key: jax.Array, num_steps: int, max_delay: int, *, amplitude: float = 0.5, dtype=jnp.float32):
    """The memory-capacity task (Jaeger 2002): i.i.d. input ``u_t ~ U(-amplitude, amplitude)``, targets ``u_{t-k}``.

    Returns:
      ``(u, targets)``: ``(num_steps, 1)`` and ``(num_steps, max_delay)`` with ``targets[t, k-1] = u[t-k]``
      (zero for ``t < k``: discard at least the first ``max_delay`` steps).

    Example:
      >>> u, y = delay_lines(jax.random.PRNGKey(0), 10, 3)
      >>> bool(y[5, 1] == u[3, 0])
      True
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    max_delay = check_positive_int(max_delay, "max_delay")
    amplitude = check_number(amplitude, "amplitude", positive=True)
    if max_delay >= num_steps:
        raise ValueError(f"max_delay={max_delay} is invalid; expected fewer delays than num_steps={num_steps}.")
    u = jax.random.uniform(check_key(key), (num_steps,), dtype, -amplitude, amplitude)
    padded = jnp.concatenate([jnp.zeros(max_delay, dtype), u])
    targets = jnp.stack([padded[max_delay - k: max_delay - k + num_steps] for k in range(1, max_delay + 1)], axis=1)
    return u[:, None], targets


def delayed_recall(key: jax.Array, num_sequences: int, length: int, delay: int, *, dtype=jnp.float32) -> SequenceTask:
    """Reproduce the input ``delay`` steps later: ``y_t = x_{t-delay}``, scored for ``t >= delay``.

    Inputs are standard normal; a network must carry each value for ``delay`` steps (a long-memory task for BPTT,
    Deep Learning sec. 10.7).
    """
    num_sequences, length, delay = (check_positive_int(v, k) for v, k in
                                    ((num_sequences, "num_sequences"), (length, "length"), (delay, "delay")))
    if delay >= length:
        raise ValueError(f"delay={delay} is invalid; expected delay < length={length}.")
    x = jax.random.normal(check_key(key), (num_sequences, length, 1), dtype)
    y = jnp.concatenate([jnp.zeros((num_sequences, delay, 1), dtype), x[:, : length - delay]], axis=1)
    mask = jnp.broadcast_to(jnp.arange(length) >= delay, (num_sequences, length)).astype(dtype)
    return SequenceTask(x, y, mask)


def copy_memory(
    key: jax.Array, num_sequences: int, *, num_symbols: int = 8, length: int = 10, delay: int = 20, dtype=jnp.float32
) -> SequenceTask:
    """The copy task: see ``length`` symbols, wait ``delay`` blanks, then write the symbols back after a cue.

    Inputs are one-hot over ``num_symbols + 2`` channels (symbols, blank, cue), sequence length
    ``2 * length + delay``. Targets are one-hot symbols over ``num_symbols + 1`` classes (the last is blank); the
    mask selects the ``length`` recall steps.
    """
    num_sequences, num_symbols, length, delay = (
        check_positive_int(v, k) for v, k in ((num_sequences, "num_sequences"), (num_symbols, "num_symbols"),
                                         (length, "length"), (delay, "delay")))
    total = 2 * length + delay
    symbols = jax.random.randint(check_key(key), (num_sequences, length), 0, num_symbols)
    blank, cue = num_symbols, num_symbols + 1
    seq_in = jnp.full((num_sequences, total), blank).at[:, :length].set(symbols).at[:, length + delay - 1].set(cue)
    seq_out = jnp.full((num_sequences, total), num_symbols).at[:, length + delay:].set(symbols)
    mask = jnp.broadcast_to(jnp.arange(total) >= length + delay, (num_sequences, total)).astype(dtype)
    return SequenceTask(jax.nn.one_hot(seq_in, num_symbols + 2, dtype=dtype),
                        jax.nn.one_hot(seq_out, num_symbols + 1, dtype=dtype), mask)
