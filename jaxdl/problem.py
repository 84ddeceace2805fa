"""The supervised problem the main job trains and analyses, and its exact float64 Hessian spectrum."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import analysis
from jaxdl import data as data_lib
from jaxdl.models import MLP, split
from jaxdl.train import accuracy, softmax_cross_entropy


class Problem(NamedTuple):
    """What training and analysis share: data, the pure model and the loss."""

    data: data_lib.Dataset
    apply: Any
    params: Any
    loss_fn: Any
    accuracy_fn: Any


def load_dataset(config) -> data_lib.Dataset:
    """The data set of a :class:`jaxdl.config.ReportConfig`, in float64 when ``config.float64``."""
    dtype = jnp.float64 if config.float64 else jnp.float32
    return data_lib.digits(dtype=dtype) if config.dataset == "digits" else data_lib.digits_binarized(dtype=dtype)


def build_problem(config) -> Problem:
    """Data set and MLP of a :class:`jaxdl.config.ReportConfig`, in float64 when ``config.float64``."""
    dtype = jnp.float64 if config.float64 else jnp.float32
    ds = load_dataset(config)
    model = MLP(config.layer_sizes(ds.num_features, ds.num_classes), activation=config.activation,
                rngs=nnx.Rngs(config.seed), dtype=dtype)
    apply, params = split(model)
    return Problem(ds, apply, params, softmax_cross_entropy(apply), accuracy(apply))


@functools.lru_cache(maxsize=4)
def _float64_problem(config) -> Problem:
    """One float64 problem per architecture, so repeated exact Hessians reuse one compiled loss."""
    return build_problem(config)


def exact_hessian_float64(config, params) -> np.ndarray:
    """The dense training-set Hessian at ``params`` computed in float64 (parameters cast exactly).

    A float32 Hessian carries rounding errors of about ``eps * ||H||`` (1e-7 relative), which swamp the small
    eigenvalues; in float64 the null tolerance ``n eps max|lambda|`` separates true zeros (the softmax invariance)
    from small curvature, so the non-null condition number means something.
    """
    with jax.enable_x64(True):
        problem = _float64_problem(dataclasses.replace(config, float64=True, seed=0))
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
        H = analysis.dense_hessian(problem.loss_fn, p64, problem.data.x_train, problem.data.y_train, block_size=256)
        return np.asarray(H)
