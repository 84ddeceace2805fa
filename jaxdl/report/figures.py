"""The report's figures and their captions, drawn from its results; nothing is recomputed here."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from analysis import plots
from jaxdl.report.config import ReportConfig
from jaxdl.report.results import FigureData, ReportResults


def stability_threshold(config: ReportConfig) -> Optional[tuple[float, str]]:
    """Largest stable sharpness of the optimizer on a quadratic: 2/eps (GD), (2 + 2 beta)/eps (heavy ball)."""
    if config.optimizer == "sgd":
        return 2.0 / config.learning_rate, "2 / eps (edge of stability)"
    if config.optimizer == "momentum":
        return (2 + 2 * config.momentum) / config.learning_rate, "(2 + 2 beta) / eps (edge of stability)"
    return None


def report_figures(config: ReportConfig, results: ReportResults, data: FigureData) -> dict[str, Any]:
    """``{stem: matplotlib Figure}``; ``top_eigenvalue`` only when the monitor ran Lanczos."""
    ev = {k: np.asarray(v) for k, v in results.history.evals.items()}
    mon = {k: np.asarray(v) for k, v in results.history.monitor.items()}
    mstep = np.asarray(results.history.monitor_step)
    lam, land = results.lanczos, results.landscape
    figures = {
        "loss": plots.curves_figure(ev["step"], {"train loss": ev["train_loss"], "test loss": ev["test_loss"]},
                                    ylabel="softmax cross-entropy (nats, log scale)", title="Loss", log=True),
        "accuracy": plots.curves_figure(ev["step"], {"train accuracy": ev["train_acc"], "test accuracy": ev["test_acc"]},
                                        ylabel="accuracy (fraction correct)", title="Accuracy"),
        "gradient_curvature": plots.curves_figure(
            mstep, {"$g^T g$": mon["gTg"], "$g^T H g$": mon["gTHg"]}, ylabel="value (log scale)",
            title="Gradient norm and curvature along the gradient", log=True),
        "predicted_vs_actual": plots.predicted_vs_actual_figure(mon["predicted_change"], mon["actual_change"]),
        "spectral_density": plots.spectral_density_figure(data.density_grid, data.density,
                                                          exact_eigenvalues=data.exact, sigma=data.sigma),
        "extreme_eigenvalues": plots.eigenvalues_figure(np.asarray(lam.eigenvalues), np.asarray(lam.residuals)),
        "eigenvector_slices": plots.slices_figure(land.alphas, land.slices, quadratic=data.quadratic),
        "landscape_2d": plots.landscape_2d_figure(land.grid, land.grid, land.surface),
    }
    if config.lanczos_steps:
        threshold = stability_threshold(config)
        figures["top_eigenvalue"] = plots.curves_figure(
            mstep, {"top Hessian eigenvalue": mon["top_eigenvalue"]}, ylabel="$\\lambda_{max}$",
            title="Sharpness during training", hlines=[threshold] if threshold else ())
    return figures


def report_captions(config: ReportConfig, results: ReportResults) -> dict[str, str]:
    """``{stem: caption}`` for every figure :func:`report_figures` can draw."""
    batch = "full-batch" if config.batch_size is None else f"minibatch ({config.batch_size})"
    return {
        "loss": f"Training and test loss ({config.optimizer}, learning rate {config.learning_rate}, {batch}).",
        "accuracy": "Training and test accuracy.",
        "gradient_curvature": f"g^T g and g^T H g of the training batch every {config.monitor_every} steps "
                              "(Deep Learning book sec. 8.2.1).",
        "predicted_vs_actual": "Eq. 8.10 second-order prediction of each monitored step's loss change against the "
                               "actual change on the same batch; points on the diagonal mean the quadratic model holds.",
        "top_eigenvalue": f"Top Hessian eigenvalue by {config.lanczos_steps} warm-started Lanczos steps per monitored "
                          "step, with the optimizer's stability threshold.",
        "spectral_density": "Hessian spectral density at the end of training by stochastic Lanczos quadrature "
                            "(log scale) over the histogram of the exact spectrum (where a dense Hessian fits).",
        "extreme_eigenvalues": f"The {len(results.lanczos.eigenvalues) // 2} most negative and largest Hessian "
                               "eigenvalues by Lanczos with partial reorthogonalisation; error bars are residual norms "
                               "||Hv - lambda v||.",
        "eigenvector_slices": "Training loss along the top and bottom Hessian eigenvectors (solid) and the quadratic "
                              "model from the gradient and the eigenvalue (dashed).",
        "landscape_2d": "Training loss on the plane of two filter-normalised random directions (Li et al. 2018).",
    }
