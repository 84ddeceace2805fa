"""Diagonals, damped solves and SLQ matrix functions of curvature matrices, against dense references.

References: ``jnp.diagonal``, ``jnp.linalg.solve``, ``slogdet`` and ``trace(inv)`` of the dense matrix from
``jax.hessian`` (Hessian) or an explicit ``J^T H J`` (GGN). Stochastic estimates: within 5 standard errors (with
many probes the error estimate is itself accurate; the keys are fixed, so each check is deterministic, and at 5
standard errors a Gaussian estimate fails with probability 6e-7 per entry).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import analysis

TOL = {jnp.float32: 3e-5, jnp.float64: 1e-10}


def _problem(dtype, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = {"w1": jax.random.normal(k[0], (4, 3), dtype) * 0.8, "w2": jax.random.normal(k[1], (3, 3), dtype) * 0.8}
    x, y = jax.random.normal(k[2], (5, 4), dtype), jnp.arange(5) % 3

    def predict(p, x):
        return jnp.tanh(x @ p["w1"]) @ p["w2"]

    return analysis.supervised_loss(predict, "softmax_cross_entropy"), params, x, y


def _dense(loss, params, x, y, curvature):
    theta, unravel = ravel_pytree(params)
    if curvature == "hessian":
        return jax.hessian(lambda t: loss(unravel(t), x, y))(theta)
    J = jax.jacfwd(lambda t: loss.predict_fn(unravel(t), x))(theta)
    f = loss.predict_fn(params, x)
    Hout = jax.vmap(jax.hessian(lambda f, t: jax.nn.logsumexp(f) - f[t]))(f, y)
    return jnp.einsum("nka,nkl,nlb->ab", J, Hout, J) / x.shape[0]


def _flat(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


@pytest.mark.parametrize("dtype, curvature", [(jnp.float32, "hessian"), (jnp.float64, "ggn")])
def test_exact_diagonal(dtype, curvature):
    with jax.enable_x64(dtype == jnp.float64):
        loss, params, x, y = _problem(dtype, 1)
        want = np.diagonal(np.asarray(_dense(loss, params, x, y, curvature), np.float64))
        got = analysis.curvature_diagonal(loss, params, x, y, method="exact", curvature=curvature, batch_size=5)
        np.testing.assert_allclose(_flat(got.diagonal), want, atol=TOL[dtype] * np.abs(want).max())
        src = analysis.curvature_diagonal(loss, params, analysis.Batches([(x[:2], y[:2]), (x[2:], y[2:])]),
                                          method="exact", curvature=curvature)
        np.testing.assert_allclose(_flat(src.diagonal), want, atol=TOL[dtype] * 10 * np.abs(want).max())


def test_hutchinson_is_exact_on_a_diagonal_matrix_and_within_its_errors_otherwise():
    scales = jnp.arange(1.0, 6.0)
    est = analysis.curvature_diagonal(lambda w: 0.5 * jnp.sum(scales * w**2), jnp.ones(5), method="hutchinson",
                                      num_matvecs=3)
    np.testing.assert_array_equal(np.asarray(est.diagonal), np.asarray(scales))
    np.testing.assert_array_equal(np.asarray(est.standard_error), np.zeros(5))
    with jax.enable_x64(True):
        loss, params, x, y = _problem(jnp.float64, 2)
        want = np.diagonal(np.asarray(_dense(loss, params, x, y, "hessian")))
        est = analysis.curvature_diagonal(loss, params, x, y, method="hutchinson", num_matvecs=400,
                                          key=jax.random.PRNGKey(3))
        err = np.abs(_flat(est.diagonal) - want)
        assert np.all(err <= 5 * _flat(est.standard_error) + 1e-12)
        # the same probes over a data source give the same estimate
        src = analysis.curvature_diagonal(loss, params, analysis.Batches([(x, y)]), method="hutchinson",
                                          num_matvecs=400, key=jax.random.PRNGKey(3))
        np.testing.assert_allclose(_flat(src.diagonal), _flat(est.diagonal), rtol=1e-10, atol=1e-13)


def test_xdiag_is_exact_beyond_the_rank_and_within_its_errors_below_it():
    with jax.enable_x64(True):
        loss, params, x, y = _problem(jnp.float64, 3)
        G = np.asarray(_dense(loss, params, x, y, "ggn"))
        rank = np.linalg.matrix_rank(G)  # <= 5 examples x (3 - 1) classes = 10 < n = 21
        est = analysis.curvature_diagonal(loss, params, x, y, method="xdiag", num_matvecs=2 * (rank + 2),
                                          curvature="ggn", key=jax.random.PRNGKey(1))
        np.testing.assert_allclose(_flat(est.diagonal), np.diagonal(G), atol=1e-10 * np.abs(G).max())
        H = np.asarray(_dense(loss, params, x, y, "hessian"))
        est = analysis.curvature_diagonal(loss, params, x, y, method="xdiag", num_matvecs=16,
                                          key=jax.random.PRNGKey(2))
        err = np.abs(_flat(est.diagonal) - np.diagonal(H))
        assert np.median(err / np.maximum(_flat(est.standard_error), 1e-300)) < 3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_damped_ggn_solve_matches_the_dense_solve(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        loss, params, x, y = _problem(dtype, 4)
        G = np.asarray(_dense(loss, params, x, y, "ggn"), np.float64)
        b = jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size, dtype=dtype)).reshape(a.shape), params)
        damping = 0.1
        want = np.linalg.solve(G + damping * np.eye(G.shape[0]), _flat(b))
        rtol = 1e-5 if dtype == jnp.float32 else 1e-10
        sol = analysis.curvature_solve(loss, params, b, x, y, damping=damping, rtol=rtol, curvature="ggn")
        assert bool(sol.converged) and float(sol.residual) <= 10 * rtol
        np.testing.assert_allclose(_flat(sol.solution), want, rtol=0, atol=100 * rtol * np.abs(want).max())
        short = analysis.curvature_solve(loss, params, b, x, y, damping=damping, rtol=rtol, max_steps=2,
                                         curvature="ggn")
        assert not bool(short.converged) and float(short.residual) > 10 * rtol  # reported, not hidden


@pytest.mark.parametrize("function", ["logdet", "inverse_trace"])
def test_slq_matrix_functions_match_dense_within_their_errors(function):
    with jax.enable_x64(True):
        loss, params, x, y = _problem(jnp.float64, 5)
        G = np.asarray(_dense(loss, params, x, y, "ggn"))
        damping, n = 0.05, G.shape[0]
        A = G + damping * np.eye(n)
        want = np.linalg.slogdet(A)[1] if function == "logdet" else np.trace(np.linalg.inv(A))
        fn = analysis.curvature_logdet if function == "logdet" else analysis.curvature_inverse_trace
        est = fn(loss, params, x, y, damping=damping, num_matvecs=n, num_probes=64, curvature="ggn",
                 key=jax.random.PRNGKey(0))
        assert abs(float(est.estimate) - want) <= 5 * float(est.standard_error)
        assert float(est.standard_error) < 0.2 * abs(want)
        # an indefinite matrix has no real log-determinant: NaN, not a number
        hess = analysis.curvature_logdet(lambda w: 0.5 * jnp.sum(jnp.array([-1.0, 2.0, 3.0]) * w**2), jnp.ones(3),
                                         num_matvecs=3)
        assert bool(jnp.isnan(hess.estimate))


def test_bad_arguments_name_the_value():
    loss, params, x, y = _problem(jnp.float32)
    b = jax.tree_util.tree_map(jnp.ones_like, params)
    with pytest.raises(ValueError, match="damping"):
        analysis.curvature_solve(loss, params, b, x, y, damping=-1.0)
    with pytest.raises(ValueError, match="b is zero"):
        analysis.curvature_solve(loss, params, jax.tree_util.tree_map(jnp.zeros_like, params), x, y, damping=1.0)
    with pytest.raises(ValueError, match="rtol=0"):
        analysis.curvature_solve(loss, params, b, x, y, damping=1.0, rtol=0.0)
    with pytest.raises(ValueError, match="method"):
        analysis.curvature_diagonal(loss, params, x, y, method="bekas")
    with pytest.raises(ValueError, match="xdiag"):
        analysis.curvature_diagonal(loss, params, analysis.Batches([(x, y)]), method="xdiag")
    with pytest.raises(ValueError, match="num_probes"):
        analysis.curvature_logdet(loss, params, x, y, num_probes=1)
    with pytest.raises(ValueError, match="num_matvecs"):
        analysis.curvature_inverse_trace(loss, params, x, y, num_matvecs=10_000)
