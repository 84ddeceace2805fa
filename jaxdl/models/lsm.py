"""A liquid state machine (Maass et al. 2002; Deep Learning sec. 10.8): a spiking reservoir and a linear readout.

Leaky integrate-and-fire units with binary outputs. Membrane potentials integrate an input current and the spikes of
the previous step, decay by ``decay`` per step and reset to zero after a spike:
``v_t = decay * v_{t-1} * (1 - s_{t-1}) + W s_{t-1} + W_in u_t + b`` and ``s_t = [v_t >= threshold]``. The readout
sees the liquid state: spike trains low-pass filtered by ``r_t = trace_decay * r_{t-1} + (1 - trace_decay) s_t``,
and is solved by the same closed-form ridge regression as the echo state network.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models._readout import check_ridge, check_sequence, ridge_regression
from jaxdl.models.esn import Readout, Reservoir, ReservoirWeights, host_rng, recurrent_matvec, reservoir_matrix


class LIFState(NamedTuple):
    """Membrane potentials ``v``, spikes ``s`` (0/1) and filtered spike traces ``r``, each ``(units,)``."""

    v: jax.Array
    s: jax.Array
    r: jax.Array


def lif_step(weights: ReservoirWeights, state: LIFState, u: jax.Array, decay, threshold, trace_decay) -> LIFState:
    """One step of the spiking reservoir (pure); spikes are exactly 0 or 1."""
    v = decay * state.v * (1.0 - state.s) + recurrent_matvec(weights.w, state.s) + weights.w_in @ u + weights.bias
    s = (v >= threshold).astype(v.dtype)
    return LIFState(v, s, trace_decay * state.r + (1.0 - trace_decay) * s)


@jax.jit
def run_liquid(weights: ReservoirWeights, state: LIFState, inputs, decay, threshold, trace_decay):
    """Final :class:`LIFState` and the per-step ``(spikes (T, n), traces (T, n))``."""

    def body(st, u):
        st = lif_step(weights, st, u, decay, threshold, trace_decay)
        return st, (st.s, st.r)

    return jax.lax.scan(body, state, inputs)


def _fraction(value, name: str, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and (0.0 < value < 1.0 if low_open else 0.0 <= value < 1.0)
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid; expected a value in {'(0, 1)' if low_open else '[0, 1)'}.")
    return float(value)


class LSM(nnx.Module):
    """Spiking (LIF) reservoir with a ridge readout on filtered spike trains.

    Args:
      in_features, units, out_features: widths.
      decay: membrane decay per step in (0, 1) (``exp(-dt / tau_m)``).
      threshold: firing threshold (> 0).
      spectral_radius: of the recurrent weights, in units of the threshold.
      connectivity: recurrent connection probability.
      input_scaling: standard deviation of the dense normal input weights (inputs should be standardised).
      bias_scaling: bias currents ``U(0, bias_scaling)`` spread the units' operating points.
      trace_decay: spike-trace filter in [0, 1).
      ridge: readout penalty.

    The defaults were chosen on Mackey-Glass (standardised input) by a small grid search over decay, spectral
    radius, input and bias scaling and trace decay (jaxdl/experiments/lsm.py reports the result).

    Example:
      >>> lsm = LSM(1, 200, 1, rngs=nnx.Rngs(0))
      >>> u = jnp.sin(jnp.arange(400.0) / 5)[:, None]
      >>> lsm = lsm.fit(u[:-1], u[1:], warmup=50)
      >>> lsm(u[:10]).shape
      (10, 1)
    """

    def __init__(self, in_features: int, units: int, out_features: int = 1, *, decay: float = 0.8,
                 threshold: float = 1.0, spectral_radius: float = 2.0, connectivity: float = 0.1,
                 input_scaling: float = 1.0, bias_scaling: float = 0.5, trace_decay: float = 0.3,
                 ridge: float = 1e-6, rngs: nnx.Rngs, dtype=jnp.float32):
        for v, k in ((in_features, "in_features"), (units, "units"), (out_features, "out_features")):
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"{k}={v!r} is invalid; expected a positive integer.")
        self.decay = _fraction(decay, "decay", low_open=True)
        self.trace_decay = _fraction(trace_decay, "trace_decay")
        for v, k in ((threshold, "threshold"), (input_scaling, "input_scaling")):
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{k}={v!r} is invalid; expected a positive number.")
        if not (isinstance(bias_scaling, (int, float)) and bias_scaling >= 0):
            raise ValueError(f"bias_scaling={bias_scaling!r} is invalid; expected a number >= 0.")
        self.threshold, self.ridge = float(threshold), check_ridge(ridge)
        w = reservoir_matrix(rngs.params(), units, spectral_radius=spectral_radius * threshold,
                             connectivity=connectivity, sparse=False, dtype=dtype)
        self.w = Reservoir(w)
        self.w_in = Reservoir(jnp.asarray(input_scaling * host_rng(rngs.params()).standard_normal((units, in_features)),
                                          dtype))
        self.bias = Reservoir(jnp.asarray(bias_scaling * host_rng(rngs.params()).random(units), dtype))
        self.w_out = Readout(jnp.zeros((units, out_features), dtype))
        self.b_out = Readout(jnp.zeros((out_features,), dtype))
        zeros = jnp.zeros((units,), dtype)
        self.v, self.s, self.r = Reservoir(zeros), Reservoir(zeros), Reservoir(zeros)
        self.in_features, self.units, self.out_features = in_features, units, out_features

    @property
    def weights(self) -> ReservoirWeights:
        return ReservoirWeights(self.w_in[...], self.w[...], self.bias[...])

    def run(self, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(spikes, traces)``, each ``(T, units)``, from the current state (which advances)."""
        inputs = check_sequence(inputs, "inputs", self.in_features).astype(self.v.dtype)
        state = LIFState(self.v[...], self.s[...], self.r[...])
        state, (spikes, traces) = run_liquid(self.weights, state, inputs, self.decay, self.threshold,
                                             self.trace_decay)
        self.v[...], self.s[...], self.r[...] = state
        return spikes, traces

    def fit(self, inputs: jax.Array, targets: jax.Array, *, warmup: int = 0) -> "LSM":
        """Drive with ``inputs`` and solve the ridge readout of ``targets`` on the traces of steps ``>= warmup``."""
        targets = check_sequence(targets, "targets", self.out_features)
        if jnp.shape(inputs)[0] != targets.shape[0]:
            raise ValueError(f"inputs has {jnp.shape(inputs)[0]} steps but targets has {targets.shape[0]}.")
        if not (isinstance(warmup, int) and 0 <= warmup < targets.shape[0]):
            raise ValueError(f"warmup={warmup!r} is invalid; expected an integer in [0, {targets.shape[0]}).")
        _, traces = self.run(inputs)
        w, b = ridge_regression(traces[warmup:], targets[warmup:].astype(traces.dtype), self.ridge)
        self.w_out[...], self.b_out[...] = w.astype(traces.dtype), b.astype(traces.dtype)
        return self

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Readout predictions ``(T, out)``."""
        _, traces = self.run(inputs)
        return traces @ self.w_out[...] + self.b_out[...]

    def firing_rate(self, spikes: jax.Array, window: Optional[int] = None) -> jax.Array:
        """Mean spikes per unit per step (over the last ``window`` steps)."""
        spikes = spikes if window is None else spikes[-window:]
        return jnp.mean(spikes)
