"""Dropout (sec. 7.12): masks, conventions, and the inference rules against brute-force enumeration in numpy."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models import (
    DropoutMLP,
    dropout_split,
    exact_arithmetic_mean,
    exact_geometric_mean,
    exact_means,
    monte_carlo_predict,
    sample_predictions,
    weight_scaling_predict,
)


def make(sizes, seed=0, dtype=jnp.float32, **kwargs):
    """``(net, params)`` of a :class:`DropoutMLP` with numpy-drawn parameters (structure from ``nnx.eval_shape``,
    so no eager initialiser is compiled per layer shape)."""
    net, params = dropout_split(nnx.eval_shape(lambda: DropoutMLP(sizes, rngs=nnx.Rngs(0), dtype=dtype, **kwargs)))
    rng = np.random.default_rng(seed)

    def leaf(path, spec):
        scale = 1.0 / np.sqrt(spec.shape[0]) if "kernel" in jax.tree_util.keystr(path) else 0.1
        return jnp.asarray(scale * rng.standard_normal(spec.shape), spec.dtype)

    return net, jax.tree_util.tree_map_with_path(leaf, params)


def numpy_forward(params, x, masks, include, convention, activation=lambda a: np.maximum(a, 0.0)):
    """An independent numpy forward pass of one sub-network (masks per layer input, 1-D)."""
    d = nnx.to_pure_dict(params)
    h = np.asarray(x, np.float64)
    n = len(d["layers"])
    for i in range(n):
        scale = 1.0 / include[i] if convention == "inverted" else 1.0
        h = (h * masks[i] * scale) @ np.asarray(d["layers"][i]["kernel"], np.float64) + np.asarray(
            d["layers"][i]["bias"], np.float64)
        if i < n - 1:
            h = activation(h)
    return h


def brute_force_means(net, params, x):
    """Arithmetic and renormalised geometric means by explicit itertools enumeration of every mask."""
    droppable = [(i, j) for i, (w, p) in enumerate(zip(net.widths, net.include)) if p < 1 for j in range(w)]
    arith = 0.0
    log_geo = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=len(droppable)):
        masks = [np.ones(w) for w in net.widths]
        weight = 1.0
        for (i, j), b in zip(droppable, bits):
            masks[i][j] = b
            weight *= net.include[i] if b else 1.0 - net.include[i]
        logits = numpy_forward(params, x, masks, net.include, net.convention)
        log_p = logits - logits.max(1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
        arith = arith + weight * np.exp(log_p)
        log_geo = log_geo + weight * log_p
    geo = np.exp(log_geo - log_geo.max(1, keepdims=True))
    return arith, geo / geo.sum(1, keepdims=True)


@pytest.mark.parametrize("convention", ["inverted", "weight_scaling"])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_means_match_brute_force(convention, seed):
    with jax.enable_x64(True):
        net, params = make([4, 3, 3], seed=seed, dtype=jnp.float64, include=(0.7, 0.5), convention=convention)
        x = jnp.asarray(np.random.default_rng(seed).standard_normal((5, 4)))
        arith, geo = exact_means(net, params, x, chunk=8)
        ref_a, ref_g = brute_force_means(net, params, np.asarray(x))
        np.testing.assert_allclose(np.asarray(arith), ref_a, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(geo), ref_g, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(exact_arithmetic_mean(net, params, x)), ref_a, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(exact_geometric_mean(net, params, x)), ref_g, rtol=1e-12)
    # float32 against the same float64 reference.
    net32, params32 = make([4, 3, 3], seed=seed, include=(0.7, 0.5), convention=convention)
    arith32, _ = exact_means(net32, params32, jnp.asarray(np.asarray(x), jnp.float32))
    ref32, _ = brute_force_means(net32, params32, np.asarray(x))
    np.testing.assert_allclose(np.asarray(arith32), ref32, atol=2e-6)


@pytest.mark.parametrize("include", [0.5, 0.8, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weight_scaling_equals_geometric_mean_for_softmax_regression(include, seed):
    """Sec. 7.12: with one linear layer under softmax the two are identical; float64 to ~1e-16."""
    with jax.enable_x64(True):
        net, params = make([10, 4], seed=seed, dtype=jnp.float64, include=include)
        x = jnp.asarray(np.random.default_rng(seed).standard_normal((6, 10)) * 2.0)
        ws = weight_scaling_predict(net, params, x)
        arith, geo = exact_means(net, params, x)
        assert float(jnp.max(jnp.abs(ws - geo))) < 1e-14
        assert float(jnp.max(jnp.abs(ws - arith))) > 1e-4  # the arithmetic mean is a different quantity
    net32, params32 = make([10, 4], seed=seed, include=include)
    x32 = jnp.asarray(np.asarray(x), jnp.float32)
    _, geo32 = exact_means(net32, params32, x32)
    assert float(jnp.max(jnp.abs(weight_scaling_predict(net32, params32, x32) - geo32))) < 2e-6


def test_weight_scaling_is_only_approximate_through_a_nonlinearity():
    with jax.enable_x64(True):
        net, params = make([8, 6, 3], seed=3, dtype=jnp.float64, include=(0.5, 1.0))
        x = jnp.asarray(np.random.default_rng(3).standard_normal((6, 8)) * 2.0)
        _, geo = exact_means(net, params, x)
        assert float(jnp.max(jnp.abs(weight_scaling_predict(net, params, x) - geo))) > 1e-3
        # Dropping only the hidden units is softmax regression on h: exact again.
        net_h, _ = make([8, 6, 3], seed=3, dtype=jnp.float64, include=(1.0, 0.5))
        _, geo_h = exact_means(net_h, params, x)
        assert float(jnp.max(jnp.abs(weight_scaling_predict(net_h, params, x) - geo_h))) < 1e-14


@pytest.mark.parametrize("convention", ["inverted", "weight_scaling"])
def test_conventions_equal_in_expectation(convention):
    """The expected first-layer pre-activation over all masks equals the inference pre-activation (float64)."""
    with jax.enable_x64(True):
        net, params = make([5, 2], dtype=jnp.float64, include=0.6, convention=convention)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 5)))
        expected = 0.0
        for bits in itertools.product([0.0, 1.0], repeat=5):
            weight = np.prod([0.6 if b else 0.4 for b in bits])
            expected = expected + weight * np.asarray(net(params, x, masks=[jnp.asarray(bits)[None, :]]))
        np.testing.assert_allclose(np.asarray(net(params, x)), expected, rtol=1e-13, atol=1e-14)


def test_conventions_are_the_same_model_after_rescaling():
    with jax.enable_x64(True):
        include = (0.8, 0.5)
        net_ws, p_ws = make([6, 5, 3], seed=1, dtype=jnp.float64, include=include, convention="weight_scaling")
        net_inv, _ = make([6, 5, 3], seed=1, dtype=jnp.float64, include=include, convention="inverted")
        d = nnx.to_pure_dict(p_ws)
        for i, p in enumerate(include):
            d["layers"][i]["kernel"] = d["layers"][i]["kernel"] * p
        p_inv = jax.tree_util.tree_map(lambda a: a, p_ws)
        nnx.replace_by_pure_dict(p_inv, d)
        x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 6)))
        key = jax.random.PRNGKey(3)
        np.testing.assert_allclose(np.asarray(net_ws(p_ws, x, key=key, train=True)),
                                   np.asarray(net_inv(p_inv, x, key=key, train=True)), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(net_ws(p_ws, x)), np.asarray(net_inv(p_inv, x)), rtol=1e-13)


def test_masks_fresh_per_example_with_the_inclusion_rates():
    net, params = make([50, 80, 2], activation="identity")
    assert net.include == (0.8, 0.5)
    x = jnp.ones((256, 50))
    key = jax.random.PRNGKey(0)
    train = jax.jit(lambda p, x, k: net(p, x, key=k, train=True))
    out = train(params, x, key)
    assert float(jnp.min(jnp.std(out, axis=0))) > 0  # identical inputs, different masks
    np.testing.assert_array_equal(np.asarray(out), np.asarray(train(params, x, key)))  # same key, same masks
    assert not np.array_equal(np.asarray(out), np.asarray(train(params, x, jax.random.PRNGKey(1))))
    # Kept fraction of the inputs: a linear probe with unit first-layer weights and no other layer effects sees
    # sum_j mu_j / 0.8 per example; its mean over 256 x 50 Bernoulli(0.8) draws is 50 within 4 standard errors.
    d = nnx.to_pure_dict(params)
    d["layers"][0]["kernel"] = jnp.ones((50, 80)) / 80.0
    d["layers"][0]["bias"] = jnp.zeros(80)
    d["layers"][1]["kernel"] = jnp.ones((80, 2)) * 0.0 + jnp.eye(80, 2)
    d["layers"][1]["bias"] = jnp.zeros(2)
    probe = jax.tree_util.tree_map(lambda a: a, params)
    nnx.replace_by_pure_dict(probe, d)
    # Output 0 is (1/0.5) mu_hidden_0 * (sum_j mu_j / 0.8) / 80: average over examples of hidden-0 survivors.
    kept = train(probe, x, key)[:, 0] * 0.5 * 80.0 * 0.8  # = mu_hidden_0 * sum_j mu_j
    alive = kept[kept > 0]
    p = 0.8
    assert abs(float(jnp.mean(alive)) / 50 - p) < 4 * np.sqrt(p * (1 - p) / (50 * alive.size))
    assert abs(alive.size / 256 - 0.5) < 4 * np.sqrt(0.25 / 256)


def test_monte_carlo_converges_like_one_over_sqrt_k():
    with jax.enable_x64(True):
        net, params = make([6, 6, 3], seed=2, dtype=jnp.float64, include=(0.8, 0.5))
        x = jnp.asarray(np.random.default_rng(2).standard_normal((8, 6)) * 2.0)
        arith, _ = exact_means(net, params, x)
        samples = sample_predictions(net, params, x, key=jax.random.PRNGKey(0), num_samples=2048)
        var = np.asarray(jnp.mean(jnp.var(samples, axis=0)))
        # Mean over independent blocks of K samples: E|MC_K - AM|^2 = var / K.
        for k in (1, 4, 16, 64):
            blocks = samples.reshape(2048 // k, k, *samples.shape[1:]).mean(1)
            mse = float(jnp.mean((blocks - arith) ** 2))
            assert 0.75 < mse / (var / k) < 1.3, (k, mse, var / k)
        mc = monte_carlo_predict(net, params, x, key=jax.random.PRNGKey(1), num_samples=1000)
        assert float(jnp.max(jnp.abs(mc - arith))) < 5 * np.sqrt(0.25 / 1000)
        again = monte_carlo_predict(net, params, x, key=jax.random.PRNGKey(1), num_samples=1000)
        np.testing.assert_array_equal(np.asarray(mc), np.asarray(again))


def test_bad_inputs():
    with pytest.raises(ValueError, match="dropout probability in \\[0, 1\\)"):
        DropoutMLP([4, 3, 2], drop=(0.2, 1.0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dropout probability in \\[0, 1\\)"):
        DropoutMLP([4, 3, 2], drop=-0.1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="inclusion probability in \\(0, 1\\]"):
        DropoutMLP([4, 3, 2], include=(0.0, 0.5), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="inclusion probability"):
        DropoutMLP([4, 3, 2], include=1.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected 2, one per layer input"):
        DropoutMLP([4, 3, 2], include=(0.5, 0.5, 0.5), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not both"):
        DropoutMLP([4, 3, 2], include=0.5, drop=0.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="convention"):
        DropoutMLP([4, 3, 2], convention="scaled", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="sizes"):
        DropoutMLP([4], rngs=nnx.Rngs(0))
    net, params = make([4, 3, 2])
    with pytest.raises(ValueError, match="expected \\(examples, 4\\)"):
        weight_scaling_predict(net, params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        weight_scaling_predict(net, params, jnp.ones((2, 4)).at[0, 1].set(jnp.nan))
    with pytest.raises(ValueError, match="empty"):
        monte_carlo_predict(net, params, jnp.ones((0, 4)), key=jax.random.PRNGKey(0), num_samples=2)
    with pytest.raises(ValueError, match="num_samples"):
        monte_carlo_predict(net, params, jnp.ones((2, 4)), key=jax.random.PRNGKey(0), num_samples=0)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        net(params, jnp.ones((2, 4)), train=True)
    with pytest.raises(ValueError, match="NaN"):
        net(params, jnp.full((2, 4), jnp.inf), key=jax.random.PRNGKey(0), train=True)
    with pytest.raises(ValueError, match="power of two"):
        exact_means(net, params, jnp.ones((2, 4)), chunk=6)
    big, big_params = make([20, 10, 2])
    with pytest.raises(ValueError, match="exact enumeration is limited"):
        exact_arithmetic_mean(big, big_params, jnp.ones((2, 20)))
