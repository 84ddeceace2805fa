"""GAN losses against closed forms and finite differences, the JSD identity, a 1-D equilibrium, mixtures, errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import integrate, stats

from jaxdl.data import gaussian_mixture, ring_mixture
from jaxdl.models.gan import GAN, Discriminator, discriminator_loss, fit_gan, generator_loss


def rng_key(seed: int) -> jax.Array:
    """A PRNG key for these tests. The library takes whatever key it is given; the tests use the "rbg" generator
    because XLA compiles its kernels several times faster than the default partitionable threefry, and on two
    shared cores compilation is what these tests spend. Same seed, same key, same results."""
    return jax.random.key(seed, impl="rbg")


@jax.jit
def _logit_gradients(logits):
    """Per-sample derivatives of both generator losses with respect to the logits (mean losses times n)."""
    n = logits.shape[0]
    return (jax.grad(lambda l: generator_loss(l, "minimax"))(logits) * n,
            jax.grad(lambda l: generator_loss(l, "non_saturating"))(logits) * n)


@pytest.mark.parametrize("x64", [False, True])
def test_losses_and_logit_gradients_match_closed_forms(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        logits = jnp.linspace(-30.0, 10.0, 81, dtype=dtype)
        g_mm, g_ns = (np.asarray(a, np.float64) for a in _logit_gradients(logits))
        zero = jnp.zeros(4, dtype)
        at_half = (float(discriminator_loss(zero, zero)), float(generator_loss(zero, "non_saturating")),
                   float(generator_loss(zero, "minimax")))
        # Central finite differences of the per-sample losses, in float64 only (float32 differences are too coarse).
        if x64:
            h = 1e-6
            for kind, g in (("minimax", g_mm), ("non_saturating", g_ns)):
                fd = [(float(generator_loss(jnp.array([l + h]), kind))
                       - float(generator_loss(jnp.array([l - h]), kind))) / (2 * h) for l in np.asarray(logits)[::10]]
                np.testing.assert_allclose(g[::10], fd, rtol=1e-6, atol=1e-9)
    l64 = np.asarray(logits, np.float64)
    d, one_minus_d = 1.0 / (1.0 + np.exp(-l64)), 1.0 / (1.0 + np.exp(l64))  # no cancellation in 1 - D
    rtol = 1e-12 if x64 else 1e-5
    np.testing.assert_allclose(g_mm, -d, rtol=rtol, atol=1e-30)  # d/dl log(1 - sigmoid(l)) = -D
    np.testing.assert_allclose(g_ns, -one_minus_d, rtol=rtol, atol=1e-30)  # d/dl -log sigmoid(l) = -(1 - D)
    np.testing.assert_allclose(at_half, [2 * math.log(2), math.log(2), -math.log(2)], rtol=rtol)
    # The saturation claim: a confidently rejected sample (l = -10, D = 4.5e-5) gets a minimax gradient 4.5e-5 times
    # the non-saturating one (ratio D / (1 - D) = e^l), which itself stays near -1.
    i = int(np.argmin(np.abs(np.asarray(logits) + 10.0)))
    np.testing.assert_allclose(g_mm[i] / g_ns[i], math.exp(-10.0), rtol=10 * rtol)
    assert g_mm[i] / g_ns[i] < 1e-4 and g_ns[i] < -0.9999


@pytest.mark.parametrize("seed", [0, 1])
def test_optimal_discriminator_loss_is_2log2_minus_2jsd(seed):
    # For fixed p_data and p_g the best discriminator is D* = p_data / (p_data + p_g) (Goodfellow et al. 2014,
    # prop. 1), and then -v(G, D*) = 2 log 2 - 2 JSD(p_data || p_g). JSD by SciPy quadrature as the reference.
    rng = np.random.default_rng(seed)
    m1, m2 = rng.uniform(-1, 1, 2)
    s1, s2 = rng.uniform(0.5, 1.5, 2)
    p, q = stats.norm(m1, s1), stats.norm(m2, s2)
    def kl_to_mixture(a, b):  # KL(a || (a + b) / 2), integrand in log space so the tails do not give 0 log 0
        return integrate.quad(lambda x: np.exp(a.logpdf(x)) * (a.logpdf(x) - np.logaddexp(a.logpdf(x), b.logpdf(x))
                                                                + math.log(2)), -20, 20)[0]

    jsd = 0.5 * kl_to_mixture(p, q) + 0.5 * kl_to_mixture(q, p)
    xr, xf = p.rvs(400_000, random_state=rng), q.rvs(400_000, random_state=rng)
    logit = lambda x: p.logpdf(x) - q.logpdf(x)  # noqa: E731  (the logit of D*)
    with jax.enable_x64(True):
        real, fake = jnp.asarray(logit(xr)), jnp.asarray(logit(xf))
        loss = float(jax.jit(discriminator_loss)(real, fake))
        se = math.sqrt((np.var(np.logaddexp(0, -logit(xr))) + np.var(np.logaddexp(0, logit(xf)))) / 400_000)
    assert abs(loss - (2 * math.log(2) - 2 * jsd)) < 5 * se, (loss, 2 * math.log(2) - 2 * jsd, se)
    assert 0 < jsd < math.log(2)


def test_gan_reaches_equilibrium_on_a_gaussian_and_is_reproducible():
    target = gaussian_mixture([1.0], [1.0], [0.5])  # one component: N(1, 0.5^2)
    x = target.sample(rng_key(1), 20_000)
    gan = GAN(4, [32], 1, [32], output="identity", rngs=nnx.Rngs(0))
    kwargs = dict(key=rng_key(0), batch_size=128, learning_rate=1e-3, chunk=1000)
    trained, hist = fit_gan(gan, x, steps=5000, **kwargs)
    tail = slice(-500, None)
    assert abs(np.mean(hist.d_real[tail]) - 0.5) < 0.05 and abs(np.mean(hist.d_fake[tail]) - 0.5) < 0.05
    assert abs(np.mean(hist.discriminator_loss[tail]) - 2 * math.log(2)) < 0.05
    assert abs(np.mean(hist.non_saturating_loss[tail]) - math.log(2)) < 0.05
    s = np.asarray(trained.sample(rng_key(2), 20_000))[:, 0]
    assert abs(s.mean() - 1.0) < 0.1 and abs(s.std() / 0.5 - 1) < 0.15, (s.mean(), s.std())
    again, hist2 = fit_gan(gan, x, steps=5000, **kwargs)  # same key, same run, bit for bit
    for name in hist._fields:
        np.testing.assert_array_equal(getattr(hist, name), getattr(hist2, name))
    for a, b in zip(jax.tree.leaves(nnx.state(trained)), jax.tree.leaves(nnx.state(again))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@jax.jit
def _mixture_program(mix, key, grid):
    return mix.sample(key, 200_000), mix.log_prob(grid), mix.mean(), mix.variance()


@pytest.mark.parametrize("x64", [False, True])
def test_mixture_moments_and_density(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        mix = gaussian_mixture([0.3, 0.7], [-2.0, 1.5], [0.5, 0.7], dtype=dtype)
        grid = np.linspace(-5, 5, 11)
        out = _mixture_program(mix, rng_key(0), jnp.asarray(grid[:, None], dtype))
    x, dens, mean, var = (np.asarray(a, np.float64) for a in out)
    x, mean, var = x[:, 0], float(mean[0]), float(var[0])
    want = np.log(0.3 * stats.norm.pdf(grid, -2, 0.5) + 0.7 * stats.norm.pdf(grid, 1.5, 0.7))
    np.testing.assert_allclose(dens, want, rtol=1e-12 if x64 else 1e-5)
    np.testing.assert_allclose([mean, var], [0.3 * -2 + 0.7 * 1.5, 0.3 * (0.25 + 4) + 0.7 * (0.49 + 2.25) - 0.45**2],
                               rtol=1e-12 if x64 else 1e-6)
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / x.size) and abs(x.var() / var - 1) < 0.02
    ring = ring_mixture(8, 2.0, 0.05)
    np.testing.assert_allclose(np.asarray(ring.mean()), [0.0, 0.0], atol=1e-6)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="kind='wasserstein' is unknown"):
        generator_loss(jnp.zeros(3), "wasserstein")
    with pytest.raises(ValueError, match="output='gaussian' is invalid"):
        GAN(2, [8], 1, [8], output="gaussian", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="latent_size=0 is invalid"):
        GAN(0, [8], 1, [8], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_size=0 is invalid"):
        Discriminator(0, [8], rngs=nnx.Rngs(0))
    gan = GAN(4, [32], 1, [32], output="identity", rngs=nnx.Rngs(0))  # the shapes above: no new compilation
    x = jnp.zeros((10, 1))
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_gan(gan, x.at[3, 0].set(jnp.inf), key=rng_key(0), steps=1)
    with pytest.raises(ValueError, match="expected \\(examples, 1\\)"):
        fit_gan(gan, jnp.zeros((10, 2)), key=rng_key(0), steps=1)
    with pytest.raises(ValueError, match="empty"):
        fit_gan(gan, jnp.zeros((0, 1)), key=rng_key(0), steps=1)
    with pytest.raises(ValueError, match="loss='hinge' is unknown"):
        fit_gan(gan, x, key=rng_key(0), steps=1, loss="hinge")
    with pytest.raises(ValueError, match="steps=0 is invalid"):
        fit_gan(gan, x, key=rng_key(0), steps=0)
    with pytest.raises(ValueError, match="weights"):
        gaussian_mixture([0.5, 0.6], [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="stds"):
        gaussian_mixture([0.5, 0.5], [0.0, 1.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        gaussian_mixture([0.5, 0.5], [0.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="disagree"):
        gaussian_mixture([0.5, 0.5], [0.0, 1.0, 2.0], [1.0, 1.0])
