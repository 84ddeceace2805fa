"""The training monitor (eq. 8.10) and the fit driver, against dense references and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from analysis.monitor import CurvatureMonitor
from jaxdl.train import fit, make_optimizer
from tests.conftest import SPECTRUM, quadratic_problem
from tests.test_hessian import small_mlp


def psd_quadratic(dtype):
    """A convex quadratic (|spectrum|) so SGD with a small step is stable."""
    loss, params, a, b = quadratic_problem(0, dtype)
    evals, evecs = jnp.linalg.eigh(a)
    return loss, params, (evecs * jnp.abs(evals)) @ evecs.T, b


@pytest.mark.parametrize("x64", [False, True])
def test_records_match_dense_quantities_and_eq_8_10_is_exact_on_a_quadratic(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        loss, params, a, b = psd_quadratic(dtype)
        lr = 0.01
        mon = CurvatureMonitor(every=1, learning_rate=lr, lanczos_steps=0)
        _, hist = fit(loss, params, make_optimizer("sgd", lr), (a, b), steps=5, monitor=mon)
        # Replay the SGD trajectory by hand and compare every record with dense linear algebra.
        w = np.asarray(params["w"], np.float64)
        A, B = np.asarray(a, np.float64), np.asarray(b, np.float64)
        rtol = 1e-10 if x64 else 2e-4
        for t in range(5):
            g = A @ w + B
            np.testing.assert_allclose(hist.monitor["gTg"][t], g @ g, rtol=rtol)
            np.testing.assert_allclose(hist.monitor["gTHg"][t], g @ A @ g, rtol=rtol)
            w_new = w - lr * g
            actual = 0.5 * w_new @ A @ w_new + B @ w_new - (0.5 * w @ A @ w + B @ w)
            # For a quadratic the second-order prediction is exact.
            np.testing.assert_allclose(hist.monitor["predicted_change"][t], actual, rtol=10 * rtol)
            np.testing.assert_allclose(hist.monitor["actual_change"][t], actual, rtol=10 * rtol, atol=1e-5)
            w = w_new
        assert np.all(np.isnan(hist.monitor["top_eigenvalue"]))


def test_curvature_ratio_above_one_predicts_a_rise():
    # Ill-conditioning in the book's sense: with eps g^T H g / (2 g^T g) > 1 the step raises the loss.
    with jax.enable_x64(True):
        loss, params, a, b = psd_quadratic(jnp.float64)
        for lr, rises in ((0.01, False), (0.1, True)):
            mon = CurvatureMonitor(every=1, learning_rate=lr, lanczos_steps=0)
            _, hist = fit(loss, params, make_optimizer("sgd", lr), (a, b), steps=3, monitor=mon)
            ratio, actual = hist.monitor["curvature_ratio"], hist.monitor["actual_change"]
            assert np.all((ratio > 1) == rises) and np.all((actual > 0) == rises), (ratio, actual)


def test_warm_started_lanczos_tracks_the_top_eigenvalue():
    with jax.enable_x64(True):
        loss, params, a, b = psd_quadratic(jnp.float64)
        mon = CurvatureMonitor(every=1, learning_rate=1e-4, lanczos_steps=4)
        _, hist = fit(loss, params, make_optimizer("sgd", 1e-4), (a, b), steps=30, monitor=mon)
        top, resid = hist.monitor["top_eigenvalue"], hist.monitor["top_residual"]
        exact = np.abs(SPECTRUM).max()
        # 4 products from a random start are far from converged; warm starts accumulate them.
        assert abs(top[0] - exact) / exact > 1e-3
        np.testing.assert_allclose(top[-1], exact, rtol=1e-8)
        assert resid[-1] < 1e-3 * resid[0]


def test_top_eigenvalue_on_the_mlp_matches_lanczos():
    loss, params, x, y = small_mlp(0, jnp.float32)
    mon = CurvatureMonitor(every=1, learning_rate=1e-6, lanczos_steps=6)
    state, hist = fit(loss, params, make_optimizer("sgd", 1e-6), (x, y), steps=12, monitor=mon)
    ref = analysis.hessian_eigs(loss, state.params, x, y, k=1, num_matvecs=50).eigenvalues[0]
    np.testing.assert_allclose(hist.monitor["top_eigenvalue"][-1], float(ref), rtol=1e-3)


def test_monitoring_does_not_change_training():
    loss, params, x, y = small_mlp(1, jnp.float32)
    opt = make_optimizer("momentum", 0.05)
    s_plain, h_plain = fit(loss, params, opt, (x, y), steps=20, batch_size=10, key=jax.random.PRNGKey(4))
    s_mon, h_mon = fit(loss, params, opt, (x, y), steps=20, batch_size=10, key=jax.random.PRNGKey(4),
                       monitor=CurvatureMonitor(every=3, learning_rate=0.05, lanczos_steps=2))
    for p, q in zip(jax.tree_util.tree_leaves(s_plain.params), jax.tree_util.tree_leaves(s_mon.params)):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(h_mon.monitor_step, np.arange(0, 20, 3))
    np.testing.assert_allclose(h_plain.loss, h_mon.loss, rtol=1e-5)


def test_eigen_every_and_actual_change_switches():
    with jax.enable_x64(True):
        loss, params, a, b = psd_quadratic(jnp.float64)
        opt = make_optimizer("sgd", 1e-3)
        full = CurvatureMonitor(every=2, learning_rate=1e-3, lanczos_steps=3)
        lean = CurvatureMonitor(every=2, learning_rate=1e-3, lanczos_steps=3, eigen_every=6, actual_change=False)
        _, h_full = fit(loss, params, opt, (a, b), steps=13, monitor=full)
        _, h_lean = fit(loss, params, opt, (a, b), steps=13, monitor=lean)
    np.testing.assert_array_equal(h_lean.monitor_step, np.arange(0, 13, 2))
    measured = ~np.isnan(h_lean.monitor["top_eigenvalue"])
    np.testing.assert_array_equal(h_lean.monitor_step[measured], [0, 6, 12])
    assert np.all(np.isnan(h_lean.monitor["actual_change"])) and not np.any(np.isnan(h_full.monitor["actual_change"]))
    # The eq. 8.10 quantities do not depend on the switches, and the first eigenvalue measurement is the same run.
    for name in ("loss", "gTg", "gTHg", "predicted_change"):
        np.testing.assert_array_equal(h_lean.monitor[name], h_full.monitor[name])
    assert h_lean.monitor["top_eigenvalue"][0] == h_full.monitor["top_eigenvalue"][0]


def test_same_key_same_bits():
    loss, params, x, y = small_mlp(2, jnp.float32)
    opt = make_optimizer("adam", 0.01)
    runs = [fit(loss, params, opt, (x, y), steps=15, batch_size=8, key=jax.random.PRNGKey(9),
                monitor=CurvatureMonitor(every=5, learning_rate=0.01, lanczos_steps=3)) for _ in range(2)]
    for p, q in zip(jax.tree_util.tree_leaves(runs[0][0].params), jax.tree_util.tree_leaves(runs[1][0].params)):
        assert np.asarray(p).tobytes() == np.asarray(q).tobytes()
    assert runs[0][1].monitor["top_eigenvalue"].tobytes() == runs[1][1].monitor["top_eigenvalue"].tobytes()


def test_bad_settings():
    with pytest.raises(ValueError, match="every=0"):
        CurvatureMonitor(every=0)
    with pytest.raises(ValueError, match="learning_rate=-0.1"):
        CurvatureMonitor(learning_rate=-0.1)
    with pytest.raises(ValueError, match="lanczos_steps=-1"):
        CurvatureMonitor(lanczos_steps=-1)
    with pytest.raises(ValueError, match="eigen_every=3 is invalid; expected a positive multiple of every=2"):
        CurvatureMonitor(every=2, eigen_every=3)
    with pytest.raises(ValueError, match="actual_change=1"):
        CurvatureMonitor(actual_change=1)
    with pytest.raises(ValueError, match="lanczos_steps=5 exceeds"):
        CurvatureMonitor(lanczos_steps=5).init({"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="learning_rate=-1"):
        make_optimizer("sgd", -1)
    with pytest.raises(ValueError, match="optimizer='lbfgs' is invalid"):
        make_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match="clip_norm=0"):
        make_optimizer("sgd", 0.1, clip_norm=0)
    loss, params, x, y = small_mlp(0, jnp.float32)
    with pytest.raises(ValueError, match="steps=0"):
        fit(loss, params, make_optimizer("sgd", 0.1), (x, y), steps=0)
    with pytest.raises(ValueError, match="empty"):
        fit(loss, params, make_optimizer("sgd", 0.1), (x[:0], y[:0]), steps=1)
    with pytest.raises(ValueError, match="batch_size=41"):
        fit(loss, params, make_optimizer("sgd", 0.1), (x, y), steps=1, batch_size=41)


def test_train_scan_equals_stepping_and_vmaps_over_seeds():
    from jaxdl.train import init_state, make_train_step, train_scan

    loss, params, x, y = small_mlp(3, jnp.float32)
    opt = make_optimizer("momentum", 0.05)
    scanned, losses = jax.jit(lambda p: train_scan(loss, opt, p, x, y, steps=7))(params)
    step, state, ref = make_train_step(loss, opt), init_state(params, opt), []
    for _ in range(7):
        state, metrics = step(state, x, y)
        ref.append(float(metrics["loss"]))
    np.testing.assert_allclose(np.asarray(losses), ref, rtol=1e-5)
    for p, q in zip(jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=1e-5, atol=1e-6)
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
    both, _ = jax.vmap(lambda p: train_scan(loss, opt, p, x, y, steps=7))(stacked)
    for p, q in zip(jax.tree_util.tree_leaves(both), jax.tree_util.tree_leaves(scanned)):
        np.testing.assert_allclose(np.asarray(p[0]), np.asarray(q), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="steps=0"):
        train_scan(loss, opt, params, x, y, steps=0)


def test_train_scan_passes_each_step_its_own_key():
    from jaxdl.train import init_state, make_train_step, train_scan

    loss, params, x, y = small_mlp(4, jnp.float32)

    def noisy(p, xb, yb, k):  # a fresh input corruption every step, as in dropout or a denoising autoencoder
        return loss(p, xb + 0.1 * jax.random.normal(k, xb.shape), yb)

    opt, key = make_optimizer("sgd", 0.05), jax.random.PRNGKey(5)
    trained, losses = jax.jit(lambda p, xb, yb, k: train_scan(noisy, opt, p, xb, yb, steps=6, key=k))(params, x, y, key)
    step, state, ref = make_train_step(noisy, opt), init_state(params, opt), []
    for k in jax.random.split(key, 6):
        state, metrics = step(state, x, y, k)
        ref.append(float(metrics["loss"]))
    np.testing.assert_allclose(np.asarray(losses), ref, rtol=1e-5)
    for p, q in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=1e-5, atol=1e-6)
