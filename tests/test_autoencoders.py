"""Autoencoders (chapter 14): the linear autoencoder against scikit-learn's PCA (ANCHORS.md), principal angles
against scipy, the sparsity penalties against their formulas, corruption and tied weights, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.experiments import autoencoder_pca
from jaxdl.models import Autoencoder, autoencoder_split, principal_angle_cosines, reconstruction_error, sparsity_penalty


def make(seed=0, **kwargs):
    """``(fns, params)`` of an :class:`Autoencoder` with numpy-drawn parameters (structure from ``nnx.eval_shape``:
    no eager initialiser compiled per layer shape)."""
    fns, params = autoencoder_split(nnx.eval_shape(lambda: Autoencoder(rngs=nnx.Rngs(0), **kwargs)))
    rng = np.random.default_rng(seed)

    def leaf(path, spec):
        scale = 1.0 / np.sqrt(spec.shape[0]) if "kernel" in jax.tree_util.keystr(path) else 0.1
        return jnp.asarray(scale * rng.standard_normal(spec.shape), spec.dtype)

    return fns, jax.tree_util.tree_map_with_path(leaf, params)


def test_linear_autoencoder_learns_the_pca_subspace():
    """ANCHORS.md: k = 10 on all digits / 16, MSE within 0.1% of PCA's 0.01920, principal-angle cosines > 0.999."""
    from jaxdl.data import digits_full

    x, _ = digits_full()
    components, (pca_mse,) = autoencoder_pca.pca_reference(np.asarray(x, np.float64), 10)
    assert abs(pca_mse - 0.01920) < 5e-6
    fns, params, _ = autoencoder_pca.train_linear(x, 10, steps=1000, seed=0)
    mse = float(reconstruction_error(x, fns.apply(params, x)))
    assert abs(mse / pca_mse - 1.0) < 1e-3
    decoder = nnx.to_pure_dict(params)["decoder"][0]["kernel"]
    assert float(jnp.min(principal_angle_cosines(decoder.T, jnp.asarray(components, jnp.float32)))) > 0.999


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_principal_angles_match_scipy(seed):
    from scipy.linalg import subspace_angles

    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((12, 4)), rng.standard_normal((12, 4))
    b[:, 0] = a[:, 0] + 1e-3 * b[:, 0]  # one nearly shared direction
    ref = np.sort(np.cos(subspace_angles(a, b)))[::-1]
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(principal_angle_cosines(jnp.asarray(a), jnp.asarray(b))), ref,
                                   atol=1e-12)
    np.testing.assert_allclose(np.asarray(principal_angle_cosines(jnp.asarray(a, jnp.float32),
                                                                  jnp.asarray(b, jnp.float32))), ref, atol=1e-5)
    # Invariant to the basis chosen for each span.
    mix = rng.standard_normal((4, 4))
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(principal_angle_cosines(jnp.asarray(a @ mix), jnp.asarray(b))), ref,
                                   atol=1e-10)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sparsity_penalties_match_their_formulas(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        rng = np.random.default_rng(0)
        h = rng.uniform(0.01, 0.99, (20, 6))
        rho = h.mean(0)
        t = 0.05
        kl = np.sum(t * np.log(t / rho) + (1 - t) * np.log((1 - t) / (1 - rho)))
        hj = jnp.asarray(h, dtype)
        rtol = 1e-12 if dtype == jnp.float64 else 1e-5
        np.testing.assert_allclose(float(sparsity_penalty(hj, "kl", target=t)), kl, rtol=rtol)
        np.testing.assert_allclose(float(jax.jit(lambda z: sparsity_penalty(z, "l1"))(hj)),
                                   np.abs(h).sum(1).mean(), rtol=rtol)
        assert float(sparsity_penalty(jnp.full((4, 3), 0.2, dtype), "kl", target=0.2)) == pytest.approx(0, abs=1e-6)


def test_tied_decoder_uses_the_transposed_encoder():
    fns, params = make(num_inputs=5, code_size=3, tied=True, encoder_activation="sigmoid")
    d = nnx.to_pure_dict(params)
    assert set(d) == {"encoder", "decoder_bias"}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)), jnp.float32)
    w, b = d["encoder"][0]["kernel"], d["encoder"][0]["bias"]
    h = jax.nn.sigmoid(x @ w + b)
    np.testing.assert_allclose(np.asarray(fns.apply(params, x)), np.asarray(h @ w.T + d["decoder_bias"]),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fns.encode(params, x[0])), np.asarray(h[0]), rtol=1e-6)


