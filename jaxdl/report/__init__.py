"""The main job, ``jaxdl report``: train a network with the curvature monitor, analyse its Hessian, plot, and write
``reports/<name>/`` (``index.html``, figures as PNG and PDF, ``results.json``); and an experiment's report folder.

The pipeline (:mod:`jaxdl.report.pipeline`) reads top to bottom: :mod:`~jaxdl.report.config` ->
:mod:`~jaxdl.report.problem` -> :mod:`~jaxdl.report.training` -> :mod:`~jaxdl.report.analyse` (typed results of
:mod:`~jaxdl.report.results`) -> :mod:`~jaxdl.report.figures` -> :mod:`~jaxdl.report.output` with
:mod:`~jaxdl.report.page`.

The names below are imported on first use, so importing this package (or the JAX-free :mod:`jaxdl.report.config`
and :mod:`jaxdl.report.output`, as the command line does before it refuses a folder) does not import JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jaxdl.report.config import MAX_SEED as MAX_SEED
    from jaxdl.report.config import ReportConfig as ReportConfig
    from jaxdl.report.config import load_config as load_config
    from jaxdl.report.pipeline import check_report as check_report
    from jaxdl.report.pipeline import run_report as run_report
    from jaxdl.report.problem import analysis_batch as analysis_batch
    from jaxdl.report.problem import build_problem as build_problem
    from jaxdl.report.problem import exact_hessian as exact_hessian
    from jaxdl.report.problem import load_dataset as load_dataset
    from jaxdl.report.training import ResumeError as ResumeError
    from jaxdl.report.training import params_fingerprint as params_fingerprint
    from jaxdl.report.training import train_with_checkpoints as train_with_checkpoints
    from jaxdl.report.analyse import analyse_network as analyse_network
    from jaxdl.report.results import Analysis as Analysis
    from jaxdl.report.results import ExactLayerBlock as ExactLayerBlock
    from jaxdl.report.results import ExactSkipped as ExactSkipped
    from jaxdl.report.results import ExactSpectrum as ExactSpectrum
    from jaxdl.report.results import FigureData as FigureData
    from jaxdl.report.results import FinalMetrics as FinalMetrics
    from jaxdl.report.results import LanczosSummary as LanczosSummary
    from jaxdl.report.results import Landscape as Landscape
    from jaxdl.report.results import LayerBlock as LayerBlock
    from jaxdl.report.results import ModelSummary as ModelSummary
    from jaxdl.report.results import NetworkSummary as NetworkSummary
    from jaxdl.report.results import ReportResults as ReportResults
    from jaxdl.report.results import SLQSummary as SLQSummary
    from jaxdl.report.results import Timing as Timing
    from jaxdl.report.results import TraceSummary as TraceSummary
    from jaxdl.report.results import TrainingHistory as TrainingHistory
    from jaxdl.report.figures import report_captions as report_captions
    from jaxdl.report.figures import report_figures as report_figures
    from jaxdl.report.figures import stability_threshold as stability_threshold
    from jaxdl.report.page import page_html as page_html
    from jaxdl.report.page import summary_html as summary_html
    from jaxdl.report.page import verdict_html as verdict_html
    from jaxdl.report.output import MARKER as MARKER
    from jaxdl.report.output import OutputError as OutputError
    from jaxdl.report.output import check_output_dir as check_output_dir
    from jaxdl.report.output import check_report_paths as check_report_paths
    from jaxdl.report.output import checkpoint_dir_for as checkpoint_dir_for
    from jaxdl.report.output import environment as environment
    from jaxdl.report.output import is_marked as is_marked
    from jaxdl.report.output import to_jsonable as to_jsonable
    from jaxdl.report.output import write_marker as write_marker
    from jaxdl.report.output import write_report as write_report
    from jaxdl.report.experiment import ExperimentRecord as ExperimentRecord
    from jaxdl.report.experiment import write_experiment_report as write_experiment_report
    from jaxdl.report.checkpoint import Checkpointer as Checkpointer

_EXPORTS = {  # public name: its module in jaxdl.report
    "MAX_SEED": "config", "ReportConfig": "config", "load_config": "config",
    "check_report": "pipeline", "run_report": "pipeline",
    "analysis_batch": "problem", "build_problem": "problem", "exact_hessian": "problem", "load_dataset": "problem",
    "ResumeError": "training", "params_fingerprint": "training", "train_with_checkpoints": "training",
    "analyse_network": "analyse",
    "Analysis": "results", "ExactLayerBlock": "results", "ExactSkipped": "results", "ExactSpectrum": "results",
    "FigureData": "results", "FinalMetrics": "results", "LanczosSummary": "results", "Landscape": "results",
    "LayerBlock": "results", "ModelSummary": "results", "NetworkSummary": "results", "ReportResults": "results",
    "SLQSummary": "results", "Timing": "results", "TraceSummary": "results", "TrainingHistory": "results",
    "report_captions": "figures", "report_figures": "figures", "stability_threshold": "figures",
    "page_html": "page", "summary_html": "page", "verdict_html": "page",
    "MARKER": "output", "OutputError": "output", "check_output_dir": "output", "check_report_paths": "output",
    "checkpoint_dir_for": "output", "environment": "output", "is_marked": "output", "to_jsonable": "output",
    "write_marker": "output", "write_report": "output",
    "ExperimentRecord": "experiment", "write_experiment_report": "experiment",
    "Checkpointer": "checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxdl.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"jaxdl.report.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
