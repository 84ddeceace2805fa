"""Problems to train and analyse: classification on the built-in data sets (an MLP, its softmax cross-entropy and
accuracy, and the exact float64 Hessian of such a problem; a ResNet-20 on the digits as images and a Transformer on
the digits as sequences of rows) and teacher-student regression.

The main job (:mod:`jaxdl.report`) trains and analyses one of these; experiments build their own the same way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import analysis
from analysis._checks import check_number, check_positive_int
from jaxdl import data as data_lib
from jaxdl.models import MLP, ResNet20, TransformerClassifier, curvature_objective, split
from jaxdl.models.init import initialize_mlp
from jaxdl.train import accuracy, softmax_cross_entropy

# The one objective a ResNet problem is trained and analysed with (see :func:`resnet_problem`).
RESNET_BATCH_NORM = "batch"

DATASETS: dict[str, Callable[..., data_lib.Dataset]] = {
    "digits": data_lib.digits,
    "digits-binarized": data_lib.digits_binarized,
}


class Problem(NamedTuple):
    """What training and analysis share: data, the pure model and the loss.

    ``layers`` groups the parameter paths into the blocks of the per-layer analysis (``{name: (leaf path, ...)}``,
    each a valid ``block=`` of :mod:`analysis`); None means :func:`analysis.layer_blocks`, one block per NNX
    module holding parameters.
    """

    data: data_lib.Dataset
    apply: Any
    params: Any
    loss_fn: Any
    accuracy_fn: Any
    layers: Optional[dict[str, tuple[str, ...]]] = None


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


def _cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _fraction_correct(logits: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=-1) == y)


def _logits(logits: jax.Array) -> jax.Array:
    return logits


def nnx_classification_problem(model: nnx.Module, ds: data_lib.Dataset, *, batch_norm: Optional[str] = None,
                               layers: Optional[dict[str, tuple[str, ...]]] = None) -> Problem:
    """Softmax cross-entropy and accuracy of any NNX classifier through :func:`jaxdl.models.curvature_objective`.

    Training and analysis differentiate the same function: the loss over the ``nnx.Param`` leaves with BatchNorm
    in mode ``batch_norm`` (``"batch"``: normalised by the statistics of the batch passed in, as in training) and
    Dropout off; the running statistics are never used or updated. ``apply``, ``loss_fn`` and ``accuracy_fn`` are
    all evaluated in that one mode, so the loss on the test set is normalised by the test batch's statistics.

    Args:
      model: an NNX module mapping ``ds.x_*`` to logits; it is not modified.
      ds: the data, with integer labels.
      batch_norm: ``"batch"`` or ``"running"`` for a model with BatchNorm; None for one without.
      layers: the blocks of the per-layer analysis (see :class:`Problem`).
    """
    modes = dict(batch_norm=batch_norm, dropout="off")
    loss_fn, params = curvature_objective(model, _cross_entropy, **modes)
    accuracy_fn, _ = curvature_objective(model, _fraction_correct, **modes)
    apply, _ = curvature_objective(model, _logits, **modes)
    return Problem(ds, apply, params, loss_fn, jax.jit(accuracy_fn), layers)


def grouped_layers(params, unit: Callable[[str], tuple[int, str]]) -> dict[str, tuple[str, ...]]:
    """The blocks of :func:`analysis.layer_blocks` (one per NNX module) merged by ``unit(module_path) ->
    (position, name)``, ordered by position (input to output)."""
    groups: dict[tuple[int, str], list[str]] = {}
    for layer, paths in analysis.layer_blocks(params).items():
        groups.setdefault(unit(layer), []).extend(paths)
    return {name: tuple(paths) for (_, name), paths in sorted(groups.items())}


def _resnet_unit(blocks_per_stage: int) -> Callable[[str], tuple[int, str]]:
    """ResNet blocks: the stem (``stem`` and ``stem_bn``), each stage's residual blocks, the head."""

    def unit(layer: str) -> tuple[int, str]:
        parts = layer.split("/")
        if parts[0] == "blocks":
            stage = int(parts[1]) // blocks_per_stage
            first = stage * blocks_per_stage
            return 1 + stage, " + ".join(f"blocks/{i}" for i in range(first, first + blocks_per_stage))
        if parts[0] in ("stem", "stem_bn"):
            return 0, "stem + stem_bn"
        return 4, layer

    return unit


