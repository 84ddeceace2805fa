"""Condition number of the non-null spectrum, and the eq. 8.10 gradient curvature."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from tests.conftest import quadratic_problem


def test_condition_number_of_a_known_spectrum():
    info = analysis.condition_number(jnp.array([-1.0, 0.0, 1e-9, 2.0, 4.0]))
    assert info.condition_number == pytest.approx(4.0)
    assert (info.num_negative, info.num_near_zero, info.num_positive) == (1, 2, 2)
    assert info.null_tolerance == pytest.approx(5 * np.finfo(np.float32).eps * 4.0)
    assert info.index == pytest.approx(0.2)
    explicit = analysis.condition_number(np.array([1e-3, 0.5, 1.0]), atol=1e-2)
    assert explicit.condition_number == pytest.approx(2.0) and explicit.num_near_zero == 1


def test_condition_number_errors():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        analysis.condition_number(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="1 NaN/inf"):
        analysis.condition_number(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="within the null tolerance"):
        analysis.condition_number(np.zeros(3))
    with pytest.raises(ValueError, match="rtol=-1"):
        analysis.condition_number(np.ones(3), rtol=-1)


def test_softmax_network_has_the_predicted_null_space(digits_mlp):
    # Softmax is invariant to adding the same number to every logit: one direction through the 10 output biases and
    # 32 through the output kernel (the same vector added to every column). So at least 33 exact zero eigenvalues,
    # and a bare max/min ratio would be meaningless; the non-null condition number is finite.
    info = analysis.condition_number(digits_mlp["exact"])
    assert info.num_near_zero >= 33
    assert np.isfinite(info.condition_number) and info.condition_number > 1
    assert info.num_negative + info.num_near_zero + info.num_positive == digits_mlp["exact"].size


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x64", [False, True])
def test_gradient_curvature_against_dense(seed, x64):
    with jax.enable_x64(x64):
        loss, params, a, b = quadratic_problem(seed, jnp.float64 if x64 else jnp.float32)
        gc = jax.jit(lambda p, a, b: tuple(analysis.gradient_curvature(loss, p, a, b)))(params, a, b)
        gc = analysis.GradientCurvature(*gc)
        g = np.asarray(a, np.float64) @ np.asarray(params["w"], np.float64) + np.asarray(b, np.float64)
        rtol = 1e-12 if x64 else 1e-4
        np.testing.assert_allclose(float(gc.gTg), g @ g, rtol=rtol)
        np.testing.assert_allclose(float(gc.gTHg), g @ np.asarray(a, np.float64) @ g, rtol=rtol)
        np.testing.assert_allclose(np.asarray(gc.grad["w"]), g, rtol=rtol, atol=rtol)


def test_predicted_change_is_second_order_accurate():
    # For a quadratic, eq. 8.10 is exact; for the tanh MLP the error of the prediction shrinks like eps^3.
    with jax.enable_x64(True):
        loss, params, a, b = quadratic_problem(0, jnp.float64)
        gc = analysis.gradient_curvature(loss, params, a, b)
        for eps in (1e-3, 1e-2, 5e-2):
            stepped = {"w": params["w"] - eps * gc.grad["w"]}
            actual = float(loss(stepped, a, b) - gc.loss)
            np.testing.assert_allclose(float(gc.predicted_change(eps)), actual, rtol=1e-9)
        assert float(gc.curvature_ratio(2 * gc.optimal_step())) == pytest.approx(1.0)

        from tests.test_hessian import small_mlp

        mloss, mparams, x, y = small_mlp(0, jnp.float64)
        mgc = analysis.gradient_curvature(mloss, mparams, x, y)
        errs = []
        for eps in (0.4, 0.2, 0.1):
            stepped = jax.tree_util.tree_map(lambda p, g: p - eps * g, mparams, mgc.grad)
            errs.append(abs(float(mloss(stepped, x, y) - mgc.loss) - float(mgc.predicted_change(eps))))
        # Halving eps divides a third-order error by about 8.
        assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5, errs
