"""The analysis half of the report: Hessian analysis of the trained network, figures, and the HTML summary."""

from __future__ import annotations

import html
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

import analysis
from analysis import plots
from jaxdl.problem import exact_hessian_float64


def analyse(config, problem, params, history: dict, *, progress: bool) -> tuple[dict, dict]:
    """Every number of the report (JSON-ready) and the arrays the figures need."""
    ds, loss_fn = problem.data, problem.loss_fn
    batch = (ds.x_train, ds.y_train)
    n = analysis.num_params(params)
    k = min(config.k, n // 2)
    key = jax.random.PRNGKey(config.seed)
    k_eig, k_trace, k_slq, k_land = jax.random.split(key, 4)
    layers = analysis.layer_blocks(params)
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

    exact, H = None, None
    exact_results: dict[str, Any] = {"computed": False, "reason": f"n={n} exceeds dense_limit={config.dense_limit}"}
    if n <= config.dense_limit:
        H = exact_hessian_float64(config, params)
        exact = np.linalg.eigvalsh(0.5 * (H + H.T))
        cond = analysis.condition_number(exact)
        exact_results = {"computed": True, "dtype": "float64", "condition": cond._asdict(), "trace": float(exact.sum()),
                         "top_k": exact[-k:], "bottom_k": exact[:k], "slq_wasserstein1": float(slq.wasserstein1(exact))}
    bar.update()

    # Per-layer blocks: top eigenvalue (Lanczos on the block) and trace (Hutch++ on the block); exact where dense.
    sizes = [int(np.size(x)) for x in jax.tree_util.tree_leaves(params)]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    index_of = {p: i for i, p in enumerate(_leaf_paths(params))}
    per_layer = []
    for name, leaf_paths in layers.items():
        nb = sum(sizes[index_of[p]] for p in leaf_paths)
        top = analysis.hessian_eigs(loss_fn, params, *batch, k=1, block=name, num_matvecs=min(nb, 40), key=k_eig)
        tr = analysis.hessian_trace(loss_fn, params, *batch, num_matvecs=min(30, 3 * nb), key=k_trace, block=name)
        row = {"layer": name, "num_params": nb, "top_eigenvalue": float(top.eigenvalues[0]),
               "top_residual": float(top.residuals[0]), "trace": float(tr.estimate),
               "trace_standard_error": float(tr.standard_error)}
        if H is not None:
            idx = np.concatenate([np.arange(offsets[index_of[p]], offsets[index_of[p] + 1]) for p in leaf_paths])
            sub = H[np.ix_(idx, idx)]
            row["exact_top_eigenvalue"] = float(np.linalg.eigvalsh(0.5 * (sub + sub.T))[-1])
            row["exact_trace"] = float(np.trace(sub))
        per_layer.append(row)
        bar.update()

    # 1-D slices along the top and bottom eigenvectors with their quadratic models; 2-D filter-normalised surface.
    alphas = np.linspace(-1.0, 1.0, config.landscape_points)
    vecs = eigs.eigenvectors
    top_vec = jax.tree_util.tree_map(lambda v: v[-1], vecs)
    bottom_vec = jax.tree_util.tree_map(lambda v: v[0], vecs)
    loss0 = float(gc.loss)
    slices, quad = {}, {}
    for label, vec, lam in (("top eigenvector", top_vec, float(eigs.eigenvalues[-1])),
                            ("bottom eigenvector", bottom_vec, float(eigs.eigenvalues[0]))):
        name = f"{label} ($\\lambda$ = {lam:.3g})"
        slices[name] = np.asarray(analysis.loss_along_direction(loss_fn, params, vec, alphas, *batch))
        g_dot_v = sum(float(np.vdot(a, b)) for a, b in zip(jax.tree_util.tree_leaves(gc.grad),
                                                            jax.tree_util.tree_leaves(vec)))
        quad[name] = loss0 + alphas * g_dot_v + 0.5 * lam * alphas**2
    d1k, d2k = jax.random.split(k_land)
    d1 = analysis.filter_normalized_direction(d1k, params)
    d2 = analysis.filter_normalized_direction(d2k, params)
    grid = np.linspace(-1.0, 1.0, config.landscape_grid)
    surface = np.asarray(analysis.loss_surface_2d(loss_fn, params, d1, d2, grid, grid, *batch))
    bar.update()
    bar.close()

    evals = {k: np.asarray(v) for k, v in history["evals"].items()}
    final = {name: float(evals[name][-1]) for name in ("train_loss", "test_loss", "train_acc", "test_acc")}
    final.update({"loss": loss0, "gTg": float(gc.gTg), "gTHg": float(gc.gTHg),
                  "predicted_change_at_lr": float(gc.predicted_change(config.learning_rate)),
                  "curvature_ratio_at_lr": float(gc.curvature_ratio(config.learning_rate))})
    results = {
        "model": {"sizes": config.layer_sizes(ds.num_features, ds.num_classes), "num_params": n},
        "history": history,
        "final": final,
        "lanczos": {"eigenvalues": eigs.eigenvalues, "residuals": eigs.residuals, "num_matvecs": eigs.num_matvecs},
        "trace": {"estimate": float(trace.estimate), "standard_error": float(trace.standard_error),
                  "method": trace.method, "num_matvecs": trace.num_matvecs},
        "slq": {"num_matvecs": int(slq.nodes.shape[1]), "num_probes": int(slq.nodes.shape[0])},
        "exact": exact_results,
        "per_layer": per_layer,
        "landscape": {"alphas": alphas, "slices": slices, "grid": grid, "surface": surface},
    }
    lo = float(min(slq.nodes.min(), eigs.eigenvalues.min()))
    hi = float(max(slq.nodes.max(), eigs.eigenvalues.max()))
    pad = 0.05 * (hi - lo)
    density_grid = np.linspace(lo - pad, hi + pad, 800)
    sigma = (hi - lo) / 200
    arrays = {"density_grid": density_grid, "density": np.asarray(slq.density(density_grid, sigma)),
              "sigma": sigma, "exact": exact, "quadratic": quad}
    return results, arrays


def _leaf_paths(params) -> list[str]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in flat]


