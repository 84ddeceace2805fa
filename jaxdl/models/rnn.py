"""Elman recurrent networks in Flax NNX and the transduction types of Deep Learning ch. 10.

The state update (eq. 10.8-10.9, with an optional leak, sec. 10.9.3) is
``h_t = (1 - a) h_{t-1} + a act(x_t W_x + h_{t-1} W_h + b)``, computed by ``lax.scan``. Row-vector convention:
``dh_t / dh_{t-1} = (1 - a) I + a diag(act'(.)) W_h^T``.

Transductions (sec. 10.2-10.4): aligned sequence-to-sequence (:class:`RNN`, causal), :class:`BidirectionalRNN`
(non-causal), :class:`SequenceToVector`, :class:`VectorToSequence` and the unaligned :class:`EncoderDecoder`. Each
accepts one sequence ``(T, d)`` or a batch ``(B, T, d)``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from analysis._checks import check_number
from jaxdl.models.esn import check_leak, check_spectral_radius, reservoir_matrix, to_dense
from jaxdl.models.mlp import ACTIVATIONS

RECURRENT_INITS = ("uniform", "orthogonal", "esn")


class CellParams(NamedTuple):
    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array


def elman_step(p: CellParams, h: jax.Array, x: jax.Array, leak=1.0, activation: str = "tanh") -> jax.Array:
    """One update ``(1 - a) h + a act(x W_x + h W_h + b)``; pure, for ``lax.scan`` and Jacobian analysis."""
    return (1.0 - leak) * h + leak * ACTIVATIONS[activation](x @ p.w_x + h @ p.w_h + p.b)


def elman_scan(p: CellParams, h0: jax.Array, xs: jax.Array, leak=1.0, activation: str = "tanh",
               reverse: bool = False) -> jax.Array:
    """States ``(T, n)`` for inputs ``(T, d)``; ``reverse=True`` runs from the last step to the first."""

    def body(h, x):
        h = elman_step(p, h, x, leak, activation)
        return h, h

    return jax.lax.scan(body, h0, xs, reverse=reverse)[1]


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class ElmanCell(nnx.Module):
    """The recurrent cell ``h_t = (1 - a) h_{t-1} + a act(x_t W_x + h_{t-1} W_h + b)``.

    Args:
      in_features, hidden: input and state widths.
      leak: leak rate ``a`` in (0, 1]; 1 is the plain Elman network.
      activation: ``"tanh"``, ``"identity"`` (a linear RNN) or ``"relu"``.
      recurrent_init: ``"uniform"`` (PyTorch's default ``U(-1/sqrt(n), 1/sqrt(n))`` for every weight, spectral
        radius about ``1/sqrt(3)``), ``"orthogonal"`` (all eigenvalues on the unit circle, scaled by
        ``spectral_radius``) or ``"esn"`` (echo-state style, sec. 10.8 after Sutskever et al. 2013: every unit
        receives ``min(15, hidden)`` normal recurrent weights, rescaled to ``spectral_radius``; input weights
        ``U(-input_scaling, input_scaling)``; zero bias). All weights stay trainable.
      spectral_radius: for ``"orthogonal"`` and ``"esn"``.
      input_scaling: for ``"esn"``.

    Example:
      >>> cell = ElmanCell(3, 8, rngs=nnx.Rngs(0))
      >>> cell(jnp.zeros(8), jnp.ones(3)).shape
      (8,)
    """

    def __init__(self, in_features: int, hidden: int, *, leak: float = 1.0, activation: str = "tanh",
                 recurrent_init: str = "uniform", spectral_radius: float = 1.2, input_scaling: float = 1.0,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        for v, k in ((in_features, "in_features"), (hidden, "hidden")):
            if isinstance(v, bool) or not (isinstance(v, int) and v > 0):
                raise ValueError(f"{k}={v!r} is invalid; expected a positive integer.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is unknown; expected one of {sorted(ACTIVATIONS)}.")
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"recurrent_init={recurrent_init!r} is unknown; expected one of {RECURRENT_INITS}.")
        check_spectral_radius(spectral_radius)
        check_number(input_scaling, "input_scaling", positive=True)
        self.leak, self.activation = check_leak(leak), activation
        bound = 1.0 / hidden**0.5
        k_x, k_h, k_b = rngs.params(), rngs.params(), rngs.params()
        if recurrent_init == "esn":
            w_x = _uniform(k_x, (in_features, hidden), input_scaling, dtype)
            w_h = to_dense(reservoir_matrix(k_h, hidden, spectral_radius=spectral_radius, fan_in=min(15, hidden),
                                            sparse=False, dtype=dtype)).T
            b = jnp.zeros((hidden,), dtype)
        else:
            w_x = _uniform(k_x, (in_features, hidden), bound, dtype)
            b = _uniform(k_b, (hidden,), bound, dtype)
            if recurrent_init == "orthogonal":
                w_h = spectral_radius * jax.nn.initializers.orthogonal()(k_h, (hidden, hidden), dtype)
            else:
                w_h = _uniform(k_h, (hidden, hidden), bound, dtype)
        self.w_x, self.w_h, self.b = nnx.Param(w_x), nnx.Param(w_h), nnx.Param(b)
        self.in_features, self.hidden = in_features, hidden

    @property
    def params(self) -> CellParams:
        return CellParams(self.w_x[...], self.w_h[...], self.b[...])

    def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
        return elman_step(self.params, h, x, self.leak, self.activation)

    def scan(self, xs: jax.Array, h0=None, *, reverse: bool = False) -> jax.Array:
        h0 = jnp.zeros((self.hidden,), self.w_h.dtype) if h0 is None else h0
        return elman_scan(self.params, h0, xs, self.leak, self.activation, reverse)


def _check_sequences(xs, features: int, name: str = "xs") -> jax.Array:
    xs = jnp.asarray(xs)
    if xs.ndim not in (2, 3):
        raise ValueError(f"{name} has shape {xs.shape}; expected rank 2 (time, features) or rank 3 "
                         "(batch, time, features).")
    if xs.shape[-2] == 0 or (xs.ndim == 3 and xs.shape[0] == 0):
        raise ValueError(f"{name} has shape {xs.shape}: the sequence is empty; expected at least one time step.")
    if xs.shape[-1] != features:
        raise ValueError(f"{name} has {xs.shape[-1]} features; expected {features}.")
    return xs


def _batched(fn: Callable[[jax.Array], jax.Array], xs: jax.Array, rank: int) -> jax.Array:
    return jax.vmap(fn)(xs) if xs.ndim == rank + 1 else fn(xs)


def _cell_kwargs(kw: dict) -> dict:
    allowed = {"leak", "activation", "recurrent_init", "spectral_radius", "input_scaling", "dtype"}
    unknown = set(kw) - allowed
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; expected some of {sorted(allowed)}.")
    return kw


class RNN(nnx.Module):
    """Aligned sequence-to-sequence, causal (fig. 10.3): ``y_t = h_t V + c`` depends on ``x_1..x_t`` only.

    Example:
      >>> RNN(2, 16, 1, rngs=nnx.Rngs(0))(jnp.ones((10, 2))).shape
      (10, 1)
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, *, rngs: nnx.Rngs, **cell_kwargs):
        self.cell = ElmanCell(in_features, hidden, rngs=rngs, **_cell_kwargs(cell_kwargs))
        self.readout = nnx.Linear(hidden, out_features, rngs=rngs, dtype=self.cell.w_h.dtype,
                                  param_dtype=self.cell.w_h.dtype)

    def states(self, xs: jax.Array) -> jax.Array:
        xs = _check_sequences(xs, self.cell.in_features)
        return _batched(lambda s: self.cell.scan(s), xs, 2)

    def __call__(self, xs: jax.Array) -> jax.Array:
        return self.readout(self.states(xs))


