"""Back-propagation written by hand (Deep Learning algorithms 6.3 and 6.4) and SGD as a separate optimizer
(algorithm 8.1).

The two are distinct ideas the book keeps apart: back-propagation *computes* a gradient; stochastic gradient
descent *uses* one. :func:`backprop` is the exercise of sec. 6.5 for the fully connected network of
:class:`jaxdl.models.MLP`, checked against ``jax.grad`` in the tests; :func:`sgd_fit` accepts any
``grad_fn(params, x, y) -> (loss, grads)``, so the same training loop runs on either.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from analysis._checks import check_positive_int
from jaxdl.engine import run_epochs

PyTree = Any

# f and f' as functions of the pre-activation a (f' of tanh and sigmoid reuse h = f(a), as a hand-written pass
# would, rather than differentiating anything).
_DERIVATIVES: dict[str, tuple[Callable, Callable]] = {
    "relu": (jax.nn.relu, lambda a, h: (a > 0).astype(a.dtype)),
    "tanh": (jnp.tanh, lambda a, h: 1.0 - h * h),
    "sigmoid": (jax.nn.sigmoid, lambda a, h: h * (1.0 - h)),
    "identity": (lambda a: a, lambda a, h: jnp.ones_like(a)),
}
LOSSES = ("softmax_cross_entropy", "mean_squared_error")


def mlp_layers(params: PyTree) -> list[tuple[jax.Array, jax.Array]]:
    """``[(kernel, bias), ...]`` of an :class:`jaxdl.models.MLP` parameter ``State`` (or its pure dict)."""
    d = nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params
    if not isinstance(d, dict) or "layers" not in d:
        raise ValueError("params has no 'layers' entry; expected the parameters of a jaxdl.models.MLP.")
    layers = d["layers"]
    keys = sorted(layers) if isinstance(layers, dict) else range(len(layers))
    return [(layers[k]["kernel"], layers[k]["bias"]) for k in keys]


def _like_params(params: PyTree, layers: list[tuple[jax.Array, jax.Array]]) -> PyTree:
    """Place per-layer ``(dW, db)`` into a pytree shaped like ``params`` (so it compares leaf-for-leaf with
    ``jax.grad``)."""

    def leaf(path, old):
        names = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path]
        index = int(names[names.index("layers") + 1])
        return layers[index][0 if "kernel" in names else 1].astype(old.dtype)

    return jax.tree_util.tree_map_with_path(leaf, params)


def _loss_and_output_grad(out: jax.Array, y: jax.Array, loss: str) -> tuple[jax.Array, jax.Array]:
    n = out.shape[0]
    if loss == "softmax_cross_entropy":
        log_p = jax.nn.log_softmax(out)
        onehot = jax.nn.one_hot(y, out.shape[-1], dtype=out.dtype)
        value = -jnp.sum(onehot * log_p) / n
        return value, (jnp.exp(log_p) - onehot) / n  # d/da of mean cross-entropy: (softmax - onehot) / n
    diff = out - y
    return jnp.mean(diff * diff), 2.0 * diff / diff.size


def backprop(
    params: PyTree,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "relu",
    loss: str = "softmax_cross_entropy",
    weight_decay: float = 0.0,
) -> tuple[jax.Array, PyTree]:
    """Loss and gradient of an MLP by a hand-written forward and backward pass (algorithms 6.3 and 6.4).

    Forward: ``a(k) = h(k-1) W(k) + b(k)``, ``h(k) = f(a(k))``, output ``a(l)`` (linear). Backward, from
    ``g = dJ/da(l)``: ``dJ/dW(k) = h(k-1)^T g + 2 lambda W(k)``, ``dJ/db(k) = sum_examples g``, then
    ``g <- (g W(k)^T) * f'(a(k-1))``. The objective is ``J = L + weight_decay * sum_k ||W(k)||_F^2`` (biases are not
    decayed, as in sec. 7.1), with ``L`` the mean softmax cross-entropy against integer labels or the mean squared
    error over all output entries.

    Args:
      params: the parameter ``State`` of a :class:`jaxdl.models.MLP` (or its ``nnx.to_pure_dict``).
      x: ``(n, d)`` inputs.
      y: ``(n,)`` integer labels for cross-entropy, ``(n, outputs)`` targets for squared error.
      activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"identity"`` (the MLP's hidden activation).
      loss: ``"softmax_cross_entropy"`` or ``"mean_squared_error"``.
      weight_decay: ``lambda >= 0``.

    Returns:
      ``(J, grads)``, ``grads`` with the pytree structure of ``params``.

    Raises:
      ValueError: unknown activation or loss, negative weight decay, shapes that do not chain, empty data.

    Example:
      >>> model = MLP([4, 8, 3], activation="relu", rngs=nnx.Rngs(0))
      >>> apply, params = split(model)
      >>> value, grads = backprop(params, jnp.ones((5, 4)), jnp.zeros(5, jnp.int32))
      >>> grads["layers"][0]["kernel"].shape
      (4, 8)
    """
    if activation not in _DERIVATIVES:
        raise ValueError(f"activation={activation!r} has no hand-written derivative; expected one of "
                         f"{sorted(_DERIVATIVES)}.")
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is unknown; expected one of {LOSSES}.")
    if not (isinstance(weight_decay, (int, float)) and np.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay={weight_decay!r} is invalid; expected a finite number >= 0.")
    layers = mlp_layers(params)
    if jnp.ndim(x) != 2 or x.shape[0] == 0:
        raise ValueError(f"x has shape {jnp.shape(x)}; expected a non-empty (examples, features) array.")
    if x.shape[1] != layers[0][0].shape[0]:
        raise ValueError(f"x has {x.shape[1]} features; the first layer expects {layers[0][0].shape[0]}.")
    want = (x.shape[0],) if loss == "softmax_cross_entropy" else (x.shape[0], layers[-1][0].shape[1])
    if jnp.shape(y) != want:
        raise ValueError(f"y has shape {jnp.shape(y)}; expected {want} for loss={loss!r}.")
    return _backprop(params, x, y, activation, loss, weight_decay)


@jax.jit(static_argnames=("activation", "loss"))
def _backprop(params, x, y, activation, loss, weight_decay):
    f, f_prime = _DERIVATIVES[activation]
    layers = mlp_layers(params)
    x = x.astype(layers[0][0].dtype)
    # Forward pass (algorithm 6.3), keeping every a(k) and h(k) for the backward pass.
    hs, pre = [x], []
    for k, (w, b) in enumerate(layers):
        a = hs[-1] @ w + b
        pre.append(a)
        if k < len(layers) - 1:
            hs.append(f(a))
    value, g = _loss_and_output_grad(pre[-1], y, loss)
    value = value + weight_decay * sum(jnp.sum(w * w) for w, _ in layers)
    # Backward pass (algorithm 6.4): g holds dJ/da(k) on entry to layer k.
    grads: list[tuple[jax.Array, jax.Array]] = [None] * len(layers)  # type: ignore[list-item]
    for k in range(len(layers) - 1, -1, -1):
        w, _ = layers[k]
        grads[k] = (hs[k].T @ g + 2.0 * weight_decay * w, jnp.sum(g, axis=0))
        if k > 0:
            g = (g @ w.T) * f_prime(pre[k - 1], hs[k])
    return value, _like_params(params, grads)


class SGDState(NamedTuple):
    """Step counter and, with momentum, the velocity (same pytree as the parameters)."""

    step: jax.Array
    velocity: PyTree


class SGD(NamedTuple):
    """Stochastic gradient descent with an optional momentum (algorithms 8.1 and 8.2) and the linear learning-rate
    decay of eq. 8.14: ``eps_k = (1 - k/tau) eps_0 + (k/tau) eps_tau`` for ``k <= tau``, then ``eps_tau``."""

    learning_rate: float
    final_learning_rate: float
    decay_steps: int
    momentum: float

    def init(self, params: PyTree) -> SGDState:
        return SGDState(jnp.zeros((), jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params))

    def rate(self, step: jax.Array) -> jax.Array:
        alpha = jnp.minimum(step / max(self.decay_steps, 1), 1.0) if self.decay_steps else 0.0
        return (1.0 - alpha) * self.learning_rate + alpha * self.final_learning_rate

    def update(self, grads: PyTree, state: SGDState, params: PyTree) -> tuple[PyTree, SGDState]:
        """``(new_params, new_state)``: ``v <- momentum v - eps g``, ``theta <- theta + v``."""
        eps = self.rate(state.step)
        velocity = jax.tree_util.tree_map(lambda v, g: self.momentum * v - eps * g, state.velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p + v.astype(p.dtype), params, velocity)
        return params, SGDState(state.step + 1, velocity)


def sgd(
    learning_rate: float, *, momentum: float = 0.0, final_learning_rate: float | None = None, decay_steps: int = 0
) -> SGD:
    """An :class:`SGD` optimizer, validated at once.

    Args:
      learning_rate: ``eps_0 > 0``.
      momentum: in [0, 1).
      final_learning_rate: ``eps_tau`` (default ``eps_0``: constant rate); the book suggests about ``eps_0 / 100``.
      decay_steps: ``tau``, the steps of linear decay (0: none).

    Raises:
      ValueError: any setting outside its range.

    Example:
      >>> opt = sgd(0.1)
      >>> params, state = opt.update({"w": jnp.ones(2)}, opt.init({"w": jnp.zeros(2)}), {"w": jnp.zeros(2)})
      >>> params["w"].tolist()
      [-0.1, -0.1]
    """
    for name, value in (("learning_rate", learning_rate), ("final_learning_rate", final_learning_rate)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r} is invalid; expected a positive finite number.")
    if not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
        raise ValueError(f"momentum={momentum!r} is invalid; expected a value in [0, 1).")
    check_positive_int(decay_steps, "decay_steps", "steps of linear learning-rate decay", minimum=0)
    final = learning_rate if final_learning_rate is None else final_learning_rate
    return SGD(float(learning_rate), float(final), int(decay_steps), float(momentum))


def sgd_fit(
    grad_fn: Callable[..., tuple[jax.Array, PyTree]],
    optimizer: SGD,
    params: PyTree,
    x: jax.Array,
    y: jax.Array,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
) -> tuple[PyTree, jax.Array]:
    """Minibatch SGD (algorithm 8.1) with any gradient: ``grad_fn(params, xb, yb) -> (loss, grads)``.

    Each epoch draws a fresh permutation from ``key`` and takes ``n // batch_size`` steps, all inside one
    ``lax.scan``; the same key gives the same trajectory bit for bit.

    Args:
      grad_fn: e.g. ``functools.partial(backprop, activation="relu")`` or ``jax.value_and_grad(loss_fn)``.
      optimizer: from :func:`sgd`.
      params: initial parameters; x, y: the training set (leading axes equal).
      key: PRNG key of the shuffles.
      epochs, batch_size: static positive ints (``batch_size <= n``).

    Returns:
      ``(params, losses)`` with one minibatch loss per step, ``(epochs * (n // batch_size),)``.

    Raises:
      ValueError: mismatched or empty data, NaN/inf inputs, bad counts.

    Example:
      >>> loss = lambda p, xb, yb: jnp.mean((xb @ p - yb) ** 2)
      >>> x = jnp.ones((8, 2)); p, losses = sgd_fit(jax.value_and_grad(loss), sgd(0.1), jnp.zeros(2), x, x[:, 0],
      ...                                          key=jax.random.PRNGKey(0), epochs=3, batch_size=4)
      >>> losses.shape
      (6,)
    """
    if not isinstance(optimizer, SGD):
        raise TypeError(f"optimizer must be an SGD from jaxdl.backprop.sgd, got {type(optimizer).__name__}.")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: the training set is empty.")
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"x has {x.shape[0]} examples but y has shape {y.shape}.")
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x contains NaN/inf values; expected finite data.")
    check_positive_int(epochs, "epochs", "passes over the data")
    check_positive_int(batch_size, "batch_size", "examples per step")
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {x.shape[0]} training examples.")
    return _sgd_fit(grad_fn, optimizer, params, x, y, key, epochs, batch_size)


def _sgd_step(carry, batch, key, *, grad_fn, optimizer):
    """The plug-in step of :func:`sgd_fit` (``key`` unused): one update of ``optimizer`` with ``grad_fn``'s gradient
    on the minibatch ``(xb, yb)``; the metric is the minibatch loss."""
    params, state = carry
    value, grads = grad_fn(params, *batch)
    params, state = optimizer.update(grads, state, params)
    return (params, state), value


@jax.jit(static_argnames=("grad_fn", "optimizer", "epochs", "batch_size"))
def _sgd_fit(grad_fn, optimizer, params, x, y, key, epochs, batch_size):
    # Epoch e shuffles with row e of split(key, epochs) itself (no key per step).
    step = partial(_sgd_step, grad_fn=grad_fn, optimizer=optimizer)
    (params, _), losses = run_epochs(step, (params, optimizer.init(params)), key, (x, y), epochs=epochs,
                                     batch_size=batch_size, step_keys=False)
    return params, losses.reshape(-1)
