"""Curvature monitoring during training (Deep Learning book sec. 8.2.1, eq. 8.10).

At a monitored step the loss, the gradient ``g``, ``g^T g`` and ``g^T H g`` come from one ``jax.linearize`` of the
gradient over the parameter pytree (no flattening); the training step reuses that gradient, so the eq. 8.10
quantities cost one tangent pass, never a second gradient: a monitored step costs what one Hessian-vector product
costs (``g^T H g`` needs ``g`` first, so no exact method is cheaper than the tangent pass of a linearised gradient).
Two optional extras cost more and have their own switches: the actual change of the loss on the same batch (one
forward pass at the new parameters) and the top eigenvalue by a few Lanczos steps warm-started from the previous top
eigenvector (``lanczos_steps`` products, every ``eigen_every`` steps).

Typical use (``jaxdl.train.fit`` does this for you)::

    monitor = CurvatureMonitor(every=1, learning_rate=0.1, lanczos_steps=8, eigen_every=10)
    mstate = monitor.init(params)
    loss, grads, record, mstate = monitor.measure(loss_fn, params, mstate, x, y)   # inside your jitted step
    ... apply the update with grads, then record = monitor.complete(record, loss_fn(new_params, x, y))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from analysis._checks import check_bool, check_finite, check_inputs, check_key, check_number, check_params
from analysis.lanczos import lanczos_decompose, lanczos_tridiagonal

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
      lanczos_steps: Lanczos products per eigenvalue measurement, warm-started; 0 disables it
        (``top_eigenvalue`` is then NaN, clearly not a measurement).
      eigen_every: measure the top eigenvalue every ``eigen_every`` steps, a multiple of ``every`` (None = at every
        monitored step); monitored steps in between record NaN for it.
      actual_change: also evaluate the loss after the step on the same batch (one forward pass); False records NaN.
    """

    every: int = 1
    learning_rate: float = 0.1
    lanczos_steps: int = 8
    eigen_every: int | None = None
    actual_change: bool = True

    def __post_init__(self):
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every <= 0:
            raise ValueError(f"every={self.every!r} is invalid; expected a positive integer (1 = every step).")
        learning_rate = check_number(self.learning_rate, "learning_rate", positive=True)
        if not isinstance(self.learning_rate, (int, float)):  # a 0-d array: stored as a float to stay hashable
            object.__setattr__(self, "learning_rate", learning_rate)
        if isinstance(self.lanczos_steps, bool) or not isinstance(self.lanczos_steps, int) or self.lanczos_steps < 0:
            raise ValueError(f"lanczos_steps={self.lanczos_steps!r} is invalid; expected an integer >= 0.")
        e = self.eigen_every
        if e is not None and (isinstance(e, bool) or not isinstance(e, int) or e <= 0 or e % self.every):
            raise ValueError(f"eigen_every={e!r} is invalid; expected a positive multiple of every={self.every}.")
        if not isinstance(self.actual_change, bool):
            raise ValueError(f"actual_change={self.actual_change!r} is invalid; expected True or False.")

    def monitors(self, step: int) -> bool:
        """Whether absolute step ``step`` is monitored."""
        return step % self.every == 0

    def measures_eigenvalue(self, step: int) -> bool:
        """Whether the top eigenvalue is measured at absolute step ``step``."""
        return bool(self.lanczos_steps) and step % (self.eigen_every or self.every) == 0

    def init(self, params: PyTree, key: jax.Array | None = None) -> MonitorState:
        """Random unit start vector for the first Lanczos run.

        Raises:
          ValueError / TypeError: empty, non-floating or non-finite parameters, fewer parameters than
            ``lanczos_steps``, a ``key`` that is not one PRNG key.
        """
        check_params(params)
        check_finite(params, ())
        flat, _ = ravel_pytree(params)
        if self.lanczos_steps > flat.shape[0]:
            raise ValueError(f"lanczos_steps={self.lanczos_steps} exceeds the number of parameters {flat.shape[0]}.")
        key = jax.random.PRNGKey(0) if key is None else check_key(key)
        v = jax.random.normal(key, flat.shape, flat.dtype)
        return MonitorState(v / jnp.linalg.norm(v))

    def measure(
        self, loss_fn: Callable, params: PyTree, state: MonitorState, *batch: Any, eigen: bool = True
    ) -> tuple[jax.Array, PyTree, MonitorRecord, MonitorState]:
        """Loss, gradient (params-shaped, for the update) and the record of this step; jit-compatible.

        ``eigen`` (a Python bool) runs the warm-started Lanczos steps for the top eigenvalue; ``actual_change`` is
        NaN until :meth:`complete` fills it in.

        Raises:
          ValueError / TypeError: as :func:`analysis.hvp` for the loss, parameters and batch (inside ``jit`` only
            what is known at trace time: structure, shapes, dtypes), or a ``state`` not made by :meth:`init` for
            these parameters.
        """
        check_inputs(loss_fn, params, batch, microbatched=False)
        eigen = check_bool(eigen, "eigen")
        size = sum(jnp.size(leaf) for leaf in jax.tree_util.tree_leaves(params))
        top_vector = getattr(state, "top_vector", None)
        if top_vector is None or jnp.shape(top_vector) != (size,):
            raise ValueError(f"state must be the MonitorState of monitor.init(params), holding a vector of the {size} "
                             f"parameters; got {type(state).__name__} with shape {jnp.shape(top_vector)}.")
        (loss, g), lin = jax.linearize(lambda p: jax.value_and_grad(loss_fn)(p, *batch), params)
        dtype = jnp.result_type(loss)
        gTg = optax.tree.vdot(g, g)
        gTHg = optax.tree.vdot(g, lin(g)[1])
        eps = jnp.asarray(self.learning_rate, dtype)
        nan = jnp.full((), jnp.nan, dtype)
        top = resid = nan
        if eigen and self.lanczos_steps:
            _, unravel = ravel_pytree(params)
            hvp = lambda v: ravel_pytree(lin(unravel(v))[1])[0]  # noqa: E731 - the tangent map of the gradient
            top, resid, vec = _warm_lanczos(hvp, state.top_vector, self.lanczos_steps)
            state = MonitorState(vec)
        record = MonitorRecord(
            loss=loss,
            gTg=gTg,
            gTHg=gTHg,
            predicted_change=0.5 * eps**2 * gTHg - eps * gTg,
            curvature_ratio=eps * gTHg / (2 * gTg),
            top_eigenvalue=top,
            top_residual=resid,
            actual_change=nan,
        )
        return loss, g, record, state

    @staticmethod
    def complete(record: MonitorRecord, loss_after: jax.Array) -> MonitorRecord:
        """Fill in the actual change of the loss after the step (evaluated on the same batch)."""
        return record._replace(actual_change=loss_after - record.loss)


def _warm_lanczos(hvp: Callable, v0: jax.Array, steps: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top Ritz value, its residual bound ``|beta_m s_m|`` and unit Ritz vector from ``steps`` Lanczos products.

    The residual is Lanczos' own estimate ``||H y - theta y|| = |beta_m e_m^T s|`` (no extra product).
    """
    state = lanczos_decompose(hvp, v0, steps)
    theta, S = jnp.linalg.eigh(lanczos_tridiagonal(state))
    s = S[:, -1]
    vec = s @ state.Q[:steps]
    resid = state.beta[-1] * jnp.abs(s[-1])
    return theta[-1], resid, vec / jnp.linalg.norm(vec)
