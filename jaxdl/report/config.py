"""Settings of the main job (``jaxdl report``): defaults, a TOML file, then command-line flags, validated once."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Optional

MAX_SEED = 2**63 - 1  # the largest seed jax.random.PRNGKey and flax.nnx.Rngs accept
MODELS = ("mlp", "linear", "resnet20", "transformer")
NETWORKS = ("resnet20", "transformer")  # the NNX models trained and analysed through curvature_objective

# Each model's own defaults, beneath the TOML file and the flags (the dataclass defaults are the MLP job's): sized
# so that `jaxdl report --model resnet20` takes about 4 minutes and `--model transformer` about 2 on 2 CPU cores.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet20": dict(width=8, depth=20, image_size=8, analysis_examples=128, steps=200, batch_size=128,
                     learning_rate=0.1, monitor_every=10, lanczos_steps=4, eval_every=20, k=3,
                     lanczos_matvecs=40, trace_matvecs=24, slq_matvecs=30, slq_probes=2, layer_matvecs=16,
                     landscape_points=21, landscape_grid=11),
    "transformer": dict(width=32, depth=1, num_heads=4, analysis_examples=512, steps=300, learning_rate=0.5,
                        monitor_every=10, lanczos_steps=4, eval_every=20, k=3, lanczos_matvecs=60,
                        trace_matvecs=30, slq_matvecs=40, slq_probes=4, layer_matvecs=24, landscape_points=21,
                        landscape_grid=11),
}
# Which models a setting describes; it is recorded (results.json, checkpoints) only for those.
APPLIES_TO = {"hidden": ("mlp", "linear"), "activation": ("mlp", "linear"), "width": NETWORKS, "depth": NETWORKS,
              "num_heads": ("transformer",), "image_size": ("resnet20",)}
OPTIONAL = ("analysis_examples", "layer_matvecs")  # recorded only when set


def choices() -> dict[str, tuple[str, ...]]:
    """The valid values of the settings that name something: ``model``, ``dataset``, ``optimizer``, ``activation``.

    Imported here, not at the top: the lists live beside JAX code, and `jaxdl --help` or a refused --out should not
    wait for JAX.
    """
    from jaxdl.models.mlp import ACTIVATIONS
    from jaxdl.problems import DATASETS
    from jaxdl.train import OPTIMIZERS

    return {"model": MODELS, "dataset": tuple(DATASETS), "optimizer": tuple(OPTIMIZERS),
            "activation": tuple(ACTIVATIONS)}


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Everything ``jaxdl report`` does; the defaults are the built-in default job.

    The default trains an MLP 64-32-32-10 (tanh) on scikit-learn's digits with full-batch SGD (learning rate 0.5)
    for 300 steps, monitoring eq. 8.10 every 5 steps, and analyses the Hessian at the end.

    ``model="resnet20"`` trains a :class:`jaxdl.models.ResNet20` (``width`` channels in the first stage, ``depth``
    weight layers) on the digits as ``image_size`` square images; ``model="transformer"`` a
    :class:`jaxdl.models.TransformerClassifier` (``width`` = model width, ``depth`` encoder blocks, ``num_heads``)
    on the digits as 8 rows of 8 pixels. Both train and analyse the training-mode objective (BatchNorm by the
    statistics of the batch, no Dropout); :func:`load_config` starts them from :data:`MODEL_DEFAULTS`, and their
    architecture settings left at None here take those defaults. ``analysis_examples`` restricts the curvature
    analysis to the first examples of the training set (None = all); ``layer_matvecs`` sets the Lanczos and
    Hutch++ products of each per-layer block (None = 40 and 30).
    """

    model: str = "mlp"
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "tanh"
    dataset: str = "digits"
    optimizer: str = "sgd"
    learning_rate: float = 0.5
    momentum: float = 0.9
    clip_norm: Optional[float] = None
    steps: int = 300
    batch_size: Optional[int] = None
    monitor_every: int = 5
    lanczos_steps: int = 8
    eval_every: int = 10
    checkpoint_every: int = 100
    seed: int = 0
    float64: bool = False
    k: int = 5
    lanczos_matvecs: int = 120
    trace_matvecs: int = 90
    slq_matvecs: int = 90
    slq_probes: int = 8
    dense_limit: int = 12000
    landscape_points: int = 41
    landscape_grid: int = 21
    width: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    image_size: Optional[int] = None
    analysis_examples: Optional[int] = None
    layer_matvecs: Optional[int] = None

    def __post_init__(self):
        for name, value in MODEL_DEFAULTS.get(self.model, {}).items() if isinstance(self.model, str) else ():
            if name in APPLIES_TO and getattr(self, name) is None:
                object.__setattr__(self, name, value)

    def validate(self) -> "ReportConfig":
        """Check every setting's type and range; returns ``self``.

        Raises:
          TypeError: a setting of the wrong type (bool is not an int, a string is not a number).
          ValueError: a setting out of range or not finite, naming the setting, its value and what was expected.
        """
        # Imported here, not at the top: the checks import JAX, and `jaxdl --help` or a refused --out should not wait.
        from analysis._checks import check_bool, check_number, check_positive_int

        for name, valid in choices().items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in valid:
                raise ValueError(f"{name}={value!r} is unknown; expected one of {', '.join(valid)}.")
        for name in ("steps", "monitor_every", "eval_every", "checkpoint_every", "k", "lanczos_matvecs",
                     "trace_matvecs", "slq_matvecs", "slq_probes", "dense_limit", "landscape_points",
                     "landscape_grid"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.lanczos_steps, "lanczos_steps", minimum=0)
        check_positive_int(self.seed, "seed", minimum=0)
        if self.seed > MAX_SEED:
            raise ValueError(f"seed={self.seed} is invalid; expected an integer in [0, {MAX_SEED}].")
        check_number(self.learning_rate, "learning_rate", positive=True)
        check_number(self.momentum, "momentum", minimum=0.0, maximum=1.0, include_maximum=False)
        if self.clip_norm is not None:
            check_number(self.clip_norm, "clip_norm", positive=True)
        if self.batch_size is not None:
            check_positive_int(self.batch_size, "batch_size")
        check_bool(self.float64, "float64")
        widths = self.hidden if isinstance(self.hidden, tuple) else ()
        if (not isinstance(self.hidden, tuple) or (self.model == "mlp" and not widths)
                or any(isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in widths)):
            raise ValueError(f"hidden={self.hidden!r} is invalid; expected one or more positive integer layer "
                             "widths, like [32, 32] (or \"32,32\" on the command line).")
        if self.slq_matvecs < 2 or self.trace_matvecs < 4:
            raise ValueError(f"slq_matvecs={self.slq_matvecs} and trace_matvecs={self.trace_matvecs} are invalid; "
                             "expected slq_matvecs >= 2 and trace_matvecs >= 4.")
        self._validate_network()
        return self

    def _validate_network(self) -> None:
        """The settings of the ResNet and the Transformer, and the analysis subset."""
        from analysis._checks import check_positive_int

        for name in ("width", "depth", "num_heads", "image_size"):
            value, models = getattr(self, name), APPLIES_TO[name]
            if self.model not in models:
                if value is not None:
                    raise ValueError(f"{name}={value!r} is invalid for model={self.model!r}; it is a setting of "
                                     f"model {' and '.join(models)} only.")
                continue
            check_positive_int(value, name)
        if self.analysis_examples is not None:
            check_positive_int(self.analysis_examples, "analysis_examples", "training examples the analysis uses")
        if self.layer_matvecs is not None:
            check_positive_int(self.layer_matvecs, "layer_matvecs", "products per layer block", minimum=4)
        if self.model == "resnet20":
            if self.depth < 8 or (self.depth - 2) % 6:
                raise ValueError(f"depth={self.depth} is invalid for model 'resnet20'; expected 6n + 2 weight "
                                 "layers (8, 14, 20, 32, ...).")
            if self.image_size % 8 or self.image_size > 64:
                raise ValueError(f"image_size={self.image_size} is invalid; expected a multiple of 8 up to 64 (the "
                                 "8x8 digits upsampled by repeating pixels).")
        if self.model == "transformer" and self.width % self.num_heads:
            raise ValueError(f"width={self.width} is invalid with num_heads={self.num_heads}; expected a multiple "
                             "of num_heads.")

    def record(self) -> dict[str, Any]:
        """The settings as recorded in ``results.json`` and checkpoints: those that describe this model, and
        :data:`OPTIONAL` settings only when set (an MLP job records what it recorded before they existed)."""
        return {name: getattr(self, name) for name in FIELDS
                if self.model in APPLIES_TO.get(name, MODELS)
                and not (name in OPTIONAL and getattr(self, name) is None)}

    def check_batch_size(self, num_examples: int) -> None:
        """A minibatch, or the analysis subset, cannot be larger than the training set of ``num_examples``.

        Raises:
          ValueError: ``batch_size`` or ``analysis_examples`` above ``num_examples``, naming both.
        """
        for name, what in (("batch_size", "or none for the full batch"),
                           ("analysis_examples", "or none for the whole training set")):
            value = getattr(self, name)
            if value is not None and value > num_examples:
                raise ValueError(f"{name}={value} is invalid; the training set of dataset {self.dataset!r} has "
                                 f"{num_examples} examples (expected 1 <= {name} <= {num_examples}, {what}).")

    def hidden_widths(self) -> tuple[int, ...]:
        """The hidden layer widths of the model: ``hidden`` for the MLP, none for the linear model."""
        return tuple(self.hidden) if self.model == "mlp" else ()

    def layer_sizes(self, num_features: int, num_classes: int) -> list[int]:
        return [num_features, *self.hidden_widths(), num_classes]


