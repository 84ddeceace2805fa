"""ANCHORS.md setting B: the large models of the accelerator benchmarks, on random data (float32).

* ``mlp``: MLP 3072-4096-4096-4096-10 (tanh), batch 1024 (46.2M parameters).
* ``cnn``: four 3x3 convolutions 3-64-128-256-256 (ReLU, stride 1, then 2, 2, 2), global average pooling and a
  linear layer, batch 256 of 32x32x3 images (0.96M parameters).

``scale`` shrinks widths and batch so the same code runs in seconds on a CPU (for checking the benchmark itself).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models import MLP, split
from jaxdl.train import softmax_cross_entropy


class CNN(nnx.Module):
    """3x3 convolutions (ReLU), global average pooling and a linear classifier."""

    def __init__(self, channels, classes: int, *, rngs: nnx.Rngs):
        self.convs = nnx.List([
            nnx.Conv(a, b, (3, 3), strides=1 if i == 0 else 2, rngs=rngs)
            for i, (a, b) in enumerate(zip(channels[:-1], channels[1:]))
        ])
        self.head = nnx.Linear(channels[-1], classes, rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return self.head(jnp.mean(x, axis=(1, 2)))


def problem(model: str, scale: float = 1.0, seed: int = 0):
    """``(loss_fn, params, x, y)`` of setting B's ``model`` ("mlp" or "cnn"), widths and batch times ``scale``."""
    rngs = nnx.Rngs(seed)
    kx, ky = jax.random.split(jax.random.PRNGKey(seed + 1))
    if model == "mlp":
        width, batch = max(8, int(4096 * scale)), max(8, int(1024 * scale))
        net = MLP([3072, width, width, width, 10], rngs=rngs)
        x = jax.random.normal(kx, (batch, 3072), jnp.float32)
    elif model == "cnn":
        chans = [3] + [max(4, int(c * scale)) for c in (64, 128, 256, 256)]
        batch = max(8, int(256 * scale))
        net = CNN(chans, 10, rngs=rngs)
        x = jax.random.normal(kx, (batch, 32, 32, 3), jnp.float32)
    else:
        raise ValueError(f"model={model!r} is unknown; expected 'mlp' or 'cnn'.")
    apply, params = split(net)
    y = jax.random.randint(ky, (x.shape[0],), 0, 10)
    return softmax_cross_entropy(apply), params, x, y
