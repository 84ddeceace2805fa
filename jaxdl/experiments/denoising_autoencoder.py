"""Denoising autoencoders (Deep Learning sec. 14.2.2, 14.5): trained to map a corrupted ``x~ ~ C(x~ | x)`` back to the
clean ``x``, they cannot learn the identity even when overcomplete, and ``r(x) - x`` points towards the data
manifold.

Measured: on digits with Gaussian corruption, the error of the denoising autoencoder's output against the clean test
images, compared with the corrupted input itself and with the same overcomplete autoencoder trained without
corruption; on points of a circle, the angle between ``r(x) - x`` and the direction to the circle (fig. 14.4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import circle, digits
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models import Autoencoder, autoencoder_split, reconstruction_error
from jaxdl.train import train_scan

CLAIM = ("Deep Learning sec. 14.2.2 and 14.5: a denoising autoencoder trained on corrupted inputs reconstructs the "
         "clean inputs (better than the corrupted input and than an ordinary autoencoder), and r(x) - x points "
         "towards the data manifold.")


def train_denoising(model: Autoencoder, x: jax.Array, *, key: jax.Array, steps: int, learning_rate: float = 3e-3):
    """Full-batch Adam on ``||g(f(x~)) - x||^2`` with a fresh corruption every step (no corruption: an ordinary
    autoencoder). Returns ``(fns, params)``."""
    fns, params = autoencoder_split(model)
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05))

    def loss_fn(p, xb, k):
        return reconstruction_error(xb, fns.apply(p, xb, key=k, train=True))

    train = jax.jit(lambda p, xb, k: train_scan(loss_fn, optimizer, p, xb, steps=steps, key=k)[0])
    return fns, train(params, x, key)


def measure(*, seed: int, quick: bool) -> dict:
    """Denoising and ordinary autoencoders on corrupted digits, and a DAE's r(x) - x around a circle."""
    steps = 400 if quick else 5000
    sigma = 0.3
    key = jax.random.PRNGKey(seed)
    k_dae, k_ae, k_test, k_circle = jax.random.split(key, 4)
    data = digits(seed=seed)

    def model(corruption):
        return Autoencoder(64, 100, encoder_activation="sigmoid", decoder_activation="sigmoid",
                           corruption=corruption, noise_level=sigma if corruption != "none" else 0.0,
                           rngs=nnx.Rngs(seed))

    dae_fns, dae = train_denoising(model("gaussian"), data.x_train, key=k_dae, steps=steps)
    ae_fns, ae = train_denoising(model("none"), data.x_train, key=k_ae, steps=steps)
    noisy = data.x_test + sigma * jax.random.normal(k_test, data.x_test.shape)
    digits_metrics = {
        "sigma": sigma,
        "corrupted_input_mse": float(reconstruction_error(data.x_test, noisy)),
        "dae_mse": float(reconstruction_error(data.x_test, dae_fns.apply(dae, noisy))),
        "ae_mse": float(reconstruction_error(data.x_test, ae_fns.apply(ae, noisy))),
        "dae_clean_input_mse": float(reconstruction_error(data.x_test, dae_fns.apply(dae, data.x_test))),
        "ae_clean_input_mse": float(reconstruction_error(data.x_test, ae_fns.apply(ae, data.x_test))),
    }

    # A circle in the plane: the DAE's r(x) - x against the direction to the nearest point of the circle.
    points = circle(512, seed=seed)
    c_model = Autoencoder(2, 64, hidden=(64,), encoder_activation="tanh", corruption="gaussian", noise_level=0.2,
                          rngs=nnx.Rngs(seed + 1))
    c_fns, c_params = train_denoising(c_model, points, key=k_circle, steps=steps, learning_rate=1e-2)
    grid = np.stack(np.meshgrid(np.linspace(-1.6, 1.6, 25), np.linspace(-1.6, 1.6, 25)), -1).reshape(-1, 2)
    radius = np.linalg.norm(grid, axis=1)
    off = grid[(np.abs(radius - 1.0) > 0.1) & (np.abs(radius - 1.0) < 0.5)]
    field = np.asarray(c_fns.apply(c_params, jnp.asarray(off, jnp.float32))) - off
    r_off = np.linalg.norm(off, axis=1, keepdims=True)
    towards = off / r_off * (1.0 - r_off)  # from x to the nearest point of the unit circle
    cosines = np.sum(field * towards, 1) / (np.linalg.norm(field, axis=1) * np.linalg.norm(towards, axis=1) + 1e-12)
    after = np.abs(np.linalg.norm(off + field, axis=1) - 1.0)
    circle_metrics = {"points_off_manifold": int(off.shape[0]), "mean_cosine_to_manifold": float(cosines.mean()),
                      "fraction_cosine_above_0.9": float(np.mean(cosines > 0.9)),
                      "mean_distance_before": float(np.mean(np.abs(r_off[:, 0] - 1.0))),
                      "mean_distance_after": float(after.mean())}

    example = {"clean": data.x_test[0], "corrupted": noisy[0], "denoising AE": dae_fns.apply(dae, noisy)[0],
               "ordinary AE": ae_fns.apply(ae, noisy)[0]}
    return {"steps": steps, "digits": digits_metrics, "circle": circle_metrics,
            "example_digit": {name: np.asarray(img).reshape(8, 8) for name, img in example.items()},
            "vector_field": {"x": off, "r_minus_x": field, "training_points": np.asarray(points)}}


