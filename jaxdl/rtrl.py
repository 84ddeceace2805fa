"""Real-time recurrent learning (RTRL) next to back-propagation through time (BPTT), Deep Learning sec. 10.2.2.

Both compute the gradient of ``L = (1/T) sum_t loss_fn(readout, h_t, y_t)`` for ``h_t = step_fn(cell, h_{t-1}, x_t)``.

* BPTT is ``jax.value_and_grad`` through ``lax.scan``: it stores the ``T`` states of the forward pass and runs
  backwards, ``O(T n^2)`` time and ``O(T n)`` memory for ``n`` hidden units.
* RTRL runs forwards only and stores no sequence. It carries the influence matrix ``M_t = dh_t / dtheta``
  (``n x P``, ``P ~ n^2`` recurrent parameters) with ``M_t = J_h M_{t-1} + J_theta``, where ``J_h = dh_t/dh_{t-1}``
  and ``J_theta`` is the immediate derivative, and adds ``(dL_t/dh_t) M_t`` to the gradient at every step:
  ``O(n^2 P) = O(n^4)`` time per step and ``O(n P) = O(n^3)`` memory, independent of ``T``.

Both give the same gradient (to rounding: ~1e-14 relative in float64). RTRL's memory is flat in ``T``; BPTT's grows
linearly, so for long enough sequences (``T`` of order ``n^2``) RTRL needs less memory, at a much larger time cost.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from analysis._checks import check_finite
from jaxdl.models.rnn import CellParams, elman_step

PyTree = Any


def _check(xs, ys, h0, params) -> None:
    """Shapes first, then NaN/inf in the parameters, ``h0`` and the sequences (named in the message)."""
    for name, a in (("xs", xs), ("ys", ys)):
        shape = jnp.shape(a)
        if len(shape) != 2:
            raise ValueError(f"{name} has shape {shape}; expected rank 2, (time, features).")
        if shape[0] == 0:
            raise ValueError(f"{name} has shape {shape}: the sequence is empty; expected at least one time step.")
    if jnp.shape(xs)[0] != jnp.shape(ys)[0]:
        raise ValueError(f"xs has {jnp.shape(xs)[0]} steps but ys has {jnp.shape(ys)[0]}; expected the same length.")
    if jnp.ndim(h0) != 1:
        raise ValueError(f"h0 has shape {jnp.shape(h0)}; expected a state vector (n,).")
    check_finite(params, (), extra={"h0": h0, "xs": xs, "ys": ys})


def sequence_loss(step_fn: Callable, loss_fn: Callable, params: tuple, h0, xs, ys) -> jax.Array:
    """``(1/T) sum_t loss_fn(readout, h_t, y_t)`` with ``params = (cell, readout)``, forward by ``lax.scan``."""
    cell, readout = params

    def body(h, xy):
        h = step_fn(cell, h, xy[0])
        return h, loss_fn(readout, h, xy[1])

    _, losses = jax.lax.scan(body, h0, (xs, ys))
    return jnp.mean(losses)


@functools.partial(jax.jit, static_argnames=("step_fn", "loss_fn"))
def _bptt(step_fn, loss_fn, params, h0, xs, ys):
    return jax.value_and_grad(sequence_loss, argnums=2)(step_fn, loss_fn, params, h0, xs, ys)


def bptt_value_and_grad(step_fn: Callable, loss_fn: Callable, params: tuple, h0, xs, ys):
    """Loss and gradient by back-propagation through time (``jax.value_and_grad`` through ``lax.scan``).

    Args:
      step_fn: ``step_fn(cell_params, h, x) -> h`` (static: hashable).
      loss_fn: ``loss_fn(readout_params, h, y) -> scalar`` (static).
      params: ``(cell_params, readout_params)``, any pytrees.
      h0: initial state ``(n,)``; xs ``(T, d)``, ys ``(T, m)``.

    Returns:
      ``(loss, (cell_grads, readout_grads))``.

    Raises:
      ValueError: sequences not of rank 2, empty, or of different lengths; ``h0`` not a vector; NaN/inf in
        the parameters, ``h0`` or the sequences.
    """
    _check(xs, ys, h0, params)
    return _bptt(step_fn, loss_fn, params, h0, xs, ys)


@functools.partial(jax.jit, static_argnames=("step_fn", "loss_fn"))
def _rtrl(step_fn, loss_fn, params, h0, xs, ys):
    cell, readout = params
    theta, unravel = ravel_pytree(cell)

    def f(th, h, x):
        return step_fn(unravel(th), h, x)

    def body(carry, xy):
        h, M, g_theta, g_readout, total = carry
        x, y = xy
        J_h = jax.jacfwd(f, argnums=1)(theta, h, x)        # (n, n): n JVPs
        J_theta = jax.jacrev(f, argnums=0)(theta, h, x)    # (n, P): n VJPs, O(n P)
        h = f(theta, h, x)
        M = J_h @ M + J_theta                               # the O(n^2 P) = O(n^4) step
        loss, (g_out, g_h) = jax.value_and_grad(loss_fn, argnums=(0, 1))(readout, h, y)
        g_readout = jax.tree_util.tree_map(jnp.add, g_readout, g_out)
        return (h, M, g_theta + g_h @ M, g_readout, total + loss), None

    n, P = h0.shape[0], theta.shape[0]
    zeros_readout = jax.tree_util.tree_map(jnp.zeros_like, readout)
    init = (h0, jnp.zeros((n, P), theta.dtype), jnp.zeros_like(theta), zeros_readout, jnp.zeros((), theta.dtype))
    (_, _, g_theta, g_readout, total), _ = jax.lax.scan(body, init, (xs, ys))
    count = xs.shape[0]
    grads = (unravel(g_theta / count), jax.tree_util.tree_map(lambda g: g / count, g_readout))
    return total / count, grads


def rtrl_value_and_grad(step_fn: Callable, loss_fn: Callable, params: tuple, h0, xs, ys):
    """Loss and gradient by real-time recurrent learning: forward only, no stored states (see module docstring).

    Same arguments and result as :func:`bptt_value_and_grad`; ``h0`` is a constant (not a function of the
    parameters).

    Example:
      >>> from jaxdl.models.rnn import CellParams, elman_step
      >>> step = lambda p, h, x: elman_step(p, h, x)
      >>> loss = lambda v, h, y: jnp.sum((h @ v - y) ** 2)
      >>> k = jax.random.split(jax.random.PRNGKey(0), 4)
      >>> cell = CellParams(jax.random.normal(k[0], (1, 3)), 0.3 * jax.random.normal(k[1], (3, 3)), jnp.zeros(3))
      >>> params = (cell, jnp.ones((3, 1)))
      >>> xs, ys = jax.random.normal(k[2], (5, 1)), jax.random.normal(k[3], (5, 1))
      >>> a = rtrl_value_and_grad(step, loss, params, jnp.zeros(3), xs, ys)[1]
      >>> b = bptt_value_and_grad(step, loss, params, jnp.zeros(3), xs, ys)[1]
      >>> bool(jnp.allclose(a[0].w_h, b[0].w_h, rtol=1e-4, atol=1e-6))
      True
    """
    _check(xs, ys, h0, params)
    return _rtrl(step_fn, loss_fn, params, h0, xs, ys)


def compile_with_memory(fn: Callable, *args) -> tuple[Callable, int]:
    """``fn`` compiled for ``args`` and the scratch memory XLA allocates for it
    (``memory_analysis().temp_size_in_bytes``; -1 where the backend reports none)."""
    compiled = jax.jit(fn).lower(*args).compile()
    try:
        temp = int(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - some backends report no memory statistics
        temp = -1
    return compiled, temp


def leaky_step(p: CellParams, h, x):
    """The leaky Elman cell of the RTRL/BPTT comparisons: ``elman_step`` with leak 0.5 and tanh."""
    return elman_step(p, h, x, 0.5, "tanh")


def squared_error(v, h, y):
    """Per-step loss of a linear readout ``v = (W, b)``: ``1/2 ||h W + b - y||^2``."""
    return 0.5 * jnp.sum((h @ v[0] + v[1] - y) ** 2)


def random_problem(key, n: int, length: int, d: int = 2, m: int = 2, dtype=jnp.float32):
    """Random leaky Elman cell (recurrent weights ``N(0, 1/n)``), linear readout, inputs and targets ``N(0, 1)``."""
    k = jax.random.split(key, 6)
    cell = CellParams(jax.random.normal(k[0], (d, n), dtype), jax.random.normal(k[1], (n, n), dtype) / n**0.5,
                      0.1 * jax.random.normal(k[2], (n,), dtype))
    readout = (jax.random.normal(k[3], (n, m), dtype) / n**0.5, jnp.zeros((m,), dtype))
    xs, ys = jax.random.normal(k[4], (length, d), dtype), jax.random.normal(k[5], (length, m), dtype)
    return (cell, readout), jnp.zeros((n,), dtype), xs, ys


def crossover_length(bptt_bytes, rtrl_bytes, lengths) -> float:
    """Sequence length where BPTT's memory (fitted ``a + b T``) reaches RTRL's (mean over ``T``)."""
    b, a = np.polyfit(np.asarray(lengths, float), np.asarray(bptt_bytes, float), 1)
    return float((np.mean(rtrl_bytes) - a) / b) if b > 0 else float("inf")
