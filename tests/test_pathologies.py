"""The optimization pathologies of Deep Learning sec. 8.2, each asserted numerically on its quick setting, plus the
helpers of the experiments against independent references (enumeration of all minibatches, closed forms, scipy)."""

from __future__ import annotations

import itertools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import analysis

from jaxdl.experiments import cliffs, inexact_gradients, initialization, landscapes, local_minima, saddles
from jaxdl.models.init import initialize_mlp
from jaxdl.problems import teacher_student

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_registered_names_and_readme_table():
    """Hyphenated names like every other experiment, each listed in README.md's table with its registry summary
    (the table quotes the summaries, with ``|`` escaped for Markdown)."""
    from jaxdl.experiments import EXPERIMENTS

    modules = {"saddles": saddles, "local-minima": local_minima, "cliffs": cliffs,
               "inexact-gradients": inexact_gradients, "initialization": initialization, "landscapes": landscapes}
    table = README.read_text()
    for name, module in modules.items():
        assert EXPERIMENTS[name] is module.EXPERIMENT, name
    for name, experiment in EXPERIMENTS.items():  # every registered experiment, not only these six
        summary = experiment.summary.replace("|", "\\|")
        assert f"| `{name}` | {summary} |" in table, name


# --- Saddle points and the index (sec. 8.2.3) -------------------------------------------------------------------

def test_saddles_quick():
    r = saddles.EXPERIMENT.run(quick=True)
    census, toy, net = r.metrics["census"], r.metrics["toy_saddle"], r.metrics["network_saddle"]
    assert r.passed, r.verdict
    assert len(census["critical_points"]) >= 6 and all(c["grad_norm"] <= 1e-9 for c in census["critical_points"])
    assert census["distinct_critical_points"] >= 6
    assert census["spearman_loss_index"] > 0.5
    assert census["mean_index_highest_third"] > census["mean_index_lowest_third"]
    # x^2 - y^2: noisy GD leaves along y, noise-free GD converges to the saddle, Newton stays there.
    assert toy["gd_noise_final_abs_y"] > 1 and toy["gd_noise_cosine_ey"] > 0.999
    assert toy["gd_no_noise_final_abs_y"] == 0.0 and abs(toy["gd_no_noise_final_x"]) < 1e-6
    assert toy["newton_max_distance_late"] < 10 * toy["noise"]
    # The all-units-equal network saddle: negative curvature of multiplicity hidden - 1 (one per unit difference).
    assert net["saddle_grad_norm"] < 1e-12 and net["lambda_min"] < 0
    assert net["lambda_min_multiplicity"] == r.metrics["network"]["hidden"] - 1
    assert net["escape_alignment"] > 0.9 > net["random_alignment"]
    assert net["gd_noise_final_loss"] < 0.95 * net["saddle_loss"]
    assert net["gd_no_noise_symmetry_gap"] == 0.0 and net["gd_no_noise_final_loss"] == pytest.approx(
        net["saddle_loss"], abs=1e-12)
    assert net["newton_final_distance"] < 1e3 * net["noise"]


def test_noisy_descent_newton_solves_a_quadratic_in_one_step():
    with jax.enable_x64(True):
        a = jnp.diag(jnp.array([2.0, -3.0, 0.5]))
        path, losses = analysis.noisy_descent(lambda w, a: 0.5 * w @ a @ w + w[0], jnp.ones(3), a, method="newton",
                                             steps=2)
        np.testing.assert_allclose(path[1], [-0.5, 0.0, 0.0], atol=1e-14)  # the critical point A w = -e_1
        gd, _ = analysis.noisy_descent(lambda w, a: 0.5 * w @ a @ w, jnp.ones(3), a, method="gradient", steps=3,
                                      learning_rate=0.1)
        np.testing.assert_allclose(gd[3], (1 - 0.1 * np.array([2.0, -3.0, 0.5])) ** 3, rtol=1e-14)


def test_distinct_critical_points_merge_repeats():
    records = [{"loss": 0.5, "index": 0.1}, {"loss": 0.1, "index": 0.0}, {"loss": 0.5 * (1 + 1e-12), "index": 0.1},
               {"loss": 0.5, "index": 0.2}, {"loss": 0.1 + 1e-6, "index": 0.0}]
    got = analysis.distinct_critical_points(records)
    assert [(r["loss"], r["index"]) for r in got] == [(0.1, 0.0), (0.1 + 1e-6, 0.0), (0.5, 0.1), (0.5, 0.2)]


