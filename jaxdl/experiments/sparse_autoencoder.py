"""Sparse autoencoders (Deep Learning sec. 14.2.1): an overcomplete code (100 units for 64 pixels) with a sparsity
penalty ``Omega(h)`` added to the reconstruction error learns codes with few active units.

Two penalties, each against the same architecture without it: L1 on a ReLU code (exact zeros) and the KL divergence
to a target rate of 0.05 on a sigmoid code. Measured on the digits test split: the fraction of inactive code entries,
the mean activation, and the reconstruction error; the learned features (decoder columns) are plotted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import digits
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.train import train_scan
from jaxdl.models import Autoencoder, autoencoder_split, reconstruction_error, sparsity_penalty

CLAIM = ("Deep Learning sec. 14.2.1: an overcomplete autoencoder trained with a sparsity penalty Omega(h) (L1 or a KL "
         "divergence to a small target rate) learns sparse codes while still reconstructing its input.")

CODE_SIZE = 100
TARGET_RATE = 0.05


def train_sparse(x, activation: str, kind: str, weight: float, *, steps: int, seed: int):
    """An overcomplete ``64 -> 100 -> 64`` autoencoder with ``weight * sparsity_penalty(h, kind)``, Adam."""
    fns, params = autoencoder_split(Autoencoder(x.shape[1], CODE_SIZE, encoder_activation=activation,
                                                rngs=nnx.Rngs(seed)))

    def loss_fn(p, xb):
        h = fns.encode(p, xb)
        return reconstruction_error(xb, fns.decode(p, h)) + weight * sparsity_penalty(h, kind, target=TARGET_RATE)

    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.1))
    params, _ = jax.jit(lambda p, xb: train_scan(loss_fn, optimizer, p, xb, steps=steps))(params, x)
    return fns, params


def measure(*, seed: int, quick: bool) -> dict:
    """Four overcomplete autoencoders (ReLU/sigmoid, with and without a sparsity penalty) on the digits test split."""
    steps = 400 if quick else 5000
    data = digits(seed=seed)
    settings = {
        "relu": ("relu", "l1", 0.0),
        "relu + L1": ("relu", "l1", 2e-3),
        "sigmoid": ("sigmoid", "kl", 0.0),
        "sigmoid + KL": ("sigmoid", "kl", 3e-3),
    }
    results, histograms, features = {}, {}, {}
    for name, (act, kind, weight) in settings.items():
        fns, params = train_sparse(data.x_train, act, kind, weight, steps=steps, seed=seed)
        h = fns.encode(params, data.x_test)
        # Inactive: exactly zero for a ReLU code, below the target rate for a sigmoid code.
        inactive = jnp.mean(h == 0) if act == "relu" else jnp.mean(h < TARGET_RATE)
        results[name] = {
            "penalty": kind if weight else "none", "weight": weight,
            "test_mse": float(reconstruction_error(data.x_test, fns.decode(params, h))),
            "mean_activation": float(jnp.mean(h)),
            "inactive_fraction": float(inactive),
            "active_units_per_example": float(jnp.mean(jnp.sum(h > (0 if act == "relu" else TARGET_RATE), 1))),
        }
        code = np.asarray(h).ravel()
        counts, edges = np.histogram(code, bins=50, range=(0, max(1.0, float(code.max()))))
        histograms[name] = {"counts": counts, "edges": edges}
        if weight:
            features[name] = np.asarray(nnx.to_pure_dict(params)["decoder"][0]["kernel"])  # (code, 64): row j
    # Reference error: predicting the mean training image for every test image.
    mean_mse = float(reconstruction_error(data.x_test, jnp.broadcast_to(data.x_train.mean(0), data.x_test.shape)))
    return {"code_size": CODE_SIZE, "target_rate": TARGET_RATE, "steps": steps, "mean_image_mse": mean_mse,
            "results": results, "code_histograms": histograms, "decoder_features": features}


def verdict(m: dict) -> Verdict:
    """Both penalties leave far more inactive code entries and half the mean activation, still reconstructing."""
    results, mean_mse = m["results"], m["mean_image_mse"]
    l1, base_r = results["relu + L1"], results["relu"]
    kl, base_s = results["sigmoid + KL"], results["sigmoid"]
    passed = (l1["inactive_fraction"] > base_r["inactive_fraction"] + 0.1
              and l1["mean_activation"] < 0.5 * base_r["mean_activation"]
              and kl["inactive_fraction"] > base_s["inactive_fraction"] + 0.1
              and kl["mean_activation"] < 0.5 * base_s["mean_activation"]
              and max(l1["test_mse"], kl["test_mse"]) < 0.5 * mean_mse)
    text = (f"Code of {m['code_size']} units for 64 pixels, digits test split. ReLU code: exact zeros "
            f"{base_r['inactive_fraction']:.1%} without penalty, {l1['inactive_fraction']:.1%} with L1; mean "
            f"activation {base_r['mean_activation']:.3f} -> {l1['mean_activation']:.3f}; test MSE "
            f"{base_r['test_mse']:.4f} -> {l1['test_mse']:.4f}. Sigmoid code: entries below {m['target_rate']} "
            f"{base_s['inactive_fraction']:.1%} -> {kl['inactive_fraction']:.1%} with KL (target rate "
            f"{m['target_rate']}); mean activation {base_s['mean_activation']:.3f} -> {kl['mean_activation']:.3f}; "
            f"test MSE {base_s['test_mse']:.4f} -> {kl['test_mse']:.4f} (predicting the mean image: {mean_mse:.4f}).")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Histograms of the code values with and without the penalty, and the learned decoder features."""
    fig, axes = figure(2)
    for ax, names in zip(axes, (("relu", "relu + L1"), ("sigmoid", "sigmoid + KL"))):
        for name in names:
            hist = m["code_histograms"][name]
            edges = np.asarray(hist["edges"])
            ax.hist(edges[:-1], bins=edges, weights=np.asarray(hist["counts"]), alpha=0.6, label=name, log=True)
        ax.set_xlabel("code value h_j")
        ax.set_ylabel("count (log)")
        ax.legend()
    axes[0].set_title("ReLU code: L1 penalty")
    axes[1].set_title("sigmoid code: KL penalty")
    fig2, feats = figure(2, width=4.5, height=4.5)
    for ax, name in zip(feats, ("relu + L1", "sigmoid + KL")):
        w = np.asarray(m["decoder_features"][name])  # (code, 64): feature j is row j
        tiles = np.zeros((10 * 9, 10 * 9))
        for j in range(min(100, w.shape[0])):
            r, c = divmod(j, 10)
            f = w[j].reshape(8, 8)
            tiles[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] = f / (np.abs(f).max() + 1e-12)
        ax.imshow(tiles, cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_title(f"decoder features, {name}")
        ax.axis("off")
    return {"sparse_codes": (fig, "Distribution of code values on the test set with and without the sparsity "
                                  "penalty."),
            "sparse_features": (fig2, "The 100 learned features (decoder rows as 8x8 images, each scaled to [-1, 1]).")}


EXPERIMENT = experiment(
    "sparse-autoencoder",
    summary="sec. 14.2.1: an L1 or KL sparsity penalty gives sparse overcomplete codes on digits",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