def _transformer_unit(layer: str) -> tuple[int, str]:
    """Transformer blocks: the embedding (``embed``, ``position``), each encoder block's attention sub-layer
    (``norm1``, ``attention``) and MLP sub-layer (``norm2``, ``hidden``, ``output``), the head (``norm``, ``head``)."""
    parts = layer.split("/")
    if parts[0] == "blocks":
        index, attention = int(parts[1]), parts[2] in ("norm1", "attention")
        names = ("norm1", "attention") if attention else ("norm2", "hidden", "output")
        return 1 + 2 * index + (not attention), " + ".join(f"blocks/{index}/{n}" for n in names)
    if parts[0] in ("embed", "position"):
        return 0, "embed + position"
    return (1 << 30, "norm + head") if parts[0] in ("norm", "head") else (1 << 31, layer)


def resnet_problem(dataset: str = "digits", *, width: int = 16, depth: int = 20, image_size: int = 8,
                   upsample: str = "nearest", seed: int = 0, dtype=jnp.float32) -> Problem:
    """A :class:`jaxdl.models.ResNet20` (one input channel) on ``dataset`` as NHWC images, trained and analysed
    through its training-mode objective (:data:`RESNET_BATCH_NORM`, ``batch_norm="batch"``).

    In that objective every BatchNorm normalises by the mean and variance of the batch the loss is given: a
    minibatch in minibatch training, the whole set in a full-batch evaluation or analysis. It is the function SGD
    differentiates in training, so the monitor's eq. 8.10 and the final analysis see the objective actually
    trained; the running averages are neither used nor updated (they keep their initial values, so the deployed
    ``model.eval()`` network is not what is analysed).

    Args:
      dataset: a key of :data:`DATASETS` (the same split as the MLP problem), as ``image_size`` square images
        (:func:`jaxdl.data.images_from`, ``upsample`` for sizes above 8).
      width, depth: channels of the first stage and weight layers (``6n + 2``) of the ResNet.
      seed: the initialisation seed (``flax.nnx.Rngs(seed)``).
      dtype: data, parameter and computation dtype.

    Raises:
      ValueError, TypeError: invalid sizes (from the data and the model).
    """
    ds = data_lib.images_from(load_dataset(dataset, dtype), image_size, method=upsample)
    model = ResNet20(num_classes=ds.num_classes, in_channels=1, width=width, depth=depth, rngs=nnx.Rngs(seed),
                     dtype=dtype)
    problem = nnx_classification_problem(model, ds, batch_norm=RESNET_BATCH_NORM)
    return problem._replace(layers=grouped_layers(problem.params, _resnet_unit(model.blocks_per_stage)))


def transformer_problem(dataset: str = "digits", *, width: int = 32, num_heads: int = 4, num_blocks: int = 1,
                        seed: int = 0, dtype=jnp.float32) -> Problem:
    """A :class:`jaxdl.models.TransformerClassifier` on ``dataset`` as sequences of 8 image rows of 8 pixels
    (:func:`jaxdl.data.sequences_from`), without Dropout (``dropout=0``, objective ``dropout="off"``).

    Args:
      dataset: a key of :data:`DATASETS` (the same split as the MLP problem).
      width: the model width ``dim`` (MLP hidden width ``4 * width``), a multiple of ``num_heads``.
      num_heads, num_blocks: attention heads and encoder blocks.
      seed, dtype: as for :func:`resnet_problem`.

    Raises:
      ValueError, TypeError: invalid sizes (from the model).
    """
    ds = data_lib.sequences_from(load_dataset(dataset, dtype))
    model = TransformerClassifier(num_classes=ds.num_classes, max_length=int(ds.x_train.shape[1]),
                                  in_features=int(ds.x_train.shape[2]), dim=width, num_heads=num_heads,
                                  num_blocks=num_blocks, dropout=0.0, rngs=nnx.Rngs(seed), dtype=dtype)
    problem = nnx_classification_problem(model, ds)
    return problem._replace(layers=grouped_layers(problem.params, _transformer_unit))


def float64_hessian(loss_fn: Callable, params, *batch) -> np.ndarray:
    """The dense Hessian of a float64 ``loss_fn`` at ``params`` cast exactly to float64 (floating batch arrays
    too); call with ``jax.enable_x64``. See :func:`exact_hessian_float64` for why float64."""
    def to64(a):
        a = np.asarray(a)
        return jnp.asarray(a, jnp.float64) if np.issubdtype(a.dtype, np.floating) else jnp.asarray(a)

    p64 = jax.tree_util.tree_map(to64, params)
    return np.asarray(analysis.dense_hessian(loss_fn, p64, *(to64(b) for b in batch), block_size=256))
