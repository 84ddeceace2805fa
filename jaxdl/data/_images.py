"""The digits as images (for convolutional networks) and as sequences of rows (for sequence models).

Both are views of the flat digits split of :func:`jaxdl.data.digits`: the same examples, in the same order, in the
same train and test sets, so a ResNet or Transformer report compares with the MLP report example for example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from analysis._checks import check_choice, check_positive_int
from jaxdl.data._digits import Dataset, digits

SIDE = 8  # the digits are 8x8 pixels
UPSAMPLING = ("nearest", "bilinear")


def _to_images(x: jax.Array, size: int, method: str) -> jax.Array:
    """``(examples, 64)`` pixels to ``(examples, size, size, 1)`` NHWC images."""
    images = jnp.reshape(x, (x.shape[0], SIDE, SIDE, 1))
    if size == SIDE:
        return images
    if method == "nearest":
        factor = size // SIDE
        return jnp.repeat(jnp.repeat(images, factor, axis=1), factor, axis=2)
    return jax.image.resize(images, (x.shape[0], size, size, 1), method="bilinear").astype(x.dtype)


def images_from(ds: Dataset, size: int = SIDE, *, method: str = "nearest") -> Dataset:
    """A flat 8x8 digits :class:`Dataset` as NHWC images ``(examples, size, size, 1)``, labels unchanged.

    Args:
      ds: a split of 64-pixel digits, e.g. :func:`jaxdl.data.digits` or :func:`jaxdl.data.digits_binarized`.
      size: image side, a multiple of 8 (8 keeps the pixels as they are).
      method: upsampling for ``size > 8``: ``"nearest"`` (each pixel repeated ``size // 8`` times along each
        axis; the pixel values stay exactly as they are) or ``"bilinear"`` (``jax.image.resize``).

    Raises:
      ValueError: ``size`` not a positive multiple of 8, an unknown ``method``, or data that are not 64 pixels.

    Example:
      >>> images_from(digits(), 16).x_train.shape
      (1347, 16, 16, 1)
    """
    size = check_positive_int(size, "size", "pixels per image side")
    if size % SIDE:
        raise ValueError(f"size={size} is invalid; expected a multiple of {SIDE} (8, 16, 32, ...).")
    method = check_choice(method, "method", UPSAMPLING)
    _check_pixels(ds)
    return ds._replace(x_train=_to_images(ds.x_train, size, method), x_test=_to_images(ds.x_test, size, method))


def sequences_from(ds: Dataset) -> Dataset:
    """A flat 8x8 digits :class:`Dataset` as sequences ``(examples, 8, 8)``: 8 steps, one image row of 8 pixels
    each (top row first), labels unchanged.

    Raises:
      ValueError: data that are not 64 pixels.
    """
    _check_pixels(ds)
    return ds._replace(x_train=jnp.reshape(ds.x_train, (-1, SIDE, SIDE)),
                       x_test=jnp.reshape(ds.x_test, (-1, SIDE, SIDE)))


def _check_pixels(ds: Dataset) -> None:
    for name in ("x_train", "x_test"):
        shape = tuple(getattr(ds, name).shape)
        if len(shape) != 2 or shape[1] != SIDE * SIDE:
            raise ValueError(f"{name} has shape {shape}; expected flat 8x8 digits (examples, 64).")


def digits_images(size: int = SIDE, *, method: str = "nearest", test_fraction: float = 0.25, seed: int = 0,
                  dtype=jnp.float32) -> Dataset:
    """The digits split of :func:`jaxdl.data.digits` (same examples) as NHWC images; see :func:`images_from`."""
    return images_from(digits(test_fraction, seed, dtype), size, method=method)


def digits_sequences(test_fraction: float = 0.25, seed: int = 0, dtype=jnp.float32) -> Dataset:
    """The digits split of :func:`jaxdl.data.digits` (same examples) as 8 rows of 8 pixels; see
    :func:`sequences_from`."""
    return sequences_from(digits(test_fraction, seed, dtype))
