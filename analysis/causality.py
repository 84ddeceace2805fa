"""Causal structure of any sequence map from its full Jacobian (Deep Learning sec. 10.2-10.4).

A sequence map ``ys = f(xs)`` is causal when output ``t`` does not depend on any input after ``t``:
``dy_t / dx_s = 0`` for every ``s > t``. The test here is exact: it computes the whole Jacobian
``(T_out, d_out, T_in, d_in)`` by automatic differentiation and reduces each time block to its Frobenius norm,
so a scan-based causal network shows exact zeros above the diagonal and a bidirectional one does not.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from analysis._checks import check_finite, check_number, error_summary


class CausalStructure(NamedTuple):
    """What the Jacobian says about which inputs each output uses.

    Attributes:
      influence: ``(T_out, T_in)`` Frobenius norms of the blocks ``dy_t / dx_s`` (``T_out = 1`` for a vector output).
      aligned: ``T_out == T_in`` (only then are "past" and "future" defined).
      causal: aligned and every block with ``s > t`` is at most ``atol`` (exactly zero with the default ``atol=0``).
      anticausal: aligned and every block with ``s < t`` is at most ``atol`` (a map run backwards in time).
      max_future_influence: largest block norm with ``s > t`` (``nan`` if not aligned).
      max_past_influence: largest block norm with ``s <= t`` (``nan`` if not aligned).
      first_input: ``(T_out,)`` earliest input step with an influence above ``atol`` (``-1`` if none).
      last_input: ``(T_out,)`` latest such step (``-1`` if none).
    """

    influence: np.ndarray
    aligned: bool
    causal: bool
    anticausal: bool
    max_future_influence: float
    max_past_influence: float
    first_input: np.ndarray
    last_input: np.ndarray


@functools.partial(jax.jit, static_argnames="seq_fn")
def _block_norms(seq_fn, xs, args):
    jac = jax.jacfwd(lambda x: seq_fn(x, *args))(xs)  # (*out_shape, T_in, d_in)
    out_ndim = jac.ndim - 2
    if out_ndim == 1:  # a vector output: one "time step"
        jac = jac[None]
    elif out_ndim == 0:
        jac = jac[None, None]
    elif out_ndim > 2:
        jac = jac.reshape((jac.shape[0], -1) + jac.shape[-2:])
    return jnp.sqrt(jnp.sum(jac * jac, axis=(1, 3)))


def causal_structure(seq_fn: Callable, xs: jax.Array, *args: Any, atol: float = 0.0) -> CausalStructure:
    """Causal structure of ``seq_fn(xs, *args)`` at ``xs`` from its full Jacobian.

    Args:
      seq_fn: ``seq_fn(xs, *args) -> ys`` with ``xs (T_in, d_in)`` and ``ys (T_out, d_out)`` (or ``(d_out,)`` for a
        sequence-to-vector map). Pass parameters through ``args`` (they are arguments of the compiled function).
      xs: the input sequence at which the Jacobian is taken.
      atol: block norms at or below this count as zero (default exact zero).

    Returns:
      :class:`CausalStructure`.

    Raises:
      ValueError / TypeError: ``xs`` not a non-empty floating-point array of rank 2, NaN/inf in ``xs`` or ``args``,
        a ``seq_fn`` that is not callable or fails on these shapes, a negative or non-finite ``atol``.

    Example:
      >>> running_sum = lambda xs: jnp.cumsum(xs, axis=0)
      >>> causal_structure(running_sum, jnp.ones((4, 1))).causal
      True
      >>> causal_structure(lambda xs: xs[::-1], jnp.ones((4, 1))).causal
      False
    """
    shape = jnp.shape(xs)
    if len(shape) != 2:
        raise ValueError(f"xs has shape {shape}; expected rank 2, (time, features).")
    if shape[0] == 0:
        raise ValueError(f"xs has shape {shape}: the sequence is empty; expected at least one time step.")
    if not jnp.issubdtype(jnp.result_type(xs), jnp.floating):
        raise TypeError(f"xs has dtype {jnp.result_type(xs)}; expected a floating-point dtype (the Jacobian is taken "
                        "with respect to it).")
    atol = check_number(atol, "atol", minimum=0)
    if not callable(seq_fn):
        raise TypeError(f"seq_fn must be callable as seq_fn(xs, *args), got {type(seq_fn).__name__}.")
    check_finite({}, (), extra={"xs": xs, "args": args})
    try:
        jax.eval_shape(seq_fn, xs, *args)
    except Exception as err:  # what the user's map raised on these shapes; the original stays chained
        raise ValueError(f"seq_fn(xs, *args) failed for xs of shape {shape}: {error_summary(err)}") from err
    influence = np.asarray(_block_norms(seq_fn, xs, tuple(args)))
    t_out, t_in = influence.shape
    aligned = t_out == t_in
    used = influence > atol
    first = np.where(used.any(1), used.argmax(1), -1)
    last = np.where(used.any(1), t_in - 1 - used[:, ::-1].argmax(1), -1)
    if aligned:
        future = np.triu(influence, k=1)
        past = np.tril(influence, k=0)
        past_strict = np.tril(influence, k=-1)
        max_future, max_past = float(future.max(initial=0.0)), float(past.max(initial=0.0))
        causal = bool(max_future <= atol)
        anticausal = bool(past_strict.max(initial=0.0) <= atol)
    else:
        max_future = max_past = float("nan")
        causal = anticausal = False
    return CausalStructure(influence, aligned, causal, anticausal, max_future, max_past, first, last)
