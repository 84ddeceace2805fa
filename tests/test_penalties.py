"""analysis.penalties: the contractive penalty exact (jax.jacfwd) against dense reverse-mode Jacobians and finite
differences, the sigmoid closed form, and the random-projection estimate's mean and variance."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis


def mlp_encoder(params, x):
    """A two-layer tanh/sigmoid encoder on one example."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jax.nn.sigmoid(h @ params["w2"] + params["b2"])


def make_params(seed, d=7, hidden=5, k=4, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    shapes = {"w1": (d, hidden), "b1": (hidden,), "w2": (hidden, k), "b2": (k,)}
    return {n: jnp.asarray(rng.standard_normal(s) * 0.8, dtype) for n, s in shapes.items()}


def dense_reference(encoder, params, x):
    """Per-example ||J||_F^2 from reverse-mode jax.jacrev (a different autodiff path from jacfwd), in numpy."""
    jac = jax.jit(jax.vmap(jax.jacrev(encoder, argnums=1), in_axes=(None, 0)))(params, x)
    return np.sum(np.asarray(jac, np.float64) ** 2, axis=(1, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_penalty_matches_jacrev_and_finite_differences(seed):
    with jax.enable_x64(True):
        params = make_params(seed, dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(seed + 10).standard_normal((6, 7)))
        values = np.asarray(analysis.contractive_penalty(mlp_encoder, params, x, reduction="none"))
        np.testing.assert_allclose(values, dense_reference(mlp_encoder, params, x), rtol=1e-12)
        # Central finite differences of the encoder.
        eps = 1e-6
        shifts = eps * jnp.eye(x.shape[1])  # (d, d): one input coordinate at a time
        central = jax.jit(jax.vmap(lambda e: (jax.vmap(mlp_encoder, (None, 0))(params, x + e)
                                              - jax.vmap(mlp_encoder, (None, 0))(params, x - e)) / (2 * eps)))
        fd = np.sum(np.asarray(central(shifts)) ** 2, axis=(0, 2))
        np.testing.assert_allclose(values, fd, rtol=1e-7)
    params32 = make_params(seed)
    x32 = jnp.asarray(np.random.default_rng(seed + 10).standard_normal((6, 7)), jnp.float32)
    np.testing.assert_allclose(np.asarray(analysis.contractive_penalty(mlp_encoder, params32, x32, reduction="none")),
                               dense_reference(mlp_encoder, params32, x32), rtol=1e-5)


def test_reductions_and_no_retrace():
    params = make_params(0)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 7)), jnp.float32)
    per = analysis.contractive_penalty(mlp_encoder, params, x, reduction="none")
    np.testing.assert_allclose(float(analysis.contractive_penalty(mlp_encoder, params, x)), float(per.mean()),
                               rtol=1e-6)
    np.testing.assert_allclose(float(analysis.contractive_penalty(mlp_encoder, params, x, reduction="sum")),
                               float(per.sum()), rtol=1e-6)
    from analysis.penalties import _exact

    before = _exact._cache_size()
    analysis.contractive_penalty(mlp_encoder, make_params(1), x + 1.0)
    assert _exact._cache_size() == before  # new values, same shapes: no recompilation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigmoid_closed_form_equals_exact(seed):
    rng = np.random.default_rng(seed)
    for dtype, rtol in ((jnp.float32, 2e-6), (jnp.float64, 1e-13)):
        with jax.enable_x64(dtype == jnp.float64):
            w = jnp.asarray(rng.standard_normal((9, 4)), dtype)
            b = jnp.asarray(rng.standard_normal(4), dtype)
            x = jnp.asarray(rng.standard_normal((8, 9)), dtype)

            def encoder(p, xi):
                return jax.nn.sigmoid(xi @ p["w"] + p["b"])

            exact = analysis.contractive_penalty(encoder, {"w": w, "b": b}, x, reduction="none")
            closed = analysis.sigmoid_contractive_penalty(w, b, x, reduction="none")
            assert closed.dtype == dtype
            np.testing.assert_allclose(np.asarray(closed), np.asarray(exact), rtol=rtol)


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_estimate_is_unbiased_with_the_predicted_variance(probe):
    with jax.enable_x64(True):
        params = make_params(3, dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(3).standard_normal((4, 7)))
        exact = np.asarray(analysis.contractive_penalty(mlp_encoder, params, x, reduction="none"))
        est = analysis.contractive_penalty_estimate(mlp_encoder, params, x, key=jax.random.PRNGKey(5),
                                                    num_probes=4000, probe=probe, reduction="none")
        z = (np.asarray(est.estimate) - exact) / np.asarray(est.standard_error)
        assert np.all(np.abs(z) < 4.5), z
        # The sample variance of one probe against the exact formula (2||J^T J||_F^2, minus the diagonal for signs).
        true_var = np.asarray(analysis.projection_variance(mlp_encoder, params, x, probe=probe))
        np.testing.assert_allclose(np.asarray(est.probe_variance), true_var, rtol=0.15)
        # Independent reference for the variance: Monte Carlo over explicit dense Jacobians.
        jac = np.stack([np.asarray(jax.jacrev(mlp_encoder, argnums=1)(params, xi)) for xi in x])
        rng = np.random.default_rng(0)
        v = rng.standard_normal((20000, 7)) if probe == "gaussian" else rng.choice([-1.0, 1.0], (20000, 7))
        mc_var = np.array([np.var(np.sum((v @ j.T) ** 2, axis=1)) for j in jac])
        np.testing.assert_allclose(true_var, mc_var, rtol=0.1)


