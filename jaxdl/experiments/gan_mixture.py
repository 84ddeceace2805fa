"""GAN equilibrium on a 1-D Gaussian mixture (Deep Learning sec. 20.10.4).

At the equilibrium of the game p_g = p_data, the best discriminator is D = 1/2 everywhere, the discriminator loss
-v(G, D) is 2 log 2 and the non-saturating generator loss -E log D(G(z)) is log 2. We train a small GAN with
alternating Adam updates on 0.3 N(-2, 0.5^2) + 0.7 N(1.5, 0.7^2) and measure, over the last 10% of steps, the mean
D on real and generated samples and both losses; then the generated sample's moments against the exact ones.

Stated tolerances: |mean D - 1/2| <= 0.05 (real and generated); |D loss - 2 log 2| <= 0.05; |NS loss - log 2| <=
0.05; |sample mean - mu| <= 0.1 sigma; |sample std / sigma - 1| <= 0.1; weight of the left mode (mass below the
density's minimum between the modes) within 0.05 of 0.3; 1-Wasserstein distance to the target <= 0.1 sigma.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.data import gaussian_mixture
from jaxdl.experiments._common import curves, plot_data
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.gan import GAN, fit_gan

CLAIM = ("Deep Learning sec. 20.10.4: at the GAN equilibrium p_g = p_data the discriminator outputs 1/2, the "
         "discriminator loss is 2 log 2 and the non-saturating generator loss log 2; the generator's samples then "
         "have the target's moments.")
TOL = {"d": 0.05, "loss": 0.05, "mean_sigma": 0.1, "std_rel": 0.1, "weight": 0.05, "w1_sigma": 0.1}


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two equal-size 1-D samples: the mean distance between sorted values."""
    return float(np.mean(np.abs(np.sort(a) - np.sort(b))))


def evaluate_generator(samples: np.ndarray, reference: np.ndarray, mu: float, sigma: float, split: float) -> dict:
    """Moments and W1 of generated ``samples`` against the exact ``mu``, ``sigma`` and a reference sample."""
    return {"mean": float(samples.mean()), "std": float(samples.std()),
            "left_weight": float(np.mean(samples < split)),
            "mean_error_in_sigma": float(abs(samples.mean() - mu) / sigma),
            "std_relative_error": float(abs(samples.std() / sigma - 1)),
            "w1_in_sigma": wasserstein_1d(samples, reference) / sigma}


def _check(e: dict, tail: dict, weight: float) -> bool:
    return (abs(tail["d_real"] - 0.5) <= TOL["d"] and abs(tail["d_fake"] - 0.5) <= TOL["d"]
            and abs(tail["discriminator_loss"] - 2 * math.log(2)) <= TOL["loss"]
            and abs(tail["non_saturating_loss"] - math.log(2)) <= TOL["loss"]
            and e["mean_error_in_sigma"] <= TOL["mean_sigma"] and e["std_relative_error"] <= TOL["std_rel"]
            and abs(e["left_weight"] - weight) <= TOL["weight"] and e["w1_in_sigma"] <= TOL["w1_sigma"])


