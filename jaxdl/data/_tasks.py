"""Small generated tasks for the feedforward family: 1-D function fitting, tent-map compositions, separable points.

Every generator validates its settings at once and is deterministic in ``seed``. Regression targets carry a trailing
output axis, ``(examples, 1)``, the shape an MLP with one output produces. The XOR points live in
:func:`jaxdl.data.xor`.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data._digits import Dataset

# Continuous targets on [-1, 1] for the universal approximation experiment (Deep Learning sec. 6.4.1).
FUNCTIONS_1D: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sine": lambda x: jnp.sin(jnp.pi * x),
    "wiggle": lambda x: jnp.sin(3.0 * jnp.pi * x) + 0.5 * jnp.cos(7.0 * x),
    "abs": jnp.abs,
    "bump": lambda x: jnp.exp(-8.0 * x**2),
}


def _count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} is invalid; expected an int.")
    if value < minimum:
        raise ValueError(f"{name}={value} is invalid; expected an integer >= {minimum}.")
    return int(value)


def _nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number >= 0.")
    if value < 0:
        raise ValueError(f"{name}={value} is invalid; expected a finite number >= 0.")
    return float(value)


def function_1d(
    fn: Union[str, Callable[[jax.Array], jax.Array]] = "wiggle",
    *,
    num_train: int = 256,
    num_test: int = 1024,
    noise: float = 0.0,
    seed: int = 0,
    dtype=jnp.float32,
) -> Dataset:
    """A continuous function on [-1, 1]: random training inputs, a dense evenly spaced test grid.

    Args:
      fn: a name in :data:`FUNCTIONS_1D` or a callable mapping ``(n,)`` inputs to ``(n,)`` finite outputs.
      num_train: training points, drawn uniformly from [-1, 1].
      num_test: test grid size (``linspace(-1, 1, num_test)``), where approximation error is measured.
      noise: standard deviation of Gaussian noise added to the training targets only.
      seed: PRNG seed of the inputs and the noise.
      dtype: floating dtype of the arrays.

    Returns:
      :class:`Dataset` with ``x`` of shape ``(n, 1)`` and ``y`` of shape ``(n, 1)``.

    Raises:
      ValueError: unknown name, counts < 1 (or < 2 for the grid), negative or non-finite noise, or a callable that
        returns the wrong shape or non-finite values.

    Example:
      >>> data = function_1d("sine", num_train=8, num_test=16)
      >>> data.x_train.shape, data.y_test.shape
      ((8, 1), (16, 1))
    """
    if isinstance(fn, str):
        if fn not in FUNCTIONS_1D:
            raise ValueError(f"fn={fn!r} is unknown; expected one of {sorted(FUNCTIONS_1D)} or a callable.")
        fn = FUNCTIONS_1D[fn]
    elif not callable(fn):
        raise TypeError(f"fn={fn!r} is invalid; expected a function name or a callable.")
    num_train = _count(num_train, "num_train")
    num_test = _count(num_test, "num_test", 2)
    noise = _nonnegative(noise, "noise")
    dtype = jnp.dtype(dtype)
    x_train, x_test, eps = _inputs_1d(jax.random.PRNGKey(seed), num_train, num_test, dtype)
    y_train, y_test = jnp.asarray(fn(x_train), dtype), jnp.asarray(fn(x_test), dtype)
    for name, y, n in (("train", y_train, num_train), ("test", y_test, num_test)):
        if y.shape != (n,):
            raise ValueError(f"fn returned shape {y.shape} on the {name} inputs; expected ({n},).")
        if not np.all(np.isfinite(np.asarray(y))):  # on the host: no eager compilation per shape
            raise ValueError(f"fn returned NaN/inf on the {name} inputs; expected a finite function on [-1, 1].")
    y_train = y_train + noise * eps
    return Dataset(x_train[:, None], y_train[:, None], x_test[:, None], y_test[:, None])


@functools.partial(jax.jit, static_argnames=("num_train", "num_test", "dtype"))
def _inputs_1d(key, num_train, num_test, dtype):
    k_x, k_noise = jax.random.split(key)
    x_train = jax.random.uniform(k_x, (num_train,), dtype, -1.0, 1.0)
    return x_train, jnp.linspace(-1.0, 1.0, num_test, dtype=dtype), jax.random.normal(k_noise, (num_train,), dtype)


def tent_map(x: jax.Array) -> jax.Array:
    """The tent map on [0, 1]: ``2x`` below 1/2, ``2 - 2x`` above (Telgarsky 2016, Montufar et al. 2014).

    It equals the two-unit ReLU layer ``2 relu(x) - 4 relu(x - 1/2)`` on [0, 1], which is why ``depth`` copies of it
    stacked make a network of ``O(depth)`` parameters with ``2**depth`` linear pieces.
    """
    return 1.0 - jnp.abs(2.0 * x - 1.0)


def sawtooth(x: jax.Array, depth: int) -> jax.Array:
    """``tent_map`` composed ``depth`` times: a sawtooth with ``2**(depth-1)`` teeth and ``2**depth`` linear pieces."""
    depth = _count(depth, "depth")
    return jax.lax.fori_loop(0, depth, lambda _, v: tent_map(v), jnp.asarray(x))


def tent_composition(
    depth: int, *, num_train: int = 1024, num_test: int = 4096, seed: int = 0, dtype=jnp.float32
) -> Dataset:
    """Regression data for ``sawtooth(x, depth)`` on [0, 1] (the depth-separation task of Deep Learning sec. 6.4.1).

    Training inputs are uniform on [0, 1]; the test inputs are an even grid including both end points.

    Returns:
      :class:`Dataset` with ``x`` and ``y`` of shape ``(n, 1)``.

    Raises:
      ValueError: ``depth`` or the counts below 1 (a grid needs 2 points).

    Example:
      >>> data = tent_composition(3, num_train=16, num_test=9)
      >>> [float(v) for v in data.y_test[:3, 0]]
      [0.0, 1.0, 0.0]
    """
    depth = _count(depth, "depth")
    num_train = _count(num_train, "num_train")
    num_test = _count(num_test, "num_test", 2)
    return Dataset(*_tent_data(jax.random.PRNGKey(seed), depth, num_train, num_test, jnp.dtype(dtype)))


@functools.partial(jax.jit, static_argnames=("depth", "num_train", "num_test", "dtype"))
def _tent_data(key, depth, num_train, num_test, dtype):
    x_train = jax.random.uniform(key, (num_train,), dtype)
    x_test = jnp.linspace(0.0, 1.0, num_test, dtype=dtype)
    return x_train[:, None], sawtooth(x_train, depth)[:, None], x_test[:, None], sawtooth(x_test, depth)[:, None]


def linearly_separable(
    num_examples: int = 200, num_features: int = 2, *, margin: float = 0.1, seed: int = 0, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """Points in the unit ball with labels ``1[w.x > 0]`` for a random unit ``w``, none closer than ``margin`` to
    the boundary: the setting of the perceptron convergence theorem (Novikoff 1962: at most ``(R / margin)**2``
    mistakes with ``R <= 1``).

    Returns:
      ``(x, y)``: ``(num_examples, num_features)`` inputs and ``{0, 1}`` float labels.

    Raises:
      ValueError: counts below 1, or ``margin`` outside [0, 1).
    """
    num_examples = _count(num_examples, "num_examples")
    num_features = _count(num_features, "num_features")
    margin = _nonnegative(margin, "margin")
    if margin >= 1.0:
        raise ValueError(f"margin={margin} is invalid; expected a value in [0, 1) for points in the unit ball.")
    return _separable(jax.random.PRNGKey(seed), margin, num_examples, num_features, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnames=("num_examples", "num_features", "dtype"))
def _separable(key, margin, num_examples, num_features, dtype):
    k_w, k_dir, k_along, k_rad = jax.random.split(key, 4)
    w = jax.random.normal(k_w, (num_features,), dtype)
    w = w / jnp.linalg.norm(w)
    # x = s w + t u with u a unit vector orthogonal to w: |w.x| = |s| >= margin and |x|^2 = s^2 + t^2 <= 1.
    s = jax.random.uniform(k_along, (num_examples,), dtype, margin, 1.0)
    s = s * jnp.where(jnp.arange(num_examples) % 2 == 0, 1.0, -1.0).astype(dtype)
    u = jax.random.normal(k_dir, (num_examples, num_features), dtype)
    u = u - (u @ w)[:, None] * w
    u = u / jnp.maximum(jnp.linalg.norm(u, axis=1, keepdims=True), jnp.finfo(dtype).tiny)
    t = jax.random.uniform(k_rad, (num_examples, 1), dtype) * jnp.sqrt(1.0 - s[:, None] ** 2)
    points = s[:, None] * w + t * u
    return points, (s > 0).astype(dtype)


def circle(num_examples: int = 512, *, radius: float = 1.0, seed: int = 0, dtype=jnp.float32) -> jax.Array:
    """Points on a circle in the plane, ``(num_examples, 2)``: a one-dimensional manifold for the denoising
    autoencoder's vector field (Deep Learning sec. 14.5, fig. 14.4).

    Raises:
      ValueError: ``num_examples < 1`` or a non-positive radius.
    """
    num_examples = _count(num_examples, "num_examples")
    radius = _nonnegative(radius, "radius")
    if radius == 0:
        raise ValueError("radius=0 is invalid; expected a positive radius.")
    return _circle(jax.random.PRNGKey(seed), radius, num_examples, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnames=("num_examples", "dtype"))
def _circle(key, radius, num_examples, dtype):
    theta = jax.random.uniform(key, (num_examples,), dtype, 0.0, 2.0 * jnp.pi)
    return radius * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
