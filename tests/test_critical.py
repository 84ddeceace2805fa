"""Critical points: Levenberg-Marquardt / Adam on the squared gradient norm, Hessian index, escape directions.

References: closed-form critical points of quadratics (``np.linalg.solve``), dense ``np.linalg.eigh`` of the known
Hessian, and sign conventions checked against the gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from analysis import critical

# Indefinite spectrum: 3 negative, 1 zero, 4 positive eigenvalues (n = 8).
SPECTRUM = np.array([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0, 5.0])


NONSINGULAR = np.array([-3.0, -1.0, 0.5, 1.0, 2.0, 5.0])


def quad_loss(p, amat, bvec):
    """``1/2 w^T A w + b^T w + 1/2 |v|^2`` on ``p = {"w": (n,), "v": (2,)}``: the Hessian is ``diag(A, I)`` exactly
    and the critical points solve ``A w = -b``, ``v = 0``. One module-level function, so compilations are shared
    between tests (a new closure per test would recompile every jitted routine)."""
    return 0.5 * p["w"] @ amat @ p["w"] + bvec @ p["w"] + 0.5 * jnp.sum(p["v"] ** 2)


def quadratic(seed: int, spectrum=SPECTRUM):
    """``(quad_loss, A, b, Q)`` with ``A = Q diag(spectrum) Q^T`` and ``b`` in the range of ``A``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((spectrum.size, spectrum.size)))
    a = (q * spectrum) @ q.T
    a = 0.5 * (a + a.T)
    b = q @ (rng.standard_normal(spectrum.size) * (spectrum != 0))
    return quad_loss, a, b, q


def _params(rng, n, dtype):
    return {"w": jnp.asarray(rng.standard_normal(n), dtype), "v": jnp.asarray(rng.standard_normal(2), dtype)}


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_levenberg_marquardt_reaches_the_closed_form_critical_point(seed, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        loss, a, b, _ = quadratic(seed, NONSINGULAR)
        start = _params(np.random.default_rng(10 + seed), 6, dtype)
        cp = analysis.find_critical_point(loss, start, jnp.asarray(a, dtype), jnp.asarray(b, dtype), steps=25)
        expected = np.linalg.solve(a, -b)
        tol = 1e-10 if x64 else 2e-4
        np.testing.assert_allclose(np.asarray(cp.params["w"]), expected, rtol=0, atol=tol * 10)
        np.testing.assert_allclose(np.asarray(cp.params["v"]), 0.0, atol=tol)
        assert bool(cp.converged) and float(cp.grad_norm) <= (1e-9 if x64 else 1e-3)
        # The search minimises ||g||: the accepted history never increases.
        hist = np.asarray(cp.grad_norm_history)
        assert hist.shape == (26,) and np.all(np.diff(hist) <= 0)


def test_find_critical_point_under_jit_does_not_retrace():
    traces = []

    def loss(p, x):
        traces.append(1)
        return jnp.sum(x * p**2) - p[0] * p[1]

    fn = jax.jit(lambda p, x: analysis.find_critical_point(loss, p, x, steps=10).params)
    x = jnp.array([1.0, -2.0, 0.5])
    out = fn(jnp.array([0.3, 0.2, -0.1]), x)
    count = len(traces)
    out2 = fn(jnp.array([0.1, -0.4, 0.2]), x)
    assert len(traces) == count, "second call with the same shapes retraced"
    # Critical point of the quadratic with Hessian [[2, -1, 0], [-1, -4, 0], [0, 0, 1]] (nonsingular): the origin.
    np.testing.assert_allclose(np.asarray(out), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out2), 0.0, atol=1e-6)


def test_adam_on_the_squared_gradient_norm():
    with jax.enable_x64(True):
        loss, a, b, _ = quadratic(3, np.array([0.5, 1.0, 2.0, 3.0]))
        start = _params(np.random.default_rng(0), 4, jnp.float64)
        cp = analysis.find_critical_point(loss, start, jnp.asarray(a), jnp.asarray(b), method="adam", steps=3000,
                                          learning_rate=0.02, gtol=1e-4)
        np.testing.assert_allclose(np.asarray(cp.params["w"]), np.linalg.solve(a, -b), atol=1e-4)
        hist = np.asarray(cp.grad_norm_history)
        assert hist.shape == (3001,) and hist[-1] < 1e-3 * hist[0] and bool(cp.converged)


