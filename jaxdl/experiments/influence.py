"""Influence functions against exact leave-one-out retraining (Koh & Liang 2017; Deep Learning sec. 8.2, 4.3).

L2-regularised logistic regression separates digits 3 from 5. For the test example with the highest loss, the
influence function predicts how much each training example's removal changes that loss: one damped Hessian solve
(:func:`analysis.influence_scores`). The truth is measured by refitting without each example, every fit by
Newton's method to machine precision in float64 (the objective is strictly convex, so each refit is exact).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import analysis
from analysis.influence import flat_gradient_norm
from jaxdl.data import digits_full
from jaxdl.experiments._common import figure, spearman
from jaxdl.experiments._registry import Verdict, experiment

CLAIM = ("Influence functions (Koh & Liang 2017, from robust statistics): at a minimum, grad L_test^T H^{-1} grad l_i "
         "/ (N - 1) predicts the change of a test loss when training example i is left out; for L2-regularised "
         "logistic regression it agrees with exact leave-one-out retraining (Pearson and Spearman correlation >= "
         "0.9, and the 10 most influential examples found).")
WEIGHT_DECAY = 1e-2
NEWTON_STEPS = 30


def _objective(params, x, y):
    """Mean logistic loss (labels 0/1) plus (weight decay / 2) ||w||^2, the bias unpenalised."""
    logits = x @ params["w"] + params["b"]
    return jnp.mean(jax.nn.softplus(logits) - y * logits) + 0.5 * WEIGHT_DECAY * jnp.sum(params["w"] ** 2)


def _fit(x, y, weights, start):
    """Newton's method on the weighted objective sum_j weights_j l_j / sum_j weights_j (float64, dense Hessian)."""
    def objective(theta):
        w, b = theta[:-1], theta[-1]
        logits = x @ w + b
        return (jnp.sum(weights * (jax.nn.softplus(logits) - y * logits)) / jnp.sum(weights)
                + 0.5 * WEIGHT_DECAY * jnp.sum(w**2))

    def step(_, theta):
        return theta - jnp.linalg.solve(jax.hessian(objective)(theta), jax.grad(objective)(theta))

    theta = jax.lax.fori_loop(0, NEWTON_STEPS, step, start)
    return theta, jnp.linalg.norm(jax.grad(objective)(theta))


def measure(*, seed: int, quick: bool) -> dict:
    """Fit, pick the hardest test example, predict every training example's influence, refit without each."""
    with jax.enable_x64(True):
        x, y = digits_full(jnp.float64)
        keep = (y == 3) | (y == 5)
        x, y = np.asarray(x)[np.asarray(keep)], (np.asarray(y)[np.asarray(keep)] == 5).astype(np.float64)
        order = np.random.default_rng(seed).permutation(len(y))
        n_train = 60 if quick else 200
        train_idx, test_idx = order[:n_train], order[n_train:]
        xt, yt = jnp.asarray(x[train_idx]), jnp.asarray(y[train_idx])
        ones = jnp.ones(n_train)
        theta, grad_norm = _fit(xt, yt, ones, jnp.zeros(x.shape[1] + 1))
        params = {"w": theta[:-1], "b": theta[-1]}
        test_losses = jax.vmap(lambda xi, yi: _objective(params, xi[None], yi[None]))(
            jnp.asarray(x[test_idx]), jnp.asarray(y[test_idx]))
        hardest = int(test_idx[int(jnp.argmax(test_losses))])
        test = (jnp.asarray(x[hardest:hardest + 1]), jnp.asarray(y[hardest:hardest + 1]))
        base = float(_objective(params, *test))
        influence = analysis.influence_scores(_objective, params, (xt, yt), test, damping=0.0)

        def left_out(i):
            theta_i, g_i = _fit(xt, yt, ones.at[i].set(0.0), theta)
            return _objective({"w": theta_i[:-1], "b": theta_i[-1]}, *test) - base, g_i

        actual, refit_grads = jax.lax.map(left_out, jnp.arange(n_train))
        predicted = np.asarray(influence.scores)
        actual = np.asarray(actual)
        train_gradient_norm = float(flat_gradient_norm(_objective, params, xt, yt))
        rank_correlation = spearman(predicted, actual)
        max_refit_gradient_norm = float(jnp.max(refit_grads))
    top = 10
    found = len(set(np.argsort(-np.abs(actual))[:top]) & set(np.argsort(-np.abs(predicted))[:top]))
    return {"n_train": n_train, "weight_decay": WEIGHT_DECAY, "test_index": hardest, "test_loss": base,
            "train_gradient_norm": train_gradient_norm,
            "newton_gradient_norm": float(grad_norm), "max_refit_gradient_norm": max_refit_gradient_norm,
            "solve_residual": float(influence.solve.residual), "solve_steps": int(influence.solve.num_steps),
            "predicted": predicted, "actual": actual,
            "pearson": float(np.corrcoef(predicted, actual)[0, 1]), "spearman": rank_correlation,
            "top": top, "top_found": found,
            "max_abs_error": float(np.max(np.abs(predicted - actual))), "max_abs_actual": float(np.max(np.abs(actual)))}


def verdict(m: dict) -> Verdict:
    """Correlations >= 0.9 and at least 8 of the 10 most influential examples found, fits converged."""
    converged = m["max_refit_gradient_norm"] < 1e-8 and m["train_gradient_norm"] < 1e-8 and m["solve_residual"] < 1e-6
    passed = converged and m["pearson"] >= 0.9 and m["spearman"] >= 0.9 and m["top_found"] >= 8
    text = (f"{m['n_train']} training examples (3 vs 5), hardest test example's loss {m['test_loss']:.3f}: predicted "
            f"against leave-one-out changes Pearson {m['pearson']:.4f}, Spearman {m['spearman']:.4f}; "
            f"{m['top_found']}/{m['top']} of the most influential found; max error {m['max_abs_error']:.2e} against "
            f"changes up to {m['max_abs_actual']:.2e}. Fits converged to gradient norm "
            f"{max(m['max_refit_gradient_norm'], m['train_gradient_norm']):.1e}; CG residual "
            f"{m['solve_residual']:.1e} in {m['solve_steps']} steps.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Predicted against actual leave-one-out change, one point per training example."""
    fig, (ax,) = figure()
    pred, act = np.asarray(m["predicted"]), np.asarray(m["actual"])
    ax.scatter(act, pred, s=12, alpha=0.7)
    lim = 1.05 * max(np.abs(pred).max(), np.abs(act).max())
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8, label="y = x")
    ax.set_xlabel("actual change of the test loss (leave-one-out refit)")
    ax.set_ylabel("predicted (influence function)")
    ax.set_title(f"Influence vs leave-one-out (Pearson {m['pearson']:.3f})")
    ax.legend()
    return {"influence_loo": (fig, "Each training example's predicted change of the hardest test example's loss "
                                    "against the change measured by refitting without it.")}


EXPERIMENT = experiment(
    "influence", summary="influence functions predict leave-one-out retraining (logistic regression on digits)",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
