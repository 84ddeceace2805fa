"""Influence functions: which training examples most change a test loss (Koh & Liang 2017, after Cook & Weisberg).

At a minimiser ``theta`` of the training objective ``R = (1/N) sum_j l_j`` (``l_j`` the loss of example ``j``
alone, regulariser included), removing example ``i`` and minimising the mean over the other ``N - 1`` moves the
parameters by ``H^{-1} grad l_i / (N - 1)`` to first order, so a test loss ``L`` changes by

    delta_i ~ grad L^T (C + lambda I)^{-1} grad l_i / (N - 1)

with ``C = H`` (``curvature="hessian"``; the GGN or a Fisher as cheaper, positive semi-definite stand-ins) and
``lambda`` a damping. One damped solve gives ``s = (C + lambda I)^{-1} grad L`` (:func:`analysis.curvature_solve`);
all ``N`` scores then come from one forward-mode pass, the derivative of every per-example loss along ``s``.
Positive ``delta_i``: removing ``i`` raises the test loss (a helpful example); negative: a harmful one.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from analysis._checks import check_params
from analysis.curvatures import Curvature
from analysis.solve import SolveResult, curvature_solve

PyTree = Any


class InfluenceScores(NamedTuple):
    """``scores (N,)``: predicted change of the test loss when each training example is left out; ``solve``: the
    damped solve behind them (check its ``residual`` and ``converged``)."""

    scores: jax.Array
    solve: SolveResult


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _directional_losses(loss_fn, params, direction, train):
    """``d/dt l_i(params + t direction)`` at ``t = 0`` for every training example ``i`` (one jvp)."""

    def per_example(p):
        return jax.vmap(lambda *ex: loss_fn(p, *(a[None] for a in ex)))(*train)

    return jax.jvp(per_example, (params,), (direction,))[1]


def influence_scores(
    loss_fn: Callable,
    params: PyTree,
    train: Sequence[Any],
    test: Sequence[Any],
    *,
    damping: float,
    curvature: Curvature = "hessian",
    rtol: float = 1e-8,
) -> InfluenceScores:
    """Predicted change of the test loss when each training example is removed and the model refitted.

    Args:
      loss_fn: the training objective ``loss_fn(params, *batch)``, a mean over examples with any regulariser
        included (evaluated on one example it is that example's ``l_i``); also used for the test loss.
      params: a minimiser of the training objective (the approximation assumes a zero training gradient).
      train: the training batch, a tuple of arrays with a leading example axis.
      test: the test batch whose mean loss is tracked (a single test example is a batch of one).
      damping: ``lambda >= 0`` of the solve (0 is exact for a positive definite Hessian).
      curvature: ``"hessian"`` or, for an :func:`analysis.supervised_loss`, ``"ggn"`` / ``"fisher"``.
      rtol: relative tolerance of the conjugate-gradient solve.

    Returns:
      :class:`InfluenceScores`.

    Raises:
      ValueError / TypeError: ``train`` or ``test`` not tuples of arrays, fewer than two training examples, and
        whatever :func:`analysis.curvature_solve` refuses.
    """
    for name, data in (("train", train), ("test", test)):
        if not isinstance(data, (tuple, list)) or not data:
            raise TypeError(f"{name}={type(data).__name__} is not a tuple of arrays; expected e.g. (x, y).")
    count = jnp.shape(jax.tree_util.tree_leaves(train)[0])[0]
    if count < 2:
        raise ValueError(f"train has {count} example(s); leaving one out needs at least 2.")
    check_params(params)
    grad_test = jax.grad(loss_fn)(params, *test)
    solve = curvature_solve(loss_fn, params, grad_test, *train, damping=damping, rtol=rtol, curvature=curvature)
    direction = jax.tree_util.tree_map(lambda s, p: s.astype(p.dtype), solve.solution, params)
    scores = _directional_losses(loss_fn, params, direction, tuple(train)) / (count - 1)
    return InfluenceScores(scores, solve)


def flat_gradient_norm(loss_fn: Callable, params: PyTree, *batch: Any) -> jax.Array:
    """``||grad R||`` at ``params``: how far from a minimiser the influence approximation starts."""
    return jnp.linalg.norm(ravel_pytree(jax.grad(loss_fn)(params, *batch))[0])
