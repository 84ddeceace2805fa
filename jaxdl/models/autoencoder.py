"""Autoencoders (Deep Learning chapter 14): an encoder ``h = f(x)`` and a decoder ``r = g(h)`` trained to reconstruct.

One module covers the chapter's variants, which differ in constraints and losses rather than in architecture:

- undercomplete (sec. 14.1): ``code_size < num_inputs``, checked when ``undercomplete=True``; with linear layers and
  squared error it learns the principal subspace (the PCA result of Baldi & Hornik 1989);
- sparse (sec. 14.2.1): an overcomplete code with :func:`sparsity_penalty` (L1 or the KL divergence to a target rate);
- denoising (sec. 14.2.2): ``corruption`` applied to the input in training, the loss still against the clean input;
- contractive (sec. 14.2.3, 14.7): the penalty on the encoder Jacobian lives in :mod:`analysis.penalties`;
  ``tied=True`` makes the decoder use the transposed encoder weights, which blocks the degenerate solution of a
  shrinking encoder and a growing decoder.

The pure boundary is :func:`autoencoder_split`: ``apply(params, x, *, key=None, train=False)``,
``encode(params, x)`` and ``decode(params, h)``, all working on one example or a batch.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from analysis._checks import check_positive_int
from jaxdl.models.mlp import ACTIVATIONS

CORRUPTIONS = ("none", "gaussian", "masking")
SPARSITY = ("l1", "kl")


class Autoencoder(nnx.Module):
    """Encoder ``num_inputs -> hidden... -> code_size`` and a mirrored decoder back to ``num_inputs``.

    Args:
      num_inputs: input dimension ``d``.
      code_size: code dimension ``k``.
      hidden: widths of extra encoder layers (the decoder mirrors them); empty for a single-layer encoder.
      encoder_activation: activation of every encoder layer, including the code (``"identity"`` for linear).
      decoder_activation: activation of the reconstruction (``"identity"``, or ``"sigmoid"`` for data in [0, 1]);
        hidden decoder layers use ``encoder_activation``.
      tied: decoder weights are the transposed encoder weights (single-layer encoders only).
      undercomplete: if True, require ``code_size < num_inputs``.
      corruption: ``"none"``, ``"gaussian"`` (add ``noise_level`` times standard normal noise) or ``"masking"``
        (zero each input with probability ``noise_level``), applied only when ``train=True``.
      noise_level: the corruption's standard deviation (``>= 0``) or masking probability (in [0, 1)).
      rngs, dtype: as for ``nnx.Linear``.

    Raises:
      ValueError: non-positive sizes, ``code_size >= num_inputs`` with ``undercomplete=True``, an unknown activation
        or corruption, a noise level out of range, ``tied=True`` with hidden layers.

    Example:
      >>> model = Autoencoder(64, 10, undercomplete=True, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((3, 64))).shape
      (3, 64)
    """

    def __init__(self, num_inputs: int, code_size: int, *, hidden: Sequence[int] = (),
                 encoder_activation: str = "identity", decoder_activation: str = "identity", tied: bool = False,
                 undercomplete: bool = False, corruption: str = "none", noise_level: float = 0.0,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        check_positive_int(num_inputs, "num_inputs")
        check_positive_int(code_size, "code_size")
        hidden = [check_positive_int(h, "hidden width") for h in hidden]
        if undercomplete and code_size >= num_inputs:
            raise ValueError(f"code_size={code_size} is not smaller than num_inputs={num_inputs}; an undercomplete "
                             "autoencoder needs code_size < num_inputs.")
        for name, act in (("encoder_activation", encoder_activation), ("decoder_activation", decoder_activation)):
            if act not in ACTIVATIONS:
                raise ValueError(f"{name}={act!r} is unknown; expected one of {sorted(ACTIVATIONS)}.")
        if corruption not in CORRUPTIONS:
            raise ValueError(f"corruption={corruption!r} is unknown; expected one of {CORRUPTIONS}.")
        if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) or not math.isfinite(noise_level):
            raise ValueError(f"noise_level={noise_level!r} is invalid; expected a finite number.")
        if corruption == "masking" and not 0.0 <= noise_level < 1.0:
            raise ValueError(f"noise_level={noise_level} is invalid for masking; expected a probability in [0, 1).")
        if noise_level < 0:
            raise ValueError(f"noise_level={noise_level} is invalid; expected a value >= 0.")
        if tied and hidden:
            raise ValueError(f"tied=True needs a single-layer encoder; got hidden={hidden}.")
        sizes = [num_inputs, *hidden, code_size]
        self.num_inputs, self.code_size, self.tied = num_inputs, code_size, tied
        self.encoder_activation, self.decoder_activation = encoder_activation, decoder_activation
        self.corruption, self.noise_level = corruption, float(noise_level)
        self.encoder = nnx.List([nnx.Linear(a, b, rngs=rngs, dtype=dtype, param_dtype=dtype)
                                 for a, b in zip(sizes[:-1], sizes[1:])])
        if tied:
            self.decoder_bias = nnx.Param(jnp.zeros((num_inputs,), dtype))
        else:
            back = sizes[::-1]
            self.decoder = nnx.List([nnx.Linear(a, b, rngs=rngs, dtype=dtype, param_dtype=dtype)
                                     for a, b in zip(back[:-1], back[1:])])

    def encode(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.encoder_activation]
        for layer in self.encoder:
            x = act(layer(x))
        return x

    def decode(self, h: jax.Array) -> jax.Array:
        out = ACTIVATIONS[self.decoder_activation]
        if self.tied:
            return out(h @ self.encoder[0].kernel[...].T + self.decoder_bias[...])
        act = ACTIVATIONS[self.encoder_activation]
        for layer in self.decoder[:-1]:
            h = act(layer(h))
        return out(self.decoder[-1](h))

    def corrupt(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """The corruption ``C(x~ | x)`` of sec. 14.2.2."""
        if self.corruption == "gaussian":
            return x + self.noise_level * jax.random.normal(key, x.shape, x.dtype)
        if self.corruption == "masking":
            return x * jax.random.bernoulli(key, 1.0 - self.noise_level, x.shape).astype(x.dtype)
        return x

    def __call__(self, x: jax.Array, *, key: Optional[jax.Array] = None, train: bool = False) -> jax.Array:
        if jnp.shape(x)[-1] != self.num_inputs:
            raise ValueError(f"x has shape {jnp.shape(x)}; expected a last axis of {self.num_inputs}.")
        if not isinstance(x, jax.core.Tracer):  # concrete input (eager call): check values at the boundary
            check_data(jnp.reshape(x, (-1, self.num_inputs)))
        if train and self.corruption != "none":
            if key is None:
                raise ValueError(f"train=True with corruption={self.corruption!r} needs a PRNG key: pass key=...")
            x = self.corrupt(x, key)
        return self.decode(self.encode(x))


class AutoencoderFns(NamedTuple):
    """Pure functions of an :class:`Autoencoder`'s parameters (see :func:`autoencoder_split`)."""

    apply: Callable
    encode: Callable
    decode: Callable
    corrupt: Callable


