"""Variational autoencoder (Deep Learning sec. 20.10.3): Gaussian encoder q(z|x), generator decoder p(x|z).

Training maximises the evidence lower bound (ELBO, eq. 20.76; eq. 19.11 in general form)

    L(q) = E_{z ~ q(z|x)} [log p(x | z)] - KL(q(z | x) || p(z))  <=  log p(x),

with q(z | x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), the KL term in closed form and the expectation estimated
through the reparameterisation z = mu + sigma * eps, eps ~ N(0, I), so gradients flow through the sample
(sec. 20.9). The importance-weighted bound (Burda et al. 2016)

    L_K = E [log (1/K) sum_k p(x, z_k) / q(z_k | x)],   z_k ~ q(z | x),

satisfies L = L_1 <= L_K <= L_{K+1} <= log p(x), so with large K it estimates the test log-likelihood.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from analysis._checks import check_key, check_number, check_positive_int
from jaxdl.models.generator import Generator, check_sizes, diagonal_normal_log_prob, reparameterize
from jaxdl.models.mlp import MLP
from jaxdl.engine import epoch_scan

LIKELIHOODS = ("bernoulli", "gaussian")


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) in closed form, summed over the last axis.

    KL = 1/2 sum_j (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2) (Kingma and Welling 2014, appendix B).

    Example:
      >>> float(gaussian_kl(jnp.zeros(3), jnp.zeros(3)))
      0.0
    """
    return 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)


class VAE(nnx.Module):
    """Encoder MLP ``input -> hidden_sizes -> 2 * latent`` (mean, log variance) and a :class:`Generator` decoder.

    Args:
      input_size: dimension of x.
      hidden_sizes: encoder hidden widths; the decoder mirrors them (``[128]`` gives 64-128-8 / 8-128-64).
      latent_size: dimension of z (> 0).
      likelihood: ``"bernoulli"`` (binary or [0, 1] data) or ``"gaussian"`` decoder.
      activation: hidden activation of both networks.
      rngs: NNX random streams.

    Raises:
      ValueError: non-positive sizes, unknown likelihood or activation.

    Example:
      >>> vae = VAE(64, [128], 8, rngs=nnx.Rngs(0))
      >>> vae.elbo(jax.random.key(1), jnp.zeros((4, 64))).shape
      (4,)
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        latent_size: int,
        *,
        likelihood: str = "bernoulli",
        activation: str = "tanh",
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        check_positive_int(input_size, "input_size", "the dimension of x")
        check_positive_int(latent_size, "latent_size", "the dimension of the latent code z")
        hidden_sizes = check_sizes(hidden_sizes, "hidden_sizes")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={likelihood!r} is unknown; expected one of {', '.join(LIKELIHOODS)}.")
        self.input_size = input_size
        self.latent_size = latent_size
        self.likelihood = likelihood
        self.encoder = MLP([input_size, *hidden_sizes, 2 * latent_size], activation=activation, rngs=rngs,
                           dtype=dtype)
        self.decoder = Generator(latent_size, hidden_sizes[::-1], input_size, output=likelihood,
                                 activation=activation, rngs=rngs, dtype=dtype)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(mean, log_var)`` of q(z | x), each ``(n, latent)``."""
        out = self.encoder(x)
        return out[..., : self.latent_size], out[..., self.latent_size :]

    def elbo(self, key: jax.Array, x: jax.Array, num_samples: int = 1) -> jax.Array:
        """Per-example ELBO (eq. 20.76): reconstruction term by reparameterised Monte Carlo, KL term exactly.

        ``num_samples`` > 1 averages the reconstruction term over that many z per example (same bound, less noise).
        """
        mean, log_var = self.encode(x)
        z = reparameterize(key, mean, log_var, num_samples)
        recon = jnp.mean(self.decoder.log_prob(x, z), axis=0)
        return recon - gaussian_kl(mean, log_var)

    def __call__(self, key: jax.Array, x: jax.Array) -> jax.Array:
        return self.elbo(key, x)

    def log_weights(self, key: jax.Array, x: jax.Array, num_samples: int) -> jax.Array:
        """``(num_samples, n)`` importance log-weights log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x)."""
        mean, log_var = self.encode(x)
        z = reparameterize(key, mean, log_var, num_samples)
        log_prior = diagonal_normal_log_prob(z, 0.0, 0.0)  # p(z) = N(0, I)
        return self.decoder.log_prob(x, z) + log_prior - diagonal_normal_log_prob(z, mean, log_var)

    def importance_weighted_bound(
        self, key: jax.Array, x: jax.Array, num_samples: int, *, chunk_size: int = 100
    ) -> jax.Array:
        """Per-example L_K = log (1/K) sum_k w_k (Burda et al. 2016); K = ``num_samples``.

        The K samples are drawn ``chunk_size`` at a time in a ``lax.scan`` with a running log-sum-exp, so K = 1000 on a
        whole test set fits in memory. L_1 is the ELBO estimated without the closed-form KL.

        Raises:
          ValueError: ``num_samples`` or ``chunk_size`` not a positive integer.
        """
        check_positive_int(num_samples, "num_samples", "the number K of importance samples")
        check_positive_int(chunk_size, "chunk_size", "importance samples drawn per scan step")
        chunk = min(chunk_size, num_samples)
        num_chunks = -(-num_samples // chunk)

        def body(acc, inputs):
            k, start = inputs
            lw = self.log_weights(k, x, chunk)
            # The last chunk may overshoot K; the surplus samples get weight zero.
            valid = (start + jnp.arange(chunk))[:, None] < num_samples
            lw = jnp.where(valid, lw, -jnp.inf)
            return jnp.logaddexp(acc, jax.nn.logsumexp(lw, axis=0)), None

        init = jnp.full(x.shape[:1], -jnp.inf, x.dtype)
        starts = jnp.arange(num_chunks) * chunk
        total, _ = jax.lax.scan(body, init, (jax.random.split(key, num_chunks), starts))
        return total - math.log(num_samples)

    def reconstruct(self, x: jax.Array) -> jax.Array:
        """E[x | z = mean of q(z | x)]: the decoder mean at the posterior mean."""
        return self.decoder.mean(self.encode(x)[0])


def check_data(x, num_features: int, likelihood: str, name: str = "x") -> np.ndarray:
    """Host-side validation of a data matrix: 2-D, non-empty, finite, ``num_features`` wide, and in [0, 1] for a
    Bernoulli decoder."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != num_features:
        raise ValueError(f"{name} has shape {arr.shape}; expected (examples, {num_features}).")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; expected at least one example.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; expected finite data.")
    if likelihood == "bernoulli" and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} has values in [{arr.min()}, {arr.max()}]; a Bernoulli decoder expects [0, 1].")
    return arr


def _elbo_step(graphdef, rest, optimizer, carry, xb, key):
    """The plug-in step of :func:`fit_vae`: one Adam step on the minibatch's mean negative ELBO (z drawn by ``key``)."""
    p, opt_state = carry

    def loss_fn(p, k, xb):
        return -jnp.mean(nnx.merge(graphdef, p, rest).elbo(k, xb))

    loss, grads = jax.value_and_grad(loss_fn)(p, key, xb)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), loss