def test_many_starts_match_single_starts():
    with jax.enable_x64(True):
        loss, a, b, _ = quadratic(4, NONSINGULAR)
        rng = np.random.default_rng(1)
        starts = [_params(rng, NONSINGULAR.size, jnp.float64) for _ in range(3)]
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *starts)
        many = analysis.find_critical_points(loss, stacked, jnp.asarray(a), jnp.asarray(b), steps=25)
        for i, s in enumerate(starts):
            one = analysis.find_critical_point(loss, s, jnp.asarray(a), jnp.asarray(b), steps=25)
            np.testing.assert_allclose(np.asarray(many.params["w"][i]), np.asarray(one.params["w"]), atol=1e-10)
            assert bool(many.converged[i]) == bool(one.converged)


@pytest.mark.parametrize("x64", [False, True])
def test_classification_against_dense_eigh(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        loss, a, b, _ = quadratic(5)
        critical_w = np.linalg.lstsq(a, -b, rcond=None)[0]
        p = {"w": jnp.asarray(critical_w, dtype), "v": jnp.zeros(2, dtype)}
        info = analysis.classify_critical_point(loss, p, jnp.asarray(a, dtype), jnp.asarray(b, dtype), atol=1e-3)
        reference = np.sort(np.concatenate([np.linalg.eigvalsh(a), [1.0, 1.0]]))
        np.testing.assert_allclose(info.eigenvalues, reference, atol=1e-12 if x64 else 1e-5)
        assert (info.num_negative, info.num_near_zero, info.num_positive) == (3, 1, 6)
        assert info.kind == "saddle" and not info.strict
        assert info.index == pytest.approx(0.3) and info.min_eigenvalue == pytest.approx(-3.0, abs=1e-5)
        assert analysis.hessian_index(loss, p, jnp.asarray(a, dtype), jnp.asarray(b, dtype), atol=1e-3) == info.index
        # Away from the critical point the same spectrum is "not critical".
        moved = {"w": p["w"] + 1.0, "v": p["v"]}
        assert analysis.classify_critical_point(loss, moved, jnp.asarray(a, dtype), jnp.asarray(b, dtype)).kind == \
            "not critical"


def test_kinds_minimum_maximum_flat():
    with jax.enable_x64(True):
        z = jnp.zeros(3)
        mini = analysis.classify_critical_point(lambda p: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * p**2), z)
        assert (mini.kind, mini.strict, mini.index) == ("minimum", True, 0.0)
        maxi = analysis.classify_critical_point(lambda p: -jnp.sum(p**2), z)
        assert (maxi.kind, maxi.index) == ("maximum", 1.0)
        flat = analysis.classify_critical_point(lambda p: jnp.sum(p**4), z)
        assert (flat.kind, flat.num_near_zero) == ("flat", 3)
        degenerate = analysis.classify_critical_point(lambda p: p[0] ** 2 + p[1] ** 4, jnp.zeros(2))
        assert (degenerate.kind, degenerate.strict) == ("minimum", False)


# Each (method, end of the spectrum) pair in one dtype, each method in both dtypes: every compilation is used twice
# (two seeds) and none is repeated for a combination the others already cover.
@pytest.mark.parametrize("method, which, x64", [("lanczos", "smallest", False), ("dense", "largest", False),
                                                ("lanczos", "largest", True), ("dense", "smallest", True)])
