"""Segmented, checkpointed training of the report's problem, stopped when it diverges.

Training runs in segments of ``checkpoint_every`` steps; after each segment the train state, the monitor state and
the history so far are checkpointed (orbax). ``resume=True`` continues from the newest checkpoint and ends with
bit-identical parameters and identical report numbers (everything in training is a function of the absolute step).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

import analysis
from analysis.monitor import CurvatureMonitor
from jaxdl.problems import Problem
from jaxdl.report.checkpoint import Checkpointer, history_to_json
from jaxdl.report.config import ReportConfig
from jaxdl.report.output import check_output_dir, write_marker
from jaxdl.report.results import TrainingHistory
from jaxdl.train import History, TrainState, fit, init_state, make_optimizer, raise_if_diverged

_SERIES = ("step", "loss", "grad_norm", "monitor_step")


class ResumeError(ValueError):
    """No usable checkpoint to resume from (missing, or written with a different configuration)."""


def empty_history() -> TrainingHistory:
    return TrainingHistory([], [], [], [], {}, {})


def extend_history(history: TrainingHistory, part: History) -> TrainingHistory:
    """``history`` followed by one segment's :class:`jaxdl.train.History`."""
    series = {name: list(getattr(history, name)) + np.asarray(getattr(part, name)).tolist() for name in _SERIES}
    groups = {}
    for group in ("monitor", "evals"):
        old = getattr(history, group)
        groups[group] = {**old, **{k: list(old.get(k, [])) + np.asarray(v).tolist()
                                   for k, v in getattr(part, group).items()}}
    return TrainingHistory(**series, **groups)


def train_with_checkpoints(config: ReportConfig, problem: Problem, ckpt_dir: Path, *, progress: bool,
                           resume: bool) -> tuple[TrainState, TrainingHistory]:
    """Segmented, checkpointed training. Returns the final train state and the history.

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
                               lanczos_steps=min(config.lanczos_steps, analysis.num_params(problem.params)))
    key = jax.random.PRNGKey(config.seed)
    eval_loss = jax.jit(problem.loss_fn)

    def evaluate(p):
        return {"train_loss": eval_loss(p, ds.x_train, ds.y_train), "test_loss": eval_loss(p, ds.x_test, ds.y_test),
                "train_acc": problem.accuracy_fn(p, ds.x_train, ds.y_train),
                "test_acc": problem.accuracy_fn(p, ds.x_test, ds.y_test)}

    state = init_state(problem.params, optimizer)
    mstate = monitor.init(state.params, jax.random.fold_in(key, 1))
    history = empty_history()
    config_json = history_to_json({"c": config.record()})["c"]
    _prepare_checkpoint_dir(ckpt_dir, resume)
    ckpt = Checkpointer(ckpt_dir)
    try:
        if resume:
            (state, mstate), history = _restore(ckpt, ckpt_dir, (state, mstate), config_json)
        bar = tqdm(total=config.steps, initial=int(state.step), desc="training", disable=not progress)
        while int(state.step) < config.steps:
            seg = min(config.checkpoint_every, config.steps - int(state.step))
            last = int(state.step) + seg == config.steps
            state, part = fit(problem.loss_fn, None, optimizer, (ds.x_train, ds.y_train), steps=seg,
                              batch_size=config.batch_size, key=key, monitor=monitor, evaluate=evaluate,
                              eval_every=config.eval_every, progress=bar, state=state, monitor_state=mstate,
                              final_eval=last)
            raise_if_diverged(part, state.params, learning_rate=config.learning_rate,
                              start_loss=history.loss[0] if history.loss else None)
            mstate = part.monitor_state
            history = extend_history(history, part)
            ckpt.save(int(state.step), (state, mstate), {"config": config_json, "history": history._asdict()})
        bar.close()
    finally:
        ckpt.close()
    return state, history


def _no_checkpoint(ckpt_dir: Path) -> ResumeError:
    return ResumeError(f"--resume: no checkpoint in {ckpt_dir}; run without --resume to start afresh.")


def _prepare_checkpoint_dir(ckpt_dir: Path, resume: bool) -> None:
    """Keep (``resume``) or remove an existing checkpoint folder of ours; refuse anyone else's; create a new one."""
    if ckpt_dir.exists():
        check_output_dir(ckpt_dir, kind="checkpoints", what="checkpoint folder")  # ours, or refused
        if not resume:
            shutil.rmtree(ckpt_dir)
    elif resume:
        raise _no_checkpoint(ckpt_dir)
    if not ckpt_dir.exists():
        ckpt_dir.mkdir(parents=True)
        write_marker(ckpt_dir, "checkpoints")


def _restore(ckpt: Checkpointer, ckpt_dir: Path, like: Any, config_json: dict) -> tuple[Any, TrainingHistory]:
    """The newest checkpoint's states (in the structure of ``like``) and history, if written with these settings."""
    step = ckpt.latest_step()
    if step is None:
        raise _no_checkpoint(ckpt_dir)
    states, meta = ckpt.restore(step, like)
    if meta["config"] != config_json:
        diff = sorted(k for k in config_json if meta["config"].get(k) != config_json[k])
        raise ResumeError(f"--resume: the checkpoint in {ckpt_dir} was written with different settings "
                          f"({', '.join(diff)}); use the same settings or run without --resume.")
    return states, TrainingHistory(**meta["history"])


def params_fingerprint(params) -> str:
    """SHA-256 of the parameters' bytes in ``tree_leaves`` order: equal fingerprints mean bit-identical weights."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()
