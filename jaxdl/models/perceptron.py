"""Linear models of Deep Learning sec. 6.1: Rosenblatt's perceptron and the least-squares linear model.

Both are linear in the input, so neither can represent XOR: least squares outputs 1/2 on all four points, and a
threshold unit ``1[w.x + b > 0]`` gets at most 3 of 4 right (adding the constraints of (0,1) and (1,0) contradicts
adding those of (0,0) and (1,1)). The perceptron's pure boundary is :func:`jaxdl.models.split`:
``apply(params, x) -> scores``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from analysis._checks import check_positive_int
from jaxdl.engine import run_epochs


def _check_xy(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"x has shape {x.shape}; expected (examples, features).")
    if x.shape[0] == 0:
        raise ValueError("x is empty; expected at least one example.")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y has shape {y.shape}; expected ({x.shape[0]},), one target per example of x.")
    for name, arr in (("x", x), ("y", y)):
        if isinstance(arr, jax.core.Tracer):
            continue
        if not np.all(np.isfinite(np.asarray(arr, dtype=np.float64))):
            raise ValueError(f"{name} contains NaN/inf values; expected finite data.")
    return x, y


class Perceptron(nnx.Module):
    """A threshold unit ``1[x.w + b > 0]`` (Rosenblatt 1958). ``__call__`` returns the scores ``x.w + b``.

    Weights start at zero, the classic initialisation of the perceptron learning rule.

    Example:
      >>> model = Perceptron(2, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((3, 2))).shape
      (3,)
    """

    def __init__(self, num_inputs: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        check_positive_int(num_inputs, "num_inputs", "features per example")
        init = nnx.initializers.zeros_init()
        self.linear = nnx.Linear(num_inputs, 1, kernel_init=init, rngs=rngs, dtype=dtype, param_dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)[..., 0]


class PerceptronFit(NamedTuple):
    """Result of :func:`perceptron_fit`: final parameters; per epoch, the mistakes made while the rule ran and the
    accuracy at the epoch's end; and the best accuracy seen after any single update (the "pocket" value)."""

    params: nnx.State
    mistakes: jax.Array
    accuracy: jax.Array
    best_accuracy: jax.Array


def _unpack(params) -> tuple[jax.Array, jax.Array]:
    d = nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params
    return d["linear"]["kernel"][:, 0], d["linear"]["bias"][0]


def _repack(params, w: jax.Array, b: jax.Array):
    def leaf(path, old):
        names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        return (w[:, None] if "kernel" in names else b[None]).astype(old.dtype)

    return jax.tree_util.tree_map_with_path(leaf, params)


def _accuracy(w: jax.Array, b: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(((x @ w + b) > 0) == (y > 0.5))


def _perceptron_step(state, example, key, *, x, y, learning_rate):
    """The plug-in step of :func:`perceptron_fit`: Rosenblatt's rule on one example ``(xi, yi)`` (``key`` unused);
    ``state = (w, b, best)`` carries the best accuracy after any update; the metric is whether it was a mistake."""
    w, b, best = state
    xi, yi = example
    error = yi - ((xi @ w + b) > 0).astype(x.dtype)  # Rosenblatt's rule: update only on a mistake
    w, b = w + learning_rate * error * xi, b + learning_rate * error
    return (w, b, jnp.maximum(best, _accuracy(w, b, x, y))), error != 0


@jax.jit(static_argnames=("epochs",))
def _fit(params, x, y, epochs: int, learning_rate):
    w0, b0 = _unpack(params)
    step = partial(_perceptron_step, x=x, y=y, learning_rate=learning_rate)

    def epoch_end(state, wrong):
        return jnp.sum(wrong), _accuracy(state[0], state[1], x, y)

    # Examples in order (key None), one at a time (batch_size None).
    (w, b, best), (mistakes, acc) = run_epochs(step, (w0, b0, _accuracy(w0, b0, x, y)), None, (x, y),
                                               epochs=epochs, batch_size=None, epoch_end=epoch_end)
    return _repack(params, w, b), mistakes, acc, best


def perceptron_fit(params, x: jax.Array, y: jax.Array, *, epochs: int = 100, learning_rate: float = 1.0):
    """Rosenblatt's perceptron learning rule, examples in order, ``epochs`` passes (``lax.scan``).

    On a mistake ``w <- w + lr (y - yhat) x`` and ``b <- b + lr (y - yhat)``. On linearly separable data with margin
    ``gamma`` and radius ``R`` it makes at most ``(R / gamma)**2`` mistakes (Novikoff 1962); on XOR it cycles forever.

    Args:
      params: the parameter ``State`` of a :class:`Perceptron` (``split(model)[1]``).
      x: ``(n, d)`` inputs; y: ``(n,)`` targets in {0, 1}.
      epochs: passes over the data (a static Python int).
      learning_rate: positive step.

    Returns:
      :class:`PerceptronFit`.

    Raises:
      ValueError: shapes that disagree, empty or non-finite data, targets outside {0, 1}, ``epochs < 1``, or a
        non-positive learning rate.

    Example:
      >>> from jaxdl.data import xor
      >>> _, params = split(Perceptron(2, rngs=nnx.Rngs(0)))
      >>> float(perceptron_fit(params, *xor(), epochs=20).best_accuracy) <= 0.75
      True
    """
    x, y = _check_xy(x, y)
    if not isinstance(y, jax.core.Tracer) and not np.all(np.isin(np.asarray(y), (0.0, 1.0))):
        raise ValueError("y contains values other than 0 and 1; the perceptron rule needs binary targets.")
    check_positive_int(epochs, "epochs", "passes over the data")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate={learning_rate!r} is invalid; expected a positive number.")
    w, _ = _unpack(params)
    if w.shape != (x.shape[1],):
        raise ValueError(f"params expect {w.shape[0]} inputs but x has {x.shape[1]} features.")
    out = _fit(params, x.astype(w.dtype), y.astype(w.dtype), epochs, jnp.asarray(learning_rate, w.dtype))
    return PerceptronFit(*out)


def least_squares_fit(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The linear model ``f(x) = x.w + b`` minimising mean squared error, in closed form (Deep Learning eq. 6.1-6.3).

    Solved by least squares on ``[x, 1]`` (``jnp.linalg.lstsq``, the minimum-norm solution when rank-deficient).
    On the XOR points the unique solution is ``w = 0, b = 1/2``: the model outputs 1/2 everywhere.

    Args:
      x: ``(n, d)`` inputs; y: ``(n,)`` targets.

    Returns:
      ``(w, b)`` with ``w`` of shape ``(d,)`` and scalar ``b``.

    Raises:
      ValueError: mismatched shapes, empty or non-finite data.

    Example:
      >>> from jaxdl.data import xor
      >>> w, b = least_squares_fit(*xor())
      >>> round(float(b), 6), [round(float(v), 6) for v in w]
      (0.5, [0.0, 0.0])
    """
    x, y = _check_xy(x, y)
    design = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    theta = jnp.linalg.lstsq(design, y.astype(x.dtype))[0]
    return theta[:-1], theta[-1]