def measure(*, seed: int, quick: bool) -> dict:
    """Train the GAN from each seed; the last 10% of steps, the sample moments, and the last run's plot data."""
    steps, seeds = (1000, [seed]) if quick else (8000, [seed, seed + 1, seed + 2])
    target = gaussian_mixture([0.3, 0.7], [-2.0, 1.5], [0.5, 0.7])
    mu, sigma = float(target.mean()[0]), float(jnp.sqrt(target.variance()[0]))
    grid = jnp.linspace(-2.0, 1.5, 701)[:, None]
    split = float(grid[jnp.argmin(target.log_prob(grid)), 0])  # density minimum between the two modes
    runs, last = [], None
    for s in seeds:
        key = jax.random.key(s)
        x = target.sample(jax.random.fold_in(key, 1), 50_000)
        gan = GAN(4, [32, 32], 1, [32, 32], output="identity", rngs=nnx.Rngs(s))
        trained, hist = fit_gan(gan, x, key=jax.random.fold_in(key, 2), steps=steps, batch_size=256,
                                learning_rate=5e-4, loss="non_saturating")
        n = steps // 10
        tail = {name: float(np.mean(getattr(hist, name)[-n:])) for name in
                ("discriminator_loss", "non_saturating_loss", "minimax_loss", "d_real", "d_fake")}
        samples = np.asarray(trained.sample(jax.random.fold_in(key, 3), 100_000))[:, 0]
        reference = np.asarray(target.sample(jax.random.fold_in(key, 4), 100_000))[:, 0]
        e = evaluate_generator(samples, reference, mu, sigma, split)
        runs.append({"seed": s, "last_10_percent": tail, "samples": e, "passed": _check(e, tail, 0.3)})
        last = (trained, hist, samples)
    trained, hist, samples = last
    # Plot data of the last run: target density, histogram of its samples, final D(x), smoothed losses.
    xs = np.linspace(-4.5, 4.5, 600)
    density, edges = np.histogram(samples, bins=150, range=(-4.5, 4.5), density=True)
    window = max(1, steps // 100)
    smooth = {name: plot_data(np.convolve(getattr(hist, key), np.ones(window) / window, mode="valid"))
              for name, key in (("discriminator loss", "discriminator_loss"),
                                ("non-saturating generator loss", "non_saturating_loss"))}
    target_density = np.exp(np.asarray(target.log_prob(jnp.asarray(xs)[:, None])))
    d = np.asarray(jax.nn.sigmoid(trained.discriminator(jnp.asarray(xs, jnp.float32)[:, None]))).reshape(-1)
    plot = {"seed": seeds[-1], "x": xs, "target_density": plot_data(target_density), "discriminator": plot_data(d),
            "histogram_edges": edges, "histogram_density": plot_data(density),
            "smoothing_window": window, "smoothed_losses": smooth}
    return {"runs": runs, "tolerances": TOL, "steps": steps, "target": {"mean": mu, "std": sigma,
            "left_weight": 0.3, "mode_split": split, "description": "0.3 N(-2, 0.5^2) + 0.7 N(1.5, 0.7^2)"},
            "architecture": "G 4-32-32-1, D 1-32-32-1, ReLU, Adam 5e-4 (beta1 0.5), batch 256, NS loss",
            "plot": plot}


def verdict(m: dict) -> Verdict:
    """Every run within all stated tolerances of the equilibrium values and the target's moments."""
    runs, steps, target = m["runs"], m["steps"], m["target"]
    checks = [_check(r["samples"], r["last_10_percent"], target["left_weight"]) for r in runs]
    text = (f"Over the last 10% of {steps} steps (" + "; ".join(
        f"seed {r['seed']}: D(real) {r['last_10_percent']['d_real']:.3f}, D(fake) {r['last_10_percent']['d_fake']:.3f}"
        f", D loss {r['last_10_percent']['discriminator_loss']:.4f}, NS loss "
        f"{r['last_10_percent']['non_saturating_loss']:.4f}; samples mean {r['samples']['mean']:.3f}, std "
        f"{r['samples']['std']:.3f}, left weight {r['samples']['left_weight']:.3f}, W1 "
        f"{r['samples']['w1_in_sigma']:.3f} sigma" for r in runs)
        + f") vs 2 log 2 = {2 * math.log(2):.4f}, log 2 = {math.log(2):.4f}, target mean {target['mean']:.3f}, std "
        f"{target['std']:.3f}, left weight 0.3; {sum(checks)}/{len(runs)} runs within all tolerances.")
    return Verdict(all(checks), text)


def figures(m: dict) -> dict:
    """The last run's density histogram with the final D(x), and its smoothed losses."""
    import matplotlib.pyplot as plt

    plot = m["plot"]
    edges = np.asarray(plot["histogram_edges"])
    fig, ax = plt.subplots(figsize=(6.5, 4.0), layout="constrained")
    ax.hist(edges[:-1], bins=edges, weights=plot["histogram_density"], color="0.75", label="generated samples")
    ax.plot(plot["x"], plot["target_density"], color="C0", label="target density")
    ax.plot(plot["x"], plot["discriminator"], color="C3", label="D(x) at the end")
    ax.axhline(0.5, ls="--", color="C3", lw=0.8, label="D = 1/2")
    ax.set_xlabel("x")
    ax.set_ylabel("density / D(x)")
    ax.set_title("GAN on a 1-D Gaussian mixture")
    ax.legend(fontsize=8)
    smooth = plot["smoothed_losses"]
    fig2 = curves(np.arange(1, len(smooth["discriminator loss"]) + 1), smooth, xlabel="generator step",
                  ylabel=f"loss (nats, moving average of {plot['smoothing_window']})", logx=True,
                  hlines=[(2 * math.log(2), "2 log 2"), (math.log(2), "log 2")], title="GAN losses")
    return {"gan_mixture_density": (fig, "Target density, histogram of 100k generated samples and the final "
                                         "discriminator D(x), against 1/2."),
            "gan_mixture_losses": (fig2, "Discriminator and non-saturating generator losses (moving average) "
                                         "against their equilibrium values.")}


EXPERIMENT = experiment(
    "gan-mixture", summary="sec. 20.10.4: GAN on a 1-D mixture reaches D = 1/2, losses 2 log 2 and log 2, "
                           "target moments",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
