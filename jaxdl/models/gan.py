"""Generative adversarial networks (Deep Learning sec. 20.10.4): a generator, a discriminator, alternating updates.

The discriminator D(x) = sigmoid(l(x)) maximises the value (eq. 20.80)

    v(G, D) = E_{x ~ p_data} log D(x) + E_{z ~ p(z)} log(1 - D(G(z))),

and the generator plays the zero-sum game (minimax: minimise E log(1 - D(G(z)))) or, as the book recommends
(sec. 20.10.4, after Goodfellow et al. 2014), the non-saturating game (minimise -E log D(G(z))). Written with the
logit l of a generated sample, the two generator gradients are

    d/dl log(1 - sigmoid(l)) = -sigmoid(l) = -D,        d/dl -log sigmoid(l) = -(1 - D),

so when D confidently rejects samples (D -> 0) the minimax gradient vanishes in proportion to D while the
non-saturating one tends to -1. At the equilibrium p_g = p_data, D = 1/2 everywhere, the discriminator loss
-v is 2 log 2 and the non-saturating generator loss is log 2.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from analysis._checks import check_key, check_number, check_positive_int
from jaxdl.models.generator import Generator, check_sizes
from jaxdl.models.mlp import MLP
from jaxdl.engine import scan_steps

GENERATOR_LOSSES = ("minimax", "non_saturating")


class Discriminator(nnx.Module):
    """D(x) = sigmoid(MLP(x)): an MLP ``input_size -> hidden_sizes -> 1`` returning the logit l(x), shape ``(n,)``.

    Example:
      >>> d = Discriminator(2, [16], rngs=nnx.Rngs(0))
      >>> d(jnp.zeros((3, 2))).shape
      (3,)
    """

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], *, activation: str = "relu",
                 rngs: nnx.Rngs, dtype=jnp.float32):
        check_positive_int(input_size, "input_size", "the dimension of x")
        hidden_sizes = check_sizes(hidden_sizes, "hidden_sizes")
        self.net = MLP([input_size, *hidden_sizes, 1], activation=activation, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)[..., 0]


class GAN(nnx.Module):
    """A generator (:class:`Generator`) and a :class:`Discriminator` over the same data space.

    ``sample(key, n)`` is what the discriminator sees: x = g(z) for ``output="identity"``, the pixel means
    sigmoid(g(z)) for ``output="bernoulli"`` (a differentiable sample in (0, 1)).

    Example:
      >>> gan = GAN(4, [16], 1, [16], output="identity", rngs=nnx.Rngs(0))
      >>> gan.sample(jax.random.key(0), 5).shape
      (5, 1)
    """

    def __init__(self, latent_size: int, generator_hidden: Sequence[int], data_size: int,
                 discriminator_hidden: Sequence[int], *, output: str = "identity", activation: str = "relu",
                 rngs: nnx.Rngs, dtype=jnp.float32):
        if output == "gaussian":
            raise ValueError("output='gaussian' is invalid for a GAN generator; expected 'identity' or 'bernoulli'.")
        self.generator = Generator(latent_size, generator_hidden, data_size, output=output, activation=activation,
                                   rngs=rngs, dtype=dtype)
        self.discriminator = Discriminator(data_size, discriminator_hidden, activation=activation, rngs=rngs,
                                           dtype=dtype)

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        return self.generator.sample(key, num_samples, noise=False)


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """-v(G, D) (eq. 20.80): -E log D(x) - E log(1 - D(G(z))) = mean softplus(-l_real) + mean softplus(l_fake)."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array, kind: str = "non_saturating") -> jax.Array:
    """The generator's loss from the discriminator logits of its samples.

    ``"minimax"``: E log(1 - D(G(z))) = -mean softplus(l) (the zero-sum game; saturates when D -> 0).
    ``"non_saturating"``: -E log D(G(z)) = mean softplus(-l) (the heuristic of sec. 20.10.4).

    Raises:
      ValueError: unknown ``kind``.

    Example:
      >>> float(generator_loss(jnp.zeros(4), "non_saturating"))  # log 2 at D = 1/2
      0.6931...
    """
    if kind == "minimax":
        return -jnp.mean(jax.nn.softplus(fake_logits))
    if kind == "non_saturating":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    raise ValueError(f"kind={kind!r} is unknown; expected one of {', '.join(GENERATOR_LOSSES)}.")


class GANHistory(NamedTuple):
    """Per generator step (measured on the batch before that step's updates): discriminator loss, both generator
    losses, and the mean D on real and on generated samples."""

    discriminator_loss: np.ndarray
    minimax_loss: np.ndarray
    non_saturating_loss: np.ndarray
    d_real: np.ndarray
    d_fake: np.ndarray


