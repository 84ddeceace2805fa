"""Descent near saddle points (Deep Learning sec. 8.2.3): gradient descent and Newton's method with a little noise.

Gradient descent with noise leaves a saddle along the eigenvectors of negative curvature; Newton's method, which
solves ``g = 0`` in every eigen-direction alike, is attracted to it. Both run as one compiled ``lax.scan`` over
host-drawn kicks, so the same seed gives both methods the same noise.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from analysis._checks import check_choice, check_number, check_positive_int
from analysis.hessian import dense_hessian


@functools.partial(jax.jit, static_argnames=("loss_fn", "method"))
def _descend(loss_fn, params, batch, kicks, learning_rate, method):
    theta, unravel = ravel_pytree(params)

    def loss(th):
        return loss_fn(unravel(th), *batch)

    def body(th, kick):
        g = jax.grad(loss)(th)
        if method == "gradient":
            step = -learning_rate * g
        else:
            H = dense_hessian(loss_fn, unravel(th), *batch)
            lam, U = jnp.linalg.eigh(0.5 * (H + H.T))
            # Newton solves g = 0 in every eigen-direction alike, so negative curvature attracts it too; the exact
            # null space (if any) is left alone, as a pseudo-inverse does.
            tol = lam.shape[0] * jnp.finfo(th.dtype).eps * jnp.max(jnp.abs(lam))
            inv = jnp.where(jnp.abs(lam) > tol, 1.0 / jnp.where(jnp.abs(lam) > tol, lam, 1.0), 0.0)
            step = -U @ (inv * (U.T @ g))
        th = th + step + kick
        return th, (th, loss(th))

    _, (path, losses) = jax.lax.scan(body, theta, kicks)
    return jnp.concatenate([theta[None], path]), jnp.concatenate([loss(theta)[None], losses])


def noisy_descent(loss_fn: Callable, params: Any, *batch: Any, method: str, steps: int, seed: int = 0,
                  learning_rate: float = 0.1, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Gradient descent (``method="gradient"``) or Newton's method (``"newton"``) with isotropic Gaussian noise of
    standard deviation ``noise`` added to the parameters after every step.

    The noise is drawn on the host from ``numpy.random.default_rng(seed)`` and passed in as an argument, so the
    same seed gives both methods the same kicks, and noise-free runs share the compiled loop.

    Returns:
      ``(path, losses)``: flat parameters ``(steps + 1, n)`` (``ravel_pytree`` order) and the loss at each.

    Raises:
      ValueError: unknown method, ``steps < 1``, a non-positive learning rate or a negative noise level.
    """
    check_choice(method, "method", ("gradient", "newton"))
    check_positive_int(steps, "steps", "descent steps")
    check_number(learning_rate, "learning_rate", positive=True)
    check_number(noise, "noise", minimum=0)
    flat, _ = ravel_pytree(params)
    kicks = np.random.default_rng(seed).standard_normal((steps, flat.shape[0])) * noise
    path, losses = _descend(loss_fn, params, batch, jnp.asarray(kicks, flat.dtype), learning_rate, method)
    return np.asarray(path), np.asarray(losses)
