"""RBM against brute-force enumeration (NumPy, float64): free energy, log Z, Gibbs stationarity, CD-k, AIS, errors."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.data import digits_binarized
from jaxdl.experiments.rbm import independent_pixels_log_likelihood
from jaxdl.experiments.rbm_cd_bias import exact_gradient, expected_cd_gradient, flat, monte_carlo_cd, tiny_problem
from jaxdl.models.rbm import RBM, RBMParams, ais_log_partition, cd_gradient, energy, fit_rbm, free_energy, \
    gibbs_chain, hidden_probabilities, log_likelihood_exact, log_partition_exact, visible_bias_from_data


def random_params(seed: int, nv: int, nh: int, dtype, scale: float = 1.0) -> RBMParams:
    rng = np.random.default_rng(seed)
    return RBMParams(jnp.asarray(scale * rng.standard_normal((nv, nh)), dtype),
                     jnp.asarray(0.5 * rng.standard_normal(nv), dtype), jnp.asarray(0.5 * rng.standard_normal(nh), dtype))


def all_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def brute_force(params: RBMParams):
    """log Z, log p(v) for every v, and p(h_j = 1 | v), from the joint energies of all (v, h) in float64 NumPy."""
    w, b, c = (np.asarray(x, np.float64) for x in params)
    v, h = all_states(w.shape[0]), all_states(w.shape[1])
    neg_e = (v @ b)[:, None] + (h @ c)[None] + v @ w @ h.T  # (V, H)
    log_z = np.logaddexp.reduce(neg_e.ravel())
    log_pv = np.logaddexp.reduce(neg_e, axis=1) - log_z
    p_h_given_v = np.exp(neg_e - np.logaddexp.reduce(neg_e, axis=1, keepdims=True)) @ h
    return v, log_z, log_pv, p_h_given_v, neg_e


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("shape", [(5, 7), (7, 5)])  # both enumeration branches: hidden or visible layer smaller
def test_free_energy_log_partition_against_enumeration(seed, x64, shape):
    rtol = 1e-12 if x64 else 2e-6
    with jax.enable_x64(x64):
        params = random_params(seed, *shape, jnp.float64 if x64 else jnp.float32)
        v, log_z, log_pv, p_h, neg_e = brute_force(params)
        vj = jnp.asarray(v, params.weights.dtype)
        np.testing.assert_allclose(float(log_partition_exact(params)), log_z, rtol=rtol)
        np.testing.assert_allclose(float(log_partition_exact(params, block=8)), log_z, rtol=rtol)  # several blocks
        np.testing.assert_allclose(np.asarray(jax.jit(log_likelihood_exact)(params, vj)), log_pv, rtol=rtol,
                                   atol=rtol)
        np.testing.assert_allclose(np.asarray(jax.jit(free_energy)(params, vj)),
                                   -np.logaddexp.reduce(neg_e, axis=1), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(np.asarray(jax.jit(hidden_probabilities)(params, vj)), p_h, rtol=rtol, atol=rtol)
        h = all_states(shape[1])
        pairs_v = jnp.asarray(np.repeat(v, len(h), axis=0), vj.dtype)  # every (v, h) pair, v-major like neg_e
        pairs_h = jnp.asarray(np.tile(h, (len(v), 1)), vj.dtype)
        np.testing.assert_allclose(np.asarray(jax.jit(energy)(params, pairs_v, pairs_h)), -neg_e.ravel(), rtol=rtol,
                                   atol=rtol)


def test_gibbs_chain_reaches_the_model_distribution_and_is_reproducible():
    params = random_params(3, 4, 3, jnp.float32)
    v, _, log_pv, _, _ = brute_force(params)
    v0 = jnp.zeros((20000, 4))
    key = jax.random.key(0)
    samples = gibbs_chain(params, key, v0, 30)
    codes = np.asarray(samples, np.int64) @ (2 ** np.arange(4)[::-1])  # same order as itertools.product
    empirical = np.bincount(codes, minlength=16) / codes.size
    tv = 0.5 * np.abs(empirical - np.exp(log_pv)).sum()
    assert tv < 0.03, tv  # ~0.01 expected from 20,000 samples over 16 states
    before = gibbs_chain._cache_size()
    again = gibbs_chain(params, key, v0, 30)
    assert gibbs_chain._cache_size() == before  # no retrace on a second call
    np.testing.assert_array_equal(np.asarray(again), np.asarray(samples))  # same key, same samples
    assert not np.array_equal(np.asarray(gibbs_chain(params, jax.random.key(1), v0, 30)), np.asarray(samples))


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_gradient_reference_equals_autodiff_of_exact_likelihood(seed):
    with jax.enable_x64(True):
        params, data = tiny_problem(jax.random.key(seed))
        grad = jax.jit(jax.grad(lambda p, x: jnp.mean(log_likelihood_exact(p, x))))(params, data)
    np.testing.assert_allclose(flat(grad), exact_gradient(params, data), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cd_k_gradient_approaches_exact_gradient_as_k_grows(seed):
    with jax.enable_x64(True):
        params, data = tiny_problem(jax.random.key(seed))
    exact = exact_gradient(params, data)
    ks = [1, 2, 5, 10, 30, 100, 300]
    bias = [np.linalg.norm(g - exact) / np.linalg.norm(exact) for g in expected_cd_gradient(params, data, ks)]
    assert bias[0] > 0.05  # CD-1 is visibly biased here
    assert np.all(np.diff(bias) <= 1e-12), bias
    assert bias[-1] < 1e-9, bias


@pytest.mark.parametrize("x64,k", [(False, 1), (True, 5)])  # each pair is a compilation of seconds
def test_cd_gradient_sampler_matches_exact_expectation(x64, k):
    with jax.enable_x64(x64):
        params, data = tiny_problem(jax.random.key(4))
        mean, se = monte_carlo_cd(params, jax.random.key(k), data, k, replicas=64, repeats=16)
    expected = expected_cd_gradient(params, data, [k])[0]
    chains = 64 * data.shape[0] * 16
    z = np.abs(mean - expected) / np.hypot(se, 1.0 / chains)
    assert z.max() < 5.0, z.max()


def test_pcd_continues_the_persistent_chains():
    params = random_params(0, 6, 4, jnp.float32)
    data = jnp.asarray(all_states(6)[:10], jnp.float32)
    chains = jnp.ones((25, 6))
    grad, new_chains = cd_gradient(params, jax.random.key(0), data, 1, chains)
    assert new_chains.shape == (25, 6) and not np.array_equal(np.asarray(new_chains), np.asarray(chains))
    # The negative phase averages over the chains, not the data: recompute it from the returned chains.
    ph = hidden_probabilities(params, new_chains)
    pos = data.T @ hidden_probabilities(params, data) / data.shape[0]
    np.testing.assert_allclose(np.asarray(grad.weights), np.asarray(pos - new_chains.T @ ph / 25), atol=1e-6)


@pytest.mark.parametrize("x64", [False, True])
def test_ais_matches_exact_log_partition(x64):
    with jax.enable_x64(x64):
        params = random_params(5, 20, 10, jnp.float64 if x64 else jnp.float32, scale=0.3)
        exact = float(log_partition_exact(params))
        res = ais_log_partition(params, jax.random.key(0), num_betas=1000, num_runs=100)
    assert abs(float(res.log_partition) - exact) <= 3 * float(res.std_error) + 0.01
    assert res.log_weights.shape == (100,) and 0 < float(res.std_error) < 0.05


@pytest.fixture(scope="module")
def digits():
    return digits_binarized()


def test_trained_rbm_beats_independent_pixels_and_is_reproducible(digits):
    kwargs = dict(key=jax.random.key(0), k=1, epochs=10, batch_size=10, learning_rate=0.05, decay=True)
    params, hist = fit_rbm(digits.x_train, 10, x_eval=digits.x_test, track_log_likelihood=True, **kwargs)
    ll = float(jnp.mean(log_likelihood_exact(params, digits.x_test)))
    baseline = independent_pixels_log_likelihood(digits.x_train, digits.x_test)
    assert baseline == pytest.approx(-24.63, abs=0.01)  # ANCHORS.md: -24.64 nats on the same split
    assert ll > baseline + 1.0, (ll, baseline)
    assert hist.eval_log_likelihood[-1] == pytest.approx(ll, abs=1e-4)
    assert hist.eval_log_likelihood[-1] > hist.eval_log_likelihood[0]
    again, _ = fit_rbm(digits.x_train, 10, **kwargs)
    for a, b in zip(params, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same key, same parameters, bit for bit


def test_split_matches_anchors(digits):
    # ANCHORS.md: digits binarised at > 0.5, train_test_split(random_state=0), its default test_size 0.25.
    assert digits.x_train.shape == (1347, 64) and digits.x_test.shape == (450, 64)
    assert set(np.unique(np.asarray(digits.x_train))) == {0.0, 1.0}


def test_rbm_module_and_visible_bias(digits):
    rbm = RBM(64, 10, rngs=nnx.Rngs(0), visible_bias=visible_bias_from_data(digits.x_train))
    _, params = nnx.split(rbm, nnx.Param)
    np.testing.assert_allclose(np.asarray(free_energy(params, digits.x_test[:3])),
                               np.asarray(free_energy(rbm.params(), digits.x_test[:3])))
    p = np.clip(np.asarray(digits.x_train).mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(np.asarray(rbm.params().visible_bias), np.log(p / (1 - p)), rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise():
    params = random_params(0, 6, 4, jnp.float32)
    good = jnp.zeros((5, 6))
    with pytest.raises(ValueError, match="binary 0/1"):
        fit_rbm(good.at[0, 0].set(0.5), 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="NaN"):
        fit_rbm(good.at[0, 0].set(jnp.nan), 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="non-empty"):
        fit_rbm(jnp.zeros((0, 6)), 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="k=0 is invalid"):
        fit_rbm(good, 3, key=jax.random.key(0), k=0)
    with pytest.raises(ValueError, match="k=0 is invalid"):
        cd_gradient(params, jax.random.key(0), good, 0)
    with pytest.raises(ValueError, match="binary 0/1"):
        cd_gradient(params, jax.random.key(0), good + 2.0, 1)
    with pytest.raises(ValueError, match="binary 0/1"):
        log_likelihood_exact(params, good - 1.0)
    with pytest.raises(ValueError, match="num_hidden=0 is invalid"):
        RBM(6, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_betas=1 is invalid"):
        ais_log_partition(params, jax.random.key(0), num_betas=1)
    with pytest.raises(ValueError, match="at most 20"):
        log_partition_exact(random_params(0, 30, 21, jnp.float32))
    with pytest.raises(ValueError, match="num_steps=-1 is invalid"):
        gibbs_chain(params, jax.random.key(0), good, -1)
    with pytest.raises(ValueError, match="batch_size=6 is invalid"):
        fit_rbm(good, 3, key=jax.random.key(0), batch_size=6)
