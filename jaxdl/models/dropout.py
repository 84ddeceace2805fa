"""Dropout (Deep Learning sec. 7.12): an MLP whose layer inputs are multiplied by random binary masks in training,
and the rules that turn the implicit ensemble of ``2**d`` sub-networks into one prediction.

Training draws a fresh mask for every example, unit ``j`` of layer input ``i`` kept with the inclusion probability
``include[i]`` (defaults 0.8 for the input, 0.5 for hidden layers). Two conventions give the same family of
functions: ``"weight_scaling"`` trains with ``h * mu`` and multiplies by ``include`` at inference (the weight scaling
rule, eq. 7.57); ``"inverted"`` trains with ``h * mu / include`` and uses ``h`` at inference. Either way the
inference pre-activation of the first layer is the exact expectation of its training pre-activation.

Inference rules (softmax outputs):

- :func:`weight_scaling_predict`: one deterministic pass;
- :func:`monte_carlo_predict`: the arithmetic mean over ``K`` sampled masks, error ``O(1/sqrt(K))``;
- :func:`exact_arithmetic_mean`: ``sum_mu p(mu) p(y | x, mu)`` over every mask of the droppable units (eq. 7.53);
- :func:`exact_geometric_mean`: the renormalised geometric mean ``prod_mu p(y | x, mu)^p(mu)`` (eq. 7.54-7.56, with
  the mask probabilities as weights, ``2**-d`` each when every unit has probability 1/2). For softmax regression it
  equals the weight scaling rule exactly (sec. 7.12, eq. 7.58-7.66).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from analysis._checks import check_key
from jaxdl.models.mlp import ACTIVATIONS

CONVENTIONS = ("inverted", "weight_scaling")
MAX_EXACT_UNITS = 24


def _probabilities(sizes: list[int], include, drop) -> tuple[float, ...]:
    count = len(sizes) - 1
    if include is not None and drop is not None:
        raise ValueError("give either include (inclusion probabilities) or drop (dropout probabilities), not both.")
    if drop is not None:
        values = [drop] * count if np.isscalar(drop) else list(drop)
        if len(values) != count:
            raise ValueError(f"drop has {len(values)} values; expected {count}, one per layer input.")
        for i, q in enumerate(values):
            if isinstance(q, bool) or not isinstance(q, (int, float, np.floating)) or not 0.0 <= q < 1.0:
                raise ValueError(f"drop[{i}]={q!r} is invalid; expected a dropout probability in [0, 1).")
        return tuple(1.0 - float(q) for q in values)
    if include is None:
        return (0.8,) + (0.5,) * (count - 1)
    values = [include] * count if np.isscalar(include) else list(include)
    if len(values) != count:
        raise ValueError(f"include has {len(values)} values; expected {count}, one per layer input.")
    for i, p in enumerate(values):
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 < p <= 1.0:
            raise ValueError(f"include[{i}]={p!r} is invalid; expected an inclusion probability in (0, 1] "
                             "(dropout probability 1 - include in [0, 1)).")
    return tuple(float(p) for p in values)


class DropoutMLP(nnx.Module):
    """Dense layers ``sizes[0] -> ... -> sizes[-1]``, each layer's input multiplied by a dropout mask in training.

    Args:
      sizes: layer widths, at least two positive ints.
      include: inclusion probability per layer input, in (0, 1]: one number or ``len(sizes) - 1`` of them
        (default 0.8 for the input, 0.5 for every hidden layer, as recommended in sec. 7.12).
      drop: alternatively, dropout probabilities ``1 - include`` in [0, 1).
      activation: hidden activation, a name in ``jaxdl.models.mlp.ACTIVATIONS``.
      convention: ``"inverted"`` or ``"weight_scaling"`` (see the module docstring).
      rngs, dtype: as for ``nnx.Linear``.

    ``__call__(x, *, key=None, train=False, masks=None)`` returns logits: with ``train=True`` masks are drawn from
    ``key``, one per example; explicit ``masks`` (one 0/1 array per layer input, broadcastable to
    ``(examples, width)``) give one sub-network of the ensemble; otherwise the inference rule of the convention.

    Example:
      >>> model = DropoutMLP([64, 32, 10], rngs=nnx.Rngs(0))
      >>> model.include
      (0.8, 0.5)
      >>> model(jnp.ones((4, 64)), key=jax.random.PRNGKey(0), train=True).shape
      (4, 10)
    """

    def __init__(self, sizes: Sequence[int], *, include=None, drop=None, activation: str = "relu",
                 convention: str = "inverted", rngs: nnx.Rngs, dtype=jnp.float32):
        sizes = list(sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
            raise ValueError(f"sizes={sizes} is invalid; expected at least two positive integer layer widths.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is unknown; expected one of {sorted(ACTIVATIONS)}.")
        if convention not in CONVENTIONS:
            raise ValueError(f"convention={convention!r} is unknown; expected one of {CONVENTIONS}.")
        self.include = _probabilities(sizes, include, drop)
        self.widths = tuple(sizes[:-1])
        self.activation = activation
        self.convention = convention
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, dtype=dtype, param_dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
        )

    def __call__(self, x: jax.Array, *, key: Optional[jax.Array] = None, train: bool = False,
                 masks: Optional[Sequence[jax.Array]] = None) -> jax.Array:
        if jnp.ndim(x) != 2 or x.shape[1] != self.widths[0]:
            raise ValueError(f"x has shape {jnp.shape(x)}; expected (examples, {self.widths[0]}).")
        if not isinstance(x, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x))):
            raise ValueError("x contains NaN/inf values; expected finite inputs.")
        if train and masks is None:
            if key is None:
                raise ValueError("train=True draws dropout masks and needs a PRNG key: pass key=...")
            check_key(key)
            keys = jax.random.split(key, len(self.layers))
            masks = [jax.random.bernoulli(k, p, (x.shape[0], w)).astype(x.dtype)
                     for k, p, w in zip(keys, self.include, self.widths)]
        if masks is not None and len(masks) != len(self.layers):
            raise ValueError(f"masks has {len(masks)} arrays; expected {len(self.layers)}, one per layer input.")
        act = ACTIVATIONS[self.activation]
        h = x
        for i, (layer, p) in enumerate(zip(self.layers, self.include)):
            if masks is not None:
                # A sub-network: the training-time scaling of the convention (1/p for inverted dropout).
                h = h * masks[i] * (1.0 / p if self.convention == "inverted" else 1.0)
            elif self.convention == "weight_scaling":
                h = h * p  # the weight scaling rule: W (p h) = (p W) h
            h = layer(h)
            if i < len(self.layers) - 1:
                h = act(h)
        return h


@dataclasses.dataclass(frozen=True)
class DropoutNet:
    """The pure, hashable side of a :class:`DropoutMLP`: ``net(params, x, *, key=None, train=False, masks=None)``
    plus the static settings the inference rules need. Made by :func:`dropout_split`."""

    graphdef: nnx.GraphDef
    include: tuple[float, ...]
    widths: tuple[int, ...]
    convention: str

    def __call__(self, params, x, *, key=None, train: bool = False, masks=None) -> jax.Array:
        return nnx.merge(self.graphdef, params)(x, key=key, train=train, masks=masks)

    @property
    def droppable(self) -> int:
        """Units with inclusion probability below 1: ``d``, the ensemble has ``2**d`` members."""
        return sum(w for w, p in zip(self.widths, self.include) if p < 1.0)


def dropout_split(model: DropoutMLP) -> tuple[DropoutNet, nnx.State]:
    """``(net, params)``: the pure ``net(params, x, *, key, train)`` and the parameter ``State``.

    Example:
      >>> net, params = dropout_split(DropoutMLP([4, 3, 2], rngs=nnx.Rngs(0)))
      >>> net(params, jnp.ones((5, 4)), key=jax.random.PRNGKey(1), train=True).shape
      (5, 2)
    """
    if not isinstance(model, DropoutMLP):
        raise TypeError(f"model must be a DropoutMLP, got {type(model).__name__}.")
    graphdef, params = nnx.split(model, nnx.Param)
    return DropoutNet(graphdef, model.include, model.widths, model.convention), params


def _check_x(net: DropoutNet, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != net.widths[0]:
        raise ValueError(f"x has shape {x.shape}; expected (examples, {net.widths[0]}).")
    if x.shape[0] == 0:
        raise ValueError("x is empty; expected at least one example.")
    if not isinstance(x, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x contains NaN/inf values; expected finite inputs.")
    return x


@functools.partial(jax.jit, static_argnames=("net",))
def _weight_scaling(net, params, x):
    return jax.nn.softmax(net(params, x))


def weight_scaling_predict(net: DropoutNet, params, x: jax.Array) -> jax.Array:
    """``softmax`` of one pass with every unit's outgoing weights multiplied by its inclusion probability
    (eq. 7.57), ``(examples, classes)``."""
    return _weight_scaling(net, params, _check_x(net, x))


def _sample_masks(net: DropoutNet, key: jax.Array, n: int, dtype) -> list[jax.Array]:
    keys = jax.random.split(key, len(net.widths))
    return [jax.random.bernoulli(k, p, (n, w)).astype(dtype) for k, p, w in zip(keys, net.include, net.widths)]


@functools.partial(jax.jit, static_argnames=("net", "num_samples"))
def _sample_predictions(net, params, x, key, num_samples):
    def one(k):
        return jax.nn.softmax(net(params, x, masks=_sample_masks(net, k, x.shape[0], x.dtype)))

    return jax.lax.map(one, jax.random.split(key, num_samples))


def sample_predictions(net: DropoutNet, params, x: jax.Array, *, key: jax.Array, num_samples: int) -> jax.Array:
    """Softmax outputs of ``num_samples`` sub-networks, a fresh mask per example and sample:
    ``(num_samples, examples, classes)``; their running mean is the Monte-Carlo estimate for every ``K``."""
    _check_count(num_samples, "num_samples")
    return _sample_predictions(net, params, _check_x(net, x), key, num_samples)


def _check_count(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected a positive integer.")


@functools.partial(jax.jit, static_argnames=("net", "num_samples"))
def _monte_carlo(net, params, x, key, num_samples):
    def body(total, k):
        return total + jax.nn.softmax(net(params, x, masks=_sample_masks(net, k, x.shape[0], x.dtype))), None

    zero = jnp.zeros(jax.eval_shape(lambda: net(params, x)).shape, x.dtype)
    total, _ = jax.lax.scan(body, zero, jax.random.split(key, num_samples))
    return total / num_samples


def monte_carlo_predict(net: DropoutNet, params, x: jax.Array, *, key: jax.Array, num_samples: int) -> jax.Array:
    """Arithmetic mean of the softmax outputs of ``num_samples`` sampled sub-networks (sec. 7.12, "10-20 masks are
    often sufficient"); memory of one pass. Unbiased for :func:`exact_arithmetic_mean`, error ``O(1/sqrt(K))``.

    Example:
      >>> net, params = dropout_split(DropoutMLP([4, 3, 2], rngs=nnx.Rngs(0)))
      >>> monte_carlo_predict(net, params, jnp.ones((5, 4)), key=jax.random.PRNGKey(0), num_samples=10).shape
      (5, 2)
    """
    _check_count(num_samples, "num_samples")
    return _monte_carlo(net, params, _check_x(net, x), key, num_samples)


def _bits(net: DropoutNet, index: jax.Array, dtype) -> tuple[list[jax.Array], jax.Array]:
    """Masks of ensemble member ``index`` (bit ``j`` = droppable unit ``j``) and its log-probability."""
    masks, log_p, offset = [], jnp.zeros((), dtype), 0
    for w, p in zip(net.widths, net.include):
        if p >= 1.0:
            masks.append(jnp.ones((w,), dtype))
            continue
        bits = ((index >> (offset + jnp.arange(w, dtype=index.dtype))) & 1).astype(dtype)
        log_p = log_p + jnp.sum(bits * jnp.log(jnp.asarray(p, dtype)) + (1 - bits) * jnp.log1p(-jnp.asarray(p, dtype)))
        masks.append(bits)
        offset += w
    return masks, log_p


@functools.partial(jax.jit, static_argnames=("net", "chunk"))
def _exact_means(net, params, x, chunk):
    d = net.droppable
    total = 2**d
    chunk = min(chunk, total)
    indices = jnp.arange(total, dtype=jnp.int32).reshape(total // chunk, chunk)
    shape = jax.eval_shape(lambda: net(params, x)).shape

    def member(index):
        masks, log_p = _bits(net, index, x.dtype)
        log_probs = jax.nn.log_softmax(net(params, x, masks=[m[None, :] for m in masks]))
        weight = jnp.exp(log_p)
        return weight * jnp.exp(log_probs), weight * log_probs

    def body(carry, idx):
        arith, geo = jax.vmap(member)(idx)
        return (carry[0] + jnp.sum(arith, 0), carry[1] + jnp.sum(geo, 0)), None

    zeros = jnp.zeros(shape, x.dtype)
    (arith, log_geo), _ = jax.lax.scan(body, (zeros, zeros), indices)
    return arith, jax.nn.softmax(log_geo)  # renormalise the geometric mean over classes (eq. 7.55)


def _exact(net: DropoutNet, params, x: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
    x = _check_x(net, x)
    _check_count(chunk, "chunk")
    if net.droppable > MAX_EXACT_UNITS:
        raise ValueError(f"the network has {net.droppable} droppable units, 2**{net.droppable} sub-networks; exact "
                         f"enumeration is limited to {MAX_EXACT_UNITS} units. Use monte_carlo_predict instead.")
    if chunk & (chunk - 1):
        raise ValueError(f"chunk={chunk} is invalid; expected a power of two.")
    return _exact_means(net, params, x, chunk)


def exact_arithmetic_mean(net: DropoutNet, params, x: jax.Array, *, chunk: int = 256) -> jax.Array:
    """``sum_mu p(mu) softmax(f(x; mu))`` over all ``2**d`` masks of the droppable units (eq. 7.53).

    Members are enumerated ``chunk`` at a time (a power of two) inside a ``lax.scan``. Raises ``ValueError`` above
    :data:`MAX_EXACT_UNITS` droppable units.
    """
    return _exact(net, params, x, chunk)[0]


def exact_geometric_mean(net: DropoutNet, params, x: jax.Array, *, chunk: int = 256) -> jax.Array:
    """The renormalised weighted geometric mean ``softmax_y(sum_mu p(mu) log p(y | x, mu))`` over all ``2**d``
    masks (eq. 7.54-7.56; uniform weights ``2**-d`` when every probability is 1/2)."""
    return _exact(net, params, x, chunk)[1]


def exact_means(net: DropoutNet, params, x: jax.Array, *, chunk: int = 256) -> tuple[jax.Array, jax.Array]:
    """Both exact ensemble means from one enumeration: ``(arithmetic, renormalised geometric)``."""
    return _exact(net, params, x, chunk)
