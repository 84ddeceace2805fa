"""The registry of experiments: one textbook claim each, measured, judged and drawn by three separate functions.

An experiment is a pure measurement. Its module defines

- ``measure(*, seed, quick) -> metrics``: runs the computation and returns every number the verdict and the figures
  need (a dict of floats, ints, lists and arrays; it is written to ``results.json`` as it is);
- ``verdict(metrics) -> Verdict``: decides the claim from those numbers alone;
- ``figures(metrics) -> {stem: (Figure, caption)}``: draws them, never recomputing anything;

and registers them once with :func:`experiment`, which owns the name, the claim and the one-line summary.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

Metrics = dict[str, Any]


class Verdict(NamedTuple):
    """Whether the measured numbers support the claim, and one or two sentences quoting the numbers that decided."""

    passed: bool
    text: str


@dataclasses.dataclass
class ExperimentResult:
    """A finished run: the experiment's name and claim, its verdict, metrics and figures.

    Attributes:
      name: registry name.
      claim: the textbook statement tested, with its section.
      passed: whether the measured data support the claim (computed from the data, never a constant).
      verdict: one or two sentences quoting the measured numbers that decided ``passed``.
      metrics: the measurement (JSON-serialisable through :func:`jaxdl.report.to_jsonable`).
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


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered claim: ``run`` measures, judges and draws.

    Attributes:
      name: registry name (``jaxdl experiment NAME``).
      summary: one line for ``jaxdl list`` and the README table.
      claim: the textbook statement tested, with its section.
      measure: ``measure(*, seed, quick) -> metrics``; ``quick=True`` is the seconds-long setting of the tests.
      verdict: ``verdict(metrics) -> Verdict``.
      figures: ``figures(metrics) -> {stem: (Figure, caption)}``.
    """

    name: str
    summary: str
    claim: str
    measure: Callable[..., Metrics]
    verdict: Callable[[Metrics], Verdict]
    figures: Callable[[Metrics], Mapping[str, tuple[Any, str]]]

    def run(self, *, seed: int = 0, quick: bool = False) -> ExperimentResult:
        """Measure, judge and draw: the whole experiment."""
        from analysis._checks import check_positive_int

        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}.")
        check_positive_int(seed, "seed", minimum=0)
        if not isinstance(quick, bool):
            raise TypeError(f"quick must be a bool, got {type(quick).__name__} {quick!r}.")
        metrics = self.measure(seed=seed, quick=quick)
        passed, text = self.verdict(metrics)
        drawn = self.figures(metrics)
        return ExperimentResult(self.name, self.claim, bool(passed), text, metrics,
                                {stem: fig for stem, (fig, _) in drawn.items()},
                                {stem: caption for stem, (_, caption) in drawn.items()})


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, *, summary: str, claim: str, measure: Callable[..., Metrics],
               verdict: Callable[[Metrics], Verdict],
               figures: Callable[[Metrics], Mapping[str, tuple[Any, str]]]) -> Experiment:
    """Register an experiment under ``name`` and return it (a module keeps it as ``EXPERIMENT``).

    Raises:
      ValueError: ``name`` is registered already.
    """
    if name in EXPERIMENTS:
        raise ValueError(f"experiment {name!r} is registered twice.")
    EXPERIMENTS[name] = Experiment(name, summary, claim, measure, verdict, figures)
    return EXPERIMENTS[name]


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``.

    Raises:
      KeyError: no such experiment (the message lists the registered names).
    """
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; available: {', '.join(sorted(EXPERIMENTS)) or '(none)'}.")
    return EXPERIMENTS[name]

