"""Influence scores against the dense formula, and the experiment against exact leave-one-out retraining.

Reference: ``grad L_test^T H^{-1} grad l_i / (N - 1)`` with ``H`` from ``jax.hessian`` and ``jnp.linalg.solve``,
per-example gradients from ``jax.grad`` (float64, tolerance 1e-8 relative); the experiment refits without each
example by Newton's method (machine precision) and must agree (correlations >= 0.9, 8 of the top 10).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import analysis
from jaxdl.experiments import influence


def _problem():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k[0], (12, 4), jnp.float64)
    y = (jax.random.uniform(k[1], (12,)) < 0.5).astype(jnp.float64)

    def objective(p, x, y):
        logits = x @ p["w"] + p["b"]
        return jnp.mean(jax.nn.softplus(logits) - y * logits) + 0.05 * jnp.sum(p["w"] ** 2)

    return objective, {"w": jax.random.normal(k[2], (4,), jnp.float64) * 0.1, "b": jnp.array(0.0)}, x, y


def test_scores_match_the_dense_formula():
    for damping in (0.0, 0.3):  # damping is traced: one compilation
        _check_scores(damping)


def _check_scores(damping):
    with jax.enable_x64(True):
        objective, params, x, y = _problem()
        test = (x[:2] + 0.5, y[:2])
        theta, unravel = ravel_pytree(params)
        H = jax.hessian(lambda t: objective(unravel(t), x, y))(theta)
        g_test = jax.grad(lambda t: objective(unravel(t), *test))(theta)
        s = jnp.linalg.solve(H + damping * jnp.eye(theta.size), g_test)
        grads = jax.vmap(lambda xi, yi: jax.grad(lambda t: objective(unravel(t), xi[None], yi[None]))(theta))(x, y)
        want = np.asarray(grads @ s / (x.shape[0] - 1))
        got = analysis.influence_scores(objective, params, (x, y), test, damping=damping)
        assert bool(got.solve.converged)
        np.testing.assert_allclose(np.asarray(got.scores), want, rtol=1e-8, atol=1e-10 * np.abs(want).max())


def test_solve_ignores_exact_zeros_of_the_right_hand_side():
    with jax.enable_x64(True):
        objective, params, x, y = _problem()
        b = {"w": jnp.array([1.0, 0.0, 0.0, 2.0]), "b": jnp.array(0.0)}  # lineax's entrywise scale would be 0 here
        sol = analysis.curvature_solve(objective, params, b, x, y, damping=0.0, rtol=1e-12)
        theta, unravel = ravel_pytree(params)
        H = jax.hessian(lambda t: objective(unravel(t), x, y))(theta)
        want = np.linalg.solve(np.asarray(H), np.asarray(ravel_pytree(b)[0]))
        assert bool(sol.converged) and float(sol.residual) < 1e-10
        np.testing.assert_allclose(np.asarray(ravel_pytree(sol.solution)[0]), want, rtol=1e-9)


def test_influence_experiment_agrees_with_leave_one_out_retraining():
    m = influence.measure(seed=0, quick=True)
    v = influence.verdict(m)
    assert v.passed, v.text
    assert m["pearson"] >= 0.9 and m["top_found"] >= 8


def test_bad_arguments():
    with jax.enable_x64(True):
        objective, params, x, y = _problem()
    with pytest.raises(TypeError, match="train"):
        analysis.influence_scores(objective, params, x, (x, y), damping=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        analysis.influence_scores(objective, params, (x[:1], y[:1]), (x, y), damping=0.0)
