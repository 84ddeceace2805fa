"""Settings of the main job (``jaxdl report``): defaults, a TOML file, then command-line flags, validated once."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Optional

MODELS = ("mlp", "linear")
DATASETS = ("digits", "digits-binarized")
OPTIMIZERS = ("sgd", "momentum", "adam")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "gelu")


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Everything ``jaxdl report`` does; the defaults are the built-in default job.

    The default trains an MLP 64-32-32-10 (tanh) on scikit-learn's digits with full-batch SGD (learning rate 0.5)
    for 300 steps, monitoring eq. 8.10 every 5 steps, and analyses the Hessian at the end.
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

    def validate(self) -> "ReportConfig":
        """Raise ValueError naming the first invalid setting and what was expected."""
        for name, choices in (("model", MODELS), ("dataset", DATASETS), ("optimizer", OPTIMIZERS),
                              ("activation", ACTIVATIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; expected one of {', '.join(choices)}.")
        positive = ("steps", "monitor_every", "eval_every", "checkpoint_every", "k", "lanczos_matvecs",
                    "trace_matvecs", "slq_matvecs", "slq_probes", "dense_limit", "landscape_points", "landscape_grid")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid; expected a positive integer.")
        if isinstance(self.lanczos_steps, bool) or not isinstance(self.lanczos_steps, int) or self.lanczos_steps < 0:
            raise ValueError(f"lanczos_steps={self.lanczos_steps!r} is invalid; expected an integer >= 0.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed={self.seed!r} is invalid; expected an integer.")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate={self.learning_rate!r} is invalid; expected a positive number.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum!r} is invalid; expected a value in [0, 1).")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm={self.clip_norm!r} is invalid; expected a positive number or none.")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size <= 0):
            raise ValueError(f"batch_size={self.batch_size!r} is invalid; expected a positive integer or none "
                             "(full batch).")
        if self.model == "mlp" and (not self.hidden or any(not isinstance(h, int) or h <= 0 for h in self.hidden)):
            raise ValueError(f"hidden={self.hidden!r} is invalid; expected one or more positive layer widths.")
        if self.slq_matvecs < 2 or self.trace_matvecs < 4:
            raise ValueError("slq_matvecs must be >= 2 and trace_matvecs >= 4.")
        return self

    def layer_sizes(self, num_features: int, num_classes: int) -> list[int]:
        hidden = list(self.hidden) if self.model == "mlp" else []
        return [num_features, *hidden, num_classes]


FIELDS = {f.name: f for f in dataclasses.fields(ReportConfig)}


def _coerce(name: str, value: Any) -> Any:
    if name == "hidden":
        if isinstance(value, str):
            try:
                return tuple(int(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ValueError(f"hidden={value!r} is invalid; expected comma-separated integers like 32,32.") from None
        if isinstance(value, (list, tuple)):
            return tuple(value)
    if name in ("clip_norm", "batch_size") and isinstance(value, str) and value.lower() == "none":
        return None
    if name in ("learning_rate", "momentum", "clip_norm") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def load_config(path: Optional[str | Path] = None, **overrides: Any) -> ReportConfig:
    """Defaults, then the ``[report]`` table (or top level) of a TOML file, then ``overrides`` (None = unset).

    Raises:
      ValueError: unknown keys (listing the valid ones), unreadable TOML, or invalid values.
    """
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config file {str(p)!r} does not exist.")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}") from None
        data = data.get("report", data)
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown} in {str(p)!r}; valid settings: {', '.join(FIELDS)}.")
        values.update(data)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid settings: {', '.join(FIELDS)}.")
    return ReportConfig(**{k: _coerce(k, v) for k, v in values.items()}).validate()
