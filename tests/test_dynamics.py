"""analysis.dynamics against dense references: numpy eigenvalues and SVDs, explicit Jacobian products, closed-form
Elman Jacobians, finite differences; float32 and float64, several seeds, under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import (
    contraction_bound,
    jacobian_products,
    singular_values,
    spectral_radius,
    state_jacobians,
    trajectory_distance,
)


def elman(params, h, x):
    w, u, a = params
    return (1.0 - a) * h + a * jnp.tanh(w @ h + u @ x)


def _problem(seed, n=6, d=2, steps=7, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    params = (jnp.asarray(rng.normal(size=(n, n)) / np.sqrt(n), dtype), jnp.asarray(rng.normal(size=(n, d)), dtype),
              jnp.asarray(0.6, dtype))
    return params, jnp.asarray(rng.normal(size=n), dtype), jnp.asarray(rng.normal(size=(steps, d)), dtype)


@pytest.mark.parametrize("x64", [False, True])
def test_state_jacobians_closed_form_and_finite_differences(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        for seed in range(3):
            params, h0, xs = _problem(seed, dtype=dtype)
            states, jacs = state_jacobians(elman, params, h0, xs)
            w, u, a = (np.asarray(p, np.float64) for p in params)
            h = np.asarray(h0, np.float64)
            for t in range(xs.shape[0]):
                pre = w @ h + u @ np.asarray(xs[t], np.float64)
                closed = (1 - a) * np.eye(h.size) + a * (1 - np.tanh(pre) ** 2)[:, None] * w
                h = (1 - a) * h + a * np.tanh(pre)
                np.testing.assert_allclose(np.asarray(jacs[t]), closed, rtol=1e-12 if x64 else 2e-5, atol=1e-6)
                np.testing.assert_allclose(np.asarray(states[t]), h, rtol=1e-12 if x64 else 1e-5, atol=1e-6)
        if x64:  # central differences on the last step
            eps = 1e-6
            fd = np.stack([(np.asarray(elman(params, states[-2] + eps * e, xs[-1]))
                            - np.asarray(elman(params, states[-2] - eps * e, xs[-1]))) / (2 * eps)
                           for e in np.eye(h0.size)], axis=1)
            np.testing.assert_allclose(np.asarray(jacs[-1]), fd, atol=1e-8)


def _random_matrix(seed, n, dtype):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.2), dtype


@pytest.mark.parametrize("x64", [False, True])
def test_spectral_radius_dense_and_arnoldi_agree_with_numpy(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        for seed in range(2):
            a, _ = _random_matrix(seed, 100, dtype)
            ref = np.max(np.abs(np.linalg.eigvals(a)))
            dense = spectral_radius(jnp.asarray(a, dtype), method="dense")
            arnoldi = spectral_radius(jnp.asarray(a, dtype), method="arnoldi")
            assert dense.method == "dense" and arnoldi.method == "arnoldi"
            assert abs(float(dense.value) - ref) / ref <= (1e-12 if x64 else 1e-5)
            assert bool(arnoldi.converged)
            # The bar is 1e-4 relative between the two methods; float64 does far better.
            assert abs(float(arnoldi.value) - float(dense.value)) / ref <= (1e-9 if x64 else 1e-4)


def test_spectral_radius_matvec_form_complex_pair_and_auto(monkeypatch):
    import analysis.dynamics as dyn

    with jax.enable_x64(True):
        # A rotation-scaling block: the top eigenvalues are the complex pair 3 +- 4i (modulus 5).
        block = jnp.array([[3.0, -4.0], [4.0, 3.0]])
        rest = jnp.diag(jnp.linspace(-2.0, 2.0, 58))
        a = jax.scipy.linalg.block_diag(block, rest)
        q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (60, 60)))
        a = q @ a @ q.T
        assert spectral_radius(a).method == "dense"  # small: all eigenvalues
        monkeypatch.setattr(dyn, "DENSE_LIMIT", 50)
        auto = spectral_radius(a, num_matvecs=20)
        assert auto.method == "arnoldi"
        # The same compiled Arnoldi through the matvec interface (A v with A passed as an argument).
        r = spectral_radius(dyn._dense_matvec, a, size=60, method="arnoldi", num_matvecs=20)
        for res in (auto, r):
            assert abs(float(res.value) - 5.0) < 1e-9 and abs(abs(complex(res.eigenvalue).imag) - 4.0) < 1e-8
            assert float(res.residual) <= 1e-10 * 5.0


def test_singular_values_and_products_match_numpy():
    rng = np.random.default_rng(3)
    jacs = rng.normal(size=(9, 5, 5)) * 0.7
    np.testing.assert_allclose(np.asarray(singular_values(jnp.asarray(jacs, jnp.float32))),
                               np.linalg.svd(jacs, compute_uv=False), rtol=2e-5)
    with jax.enable_x64(True):
        prods = jacobian_products(jnp.asarray(jacs))
        p = np.eye(5)
        for k in range(1, 10):
            p = p @ jacs[-k]  # dh_T/dh_{T-k} = J_T ... J_{T-k+1}
            s = np.linalg.svd(p, compute_uv=False)
            assert abs(float(prods.spectral_norm[k - 1]) - s[0]) <= 1e-12 * s[0]
            assert abs(float(prods.smallest_singular_value[k - 1]) - s[-1]) <= 1e-10 * s[0]
            assert abs(float(prods.frobenius_norm[k - 1]) - np.linalg.norm(p)) <= 1e-12 * np.linalg.norm(p)
            assert abs(float(prods.log_spectral_norm[k - 1]) - np.log(s[0])) <= 1e-12
        np.testing.assert_array_equal(np.asarray(prods.distance), np.arange(1, 10))


@pytest.mark.parametrize("factor", [0.5, 3.0])
def test_products_log_norm_survives_float32_underflow_and_overflow(factor):
    """0.5^200 underflows and 3^200 overflows float32; the log-norm of the product is still exact to rounding."""
    rot = np.array([[0.6, -0.8], [0.8, 0.6]])  # orthogonal: ||(factor R)^k|| = factor^k
    prods = jacobian_products(jnp.asarray(np.stack([factor * rot] * 200), jnp.float32))
    expected = np.arange(1, 201) * np.log(factor)
    np.testing.assert_allclose(np.asarray(prods.log_spectral_norm), expected, rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(prods.log_spectral_norm)))
    assert (float(prods.spectral_norm[-1]) == 0.0) if factor < 1 else np.isinf(float(prods.spectral_norm[-1]))


@pytest.mark.parametrize("radius", [0.9, 1.0, 1.1])
def test_linear_perturbation_scales_as_lambda_power(radius):
    """h_t = W h_{t-1}: a perturbation delta * v_1 along the top eigenvector has norm delta |lambda|^t exactly."""
    with jax.enable_x64(True):
        n, steps, delta = 12, 80, 1e-3
        rng = np.random.default_rng(int(radius * 10))
        s = np.eye(n) + 0.3 * rng.normal(size=(n, n)) / np.sqrt(n)
        lam = np.concatenate([[radius], radius * rng.uniform(-0.6, 0.6, n - 1)])
        w = jnp.asarray(s @ np.diag(lam) @ np.linalg.inv(s))
        v = jnp.asarray(s[:, 0] / np.linalg.norm(s[:, 0]))
        h0 = jnp.asarray(rng.normal(size=n))
        dist = np.asarray(trajectory_distance(lambda m, h, x: m @ h + x, w, h0, h0 + delta * v, jnp.zeros((steps, n))))
        np.testing.assert_allclose(dist, delta * radius ** np.arange(1, steps + 1), rtol=1e-10)


@pytest.mark.parametrize("leak", [1.0, 0.4])
def test_contraction_bound_holds_for_every_step(leak):
    with jax.enable_x64(True):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            w = rng.normal(size=(20, 20))
            w = jnp.asarray(0.9 * w / np.linalg.svd(w, compute_uv=False)[0])
            bound = contraction_bound(w, leak)
            assert abs(float(bound.largest_singular_value) - 0.9) < 1e-12
            assert abs(float(bound.lipschitz) - ((1 - leak) + leak * 0.9)) < 1e-12
            params = (w, jnp.asarray(rng.normal(size=(20, 1))), jnp.asarray(leak))
            h_a, h_b = jnp.asarray(rng.uniform(-1, 1, (2, 20)))
            xs = jnp.asarray(rng.uniform(-1, 1, (30, 1)))
            d = np.concatenate([[float(jnp.linalg.norm(h_a - h_b))],
                                np.asarray(trajectory_distance(elman, params, h_a, h_b, xs))])
            assert np.all(d[1:] <= float(bound.lipschitz) * d[:-1] * (1 + 1e-12))


def test_jit_caches_and_same_inputs_same_bits():
    params, h0, xs = _problem(0)
    a = state_jacobians(elman, params, h0, xs)
    b = state_jacobians(elman, params, h0, xs)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    from analysis.dynamics import _state_jacobians

    before = _state_jacobians._cache_size()
    state_jacobians(elman, params, h0 + 1.0, xs)
    assert _state_jacobians._cache_size() == before  # new values, same shapes: no retrace


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="square"):
        spectral_radius(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="size=n"):
        spectral_radius(lambda v: v)
    with pytest.raises(ValueError, match="dense"):
        spectral_radius(lambda v: v, size=3, method="dense")
    with pytest.raises(ValueError, match="method"):
        spectral_radius(jnp.eye(3), method="power")
    with pytest.raises(ValueError, match="num_matvecs"):
        spectral_radius(jnp.eye(3), method="arnoldi", num_matvecs=5)
    with pytest.raises(ValueError, match="num_wanted"):
        spectral_radius(jnp.eye(6), method="arnoldi", num_matvecs=4, num_wanted=4)
    params, h0, xs = _problem(0)
    with pytest.raises(ValueError, match="rank 2"):
        state_jacobians(elman, params, h0, xs[None])
    with pytest.raises(ValueError, match="empty"):
        state_jacobians(elman, params, h0, xs[:0])
    with pytest.raises(ValueError, match="state vector"):
        state_jacobians(elman, params, h0[None], xs)
    with pytest.raises(ValueError, match="equal shapes"):
        trajectory_distance(elman, params, h0, h0[:3], xs)
    with pytest.raises(ValueError, match="leak"):
        contraction_bound(jnp.eye(3), 0.0)
    with pytest.raises(ValueError, match="leak"):
        contraction_bound(jnp.eye(3), 1.5)
    with pytest.raises(ValueError, match="stack"):
        jacobian_products(jnp.ones((0, 2, 2)))
