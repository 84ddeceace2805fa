"""Trace estimators (Hutchinson, Hutch++) and stochastic Lanczos quadrature against exact spectra."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

import analysis
from tests.conftest import SPECTRUM, quadratic_problem


def decaying_problem(dtype=jnp.float32, n: int = 100):
    """A quadratic whose Hessian has the geometrically decaying spectrum 0.7^i (Hutch++'s favourable case)."""
    rng = np.random.default_rng(5)
    spectrum = 10.0 * 0.7 ** np.arange(n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * spectrum) @ q.T

    def loss(w, amat):
        return 0.5 * w @ amat @ w

    return loss, jnp.zeros(n, dtype), jnp.asarray(0.5 * (a + a.T), dtype), spectrum


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
@pytest.mark.parametrize("x64", [False, True])
def test_trace_unbiased_within_three_standard_errors(method, x64):
    with jax.enable_x64(x64):
        loss, params, a, b = quadratic_problem(1, jnp.float64 if x64 else jnp.float32)
        exact = SPECTRUM.sum()
        runs = [analysis.hessian_trace(loss, params, a, b, num_matvecs=30, method=method, key=jax.random.PRNGKey(s))
                for s in range(40)]
        est = np.array([float(r.estimate) for r in runs])
        sem = np.array([float(r.standard_error) for r in runs])
        # Each run: the exact trace within 3 reported standard errors (allowing 2 misses of 40 for the
        # sampling noise of the standard error itself); all runs together: the mean within 3 of its own errors.
        assert np.sum(np.abs(est - exact) > 3 * sem) <= 2
        assert abs(est.mean() - exact) <= 3 * est.std(ddof=1) / np.sqrt(est.size)


def test_hutch_plus_plus_beats_hutchinson_on_decaying_spectrum():
    loss, params, a, spectrum = decaying_problem()
    exact = spectrum.sum()

    def errors(method):
        return np.array([float(analysis.hessian_trace(loss, params, a, num_matvecs=30, method=method,
                                                      key=jax.random.PRNGKey(s)).estimate) - exact
                         for s in range(60)])

    var_h, var_pp = np.var(errors("hutchinson")), np.var(errors("hutch++"))
    assert var_pp < 0.1 * var_h, (var_pp, var_h)


def test_trace_same_key_same_bits_and_errors():
    loss, params, a, b = quadratic_problem(0, jnp.float32)
    r1 = analysis.hessian_trace(loss, params, a, b, key=jax.random.PRNGKey(3))
    r2 = analysis.hessian_trace(loss, params, a, b, key=jax.random.PRNGKey(3))
    assert np.asarray(r1.estimate).tobytes() == np.asarray(r2.estimate).tobytes()
    with pytest.raises(ValueError, match="method='exact'"):
        analysis.hessian_trace(loss, params, a, b, method="exact")
    with pytest.raises(ValueError, match="num_matvecs=1 is invalid"):
        analysis.hessian_trace(loss, params, a, b, method="hutchinson", num_matvecs=1)
    with pytest.raises(ValueError, match="num_matvecs=3 is invalid"):
        analysis.hessian_trace(loss, params, a, b, method="hutch++", num_matvecs=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slq_wasserstein_to_exact_spectrum(seed):
    loss, params, a, b = quadratic_problem(seed, jnp.float32)
    spread = SPECTRUM.max() - SPECTRUM.min()
    sd = analysis.spectral_density(loss, params, a, b, num_matvecs=40, num_probes=20, key=jax.random.PRNGKey(seed))
    assert sd.nodes.shape == (20, 40)
    np.testing.assert_allclose(np.asarray(sd.weights.sum(axis=1)), 1.0, rtol=1e-5)
    w1 = float(sd.wasserstein1(SPECTRUM))
    nodes, weights = sd.measure()
    # Our exact step-CDF formula against scipy's implementation.
    np.testing.assert_allclose(w1, wasserstein_distance(np.asarray(nodes), SPECTRUM, np.asarray(weights)), rtol=1e-4)
    # Measured: W1 ~ 0.22-0.25 with 20 probes (0.4% of the spectral spread); a point mass at the mean is at 7.0.
    assert w1 < 0.01 * spread
    assert w1 < 0.1 * wasserstein_distance([SPECTRUM.mean()], SPECTRUM)


def test_slq_density_integrates_to_one_and_matches_moments():
    with jax.enable_x64(True):
        loss, params, a, b = quadratic_problem(0, jnp.float64)
        sd = analysis.spectral_density(loss, params, a, b, num_matvecs=30, num_probes=50)
        grid = np.linspace(-20.0, 70.0, 20001)
        dens = np.asarray(sd.density(grid, sigma=0.5))
        np.testing.assert_allclose(np.trapezoid(dens, grid), 1.0, rtol=1e-6)
        nodes, weights = (np.asarray(t) for t in sd.measure())
        # Gauss quadrature is exact for low moments of each probe's measure, and the probe average is unbiased:
        # the first moment estimates tr(A)/n within a few standard errors of the Hutchinson estimate it equals.
        per_probe_mean = np.sum(np.asarray(sd.nodes) * np.asarray(sd.weights), axis=1)
        se = per_probe_mean.std(ddof=1) / np.sqrt(per_probe_mean.size)
        assert abs(np.sum(nodes * weights) - SPECTRUM.mean()) < 4 * se
        with pytest.raises(ValueError, match="sigma=0"):
            sd.density(grid, sigma=0)


def test_slq_errors():
    loss, params, a, b = quadratic_problem(0, jnp.float32)
    with pytest.raises(ValueError, match="num_matvecs=81 exceeds"):
        analysis.spectral_density(loss, params, a, b, num_matvecs=81)
    with pytest.raises(ValueError, match="num_probes=0"):
        analysis.spectral_density(loss, params, a, b, num_probes=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        analysis.spectral_density(loss, params, a, b, num_probes=2, batch_size=0)


@pytest.mark.parametrize("x64", [False, True])
def test_slq_probes_batched_equal_probes_one_at_a_time(x64):
    """Ten probes vectorised together, in blocks of 4 (with a remainder of 2) and one at a time: the same probes
    (same key) give the same nodes and weights to rounding (float32: 1e-4 of the spectral radius 50; float64:
    1e-9)."""
    with jax.enable_x64(x64):
        loss, params, a, b = quadratic_problem(1, jnp.float64 if x64 else jnp.float32)
        key = jax.random.PRNGKey(7)
        runs = [analysis.spectral_density(loss, params, a, b, num_matvecs=30, num_probes=10, key=key, batch_size=bs)
                for bs in (None, 10, 4, 1)]
        atol = 1e-9 if x64 else 5e-3
        for run in runs[1:]:
            np.testing.assert_allclose(np.asarray(run.nodes), np.asarray(runs[0].nodes), atol=atol)
            np.testing.assert_allclose(np.asarray(run.weights), np.asarray(runs[0].weights), atol=atol / 50)
        jax.tree_util.tree_map(np.testing.assert_array_equal, runs[0], analysis.spectral_density(
            loss, params, a, b, num_matvecs=30, num_probes=10, key=key))  # same key, same bits
