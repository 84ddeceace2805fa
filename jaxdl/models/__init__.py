"""Flax NNX models, one family per file; each crosses into pure code through ``split``."""

from jaxdl.models.mlp import MLP as MLP
from jaxdl.models.mlp import split as split

__all__ = ["MLP", "split"]
