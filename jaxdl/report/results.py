"""The typed results of a report: every number of ``results.json`` is a field of :class:`ReportResults`.

NamedTuples, so :func:`jaxdl.report.to_jsonable` writes each as an object with its fields in order.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import numpy as np


class TrainingHistory(NamedTuple):
    """The whole run as lists of floats: per step (``step``, ``loss``, ``grad_norm``), per monitored step
    (``monitor_step`` and the ``monitor``'s series by name) and per evaluation (``evals``, with its ``step``)."""

    step: list
    loss: list
    grad_norm: list
    monitor_step: list
    monitor: dict[str, list]
    evals: dict[str, list]


class ModelSummary(NamedTuple):
    """An MLP (or linear model): its layer widths, input to output."""

    sizes: list[int]
    num_params: int


class NetworkSummary(NamedTuple):
    """A ResNet or Transformer, and the one objective its training and analysis differentiate.

    ``batch_norm`` is ``"batch"`` (every BatchNorm normalises by the statistics of the batch the loss is given:
    the training-mode loss) or None (no BatchNorm); ``dropout`` is ``"off"``. The analysis uses the first
    ``analysis_examples`` of the ``train_examples`` training examples as one batch.
    """

    name: str
    num_params: int
    architecture: dict[str, Any]
    input_shape: list[int]
    num_classes: int
    batch_norm: Optional[str]
    dropout: str
    objective: str
    analysis_examples: int
    train_examples: int


class FinalMetrics(NamedTuple):
    """The last evaluation, and the gradient and curvature of the training batch at the trained parameters."""

    train_loss: float
    test_loss: float
    train_acc: float
    test_acc: float
    loss: float
    gTg: float
    gTHg: float
    predicted_change_at_lr: float
    curvature_ratio_at_lr: float


class LanczosSummary(NamedTuple):
    eigenvalues: Any
    residuals: Any
    num_matvecs: Any


class TraceSummary(NamedTuple):
    estimate: float
    standard_error: float
    method: str
    num_matvecs: Any


class SLQSummary(NamedTuple):
    num_matvecs: int
    num_probes: int


class ExactSkipped(NamedTuple):
    """No dense Hessian: too many parameters (``computed`` is False)."""

    computed: bool
    reason: str


class ExactSpectrum(NamedTuple):
    """The exact float64 spectrum (``computed`` is True)."""

    computed: bool
    dtype: str
    condition: Any  # analysis.ConditionInfo
    trace: float
    top_k: np.ndarray
    bottom_k: np.ndarray
    slq_wasserstein1: float


class LayerBlock(NamedTuple):
    """One layer's Hessian block: top eigenvalue by Lanczos and trace by Hutch++."""

    layer: str
    num_params: int
    top_eigenvalue: float
    top_residual: float
    trace: float
    trace_standard_error: float


class ExactLayerBlock(NamedTuple):
    """A :class:`LayerBlock` with the block's exact top eigenvalue and trace (where a dense Hessian fits)."""

    layer: str
    num_params: int
    top_eigenvalue: float
    top_residual: float
    trace: float
    trace_standard_error: float
    exact_top_eigenvalue: float
    exact_trace: float


class Landscape(NamedTuple):
    """Loss along the top and bottom eigenvectors (``slices`` by label, at ``alphas``) and on a 2-D plane."""

    alphas: np.ndarray
    slices: dict[str, np.ndarray]
    grid: np.ndarray
    surface: np.ndarray


class Analysis(NamedTuple):
    """Every number of the analysis, in the order of ``results.json``."""

    model: Union[ModelSummary, NetworkSummary]
    history: TrainingHistory
    final: FinalMetrics
    lanczos: LanczosSummary
    trace: TraceSummary
    slq: SLQSummary
    exact: Union[ExactSpectrum, ExactSkipped]
    per_layer: list[Union[LayerBlock, ExactLayerBlock]]
    landscape: Landscape


class FigureData(NamedTuple):
    """Arrays only the figures need (not written to ``results.json``)."""

    density_grid: np.ndarray
    density: np.ndarray
    sigma: float
    exact: Optional[np.ndarray]
    quadratic: dict[str, np.ndarray]


class Timing(NamedTuple):
    """Wall-clock seconds of training (with the monitor) and of the analysis."""

    training: float
    analysis: float


class ReportResults(NamedTuple):
    """``results.json`` of ``jaxdl report``: the settings, the environment, the :class:`Analysis` fields, timing."""

    config: Any  # the ReportConfig's record (ReportConfig.record())
    seed: int
    params_sha256: str
    environment: dict[str, Any]
    model: Union[ModelSummary, NetworkSummary]
    history: TrainingHistory
    final: FinalMetrics
    lanczos: LanczosSummary
    trace: TraceSummary
    slq: SLQSummary
    exact: Union[ExactSpectrum, ExactSkipped]
    per_layer: list[Union[LayerBlock, ExactLayerBlock]]
    landscape: Landscape
    timing_s: Timing
