"""An experiment's report folder: its claim and verdict, its figures, and ``results.json`` with its metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from jaxdl.report.output import environment, write_report
from jaxdl.report.page import verdict_html


class ExperimentRecord(NamedTuple):
    """``results.json`` of ``jaxdl experiment NAME``."""

    name: str
    claim: str
    passed: bool
    verdict: str
    seed: int
    quick: bool
    metrics: Any
    environment: dict[str, Any]


def write_experiment_report(result, out_dir: str | os.PathLike, *, seed: int, quick: bool) -> Path:
    """Write the report folder of an experiment's result (a :class:`jaxdl.experiments.ExperimentResult`, run with
    ``seed`` and ``quick``) atomically; returns its path.

    Raises:
      OutputError: as :func:`jaxdl.report.write_report`.
    """
    record = ExperimentRecord(result.name, result.claim, result.passed, result.verdict, seed, quick, result.metrics,
                              environment())
    summary = verdict_html(result.claim, result.passed, result.verdict)
    return write_report(out_dir, title=f"jaxdl experiment: {result.name}", results=record, figures=result.figures,
                        captions=result.captions, summary_html=summary)
