"""The main job: train, monitor, analyse the Hessian, plot, and write ``reports/<name>/`` atomically.

Training runs in segments of ``checkpoint_every`` steps; after each segment the train state, the monitor state and
the history so far are checkpointed (orbax). ``resume=True`` continues from the newest checkpoint and ends with
bit-identical parameters and identical report numbers (everything in training is a function of the absolute step).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from analysis.monitor import CurvatureMonitor
from jaxdl.checkpoint import Checkpointer, history_to_json
from jaxdl.config import ReportConfig
from jaxdl.output import checkpoint_dir_for as checkpoint_dir_for
from jaxdl.output import check_output_dir, check_report_paths, environment, write_marker, write_report
from jaxdl.problem import Problem, build_problem, load_dataset
from jaxdl.report_analysis import analyse, figures_and_captions, summary_html
from jaxdl.train import History, fit, init_state, make_optimizer, raise_if_diverged


class ResumeError(ValueError):
    """No usable checkpoint to resume from (missing, or written with a different configuration)."""


def check_report(config: ReportConfig, out_dir: str | Path, *, resume: bool = False) -> None:
    """Every check :func:`run_report` can make before training: the settings (also against the data set's size),
    the report and checkpoint folders, and, with ``resume``, that there is a checkpoint folder to resume from.

    Raises:
      ValueError, TypeError: an invalid setting (see :meth:`ReportConfig.validate`).
      OutputError: a folder jaxdl may not replace (see :func:`jaxdl.output.check_output_dir`).
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
        return _run(config, Path(out_dir), progress, resume)


def _run(config: ReportConfig, out_dir: Path, progress: bool, resume: bool) -> Path:
    t0 = time.perf_counter()
    problem = build_problem(config)
    state, history = train(config, problem, checkpoint_dir_for(out_dir), progress=progress, resume=resume)
    t_train = time.perf_counter() - t0
    results, arrays = analyse(config, problem, state.params, history, progress=progress)
    results = {
        "config": dataclasses.asdict(config),
        "seed": config.seed,
        "params_sha256": params_fingerprint(state.params),
        "environment": environment(),
        **results,
        "timing_s": {"training": t_train, "analysis": time.perf_counter() - t0 - t_train},
    }
    figures, captions = figures_and_captions(config, results, arrays)
    return write_report(out_dir, title="jaxdl curvature report", results=results, figures=figures,
                        captions=captions, summary_html=summary_html(results))


def _empty_history() -> dict[str, Any]:
    return {"step": [], "loss": [], "grad_norm": [], "monitor_step": [], "monitor": {}, "evals": {}}


def _append(acc: dict[str, Any], part: History) -> None:
    for name in ("step", "loss", "grad_norm", "monitor_step"):
        acc[name] = list(acc[name]) + np.asarray(getattr(part, name)).tolist()
    for group in ("monitor", "evals"):
        for k, v in getattr(part, group).items():
            acc[group][k] = list(acc[group].get(k, [])) + np.asarray(v).tolist()


def train(config: ReportConfig, problem: Problem, ckpt_dir: Path, *, progress: bool, resume: bool):
    """Segmented, checkpointed training. Returns the final train state and the history (lists of floats).

    ``ckpt_dir`` is created with jaxdl's marker; an existing one is removed (or, with ``resume``, continued) only
    if it carries that marker.

    Raises:
      OutputError: ``ckpt_dir`` exists and was not written by jaxdl.
      ResumeError: ``resume`` without a checkpoint of the same configuration.
      TrainingDiverged: a non-finite or exploding loss, or non-finite parameters (checked after every segment,
        before it is saved).
    """
    ds = problem.data
    optimizer = make_optimizer(config.optimizer, config.learning_rate, momentum=config.momentum,
                               clip_norm=config.clip_norm)
    monitor = CurvatureMonitor(every=config.monitor_every, learning_rate=config.learning_rate,
                               lanczos_steps=min(config.lanczos_steps, _num_params(problem.params)))
    key = jax.random.PRNGKey(config.seed)
    eval_loss = jax.jit(problem.loss_fn)

    def evaluate(p):
        return {"train_loss": eval_loss(p, ds.x_train, ds.y_train), "test_loss": eval_loss(p, ds.x_test, ds.y_test),
                "train_acc": problem.accuracy_fn(p, ds.x_train, ds.y_train),
                "test_acc": problem.accuracy_fn(p, ds.x_test, ds.y_test)}

    state = init_state(problem.params, optimizer)
    mstate = monitor.init(state.params, jax.random.fold_in(key, 1))
    history = _empty_history()
    config_json = history_to_json({"c": dataclasses.asdict(config)})["c"]
    if ckpt_dir.exists():
        check_output_dir(ckpt_dir, kind="checkpoints", what="checkpoint folder")  # ours, or refused
        if not resume:
            shutil.rmtree(ckpt_dir)
    elif resume:
        raise ResumeError(f"--resume: no checkpoint in {ckpt_dir}; run without --resume to start afresh.")
    if not ckpt_dir.exists():
        ckpt_dir.mkdir(parents=True)
        write_marker(ckpt_dir, "checkpoints")
    ckpt = Checkpointer(ckpt_dir)
    try:
        if resume:
            step = ckpt.latest_step()
            if step is None:
                raise ResumeError(f"--resume: no checkpoint in {ckpt_dir}; run without --resume to start afresh.")
            (state, mstate), meta = ckpt.restore(step, (state, mstate))
            if meta["config"] != config_json:
                diff = sorted(k for k in config_json if meta["config"].get(k) != config_json[k])
                raise ResumeError(f"--resume: the checkpoint in {ckpt_dir} was written with different settings "
                                  f"({', '.join(diff)}); use the same settings or run without --resume.")
            history = meta["history"]
        bar = tqdm(total=config.steps, initial=int(state.step), desc="training", disable=not progress)
        while int(state.step) < config.steps:
            seg = min(config.checkpoint_every, config.steps - int(state.step))
            last = int(state.step) + seg == config.steps
            state, part = fit(problem.loss_fn, None, optimizer, (ds.x_train, ds.y_train), steps=seg,
                              batch_size=config.batch_size, key=key, monitor=monitor, evaluate=evaluate,
                              eval_every=config.eval_every, progress=bar, state=state, monitor_state=mstate,
                              final_eval=last)
            raise_if_diverged(part, state.params, learning_rate=config.learning_rate,
                              start_loss=history["loss"][0] if history["loss"] else None)
            mstate = part.monitor_state
            _append(history, part)
            ckpt.save(int(state.step), (state, mstate), {"config": config_json, "history": history})
        bar.close()
    finally:
        ckpt.close()
    return state, history


def params_fingerprint(params) -> str:
    """SHA-256 of the parameters' bytes in ``tree_leaves`` order: equal fingerprints mean bit-identical weights."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()


def _num_params(params) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))
