"""A GAN on the 8x8 digits (Deep Learning sec. 20.10.4), judged by an independent classifier.

The generator is the differentiable generator of sec. 20.10.2 emitting pixel intensities sigmoid(g(z)) in (0, 1);
the discriminator an MLP; non-saturating loss, alternating Adam updates. Samples are judged by a scikit-learn
logistic-regression classifier trained on the real training digits: the fraction it labels confidently (max class
probability >= 0.9) and the spread over the ten classes (mode coverage), with real test digits and independent
pixels (each pixel drawn from its own training values) as the upper and lower references.

The data are the grey-level digits (pixels / 16), not the binarised ones: a generator with continuous outputs
facing exactly binary data loses to a discriminator that spots non-binary values. Measured with this architecture
on binarised digits (seed 0, 15,000 steps): mean D(G(z)) 0.001, and every sample one class (mode collapse).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.data import digits
from jaxdl.experiments._common import curves, image_grid, plot_data
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.gan import GAN, fit_gan

CLAIM = ("Deep Learning sec. 20.10.4: a GAN generator trained against a discriminator produces digit-like samples "
         "(8x8 digits, pixels / 16): "
         "an independent classifier labels them confidently far more often than independent-pixel samples (at least "
         "half-way to real digits) and finds every class (each >= 3% of samples).")
CONFIDENT = 0.9


def classifier(x_train, y_train):
    """Logistic regression on the real training digits (the judge; trained once, never on samples)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=3000).fit(np.asarray(x_train, np.float64), np.asarray(y_train))


def judge(clf, images) -> dict:
    probs = clf.predict_proba(np.asarray(images, np.float64))
    share = np.bincount(probs.argmax(1), minlength=10) / len(probs)
    return {"confident_fraction": float(np.mean(probs.max(1) >= CONFIDENT)), "class_shares": share.tolist(),
            "min_class_share": float(share.min())}


def nearest_distance(a, b) -> float:
    """Mean Euclidean distance from each row of ``a`` to its nearest row of ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None]
    return float(np.mean(np.sqrt(np.maximum(d2.min(1), 0.0))))


def _smoothed(values, window: int) -> np.ndarray:
    """Moving average of ``values`` over ``window`` steps, as plot data."""
    return plot_data(np.convolve(values, np.ones(window) / window, mode="valid"))


def measure(*, seed: int, quick: bool) -> dict:
    """Train the GAN on the digits and judge its samples, real test digits and independent pixels."""
    steps = 500 if quick else 10000
    data = digits()
    key = jax.random.key(seed)
    gan = GAN(16, [128, 128], 64, [128], output="bernoulli", activation="relu", rngs=nnx.Rngs(seed))
    trained, hist = fit_gan(gan, data.x_train, key=jax.random.fold_in(key, 1), steps=steps, batch_size=64,
                            learning_rate=5e-4, loss="non_saturating")
    samples = np.asarray(trained.sample(jax.random.fold_in(key, 2), 1000))
    x_train = np.asarray(data.x_train, np.float64)
    rows = np.asarray(jax.random.randint(jax.random.fold_in(key, 3), (1000, 64), 0, x_train.shape[0]))
    independent = x_train[rows, np.arange(64)]  # pixel j of sample i copied from a random training image
    clf = classifier(data.x_train, data.y_train)
    scores = {"GAN samples": judge(clf, samples), "real test digits": judge(clf, data.x_test),
              "independent pixels": judge(clf, independent)}
    test_accuracy = float(clf.score(np.asarray(data.x_test, np.float64), np.asarray(data.y_test)))
    near = {"GAN samples": nearest_distance(samples, data.x_train),
            "real test digits": nearest_distance(data.x_test, data.x_train),
            "independent pixels": nearest_distance(independent, data.x_train)}
    d_test = float(jnp.mean(jax.nn.sigmoid(trained.discriminator(data.x_test))))
    n = steps // 10
    window = max(1, steps // 100)
    return {"scores": scores, "classifier_test_accuracy": test_accuracy, "nearest_training_distance": near,
            "steps": steps, "d_real_last10": float(np.mean(hist.d_real[-n:])),
            "d_fake_last10": float(np.mean(hist.d_fake[-n:])), "d_test": d_test,
            "architecture": "G 16-128-128-64 (sigmoid), D 64-128-1, ReLU, Adam 5e-4 (beta1 0.5), batch 64, NS loss",
            "sample_grid": plot_data(samples[:100]), "smoothing_window": window,
            "d_smoothed": {"mean D(real)": _smoothed(hist.d_real, window),
                           "mean D(G(z))": _smoothed(hist.d_fake, window)}}


def verdict(m: dict) -> Verdict:
    """Confident fraction of GAN samples at least half-way to real digits, and every class >= 3% of samples."""
    scores, near, steps = m["scores"], m["nearest_training_distance"], m["steps"]
    conf = {k: v["confident_fraction"] for k, v in scores.items()}
    halfway = conf["independent pixels"] + 0.5 * (conf["real test digits"] - conf["independent pixels"])
    passed = conf["GAN samples"] >= halfway and scores["GAN samples"]["min_class_share"] >= 0.03
    text = (f"Classifier (test accuracy {m['classifier_test_accuracy']:.3f}) labels with probability >= {CONFIDENT}: "
            f"GAN samples {conf['GAN samples']:.3f}, real test digits {conf['real test digits']:.3f}, independent "
            f"pixels {conf['independent pixels']:.3f} (half-way mark {halfway:.3f}); smallest class share among GAN "
            f"samples {scores['GAN samples']['min_class_share']:.3f}. Mean distance to the nearest training "
            f"digit: GAN {near['GAN samples']:.2f}, test digits {near['real test digits']:.2f}, independent "
            f"pixels {near['independent pixels']:.2f}. Over the last 10% of {steps} steps mean D(fake) "
            f"{m['d_fake_last10']:.3f}, D(real) {m['d_real_last10']:.3f}; D on test digits {m['d_test']:.3f}.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """The sample grid and the smoothed discriminator outputs."""
    smooth = m["d_smoothed"]
    return {
        "gan_digits_samples": (image_grid(m["sample_grid"], rows=10, cols=10,
                                          title="GAN samples sigmoid(g(z)), z ~ N(0, I)"),
                               "100 generator samples (pixel intensities, white 0, black 1)."),
        "gan_digits_d": (curves(np.arange(1, len(smooth["mean D(real)"]) + 1), smooth, xlabel="generator step",
                                ylabel=f"discriminator output (moving average of {m['smoothing_window']})",
                                logx=True, hlines=[(0.5, "1/2")], title="Discriminator outputs during training"),
                         "Mean discriminator output on real and generated batches during training."),
    }


EXPERIMENT = experiment(
    "gan-digits", summary="sec. 20.10.4: GAN on 8x8 digits; samples judged by an independent classifier, sample grid",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
