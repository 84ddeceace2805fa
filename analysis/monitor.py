"""Curvature monitoring during training (Deep Learning book sec. 8.2.1, eq. 8.10).

At a monitored step the loss, the gradient ``g``, ``g^T g`` and ``g^T H g`` come from one ``jax.linearize`` of the
gradient; the training step reuses that gradient, so monitoring costs the tangent pass (and, optionally, a few
Lanczos products for the top eigenvalue), never a second gradient. The top eigenvalue is tracked by a few Lanczos
steps warm-started from the previous top eigenvector, which changes slowly between steps.

Typical use (``jaxdl.train.fit`` does this for you)::

    monitor = CurvatureMonitor(every=1, learning_rate=0.1, lanczos_steps=8)
    mstate = monitor.init(params)
    loss, grads, record, mstate = monitor.measure(loss_fn, params, mstate, x, y)   # inside your jitted step
    ... apply the update with grads, then record = monitor.complete(record, loss_fn(new_params, x, y))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import matfree.decomp
from jax.flatten_util import ravel_pytree

PyTree = Any


class MonitorState(NamedTuple):
    """Carried between monitored steps: the previous top eigenvector (flat, unit norm)."""

    top_vector: jax.Array


class MonitorRecord(NamedTuple):
    """One monitored step. ``actual_change`` is the loss after the step minus ``loss`` (same batch)."""

    loss: jax.Array
    gTg: jax.Array
    gTHg: jax.Array
    predicted_change: jax.Array
    curvature_ratio: jax.Array
    top_eigenvalue: jax.Array
    top_residual: jax.Array
    actual_change: jax.Array


@dataclasses.dataclass(frozen=True)
class CurvatureMonitor:
    """Settings of the training monitor, validated at construction.

    Attributes:
      every: monitor every ``every`` steps (1 = every step).
      learning_rate: the step size ``eps`` of eq. 8.10 (the SGD learning rate).
      lanczos_steps: Lanczos products per monitored step for the top eigenvalue, warm-started; 0 disables it
        (``top_eigenvalue`` is then NaN, clearly not a measurement).
    """

    every: int = 1
    learning_rate: float = 0.1
    lanczos_steps: int = 8

    def __post_init__(self):
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every <= 0:
            raise ValueError(f"every={self.every!r} is invalid; expected a positive integer (1 = every step).")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate={self.learning_rate!r} is invalid; expected a positive step size.")
        if isinstance(self.lanczos_steps, bool) or not isinstance(self.lanczos_steps, int) or self.lanczos_steps < 0:
            raise ValueError(f"lanczos_steps={self.lanczos_steps!r} is invalid; expected an integer >= 0.")

    def init(self, params: PyTree, key: jax.Array | None = None) -> MonitorState:
        """Random unit start vector for the first Lanczos run."""
        flat, _ = ravel_pytree(params)
        if self.lanczos_steps > flat.shape[0]:
            raise ValueError(f"lanczos_steps={self.lanczos_steps} exceeds the number of parameters {flat.shape[0]}.")
        key = jax.random.PRNGKey(0) if key is None else key
        v = jax.random.normal(key, flat.shape, flat.dtype)
        return MonitorState(v / jnp.linalg.norm(v))

    def measure(
        self, loss_fn: Callable, params: PyTree, state: MonitorState, *batch: Any
    ) -> tuple[jax.Array, PyTree, MonitorRecord, MonitorState]:
        """Loss, gradient (params-shaped, for the update) and the record of this step; jit-compatible.

        ``actual_change`` is NaN until :meth:`complete` fills it in.
        """
        flat, unravel = ravel_pytree(params)

        def vg(th):
            return jax.value_and_grad(lambda t: loss_fn(unravel(t), *batch))(th)

        (loss, g), lin = jax.linearize(vg, flat)
        hvp = lambda v: lin(v)[1]  # noqa: E731 - the tangent map of the gradient is H v
        gTg = jnp.vdot(g, g)
        gTHg = jnp.vdot(g, hvp(g))
        eps = jnp.asarray(self.learning_rate, flat.dtype)
        if self.lanczos_steps:
            top, resid, vec = _warm_lanczos(hvp, state.top_vector, self.lanczos_steps)
            state = MonitorState(vec)
        else:
            top = resid = jnp.full((), jnp.nan, flat.dtype)
        record = MonitorRecord(
            loss=loss,
            gTg=gTg,
            gTHg=gTHg,
            predicted_change=0.5 * eps**2 * gTHg - eps * gTg,
            curvature_ratio=eps * gTHg / (2 * gTg),
            top_eigenvalue=top,
            top_residual=resid,
            actual_change=jnp.full((), jnp.nan, flat.dtype),
        )
        return loss, unravel(g), record, state

    @staticmethod
    def complete(record: MonitorRecord, loss_after: jax.Array) -> MonitorRecord:
        """Fill in the actual change of the loss after the step (evaluated on the same batch)."""
        return record._replace(actual_change=loss_after - record.loss)


def _warm_lanczos(hvp: Callable, v0: jax.Array, steps: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top Ritz value, its residual bound ``|beta_m s_m|`` and unit Ritz vector from ``steps`` Lanczos products.

    The residual is Lanczos' own estimate ``||H y - theta y|| = |beta_m e_m^T s|`` (no extra product).
    """
    decompose = matfree.decomp.tridiag_sym(steps, reortho="full", materialize=True, custom_vjp=False)
    Q, T, residual, _ = decompose(hvp, v0)
    theta, S = jnp.linalg.eigh(T)
    s = S[:, -1]
    vec = s @ Q
    resid = jnp.linalg.norm(residual) * jnp.abs(s[-1])
    return theta[-1], resid, vec / jnp.linalg.norm(vec)
