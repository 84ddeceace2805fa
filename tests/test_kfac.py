"""K-FAC factors against the exact GGN block of each layer (``analysis.dense_hessian(curvature="ggn",
block=layer)``): exact for one example (dense and convolutional layers) and for the last layer under ``"mse"`` at any
batch size; eigenvalues compared at float64 1e-9 relative to the largest, float32 2e-4."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import analysis
from jaxdl.models import MLP, split


def _spectra(loss, params, x, y, layer, factors):
    exact = np.sort(np.linalg.eigvalsh(np.asarray(
        analysis.dense_hessian(loss, params, x, y, curvature="ggn", block=layer), np.float64)))
    return exact, np.asarray(factors[layer].eigenvalues(), np.float64)


@pytest.mark.parametrize("dtype, rtol, seed", [(jnp.float32, 2e-4, 0), (jnp.float64, 1e-9, 1)])
def test_kfac_is_exact_for_one_example(dtype, rtol, seed):
    with jax.enable_x64(dtype == jnp.float64):
        apply, params = split(MLP([4, 5, 3], rngs=nnx.Rngs(seed), dtype=dtype))
        x = jax.random.normal(jax.random.PRNGKey(seed), (1, 4), dtype)
        y = jnp.array([seed % 3])
        loss = analysis.supervised_loss(apply, "softmax_cross_entropy")
        factors = analysis.kfac_factors(loss, params, x, y)
        assert list(factors) == ["layers/0", "layers/1"]
        assert factors["layers/1"].bias is not None and factors["layers/1"].A.shape == (6, 6)
        for layer in factors:
            exact, kfac = _spectra(loss, params, x, y, layer, factors)
            np.testing.assert_allclose(kfac, exact, rtol=0, atol=rtol * exact[-1])


def test_kfac_is_exact_for_the_last_layer_under_mse_and_approximate_before_it():
    with jax.enable_x64(True):
        apply, params = split(MLP([4, 6, 3], rngs=nnx.Rngs(2), dtype=jnp.float64))
        k = jax.random.split(jax.random.PRNGKey(2), 2)
        x, y = jax.random.normal(k[0], (16, 4), jnp.float64), jax.random.normal(k[1], (16, 3), jnp.float64)
        loss = analysis.supervised_loss(apply, "mse")
        factors = analysis.kfac_factors(loss, params, x, y)
        exact, kfac = _spectra(loss, params, x, y, "layers/1", factors)
        np.testing.assert_allclose(kfac, exact, rtol=0, atol=1e-9 * exact[-1])
        exact0, kfac0 = _spectra(loss, params, x, y, "layers/0", factors)
        assert np.max(np.abs(kfac0 - exact0)) > 1e-6 * exact0[-1]  # an approximation there, not the block itself


def test_kfac_of_a_convolution_is_exact_for_one_example_at_one_position():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.PRNGKey(3), 4)
        params = {"conv": {"kernel": jax.random.normal(k[0], (3, 3, 2, 4), jnp.float64), "bias": jnp.zeros(4)},
                  "head": {"kernel": jax.random.normal(k[1], (4, 3), jnp.float64) * 0.5}}

        def predict(p, x):  # a 3x3 VALID convolution of a 3x3 image: one output position
            h = jax.lax.conv_general_dilated(x, p["conv"]["kernel"], (1, 1), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["conv"]["bias"]
            return jnp.tanh(h).reshape(h.shape[0], -1) @ p["head"]["kernel"]

        x, y = jax.random.normal(k[2], (1, 3, 3, 2), jnp.float64), jnp.array([2])
        loss = analysis.supervised_loss(predict, "softmax_cross_entropy")
        factors = analysis.kfac_factors(loss, params, x, y)
        assert factors["conv"].kind == "conv" and factors["conv"].A.shape == (19, 19)
        for layer in ("conv", "head"):
            exact, kfac = _spectra(loss, params, x, y, layer, factors)
            np.testing.assert_allclose(kfac, exact, rtol=0, atol=1e-9 * exact[-1])


def test_kfac_of_a_strided_convolution_runs_on_a_batch():
    k = jax.random.split(jax.random.PRNGKey(4), 3)
    params = {"conv": {"kernel": jax.random.normal(k[0], (3, 3, 1, 2))}, "head": {"kernel": jnp.ones((8, 3))}}

    def predict(p, x):
        h = jax.lax.conv_general_dilated(x, p["conv"]["kernel"], (2, 2), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(h).reshape(h.shape[0], -1) @ p["head"]["kernel"]

    x, y = jax.random.normal(k[1], (5, 4, 4, 1)), jnp.arange(5) % 3
    factors = analysis.kfac_factors(analysis.supervised_loss(predict, "softmax_cross_entropy"), params, x, y)
    A, B = factors["conv"].A, factors["conv"].B
    assert A.shape == (9, 9) and B.shape == (2, 2) and factors["conv"].bias is None
    assert bool(jnp.all(jnp.linalg.eigvalsh(A) > -1e-5)) and bool(jnp.all(jnp.linalg.eigvalsh(B) > -1e-6))


def test_bad_inputs():
    with pytest.raises(TypeError, match="supervised_loss"):
        analysis.kfac_factors(lambda p, x, y: 0.0, {"w": jnp.ones(2)}, jnp.ones((1, 2)), jnp.zeros(1))
    loss = analysis.supervised_loss(lambda p, x: jnp.tanh(x * p["w"]), "mse")
    with pytest.raises(ValueError, match="no dense"):
        analysis.kfac_factors(loss, {"w": jnp.ones(2)}, jnp.ones((3, 2)), jnp.zeros((3, 2)))
