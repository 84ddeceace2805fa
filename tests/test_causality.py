"""analysis.causal_structure: exact zeros above the diagonal for causal maps, against maps with known structure and
a finite-difference Jacobian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from analysis import causal_structure
from jaxdl.models import RNN, BidirectionalRNN, EncoderDecoder, SequenceToVector, split


def conv(xs, taps):
    """``y_t = sum_k taps[k] x_{t+k-1}`` (zero padded): one future tap."""
    padded = jnp.pad(xs, ((1, 1), (0, 0)))
    return taps[0] * padded[:-2] + taps[1] * padded[1:-1] + taps[2] * padded[2:]


def test_known_structures():
    xs = jnp.arange(1.0, 6.0)[:, None]
    cumsum = causal_structure(lambda x: jnp.cumsum(x, 0), xs)
    assert cumsum.causal and cumsum.aligned and not cumsum.anticausal
    np.testing.assert_array_equal(cumsum.influence, np.tril(np.ones((5, 5))))
    np.testing.assert_array_equal(cumsum.first_input, np.zeros(5))
    np.testing.assert_array_equal(cumsum.last_input, np.arange(5))
    rev = causal_structure(lambda x: jnp.cumsum(x[::-1], 0)[::-1], xs)
    assert rev.anticausal and not rev.causal
    c = causal_structure(conv, xs, jnp.array([1.0, 2.0, 0.5]))
    assert not c.causal and c.max_future_influence == 0.5
    assert causal_structure(conv, xs, jnp.array([1.0, 2.0, 0.0])).causal  # the future tap switched off
    # An influence of 1e-9 counts as zero only with atol.
    c9 = causal_structure(conv, xs, jnp.array([1.0, 2.0, 1e-9]))
    assert not c9.causal and causal_structure(conv, xs, jnp.array([1.0, 2.0, 1e-9]), atol=1e-8).causal
    vec = causal_structure(lambda x: jnp.sum(x**2, 0), xs)
    assert vec.influence.shape == (1, 5) and not vec.aligned and not vec.causal
    np.testing.assert_allclose(vec.influence[0], 2 * np.arange(1.0, 6.0))


def test_rnn_causal_exactly_bidirectional_not():
    # float32 here; float64 Jacobians are checked against finite differences below.
    with jax.enable_x64(False):
        dtype = jnp.float32
        # One pure function per architecture (the static argument of the compiled Jacobian), parameters per seed.
        apply, _ = split(RNN(3, 5, 2, leak=0.5, rngs=nnx.Rngs(0), dtype=dtype))
        apply_b, _ = split(BidirectionalRNN(3, 5, 2, rngs=nnx.Rngs(0), dtype=dtype))

        def seq(x, p):
            return apply(p, x)

        def seq_b(x, p):
            return apply_b(p, x)

        for seed in range(2):
            xs = jax.random.normal(jax.random.PRNGKey(seed), (7, 3), dtype)
            params = split(RNN(3, 5, 2, leak=0.5, rngs=nnx.Rngs(seed), dtype=dtype))[1]
            s = causal_structure(seq, xs, params)
            assert s.causal and s.max_future_influence == 0.0 and s.max_past_influence > 0
            assert np.all(np.diag(s.influence) > 0)
            params_b = split(BidirectionalRNN(3, 5, 2, rngs=nnx.Rngs(seed), dtype=dtype))[1]
            b = causal_structure(seq_b, xs, params_b)
            assert not b.causal and not b.anticausal and b.max_future_influence > 1e-4
            assert np.all(np.triu(b.influence, 1)[np.triu_indices(7, 1)] > 0)


def test_influence_matches_finite_differences():
    with jax.enable_x64(True):
        xs = jax.random.normal(jax.random.PRNGKey(3), (5, 2), jnp.float64)
        apply, params = split(EncoderDecoder(2, 4, 3, 3, rngs=nnx.Rngs(1), dtype=jnp.float64))
        s = causal_structure(lambda x, p: apply(p, x), xs, params)
        apply = jax.jit(apply)
        assert s.influence.shape == (3, 5) and not s.aligned
        eps = 1e-6
        fd = np.zeros((3, 3, 5, 2))
        for t in range(5):
            for j in range(2):
                e = jnp.zeros_like(xs).at[t, j].set(eps)
                fd[:, :, t, j] = (np.asarray(apply(params, xs + e)) - np.asarray(apply(params, xs - e))) / (2 * eps)
        np.testing.assert_allclose(s.influence, np.sqrt((fd**2).sum(axis=(1, 3))), rtol=1e-7)
        apply_v, params_v = split(SequenceToVector(2, 4, 3, rngs=nnx.Rngs(2), dtype=jnp.float64))
        v = causal_structure(lambda x, p: apply_v(p, x), xs, params_v)
        assert v.first_input[0] == 0 and v.last_input[0] == 4


def test_bad_inputs():
    with pytest.raises(ValueError, match="rank 2"):
        causal_structure(lambda x: x, jnp.ones(4))
    with pytest.raises(ValueError, match="empty"):
        causal_structure(lambda x: x, jnp.ones((0, 2)))
    with pytest.raises(ValueError, match="atol"):
        causal_structure(lambda x: x, jnp.ones((3, 2)), atol=-1.0)