def test_corruption_statistics_and_determinism():
    x = jnp.ones((400, 50))
    fns, params = make(num_inputs=50, code_size=10, corruption="masking", noise_level=0.3)
    key = jax.random.PRNGKey(0)
    corrupted = jax.jit(fns.corrupt)(params, x, key)
    kept = float(jnp.mean(corrupted))
    assert abs(kept - 0.7) < 4 * np.sqrt(0.21 / x.size)
    np.testing.assert_array_equal(np.asarray(fns.apply(params, x, key=key, train=True)),
                                  np.asarray(fns.decode(params, fns.encode(params, corrupted))))
    assert not np.array_equal(np.asarray(fns.apply(params, x, key=key, train=True)), np.asarray(fns.apply(params, x)))
    g_fns, g_params = make(num_inputs=50, code_size=10, corruption="gaussian", noise_level=0.5)
    noise = jax.jit(g_fns.corrupt)(g_params, x, key) - x
    assert abs(float(jnp.std(noise)) - 0.5) < 0.02 and abs(float(jnp.mean(noise))) < 0.02


def test_bad_inputs():
    with pytest.raises(ValueError, match="not smaller than num_inputs=64; an undercomplete"):
        Autoencoder(64, 80, undercomplete=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="undercomplete"):
        Autoencoder(64, 64, undercomplete=True, rngs=nnx.Rngs(0))
    nnx.eval_shape(lambda: Autoencoder(64, 80, rngs=nnx.Rngs(0)))  # overcomplete is fine unless undercomplete
    with pytest.raises(ValueError, match="code_size"):
        Autoencoder(64, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="encoder_activation"):
        Autoencoder(8, 2, encoder_activation="softplus", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="corruption"):
        Autoencoder(8, 2, corruption="salt", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="probability in \\[0, 1\\)"):
        Autoencoder(8, 2, corruption="masking", noise_level=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=">= 0"):
        Autoencoder(8, 2, corruption="gaussian", noise_level=-0.1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="finite"):
        Autoencoder(8, 2, corruption="gaussian", noise_level=float("nan"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="single-layer"):
        Autoencoder(8, 2, hidden=(4,), tied=True, rngs=nnx.Rngs(0))
    fns, params = make(num_inputs=8, code_size=2, corruption="gaussian", noise_level=0.1)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fns.apply(params, jnp.ones((3, 8)), train=True)
    with pytest.raises(ValueError, match="last axis of 8"):
        fns.apply(params, jnp.ones((3, 7)))
    with pytest.raises(ValueError, match="NaN"):
        fns.apply(params, jnp.ones((3, 8)).at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="reconstruction has shape"):
        reconstruction_error(jnp.ones((3, 8)), jnp.ones((3, 7)))
    with pytest.raises(ValueError, match="target"):
        sparsity_penalty(jnp.ones((3, 2)) * 0.5, "kl", target=0.0)
    with pytest.raises(ValueError, match="kind"):
        sparsity_penalty(jnp.ones((3, 2)), "l2")
    with pytest.raises(ValueError, match="equal \\(d, k\\)"):
        principal_angle_cosines(jnp.ones((5, 2)), jnp.ones((5, 3)))
    from jaxdl.models.autoencoder import check_data

    with pytest.raises(ValueError, match="NaN"):
        check_data(jnp.ones((3, 8)).at[1, 1].set(jnp.nan), 8)
    with pytest.raises(ValueError, match="empty"):
        check_data(jnp.ones((0, 8)), 8)


def test_untied_contractive_autoencoder_shrinks_its_encoder_and_tied_does_not():
    """Sec. 14.7: with untied weights the penalty falls while the decoder grows to compensate; tied weights block it."""
    from jaxdl.data import digits_full
    from jaxdl.experiments import contractive_autoencoder as cae

    x = digits_full()[0][:300]
    _, _, untied = cae.train_contractive(x, tied=False, penalty_weight=0.01, steps=300, seed=0)
    _, _, tied = cae.train_contractive(x, tied=True, penalty_weight=0.01, steps=300, seed=0)
    # Columns: reconstruction MSE, penalty, encoder norm, decoder norm; row 0 is before training.
    assert untied[-1, 3] > 1.5 * untied[0, 3] and untied[-1, 2] < untied[0, 2]
    assert tied[-1, 2] > tied[0, 2]
    assert untied[-1, 1] < 0.8 * tied[-1, 1]