def stability_threshold(config) -> tuple[float, str] | None:
    """Largest stable sharpness of the optimizer on a quadratic: 2/eps (GD), (2 + 2 beta)/eps (heavy ball)."""
    if config.optimizer == "sgd":
        return 2.0 / config.learning_rate, "2 / eps (edge of stability)"
    if config.optimizer == "momentum":
        return (2 + 2 * config.momentum) / config.learning_rate, "(2 + 2 beta) / eps (edge of stability)"
    return None


def figures_and_captions(config, results: dict, arrays: dict) -> tuple[dict, dict]:
    h = results["history"]
    ev = {k: np.asarray(v) for k, v in h["evals"].items()}
    mon = {k: np.asarray(v) for k, v in h["monitor"].items()}
    mstep = np.asarray(h["monitor_step"])
    lam = results["lanczos"]
    figures = {
        "loss": plots.curves_figure(ev["step"], {"train loss": ev["train_loss"], "test loss": ev["test_loss"]},
                                    ylabel="softmax cross-entropy (nats, log scale)", title="Loss", log=True),
        "accuracy": plots.curves_figure(ev["step"], {"train accuracy": ev["train_acc"], "test accuracy": ev["test_acc"]},
                                        ylabel="accuracy (fraction correct)", title="Accuracy"),
        "gradient_curvature": plots.curves_figure(
            mstep, {"$g^T g$": mon["gTg"], "$g^T H g$": mon["gTHg"]}, ylabel="value (log scale)",
            title="Gradient norm and curvature along the gradient", log=True),
        "predicted_vs_actual": plots.predicted_vs_actual_figure(mon["predicted_change"], mon["actual_change"]),
        "spectral_density": plots.spectral_density_figure(arrays["density_grid"], arrays["density"],
                                                          exact_eigenvalues=arrays["exact"], sigma=arrays["sigma"]),
        "extreme_eigenvalues": plots.eigenvalues_figure(np.asarray(lam["eigenvalues"]), np.asarray(lam["residuals"])),
        "eigenvector_slices": plots.slices_figure(results["landscape"]["alphas"], results["landscape"]["slices"],
                                                  quadratic=arrays["quadratic"]),
        "landscape_2d": plots.landscape_2d_figure(results["landscape"]["grid"], results["landscape"]["grid"],
                                                  results["landscape"]["surface"]),
    }
    if config.lanczos_steps:
        threshold = stability_threshold(config)
        figures["top_eigenvalue"] = plots.curves_figure(
            mstep, {"top Hessian eigenvalue": mon["top_eigenvalue"]}, ylabel="$\\lambda_{max}$",
            title="Sharpness during training", hlines=[threshold] if threshold else ())
    batch = "full-batch" if config.batch_size is None else f"minibatch ({config.batch_size})"
    captions = {
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
        "extreme_eigenvalues": f"The {len(lam['eigenvalues']) // 2} most negative and largest Hessian eigenvalues by "
                               "Lanczos with full reorthogonalisation; error bars are residual norms ||Hv - lambda v||.",
        "eigenvector_slices": "Training loss along the top and bottom Hessian eigenvectors (solid) and the quadratic "
                              "model from the gradient and the eigenvalue (dashed).",
        "landscape_2d": "Training loss on the plane of two filter-normalised random directions (Li et al. 2018).",
    }
    return figures, captions


