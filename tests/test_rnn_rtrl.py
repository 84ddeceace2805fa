"""RTRL against BPTT (rtol 1e-10 in float64, 1e-4 in float32) and both against central finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models import CellParams, elman_step
from jaxdl.rtrl import bptt_value_and_grad, compile_with_memory, rtrl_value_and_grad, sequence_loss

TRACES = {"count": 0}


def step(p, h, x):
    TRACES["count"] += 1  # runs only while tracing
    return elman_step(p, h, x, 0.7)


def loss(v, h, y):
    return jnp.sum((h @ v[0] + v[1] - y) ** 2)


def problem(seed, dtype, n=5, length=25):
    # numpy draws: eager jax.random calls would compile one small program per shape, seconds in all.
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.normal(size=shape), dtype)

    cell = CellParams(normal(2, n), normal(n, n, scale=0.5), normal(n, scale=0.1))
    readout = (normal(n, 3), jnp.zeros(3, dtype))
    return (cell, readout), jnp.zeros(n, dtype), normal(length, 2), normal(length, 3)


@pytest.mark.parametrize("x64,rtol", [(True, 1e-10), (False, 1e-4)])
def test_rtrl_equals_bptt(x64, rtol):
    # Full-precision products: a GPU's default float32 matmul is TF32, too coarse for rtol 1e-4.
    with jax.enable_x64(x64), jax.default_matmul_precision("highest"):
        dtype = jnp.float64 if x64 else jnp.float32
        for seed in range(3):
            args = problem(seed, dtype)
            la, ga = rtrl_value_and_grad(step, loss, *args)
            lb, gb = bptt_value_and_grad(step, loss, *args)
            assert abs(float(la) - float(lb)) <= rtol * abs(float(lb))
            for a, b in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
                scale = float(jnp.max(jnp.abs(b)))
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol * scale)


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        params, h0, xs, ys = problem(7, jnp.float64)
        _, g = rtrl_value_and_grad(step, loss, params, h0, xs, ys)
        seq = jax.jit(sequence_loss, static_argnums=(0, 1))
        eps = 1e-6
        for i, j in ((0, 1), (2, 3), (4, 0)):
            def at(delta):
                cell = params[0]._replace(w_h=params[0].w_h.at[i, j].add(delta))
                return float(seq(step, loss, (cell, params[1]), h0, xs, ys))
            fd = (at(eps) - at(-eps)) / (2 * eps)
            assert abs(float(g[0].w_h[i, j]) - fd) <= 1e-7 * max(1.0, abs(fd))


def test_no_retrace_and_rtrl_memory_flat_in_length():
    args = problem(0, jnp.float32)
    rtrl_value_and_grad(step, loss, *args)
    before = TRACES["count"]
    new = (jax.tree_util.tree_map(lambda a: a * 1.01, args[0]),) + args[1:]
    rtrl_value_and_grad(step, loss, *new)
    assert TRACES["count"] == before  # same shapes and functions: the compiled gradient is reused
    short, long = problem(0, jnp.float32, length=16), problem(0, jnp.float32, length=256)
    f_rtrl = lambda *a: rtrl_value_and_grad(step, loss, *a)  # noqa: E731
    f_bptt = lambda *a: bptt_value_and_grad(step, loss, *a)  # noqa: E731
    m_rtrl = [compile_with_memory(f_rtrl, *a)[1] for a in (short, long)]
    m_bptt = [compile_with_memory(f_bptt, *a)[1] for a in (short, long)]
    assert m_rtrl[0] == m_rtrl[1]  # RTRL stores no sequence
    assert m_bptt[1] > 4 * m_bptt[0]  # BPTT stores every state


def test_bad_inputs():
    params, h0, xs, ys = problem(0, jnp.float32)
    for fn in (rtrl_value_and_grad, bptt_value_and_grad):
        with pytest.raises(ValueError, match="rank 2"):
            fn(step, loss, params, h0, xs[0], ys)
        with pytest.raises(ValueError, match="empty"):
            fn(step, loss, params, h0, xs[:0], ys[:0])
        with pytest.raises(ValueError, match="same length"):
            fn(step, loss, params, h0, xs, ys[:-1])
        with pytest.raises(ValueError, match="state vector"):
            fn(step, loss, params, h0[None], xs, ys)
