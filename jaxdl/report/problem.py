"""The report's problem, from its settings: a :func:`jaxdl.problems.classification_problem` and its exact Hessian."""

from __future__ import annotations

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
    """Data set and MLP of ``config``, in float64 when ``config.float64``."""
    return problems.classification_problem(config.dataset, config.hidden_widths(), config.activation, config.seed,
                                           _dtype(config))


def exact_hessian(config: ReportConfig, params) -> np.ndarray:
    """The dense float64 training-set Hessian of ``config``'s problem at ``params``."""
    return problems.exact_hessian_float64(params, config.dataset, config.hidden_widths(), config.activation)
