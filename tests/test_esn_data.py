"""Sequence data: Mackey-Glass (reservoirpy-exact against recorded reservoirpy output, RK4 convergence), forecasting
splits, memory tasks, bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data import copy_memory, delay_lines, delayed_recall, forecasting_split, mackey_glass

# reservoirpy 0.4.2: mackey_glass(2000)[[0, 1, 2, 10, 100, 1000, 1999], 0] and
# mackey_glass(300, seed=7, h=0.5, tau=20)[[0, 1, 50, 299], 0].
RPY_DEFAULT = [1.2, 1.13753884, 1.06168703, 0.64619195, 1.29659793, 0.81285757, 0.9487498]
RPY_SEED7 = [1.2, 1.16972886, 1.04567077, 1.87972966]


def test_mackey_glass_reservoirpy_recurrence_matches_reservoirpy():
    with jax.enable_x64(True):
        x = np.asarray(mackey_glass(2000, method="reservoirpy", dtype=jnp.float64))[:, 0]
        np.testing.assert_allclose(x[[0, 1, 2, 10, 100, 1000, 1999]], RPY_DEFAULT, rtol=1e-8)
        y = np.asarray(mackey_glass(300, method="reservoirpy", seed=7, sample_step=0.5, tau=20.0,
                                    dtype=jnp.float64))[:, 0]
        np.testing.assert_allclose(y[[0, 1, 50, 299]], RPY_SEED7, rtol=1e-8)
    x32 = mackey_glass(2000, method="reservoirpy")
    assert x32.dtype == jnp.float32 and x32.shape == (2000, 1)
    try:
        from reservoirpy.datasets import mackey_glass as rpy_mg
    except ImportError:
        return
    np.testing.assert_array_equal(x, rpy_mg(2000)[:, 0])  # bit for bit


def test_mackey_glass_rk4_converges():
    """Halving the RK4 step cuts the error against a fine reference by about 4 (second order: the history's
    derivative jumps at t = 0 propagate to multiples of tau) over 150 time units."""
    coarse, mid, fine = (np.asarray(mackey_glass(151, integration_step=dt))[:, 0].astype(np.float64)
                         for dt in (0.1, 0.05, 0.0125))
    e1, e2 = np.abs(coarse - fine).max(), np.abs(mid - fine).max()
    assert e2 < e1 / 3 and e1 < 1e-3
    assert 0.4 < coarse.min() and coarse.max() < 1.4  # the attractor's range
    shifted = np.asarray(mackey_glass(20, history=np.full(200, 1.2), x0=1.2))[:, 0]
    np.testing.assert_allclose(shifted, coarse[:20], rtol=1e-6)  # constant history equals the default


def test_forecasting_split_is_reservoirpys():
    series = jnp.arange(100.0)[:, None]
    x_tr, x_te, y_tr, y_te = forecasting_split(series, horizon=3, test_fraction=0.2)
    assert (x_tr.shape[0], x_te.shape[0]) == (77, 20)
    np.testing.assert_array_equal(np.asarray(y_te - x_te), 3.0)
    assert float(x_te[-1, 0]) == 96.0 and float(y_tr[0, 0]) == 3.0
    try:
        from reservoirpy.datasets import to_forecasting
    except ImportError:
        return
    for a, b in zip(forecasting_split(series, horizon=3, test_fraction=0.2),
                    to_forecasting(np.asarray(series), forecast=3, test_size=0.2)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_memory_tasks():
    u, y = delay_lines(jax.random.PRNGKey(0), 50, 4, amplitude=0.3)
    assert u.shape == (50, 1) and y.shape == (50, 4) and float(jnp.max(jnp.abs(u))) <= 0.3
    for k in range(1, 5):
        np.testing.assert_array_equal(np.asarray(y[k:, k - 1]), np.asarray(u[:-k, 0]))
        np.testing.assert_array_equal(np.asarray(y[:k, k - 1]), 0.0)
    task = delayed_recall(jax.random.PRNGKey(1), 3, 10, 4)
    np.testing.assert_array_equal(np.asarray(task.targets[:, 4:]), np.asarray(task.inputs[:, :6]))
    np.testing.assert_array_equal(np.asarray(task.mask[0]), (np.arange(10) >= 4).astype(np.float32))
    cp = copy_memory(jax.random.PRNGKey(2), 2, num_symbols=5, length=3, delay=4)
    assert cp.inputs.shape == (2, 10, 7) and cp.targets.shape == (2, 10, 6)
    symbols = np.argmax(np.asarray(cp.inputs[:, :3]), -1)
    np.testing.assert_array_equal(np.argmax(np.asarray(cp.targets[:, 7:]), -1), symbols)
    assert np.all(np.argmax(np.asarray(cp.inputs[:, 6]), -1) == 6)  # the cue just before recall
    np.testing.assert_array_equal(np.asarray(cp.mask[0]), (np.arange(10) >= 7).astype(np.float32))


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_steps"):
        mackey_glass(0)
    with pytest.raises(ValueError, match="tau"):
        mackey_glass(10, tau=0.0)
    with pytest.raises(ValueError, match="method"):
        mackey_glass(10, method="euler")
    with pytest.raises(ValueError, match="multiple"):
        mackey_glass(10, integration_step=0.3)
    with pytest.raises(ValueError, match="history"):
        mackey_glass(10, history=np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        mackey_glass(10, history=np.full(300, np.nan))
    with pytest.raises(ValueError, match="history"):
        mackey_glass(10, method="reservoirpy", history=np.ones(3))
    with pytest.raises(ValueError, match="rank 2"):
        forecasting_split(jnp.ones(10))
    with pytest.raises(ValueError, match="too short"):
        forecasting_split(jnp.ones((0, 1)))
    with pytest.raises(ValueError, match="NaN"):
        forecasting_split(jnp.full((10, 1), jnp.inf))
    with pytest.raises(ValueError, match="test_fraction"):
        forecasting_split(jnp.ones((10, 1)), test_fraction=1.0)
    with pytest.raises(ValueError, match="delay"):
        delayed_recall(jax.random.PRNGKey(0), 2, 5, 5)
    with pytest.raises(ValueError, match="max_delay"):
        delay_lines(jax.random.PRNGKey(0), 5, 5)
    with pytest.raises(TypeError, match="int"):
        delay_lines(jax.random.PRNGKey(0), 5.0, 2)