def test_hessian_directions_against_eigh(method, which, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        tol = 1e-9 if x64 else 1e-4
        for seed in (0, 1):
            loss, a, b, _ = quadratic(seed)
            p = _params(np.random.default_rng(seed), SPECTRUM.size, dtype)
            args = (jnp.asarray(a, dtype), jnp.asarray(b, dtype))
            lam, vecs = np.linalg.eigh(a)
            steps = 10 if method == "lanczos" else None
            if which == "smallest":
                d = analysis.escape_direction(loss, p, *args, method=method, num_matvecs=steps)
            else:
                d = analysis.hessian_direction(loss, p, *args, which="largest", method=method, num_matvecs=steps)
            i = 0 if which == "smallest" else -1
            assert float(d.eigenvalue) == pytest.approx(lam[i], abs=tol * 10)
            w = np.asarray(d.direction["w"], np.float64)
            assert abs(abs(w @ vecs[:, i]) - 1) < tol * 10 and np.allclose(np.asarray(d.direction["v"]), 0, atol=tol)
            assert float(d.residual) < tol * 100
            # Sign: the loss decreases along the direction to first order.
            g = np.asarray(a @ np.asarray(p["w"], np.float64) + b)
            assert g @ w <= 0


def test_escape_direction_at_an_exact_saddle_is_reproducible():
    loss = lambda p: p[0] ** 2 - 2 * p[1] ** 2 + p[2] ** 2  # noqa: E731
    d1 = analysis.escape_direction(loss, jnp.zeros(3), method="dense")
    d2 = analysis.escape_direction(loss, jnp.zeros(3), method="dense")
    np.testing.assert_array_equal(np.asarray(d1.direction), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(d1.direction), np.asarray(d2.direction))
    assert float(d1.eigenvalue) == -4.0


def test_block_restricted_direction():
    loss, a, b, _ = quadratic(0)
    p = _params(np.random.default_rng(0), SPECTRUM.size, jnp.float32)
    d = analysis.hessian_direction(loss, p, jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), which="largest",
                                   method="dense", block="v")
    assert float(d.eigenvalue) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(np.asarray(d.direction["w"]), 0.0)


def test_errors():
    loss = lambda p: jnp.sum(p**2)  # noqa: E731
    p = jnp.ones(3)
    with pytest.raises(ValueError, match="method='newton' is invalid"):
        analysis.find_critical_point(loss, p, method="newton")
    with pytest.raises(ValueError, match="steps=0 is invalid"):
        analysis.find_critical_point(loss, p, steps=0)
    with pytest.raises(ValueError, match="learning_rate=-0.1 is invalid"):
        analysis.find_critical_point(loss, p, method="adam", learning_rate=-0.1)
    with pytest.raises(ValueError, match="damping=0 is invalid"):
        analysis.find_critical_point(loss, p, damping=0)
    with pytest.raises(ValueError, match="gtol=-1 is invalid"):
        analysis.find_critical_point(loss, p, gtol=-1)
    with pytest.raises(ValueError, match="NaN/inf"):
        analysis.find_critical_point(loss, jnp.array([1.0, jnp.nan, 0.0]))
    with pytest.raises(ValueError, match="must return a scalar"):
        analysis.find_critical_point(lambda q: q**2, p)
    with pytest.raises(ValueError, match="leading axis of starts"):
        analysis.find_critical_points(loss, jnp.float32(1.0))
    with pytest.raises(ValueError, match="disagree on the number of starts"):
        analysis.find_critical_points(lambda q: jnp.sum(q["a"]) + jnp.sum(q["b"]),
                                      {"a": jnp.ones((2, 1)), "b": jnp.ones((3, 1))})
    with pytest.raises(ValueError, match="which='middle' is invalid"):
        analysis.hessian_direction(loss, p, which="middle")
    with pytest.raises(ValueError, match="rtol=1.5 is invalid"):
        analysis.classify_critical_point(loss, p, rtol=1.5)
    with pytest.raises(ValueError, match="gtol=0 is invalid"):
        analysis.classify_critical_point(loss, p, gtol=0)


def test_size_limit_of_the_dense_methods(monkeypatch):
    monkeypatch.setattr(critical, "MAX_DENSE_PARAMS", 2)
    with pytest.raises(ValueError, match="too many for method='levenberg_marquardt'"):
        analysis.find_critical_point(lambda p: jnp.sum(p**2), jnp.ones(3))
    with pytest.raises(ValueError, match="too many for method='dense'"):
        analysis.hessian_direction(lambda p: jnp.sum(p**2), jnp.ones(3), method="dense")
