"""Elman cell and transduction models: the update against numpy, shapes, initialisations against dense eigenvalues,
determinism, and every bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.models import (
    RNN,
    BidirectionalRNN,
    CellParams,
    ElmanCell,
    EncoderDecoder,
    SequenceToVector,
    VectorToSequence,
    elman_scan,
    split,
)


@pytest.mark.parametrize("x64", [False, True])
def test_elman_scan_matches_numpy_loop(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        for seed in range(3):
            rng = np.random.default_rng(seed)
            w_x, w_h, b = rng.normal(size=(2, 4)), rng.normal(size=(4, 4)) / 2, rng.normal(size=4)
            xs = rng.normal(size=(6, 2))
            for leak, act, fn in ((1.0, "tanh", np.tanh), (0.3, "tanh", np.tanh), (0.5, "identity", lambda z: z)):
                p = CellParams(*(jnp.asarray(a, dtype) for a in (w_x, w_h, b)))
                got = jax.jit(elman_scan, static_argnames=("activation", "reverse"))(
                    p, jnp.zeros(4, dtype), jnp.asarray(xs, dtype), leak, activation=act)
                h, ref = np.zeros(4), []
                for x in xs:
                    h = (1 - leak) * h + leak * fn(x @ w_x + h @ w_h + b)
                    ref.append(h)
                np.testing.assert_allclose(np.asarray(got), np.array(ref), rtol=1e-12 if x64 else 2e-5, atol=1e-6)


def test_transduction_shapes_batched_and_single():
    models = {
        "rnn": (RNN(3, 8, 2, rngs=nnx.Rngs(0)), (7, 2)),
        "bi": (BidirectionalRNN(3, 8, 2, rngs=nnx.Rngs(0)), (7, 2)),
        "s2v": (SequenceToVector(3, 8, 2, rngs=nnx.Rngs(0)), (2,)),
        "ed": (EncoderDecoder(3, 8, 2, 4, rngs=nnx.Rngs(0)), (4, 2)),
    }
    for name, (m, shape) in models.items():  # shapes by abstract evaluation: nothing is compiled
        apply, params = split(m)
        assert jax.eval_shape(apply, params, jax.ShapeDtypeStruct((7, 3), jnp.float32)).shape == shape, name
        assert jax.eval_shape(apply, params, jax.ShapeDtypeStruct((2, 7, 3), jnp.float32)).shape == (2,) + shape
    apply, params = split(VectorToSequence(3, 8, 2, 5, rngs=nnx.Rngs(0)))
    assert jax.eval_shape(apply, params, jax.ShapeDtypeStruct((3,), jnp.float32)).shape == (5, 2)
    assert jax.eval_shape(apply, params, jax.ShapeDtypeStruct((4, 3), jnp.float32)).shape == (4, 5, 2)
    # A batch is the same computation as its sequences one by one.
    apply, params = split(models["bi"][0])
    batch = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 3))
    f = jax.jit(apply)
    np.testing.assert_allclose(np.asarray(f(params, batch)[1]), np.asarray(f(params, batch[1])), rtol=1e-5, atol=1e-6)


def test_bidirectional_backward_half_reads_the_reversed_sequence():
    """The backward state at t equals a forward scan of the reversed sequence, read at T - 1 - t."""
    m = BidirectionalRNN(2, 4, 1, rngs=nnx.Rngs(1))
    xs = jax.random.normal(jax.random.PRNGKey(0), (6, 2))
    back = m.backward.scan(xs, reverse=True)
    np.testing.assert_allclose(np.asarray(back), np.asarray(m.backward.scan(xs[::-1])[::-1]), rtol=1e-6)


def test_initialisations_spectral_radius():
    esn = ElmanCell(2, 40, recurrent_init="esn", spectral_radius=1.2, input_scaling=0.3, rngs=nnx.Rngs(0))
    w = np.asarray(esn.w_h[...], np.float64)
    assert abs(np.max(np.abs(np.linalg.eigvals(w))) - 1.2) < 1e-5
    assert np.all(np.count_nonzero(w, axis=0) == 15)  # fan-in 15 (columns: the row-vector convention)
    assert np.all(np.abs(np.asarray(esn.w_x[...])) <= 0.3) and np.all(np.asarray(esn.b[...]) == 0)
    orth = ElmanCell(2, 10, recurrent_init="orthogonal", spectral_radius=0.9, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(np.asarray(orth.w_h[...], np.float64))), 0.9, rtol=1e-5)
    uni = ElmanCell(2, 25, rngs=nnx.Rngs(0))
    assert np.all(np.abs(np.asarray(uni.w_h[...])) <= 1 / 5)


def test_same_key_same_bits():
    a = RNN(2, 6, 1, recurrent_init="esn", rngs=nnx.Rngs(3))
    b = RNN(2, 6, 1, recurrent_init="esn", rngs=nnx.Rngs(3))
    xs = jnp.linspace(-1, 1, 20).reshape(10, 2)
    np.testing.assert_array_equal(np.asarray(a(xs)), np.asarray(b(xs)))
    apply, params = split(a)
    np.testing.assert_array_equal(np.asarray(jax.jit(apply)(params, xs)), np.asarray(a(xs)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="leak"):
        ElmanCell(2, 3, leak=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="leak"):
        RNN(2, 3, 1, leak=-0.1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="leak"):
        ElmanCell(2, 3, leak=1.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="spectral_radius"):
        ElmanCell(2, 3, recurrent_init="esn", spectral_radius=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="activation"):
        ElmanCell(2, 3, activation="softsign", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="recurrent_init"):
        ElmanCell(2, 3, recurrent_init="xavier", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="hidden"):
        ElmanCell(2, 0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="unexpected keyword"):
        RNN(2, 3, 1, rngs=nnx.Rngs(0), spectral=1.0)
    m = RNN(2, 3, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rank 2"):
        m(jnp.ones(5))
    with pytest.raises(ValueError, match="rank 2"):
        m(jnp.ones((1, 2, 5, 2)))
    with pytest.raises(ValueError, match="empty"):
        m(jnp.ones((0, 2)))
    with pytest.raises(ValueError, match="empty"):
        m(jnp.ones((0, 4, 2)))
    with pytest.raises(ValueError, match="features"):
        m(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="length"):
        VectorToSequence(2, 3, 1, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="out_length"):
        EncoderDecoder(2, 3, 1, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="shape"):
        VectorToSequence(2, 3, 1, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 2, 2)))
