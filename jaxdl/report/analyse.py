"""The analysis of the trained network: gradient and curvature, Lanczos extremes, Hutch++ trace, spectral density,
the exact float64 spectrum where a dense Hessian fits, per-layer blocks and loss landscapes.

Every number is a field of a NamedTuple of :mod:`jaxdl.report.results`.
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np
from tqdm.auto import tqdm

import analysis
from jaxdl.problems import RESNET_BATCH_NORM, Problem
from jaxdl.report.config import ReportConfig
from jaxdl.report.problem import analysis_batch, exact_hessian
from jaxdl.report.results import (Analysis, ExactLayerBlock, ExactSkipped, ExactSpectrum, FigureData, FinalMetrics,
                                  LanczosSummary, Landscape, LayerBlock, ModelSummary, NetworkSummary, SLQSummary,
                                  TraceSummary, TrainingHistory)


def analyse_network(config: ReportConfig, problem: Problem, params, history: TrainingHistory, *,
                    progress: bool) -> tuple[Analysis, FigureData]:
    """Every number of the report at the trained ``params`` (on :func:`jaxdl.report.analysis_batch`), and the
    arrays the figures need."""
    loss_fn = problem.loss_fn
    batch = analysis_batch(config, problem)
    n = analysis.num_params(params)
    k = min(config.k, n // 2)
    k_eig, k_trace, k_slq, k_land = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    layers = problem.layers or analysis.layer_blocks(params)
    bar = tqdm(total=6 + len(layers), desc="curvature analysis", disable=not progress)

    gc = analysis.gradient_curvature(loss_fn, params, *batch)
    bar.update()
    eigs = analysis.hessian_eigs(loss_fn, params, *batch, k=k, which="both", num_matvecs=min(n, config.lanczos_matvecs),
                                 key=k_eig, return_vectors=True)
    bar.update()
    trace = analysis.hessian_trace(loss_fn, params, *batch, num_matvecs=config.trace_matvecs, key=k_trace)
    bar.update()
    slq = analysis.spectral_density(loss_fn, params, *batch, num_matvecs=min(n, config.slq_matvecs),
                                    num_probes=config.slq_probes, key=k_slq)
    bar.update()
    exact, H, eigenvalues = _exact_spectrum(config, params, n, k, slq,
                                            None if config.analysis_examples is None else batch)
    bar.update()
    matvecs = (40, 30) if config.layer_matvecs is None else (config.layer_matvecs,) * 2
    per_layer = _layer_blocks(loss_fn, params, batch, layers, H, k_eig, (min(n, matvecs[0]), matvecs[1]))
    bar.update(len(layers))
    landscape, quadratic = _landscape(config, loss_fn, params, batch, gc, eigs, k_land)
    bar.update()
    bar.close()

    result = Analysis(
        model=_model_summary(config, problem, n, int(batch[0].shape[0])),
        history=history,
        final=_final_metrics(history, gc, config.learning_rate),
        lanczos=LanczosSummary(eigs.eigenvalues, eigs.residuals, eigs.num_matvecs),
        trace=TraceSummary(float(trace.estimate), float(trace.standard_error), trace.method, trace.num_matvecs),
        slq=SLQSummary(int(slq.nodes.shape[1]), int(slq.nodes.shape[0])),
        exact=exact,
        per_layer=per_layer,
        landscape=landscape,
    )
    return result, _figure_data(slq, eigs, eigenvalues, quadratic)


def _model_summary(config: ReportConfig, problem: Problem, n: int, analysis_examples: int):
    """The MLP's layer widths; a network's architecture and the objective it is trained and analysed with."""
    ds = problem.data
    if config.model in ("mlp", "linear"):
        return ModelSummary(config.layer_sizes(ds.num_features, ds.num_classes), n)
    shape = [int(s) for s in ds.x_train.shape[1:]]
    w = config.width
    if config.model == "resnet20":
        architecture = {"depth": config.depth, "width": w, "stage_widths": [w, 2 * w, 4 * w],
                        "blocks_per_stage": (config.depth - 2) // 6, "image_size": config.image_size,
                        "in_channels": 1, "upsampling": "nearest"}
        batch_norm = RESNET_BATCH_NORM
        objective = ("training-mode loss: mean softmax cross-entropy with every BatchNorm normalising by the mean "
                     "and variance of the batch it is given (batch_norm='batch'; running averages unused); the "
                     f"analysis batch is the first {analysis_examples} training examples")
    else:
        architecture = {"dim": w, "num_heads": config.num_heads, "num_blocks": config.depth, "mlp_dim": 4 * w,
                        "max_length": shape[0], "in_features": shape[1], "norm": "pre-norm LayerNorm",
                        "dropout_rate": 0.0}
        batch_norm = None
        objective = ("mean softmax cross-entropy of the deterministic network (no BatchNorm, Dropout off); the "
                     f"analysis batch is the first {analysis_examples} training examples")
    return NetworkSummary(config.model, n, architecture, shape, ds.num_classes, batch_norm, "off", objective,
                          analysis_examples, int(ds.x_train.shape[0]))


def _exact_spectrum(config: ReportConfig, params, n: int, k: int, slq, batch):
    """The exact spectrum (with the dense Hessian and its eigenvalues) if ``n <= dense_limit``, else why not."""
    if n > config.dense_limit:
        return ExactSkipped(False, f"n={n} exceeds dense_limit={config.dense_limit}"), None, None
    H = exact_hessian(config, params, batch)
    eigenvalues = np.linalg.eigvalsh(0.5 * (H + H.T))
    exact = ExactSpectrum(True, "float64", analysis.condition_number(eigenvalues), float(eigenvalues.sum()),
                          eigenvalues[-k:], eigenvalues[:k], float(slq.wasserstein1(eigenvalues)))
    return exact, H, eigenvalues


def _layer_blocks(loss_fn, params, batch, layers: dict[str, tuple[str, ...]], H: Optional[np.ndarray], key,
                  matvecs: tuple[int, int]) -> list:
    """Every layer's block (the parameters at its paths): top eigenvalue (Lanczos on the block, ``matvecs[0]``
    steps) and trace (Hutch++ on the block, ``matvecs[1]`` products), all layers in one compiled program
    (:func:`analysis.block_curvature`); exact values where the dense Hessian ``H`` is given."""
    res = analysis.block_curvature(loss_fn, params, *batch, blocks=layers, num_matvecs=matvecs[0],
                                   trace_matvecs=matvecs[1], key=key)
    sizes = [int(np.size(x)) for x in jax.tree_util.tree_leaves(params)]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    index_of = {p: i for i, p in enumerate(analysis.leaf_paths(params))}
    out = []
    for i, (name, paths) in enumerate(layers.items()):
        block = LayerBlock(name, res.num_params[i], float(res.top_eigenvalue[i]), float(res.top_residual[i]),
                           float(res.trace[i]), float(res.trace_standard_error[i]))
        if H is None:
            out.append(block)
            continue
        idx = np.concatenate([np.arange(offsets[index_of[p]], offsets[index_of[p] + 1]) for p in paths])
        sub = H[np.ix_(idx, idx)]
        out.append(ExactLayerBlock(*block, float(np.linalg.eigvalsh(0.5 * (sub + sub.T))[-1]), float(np.trace(sub))))
    return out


def _landscape(config: ReportConfig, loss_fn, params, batch, gc, eigs, key) -> tuple[Landscape, dict]:
    """1-D slices along the top and bottom eigenvectors with their quadratic models; 2-D filter-normalised
    surface."""
    alphas = np.linspace(-1.0, 1.0, config.landscape_points)
    loss0 = float(gc.loss)
    slices, quadratic = {}, {}
    for label, index in (("top eigenvector", -1), ("bottom eigenvector", 0)):
        vec = jax.tree_util.tree_map(lambda v: v[index], eigs.eigenvectors)
        lam = float(eigs.eigenvalues[index])
        name = f"{label} ($\\lambda$ = {lam:.3g})"
        slices[name] = np.asarray(analysis.loss_along_direction(loss_fn, params, vec, alphas, *batch))
        g_dot_v = sum(float(np.vdot(a, b)) for a, b in zip(jax.tree_util.tree_leaves(gc.grad),
                                                            jax.tree_util.tree_leaves(vec)))
        quadratic[name] = loss0 + alphas * g_dot_v + 0.5 * lam * alphas**2
    d1k, d2k = jax.random.split(key)
    d1 = analysis.filter_normalized_direction(d1k, params)
    d2 = analysis.filter_normalized_direction(d2k, params)
    grid = np.linspace(-1.0, 1.0, config.landscape_grid)
    surface = np.asarray(analysis.loss_surface_2d(loss_fn, params, d1, d2, grid, grid, *batch))
    return Landscape(alphas, slices, grid, surface), quadratic


def _final_metrics(history: TrainingHistory, gc, learning_rate: float) -> FinalMetrics:
    last = {name: float(np.asarray(history.evals[name])[-1]) for name in ("train_loss", "test_loss", "train_acc",
                                                                          "test_acc")}
    return FinalMetrics(**last, loss=float(gc.loss), gTg=float(gc.gTg), gTHg=float(gc.gTHg),
                        predicted_change_at_lr=float(gc.predicted_change(learning_rate)),
                        curvature_ratio_at_lr=float(gc.curvature_ratio(learning_rate)))


def _figure_data(slq, eigs, exact_eigenvalues, quadratic) -> FigureData:
    """The SLQ density on a grid covering its nodes and the Lanczos extremes."""
    lo = float(min(slq.nodes.min(), eigs.eigenvalues.min()))
    hi = float(max(slq.nodes.max(), eigs.eigenvalues.max()))
    pad = 0.05 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, 800)
    sigma = (hi - lo) / 200
    return FigureData(grid, np.asarray(slq.density(grid, sigma)), sigma, exact_eigenvalues, quadratic)
