"""Gaussian mixtures in one or two dimensions: GAN targets with closed-form density and moments."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from analysis._checks import check_key


class GaussianMixture(NamedTuple):
    """sum_k w_k N(mean_k, diag std_k^2); ``weights (K,)``, ``means (K, d)``, ``stds (K, d)``.

    Build it with :func:`gaussian_mixture` (which validates); sample, evaluate the density, or read exact moments.
    """

    weights: jax.Array
    means: jax.Array
    stds: jax.Array

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        """``(num_samples, d)`` draws; the same key gives the same draws."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples={num_samples!r} is invalid; expected a positive integer.")
        kc, kn = jax.random.split(check_key(key))
        comp = jax.random.choice(kc, self.weights.shape[0], (num_samples,), p=self.weights)
        noise = jax.random.normal(kn, (num_samples, self.dim), self.means.dtype)
        return self.means[comp] + self.stds[comp] * noise

    def log_prob(self, x: jax.Array) -> jax.Array:
        """log density at ``x (n, d)``, shape ``(n,)``."""
        z = (x[:, None, :] - self.means[None]) / self.stds[None]
        comp = -0.5 * jnp.sum(z**2, -1) - jnp.sum(jnp.log(self.stds), -1) - 0.5 * self.dim * math.log(2 * math.pi)
        return jax.nn.logsumexp(comp + jnp.log(self.weights), axis=-1)

    def mean(self) -> jax.Array:
        """E[x], ``(d,)``."""
        return self.weights @ self.means

    def variance(self) -> jax.Array:
        """Per-coordinate Var[x], ``(d,)``: E[var | k] + Var[mean | k] (law of total variance)."""
        m = self.mean()
        return self.weights @ (self.stds**2 + (self.means - m) ** 2)


def gaussian_mixture(
    weights: Sequence[float], means: Sequence, stds: Sequence, dtype=jnp.float32
) -> GaussianMixture:
    """A validated :class:`GaussianMixture`. 1-D components may be given as flat lists.

    Example:
      >>> mix = gaussian_mixture([0.3, 0.7], [-2.0, 1.5], [0.5, 0.7])
      >>> mix.sample(jax.random.key(0), 4).shape
      (4, 1)

    Raises:
      ValueError: weights not positive or not summing to 1, shapes that disagree, non-positive or non-finite stds.
    """
    w = np.asarray(weights, np.float64)
    mu = np.asarray(means, np.float64)
    sd = np.asarray(stds, np.float64)
    if mu.ndim == 1:
        mu = mu[:, None]
    if sd.ndim == 1:
        sd = sd[:, None]
    if w.ndim != 1 or w.size == 0 or mu.shape[0] != w.size or sd.shape != mu.shape:
        raise ValueError(f"weights {w.shape}, means {mu.shape} and stds {sd.shape} disagree; expected (K,), (K, d), "
                         "(K, d).")
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(mu)) and np.all(np.isfinite(sd))):
        raise ValueError("mixture parameters contain NaN or inf; expected finite values.")
    if np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights={w.tolist()} are invalid; expected positive values summing to 1.")
    if np.any(sd <= 0):
        raise ValueError(f"stds={sd.tolist()} are invalid; expected positive standard deviations.")
    return GaussianMixture(jnp.asarray(w, dtype), jnp.asarray(mu, dtype), jnp.asarray(sd, dtype))


def ring_mixture(num_modes: int = 8, radius: float = 2.0, std: float = 0.05, dtype=jnp.float32) -> GaussianMixture:
    """The 2-D ring of ``num_modes`` equal Gaussians often used to show GAN mode collapse."""
    if isinstance(num_modes, bool) or not isinstance(num_modes, int) or num_modes <= 0:
        raise ValueError(f"num_modes={num_modes!r} is invalid; expected a positive integer.")
    angles = 2 * np.pi * np.arange(num_modes) / num_modes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return gaussian_mixture(np.full(num_modes, 1.0 / num_modes), means, np.full((num_modes, 2), std), dtype)
