"""CIFAR-style residual network (He et al. 2016, sec. 4.2) in Flax NNX, NHWC.

A 3x3 convolution, three stages of ``n`` basic blocks of widths ``w, 2w, 4w`` (the first block of stages 2 and 3
halves the resolution), global average pooling and a linear head: ``6n + 2`` weight layers, ResNet-20 at
``n = 3, w = 16`` (0.27M parameters). Every convolution is followed by BatchNorm; a block whose input and output
shapes agree adds its input unchanged (identity shortcut), otherwise through a 1x1 strided convolution and
BatchNorm (projection shortcut). Convolutions carry no bias: the BatchNorm shift that follows plays that role.
BatchNorm's running statistics are kept in ``dtype``, so a float64 model is float64 throughout.

BatchNorm keeps running statistics (``nnx.BatchStat``), so the model crosses into pure code through
:func:`jaxdl.models.curvature_objective`, not ``split``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from analysis._checks import check_number, check_positive_int


def _conv(cin: int, cout: int, size: int, stride: int, rngs: nnx.Rngs, dtype) -> nnx.Conv:
    return nnx.Conv(cin, cout, (size, size), strides=stride, padding="SAME", use_bias=False, rngs=rngs,
                    dtype=dtype, param_dtype=dtype)


def _norm(features: int, momentum: float, rngs: nnx.Rngs, dtype) -> nnx.BatchNorm:
    norm = nnx.BatchNorm(features, momentum=momentum, rngs=rngs, dtype=dtype, param_dtype=dtype)
    # nnx.BatchNorm keeps its running statistics in float32 whatever the dtype; a float64 network would then
    # normalise with float32 precision in "running" mode.
    norm.mean = nnx.BatchStat(jnp.zeros(features, dtype))
    norm.var = nnx.BatchStat(jnp.ones(features, dtype))
    return norm


class BasicBlock(nnx.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3x3 convolutions, ``conv1`` of ``stride``."""

    def __init__(self, cin: int, cout: int, stride: int, *, momentum: float, rngs: nnx.Rngs, dtype):
        self.conv1 = _conv(cin, cout, 3, stride, rngs, dtype)
        self.bn1 = _norm(cout, momentum, rngs, dtype)
        self.conv2 = _conv(cout, cout, 3, 1, rngs, dtype)
        self.bn2 = _norm(cout, momentum, rngs, dtype)
        if stride != 1 or cin != cout:
            self.shortcut_conv = _conv(cin, cout, 1, stride, rngs, dtype)
            self.shortcut_bn = _norm(cout, momentum, rngs, dtype)
        else:
            self.shortcut_conv = self.shortcut_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x))
        return jax.nn.relu(h + skip)


class ResNet20(nnx.Module):
    """CIFAR ResNet of depth ``6n + 2`` on NHWC images, returning logits.

    Args:
      num_classes: outputs of the linear head.
      in_channels: image channels (3 for CIFAR).
      width: channels of the first stage ``w``; the stages have ``w, 2w, 4w``.
      depth: ``6n + 2`` with ``n >= 1`` blocks per stage (20, 32, 44, 56, 110; 8 is the smallest).
      momentum: BatchNorm running-average momentum.
      rngs, dtype: as for ``nnx.Conv``.

    Raises:
      TypeError / ValueError: a non-integer or non-positive size, a ``depth`` that is not ``6n + 2``, a momentum
        outside ``[0, 1)``.

    Example:
      >>> model = ResNet20(depth=8, width=4, num_classes=3, rngs=nnx.Rngs(0))
      >>> model.eval()
      >>> model(jnp.zeros((2, 8, 8, 3))).shape
      (2, 3)
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: int = 16, depth: int = 20,
                 momentum: float = 0.9, rngs: nnx.Rngs, dtype=jnp.float32):
        self.num_classes = check_positive_int(num_classes, "num_classes", "classes")
        self.in_channels = check_positive_int(in_channels, "in_channels", "image channels")
        width = check_positive_int(width, "width", "channels of the first stage")
        depth = check_positive_int(depth, "depth", "weight layers, 6n + 2", minimum=8)
        if (depth - 2) % 6:
            raise ValueError(f"depth={depth} is invalid; expected 6n + 2 (8, 14, 20, 32, ...): n blocks of two "
                             "convolutions in each of 3 stages, plus the first convolution and the head.")
        momentum = check_number(momentum, "momentum", minimum=0.0, maximum=1.0, include_maximum=False)
        self.blocks_per_stage = (depth - 2) // 6
        self.stem = _conv(self.in_channels, width, 3, 1, rngs, dtype)
        self.stem_bn = _norm(width, momentum, rngs, dtype)
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(cin, cout, stride, momentum=momentum, rngs=rngs, dtype=dtype))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(cin, self.num_classes, rngs=rngs, dtype=dtype, param_dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        if jnp.ndim(x) != 4 or jnp.shape(x)[-1] != self.in_channels:
            raise ValueError(f"x has shape {jnp.shape(x)}; expected NHWC images (batch, height, width, "
                             f"{self.in_channels}).")
        h = jax.nn.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            h = block(h)
        return self.head(jnp.mean(h, axis=(1, 2)))
