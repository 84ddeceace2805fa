"""Echo state network and liquid state machine against references: numpy loops, scikit-learn's Ridge, dense
eigenvalues, a shift-register reservoir with known memory, and (when installed) reservoirpy itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.data import forecasting_split, mackey_glass
from jaxdl.models import (
    ESN,
    LSM,
    ReservoirWeights,
    memory_capacity,
    readout_statistics,
    reservoir_matrix,
    ridge_regression,
    run_reservoir,
    solve_readout,
    spectral_radius_dense,
    state_statistics,
    to_dense,
)
from jaxdl.models.esn import exact_mask, input_matrix
from jaxdl.models.lsm import LIFState, lif_step


def test_reservoir_matrix_radius_connectivity_and_storage():
    with jax.enable_x64(True):
        for seed in range(2):
            key = jax.random.PRNGKey(seed)
            dense = reservoir_matrix(key, 60, spectral_radius=0.8, connectivity=0.1, sparse=False, dtype=jnp.float64)
            sparse = reservoir_matrix(key, 60, spectral_radius=0.8, connectivity=0.1, dtype=jnp.float64)
            fan = reservoir_matrix(key, 60, spectral_radius=1.3, fan_in=7, dtype=jnp.float64)
            assert abs(spectral_radius_dense(dense) - 0.8) < 1e-12
            assert np.count_nonzero(np.asarray(dense)) == 360  # exactly round(0.1 * 60^2)
            np.testing.assert_array_equal(np.asarray(to_dense(sparse)), np.asarray(dense))  # same draw, ELL layout
            f = np.asarray(to_dense(fan))
            assert abs(spectral_radius_dense(f) - 1.3) < 1e-12 and np.all(np.count_nonzero(f, axis=1) == 7)
            h = jnp.asarray(np.random.default_rng(seed).normal(size=60))
            from jaxdl.models.esn import recurrent_matvec
            np.testing.assert_allclose(np.asarray(recurrent_matvec(sparse, h)), np.asarray(dense) @ np.asarray(h),
                                       rtol=1e-12)
    mask = exact_mask(jax.random.PRNGKey(0), (100, 1), 0.1)
    assert int(mask.sum()) == 10
    w_in = input_matrix(jax.random.PRNGKey(1), 50, 2, input_scaling=0.5, connectivity=0.2)
    assert set(np.unique(np.asarray(w_in)).tolist()) <= {-0.5, 0.0, 0.5} and np.count_nonzero(w_in) == 20


@pytest.mark.parametrize("x64", [False, True])
def test_run_reservoir_matches_numpy_loop(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        for seed in range(2):
            rng = np.random.default_rng(seed)
            w, w_in, b = rng.normal(size=(8, 8)) / 3, rng.normal(size=(8, 2)), rng.normal(size=8) * 0.1
            u = rng.normal(size=(15, 2))
            weights = ReservoirWeights(*(jnp.asarray(a, dtype) for a in (w_in, w, b)))
            h_final, states = run_reservoir(weights, jnp.zeros(8, dtype), jnp.asarray(u, dtype), 0.3)
            h, ref = np.zeros(8), []
            for x in u:
                h = 0.7 * h + 0.3 * np.tanh(w @ h + w_in @ x + b)
                ref.append(h)
            np.testing.assert_allclose(np.asarray(states), ref, rtol=1e-12 if x64 else 1e-5, atol=1e-6)
            np.testing.assert_array_equal(np.asarray(h_final), np.asarray(states[-1]))


@pytest.mark.parametrize("x64", [False, True])
def test_ridge_matches_scikit_learn(x64):
    from sklearn.linear_model import Ridge

    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        for seed in range(3):
            rng = np.random.default_rng(seed)
            x = rng.normal(size=(200, 6)) + 3.0  # an offset: the bias must not be penalised
            y = x @ rng.normal(size=(6, 2)) + 5.0 + 0.1 * rng.normal(size=(200, 2))
            for alpha in (0.0, 1e-3, 10.0):
                w, b = ridge_regression(jnp.asarray(x, dtype), jnp.asarray(y, dtype), alpha)
                ref = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(x, y)
                tol = 1e-9 if x64 else 2e-3
                np.testing.assert_allclose(np.asarray(w), ref.coef_.T, rtol=tol, atol=tol)
                np.testing.assert_allclose(np.asarray(b), ref.intercept_, rtol=tol, atol=tol)


def test_streamed_statistics_equal_stored_states():
    """Chunked accumulation (with a remainder chunk, a warm-up and symmetric blocks) = the same sums on all states."""
    with jax.enable_x64(True):
        w = reservoir_matrix(jax.random.PRNGKey(0), 300, spectral_radius=0.9, dtype=jnp.float64)
        w_in = input_matrix(jax.random.PRNGKey(1), 300, 1, dtype=jnp.float64)
        weights = ReservoirWeights(w_in, w, jnp.zeros(300, jnp.float64))
        u = jnp.sin(jnp.arange(530.0) / 7.0)[:, None]
        y = jnp.cos(jnp.arange(530.0) / 5.0)[:, None] * jnp.ones((1, 2))
        h_end, stats = readout_statistics(weights, jnp.zeros(300), u, y, 0.3, warmup=30, chunk=64)
        h_ref, states = run_reservoir(weights, jnp.zeros(300), u, 0.3)
        ref = state_statistics(states[30:], y[30:])
        np.testing.assert_array_equal(np.asarray(h_end), np.asarray(h_ref))
        for name in ("count", "x_shift", "y_shift", "sum_dx", "sum_dy", "dxdx", "dxdy"):
            np.testing.assert_allclose(np.asarray(getattr(stats, name)), np.asarray(getattr(ref, name)), rtol=1e-11,
                                       atol=1e-11, err_msg=name)
        for a, b in zip(solve_readout(stats, 1e-2), solve_readout(ref, 1e-2)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-10)
        gram = np.asarray(stats.dxdx)
        np.testing.assert_allclose(gram, gram.T, rtol=0, atol=1e-14 * np.abs(gram).max())


def test_esn_mackey_glass_and_generation_loop():
    with jax.enable_x64(True):
        series = mackey_glass(1000, method="reservoirpy", dtype=jnp.float64)
        x_tr, x_te, y_tr, y_te = forecasting_split(series)
        rmse = []
        for s in range(2):
            esn = ESN(1, 100, 1, spectral_radius=1.25, leak=0.3, ridge=1e-5, rngs=nnx.Rngs(s), dtype=jnp.float64)
            pred = esn.fit(x_tr, y_tr, warmup=100)(x_te)
            rmse.append(float(jnp.sqrt(jnp.mean((pred - y_te) ** 2))))
        persistence = float(jnp.sqrt(jnp.mean((x_te - y_te) ** 2)))
        assert np.median(rmse) < persistence / 5
        # Closed loop = feeding each prediction back by hand.
        state = esn.state[...]
        gen = esn.generate(5)
        esn.reset(state)
        manual = []
        for _ in range(5):
            y = esn.state[...] @ esn.w_out[...] + esn.b_out[...]
            manual.append(y)
            esn.run(y[None])
        np.testing.assert_allclose(np.asarray(gen), np.asarray(jnp.stack(manual)), rtol=1e-12)


def test_esn_reproduces_reservoirpy_with_its_weights():
    rpy = pytest.importorskip("reservoirpy")
    with jax.enable_x64(True):
        series = mackey_glass(600, method="reservoirpy", dtype=jnp.float64)
        x_tr, x_te, y_tr, y_te = (np.asarray(a) for a in forecasting_split(series))
        ref = rpy.ESN(units=50, sr=1.25, lr=0.3, ridge=1e-5, seed=3)
        ref.fit(x_tr, y_tr, warmup=50)
        expected = ref.run(x_te)
        esn = ESN(1, 50, 1, spectral_radius=1.25, leak=0.3, ridge=1e-5, sparse=False, rngs=nnx.Rngs(0),
                  dtype=jnp.float64)
        dense = lambda m: m.toarray() if hasattr(m, "toarray") else np.asarray(m)  # noqa: E731
        esn.w[...], esn.w_in[...] = jnp.asarray(dense(ref.reservoir.W)), jnp.asarray(dense(ref.reservoir.Win))
        got = esn.fit(jnp.asarray(x_tr), jnp.asarray(y_tr), warmup=50)(jnp.asarray(x_te))
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-8)


def test_memory_capacity_of_a_shift_register():
    """A delay line (unit i+1 copies unit i, input into unit 0, tanh nearly linear) remembers exactly n - 1 delays."""
    with jax.enable_x64(True):
        n = 10
        w = jnp.eye(n, k=-1)
        w_in = jnp.zeros((n, 1)).at[0, 0].set(1e-3)
        weights = ReservoirWeights(w_in, w, jnp.zeros(n))
        from jaxdl.data import delay_lines

        u, delayed = delay_lines(jax.random.PRNGKey(0), 3000, 15, dtype=jnp.float64)
        _, states = run_reservoir(weights, jnp.zeros(n), u, 1.0)
        mc = np.asarray(memory_capacity(states[20:], delayed[20:], train_steps=1500, ridge=0.0))
        np.testing.assert_allclose(mc[: n - 1], 1.0, atol=1e-6)
        assert np.all(mc[n - 1:] < 0.01)


def test_lsm_spikes_binary_and_step_matches_numpy():
    with jax.enable_x64(True):
        lsm = LSM(1, 40, 1, rngs=nnx.Rngs(0), dtype=jnp.float64)
        u = jnp.sin(jnp.arange(300.0) / 6.0)[:, None]
        spikes, traces = lsm.run(u)
        assert set(np.unique(np.asarray(spikes)).tolist()) <= {0.0, 1.0} and 0 < float(spikes.mean()) < 1
        w, w_in, b = (np.asarray(a) for a in (lsm.w[...], lsm.w_in[...], lsm.bias[...]))
        v, s, r = np.zeros(40), np.zeros(40), np.zeros(40)
        for t in range(300):
            v = 0.8 * v * (1 - s) + w @ s + w_in @ np.asarray(u[t]) + b
            s = (v >= 1.0).astype(float)
            r = 0.3 * r + 0.7 * s
            np.testing.assert_array_equal(np.asarray(spikes[t]), s)
        np.testing.assert_allclose(np.asarray(traces[-1]), r, rtol=1e-12)
        st = lif_step(lsm.weights, LIFState(jnp.zeros(40), jnp.zeros(40), jnp.zeros(40)), u[0], 0.8, 1.0, 0.3)
        assert st.s.shape == (40,)


def test_bad_inputs():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="spectral_radius"):
        ESN(1, 10, spectral_radius=0.0, rngs=rngs)
    with pytest.raises(ValueError, match="spectral_radius"):
        ESN(1, 10, spectral_radius=-1.0, rngs=rngs)
    with pytest.raises(ValueError, match="leak"):
        ESN(1, 10, leak=0.0, rngs=rngs)
    with pytest.raises(ValueError, match="leak"):
        ESN(1, 10, leak=1.01, rngs=rngs)
    with pytest.raises(ValueError, match="ridge"):
        ESN(1, 10, ridge=-1e-3, rngs=rngs)
    with pytest.raises(ValueError, match="connectivity"):
        ESN(1, 10, connectivity=0.0, rngs=rngs)
    with pytest.raises(ValueError, match="fan_in"):
        ESN(1, 10, fan_in=11, rngs=rngs)
    with pytest.raises(ValueError, match="input_scaling"):
        ESN(1, 10, input_scaling=0.0, rngs=rngs)
    esn = ESN(1, 10, rngs=rngs)
    with pytest.raises(ValueError, match="rank 2"):
        esn.fit(jnp.ones(5), jnp.ones((5, 1)))
    with pytest.raises(ValueError, match="rank 2"):
        esn(jnp.ones((2, 5, 1)))
    with pytest.raises(ValueError, match="empty"):
        esn(jnp.ones((0, 1)))
    with pytest.raises(ValueError, match="features"):
        esn(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        esn.fit(jnp.full((5, 1), jnp.nan), jnp.ones((5, 1)))
    with pytest.raises(ValueError, match="steps"):
        esn.fit(jnp.ones((5, 1)), jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="warmup"):
        esn.fit(jnp.ones((5, 1)), jnp.ones((5, 1)), warmup=5)
    with pytest.raises(ValueError, match="num_steps"):
        esn.generate(0)
    with pytest.raises(ValueError, match="ridge"):
        ridge_regression(jnp.ones((3, 1)), jnp.ones((3, 1)), -1.0)
    with pytest.raises(ValueError, match="collinear"):
        ridge_regression(jnp.ones((4, 2)), jnp.arange(4.0)[:, None], 0.0)
    with pytest.raises(ValueError, match="decay"):
        LSM(1, 10, decay=1.0, rngs=rngs)
    with pytest.raises(ValueError, match="threshold"):
        LSM(1, 10, threshold=0.0, rngs=rngs)


def test_unrolled_time_loop_gives_the_same_states_fit_and_predictions():
    with jax.enable_x64(True):
        x_tr, x_te, y_tr, _ = forecasting_split(mackey_glass(600, dtype=jnp.float64), horizon=1, test_fraction=0.2)
        out = []
        for unroll in (1, 4):
            esn = ESN(1, 40, 1, unroll=unroll, rngs=nnx.Rngs(3), dtype=jnp.float64)
            states = np.asarray(esn.run(x_tr))
            esn.reset()
            esn.fit(x_tr, y_tr, warmup=50)
            out.append((states, np.asarray(esn.w_out[...]), np.asarray(esn(x_te))))
        # The recurrence agrees to rounding; the ridge solve (ridge 1e-5) amplifies rounding by its conditioning.
        np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(out[1][2], out[0][2], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="unroll=0"):
        ESN(1, 10, unroll=0, rngs=nnx.Rngs(0))
