"""Differentiable generator networks g(z; theta) (Deep Learning sec. 20.10.2).

A generator draws a latent code z ~ N(0, I) and pushes it through a differentiable network. The book distinguishes
two uses, and one class serves both:

* the network emits a sample directly, x = g(z) (``output="identity"``, or ``output="bernoulli"`` read through
  :meth:`Generator.mean`, which keeps pixels in (0, 1)): the GAN generator of sec. 20.10.4;
* the network emits the parameters of p(x | z) (``"bernoulli"``: logits; ``"gaussian"``: a mean and a learned
  per-feature log standard deviation): the VAE decoder of sec. 20.10.3, whose :meth:`Generator.log_prob` is the
  reconstruction term of the ELBO.

Everything is differentiable in theta, which is what lets a VAE or GAN train the generator by back-propagation.
Diagonal normals are drawn by reparameterisation (:func:`reparameterize`, sec. 20.9) and evaluated by
:func:`diagonal_normal_log_prob`, both for the ``"gaussian"`` p(x | z) here and for the VAE's q(z | x) and prior.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from analysis._checks import check_key, check_positive_int
from jaxdl.models.mlp import MLP

OUTPUTS = ("identity", "bernoulli", "gaussian")
_LOG_2PI = math.log(2.0 * math.pi)


def check_sizes(sizes: Sequence[int], name: str) -> list[int]:
    """A list of positive int layer widths (possibly empty), else a ValueError."""
    sizes = list(sizes)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
            raise ValueError(f"{name}={sizes!r} is invalid; expected a sequence of positive integer layer widths.")
    return sizes


def sample_latent(key: jax.Array, num_samples: int, latent_size: int, dtype=jnp.float32) -> jax.Array:
    """``(num_samples, latent_size)`` draws from the standard normal prior p(z) = N(0, I).

    Example:
      >>> sample_latent(jax.random.key(0), 3, 2).shape
      (3, 2)
    """
    check_key(key)
    check_positive_int(num_samples, "num_samples", "how many latent codes to draw")
    check_positive_int(latent_size, "latent_size", "the latent dimension")
    return jax.random.normal(key, (num_samples, latent_size), dtype)


def diagonal_normal_log_prob(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """log N(z; mean, diag exp(log_var)), summed over the last axis; ``mean`` and ``log_var`` broadcast against ``z``
    (``0.0, 0.0`` gives the standard normal prior log p(z)).

    Example:
      >>> round(float(diagonal_normal_log_prob(jnp.zeros(2), 0.0, 0.0)), 4)  # -log(2 pi)
      -1.8379
    """
    return -0.5 * jnp.sum((z - mean) ** 2 * jnp.exp(-log_var) + log_var + _LOG_2PI, axis=-1)


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array, num_samples: int | None = None) -> jax.Array:
    """z = mean + exp(log_var / 2) * eps with eps ~ N(0, I): a sample of N(mean, diag exp(log_var)) that is
    differentiable in its parameters (sec. 20.9).

    Args:
      key: PRNG key.
      mean, log_var: ``(..., size)`` parameters, e.g. of the VAE's q(z | x).
      num_samples: if given, a leading axis of that many independent samples.

    Example:
      >>> reparameterize(jax.random.key(0), jnp.zeros((5, 2)), jnp.zeros((5, 2)), 3).shape
      (3, 5, 2)
    """
    shape = mean.shape if num_samples is None else (check_positive_int(num_samples, "num_samples", "samples"),
                                                    *mean.shape)
    eps = jax.random.normal(check_key(key), shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps


class Generator(nnx.Module):
    """g(z; theta): an MLP ``latent_size -> hidden_sizes -> output_size`` with an output family.

    Args:
      latent_size: dimension of z (> 0).
      hidden_sizes: widths of the hidden layers (may be empty: a linear generator).
      output_size: dimension of x (> 0).
      output: ``"identity"`` (x = g(z)), ``"bernoulli"`` (g(z) are logits of independent Bernoulli pixels) or
        ``"gaussian"`` (g(z) is the mean; a learned per-feature log standard deviation ``log_scale``).
      activation: hidden activation, one of :data:`jaxdl.models.mlp.ACTIVATIONS`.
      rngs: NNX random streams for the initial weights.

    Raises:
      ValueError: a size that is not a positive integer, or an unknown ``output`` or ``activation``.

    Example:
      >>> g = Generator(2, [16], 64, output="bernoulli", rngs=nnx.Rngs(0))
      >>> g.sample(jax.random.key(1), 5).shape
      (5, 64)
    """

    def __init__(
        self,
        latent_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        *,
        output: str = "bernoulli",
        activation: str = "relu",
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        check_positive_int(latent_size, "latent_size", "the dimension of the latent code z")
        check_positive_int(output_size, "output_size", "the dimension of x")
        hidden_sizes = check_sizes(hidden_sizes, "hidden_sizes")
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is unknown; expected one of {', '.join(OUTPUTS)}.")
        self.latent_size = latent_size
        self.output_size = output_size
        self.output = output
        self.dtype = dtype
        self.net = MLP([latent_size, *hidden_sizes, output_size], activation=activation, rngs=rngs, dtype=dtype)
        if output == "gaussian":
            self.log_scale = nnx.Param(jnp.zeros((output_size,), dtype))

    def __call__(self, z: jax.Array) -> jax.Array:
        """The network output: logits (``bernoulli``), the mean (``gaussian``) or x itself (``identity``)."""
        if z.shape[-1] != self.latent_size:
            raise ValueError(f"z has shape {z.shape}; expected a last axis of size latent_size={self.latent_size}.")
        return self.net(z)

    def mean(self, z: jax.Array) -> jax.Array:
        """E[x | z]: sigmoid of the logits for ``bernoulli``, the network output otherwise."""
        out = self(z)
        return jax.nn.sigmoid(out) if self.output == "bernoulli" else out

    def log_prob(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """log p(x | z), summed over features: one value per example.

        Bernoulli: sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i), written as ``x l - softplus(l)`` so
        that confident logits do not underflow. Gaussian: the diagonal normal density with the learned scale.

        Raises:
          ValueError: for ``output="identity"``, which has no density (the GAN generator is implicit).
        """
        out = self(z)
        if self.output == "bernoulli":
            return jnp.sum(x * out - jax.nn.softplus(out), axis=-1)
        if self.output == "gaussian":
            return diagonal_normal_log_prob(x, out, 2.0 * self.log_scale[...])
        raise ValueError("output='identity' defines no density p(x | z); use 'bernoulli' or 'gaussian'.")

    def sample(self, key: jax.Array, num_samples: int, *, noise: bool = True) -> jax.Array:
        """Ancestral sampling: z ~ N(0, I), then x ~ p(x | z) (or x = E[x | z] with ``noise=False``).

        The same ``key`` gives the same samples bit for bit.
        """
        kz, kx = jax.random.split(key)
        z = sample_latent(kz, num_samples, self.latent_size, self.dtype)
        mean = self.mean(z)
        if not noise or self.output == "identity":
            return mean
        if self.output == "bernoulli":
            return jax.random.bernoulli(kx, mean).astype(mean.dtype)
        return reparameterize(kx, mean, 2.0 * self.log_scale[...])


def split_method(model: nnx.Module, method: str = "__call__") -> tuple[Callable, nnx.State]:
    """``(fn, params)`` with ``fn(params, *args) == getattr(model, method)(*args)`` as a pure function.

    This is how the generative families cross into pure, jittable code: the parameters travel as an argument,
    the graph definition (static structure) is captured.

    Example:
      >>> g = Generator(2, [8], 3, output="identity", rngs=nnx.Rngs(0))
      >>> mean, params = split_method(g, "mean")
      >>> jax.jit(mean)(params, jnp.zeros((4, 2))).shape
      (4, 3)
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def fn(p, *args, **kwargs):
        return getattr(nnx.merge(graphdef, p, rest), method)(*args, **kwargs)

    return fn, params
