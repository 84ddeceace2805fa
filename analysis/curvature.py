"""Gradient curvature: the second-order model of one gradient step (Deep Learning book sec. 8.2.1, eq. 8.10).

A step ``-eps g`` changes the loss by about ``1/2 eps^2 g^T H g - eps g^T g``. When ``eps g^T H g / (2 g^T g)``
exceeds 1 the quadratic model predicts that the step raises the loss: ill-conditioning in the book's sense.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from analysis._objective import (BlockSpec, check_block, flat_view, make_objective, source_matmat,
                                 value_and_grad_term)
from analysis.batches import checked_source
from analysis.curvatures import Curvature, curvature_of, with_curvature

PyTree = Any


class GradientCurvature(NamedTuple):
    """Loss, gradient and the two quadratic forms of eq. 8.10 at one point.

    Attributes:
      loss: the loss value.
      grad: the gradient, params-shaped.
      gTg: ``g^T g``.
      gTHg: ``g^T H g``.
    """

    loss: jax.Array
    grad: PyTree
    gTg: jax.Array
    gTHg: jax.Array

    def predicted_change(self, eps: float | jax.Array) -> jax.Array:
        """Eq. 8.10: the second-order change of the loss after the step ``-eps g``."""
        return 0.5 * eps**2 * self.gTHg - eps * self.gTg

    def curvature_ratio(self, eps: float | jax.Array) -> jax.Array:
        """``eps g^T H g / (2 g^T g)``; above 1 the quadratic model predicts that the step raises the loss."""
        return eps * self.gTHg / (2 * self.gTg)

    def optimal_step(self) -> jax.Array:
        """``g^T g / g^T H g``: the step size minimising the quadratic model (book eq. 8.11), if ``g^T H g > 0``."""
        return self.gTg / self.gTHg


def gradient_curvature_flat(obj) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Loss, flat gradient, g^T g and g^T H g of a :class:`FlatObjective` from one ``jax.linearize`` pass."""
    (loss, g), lin = jax.linearize(obj.value_and_grad, obj.theta)
    _, Hg = lin(g)
    return loss, g, jnp.vdot(g, g), jnp.vdot(g, Hg)


@functools.partial(jax.jit, static_argnames=("loss_fn", "microbatched", "block"))
def _gradient_curvature(loss_fn, params, batch, microbatched, block):
    obj = make_objective(loss_fn, params, batch, microbatched=microbatched, block=block)
    if microbatched or curvature_of(loss_fn) != "hessian":
        # Gradient first, then one product with it (accumulated over microbatches: two passes over the data).
        loss, g = obj.value_and_grad(obj.theta)
        Hg = obj.hvp(obj.theta, g)
        gTg, gTHg = jnp.vdot(g, g), jnp.vdot(g, Hg)
    else:
        loss, g, gTg, gTHg = gradient_curvature_flat(obj)
    return loss, obj.unravel(g), gTg, gTHg


def _gradient_curvature_source(run, params, block):
    """As the microbatched path: the accumulated gradient (one pass), then its accumulated product (another)."""
    _, unravel = flat_view(params, block)
    loss, g = run.accumulate(value_and_grad_term, None, (("block", block),))
    Hg = source_matmat(run, block)(g[None])[0]
    return loss, unravel(g), jnp.vdot(g, g), jnp.vdot(g, Hg)


def gradient_curvature(
    loss_fn: Callable, params: PyTree, *batch: Any, microbatched: bool = False, block: BlockSpec = None,
    curvature: Curvature = "hessian",
) -> GradientCurvature:
    """Loss, gradient, ``g^T g`` and ``g^T H g`` from one linearisation of the gradient.

    Args:
      loss_fn, params, *batch, microbatched, block: as in :func:`analysis.dense_hessian`; the data may be one
        :class:`analysis.Batches` (two passes over it: the gradient, then its Hessian product).
      curvature: the matrix ``C`` of ``g^T C g`` (reported as ``gTHg``): ``"hessian"`` (default), or for a
        :func:`analysis.supervised_loss` ``"ggn"``, ``"fisher"``, ``"empirical_fisher"`` or :class:`analysis.MCFisher`
        (see ``analysis/curvatures.py``).

    Returns:
      :class:`GradientCurvature`; ``.predicted_change(eps)`` gives eq. 8.10.

    Raises:
      ValueError / TypeError: a ``block`` that selects nothing, invalid inputs (see :func:`analysis.hvp`).

    Example:
      >>> gc = gradient_curvature(lambda w: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * w**2), jnp.ones(2))
      >>> float(gc.gTg), float(gc.gTHg)
      (10.0, 28.0)
    """
    loss_fn = with_curvature(loss_fn, curvature)
    source = checked_source(loss_fn, params, batch, microbatched=microbatched)
    block = check_block(params, block)
    if source is not None:
        return GradientCurvature(*_gradient_curvature_source(source._run(loss_fn, params, "gradient_curvature"),
                                                             params, block))
    return GradientCurvature(*_gradient_curvature(loss_fn, params, batch, microbatched, block))
