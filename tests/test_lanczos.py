"""Lanczos eigenpairs against the dense eigendecomposition (jnp.linalg.eigh)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from tests.conftest import SPECTRUM, quadratic_problem


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("x64", [False, True])
def test_quadratic_top_and_bottom(seed, x64):
    tol = 1e-10 if x64 else 1e-5
    with jax.enable_x64(x64):
        loss, params, a, b = quadratic_problem(seed, jnp.float64 if x64 else jnp.float32)
        ref = np.sort(SPECTRUM)
        res = analysis.hessian_eigs(loss, params, a, b, k=5, which="both", num_matvecs=60,
                                    key=jax.random.PRNGKey(seed))
        got = np.asarray(res.eigenvalues, np.float64)
        want = np.concatenate([ref[:5], ref[-5:]])
        np.testing.assert_allclose(got, want, rtol=tol)
        assert np.all(np.asarray(res.residuals) < (1e-8 if x64 else 1e-3))


def test_quadratic_magnitude_and_vectors():
    loss, params, a, b = quadratic_problem(3, jnp.float32)
    res = analysis.hessian_eigs(loss, params, a, b, k=3, which="magnitude", num_matvecs=60, return_vectors=True)
    want = np.sort(SPECTRUM[np.argsort(-np.abs(SPECTRUM))[:3]])
    np.testing.assert_allclose(np.asarray(res.eigenvalues), want, rtol=1e-5)
    vecs = res.eigenvectors["w"]
    assert vecs.shape == (3, SPECTRUM.size)
    # Each returned vector is a unit eigenvector: A v = lambda v, and the reported residual is that norm.
    r = jnp.linalg.norm(vecs @ a - res.eigenvalues[:, None] * vecs, axis=1)
    np.testing.assert_allclose(np.asarray(r), np.asarray(res.residuals), atol=1e-4)
    np.testing.assert_allclose(np.asarray(jnp.linalg.norm(vecs, axis=1)), 1.0, rtol=1e-5)


def test_digits_mlp_float32(digits_mlp):
    d = digits_mlp
    exact = d["exact"]
    norm = np.abs(exact).max()
    top = analysis.hessian_eigs(d["loss32"], d["p32"], d["x32"], d["y"], k=5, which="largest")
    np.testing.assert_allclose(np.asarray(top.eigenvalues, np.float64), exact[-5:], rtol=1e-5)
    bottom = analysis.hessian_eigs(d["loss32"], d["p32"], d["x32"], d["y"], k=5, which="smallest", num_matvecs=200)
    # float32 products carry errors of about eps * ||H||, so tiny negative eigenvalues are checked normwise:
    # |lambda - lambda_ref| <= 1e-5 ||H||_2.
    err = np.abs(np.asarray(bottom.eigenvalues, np.float64) - exact[:5])
    assert err.max() <= 1e-5 * norm, (err, norm)


def test_digits_mlp_float64(digits_mlp):
    d = digits_mlp
    exact = d["exact"]
    with jax.enable_x64(True):
        res = analysis.hessian_eigs(d["loss64"], d["p64"], d["x64"], d["y"], k=5, which="both", num_matvecs=200)
        got = np.asarray(res.eigenvalues)
    np.testing.assert_allclose(got, np.concatenate([exact[:5], exact[-5:]]), rtol=1e-10)


def test_same_key_same_bits_and_no_retrace():
    loss, params, a, b = quadratic_problem(0, jnp.float32)
    from analysis.lanczos import _hessian_eigs

    r1 = analysis.hessian_eigs(loss, params, a, b, k=2, num_matvecs=30, key=jax.random.PRNGKey(7))
    size = _hessian_eigs._cache_size()
    r2 = analysis.hessian_eigs(loss, params, a, b, k=2, num_matvecs=30, key=jax.random.PRNGKey(7))
    assert _hessian_eigs._cache_size() == size
    np.testing.assert_array_equal(np.asarray(r1.eigenvalues), np.asarray(r2.eigenvalues))
    np.testing.assert_array_equal(np.asarray(r1.residuals), np.asarray(r2.residuals))


def test_runs_inside_user_jit():
    loss, params, a, b = quadratic_problem(1, jnp.float32)

    @jax.jit
    def top(p, a, b):
        return analysis.hessian_eigs(loss, p, a, b, k=1, num_matvecs=40).eigenvalues

    np.testing.assert_allclose(np.asarray(top(params, a, b)), [SPECTRUM.max()], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k=0"),
        ({"k": 81}, "k=81.*n=80"),
        ({"k": 41, "which": "both"}, "82 eigenpairs"),
        ({"k": 5, "num_matvecs": 4}, "num_matvecs=4"),
        ({"k": 5, "num_matvecs": 81}, "num_matvecs=81 exceeds"),
        ({"which": "top"}, "which='top'"),
    ],
)
def test_bad_settings(kwargs, match):
    loss, params, a, b = quadratic_problem(0, jnp.float32)
    with pytest.raises(ValueError, match=match):
        analysis.hessian_eigs(loss, params, a, b, **kwargs)


def test_runs_inside_user_jit_with_closed_over_data():
    loss, params, a, b = quadratic_problem(2, jnp.float32)

    @jax.jit
    def top(p):
        return analysis.hessian_eigs(loss, p, a, b, k=1, num_matvecs=40).eigenvalues

    np.testing.assert_allclose(np.asarray(top(params)), [SPECTRUM.max()], rtol=1e-5)


def test_exhausted_krylov_space_gives_exact_values_and_nan_for_the_rest():
    """A rank-2 Hessian in 6 dimensions has 3 distinct eigenvalues (two and 0), so the Krylov space of any start
    vector has dimension 3. Running all 6 steps must still give the exact top pair (no spurious value from vectors
    that lost orthogonality), and asking for 4 must return NaN for the one Lanczos cannot see, not a number."""
    with jax.enable_x64(True):
        a, b = jnp.array([1.0, 2.0, 0.0, 1.0, 0.0, 3.0]), jnp.array([0.0, 1.0, 1.0, -1.0, 2.0, 0.0])

        def loss(w):
            return 0.5 * (jnp.dot(a, w) ** 2 + 3.0 * jnp.dot(b, w) ** 2)

        exact = np.linalg.eigvalsh(np.outer(a, a) + 3 * np.outer(b, b))
        eigs = analysis.hessian_eigs(loss, jnp.ones(6), k=2, num_matvecs=6)
        np.testing.assert_allclose(np.asarray(eigs.eigenvalues), exact[-2:], rtol=1e-12)
        four = analysis.hessian_eigs(loss, jnp.ones(6), k=4, num_matvecs=6)
        values = np.asarray(four.eigenvalues)
        assert np.isnan(values[0]) and np.isnan(np.asarray(four.residuals)[0])
        np.testing.assert_allclose(values[1:], [0.0, *exact[-2:]], atol=1e-10)
        sd = analysis.spectral_density(loss, jnp.ones(6), num_matvecs=6)
        assert np.all(np.isfinite(np.asarray(sd.nodes))) and abs(float(jnp.sum(sd.weights)) - 1) < 1e-12


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x64", [False, True])
def test_row_major_basis_is_orthonormal_and_tridiagonalises(seed, x64):
    """Q (m, n) from the compiled loop: orthonormal rows and Q A Q^T equal to the Lanczos matrix, against a dense
    matrix with clustered and repeated eigenvalues, 60 of 80 steps (tolerances: about 100 eps * ||A||)."""
    from analysis.lanczos import lanczos_decompose, lanczos_tridiagonal

    dtype = jnp.float64 if x64 else jnp.float32
    tol = 1e-12 if x64 else 2e-5
    with jax.enable_x64(x64):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((80, 80)))
        A = jnp.asarray((q * SPECTRUM) @ q.T, dtype)
        v0 = jnp.asarray(rng.standard_normal(80), dtype)
        state = jax.jit(lambda v: lanczos_decompose(lambda u: A @ u, v, 60))(v0)
        Q = np.asarray(state.Q[:60], np.float64)
        assert state.Q.shape == (64, 80) and np.all(np.asarray(state.Q[61:]) == 0)  # padded to 8-row blocks
        np.testing.assert_allclose(Q @ Q.T, np.eye(60), atol=tol)
        T = np.asarray(lanczos_tridiagonal(state), np.float64)
        np.testing.assert_allclose(Q @ np.asarray(A, np.float64) @ Q.T, T, atol=tol * 50)
        np.testing.assert_allclose(Q[0], np.asarray(v0) / np.linalg.norm(np.asarray(v0)), rtol=tol, atol=tol)


def test_exact_breakdown_leaves_zero_rows_not_nan():
    """A matrix of rank 1: after one step the remainder is exactly zero; the next rows stay zero (no 0/0)."""
    from analysis.lanczos import lanczos_decompose

    u = jnp.array([1.0, 0.0, 0.0, 0.0])
    state = lanczos_decompose(lambda v: u * jnp.dot(u, v), u, 3)
    assert np.all(np.isfinite(np.asarray(state.Q))) and float(state.beta[0]) == 0.0
    np.testing.assert_array_equal(np.asarray(state.Q[1:]), 0.0)
    np.testing.assert_array_equal(np.asarray(state.alpha), [1.0, 0.0, 0.0])


def test_basis_sharding_is_checked():
    loss, params, a, b = quadratic_problem(0, jnp.float32)
    with pytest.raises(TypeError, match="basis_sharding='rows' is invalid"):
        analysis.hessian_eigs(loss, params, a, b, k=1, basis_sharding="rows")


def _outlier_matrix(seed, dtype, n=240):
    """A Hessian-like spectrum: a bulk near zero and a few outliers, which makes the computed Lanczos vectors lose
    orthogonality quickly once the outliers converge (and then repeat them as spurious copies, "ghosts")."""
    rng = np.random.default_rng(seed)
    spectrum = np.concatenate([rng.normal(0, 0.01, n - 20), np.linspace(1, 20, 15), [-3, -2, 30, 40, 50]])
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return jnp.asarray((q * spectrum) @ q.T, dtype), np.sort(spectrum), jnp.asarray(rng.standard_normal(n), dtype)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x64", [False, True])
def test_partial_reorthogonalisation_keeps_semi_orthogonality(seed, x64):
    """Partial reorthogonalisation, 100 steps on a 240 x 240 matrix with outliers: it reorthogonalises at some
    steps and not at others, every measured overlap |q_i^T q_j| stays within 10 eps^(3/4) (without any
    reorthogonalisation they reach O(1) here), the extreme Ritz values match eigvalsh to 50 eps ||A|| as with full
    reorthogonalisation, and each converged outlier appears once (no ghost copy)."""
    from analysis.lanczos import lanczos_decompose_counted, lanczos_tridiagonal, tridiagonal_eigh

    dtype = jnp.float64 if x64 else jnp.float32
    eps = float(jnp.finfo(dtype).eps)
    with jax.enable_x64(x64):
        A, exact, v0 = _outlier_matrix(seed, dtype)
        run = jax.jit(lambda v, how: lanczos_decompose_counted(lambda u: A @ u, v, 100, None, how),
                      static_argnums=1)
        state, count = run(v0, "partial")
        assert 0 < int(count) < 100
        Q = np.asarray(state.Q[:101], np.float64)
        overlap = np.abs(Q @ Q.T - np.eye(101)).max()
        assert overlap <= 10 * eps ** 0.75, overlap
        ritz = np.sort(np.asarray(tridiagonal_eigh(lanczos_tridiagonal(state))[0], np.float64))
        np.testing.assert_allclose(ritz[[0, 1, -3, -2, -1]], exact[[0, 1, -3, -2, -1]], rtol=0, atol=50 * eps * 50)
        for outlier in (-3, -2, 30, 40, 50):
            assert np.sum(np.abs(ritz - outlier) < 0.01) == 1, (outlier, ritz)
        full, count_full = run(v0, "full")
        assert int(count_full) == 100
        ritz_full = np.sort(np.asarray(tridiagonal_eigh(lanczos_tridiagonal(full))[0], np.float64))
        np.testing.assert_allclose(ritz[[0, 1, -3, -2, -1]], ritz_full[[0, 1, -3, -2, -1]], rtol=0,
                                   atol=50 * eps * 50)


def test_no_reorthogonalisation_loses_orthogonality_on_the_same_matrix():
    """The matrix of the test above is a real test of the estimator: the plain three-term recurrence (partial
    reorthogonalisation with its level set out of reach) loses orthogonality to O(1) there and repeats the top
    eigenvalue."""
    import analysis.lanczos as lanczos

    from analysis.lanczos import lanczos_tridiagonal, tridiagonal_eigh

    A, _, v0 = _outlier_matrix(0, jnp.float32)
    original = lanczos.PARTIAL_LEVEL
    try:
        lanczos.PARTIAL_LEVEL = float("-inf")  # eps ** -inf = inf: never reached
        state, count = jax.jit(lambda v: lanczos.lanczos_decompose_counted(lambda u: A @ u, v, 100, None,
                                                                           "partial"))(v0)
    finally:
        lanczos.PARTIAL_LEVEL = original
    Q = np.asarray(state.Q[:101], np.float64)
    assert int(count) == 0 and np.abs(Q @ Q.T - np.eye(101)).max() > 0.1
    ritz = np.asarray(tridiagonal_eigh(lanczos_tridiagonal(state))[0], np.float64)
    assert np.sum(np.abs(ritz - 50) < 0.01) >= 2, ritz


@pytest.mark.parametrize("x64", [False, True])
def test_partial_and_full_reorthogonalisation_agree_on_the_digits_mlp(digits_mlp, x64):
    """hessian_eigs with both strategies against the dense spectrum of the digits MLP: eigenvalues to the float32 /
    float64 tolerances of the tests above, residuals within 10x of full reorthogonalisation's."""
    d = digits_mlp
    exact = d["exact"]
    with jax.enable_x64(x64):
        args = (d["loss64"], d["p64"], d["x64"], d["y"]) if x64 else (d["loss32"], d["p32"], d["x32"], d["y"])
        runs = {how: analysis.hessian_eigs(*args, k=5, which="largest", num_matvecs=90, reorthogonalise=how)
                for how in ("partial", "full")}
    for how, res in runs.items():
        np.testing.assert_allclose(np.asarray(res.eigenvalues, np.float64), exact[-5:], rtol=1e-10 if x64 else 1e-5)
    floor = (1e-12 if x64 else 1e-5) * np.abs(exact).max()
    assert np.all(np.asarray(runs["partial"].residuals) <= 10 * np.maximum(np.asarray(runs["full"].residuals), floor))
