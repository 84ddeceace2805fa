"""The registry of experiments: one function per textbook claim, each returning data, figures and a verdict."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol


@dataclasses.dataclass
class ExperimentResult:
    """What an experiment returns.

    Attributes:
      name: registry name.
      claim: the textbook statement tested, with its section.
      passed: whether the measured data support the claim (computed from the data, never a constant).
      verdict: one or two sentences quoting the measured numbers that decided ``passed``.
      metrics: JSON-serialisable numbers (floats, ints, lists, nested dicts).
      figures: ``{file_stem: matplotlib Figure}``.
      captions: ``{file_stem: caption}`` for the HTML page.
    """

    name: str
    claim: str
    passed: bool
    verdict: str
    metrics: dict[str, Any]
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    captions: dict[str, str] = dataclasses.field(default_factory=dict)


class ExperimentFn(Protocol):
    def __call__(self, *, seed: int = 0, quick: bool = False) -> ExperimentResult: ...


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    run: ExperimentFn


EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str, summary: str) -> Callable[[ExperimentFn], ExperimentFn]:
    """Decorator: register ``fn(*, seed=0, quick=False) -> ExperimentResult`` under ``name``.

    ``quick=True`` must run in seconds (tests and CI use it); the default is the full experiment.
    """

    def deco(fn: ExperimentFn) -> ExperimentFn:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice.")
        EXPERIMENTS[name] = Experiment(name, summary, fn)
        return fn

    return deco


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; available: {', '.join(sorted(EXPERIMENTS)) or '(none)'}.")
    return EXPERIMENTS[name]
