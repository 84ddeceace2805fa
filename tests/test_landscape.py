"""Loss landscapes: batched slices, interpolation and 2-D surfaces against point-by-point evaluation, and the
filter normalisation of Li et al. (2018) against per-filter norms computed with NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis

TRACES: list[int] = []


def mlp_loss(p, x, y):
    """A tiny two-layer tanh network with squared error (module level: one compilation shared by the tests)."""
    TRACES.append(1)
    h = jnp.tanh(x @ p["layer0"]["kernel"] + p["layer0"]["bias"])
    return jnp.mean((h @ p["layer1"]["kernel"] + p["layer1"]["bias"] - y) ** 2)


def problem(seed: int, dtype):
    rng = np.random.default_rng(seed)
    params = {"layer0": {"kernel": rng.standard_normal((3, 4)), "bias": rng.standard_normal(4)},
              "layer1": {"kernel": rng.standard_normal((4, 2)), "bias": rng.standard_normal(2)}}
    direction = jax.tree_util.tree_map(lambda a: rng.standard_normal(a.shape), params)
    other = jax.tree_util.tree_map(lambda a: rng.standard_normal(a.shape), params)
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    cast = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
    return cast(params), cast(direction), cast(other), jnp.asarray(x, dtype), jnp.asarray(y, dtype)


@jax.jit
def pointwise(params, coefficients, directions, x, y):
    """The reference: one compiled loss evaluation at ``params + sum_k c_k d_k`` (called point by point)."""
    return mlp_loss(jax.tree_util.tree_map(lambda p, *ds: p + sum(c * d for c, d in zip(coefficients, ds)), params,
                                           *directions), x, y)


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_slice_and_interpolation_match_pointwise_evaluation(seed, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        params, d, other, x, y = problem(seed, dtype)
        alphas = np.linspace(-1.5, 2.0, 13)
        got = analysis.loss_along_direction(mlp_loss, params, d, alphas, x, y)
        want = [float(pointwise(params, [a], [d], x, y)) for a in alphas]
        rtol = 1e-12 if x64 else 2e-5
        np.testing.assert_allclose(np.asarray(got), want, rtol=rtol)
        chunked = analysis.loss_along_direction(mlp_loss, params, d, alphas, x, y, chunk_size=4)
        np.testing.assert_allclose(np.asarray(chunked), want, rtol=rtol)
        line = analysis.interpolate(mlp_loss, params, other, np.array([0.0, 0.25, 1.0]), x, y)
        np.testing.assert_allclose(float(line[0]), float(pointwise(params, [], [], x, y)), rtol=rtol)
        np.testing.assert_allclose(float(line[2]), float(pointwise(other, [], [], x, y)), rtol=rtol * 10)
        quarter = jax.tree_util.tree_map(lambda a, b: 0.75 * a + 0.25 * b, params, other)
        np.testing.assert_allclose(float(line[1]), float(pointwise(quarter, [], [], x, y)), rtol=rtol * 10)


@pytest.mark.parametrize("x64", [False, True])
def test_surface_matches_double_loop(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        params, d1, d2, x, y = problem(2, dtype)
        alphas, betas = np.linspace(-1, 1, 5), np.linspace(-0.5, 1.5, 4)
        got = np.asarray(analysis.loss_surface_2d(mlp_loss, params, d1, d2, alphas, betas, x, y))
        want = np.array([[float(pointwise(params, [a, b], [d1, d2], x, y)) for b in betas] for a in alphas])
        assert got.shape == (5, 4)
        np.testing.assert_allclose(got, want, rtol=1e-12 if x64 else 2e-5)
        chunked = analysis.loss_surface_2d(mlp_loss, params, d1, d2, alphas, betas, x, y, chunk_size=7)
        np.testing.assert_allclose(np.asarray(chunked), want, rtol=1e-12 if x64 else 2e-5)


def test_jit_and_no_retrace():
    params, d, _, x, y = problem(3, jnp.float32)
    fn = jax.jit(lambda p, d, a, x, y: analysis.loss_along_direction(mlp_loss, p, d, a, x, y))
    first = fn(params, d, jnp.linspace(0, 1, 6), x, y)
    count = len(TRACES)
    second = fn(jax.tree_util.tree_map(lambda a: a + 1, params), d, jnp.linspace(0, 2, 6), x, y)
    assert len(TRACES) == count, "a second call with new values of the same shapes retraced"
    assert first.shape == second.shape == (6,)
    # The public function itself: a second call with new values compiles nothing new either.
    analysis.loss_along_direction(mlp_loss, params, d, np.linspace(0, 1, 6), x, y)
    count = len(TRACES)
    analysis.loss_along_direction(mlp_loss, params, d, np.linspace(-1, 1, 6), x, y)
    assert len(TRACES) == count


def test_second_difference_along_an_eigenvector_equals_the_eigenvalue():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
        lam = np.array([-2.0, 0.1, 0.5, 1.0, 3.0])
        a = jnp.asarray((q * lam) @ q.T)

        def quad(w, a):
            return 0.5 * w @ a @ w

        w0 = jnp.asarray(rng.standard_normal(5))
        for i in (0, 4):
            h = 0.1
            values = analysis.loss_along_direction(quad, w0, jnp.asarray(q[:, i]), np.array([-h, 0.0, h]), a)
            assert analysis.second_difference([-h, 0.0, h], values)[0] == pytest.approx(lam[i], rel=1e-9)
        with pytest.raises(ValueError, match="evenly spaced"):
            analysis.second_difference([0.0, 1.0, 3.0], [0.0, 1.0, 2.0])
        with pytest.raises(ValueError, match=">= 3"):
            analysis.second_difference([0.0, 1.0], [0.0, 1.0])


@pytest.mark.parametrize("x64", [False, True])
def test_filter_normalisation(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        rng = np.random.default_rng(1)
        params = {"dense": {"kernel": jnp.asarray(rng.standard_normal((6, 4)), dtype), "bias": jnp.ones(4, dtype)},
                  "conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 2, 5)), dtype)}}
        params["dense"]["kernel"] = params["dense"]["kernel"].at[:, 2].set(0.0)  # a dead filter
        d = analysis.filter_normalized_direction(jax.random.PRNGKey(0), params)
        tol = 1e-12 if x64 else 1e-6
        for name in ("dense", "conv"):
            k, dk = np.asarray(params[name]["kernel"]), np.asarray(d[name]["kernel"])
            pn = np.linalg.norm(k.reshape(-1, k.shape[-1]), axis=0)
            dn = np.linalg.norm(dk.reshape(-1, k.shape[-1]), axis=0)
            np.testing.assert_allclose(dn, pn, rtol=tol, atol=tol)
        np.testing.assert_array_equal(np.asarray(d["dense"]["kernel"][:, 2]), 0.0)
        np.testing.assert_array_equal(np.asarray(d["dense"]["bias"]), 0.0)
        again = analysis.filter_normalized_direction(jax.random.PRNGKey(0), params)
        other = analysis.filter_normalized_direction(jax.random.PRNGKey(1), params)
        for a, b in zip(jax.tree_util.tree_leaves(d), jax.tree_util.tree_leaves(again)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.allclose(np.asarray(d["conv"]["kernel"]), np.asarray(other["conv"]["kernel"]))
        kept = analysis.filter_normalize(jax.tree_util.tree_map(jnp.ones_like, params), params, ignore_vectors=False)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(kept["dense"]["bias"])), 2.0, rtol=tol)
        zero = analysis.filter_normalize(jax.tree_util.tree_map(jnp.zeros_like, params), params)
        assert all(float(jnp.max(jnp.abs(a))) == 0.0 for a in jax.tree_util.tree_leaves(zero))


def test_errors():
    params, d, _, x, y = problem(0, jnp.float32)
    alphas = np.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="direction has pytree structure"):
        analysis.loss_along_direction(mlp_loss, params, {"layer0": d["layer0"]}, alphas, x, y)
    bad_shape = jax.tree_util.tree_map(lambda a: a, d)
    bad_shape["layer1"]["bias"] = jnp.ones(3)
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        analysis.loss_along_direction(mlp_loss, params, bad_shape, alphas, x, y)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        analysis.loss_along_direction(mlp_loss, params, d, np.zeros((2, 2)), x, y)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        analysis.loss_along_direction(mlp_loss, params, d, [], x, y)
    with pytest.raises(ValueError, match="alphas contains 1 NaN/inf"):
        analysis.loss_along_direction(mlp_loss, params, d, [0.0, np.nan], x, y)
    nan_dir = jax.tree_util.tree_map(lambda a: a, d)
    nan_dir["layer0"]["bias"] = nan_dir["layer0"]["bias"].at[0].set(jnp.inf)
    with pytest.raises(ValueError, match="direction leaf 'layer0/bias' contains 1 NaN/inf"):
        analysis.loss_along_direction(mlp_loss, params, nan_dir, alphas, x, y)
    with pytest.raises(ValueError, match="d2 leaf 'layer0/bias' contains 1 NaN/inf"):
        analysis.loss_surface_2d(mlp_loss, params, d, nan_dir, alphas, alphas, x, y)
    with pytest.raises(ValueError, match="batch\\[1\\] contains 1 NaN/inf value\\(s\\); expected finite data"):
        analysis.interpolate(mlp_loss, params, d, alphas, x, y.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="chunk_size=0 is invalid"):
        analysis.loss_along_direction(mlp_loss, params, d, alphas, x, y, chunk_size=0)
    with pytest.raises(ValueError, match="betas must be a non-empty 1-D"):
        analysis.loss_surface_2d(mlp_loss, params, d, d, alphas, [], x, y)
    with pytest.raises(ValueError, match="params_b has pytree structure"):
        analysis.interpolate(mlp_loss, params, {"a": jnp.ones(1)}, alphas, x, y)
    with pytest.raises(ValueError, match="batch is empty"):
        analysis.loss_along_direction(mlp_loss, params, d, alphas, x[:0], y[:0])
    with pytest.raises(ValueError, match="empty pytree"):
        analysis.filter_normalized_direction(jax.random.PRNGKey(0), {})
