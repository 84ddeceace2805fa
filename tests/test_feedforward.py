"""Feedforward family: generated tasks, XOR (sec. 6.1), the perceptron, depth (sec. 6.4.1), hand-written backprop and
SGD (sec. 6.5, 8.3), each against an independent reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import data
from jaxdl.backprop import backprop, sgd, sgd_fit
from jaxdl.experiments import depth as depth_exp
from jaxdl.experiments import xor as xor_exp
from jaxdl.models import MLP, Perceptron, least_squares_fit, perceptron_fit, split
from jaxdl.models.mlp import ACTIVATIONS


def numpy_mlp(sizes, activation="relu", seed=0, dtype=jnp.float32):
    """``(apply, params)`` of an MLP with numpy-drawn parameters: the structure comes from ``nnx.eval_shape``, so no
    eager initialiser is compiled for every new layer shape (seconds each on a small CPU)."""
    abstract = nnx.eval_shape(lambda: MLP(list(sizes), activation=activation, rngs=nnx.Rngs(0), dtype=dtype))
    graphdef, params = nnx.split(abstract, nnx.Param)
    rng = np.random.default_rng(seed)

    def leaf(path, spec):
        scale = 1.0 / np.sqrt(spec.shape[0]) if "kernel" in jax.tree_util.keystr(path) else 0.1
        return jnp.asarray(scale * rng.standard_normal(spec.shape), spec.dtype)

    params = jax.tree_util.tree_map_with_path(leaf, params)
    return (lambda p, x: nnx.merge(graphdef, p)(x)), params


# ---------------------------------------------------------------- data


def test_tent_composition_matches_numpy_composition():
    d = data.tent_composition(4, num_train=64, num_test=33, seed=1)
    x = np.asarray(d.x_train[:, 0], np.float64)
    ref = x.copy()
    for _ in range(4):
        ref = np.where(ref <= 0.5, 2 * ref, 2 - 2 * ref)
    np.testing.assert_allclose(np.asarray(d.y_train[:, 0]), ref, atol=1e-6)
    # 2**(k-1) teeth: the grid with step 1/32 hits every peak (1) and valley (0) exactly.
    np.testing.assert_array_equal(np.asarray(d.y_test[::2, 0]), np.tile([0.0, 1.0], 9)[:17])
    assert d.x_train.shape == (64, 1) and d.y_test.shape == (33, 1)


def test_generated_tasks_are_deterministic_and_validated():
    sizes = {"num_train": 16, "num_test": 64}  # one shape throughout: one compilation of the generator
    a, b = data.function_1d("sine", seed=3, **sizes), data.function_1d("sine", seed=3, **sizes)
    np.testing.assert_array_equal(np.asarray(a.x_train), np.asarray(b.x_train))
    np.testing.assert_allclose(np.asarray(a.y_test[:, 0]), np.sin(np.pi * np.asarray(a.x_test[:, 0])), atol=1e-6)
    x, y = data.linearly_separable(300, 4, margin=0.2, seed=2)
    assert float(np.max(np.linalg.norm(np.asarray(x), axis=1))) <= 1.0 + 1e-6 and set(np.unique(y)) == {0.0, 1.0}
    points = np.asarray(data.circle(50, radius=2.0))
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown"):
        data.function_1d("cubic")
    with pytest.raises(ValueError, match="NaN/inf"):
        data.function_1d(lambda x: jnp.log(x), **sizes)
    with pytest.raises(ValueError, match="shape"):
        data.function_1d(lambda x: jnp.stack([x, x], 1), **sizes)
    with pytest.raises(ValueError, match="noise"):
        data.function_1d("sine", noise=float("nan"))
    with pytest.raises(ValueError, match="depth=0"):
        data.tent_composition(0)
    with pytest.raises(ValueError, match="num_train=0"):
        data.tent_composition(3, num_train=0)
    with pytest.raises(ValueError, match="margin"):
        data.linearly_separable(10, 2, margin=1.0)
    with pytest.raises(TypeError, match="int"):
        data.tent_composition(2.5)


# ---------------------------------------------------------------- XOR and linear models


def test_least_squares_outputs_one_half_on_xor():
    with jax.enable_x64(True):
        w, b = least_squares_fit(*data.xor(jnp.float64))
        np.testing.assert_allclose(np.asarray(w), 0.0, atol=1e-14)
        assert abs(float(b) - 0.5) < 1e-14
    w32, b32 = least_squares_fit(*data.xor())
    assert float(jnp.max(jnp.abs(w32))) < 1e-6 and abs(float(b32) - 0.5) < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_least_squares_matches_scikit_learn(seed):
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    ref = LinearRegression().fit(x, y)
    with jax.enable_x64(True):
        w, b = least_squares_fit(jnp.asarray(x), jnp.asarray(y))
        np.testing.assert_allclose(np.asarray(w), ref.coef_, rtol=1e-10)
        assert abs(float(b) - ref.intercept_) < 1e-10


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_book_relu_network_solves_xor_exactly(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        apply, params = xor_exp.book_relu_network(dtype)
        x, _ = data.xor(dtype)
        out = jax.jit(apply)(params, x)
        np.testing.assert_array_equal(np.asarray(out[:, 0]), [0.0, 1.0, 1.0, 0.0])


def test_perceptron_separates_exactly_the_14_separable_labelings():
    """Of the 16 labelings of the XOR points all but XOR and XNOR are linearly separable: the perceptron rule
    converges on those and never exceeds 3 of 4 on the other two (from several random starts)."""
    x, _ = data.xor()
    _, template = split(Perceptron(2, rngs=nnx.Rngs(0)))
    for code in range(16):
        y = jnp.asarray([(code >> i) & 1 for i in range(4)], jnp.float32)
        fit = perceptron_fit(template, x, y, epochs=30)
        if code in (0b0110, 0b1001):
            assert float(fit.best_accuracy) <= 0.75
        else:
            assert float(fit.accuracy[-1]) == 1.0 and int(fit.mistakes[-1]) == 0
    best, count = xor_exp.perceptron_search(50_000, jax.random.PRNGKey(0))
    assert best == 3 and count > 0


def test_perceptron_obeys_the_novikoff_bound():
    for seed in range(3):
        x, y = data.linearly_separable(200, 5, margin=0.15, seed=seed)
        _, params = split(Perceptron(5, rngs=nnx.Rngs(0)))
        fit = perceptron_fit(params, x, y, epochs=40)
        assert int(fit.mistakes.sum()) <= (1.0 / 0.15) ** 2
        assert float(fit.accuracy[-1]) == 1.0


def test_linear_model_bad_inputs():
    x, y = data.xor()
    _, params = split(Perceptron(2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="other than 0 and 1"):
        perceptron_fit(params, x, y * 2)
    with pytest.raises(ValueError, match="one target per example"):
        perceptron_fit(params, x, y[:3])
    with pytest.raises(ValueError, match="NaN"):
        least_squares_fit(x.at[0, 0].set(jnp.nan), y)
    with pytest.raises(ValueError, match="empty"):
        least_squares_fit(jnp.zeros((0, 2)), jnp.zeros(0))
    with pytest.raises(ValueError, match="epochs"):
        perceptron_fit(params, x, y, epochs=0)
    with pytest.raises(ValueError, match="expect 2 inputs"):
        perceptron_fit(params, jnp.ones((4, 3)), y)


# ---------------------------------------------------------------- depth


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sawtooth_network_is_exact(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        for k in (1, 3, 6):
            apply, params = depth_exp.sawtooth_network(k, dtype)
            assert sum(a.size for a in jax.tree_util.tree_leaves(params)) == 6 * k + 1
            x = jnp.asarray(np.random.default_rng(k).uniform(0, 1, (257, 1)), dtype)
            tol = 1e-12 if dtype == jnp.float64 else 2e-5 * 2**k
            np.testing.assert_allclose(np.asarray(apply(params, x)), np.asarray(data.sawtooth(x, k)), atol=tol)


def test_shallow_networks_respect_the_piece_counting_bound():
    """No one-hidden-layer ReLU net with m < 2**(k-1) units beats sqrt((1 - m/2**(k-1))/12), and least squares with
    kinks at all 2**k - 1 breakpoints is exact (the bound is tight in the number of kinks up to a factor 2)."""
    k = 4
    d = data.tent_composition(k, num_train=512, num_test=2049)
    rng = np.random.default_rng(0)
    xs = np.asarray(d.x_test, np.float64)
    for m in (1, 5):
        bound = depth_exp.shallow_error_bound(m, k)
        for _ in range(20):  # random shallow networks, output layer solved exactly by least squares
            knots = rng.uniform(-0.2, 1.2, m)
            signs = rng.choice([-1.0, 1.0], m)
            feats = np.concatenate([np.maximum(signs * (xs - knots), 0), np.ones_like(xs)], 1)
            theta = np.linalg.lstsq(feats, np.asarray(d.y_test, np.float64), rcond=None)[0]
            assert np.sqrt(np.mean((feats @ theta - np.asarray(d.y_test)) ** 2)) >= bound - 1e-9
        ls = depth_exp.shallow_least_squares(m, k, d.x_train, d.y_train, d.x_test, d.y_test)
        assert ls >= bound - 1e-9
    assert depth_exp.shallow_least_squares(2**k, k, d.x_train, d.y_train, d.x_test, d.y_test) < 1e-10


# ---------------------------------------------------------------- backprop and SGD


def reference_loss(apply, loss, weight_decay):
    def fn(params, x, y):
        out = apply(params, x)
        if loss == "softmax_cross_entropy":
            value = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1))
        else:
            value = jnp.mean((out - y) ** 2)
        kernels = [v for p, v in jax.tree_util.tree_leaves_with_path(params) if "kernel" in str(p)]
        return value + weight_decay * sum(jnp.sum(w * w) for w in kernels)

    return fn


@pytest.mark.parametrize(("activation", "loss"), [("relu", "softmax_cross_entropy"), ("relu", "mean_squared_error"),
                                                  ("tanh", "softmax_cross_entropy"), ("sigmoid", "mean_squared_error")])
def test_backprop_equals_jax_grad(activation, loss):
    for seed, dtype, rtol in ((0, jnp.float64, 1e-12), (1, jnp.float32, 2e-5)):
        with jax.enable_x64(dtype == jnp.float64):
            apply, params = numpy_mlp([4, 5, 5, 3], activation, seed, dtype)
            rng = np.random.default_rng(seed)
            x = jnp.asarray(rng.standard_normal((9, 4)), dtype)
            y = jnp.asarray(rng.integers(0, 3, 9)) if loss == "softmax_cross_entropy" else jnp.asarray(
                rng.standard_normal((9, 3)), dtype)
            value, grads = backprop(params, x, y, activation=activation, loss=loss, weight_decay=0.01)
            ref_value, ref = jax.jit(jax.value_and_grad(reference_loss(apply, loss, 0.01)))(params, x, y)
            np.testing.assert_allclose(float(value), float(ref_value), rtol=rtol)
            for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref)):
                assert g.dtype == dtype
                np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=rtol, atol=rtol * float(
                    jnp.max(jnp.abs(r))))


def test_backprop_matches_finite_differences_and_does_not_retrace():
    with jax.enable_x64(True):
        apply, params = numpy_mlp([4, 5, 5, 3], "relu", 0, jnp.float64)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((9, 4)))
        y = jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1, 2])
        _, grads = backprop(params, x, y)
        d = nnx.to_pure_dict(params)
        eps = 1e-6
        for i, j in ((0, 0), (2, 1), (3, 4)):
            def value_at(delta):
                shifted = jax.tree_util.tree_map(lambda a: a, params)
                nnx.replace_by_pure_dict(shifted, {"layers": {0: {"kernel": d["layers"][0]["kernel"].at[i, j].add(
                    delta)}}})
                return float(backprop(shifted, x, y)[0])

            fd = (value_at(eps) - value_at(-eps)) / (2 * eps)
            assert abs(fd - float(grads["layers"][0]["kernel"][i, j])) < 1e-7
        from jaxdl.backprop import _backprop

        size = _backprop._cache_size()
        backprop(params, x + 1.0, y)
        assert _backprop._cache_size() == size


def test_sgd_update_rule_and_schedule():
    opt = sgd(0.5, momentum=0.9, final_learning_rate=0.05, decay_steps=10)
    params = {"w": jnp.array([1.0, -2.0])}
    state = opt.init(params)
    g = {"w": jnp.array([0.2, 0.4])}
    p1, s1 = opt.update(g, state, params)
    np.testing.assert_allclose(np.asarray(p1["w"]), [1.0 - 0.1, -2.0 - 0.2], rtol=1e-6)
    p2, _ = opt.update(g, s1, p1)
    eps1 = 0.9 * 0.5 + 0.1 * 0.05  # eq. 8.14 at k = 1 of tau = 10
    v2 = 0.9 * (-0.5 * 0.2) - eps1 * 0.2
    np.testing.assert_allclose(float(p2["w"][0]), 0.9 + v2, rtol=1e-6)
    assert float(opt.rate(jnp.asarray(25))) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="learning_rate"):
        sgd(0.0)
    with pytest.raises(ValueError, match="momentum"):
        sgd(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="decay_steps"):
        sgd(0.1, decay_steps=-1)


def test_sgd_runs_identically_on_either_gradient():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((256, 4)), jnp.float32)
    y = jnp.argmax(x[:, :3] + 0.3 * x[:, 3:], axis=1)  # a learnable 3-class rule
    apply, params = numpy_mlp([4, 5, 5, 3])
    opt = sgd(0.5)
    key = jax.random.PRNGKey(0)
    by_hand = functools.partial(backprop, activation="relu")
    by_ad = jax.value_and_grad(reference_loss(apply, "softmax_cross_entropy", 0.0))
    p1, l1 = sgd_fit(by_hand, opt, params, x, y, key=key, epochs=3, batch_size=32)
    p2, l2 = sgd_fit(by_ad, opt, params, x, y, key=key, epochs=3, batch_size=32)
    p3, l3 = sgd_fit(by_hand, opt, params, x, y, key=key, epochs=3, batch_size=32)
    np.testing.assert_allclose(np.asarray(l1), np.asarray(l2), rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(l1), np.asarray(l3))  # same key, same trajectory bit for bit
    assert float(l1[-8:].mean()) < 0.7 * float(l1[:8].mean())
    with pytest.raises(ValueError, match="batch_size"):
        sgd_fit(by_hand, opt, params, x, y, key=key, epochs=1, batch_size=1000)
    with pytest.raises(ValueError, match="NaN"):
        sgd_fit(by_hand, opt, params, x.at[0, 0].set(jnp.inf), y, key=key, epochs=1, batch_size=32)
    with pytest.raises(ValueError, match="examples"):
        sgd_fit(by_hand, opt, params, x, y[:10], key=key, epochs=1, batch_size=32)


def test_backprop_bad_inputs():
    _, params = numpy_mlp([4, 5, 5, 3])
    x, y = jnp.ones((5, 4)), jnp.zeros(5, jnp.int32)
    with pytest.raises(ValueError, match="no hand-written derivative"):
        backprop(params, x, y, activation="gelu")
    with pytest.raises(ValueError, match="loss"):
        backprop(params, x, y, loss="hinge")
    with pytest.raises(ValueError, match="weight_decay"):
        backprop(params, x, y, weight_decay=-1.0)
    with pytest.raises(ValueError, match="features"):
        backprop(params, jnp.ones((5, 3)), y)
    with pytest.raises(ValueError, match="y has shape"):
        backprop(params, x, jnp.zeros((5, 2)), loss="mean_squared_error")
    assert set(ACTIVATIONS) >= {"relu", "tanh", "sigmoid", "identity"}


# ---------------------------------------------------------------- experiments (quick settings)


def test_trained_mlps_solve_xor():
    """Sec. 6.1: a trained one-hidden-layer ReLU MLP solves XOR (every output within 0.1 of its target)."""
    _, _, outputs = xor_exp.train_mlps(8, "relu", seeds=6, steps=400)
    solved = jnp.all(jnp.abs(outputs - data.xor()[1]) < 0.1, axis=1)
    assert float(jnp.mean(solved)) >= 5 / 6


def test_one_hidden_layer_error_falls_with_width():
    """Sec. 6.4.1: with the output layer solved exactly, the error of a one-hidden-layer tanh network on a continuous
    function falls by orders of magnitude as the layer widens (nested networks, float64)."""
    from jaxdl.experiments import universal

    d = data.function_1d("wiggle", num_train=256, num_test=257)
    errors = np.asarray(universal.least_squares_widths("tanh", (2, 4, 8, 16, 32), d, jax.random.PRNGKey(0)))
    assert np.all(np.diff(errors) < 0), errors
    assert errors[-1] < 1e-3 * errors[0]