def verdict(m: dict) -> Verdict:
    """The DAE beats the corrupted input and the ordinary AE, and r(x) - x points to the circle and moves closer."""
    d, c = m["digits"], m["circle"]
    passed = (d["dae_mse"] < 0.5 * d["corrupted_input_mse"] and d["dae_mse"] < d["ae_mse"]
              and c["mean_cosine_to_manifold"] > 0.9 and c["mean_distance_after"] < c["mean_distance_before"])
    text = (f"Digits, Gaussian corruption sigma={d['sigma']}: error against the clean test images {d['dae_mse']:.4f} "
            f"for the denoising autoencoder, {d['corrupted_input_mse']:.4f} for the corrupted input itself and "
            f"{d['ae_mse']:.4f} for the same autoencoder trained without corruption. Circle: r(x) - x at "
            f"{c['points_off_manifold']} off-manifold points has mean cosine {c['mean_cosine_to_manifold']:.3f} "
            f"with the direction to the circle ({c['fraction_cosine_above_0.9']:.0%} above 0.9); mean distance to "
            f"the circle {c['mean_distance_before']:.3f} -> {c['mean_distance_after']:.3f}.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """A digit through both autoencoders, and the DAE's vector field around the circle."""
    fig, axes = figure(4, width=2.4, height=2.6)
    for ax, (title, img) in zip(axes, m["example_digit"].items()):
        ax.imshow(np.asarray(img), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig2, (ax,) = figure(1, width=5.0, height=5.0)
    field = m["vector_field"]
    p, off, r = (np.asarray(field[k]) for k in ("training_points", "x", "r_minus_x"))
    ax.plot(p[:, 0], p[:, 1], ".", color="0.6", ms=3, label="training data (circle)")
    show = slice(None, None, 3)  # every third grid point, for legibility
    ax.quiver(off[show, 0], off[show, 1], r[show, 0], r[show, 1], angles="xy", scale_units="xy", scale=1,
              color="C0", width=0.004, label="r(x) - x (drawn to scale)")
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title("denoising autoencoder vector field")
    ax.legend(loc="upper right", fontsize=8)
    return {"denoising_digits": (fig, "A test digit, its corruption, and the two autoencoders' outputs."),
            "denoising_vector_field": (fig2, "r(x) - x of a denoising autoencoder trained on a circle: the arrows "
                                             "point back to the manifold (Deep Learning fig. 14.4).")}


EXPERIMENT = experiment(
    "denoising-autoencoder",
    summary="sec. 14.2.2 / 14.5: a DAE restores clean digits; r(x) - x points to the manifold",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
