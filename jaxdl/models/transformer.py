"""A small pre-norm Transformer encoder classifier for sequences, in Flax NNX.

Tokens (``vocab_size``) or vectors (``in_features``) are embedded to ``dim`` and given learned position embeddings;
each encoder block is pre-norm (Xiong et al. 2020):

    x <- x + dropout(attention(layer_norm(x)))
    x <- x + dropout(W2 gelu(W1 layer_norm(x)))

with multi-head self-attention (``nnx.MultiHeadAttention``, no mask: every position attends to every other; the
softmax in the model's dtype, see :func:`attention_in_dtype`). A
final LayerNorm, the mean over positions and a linear head give the logits.

With ``dropout > 0`` the Dropout layers keep an RNG stream (``nnx.RngState``), so the model crosses into pure code
through :func:`jaxdl.models.curvature_objective` (``dropout="off"`` or a fixed key), not ``split``.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights

from analysis._checks import check_number, check_positive_int


def attention_in_dtype(query: jax.Array, key: jax.Array, value: jax.Array, **kwargs) -> jax.Array:
    """Dot-product attention computed in the inputs' dtype.

    ``nnx.MultiHeadAttention``'s default, without dropout, calls ``jax.nn.dot_product_attention``, whose softmax
    always runs in float32: a float64 model is then only ~1e-8 accurate, too coarse for float64 curvature checks.
    """
    weights = dot_product_attention_weights(query, key, **kwargs)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=kwargs.get("precision"))


class TransformerBlock(nnx.Module):
    """One pre-norm encoder block on ``(batch, length, dim)``: self-attention then an MLP, each residual."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, dropout: float, rngs: nnx.Rngs, dtype):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs, dtype=dtype, param_dtype=dtype)
        self.attention = nnx.MultiHeadAttention(num_heads, dim, decode=False, keep_rngs=False,
                                                attention_fn=attention_in_dtype, rngs=rngs, dtype=dtype,
                                                param_dtype=dtype)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs, dtype=dtype, param_dtype=dtype)
        self.hidden = nnx.Linear(dim, mlp_dim, rngs=rngs, dtype=dtype, param_dtype=dtype)
        self.output = nnx.Linear(mlp_dim, dim, rngs=rngs, dtype=dtype, param_dtype=dtype)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.dropout(self.attention(self.norm1(x)))
        return x + self.dropout(self.output(jax.nn.gelu(self.hidden(self.norm2(x)))))


class TransformerClassifier(nnx.Module):
    """Sequence classifier: embedding, ``num_blocks`` pre-norm encoder blocks, LayerNorm, mean pooling, linear head.

    Args:
      num_classes: outputs of the head.
      max_length: longest sequence (rows of the learned position embedding).
      vocab_size: token inputs ``int[batch, length]`` embedded by ``nnx.Embed``; or
      in_features: vector inputs ``float[batch, length, in_features]`` embedded by ``nnx.Linear``. Give exactly one.
      dim: model width, a multiple of ``num_heads``.
      num_heads: attention heads.
      mlp_dim: hidden width of each block's MLP (default ``4 * dim``).
      num_blocks: encoder blocks.
      dropout: rate of the Dropout after attention and after the MLP, in ``[0, 1)``.
      rngs, dtype: as for ``nnx.Linear``.

    Raises:
      TypeError / ValueError: both or neither of ``vocab_size`` / ``in_features``, a non-positive size, ``dim`` not
        a multiple of ``num_heads``, a dropout rate outside ``[0, 1)``.

    Example:
      >>> model = TransformerClassifier(num_classes=3, max_length=6, vocab_size=11, dim=8, num_heads=2,
      ...                               rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((4, 6), jnp.int32)).shape
      (4, 3)
    """

    def __init__(self, *, num_classes: int, max_length: int, vocab_size: Optional[int] = None,
                 in_features: Optional[int] = None, dim: int = 32, num_heads: int = 4, mlp_dim: Optional[int] = None,
                 num_blocks: int = 1, dropout: float = 0.0, rngs: nnx.Rngs, dtype=jnp.float32):
        if (vocab_size is None) == (in_features is None):
            raise ValueError(f"vocab_size={vocab_size!r} and in_features={in_features!r}: give exactly one "
                             "(vocab_size for token inputs, in_features for vector inputs).")
        num_classes = check_positive_int(num_classes, "num_classes", "classes")
        self.max_length = check_positive_int(max_length, "max_length", "longest sequence")
        dim = check_positive_int(dim, "dim", "model width")
        num_heads = check_positive_int(num_heads, "num_heads", "attention heads")
        if dim % num_heads:
            raise ValueError(f"dim={dim} is invalid with num_heads={num_heads}; expected a multiple of num_heads.")
        mlp_dim = check_positive_int(4 * dim if mlp_dim is None else mlp_dim, "mlp_dim", "MLP hidden width")
        num_blocks = check_positive_int(num_blocks, "num_blocks", "encoder blocks")
        rate = check_number(dropout, "dropout", minimum=0.0, maximum=1.0, include_maximum=False)
        kwargs = dict(rngs=rngs, dtype=dtype, param_dtype=dtype)
        if vocab_size is not None:
            self.vocab_size = check_positive_int(vocab_size, "vocab_size", "tokens")
            self.in_features = None
            self.embed = nnx.Embed(self.vocab_size, dim, **kwargs)
        else:
            self.vocab_size = None
            self.in_features = check_positive_int(in_features, "in_features", "features per position")
            self.embed = nnx.Linear(self.in_features, dim, **kwargs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (self.max_length, dim), dtype))
        self.blocks = nnx.List([TransformerBlock(dim, num_heads, mlp_dim, dropout=rate, rngs=rngs, dtype=dtype)
                                for _ in range(num_blocks)])
        self.norm = nnx.LayerNorm(dim, **kwargs)
        self.head = nnx.Linear(dim, num_classes, **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        shape = jnp.shape(x)
        if self.vocab_size is not None:
            if len(shape) != 2 or not jnp.issubdtype(jnp.result_type(x), jnp.integer):
                raise ValueError(f"x has shape {shape} and dtype {jnp.result_type(x)}; expected integer tokens "
                                 "(batch, length).")
        elif len(shape) != 3 or shape[-1] != self.in_features:
            raise ValueError(f"x has shape {shape}; expected vectors (batch, length, {self.in_features}).")
        if shape[1] > self.max_length:
            raise ValueError(f"x has length {shape[1]}; expected at most max_length={self.max_length}.")
        h = self.embed(x) + self.position[: shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(jnp.mean(self.norm(h), axis=1))
