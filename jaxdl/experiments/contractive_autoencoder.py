"""Contractive autoencoders (Deep Learning sec. 14.2.3, 14.7; Rifai et al. 2011): the penalty
``lambda ||d f / d x||_F^2`` three ways, and the degenerate solution that tied weights prevent.

Measured on digits with a sigmoid encoder (32 units) and a linear decoder, trained on ``MSE + lambda * penalty``:

1. the penalty computed exactly (``jax.jacfwd`` through :func:`analysis.contractive_penalty`), by random projections
   with a standard error (:func:`analysis.contractive_penalty_estimate`, whose per-probe variance is checked
   against :func:`analysis.projection_variance`) and in closed form (:func:`analysis.sigmoid_contractive_penalty`);
2. with untied weights the encoder shrinks its Jacobian while the decoder's weights grow to compensate, driving the
   penalty down with no constraint on what is learned; with tied weights (decoder = encoder transposed) the
   encoder cannot shrink without hurting reconstruction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import analysis
from jaxdl.data import digits
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models import Autoencoder, autoencoder_split, reconstruction_error

CLAIM = ("Deep Learning sec. 14.2.3 and 14.7: the contractive penalty is the squared Frobenius norm of the encoder "
         "Jacobian (exact, random-projection and closed-form sigmoid values agree); with untied weights it can be "
         "made small by shrinking the encoder while the decoder grows to compensate, and tying the weights "
         "prevents this degenerate solution.")

CODE_SIZE = 32


def _encoder_weights(params):
    d = nnx.to_pure_dict(params)
    return d["encoder"][0]["kernel"], d["encoder"][0]["bias"]


def _decoder_weights(params, tied: bool):
    d = nnx.to_pure_dict(params)
    return d["encoder"][0]["kernel"].T if tied else d["decoder"][0]["kernel"]


def train_contractive(x, *, tied: bool, penalty_weight: float, steps: int, seed: int):
    """Adam on ``MSE + penalty_weight * ||J||_F^2`` (closed form for the sigmoid encoder), recording per step the
    reconstruction error, the penalty and the Frobenius norms of the encoder and decoder weights."""
    fns, params = autoencoder_split(Autoencoder(x.shape[1], CODE_SIZE, encoder_activation="sigmoid", tied=tied,
                                                rngs=nnx.Rngs(seed)))
    optimizer = optax.adam(1e-2)

    def penalty(p, xb):
        w, b = _encoder_weights(p)
        h = jax.nn.sigmoid(xb @ w + b)
        return jnp.mean(jnp.sum((h * (1 - h)) ** 2 * jnp.sum(w**2, axis=0), axis=1))

    def loss_fn(p, xb):
        return reconstruction_error(xb, fns.apply(p, xb)) + penalty_weight * penalty(p, xb)

    @jax.jit
    def train(p, xb):
        def step(carry, _):
            p, s = carry
            grads = jax.grad(loss_fn)(p, xb)
            updates, s = optimizer.update(grads, s, p)
            p = optax.apply_updates(p, updates)
            record = jnp.stack([reconstruction_error(xb, fns.apply(p, xb)), penalty(p, xb),
                                jnp.linalg.norm(_encoder_weights(p)[0]), jnp.linalg.norm(_decoder_weights(p, tied))])
            return (p, s), record

        start = jnp.stack([reconstruction_error(xb, fns.apply(p, xb)), penalty(p, xb),
                           jnp.linalg.norm(_encoder_weights(p)[0]), jnp.linalg.norm(_decoder_weights(p, tied))])
        (p, _), history = jax.lax.scan(step, (p, optimizer.init(p)), None, length=steps)
        return p, jnp.concatenate([start[None], history])

    params, history = train(params, x)
    return fns, params, np.asarray(history)


def _history_for_plot(history: np.ndarray, max_points: int = 1000) -> dict:
    """Every ``stride``-th row of a training history (and the last), with the step numbers: at most about
    ``max_points`` points for the figure."""
    stride = max(1, (history.shape[0] - 1) // max_points)
    steps = np.unique(np.append(np.arange(0, history.shape[0], stride), history.shape[0] - 1))
    return {"step": steps, "mse": history[steps, 0], "penalty": history[steps, 1],
            "encoder_norm": history[steps, 2], "decoder_norm": history[steps, 3]}


def measure(*, seed: int, quick: bool) -> dict:
    """The penalty three ways on the tied model, and both models' norms and penalties over training."""
    steps = 600 if quick else 4000
    num_probes = 32 if quick else 256
    penalty_weight = 0.01
    data = digits(seed=seed)
    fns_u, params_u, hist_u = train_contractive(data.x_train, tied=False, penalty_weight=penalty_weight, steps=steps,
                                                seed=seed)
    fns_t, params_t, hist_t = train_contractive(data.x_train, tied=True, penalty_weight=penalty_weight, steps=steps,
                                                seed=seed)

    # 1. Three computations of the penalty on the tied model's test inputs.
    x = data.x_test
    w, b = _encoder_weights(params_t)
    exact = float(analysis.contractive_penalty(fns_t.encode, params_t, x))
    closed = float(analysis.sigmoid_contractive_penalty(w, b, x))
    estimates = {}
    for probe in ("gaussian", "rademacher"):
        est = analysis.contractive_penalty_estimate(fns_t.encode, params_t, x, key=jax.random.PRNGKey(seed + 7),
                                                    num_probes=num_probes, probe=probe)
        true_var = analysis.projection_variance(fns_t.encode, params_t, x, probe=probe)
        estimates[probe] = {"estimate": float(est.estimate), "standard_error": float(est.standard_error),
                            "z_score": float((est.estimate - exact) / est.standard_error),
                            "variance_ratio_sample_to_exact": float(jnp.mean(est.probe_variance) / jnp.mean(true_var))}
    agreement = {"exact_jacfwd": exact, "closed_form": closed, "closed_vs_exact_relative": abs(closed - exact) / exact,
                 "estimates": estimates, "num_probes": num_probes, "examples": int(x.shape[0])}

    # 2. The degenerate solution: ratios between the end and the start of training.
    def summary(h):
        return {"mse": float(h[-1, 0]), "penalty_start": float(h[0, 1]), "penalty_end": float(h[-1, 1]),
                "encoder_norm_start": float(h[0, 2]), "encoder_norm_end": float(h[-1, 2]),
                "decoder_norm_start": float(h[0, 3]), "decoder_norm_end": float(h[-1, 3]),
                "penalty_end_over_half": float(h[-1, 1] / h[len(h) // 2, 1])}

    return {"code_size": CODE_SIZE, "penalty_weight": penalty_weight, "steps": steps, "agreement": agreement,
            "untied": summary(hist_u), "tied": summary(hist_t),
            "history": {"untied": _history_for_plot(hist_u), "tied": _history_for_plot(hist_t)}}


def verdict(m: dict) -> Verdict:
    """The three penalties agree, and untied weights degenerate (encoder shrinks, decoder grows) while tied do not."""
    agreement, untied, tied = m["agreement"], m["untied"], m["tied"]
    estimates, num_probes, penalty_weight, steps = (agreement["estimates"], agreement["num_probes"],
                                                    m["penalty_weight"], m["steps"])
    exact, closed = agreement["exact_jacfwd"], agreement["closed_form"]
    ok_agree = (agreement["closed_vs_exact_relative"] < 1e-5
                and all(abs(e["z_score"]) < 4 and 0.7 < e["variance_ratio_sample_to_exact"] < 1.4
                        for e in estimates.values()))
    ok_degenerate = (untied["penalty_end"] < 0.7 * tied["penalty_end"]
                     and untied["decoder_norm_end"] > 2 * untied["decoder_norm_start"]
                     and untied["encoder_norm_end"] < untied["encoder_norm_start"]
                     and tied["encoder_norm_end"] > tied["encoder_norm_start"]
                     and untied["penalty_end_over_half"] < 1.0)
    g, r = estimates["gaussian"], estimates["rademacher"]
    text = (f"Penalty on {agreement['examples']} test digits (tied model): exact {exact:.6f}, closed form "
            f"{closed:.6f} (relative difference {agreement['closed_vs_exact_relative']:.1e}), random projections "
            f"with {num_probes} probes {g['estimate']:.6f} +- {g['standard_error']:.6f} Gaussian "
            f"(z = {g['z_score']:+.2f}, "
            f"sample/exact variance {g['variance_ratio_sample_to_exact']:.2f}) and {r['estimate']:.6f} +- "
            f"{r['standard_error']:.6f} Rademacher (z = {r['z_score']:+.2f}). Degenerate solution, lambda = "
            f"{penalty_weight}, {steps} Adam steps: untied encoder norm {untied['encoder_norm_start']:.2f} -> "
            f"{untied['encoder_norm_end']:.2f}, decoder norm {untied['decoder_norm_start']:.2f} -> "
            f"{untied['decoder_norm_end']:.2f}, penalty {untied['penalty_start']:.3f} -> "
            f"{untied['penalty_end']:.3f} "
            f"(still falling: last half x{untied['penalty_end_over_half']:.2f}); tied encoder norm "
            f"{tied['encoder_norm_start']:.2f} -> {tied['encoder_norm_end']:.2f}, penalty "
            f"{tied['penalty_start']:.3f}"
            f" -> {tied['penalty_end']:.3f}.")
    return Verdict(bool(ok_agree and ok_degenerate), text)


def figures(m: dict) -> dict:
    """Penalty, reconstruction error and weight norms over training, untied against tied."""
    fig, (ax0, ax1) = figure(2)
    for name, color in (("untied", "C3"), ("tied", "C0")):
        h = m["history"][name]
        steps = np.asarray(h["step"])
        ax0.semilogy(steps, np.asarray(h["penalty"]), color=color, label=f"{name}: penalty ||J||_F^2")
        ax0.semilogy(steps, np.asarray(h["mse"]), color=color, ls=":", label=f"{name}: reconstruction MSE")
        ax1.semilogy(steps, np.asarray(h["encoder_norm"]), color=color, label=f"{name}: encoder ||W||_F")
        ax1.semilogy(steps, np.asarray(h["decoder_norm"]), color=color, ls="--", label=f"{name}: decoder ||V||_F")
    ax0.set_xlabel("Adam step")
    ax0.set_ylabel("value (log)")
    ax0.set_title("penalty and reconstruction")
    ax0.legend(fontsize=7)
    ax1.set_xlabel("Adam step")
    ax1.set_ylabel("Frobenius norm (log)")
    ax1.set_title("untied: encoder shrinks, decoder grows")
    ax1.legend(fontsize=7)
    return {"contractive_degenerate": (fig, "Contractive autoencoders with untied and tied weights: the untied penalty "
                                            "keeps falling while its decoder weights grow to compensate a shrinking "
                                            "encoder; tying the weights blocks this.")}


EXPERIMENT = experiment(
    "contractive-autoencoder",
    summary="sec. 14.2.3 / 14.7: contractive penalty exact = estimate = closed form; "
            "untied weights degenerate, tied do not",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