def fit_gan(
    gan: GAN,
    x_data: jax.Array,
    *,
    key: jax.Array,
    steps: int,
    batch_size: int = 128,
    loss: str = "non_saturating",
    discriminator_steps: int = 1,
    learning_rate: float = 1e-3,
    discriminator_learning_rate: float | None = None,
    beta1: float = 0.5,
    chunk: int = 500,
) -> tuple[GAN, GANHistory]:
    """Alternating updates: ``discriminator_steps`` Adam steps on D, then one on G (Goodfellow et al. 2014, alg. 1).

    Real minibatches are drawn uniformly with replacement from ``x_data``. Steps run ``chunk`` at a time in one
    jitted ``lax.scan`` (:func:`jaxdl.train.scan_steps`; step ``t`` uses key ``t`` of ``jax.random.split(key,
    steps)``); parameters and data are arguments. The input ``gan`` is not modified; the same ``key`` gives
    the same result bit for bit.

    Raises:
      ValueError: data not 2-D, empty, of the wrong width or not finite; unknown ``loss``; bad counts or rates.

    Example:
      >>> gan = GAN(2, [8], 1, [8], rngs=nnx.Rngs(0))
      >>> trained, hist = fit_gan(gan, jnp.ones((100, 1)), key=jax.random.key(0), steps=10, batch_size=20)
      >>> hist.d_real.shape
      (10,)
    """
    check_key(key)
    arr = np.asarray(x_data)
    width = gan.generator.output_size
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"x_data has shape {arr.shape}; expected (examples, {width}).")
    if arr.shape[0] == 0:
        raise ValueError("x_data is empty; expected at least one example.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x_data contains NaN or inf; expected finite data.")
    if loss not in GENERATOR_LOSSES:
        raise ValueError(f"loss={loss!r} is unknown; expected one of {', '.join(GENERATOR_LOSSES)}.")
    for value, name in ((steps, "steps"), (batch_size, "batch_size"), (discriminator_steps, "discriminator_steps"),
                        (chunk, "chunk")):
        check_positive_int(value, name, "a count of steps or examples")
    d_lr = learning_rate if discriminator_learning_rate is None else discriminator_learning_rate
    check_number(learning_rate, "learning_rate", positive=True)
    check_number(d_lr, "discriminator_learning_rate", positive=True)
    check_number(beta1, "beta1", minimum=0, maximum=1, include_maximum=False)

    graphdef, params, rest = nnx.split(gan, nnx.Param, ...)
    gp, dp = params["generator"], params["discriminator"]
    state = (gp, dp, optax.adam(1.0).init(gp), optax.adam(1.0).init(dp))  # Adam's state does not depend on the rate
    step = _GANStep(graphdef, batch_size, loss, discriminator_steps, beta1)
    state, metrics = scan_steps(step, state, jax.random.split(key, steps), (rest, jnp.asarray(x_data), learning_rate,
                                                                           d_lr), chunk=chunk)
    return _merge(graphdef, rest, state[0], state[1]), GANHistory(*metrics)


def _merge(graphdef, rest, gp, dp) -> GAN:
    return nnx.merge(graphdef, nnx.State({"generator": gp, "discriminator": dp}), rest)


@dataclasses.dataclass(frozen=True)
class _GANStep:
    """The plug-in step of :func:`fit_gan` for :func:`jaxdl.train.scan_steps`: ``discriminator_steps`` Adam steps on
    D, then one on G, from one key. Hashable static settings (graph definition included): GANs of the same
    architecture and settings share one compilation.

    ``state = (gp, dp, g_opt_state, d_opt_state)``; ``data = (rest, x, g_lr, d_lr)`` (traced).
    """

    graphdef: Any
    batch_size: int
    loss: str
    discriminator_steps: int
    beta1: float

    def __call__(self, state, data, key):
        graphdef, batch_size = self.graphdef, self.batch_size
        rest, x, g_lr, d_lr = data
        g_opt, d_opt = optax.adam(g_lr, b1=self.beta1), optax.adam(d_lr, b1=self.beta1)

        def real(k):
            return x[jax.random.randint(k, (batch_size,), 0, x.shape[0])]

        def d_step(inner, k):
            gp, dp, ds = inner
            kr, kz = jax.random.split(k)
            xr, xf = real(kr), _merge(graphdef, rest, gp, dp).sample(kz, batch_size)

            def d_loss(p):
                m = _merge(graphdef, rest, gp, p)
                return discriminator_loss(m.discriminator(xr), m.discriminator(xf))

            updates, ds = d_opt.update(jax.grad(d_loss)(dp), ds, dp)
            return (gp, optax.apply_updates(dp, updates), ds), None

        gp, dp, gs, ds = state
        kd, kr, kz = jax.random.split(key, 3)
        (gp, dp, ds), _ = jax.lax.scan(d_step, (gp, dp, ds), jax.random.split(kd, self.discriminator_steps))

        def g_loss(p):
            m = _merge(graphdef, rest, p, dp)
            lf = m.discriminator(m.sample(kz, batch_size))
            return generator_loss(lf, self.loss), lf

        (_, lf), grads = jax.value_and_grad(g_loss, has_aux=True)(gp)
        lr = _merge(graphdef, rest, gp, dp).discriminator(real(kr))
        updates, gs = g_opt.update(grads, gs, gp)
        metrics = (discriminator_loss(lr, lf), generator_loss(lf, "minimax"), generator_loss(lf, "non_saturating"),
                   jnp.mean(jax.nn.sigmoid(lr)), jnp.mean(jax.nn.sigmoid(lf)))
        return (optax.apply_updates(gp, updates), dp, gs, ds), metrics
