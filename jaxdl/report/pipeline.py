"""The main job, top to bottom: settings -> data and model -> training (with the curvature monitor, checkpointed)
-> analysis of the trained network -> figures -> the report folder ``reports/<name>/``, written atomically."""

from __future__ import annotations

import time
from pathlib import Path

import jax

from jaxdl.report.analyse import analyse_network
from jaxdl.report.config import ReportConfig
from jaxdl.report.figures import report_captions, report_figures
from jaxdl.report.output import check_report_paths, checkpoint_dir_for, environment, write_report
from jaxdl.report.page import summary_html
from jaxdl.report.problem import build_problem, load_dataset
from jaxdl.report.results import ReportResults, Timing
from jaxdl.report.training import ResumeError, params_fingerprint, train_with_checkpoints


def check_report(config: ReportConfig, out_dir: str | Path, *, resume: bool = False) -> None:
    """Every check :func:`run_report` can make before training: the settings (also against the data set's size),
    the report and checkpoint folders, and, with ``resume``, that there is a checkpoint folder to resume from.

    Raises:
      ValueError, TypeError: an invalid setting (see :meth:`ReportConfig.validate`).
      OutputError: a folder jaxdl may not replace (see :func:`jaxdl.report.check_output_dir`).
      ResumeError: ``resume=True`` without a checkpoint folder.
    """
    config.validate()
    _, ckpt_dir = check_report_paths(out_dir)
    if resume and not ckpt_dir.exists():
        raise ResumeError(f"--resume: no checkpoint in {ckpt_dir}; run without --resume to start afresh.")
    with jax.enable_x64(config.float64):
        config.check_batch_size(int(load_dataset(config).x_train.shape[0]))


def run_report(config: ReportConfig, out_dir: str | Path, *, progress: bool = True, resume: bool = False) -> Path:
    """Train, analyse and write the report folder; returns its path.

    Everything that can be checked is checked first (:func:`check_report`), so a refusal costs no training and
    writes nothing.

    Raises:
      ValueError, TypeError, OutputError: as :func:`check_report`.
      ResumeError: ``resume=True`` without a checkpoint of the same configuration.
      TrainingDiverged: the training loss became non-finite or exploded, or the parameters became non-finite (no
        report is written).
    """
    check_report(config, out_dir, resume=resume)
    with jax.enable_x64(config.float64):
        return _run(config, Path(out_dir), progress=progress, resume=resume)


def _run(config: ReportConfig, out_dir: Path, *, progress: bool, resume: bool) -> Path:
    t0 = time.perf_counter()
    problem = build_problem(config)
    state, history = train_with_checkpoints(config, problem, checkpoint_dir_for(out_dir), progress=progress,
                                            resume=resume)
    t_train = time.perf_counter() - t0
    analysis, figure_data = analyse_network(config, problem, state.params, history, progress=progress)
    results = ReportResults(config=config.record(), seed=config.seed, params_sha256=params_fingerprint(state.params),
                            environment=environment(), **analysis._asdict(),
                            timing_s=Timing(training=t_train, analysis=time.perf_counter() - t0 - t_train))
    return write_report(out_dir, title="jaxdl curvature report", results=results,
                        figures=report_figures(config, results, figure_data),
                        captions=report_captions(config, results), summary_html=summary_html(results))