# Module-level jitted epoch with the graph definition static: models of the same architecture share one compilation.
@partial(jax.jit, static_argnums=0, static_argnames="batch_size")
def _train_epoch(graphdef, params, rest, opt_state, key, x, learning_rate, *, batch_size: int):
    step = partial(_elbo_step, graphdef, rest, optax.adam(learning_rate))
    (params, opt_state), losses = epoch_scan(step, (params, opt_state), key, x, batch_size=batch_size)
    return params, opt_state, jnp.mean(losses)


@partial(jax.jit, static_argnums=0, static_argnames="num_samples")
def _mean_negative_elbo(graphdef, params, rest, key, x, *, num_samples: int):
    return -jnp.mean(nnx.merge(graphdef, params, rest).elbo(key, x, num_samples))


class VAEHistory(NamedTuple):
    """Per-epoch mean negative ELBO (nats per example) on the training data and, if given, the test data."""

    train_negative_elbo: np.ndarray
    test_negative_elbo: np.ndarray


def fit_vae(
    model: VAE,
    x_train: jax.Array,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int = 100,
    learning_rate: float = 1e-3,
    x_test: jax.Array | None = None,
    eval_samples: int = 10,
) -> tuple[VAE, VAEHistory]:
    """Maximise the ELBO with Adam over shuffled minibatches; returns a trained copy and the per-epoch history.

    Each epoch is one jitted ``lax.scan`` over minibatches (:func:`jaxdl.train.epoch_scan`, a key per step);
    parameters and data are arguments, never constants.
    The input ``model`` is not modified. The same ``key`` gives the same trained parameters bit for bit.

    Raises:
      ValueError: bad data (wrong shape, empty, NaN/inf, outside [0, 1] for a Bernoulli decoder) or settings.

    Example:
      >>> vae = VAE(64, [32], 2, rngs=nnx.Rngs(0))
      >>> x = jnp.zeros((50, 64))
      >>> trained, hist = fit_vae(vae, x, key=jax.random.key(0), epochs=2, batch_size=25)
      >>> hist.train_negative_elbo.shape
      (2,)
    """
    check_key(key)
    check_data(x_train, model.input_size, model.likelihood, "x_train")
    if x_test is not None:
        check_data(x_test, model.input_size, model.likelihood, "x_test")
    check_positive_int(epochs, "epochs", "passes over the training data")
    check_positive_int(batch_size, "batch_size", "examples per update")
    check_positive_int(eval_samples, "eval_samples", "z samples per example when evaluating the ELBO")
    if batch_size > len(x_train):
        raise ValueError(f"batch_size={batch_size} is invalid; expected at most {len(x_train)} examples.")
    check_number(learning_rate, "learning_rate", positive=True)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = optax.adam(learning_rate).init(params)
    train_hist, test_hist = [], []
    x_train = jnp.asarray(x_train)
    for epoch_key in jax.random.split(key, epochs):
        params, opt_state, loss = _train_epoch(graphdef, params, rest, opt_state, epoch_key, x_train, learning_rate,
                                               batch_size=batch_size)
        train_hist.append(loss)
        if x_test is not None:
            test_hist.append(_mean_negative_elbo(graphdef, params, rest, jax.random.fold_in(epoch_key, 1),
                                                 jnp.asarray(x_test), num_samples=eval_samples))
    history = VAEHistory(np.asarray(jax.device_get(train_hist)), np.asarray(jax.device_get(test_hist)))
    return nnx.merge(graphdef, params, rest), history