FIELDS = {f.name: f for f in dataclasses.fields(ReportConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Command-line and TOML spellings to field values: ``"32,32"`` to ``(32, 32)``, ``"none"`` to None, an int
    learning rate to a float. Anything else is passed on unchanged for :meth:`ReportConfig.validate` to judge."""
    if name == "hidden":
        if isinstance(value, str):
            try:
                return tuple(int(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ValueError(f"hidden={value!r} is invalid; expected comma-separated integers like 32,32.") from None
        if isinstance(value, (list, tuple)):
            return tuple(value)
    if name in ("clip_norm", "batch_size", "analysis_examples") and isinstance(value, str) and value.lower() == "none":
        return None
    if name in ("learning_rate", "momentum", "clip_norm") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def load_config(path: Optional[str | Path] = None, **overrides: Any) -> ReportConfig:
    """Defaults, then the ``[report]`` table (or top level) of a TOML file, then ``overrides`` (None = unset).

    Raises:
      ValueError: unknown keys (listing the valid ones), unreadable TOML, or invalid values.
      TypeError: a value of the wrong type (see :meth:`ReportConfig.validate`).
    """
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_toml(Path(path)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid settings: {', '.join(FIELDS)}.")
    model = values.get("model", FIELDS["model"].default)
    values = {**(MODEL_DEFAULTS.get(model, {}) if isinstance(model, str) else {}), **values}
    return ReportConfig(**{k: _coerce(k, v) for k, v in values.items()}).validate()


def _read_toml(path: Path) -> dict[str, Any]:
    """The settings of a TOML file: its ``[report]`` table, or its top level when there is none."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"config file {str(path)!r} {what}.")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    data = data.get("report", data)
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r}: 'report' must be a table ([report]), got {data!r}.")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} in {str(path)!r}; valid settings: {', '.join(FIELDS)}.")
    return data