class BidirectionalRNN(nnx.Module):
    """Aligned, non-causal (fig. 10.11): ``y_t`` reads a forward state over ``x_1..x_t`` and a backward state over
    ``x_t..x_T``."""

    def __init__(self, in_features: int, hidden: int, out_features: int, *, rngs: nnx.Rngs, **cell_kwargs):
        kw = _cell_kwargs(cell_kwargs)
        self.forward = ElmanCell(in_features, hidden, rngs=rngs, **kw)
        self.backward = ElmanCell(in_features, hidden, rngs=rngs, **kw)
        dtype = self.forward.w_h.dtype
        self.readout = nnx.Linear(2 * hidden, out_features, rngs=rngs, dtype=dtype, param_dtype=dtype)

    def __call__(self, xs: jax.Array) -> jax.Array:
        xs = _check_sequences(xs, self.forward.in_features)

        def one(s):
            return jnp.concatenate([self.forward.scan(s), self.backward.scan(s, reverse=True)], axis=-1)

        return self.readout(_batched(one, xs, 2))


class SequenceToVector(nnx.Module):
    """Reads the whole sequence, emits one vector from the final state (fig. 10.5)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, *, rngs: nnx.Rngs, **cell_kwargs):
        self.cell = ElmanCell(in_features, hidden, rngs=rngs, **_cell_kwargs(cell_kwargs))
        dtype = self.cell.w_h.dtype
        self.readout = nnx.Linear(hidden, out_features, rngs=rngs, dtype=dtype, param_dtype=dtype)

    def __call__(self, xs: jax.Array) -> jax.Array:
        xs = _check_sequences(xs, self.cell.in_features)
        return self.readout(_batched(lambda s: self.cell.scan(s)[-1], xs, 2))


class VectorToSequence(nnx.Module):
    """One vector ``x`` in, a sequence of ``length`` outputs (fig. 10.9: ``x`` is an input at every step)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, length: int, *, rngs: nnx.Rngs,
                 **cell_kwargs):
        if not (isinstance(length, int) and length > 0):
            raise ValueError(f"length={length!r} is invalid; expected a positive integer (a static sequence length).")
        self.length = length
        self.cell = ElmanCell(in_features, hidden, rngs=rngs, **_cell_kwargs(cell_kwargs))
        dtype = self.cell.w_h.dtype
        self.readout = nnx.Linear(hidden, out_features, rngs=rngs, dtype=dtype, param_dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim not in (1, 2) or x.shape[-1] != self.cell.in_features:
            raise ValueError(f"x has shape {x.shape}; expected (features,) or (batch, features) with "
                             f"{self.cell.in_features} features.")
        seq = lambda v: self.cell.scan(jnp.broadcast_to(v, (self.length, v.shape[0])))  # noqa: E731
        return self.readout(_batched(seq, x, 1))


class EncoderDecoder(nnx.Module):
    """Unaligned sequence-to-sequence (sec. 10.4): an encoder summarises ``x_1..x_T`` in a context ``C = h_T``; a
    decoder starts from ``tanh(C W_c + b_c)`` and receives ``C`` at each of its ``out_length`` steps."""

    def __init__(self, in_features: int, hidden: int, out_features: int, out_length: int, *, rngs: nnx.Rngs,
                 **cell_kwargs):
        if not (isinstance(out_length, int) and out_length > 0):
            raise ValueError(f"out_length={out_length!r} is invalid; expected a positive integer.")
        kw = _cell_kwargs(cell_kwargs)
        self.out_length = out_length
        self.encoder = ElmanCell(in_features, hidden, rngs=rngs, **kw)
        self.decoder = ElmanCell(hidden, hidden, rngs=rngs, **kw)
        dtype = self.encoder.w_h.dtype
        self.bridge = nnx.Linear(hidden, hidden, rngs=rngs, dtype=dtype, param_dtype=dtype)
        self.readout = nnx.Linear(hidden, out_features, rngs=rngs, dtype=dtype, param_dtype=dtype)

    def __call__(self, xs: jax.Array) -> jax.Array:
        xs = _check_sequences(xs, self.encoder.in_features)

        def one(s):
            context = self.encoder.scan(s)[-1]
            h0 = jnp.tanh(self.bridge(context))
            return self.decoder.scan(jnp.broadcast_to(context, (self.out_length, context.shape[0])), h0)

        return self.readout(_batched(one, xs, 2))