def summary_html(r: dict) -> str:
    f, t = r["final"], r["trace"]
    rows = [
        ("parameters", f"{r['model']['num_params']} ({'-'.join(map(str, r['model']['sizes']))})"),
        ("final train / test loss", f"{f['train_loss']:.4f} / {f['test_loss']:.4f}"),
        ("final train / test accuracy", f"{f['train_acc']:.3f} / {f['test_acc']:.3f}"),
        ("g<sup>T</sup>g, g<sup>T</sup>Hg", f"{f['gTg']:.4g}, {f['gTHg']:.4g}"),
        ("trace (Hutch++)", f"{t['estimate']:.4g} &plusmn; {t['standard_error']:.2g}"),
        ("Lanczos eigenvalues (residual)", ", ".join(
            f"{float(v):.4g} ({float(e):.1g})" for v, e in zip(np.asarray(r["lanczos"]["eigenvalues"]),
                                                              np.asarray(r["lanczos"]["residuals"])))),
    ]
    ex = r["exact"]
    if ex["computed"]:
        c = ex["condition"]
        rows += [
            ("exact trace", f"{ex['trace']:.4g}"),
            ("condition number (non-null)", f"{c['condition_number']:.4g} (null tolerance {c['null_tolerance']:.2g})"),
            ("negative / near-zero / positive", f"{c['num_negative']} / {c['num_near_zero']} / {c['num_positive']}"),
            ("Hessian index (fraction negative)", f"{c['index']:.4f}"),
            ("SLQ Wasserstein-1 to exact", f"{ex['slq_wasserstein1']:.3g}"),
        ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    layer_rows = "".join(
        f"<tr><td>{html.escape(p['layer'])}</td><td>{p['num_params']}</td><td>{p['top_eigenvalue']:.4g}</td>"
        f"<td>{p.get('exact_top_eigenvalue', float('nan')):.4g}</td><td>{p['trace']:.4g} &plusmn; "
        f"{p['trace_standard_error']:.2g}</td><td>{p.get('exact_trace', float('nan')):.4g}</td></tr>"
        for p in r["per_layer"])
    layers = ("<h2>Per-layer Hessian blocks</h2><table><tr><th>layer</th><th>parameters</th><th>top eigenvalue "
              "(Lanczos)</th><th>exact</th><th>trace (Hutch++)</th><th>exact</th></tr>" + layer_rows + "</table>")
    return f"<table>{body}</table>{layers}"