def test_saddle_helper_errors():
    with pytest.raises(ValueError, match="method='sgd' is invalid"):
        analysis.noisy_descent(lambda w: jnp.sum(w), jnp.ones(2), method="sgd", steps=1)
    with pytest.raises(ValueError, match="noise=-1.0 is invalid"):
        analysis.noisy_descent(lambda w: jnp.sum(w), jnp.ones(2), method="gradient", steps=1, noise=-1)
    with pytest.raises(ValueError, match="hidden=0 is invalid"):
        teacher_student(2, 0, 8, 0)
    with pytest.raises(ValueError, match="weight_decay=-1"):
        teacher_student(2, 2, 8, 0, weight_decay=-1)


# --- Local minima (sec. 8.2.2) ----------------------------------------------------------------------------------

def test_local_minima_quick():
    from scipy.optimize import minimize

    r = local_minima.EXPERIMENT.run(quick=True)
    assert r.passed, r.verdict
    sig, relu = r.metrics["sigmoid_unit"], r.metrics["dead_relu_network"]
    glob, local = sig["minima"][0], sig["minima"][-1]
    assert local["grad_norm"] < 1e-10 and min(local["eigenvalues"]) > 0 and local["loss"] > glob["loss"] + 0.2
    assert sig["barrier_on_segment"] > 0 and sig["perturbation_min_change"] > 0
    # Independent reference: scipy's BFGS on the same four points, started at the local minimum, stays there.
    x, y = np.array(local_minima.SIGMOID_X), np.array(local_minima.SIGMOID_Y)

    def f(p):
        return np.mean((1 / (1 + np.exp(-(p[0] * x + p[1]))) - y) ** 2)

    res = minimize(f, [local["w"] + 0.01, local["b"] - 0.01], method="BFGS", options={"gtol": 1e-12})
    np.testing.assert_allclose(res.x, [local["w"], local["b"]], atol=1e-5)
    assert res.fun == pytest.approx(local["loss"], rel=1e-9)
    # Dead ReLUs: predicting the mean costs var(y)/2; a flat but genuine local minimum; training does far better.
    assert relu["loss"] == pytest.approx(relu["half_variance"], rel=1e-12) and relu["kind"] == "minimum"
    assert relu["perturbation_min_change"] >= -1e-15 and relu["trained_loss"] < 0.1 * relu["loss"]


def test_perturbation_test_sign():
    def loss(p, s):
        return p[0] ** 2 + s * p[1] ** 2  # a bowl for s = 1, a saddle for s = -1: one compilation for both

    bowl = local_minima.perturbation_test(loss, jnp.zeros(2), jnp.float32(1.0), radius=0.1, samples=64)
    saddle = local_minima.perturbation_test(loss, jnp.zeros(2), jnp.float32(-1.0), radius=0.1, samples=64)
    assert bowl == pytest.approx(0.01, rel=1e-5) and saddle < 0
    with pytest.raises(ValueError, match="radius=0"):
        local_minima.perturbation_test(loss, jnp.zeros(2), jnp.float32(1.0), radius=0, samples=4)


# --- Cliffs (sec. 8.2.4) ----------------------------------------------------------------------------------------

def test_cliffs_quick():
    r = cliffs.EXPERIMENT.run(quick=True)
    assert r.passed, r.verdict
    lr, clip = r.metrics["setting"]["learning_rate"], r.metrics["setting"]["clip_norm"]
    plain, clipped = (np.array(r.metrics["first_step_length"][k]) for k in ("plain", "clipped"))
    assert np.all(np.array(r.metrics["starts"]["grad_norm"]) >= 1e3)
    assert np.min(r.metrics["starts"]["grad_norm"]) >= 100 * r.metrics["plateau_grad_norm"]["median"]
    np.testing.assert_allclose(plain, lr * np.array(r.metrics["starts"]["grad_norm"]), rtol=1e-12)
    np.testing.assert_allclose(clipped, lr * clip, rtol=1e-12)
    assert np.all(plain > 100 * clipped)
    assert np.all(np.array(r.metrics["final_distance_from_start"]["clipped"]) < 2)
    assert np.all(np.array(r.metrics["final_loss"]["clipped"]) < np.array(r.metrics["final_loss"]["plain"]))


def test_cliff_separatrix_brackets_the_sign_change():
    with jax.enable_x64(True):
        loss_fn = cliffs.cliff_loss(40)
        ws = jnp.array([1.3, 1.5])
        bc = cliffs._separatrix(loss_fn, ws, jnp.asarray(cliffs.H0))
        for w, b in zip(ws, bc):
            below = loss_fn.final_state({"w": w, "b": b - 1e-9}, jnp.asarray(cliffs.H0))
            above = loss_fn.final_state({"w": w, "b": b + 1e-9}, jnp.asarray(cliffs.H0))
            assert float(below) < 0 < float(above)
    with pytest.raises(ValueError, match="length=0 is invalid"):
        cliffs.cliff_loss(0)


