"""Problems to train and analyse: classification on the built-in data sets (an MLP, its softmax cross-entropy and
accuracy, and the exact float64 Hessian of such a problem) and teacher-student regression.

The main job (:mod:`jaxdl.report`) trains and analyses one of these; experiments build their own the same way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import analysis
from analysis._checks import check_number, check_positive_int
from jaxdl import data as data_lib
from jaxdl.models import MLP, split
from jaxdl.models.init import initialize_mlp
from jaxdl.train import accuracy, softmax_cross_entropy

DATASETS: dict[str, Callable[..., data_lib.Dataset]] = {
    "digits": data_lib.digits,
    "digits-binarized": data_lib.digits_binarized,
}


class Problem(NamedTuple):
    """What training and analysis share: data, the pure model and the loss."""

    data: data_lib.Dataset
    apply: Any
    params: Any
    loss_fn: Any
    accuracy_fn: Any


def load_dataset(dataset: str, dtype=jnp.float32) -> data_lib.Dataset:
    """The built-in data set named ``dataset`` (a key of :data:`DATASETS`) in ``dtype``.

    Raises:
      ValueError: an unknown data set name.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is unknown; expected one of {', '.join(DATASETS)}.")
    return DATASETS[dataset](dtype=dtype)


def classification_problem(dataset: str, hidden: Sequence[int], activation: str, seed: int,
                           dtype=jnp.float32) -> Problem:
    """An MLP ``features -> *hidden -> classes`` on ``dataset`` with softmax cross-entropy and accuracy.

    Args:
      dataset: a key of :data:`DATASETS`.
      hidden: hidden layer widths; empty for softmax regression (no hidden layer).
      activation: a key of :data:`jaxdl.models.mlp.ACTIVATIONS`.
      seed: the initialisation seed (``flax.nnx.Rngs(seed)``).
      dtype: data, parameter and computation dtype.
    """
    ds = load_dataset(dataset, dtype)
    model = MLP([ds.num_features, *hidden, ds.num_classes], activation=activation, rngs=nnx.Rngs(seed), dtype=dtype)
    apply, params = split(model)
    return Problem(ds, apply, params, softmax_cross_entropy(apply), accuracy(apply))


@functools.lru_cache(maxsize=4)
def _float64_problem(dataset: str, hidden: tuple[int, ...], activation: str) -> Problem:
    """One float64 problem per architecture, so repeated exact Hessians reuse one compiled loss."""
    return classification_problem(dataset, hidden, activation, 0, jnp.float64)


def exact_hessian_float64(params, dataset: str, hidden: Sequence[int], activation: str) -> np.ndarray:
    """The dense training-set Hessian at ``params`` of :func:`classification_problem` ``(dataset, hidden,
    activation)``, computed in float64 (parameters cast exactly).

    A float32 Hessian carries rounding errors of about ``eps * ||H||`` (1e-7 relative), which swamp the small
    eigenvalues; in float64 the null tolerance ``n eps max|lambda|`` separates true zeros (the softmax invariance)
    from small curvature, so the non-null condition number means something.
    """
    with jax.enable_x64(True):
        problem = _float64_problem(dataset, tuple(hidden), activation)
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
        H = analysis.dense_hessian(problem.loss_fn, p64, problem.data.x_train, problem.data.y_train, block_size=256)
        return np.asarray(H)


def teacher_student(inputs: int, hidden: int, num_examples: int, seed: int, *, teacher_hidden: int = 16,
                    weight_decay: float = 1e-2, dtype=jnp.float64):
    """Regression data from a random tanh teacher ``[inputs, teacher_hidden, 1]`` (kernels ``N(0, 4/fan_in)``, so
    it is strongly non-linear) and a tanh student ``[inputs, hidden, 1]`` too narrow to fit it exactly.

    Returns:
      ``(loss_fn, apply, params, x, y)``: ``loss_fn(params, x, y) = 1/2 mean (f(x) - y)^2 + weight_decay/2 ||p||^2``
      and the student's LeCun-normal initial parameters (seed ``seed``).

    Raises:
      ValueError: non-positive sizes or a negative weight decay.
    """
    for name, value in (("inputs", inputs), ("hidden", hidden), ("num_examples", num_examples),
                        ("teacher_hidden", teacher_hidden)):
        check_positive_int(value, name)
    check_number(weight_decay, "weight_decay", minimum=0)
    rng = np.random.default_rng(10_000 + seed)
    x = rng.standard_normal((num_examples, inputs))
    w1 = rng.standard_normal((inputs, teacher_hidden)) * 2 / np.sqrt(inputs)
    w2 = rng.standard_normal((teacher_hidden, 1)) * 2 / np.sqrt(teacher_hidden)
    y = np.tanh(x @ w1) @ w2
    apply, params = initialize_mlp([inputs, hidden, 1], scheme="lecun", seed=seed, dtype=dtype)

    def loss_fn(p, x, y):
        decay = sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(p))
        return 0.5 * jnp.mean((apply(p, x) - y) ** 2) + 0.5 * weight_decay * decay

    return loss_fn, apply, params, jnp.asarray(x, dtype), jnp.asarray(y, dtype)
