"""The report's problem, from its settings: the network on its data set (an MLP of
:func:`jaxdl.problems.classification_problem`, a ResNet-20 or a Transformer), the batch the analysis uses, and the
exact float64 Hessian of that batch."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import problems
from jaxdl.report.config import ReportConfig

def _dtype(config: ReportConfig):
    return jnp.float64 if config.float64 else jnp.float32


def load_dataset(config: ReportConfig):
    """The data set of ``config``, in float64 when ``config.float64``."""
    return problems.load_dataset(config.dataset, _dtype(config))


def build_problem(config: ReportConfig) -> problems.Problem:
    """Data set and network of ``config``, in float64 when ``config.float64``."""
    if config.model == "resnet20":
        return problems.resnet_problem(config.dataset, width=config.width, depth=config.depth,
                                       image_size=config.image_size, seed=config.seed, dtype=_dtype(config))
    if config.model == "transformer":
        return problems.transformer_problem(config.dataset, width=config.width, num_heads=config.num_heads,
                                            num_blocks=config.depth, seed=config.seed, dtype=_dtype(config))
    return problems.classification_problem(config.dataset, config.hidden_widths(), config.activation, config.seed,
                                           _dtype(config))


def analysis_batch(config: ReportConfig, problem: problems.Problem) -> tuple[jax.Array, jax.Array]:
    """The training examples the curvature analysis uses: all, or the first ``analysis_examples`` (a fixed
    subset; the split is already shuffled)."""
    ds, m = problem.data, config.analysis_examples
    return (ds.x_train, ds.y_train) if m is None else (ds.x_train[:m], ds.y_train[:m])


@functools.lru_cache(maxsize=4)
def _float64_problem(config: ReportConfig) -> problems.Problem:
    """One float64 problem per configuration, so repeated exact Hessians reuse one compiled loss."""
    return build_problem(dataclasses.replace(config, float64=True, seed=0))


def exact_hessian(config: ReportConfig, params, batch=None) -> np.ndarray:
    """The dense float64 Hessian at ``params`` of ``config``'s loss on ``batch`` (default: the training set)."""
    if config.model in ("mlp", "linear") and batch is None:
        return problems.exact_hessian_float64(params, config.dataset, config.hidden_widths(), config.activation)
    with jax.enable_x64(True):
        problem = _float64_problem(config)
        batch = (problem.data.x_train, problem.data.y_train) if batch is None else batch
        return problems.float64_hessian(problem.loss_fn, params, *batch)