def test_estimate_standard_error_and_determinism():
    """Replicas of one example get independent probes: their spread matches the exact per-probe variance / m, the
    reported sample variance is unbiased for it, and the batch mean's standard error combines the per-example ones."""
    params = make_params(4)
    x = jnp.tile(jnp.asarray(np.random.default_rng(4).standard_normal((1, 7)), jnp.float32), (200, 1))
    key = jax.random.PRNGKey(1)
    per = analysis.contractive_penalty_estimate(mlp_encoder, params, x, key=key, num_probes=8, reduction="none")
    again = analysis.contractive_penalty_estimate(mlp_encoder, params, x, key=key, num_probes=8, reduction="none")
    np.testing.assert_array_equal(np.asarray(per.estimate), np.asarray(again.estimate))  # same key, same estimate
    exact_var = float(analysis.projection_variance(mlp_encoder, params, x[:1])[0])
    assert 0.8 < float(jnp.std(per.estimate)) / np.sqrt(exact_var / 8) < 1.25
    assert 0.75 < float(jnp.mean(per.probe_variance)) / exact_var < 1.3
    mean = analysis.contractive_penalty_estimate(mlp_encoder, params, x, key=key, num_probes=8)
    np.testing.assert_allclose(float(mean.estimate), float(per.estimate.mean()), rtol=1e-5)
    np.testing.assert_allclose(float(mean.standard_error), float(jnp.sqrt(jnp.sum(per.standard_error**2)) / 200),
                               rtol=1e-4)


def test_linear_encoder_rademacher_is_exact():
    w = jnp.asarray(np.diag([1.0, 2.0, 3.0]), jnp.float32)
    est = analysis.contractive_penalty_estimate(lambda p, xi: xi @ p, w, jnp.ones((3, 3)), probe="rademacher",
                                                num_probes=4)
    assert float(est.estimate) == pytest.approx(14.0) and float(est.standard_error) == 0.0


def test_bad_inputs():
    params = make_params(0)
    x = jnp.ones((3, 7))
    with pytest.raises(ValueError, match="^x contains 1 NaN"):
        analysis.contractive_penalty(mlp_encoder, params, x.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="empty"):
        analysis.contractive_penalty(mlp_encoder, params, jnp.ones((0, 7)))
    with pytest.raises(ValueError, match="expected \\(examples, features\\)"):
        analysis.contractive_penalty(mlp_encoder, params, jnp.ones(7))
    with pytest.raises(ValueError, match="code vector"):
        analysis.contractive_penalty(lambda p, xi: jnp.sum(xi), params, x)
    with pytest.raises(ValueError, match="reduction"):
        analysis.contractive_penalty(mlp_encoder, params, x, reduction="max")
    with pytest.raises(ValueError, match="params leaf 'b1' contains 1 NaN"):
        analysis.contractive_penalty(mlp_encoder, {**params, "b1": params["b1"].at[0].set(jnp.inf)}, x)
    with pytest.raises(TypeError, match="callable"):
        analysis.contractive_penalty("encoder", params, x)
    with pytest.raises(ValueError, match="num_probes"):
        analysis.contractive_penalty_estimate(mlp_encoder, params, x, num_probes=1)
    with pytest.raises(ValueError, match="probe"):
        analysis.contractive_penalty_estimate(mlp_encoder, params, x, probe="uniform")
    with pytest.raises(ValueError, match="weights has shape"):
        analysis.sigmoid_contractive_penalty(jnp.ones((6, 4)), jnp.zeros(4), x)
    with pytest.raises(ValueError, match="bias has shape"):
        analysis.sigmoid_contractive_penalty(jnp.ones((7, 4)), jnp.zeros(3), x)
    with pytest.raises(ValueError, match="^bias contains 1 NaN"):
        analysis.sigmoid_contractive_penalty(jnp.ones((7, 4)), jnp.zeros(4).at[2].set(jnp.nan), x)


def test_analysis_does_not_import_jaxdl():
    code = "import sys, analysis, analysis.penalties; assert not [m for m in sys.modules if m.startswith('jaxdl')]"
    subprocess.run([sys.executable, "-c", code], check=True)