# --- Inexact gradients (sec. 8.2.6) -----------------------------------------------------------------------------

def test_inexact_gradients_quick():
    r = inexact_gradients.EXPERIMENT.run(quick=True)
    assert r.passed, r.verdict
    for stage, check in r.metrics["checks"].items():
        assert check["max_z_variance"] < 4 and check["slope_ok"], stage
        # What the variance law guarantees: the signal fraction |G|^2 / E|g_B|^2 rises at every size, and the
        # sampled one agrees; the mean cosine rises overall (largest batch vs smallest, and in rank).
        assert check["signal_fraction_rising"] and check["max_z_signal_fraction"] < 4, stage
        assert check["cosine_rise_z"] > 3 and check["cosine_rank_correlation"] >= 0.9, stage
    for stage, result in r.metrics["results"].items():
        fractions = [row["signal_fraction_theory"] for row in result["rows"]]
        assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1, stage
    init = r.metrics["results"]["initialization"]
    assert abs(init["estimated_noise_scale"] / init["noise_scale"] - 1) < 0.15


def test_minibatch_variance_formula_by_enumeration():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((7, 3)) * rng.uniform(0.1, 3, (7, 1))
    noise = inexact_gradients.gradient_noise(g)
    for b in range(1, 8):
        devs = [np.sum((g[list(s)].mean(axis=0) - noise.full_gradient) ** 2)
                for s in itertools.combinations(range(7), b)]
        assert inexact_gradients.expected_minibatch_variance(noise, b) == pytest.approx(np.mean(devs), rel=1e-12)
    # The two-batch estimator is exact on exact expectations E|g_B|^2 = |G|^2 + tr(Sigma) c_B.
    exact = {b: noise.grad_sq_norm + inexact_gradients.expected_minibatch_variance(noise, b) for b in (2, 5)}
    sq, tr, scale = inexact_gradients.noise_scale_from_two_batches(exact[2], exact[5], 2, 5, num_examples=7)
    assert (sq, tr, scale) == pytest.approx((noise.grad_sq_norm, noise.trace_covariance, noise.noise_scale),
                                            rel=1e-10)
    # The signal fraction |G|^2 / E|g_B|^2 over all minibatches, rising strictly to 1 at B = N.
    fractions = []
    for b in range(1, 8):
        mean_sq = np.mean([np.sum(g[list(s)].mean(axis=0) ** 2) for s in itertools.combinations(range(7), b)])
        fractions.append(inexact_gradients.expected_signal_fraction(noise, b))
        assert fractions[-1] == pytest.approx(noise.grad_sq_norm / mean_sq, rel=1e-12)
    assert np.all(np.diff(fractions) > 0) and fractions[-1] == pytest.approx(1.0, rel=1e-12)
    # The exact mean cosine to G over all examples and all pairs, against enumeration.
    for b in (1, 2):
        cosines = [g[list(s)].mean(axis=0) @ noise.full_gradient
                   / (np.linalg.norm(g[list(s)].mean(axis=0)) * np.linalg.norm(noise.full_gradient))
                   for s in itertools.combinations(range(7), b)]
        assert inexact_gradients.exact_mean_cosine(g, b) == pytest.approx(np.mean(cosines), rel=1e-12)
    with pytest.raises(ValueError, match="batch_size=3 is invalid"):
        inexact_gradients.exact_mean_cosine(g, 3)
    with pytest.raises(ValueError, match="batch_size=8 is invalid"):
        inexact_gradients.expected_minibatch_variance(noise, 8)
    with pytest.raises(ValueError, match="need 1 <= b_small < b_large"):
        inexact_gradients.noise_scale_from_two_batches(1.0, 1.0, 4, 2)
    with pytest.raises(ValueError, match="N >= 2"):
        inexact_gradients.gradient_noise(np.ones((1, 3)))
    with pytest.raises(ValueError, match="num_batches=1 is invalid"):
        inexact_gradients.sample_minibatch_gradients(g, 2, 1, rng)


