"""The training engine, :mod:`jaxdl.engine` (epoch_batches, epoch_scan, run_epochs, scan_steps), against Python loops
over the same minibatches and keys, bit for bit; every example once per epoch; no retrace; clear errors."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.engine import epoch_batches, epoch_scan, run_epochs, scan_steps


def rng_key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")  # fast to compile on two shared cores; the engine takes any key


def sgd_step(w, batch, key, *, lr=0.1):
    """A least-squares SGD step with a key-dependent input mask (so keys and batches both matter)."""
    xb, yb = batch
    mask = jax.random.bernoulli(key, 0.7, xb.shape).astype(xb.dtype)
    loss, g = jax.value_and_grad(lambda w: jnp.mean(((xb * mask) @ w - yb) ** 2))(w)
    return w - lr * g, loss


def problem(dtype, n=23, d=3):
    x = jax.random.normal(jax.random.key(1), (n, d), dtype)
    return x, x @ jnp.arange(1.0, d + 1, dtype=dtype), jnp.zeros(d, dtype)


@pytest.mark.parametrize("x64", [False, True])
def test_epoch_scan_equals_python_loop_bitwise(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        x, y, w0 = problem(dtype)
        key = rng_key(3)
        w, losses = jax.jit(epoch_scan, static_argnums=0, static_argnames="batch_size")(
            sgd_step, w0, key, (x, y), batch_size=5)
        idx, keys = epoch_batches(key, 23, 5)
        kperm, ksteps = jax.random.split(key)  # the derivation the drivers have always used
        np.testing.assert_array_equal(idx, jax.random.permutation(kperm, 23)[:20].reshape(4, 5))
        step = jax.jit(sgd_step)
        w_ref, ref = w0, []
        for t in range(4):
            w_ref, loss = step(w_ref, (x[idx[t]], y[idx[t]]), jax.random.split(ksteps, 4)[t])
            ref.append(loss)
        assert w.dtype == dtype and losses.shape == (4,)
        np.testing.assert_array_equal(np.asarray(w), np.asarray(w_ref))
        np.testing.assert_array_equal(np.asarray(losses), np.asarray(jnp.stack(ref)))


def test_each_example_once_per_epoch_and_remainder_dropped():
    def step(seen, xb, k):
        return seen.at[xb].add(1), xb

    seen, batches = epoch_scan(step, jnp.zeros(23, jnp.int32), rng_key(0), jnp.arange(23), batch_size=5)
    assert batches.shape == (4, 5)
    assert sorted(np.asarray(seen).tolist()) == [0] * 3 + [1] * 20  # 20 used once, the 3 left over dropped
    other, _ = epoch_scan(step, jnp.zeros(23, jnp.int32), rng_key(1), jnp.arange(23), batch_size=5)
    assert not np.array_equal(seen, other)  # another key, another shuffle


def test_in_order_and_single_examples():
    def step(total, b, k):
        assert k is None
        return total + jnp.sum(b), b

    _, batches = epoch_scan(step, 0.0, None, jnp.arange(7.0), batch_size=3)
    np.testing.assert_array_equal(batches, [[0, 1, 2], [3, 4, 5]])
    _, singles = epoch_scan(step, 0.0, None, jnp.arange(7.0), batch_size=None)
    np.testing.assert_array_equal(singles, np.arange(7.0))


def test_run_epochs_equals_epoch_loop_and_summarises():
    x, y, w0 = problem(jnp.float32)
    key = rng_key(4)
    w, losses = run_epochs(sgd_step, w0, key, (x, y), epochs=3, batch_size=6)
    w_ref, ref = w0, []
    for k in jax.random.split(key, 3):
        w_ref, l = epoch_scan(sgd_step, w_ref, k, (x, y), batch_size=6)
        ref.append(l)
    assert losses.shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(w), np.asarray(w_ref))
    np.testing.assert_array_equal(np.asarray(losses), np.asarray(jnp.stack(ref)))
    _, means = run_epochs(sgd_step, w0, key, (x, y), epochs=3, batch_size=6, epoch_end=lambda s, m: jnp.mean(m))
    assert means.shape == (3,)


def test_step_keys_false_shuffles_with_the_epoch_key_itself():
    def step(s, xb, k):
        assert k is None
        return s, xb

    _, batches = epoch_scan(step, 0, rng_key(5), jnp.arange(10), batch_size=5, step_keys=False)
    np.testing.assert_array_equal(batches, jax.random.permutation(rng_key(5), 10).reshape(2, 5))


@dataclasses.dataclass(frozen=True)
class KeyedStep:
    """A hashable step for scan_steps: adds a key-dependent draw scaled by the traced data."""

    scale: float

    def __call__(self, state, data, key):
        z = self.scale * data * jax.random.normal(key, ())
        return state + z, z


def test_scan_steps_chunks_equal_one_scan_and_do_not_retrace():
    from jaxdl.engine import _scan_chunk

    keys = jax.random.split(rng_key(6), 7)
    s_all, m_all = scan_steps(KeyedStep(2.0), jnp.float32(0), keys, jnp.float32(1.5))
    s_chunked, m_chunked = scan_steps(KeyedStep(2.0), jnp.float32(0), keys, jnp.float32(1.5), chunk=3)
    assert isinstance(m_all, np.ndarray) and m_all.shape == (7,)
    np.testing.assert_array_equal(m_all, m_chunked)
    ref = [float(KeyedStep(2.0)(0.0, jnp.float32(1.5), k)[1]) for k in keys]
    np.testing.assert_allclose(m_all, ref, rtol=1e-6)
    size = _scan_chunk._cache_size()
    scan_steps(KeyedStep(2.0), jnp.float32(1), keys, jnp.float32(0.5), chunk=3)  # equal step, new values
    assert _scan_chunk._cache_size() == size


def test_epoch_scan_under_jit_does_not_retrace():
    x, y, w0 = problem(jnp.float32)
    fn = jax.jit(partial(epoch_scan, sgd_step), static_argnames="batch_size")
    fn(w0, rng_key(0), (x, y), batch_size=5)
    size = fn._cache_size()
    fn(w0 + 1, rng_key(1), (x + 1, y), batch_size=5)
    assert fn._cache_size() == size


@pytest.mark.parametrize("batch_size, error, match", [
    (24, ValueError, "batch_size=24 is invalid; expected at most 23"),
    (0, ValueError, "batch_size=0 is invalid"),
    (2.0, TypeError, "batch_size must be an int"),
    (True, TypeError, "batch_size must be an int"),
])
def test_bad_batch_size(batch_size, error, match):
    x, y, w0 = problem(jnp.float32)
    with pytest.raises(error, match=match):
        epoch_scan(sgd_step, w0, rng_key(0), (x, y), batch_size=batch_size)


def test_bad_inputs():
    x, y, w0 = problem(jnp.float32)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        epoch_scan(sgd_step, w0, 0, (x, y), batch_size=5)
    with pytest.raises(ValueError, match="key has shape"):
        epoch_scan(sgd_step, w0, jax.random.split(rng_key(0), 2), (x, y), batch_size=5)
    with pytest.raises(ValueError, match="different numbers of examples"):
        epoch_scan(sgd_step, w0, rng_key(0), (x, y[:-1]), batch_size=5)
    with pytest.raises(ValueError, match="data is empty"):
        epoch_scan(sgd_step, w0, rng_key(0), (x[:0], y[:0]), batch_size=5)
    with pytest.raises(TypeError, match="step must be callable"):
        epoch_scan(None, w0, rng_key(0), (x, y), batch_size=5)
    with pytest.raises(TypeError, match="epochs must be an int"):
        run_epochs(sgd_step, w0, rng_key(0), (x, y), epochs=1.5, batch_size=5)
    with pytest.raises(ValueError, match="chunk=0 is invalid"):
        scan_steps(KeyedStep(1.0), 0.0, jax.random.split(rng_key(0), 3), 1.0, chunk=0)
    with pytest.raises(ValueError, match="keys has shape"):
        scan_steps(KeyedStep(1.0), 0.0, rng_key(0), 1.0)
