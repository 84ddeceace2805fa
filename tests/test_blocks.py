"""analysis.block_curvature (every block's top eigenvalue and trace in one program) against the dense blocks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from analysis.blocks import _block_curvature


def problem(seed: int, dtype):
    """``1/2 p^T A p`` over params ``{"a": (3,), "b": (40,), "c": (37,)}`` (80 entries), ``A`` with a spread
    spectrum and couplings between the blocks."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((80, 80)))
    a = (q * np.geomspace(0.1, 30.0, 80)) @ q.T
    a = 0.5 * (a + a.T)

    def loss(p, amat):
        w = jnp.concatenate([p["a"], p["b"], p["c"]])
        return 0.5 * w @ amat @ w

    params = {"a": jnp.ones(3, dtype), "b": jnp.ones(40, dtype), "c": jnp.ones(37, dtype)}
    return loss, params, jnp.asarray(a, dtype), a


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("x64", [False, True])
def test_blocks_match_the_dense_diagonal_blocks(seed, x64):
    """Top eigenvalue to 1e-4 (float32) / 1e-9 (float64) relative; trace within 4 standard errors plus rounding
    (a 3-entry block, smaller than its sketch, is exact); residuals small."""
    with jax.enable_x64(x64):
        loss, params, amat, a = problem(seed, jnp.float64 if x64 else jnp.float32)
        blocks = {"a": "a", "b": ("b",), "b+c": ["b", "c"], "all": ("a", "b", "c")}
        res = analysis.block_curvature(loss, params, amat, blocks=blocks, num_matvecs=40, trace_matvecs=36,
                                       key=jax.random.PRNGKey(seed))
        index = {"a": range(0, 3), "b": range(3, 43), "b+c": range(3, 80), "all": range(80)}
        assert res.names == tuple(blocks) and res.num_params == (3, 40, 77, 80)
        rtol = 1e-9 if x64 else 1e-4
        for i, name in enumerate(blocks):
            sub = a[np.ix_(index[name], index[name])]
            top = np.linalg.eigvalsh(sub)[-1]
            np.testing.assert_allclose(float(res.top_eigenvalue[i]), top, rtol=rtol)
            assert float(res.top_residual[i]) < (1e-6 if x64 else 1e-2) * top
            err = abs(float(res.trace[i]) - np.trace(sub))
            assert err <= 4 * float(res.trace_standard_error[i]) + rtol * np.trace(sub), (name, err)
        np.testing.assert_allclose(float(res.trace[0]), np.trace(a[:3, :3]), rtol=rtol)


def test_one_compilation_for_any_blocks_and_same_key_same_bits():
    loss, params, amat, _ = problem(0, jnp.float32)
    first = analysis.block_curvature(loss, params, amat, blocks={"a": "a", "b": "b"}, num_matvecs=20,
                                     trace_matvecs=12)
    size = _block_curvature._cache_size()
    again = analysis.block_curvature(loss, params, amat, blocks={"c": "c", "b": "b"}, num_matvecs=20,
                                     trace_matvecs=12)
    assert _block_curvature._cache_size() == size  # other blocks, same program
    np.testing.assert_array_equal(np.asarray(first.top_eigenvalue[1]), np.asarray(again.top_eigenvalue[1]))
    batched = analysis.block_curvature(loss, params, amat, blocks={"a": "a", "b": "b"}, num_matvecs=20,
                                       trace_matvecs=12, batch_size=1)
    np.testing.assert_allclose(np.asarray(batched.top_eigenvalue), np.asarray(first.top_eigenvalue), rtol=1e-5)


def test_bad_blocks_and_settings():
    loss, params, amat, _ = problem(0, jnp.float32)
    with pytest.raises(ValueError, match="blocks=\\{\\} is invalid"):
        analysis.block_curvature(loss, params, amat, blocks={})
    with pytest.raises(ValueError, match="selects no parameter"):
        analysis.block_curvature(loss, params, amat, blocks={"x": "nothing"})
    with pytest.raises(ValueError, match="num_matvecs=81 exceeds"):
        analysis.block_curvature(loss, params, amat, blocks={"a": "a"}, num_matvecs=81)
    with pytest.raises(ValueError, match="trace_matvecs=3"):
        analysis.block_curvature(loss, params, amat, blocks={"a": "a"}, trace_matvecs=3)
    with pytest.raises(ValueError, match="batch_size=0"):
        analysis.block_curvature(loss, params, amat, blocks={"a": "a"}, batch_size=0)


@pytest.mark.parametrize("x64", [False, True])
def test_blocks_over_a_data_source_match_the_arrays(x64):
    """A tanh MLP's per-layer blocks over analysis.Batches of unequal sizes (17, 17, 16 examples) against the same
    call on the 50 examples as arrays: the same start vector and probes, so top eigenvalues and traces agree to
    rounding (1e-4 relative in float32, 1e-9 in float64), and the residuals stay small."""
    from flax import nnx

    from jaxdl.models import MLP, split
    from jaxdl.train import softmax_cross_entropy

    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        apply, params = split(MLP([6, 5, 4, 3], rngs=nnx.Rngs(1), dtype=dtype))
        loss = softmax_cross_entropy(apply)
        rng = np.random.default_rng(0)
        x, y = jnp.asarray(rng.standard_normal((50, 6)), dtype), jnp.asarray(rng.integers(0, 3, 50))
        blocks = analysis.layer_blocks(params)
        options = dict(blocks=blocks, num_matvecs=12, trace_matvecs=15, key=jax.random.PRNGKey(3))
        want = analysis.block_curvature(loss, params, x, y, **options)
        data = analysis.Batches([(x[:17], y[:17]), (x[17:34], y[17:34]), (x[34:], y[34:])])
        got = analysis.block_curvature(loss, params, data, **options)
    rtol = 1e-9 if x64 else 1e-4
    assert got.names == want.names and got.num_params == want.num_params and len(got.names) == 3
    scale = float(np.max(np.abs(np.asarray(want.top_eigenvalue))))
    np.testing.assert_allclose(np.asarray(got.top_eigenvalue), np.asarray(want.top_eigenvalue), rtol=rtol,
                               atol=rtol * scale)
    np.testing.assert_allclose(np.asarray(got.trace), np.asarray(want.trace), rtol=rtol,
                               atol=rtol * float(np.sum(np.abs(np.asarray(want.trace)))))
    np.testing.assert_allclose(np.asarray(got.trace_standard_error), np.asarray(want.trace_standard_error),
                               rtol=1e-6 if x64 else 1e-2, atol=rtol * scale)
    assert np.all(np.asarray(got.top_residual) <= (1e-6 if x64 else 1e-3) * scale)