def autoencoder_split(model: Autoencoder) -> tuple[AutoencoderFns, nnx.State]:
    """``(fns, params)`` with ``fns.apply(params, x, *, key=None, train=False)``, ``fns.encode(params, x)``,
    ``fns.decode(params, h)`` and ``fns.corrupt(params, x, key)``.

    Example:
      >>> fns, params = autoencoder_split(Autoencoder(4, 2, rngs=nnx.Rngs(0)))
      >>> fns.encode(params, jnp.ones(4)).shape
      (2,)
    """
    if not isinstance(model, Autoencoder):
        raise TypeError(f"model must be an Autoencoder, got {type(model).__name__}.")
    graphdef, params = nnx.split(model, nnx.Param)

    def apply(p, x, *, key=None, train=False):
        return nnx.merge(graphdef, p)(x, key=key, train=train)

    def encode(p, x):
        return nnx.merge(graphdef, p).encode(x)

    def decode(p, h):
        return nnx.merge(graphdef, p).decode(h)

    def corrupt(p, x, key):
        return nnx.merge(graphdef, p).corrupt(x, key)

    return AutoencoderFns(apply, encode, decode, corrupt), params


def check_data(x: jax.Array, num_inputs: Optional[int] = None) -> jax.Array:
    """``x`` must be a non-empty, finite ``(examples, num_inputs)`` array; returns it as a ``jax.Array``."""
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}; expected a non-empty (examples, features) array.")
    if num_inputs is not None and x.shape[1] != num_inputs:
        raise ValueError(f"x has {x.shape[1]} features; the autoencoder expects {num_inputs}.")
    if not isinstance(x, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x contains NaN/inf values; expected finite data.")
    return x


def reconstruction_error(x: jax.Array, r: jax.Array) -> jax.Array:
    """Mean squared error over every entry, ``mean((x - r)**2)`` (the loss ``L(x, g(f(x)))`` of eq. 14.1)."""
    if jnp.shape(x) != jnp.shape(r):
        raise ValueError(f"x has shape {jnp.shape(x)} but the reconstruction has shape {jnp.shape(r)}.")
    return jnp.mean((x - r) ** 2)


def sparsity_penalty(h: jax.Array, kind: str = "l1", *, target: float = 0.05) -> jax.Array:
    """``Omega(h)`` of a sparse autoencoder (sec. 14.2.1), averaged over the batch.

    ``"l1"``: ``mean_examples sum_j |h_j|`` (a Laplace prior on the code, eq. 14.6). ``"kl"``:
    ``sum_j KL(target || rho_j)`` with ``rho_j`` the batch-mean activation of unit ``j`` (codes in (0, 1), e.g. a
    sigmoid encoder), the penalty of Ng's sparse autoencoder notes.

    Raises:
      ValueError: an unknown kind, ``target`` outside (0, 1), or ``h`` that is not ``(examples, code_size)``.

    Example:
      >>> float(sparsity_penalty(jnp.full((2, 3), 0.05), "kl"))
      0.0
    """
    if kind not in SPARSITY:
        raise ValueError(f"kind={kind!r} is unknown; expected one of {SPARSITY}.")
    if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise ValueError(f"target={target!r} is invalid; expected a mean activation in (0, 1).")
    if jnp.ndim(h) != 2:
        raise ValueError(f"h has shape {jnp.shape(h)}; expected (examples, code_size).")
    if kind == "l1":
        return jnp.mean(jnp.sum(jnp.abs(h), axis=1))
    eps = jnp.finfo(h.dtype).eps
    rho = jnp.clip(jnp.mean(h, axis=0), eps, 1.0 - eps)  # keeps the logs finite; a rate of exactly 0 or 1 is +inf
    t = jnp.asarray(target, h.dtype)
    return jnp.sum(t * jnp.log(t / rho) + (1.0 - t) * jnp.log((1.0 - t) / (1.0 - rho)))


def principal_angle_cosines(basis_a: jax.Array, basis_b: jax.Array) -> jax.Array:
    """Cosines of the principal angles between the column spans of ``basis_a (d, k)`` and ``basis_b (d, k)``
    (singular values of ``Q_a^T Q_b``, Bjorck & Golub 1973), in decreasing order; 1 means the spans agree."""
    if jnp.ndim(basis_a) != 2 or jnp.shape(basis_a) != jnp.shape(basis_b):
        raise ValueError(f"bases of shapes {jnp.shape(basis_a)} and {jnp.shape(basis_b)}; expected equal (d, k).")
    qa, _ = jnp.linalg.qr(basis_a)
    qb, _ = jnp.linalg.qr(basis_b)
    return jnp.clip(jnp.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)
