"""scikit-learn's shipped digits, the XOR points, and deterministic minibatching."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from analysis._checks import check_key, check_positive_int


class Dataset(NamedTuple):
    """Train and test splits. ``x_*`` are ``(examples, features)``; ``y_*`` integer labels or targets."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_classes(self) -> int:
        return int(jnp.max(self.y_train)) + 1


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, dtype) -> Dataset:
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} is invalid; expected a value in (0, 1).")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed)
    return Dataset(
        jnp.asarray(x_tr, dtype=dtype), jnp.asarray(y_tr), jnp.asarray(x_te, dtype=dtype), jnp.asarray(y_te)
    )


def digits(test_fraction: float = 0.25, seed: int = 0, dtype=jnp.float32) -> Dataset:
    """scikit-learn's shipped 8x8 digits (1,797 images, 64 pixels), pixels scaled to [0, 1] (divided by 16).

    The split is scikit-learn's ``train_test_split(test_size=test_fraction, random_state=seed)``: deterministic.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _split(bunch.data / 16.0, bunch.target.astype(np.int32), test_fraction, seed, dtype)


def digits_full(dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """All 1,797 digits (pixels / 16) and labels, unsplit: the full-batch setting of ANCHORS.md setting A."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return jnp.asarray(bunch.data / 16.0, dtype=dtype), jnp.asarray(bunch.target.astype(np.int32))


def digits_binarized(threshold: float = 0.5, test_fraction: float = 0.25, seed: int = 0, dtype=jnp.float32) -> Dataset:
    """Digits with pixels / 16 binarised at ``> threshold`` (the RBM and VAE setting of ANCHORS.md)."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold={threshold} is invalid; expected a value in [0, 1).")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0 > threshold).astype(np.float64)
    return _split(x, bunch.target.astype(np.int32), test_fraction, seed, dtype)


def xor(dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """The four XOR points of Deep Learning sec. 6.1 and their targets ``[0, 1, 1, 0]``."""
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=dtype)
    return x, jnp.array([0.0, 1.0, 1.0, 0.0], dtype=dtype)


def minibatches(key: jax.Array, num_examples: int, batch_size: int, *, drop_remainder: bool = True) -> jax.Array:
    """Indices of one epoch of shuffled minibatches, ``(num_batches, batch_size)``; deterministic in ``key``."""
    check_key(key)
    check_positive_int(num_examples, "num_examples", minimum=0)
    check_positive_int(batch_size, "batch_size")
    if num_examples <= 0:
        raise ValueError(f"num_examples={num_examples}: the data set is empty.")
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size={batch_size} is invalid; expected 1 <= batch_size <= {num_examples}.")
    perm = jax.random.permutation(key, num_examples)
    count = num_examples // batch_size
    return perm[: count * batch_size].reshape(count, batch_size)
