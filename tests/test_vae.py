"""VAE and generator against closed forms, SciPy densities, Monte Carlo and quadrature of log p(x) over a 1-D latent.

Every model here has the same shapes (8 pixels, 16 hidden, 1 latent) so that initialisation and the jitted programs
compile once per dtype: on two shared cores compilation, not arithmetic, is what these tests spend.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from jaxdl.data import digits_binarized
from jaxdl.models import vae as vae_module
from jaxdl.models.generator import Generator, sample_latent
from jaxdl.models.vae import VAE, diagonal_normal_log_prob, fit_vae, gaussian_kl, reparameterize


def rng_key(seed: int) -> jax.Array:
    """A PRNG key for these tests. The library takes whatever key it is given; the tests use the "rbg" generator
    because XLA compiles its kernels several times faster than the default partitionable threefry, and on two
    shared cores compilation is what these tests spend. Same seed, same key, same results."""
    return jax.random.key(seed, impl="rbg")

GRID = np.linspace(-8.0, 8.0, 4001)  # quadrature grid over the 1-D latent, |z| <= 8 (prior mass outside ~1e-15)


@jax.jit
def _kl_both(key, mean, log_var):
    """Closed-form KL and the Monte-Carlo mean of log q(z|x) - log p(z) over 100,000 draws, with its standard error."""
    z = reparameterize(key, mean, log_var, 100_000)
    zeros = jnp.zeros_like(z)
    terms = diagonal_normal_log_prob(z, mean, log_var) - diagonal_normal_log_prob(z, zeros, zeros)
    return gaussian_kl(mean, log_var), jnp.mean(terms, 0), jnp.std(terms, 0) / np.sqrt(z.shape[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("x64", [False, True])
def test_analytic_kl_equals_monte_carlo(seed, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        rng = np.random.default_rng(seed)
        mean = jnp.asarray(rng.standard_normal((4, 3)), dtype)
        log_var = jnp.asarray(rng.uniform(-2.0, 1.0, (4, 3)), dtype)
        kl, mc, se = (np.asarray(a) for a in _kl_both(rng_key(seed), mean, log_var))
        assert float(gaussian_kl(jnp.zeros(3, dtype), jnp.zeros(3, dtype))) == 0.0  # KL(q || q) = 0
    assert np.all(np.abs(kl - mc) < 5 * se + 1e-6), (kl, mc, se)
    assert np.all(kl > 0)


@partial(jax.jit, static_argnums=(0, 2))
def _generator_densities(graph_b, params_b, graph_g, params_g, x, xg, z):
    g, gg = nnx.merge(graph_b, params_b), nnx.merge(graph_g, params_g)
    return g.mean(z), g.log_prob(x, z), gg.mean(z), gg.log_prob(xg, z)


@pytest.mark.parametrize("x64", [False, True])
def test_log_densities_match_scipy(x64):
    rtol = 1e-12 if x64 else 1e-5
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        rng = np.random.default_rng(0)
        z, mean = rng.standard_normal((2, 5, 1))
        log_var = rng.uniform(-1, 1, (5, 1))
        got = diagonal_normal_log_prob(jnp.asarray(z, dtype), jnp.asarray(mean, dtype), jnp.asarray(log_var, dtype))
        np.testing.assert_allclose(np.asarray(got), stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)).sum(-1),
                                   rtol=rtol)
        zj = jnp.asarray(z, dtype)
        g = Generator(1, [16], 8, output="bernoulli", rngs=nnx.Rngs(0), dtype=dtype)
        x = jnp.asarray(rng.integers(0, 2, (5, 8)), dtype)
        gg = Generator(1, [16], 8, output="gaussian", rngs=nnx.Rngs(0), dtype=dtype)
        gg.log_scale[...] = jnp.linspace(-0.5, 0.5, 8, dtype=dtype)
        xg = jnp.asarray(rng.standard_normal((5, 8)), dtype)
        out = _generator_densities(*nnx.split(g), *nnx.split(gg), x, xg, zj)
    p, log_p, mean_g, log_p_g = (np.asarray(a, np.float64) for a in out)
    np.testing.assert_allclose(log_p, stats.bernoulli.logpmf(np.asarray(x), p).sum(-1), rtol=10 * rtol)
    want = stats.norm.logpdf(np.asarray(xg), mean_g, np.exp(np.linspace(-0.5, 0.5, 8))).sum(-1)
    np.testing.assert_allclose(log_p_g, want, rtol=10 * rtol)


@jax.jit
def _reparameterised_moments(key, mean, log_var):
    """E[z^2] summed over coordinates and its gradient in (mean, log_var), by the reparameterisation."""
    def second_moment(m, lv):
        return jnp.mean(reparameterize(key, m, lv, 200_000) ** 2, 0).sum()

    z = reparameterize(key, mean, log_var, 200_000)
    return z.mean(0), z.var(0), jax.grad(second_moment, (0, 1))(mean, log_var)


def test_reparameterisation_moments_and_gradient():
    mean, log_var = jnp.array([1.0, -2.0]), jnp.log(jnp.array([0.25, 4.0]))
    z_mean, z_var, (g_mean, g_log_var) = _reparameterised_moments(rng_key(0), mean, log_var)
    np.testing.assert_allclose(np.asarray(z_mean), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(np.asarray(z_var), [0.25, 4.0], rtol=0.02)
    # Gradients flow through the sample: d E[z^2] / d mean = 2 mean, d E[z^2] / d log_var = sigma^2.
    np.testing.assert_allclose(np.asarray(g_mean), [2.0, -4.0], rtol=0.02)
    np.testing.assert_allclose(np.asarray(g_log_var), [0.25, 4.0], rtol=0.03)


@partial(jax.jit, static_argnums=0)
def _bounds_program(graphdef, params, key, x, grid):
    """One compiled program per dtype: the ELBO, 20,000 importance log-weights, log p(x, z) on the quadrature grid,
    and importance_weighted_bound with K = 250 in chunks of 100 next to the three chunks' own log-weights."""
    vae = nnx.merge(graphdef, params)
    k_elbo, k_w, k_iw = jax.random.split(key, 3)
    elbo = vae.elbo(k_elbo, x, 20_000)
    log_w = vae.log_weights(k_w, x, 20_000)
    z = jnp.broadcast_to(grid[:, None, None], (grid.size, x.shape[0], 1))
    log_lik_grid = vae.decoder.log_prob(x, z)
    iw_250 = vae.importance_weighted_bound(k_iw, x, 250, chunk_size=100)
    chunk_w = jax.lax.map(lambda k: vae.log_weights(k, x, 100), jax.random.split(k_iw, 3)).reshape(300, -1)
    return elbo, log_w, log_lik_grid, iw_250, chunk_w


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x64", [False, True])
def test_elbo_below_importance_weighted_bounds_that_tighten_to_log_likelihood(seed, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        vae = VAE(8, [16], 1, rngs=nnx.Rngs(seed), dtype=dtype)
        x = jnp.asarray(np.random.default_rng(seed).integers(0, 2, (6, 8)), dtype)
        graphdef, params = nnx.split(vae)
        out = _bounds_program(graphdef, params, rng_key(seed), x, jnp.asarray(GRID, dtype))
        elbo, log_w, log_lik_grid, iw_250, chunk_w = (np.array(a, np.float64) for a in out)
    # Exact log p(x) = log int p(x|z) N(z; 0, 1) dz by the trapezoid rule on the grid.
    log_joint = log_lik_grid + stats.norm.logpdf(GRID)[:, None]
    m = log_joint.max(0)
    exact = m + np.log(np.trapezoid(np.exp(log_joint - m), GRID, axis=0))
    # L_K from 20,000 weights in disjoint groups of K: an average of 20,000 / K independent L_K estimates.
    bounds = {k: np.mean(np.logaddexp.reduce(log_w.reshape(20_000 // k, k, -1), axis=1) - np.log(k), 0)
              for k in (1, 10, 100, 1000)}
    # Monte-Carlo noise on these averages is below 0.02 nats; the gaps being measured are larger.
    np.testing.assert_allclose(bounds[1], elbo, atol=0.05)  # L_1 is the ELBO (with the KL by sampling)
    for a, b in ((1, 10), (10, 100), (100, 1000)):
        assert np.all(bounds[a] <= bounds[b] + 0.02), (a, b, bounds[a], bounds[b])
    assert np.all(bounds[1000] <= exact + 0.02) and np.all(elbo < exact)
    assert np.all(exact - bounds[1000] < 0.25 * (exact - elbo) + 0.02)  # L_K closes most of the gap
    # importance_weighted_bound is the log-mean-exp of its own weights; the padded last chunk is masked out.
    want = np.logaddexp.reduce(chunk_w[:250], axis=0) - np.log(250)
    np.testing.assert_allclose(iw_250, want, rtol=1e-12 if x64 else 1e-5)


@pytest.fixture(scope="module")
def digit_rows():
    """The middle pixel row (8 pixels) of the binarised digits: real data with the tests' 8-pixel shape."""
    d = digits_binarized()
    return d.x_train[:320, 32:40], d.x_test[:100, 32:40]


def test_fit_vae_improves_elbo_reproducibly_without_retracing(digit_rows):
    x_train, x_test = digit_rows
    vae = VAE(8, [16], 1, rngs=nnx.Rngs(0))
    kwargs = dict(key=rng_key(0), epochs=6, batch_size=32, learning_rate=1e-2, x_test=x_test)
    trained, hist = fit_vae(vae, x_train, **kwargs)
    assert hist.train_negative_elbo[-1] < hist.train_negative_elbo[0] - 0.5, hist.train_negative_elbo
    assert hist.test_negative_elbo[-1] < hist.test_negative_elbo[0] - 0.5, hist.test_negative_elbo
    before = vae_module._train_epoch._cache_size()
    again, _ = fit_vae(VAE(8, [16], 1, rngs=nnx.Rngs(0)), x_train, **kwargs)
    assert vae_module._train_epoch._cache_size() == before  # same architecture: no new compilation
    for a, b in zip(jax.tree.leaves(nnx.state(trained)), jax.tree.leaves(nnx.state(again))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same key, same parameters, bit for bit
    for a, b in zip(jax.tree.leaves(nnx.state(vae)), jax.tree.leaves(nnx.state(VAE(8, [16], 1, rngs=nnx.Rngs(0))))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the input model is untouched


def test_generator_sampling_is_reproducible():
    g = Generator(1, [16], 8, output="bernoulli", rngs=nnx.Rngs(0))
    a, b = g.sample(rng_key(3), 7), g.sample(rng_key(3), 7)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.shape == (7, 8) and set(np.unique(np.asarray(a))) <= {0.0, 1.0}
    assert not np.array_equal(np.asarray(g.sample(rng_key(4), 7)), np.asarray(a))
    assert sample_latent(rng_key(0), 7, 2).shape == (7, 2)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="latent_size=0 is invalid"):
        VAE(8, [16], 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="latent_size=-2 is invalid"):
        Generator(-2, [16], 8, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="latent_size must be an int .*, got 2.5"):
        VAE(8, [16], 2.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="likelihood='poisson' is unknown"):
        VAE(8, [16], 1, likelihood="poisson", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="hidden_sizes"):
        VAE(8, [0], 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_samples=0 is invalid"):
        sample_latent(rng_key(0), 0, 2)
    vae = VAE(8, [16], 1, rngs=nnx.Rngs(0))
    x = jnp.zeros((10, 8))
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_vae(vae, x.at[0, 0].set(jnp.nan), key=rng_key(0), epochs=1, batch_size=5)
    with pytest.raises(ValueError, match="expects \\[0, 1\\]"):
        fit_vae(vae, x + 2.0, key=rng_key(0), epochs=1, batch_size=5)
    with pytest.raises(ValueError, match="empty"):
        fit_vae(vae, jnp.zeros((0, 8)), key=rng_key(0), epochs=1, batch_size=5)
    with pytest.raises(ValueError, match="expected \\(examples, 8\\)"):
        fit_vae(vae, jnp.zeros((10, 5)), key=rng_key(0), epochs=1, batch_size=5)
    with pytest.raises(ValueError, match="epochs=0 is invalid"):
        fit_vae(vae, x, key=rng_key(0), epochs=0)
    with pytest.raises(ValueError, match="batch_size=11 is invalid"):
        fit_vae(vae, x, key=rng_key(0), epochs=1, batch_size=11)
    with pytest.raises(ValueError, match="num_samples=0 is invalid"):
        vae.importance_weighted_bound(rng_key(0), x, 0)
    with pytest.raises(ValueError, match="defines no density"):
        Generator(1, [16], 8, output="identity", rngs=nnx.Rngs(0)).log_prob(jnp.zeros((1, 8)), jnp.zeros((1, 1)))
    with pytest.raises(ValueError, match="last axis of size latent_size=1"):
        Generator(1, [16], 8, rngs=nnx.Rngs(0))(jnp.zeros((1, 3)))


def test_generative_experiments_are_registered():
    from jaxdl.experiments import EXPERIMENTS

    names = {"vae-digits", "gan-saturation", "gan-mixture", "gan-digits", "rbm-digits", "rbm-cd-bias", "rbm-ais"}
    assert names <= set(EXPERIMENTS)
