"""Hessian-vector products and dense Hessians against finite differences and jax.hessian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import analysis
from jaxdl.models import MLP, split
from jaxdl.train import softmax_cross_entropy


def small_mlp(seed: int, dtype, n: int = 40):
    key = jax.random.PRNGKey(seed)
    kx, ky = jax.random.split(key)
    apply, params = split(MLP([5, 6, 4, 3], rngs=nnx.Rngs(seed), dtype=dtype))
    x = jax.random.normal(kx, (n, 5), dtype)
    y = jax.random.randint(ky, (n,), 0, 3)
    return softmax_cross_entropy(apply), params, x, y


def random_like(key, tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hvp_matches_central_differences_float64(seed):
    with jax.enable_x64(True):
        loss, params, x, y = small_mlp(seed, jnp.float64)
        v = random_like(jax.random.PRNGKey(100 + seed), params)
        hv = analysis.hvp(loss, params, v, x, y)
        grad = jax.grad(loss)
        h = 1e-5
        plus = grad(jax.tree_util.tree_map(lambda p, d: p + h * d, params, v), x, y)
        minus = grad(jax.tree_util.tree_map(lambda p, d: p - h * d, params, v), x, y)
        fd = jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * h), plus, minus)
        for got, want in zip(jax.tree_util.tree_leaves(hv), jax.tree_util.tree_leaves(fd)):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x64", [False, True])
def test_dense_hessian_matches_jax_hessian(seed, x64):
    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        loss, params, x, y = small_mlp(seed, dtype)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        ref = jax.jit(jax.hessian(lambda th: loss(unravel(th), x, y)))(flat)
        got = analysis.dense_hessian(loss, params, x, y, block_size=7)
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10 if x64 else 1e-4,
                                   atol=1e-12 if x64 else 1e-6)
        # hvp agrees with a row of the dense Hessian.
        e = jnp.zeros_like(flat).at[3].set(1.0)
        row = jax.flatten_util.ravel_pytree(analysis.hvp(loss, params, unravel(e), x, y))[0]
        np.testing.assert_allclose(np.asarray(row), np.asarray(ref[3]), rtol=1e-10 if x64 else 1e-4,
                                   atol=1e-12 if x64 else 1e-6)


def test_microbatches_equal_full_batch():
    with jax.enable_x64(True):
        loss, params, x, y = small_mlp(0, jnp.float64, n=48)
        xm, ym = x.reshape(4, 12, 5), y.reshape(4, 12)
        full = analysis.dense_hessian(loss, params, x, y)
        micro = analysis.dense_hessian(loss, params, xm, ym, microbatched=True)
        np.testing.assert_allclose(np.asarray(micro), np.asarray(full), rtol=1e-12, atol=1e-14)
        gc_full = analysis.gradient_curvature(loss, params, x, y)
        gc_micro = analysis.gradient_curvature(loss, params, xm, ym, microbatched=True)
        np.testing.assert_allclose(float(gc_micro.gTHg), float(gc_full.gTHg), rtol=1e-12)
        np.testing.assert_allclose(float(gc_micro.loss), float(gc_full.loss), rtol=1e-12)
        e_full = analysis.hessian_eigs(loss, params, x, y, k=2, which="both", num_matvecs=40)
        e_micro = analysis.hessian_eigs(loss, params, xm, ym, k=2, which="both", num_matvecs=40, microbatched=True)
        np.testing.assert_allclose(np.asarray(e_micro.eigenvalues), np.asarray(e_full.eigenvalues), rtol=1e-10)
        t_full = analysis.hessian_trace(loss, params, x, y, num_matvecs=12)
        t_micro = analysis.hessian_trace(loss, params, xm, ym, num_matvecs=12, microbatched=True)
        np.testing.assert_allclose(float(t_micro.estimate), float(t_full.estimate), rtol=1e-10)


def test_pytree_equals_flattened():
    with jax.enable_x64(True):
        loss, params, x, y = small_mlp(1, jnp.float64)
        flat, unravel = jax.flatten_util.ravel_pytree(params)

        def flat_loss(th, x, y):
            return loss(unravel(th), x, y)

        np.testing.assert_allclose(np.asarray(analysis.dense_hessian(flat_loss, flat, x, y)),
                                   np.asarray(analysis.dense_hessian(loss, params, x, y)), rtol=1e-13, atol=1e-15)
        a = analysis.hessian_eigs(loss, params, x, y, k=3, num_matvecs=30)
        b = analysis.hessian_eigs(flat_loss, flat, x, y, k=3, num_matvecs=30)
        np.testing.assert_allclose(np.asarray(a.eigenvalues), np.asarray(b.eigenvalues), rtol=1e-12)


def test_block_is_the_submatrix():
    with jax.enable_x64(True):
        loss, params, x, y = small_mlp(2, jnp.float64)
        blocks = analysis.layer_blocks(params)
        assert list(blocks) == ["layers/0", "layers/1", "layers/2"]
        full = np.asarray(analysis.dense_hessian(loss, params, x, y))
        # ravel order: layers/0/bias (6), layers/0/kernel (30), layers/1/... ; layers/1 occupies 36:64.
        sub = np.asarray(analysis.dense_hessian(loss, params, x, y, block="layers/1"))
        assert sub.shape == (28, 28)
        np.testing.assert_allclose(sub, full[36:64, 36:64], rtol=1e-12, atol=1e-14)
        top = analysis.hessian_eigs(loss, params, x, y, k=1, block="layers/1", num_matvecs=28, return_vectors=True)
        np.testing.assert_allclose(float(top.eigenvalues[0]), np.linalg.eigvalsh(sub)[-1], rtol=1e-10)
        # Eigenvectors of a block are zero outside it.
        assert float(jnp.abs(top.eigenvectors["layers"][0]["kernel"][...]).max()) == 0.0
        with pytest.raises(ValueError, match="selects no parameter"):
            analysis.dense_hessian(loss, params, x, y, block="layers/7")


def test_hvp_does_not_retrace():
    loss, params, x, y = small_mlp(0, jnp.float32)
    from analysis.hessian import _hvp_tree

    analysis.hvp(loss, params, params, x, y)
    size = _hvp_tree._cache_size()
    analysis.hvp(loss, params, params, x + 1.0, y)
    assert _hvp_tree._cache_size() == size


def test_bad_inputs_are_named():
    loss, params, x, y = small_mlp(0, jnp.float32)
    bad_v = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="v has pytree structure"):
        analysis.hvp(loss, params, bad_v, x, y)
    wrong_shape = jax.tree_util.tree_map(lambda a: jnp.ones(a.shape + (1,)), params)
    with pytest.raises(ValueError, match="v leaf 'layers/0/bias/value' has shape"):
        analysis.hvp(loss, params, wrong_shape, x, y)
    nan_params = jax.tree_util.tree_map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), params)
    with pytest.raises(ValueError, match="params leaf 'layers/0/bias/value' contains 1 NaN/inf"):
        analysis.dense_hessian(loss, nan_params, x, y)
    with pytest.raises(ValueError, match=r"batch\[0\] contains 1 NaN/inf"):
        analysis.dense_hessian(loss, params, x.at[0, 0].set(jnp.inf), y)
    with pytest.raises(ValueError, match="the batch is empty"):
        analysis.dense_hessian(loss, params, x[:0], y[:0])
    with pytest.raises(ValueError, match="must return a scalar.*shape \\(40,\\)"):
        analysis.dense_hessian(lambda p, x, y: jnp.sum(p["layers"][0]["bias"][...]) * x[:, 0], params, x, y)
    with pytest.raises(TypeError, match="dtype int32; expected a floating-point"):
        analysis.dense_hessian(lambda p, x: jnp.sum(p * x), jnp.arange(3), jnp.ones(3))
    with pytest.raises(ValueError, match="empty pytree"):
        analysis.dense_hessian(lambda p, x: jnp.sum(x), {}, jnp.ones(3))
    with pytest.raises(ValueError, match="block_size=0"):
        analysis.dense_hessian(loss, params, x, y, block_size=0)