@pytest.mark.parametrize("x64", [False, True])
def test_minibatch_gradient_is_the_mean_of_per_example_gradients(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        apply, params = initialize_mlp([5, 4, 3], seed=1, dtype=dtype)

        def loss_fn(p, x, y):
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y))

        rng = np.random.default_rng(0)
        x, y = jnp.asarray(rng.standard_normal((12, 5)), dtype), jnp.asarray(rng.integers(0, 3, 12))
        per_example = np.asarray(inexact_gradients.per_example_gradients(loss_fn, params, x, y))
        idx = np.array([1, 4, 7, 10])
        batch = jax.flatten_util.ravel_pytree(jax.grad(loss_fn)(params, x[idx], y[idx]))[0]
        np.testing.assert_allclose(per_example[idx].mean(axis=0), np.asarray(batch), rtol=1e-12 if x64 else 1e-5,
                                   atol=1e-14 if x64 else 1e-7)


# --- Initialization (sec. 8.2.7) --------------------------------------------------------------------------------

def test_initialization_quick():
    r = initialization.EXPERIMENT.run(quick=True)
    assert r.passed, r.verdict
    gaps, moved = r.metrics["max_column_gap_hidden_layers"], r.metrics["max_weight_change"]
    for name in ("zeros, tanh", "zeros, ReLU"):
        assert gaps[name] == [0.0, 0.0], name  # zero weights stay exactly zero: bitwise-equal hidden units
    # Equal weights: equal up to rounding (GEMMs may round columns differently on other CPUs), while random
    # initialization's columns differ by orders of magnitude more than that tolerance.
    tolerance = r.metrics["symmetry_rounding_tolerance"]
    eps = float(np.finfo(np.float32).eps)
    assert 0 < tolerance <= 4 * 300 * eps * 1.0  # a few rounding errors per step of weights below 1 in size
    assert max(gaps["constant 0.02, tanh"]) <= tolerance
    assert r.metrics["min_column_gap_random_init"] >= 1000 * tolerance
    assert f"{tolerance:.2g}" in r.verdict and f"{r.metrics['min_column_gap_random_init']:.3g}" in r.verdict
    assert moved["zeros, tanh"] == 0.0 and moved["constant 0.02, tanh"] > 0.01
    assert r.metrics["relu_zero_init"]["max_abs_grad_weights_and_hidden_biases"] == 0.0
    assert r.metrics["final_loss"]["zeros, tanh"] == pytest.approx(r.metrics["label_entropy"], abs=1e-4)
    assert min(r.metrics["min_distance_between_hidden_units"][n] for n in
               ("LeCun normal, tanh", "He normal, ReLU, bias 0")) > 0
    active = r.metrics["relu_active_fraction_at_init"]
    assert np.mean(active["bias 0.1"]) > np.mean(active["bias 0"])


def test_initialize_mlp_and_helpers():
    from scipy.stats import entropy

    apply, a = initialize_mlp([4, 3, 2], scheme="he", seed=5, hidden_bias=0.1)
    _, b = initialize_mlp([4, 3, 2], scheme="he", seed=5, hidden_bias=0.1)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    k = initialization.kernels(a)
    assert [m.shape for m in k] == [(4, 3), (3, 2)] and apply(a, jnp.ones((2, 4))).shape == (2, 2)
    biases = jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.asarray, a))
    assert sorted(float(np.max(v)) for v in biases if v.ndim == 1) == [0.0, pytest.approx(0.1)]
    y = np.array([0, 0, 1, 2, 2, 2])
    assert initialization.label_entropy(y, 4) == pytest.approx(entropy(np.bincount(y)), rel=1e-12)
    assert initialization.column_gap(np.ones((3, 4))) == 0.0
    assert initialization.min_pairwise_column_distance(np.array([[0.0, 3.0], [0.0, 4.0]])) == 5.0
    with pytest.raises(ValueError, match="scheme=.xavier. is invalid"):
        initialize_mlp([2, 2], scheme="xavier")
    with pytest.raises(ValueError, match="hidden_bias=nan is invalid"):
        initialize_mlp([2, 2, 1], hidden_bias=float("nan"))
    with pytest.raises(ValueError, match="sizes="):
        initialize_mlp([2])


# --- Loss landscapes --------------------------------------------------------------------------------------------

def test_landscapes_quick():
    r = landscapes.EXPERIMENT.run(quick=True)
    assert r.passed, r.verdict
    interp, hs, surf = r.metrics["interpolation"], r.metrics["hessian_slices"], r.metrics["surface_2d"]
    assert interp["monotone"] and interp["loss_trained"] < 0.1 * interp["loss_init"]
    assert hs["relative_error_top"] < 1e-3 and hs["error_bottom_relative_to_lambda_max"] < 1e-3
    assert hs["lambda_max"] > 0 and hs["residuals"][0] < 1e-3 * hs["lambda_max"]
    assert surf["argmin_offset"] == [0, 0] and surf["filter_norm_relative_error"] < 1e-10
