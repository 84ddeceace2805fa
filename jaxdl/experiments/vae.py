"""VAE on binarised digits (Deep Learning sec. 20.10.3): ELBO training, the analytic KL, importance-weighted bounds.

Measured: a 64-128-8 VAE (tanh, Gaussian encoder, Bernoulli decoder, Adam 1e-3, batch 32) trained for 200 epochs;
its test negative ELBO (ANCHORS.md: ~18.8 nats, target <= 19.5); the importance-weighted bound L_K for K = 1 ... 1000
(it must rise with K and stay above the ELBO; ANCHORS.md: -L_1000 ~17.5); the closed-form KL term against a
Monte-Carlo estimate; and a 2-D-latent VAE for the latent map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy.stats import norm

from jaxdl.data import digits_binarized
from jaxdl.experiments._common import curves, image_grid, plot_data
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.vae import VAE, diagonal_normal_log_prob, fit_vae, gaussian_kl, reparameterize

CLAIM = ("Deep Learning sec. 20.10.3: a VAE trained by maximising the ELBO (reparameterised samples, analytic KL) "
         "reaches a test negative ELBO <= 19.5 nats on binarised digits (64-128-8, 200 epochs); the closed-form KL "
         "equals its Monte-Carlo estimate; ELBO <= L_K, and the importance-weighted bound L_K rises with K.")
TARGET = 19.5
ANCHOR_ELBO, ANCHOR_IWAE = 18.8, 17.5


def evaluate(model: VAE, key: jax.Array, x: jax.Array, ks: tuple[int, ...], *, elbo_samples: int,
             kl_samples: int) -> dict:
    """Everything the claim needs from a trained VAE in one jitted call (one compilation, not one per K).

    ELBO: analytic KL, ``elbo_samples`` reparameterised z per example. L_K for each K in ``ks`` from one matrix of
    ``max(ks)`` importance log-weights per example, averaged over its ``max(ks) // K`` disjoint groups of K (an
    unbiased estimate of E[L_K] with less noise than one group). KL: closed form against the Monte-Carlo mean of
    log q(z|x) - log p(z) over ``kl_samples`` draws, with its standard error.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    k_max, chunk = max(ks), min(max(ks), 100)
    if k_max % chunk or any(k_max % k for k in ks):
        raise ValueError(f"ks={ks} is invalid; expected divisors of max(ks) with max(ks) a multiple of {chunk}.")

    @jax.jit
    def run(p, key, x):
        m = nnx.merge(graphdef, p, rest)
        k_elbo, k_iw, k_kl = jax.random.split(key, 3)
        elbo = jnp.mean(m.elbo(k_elbo, x, elbo_samples))
        log_w = jax.lax.map(lambda k: m.log_weights(k, x, chunk), jax.random.split(k_iw, k_max // chunk))
        log_w = log_w.reshape(k_max, x.shape[0])
        iw = [jnp.mean(jax.nn.logsumexp(log_w.reshape(k_max // k, k, -1), axis=1) - np.log(k)) for k in ks]
        mean, log_var = m.encode(x)
        z = reparameterize(k_kl, mean, log_var, kl_samples)
        log_prior = diagonal_normal_log_prob(z, jnp.zeros_like(z), jnp.zeros_like(z))
        kl_mc = diagonal_normal_log_prob(z, mean, log_var) - log_prior
        return elbo, jnp.stack(iw), jnp.mean(gaussian_kl(mean, log_var)), kl_mc

    elbo, iw, kl_analytic, kl_mc = run(params, key, x)
    mc = float(jnp.mean(kl_mc))
    # The KL of each example is estimated from its own S draws; the SE of the test-set mean of (MC - exact) is
    # sqrt(mean_i var_i / (S n)), with var_i the spread of example i's draws around their own mean.
    se = float(jnp.std(kl_mc - jnp.mean(kl_mc, axis=0)) / np.sqrt(kl_mc.size))
    kl = {"analytic": float(kl_analytic), "monte_carlo": mc, "standard_error": se,
          "z_score": (mc - float(kl_analytic)) / se}
    return {"elbo": float(elbo), **{f"L_{k}": float(v) for k, v in zip(ks, iw)}, "kl": kl}


def latent_map(model: VAE, x, grid: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Test means of q(z|x) ``(n, 2)``, and the decoder means ``(grid * grid, 64)`` over a grid of prior quantiles
    (z1 across, z2 up)."""
    mean = np.asarray(model.encode(x)[0])
    q = norm.ppf(np.linspace(0.04, 0.96, grid))
    zz = np.array([[a, b] for b in q[::-1] for a in q], np.float32)
    return mean, np.asarray(model.decoder.mean(jnp.asarray(zz)))


def _ordering(negative_elbo: float, negative_iwae: list[float]) -> tuple[bool, bool]:
    """Whether L_K rises with K (to 1e-3), and whether the ELBO is at most the last L_K."""
    iw = [-v for v in negative_iwae]
    return all(a <= c + 1e-3 for a, c in zip(iw[:-1], iw[1:])), -negative_elbo <= iw[-1]


def measure(*, seed: int, quick: bool) -> dict:
    """Train the VAE, evaluate its bounds and KL; samples, reconstructions and (full runs) a 2-D-latent VAE."""
    epochs, ks, kl_samples, elbo_samples = (5, (1, 10, 100), 100, 10) if quick else (200, (1, 10, 100, 1000), 1000, 100)
    data = digits_binarized()
    key = jax.random.key(seed)
    k_fit, k_fit2, k_eval, k_sample = jax.random.split(key, 4)
    vae = VAE(64, [128], 8, activation="tanh", rngs=nnx.Rngs(seed))
    model, hist = fit_vae(vae, data.x_train, key=k_fit, epochs=epochs, batch_size=32, learning_rate=1e-3,
                          x_test=data.x_test)
    b = evaluate(model, k_eval, data.x_test, ks, elbo_samples=elbo_samples, kl_samples=kl_samples)
    kl = b.pop("kl")
    neg = {k: -v for k, v in b.items()}
    rises, elbo_below = _ordering(neg["elbo"], [neg[f"L_{k}"] for k in ks])

    latent_metrics = {}
    if not quick:  # the 2-D-latent VAE is a second model to compile and train: full runs only
        vae2 = VAE(64, [128], 2, activation="tanh", rngs=nnx.Rngs(seed + 1))
        model2, hist2 = fit_vae(vae2, data.x_train, key=k_fit2, epochs=epochs, batch_size=32, x_test=data.x_test)
        means, decoded = latent_map(model2, data.x_test)
        latent_metrics = {"latent2_test_negative_elbo": float(hist2.test_negative_elbo[-1]),
                          "latent2_plot": {"posterior_means": plot_data(means), "labels": np.asarray(data.y_test),
                                           "grid": 12, "decoded": plot_data(decoded)}}

    reconstructions = np.concatenate([np.asarray(data.x_test[:12]), np.asarray(model.reconstruct(data.x_test[:12]))])
    return {
        "architecture": "64-128-8 tanh, Gaussian encoder, Bernoulli decoder, Adam 1e-3, batch 32",
        "epochs": epochs,
        "test_negative_elbo": neg["elbo"],
        "test_negative_iwae": {f"K={k}": neg[f"L_{k}"] for k in ks},
        "train_negative_elbo_final": float(hist.train_negative_elbo[-1]),
        "kl_check": kl,
        "iwae_rises_with_K": rises,
        "elbo_below_iwae": elbo_below,
        "anchors": {"negative_elbo": ANCHOR_ELBO, "negative_iwae_1000": ANCHOR_IWAE, "target": TARGET},
        **latent_metrics,
        "history": {"train": hist.train_negative_elbo.tolist(), "test": hist.test_negative_elbo.tolist()},
        "ks": list(ks),
        "samples": plot_data(model.decoder.sample(k_sample, 100, noise=False)),
        "reconstructions": plot_data(reconstructions),
    }


def verdict(m: dict) -> Verdict:
    """Test -ELBO <= the target, ELBO <= L_K rising with K, and the analytic KL within 4 SE of Monte Carlo."""
    ks, kl, neg_elbo = m["ks"], m["kl_check"], m["test_negative_elbo"]
    neg_iwae = [m["test_negative_iwae"][f"K={k}"] for k in ks]
    rises, elbo_below = _ordering(neg_elbo, neg_iwae)
    passed = neg_elbo <= TARGET and rises and elbo_below and abs(kl["z_score"]) < 4.0
    text = (f"After {m['epochs']} epochs the test negative ELBO is {neg_elbo:.2f} nats (target <= {TARGET}, anchor "
            f"~{ANCHOR_ELBO}); -L_K = " + ", ".join(f"{v:.2f} (K={k})" for k, v in zip(ks, neg_iwae))
            + f" {'falls' if rises else 'does NOT fall'} with K (anchor -L_1000 ~{ANCHOR_IWAE}). "
            f"Analytic KL {kl['analytic']:.4f} vs Monte Carlo {kl['monte_carlo']:.4f} +- {kl['standard_error']:.4f} "
            f"(z = {kl['z_score']:.2f}).")
    return Verdict(bool(passed), text)


def _latent_figures(latent: dict) -> dict:
    """Test posterior means coloured by digit, and the decoder means over the grid of prior quantiles."""
    import matplotlib.pyplot as plt

    mean, grid = np.asarray(latent["posterior_means"]), latent["grid"]
    fig, ax = plt.subplots(figsize=(6.0, 5.0), layout="constrained")
    sc = ax.scatter(mean[:, 0], mean[:, 1], c=np.asarray(latent["labels"]), cmap="tab10", s=8)
    fig.colorbar(sc, ax=ax, label="digit label")
    ax.set_xlabel("$z_1$ (posterior mean, prior std units)")
    ax.set_ylabel("$z_2$ (posterior mean, prior std units)")
    ax.set_title("2-D latent space: test images encoded")
    return {
        "vae_latent_scatter": (fig, "Posterior means of a 2-D-latent VAE, coloured by label (labels unused in "
                                    "training)."),
        "vae_latent_map": (image_grid(latent["decoded"], rows=grid, cols=grid, title="2-D latent map: decoder means "
                                      "on a grid of prior quantiles (z1 across, z2 up)"),
                           "Decoder means of the 2-D-latent VAE over a 12x12 grid of prior quantiles."),
    }


def figures(m: dict) -> dict:
    """Training curves, the bounds against K, samples, reconstructions and (full runs) the 2-D latent space."""
    ks, neg_iwae = m["ks"], [m["test_negative_iwae"][f"K={k}"] for k in m["ks"]]
    history = m["history"]
    return {
        "vae_curves": (curves(np.arange(1, m["epochs"] + 1), {"train": history["train"], "test": history["test"]},
                              xlabel="epoch", ylabel="negative ELBO (nats per image)", logy=True,
                              title="VAE 64-128-8 on binarised digits",
                              hlines=[(TARGET, f"target {TARGET}"), (ANCHOR_ELBO, f"anchor {ANCHOR_ELBO}")]),
                       "Negative ELBO per epoch (log scale), train and test, with the target and the ANCHORS.md "
                       "value."),
        "vae_iwae": (curves(np.array(ks), {"-L_K (test)": neg_iwae}, xlabel="K (importance samples)",
                            ylabel="negative bound (nats per image)", logx=True, title="Importance-weighted bounds",
                            hlines=[(m["test_negative_elbo"], "negative ELBO")]),
                     "Test -L_K against K (log scale): the importance-weighted bound tightens as K grows."),
        "vae_samples": (image_grid(m["samples"], rows=10, cols=10, title="VAE samples: decoder means at z ~ N(0, I)"),
                        "Decoder means sigmoid(g(z)) for 100 prior draws (white 0, black 1)."),
        "vae_reconstructions": (image_grid(m["reconstructions"], rows=2, cols=12,
                                           title="Test images (top) and reconstructions (bottom)",
                                           row_labels=("data", "recon.")),
                                "Test digits and the decoder mean at their posterior mean."),
        **(_latent_figures(m["latent2_plot"]) if "latent2_plot" in m else {}),
    }


EXPERIMENT = experiment(
    "vae-digits",
    summary="sec. 20.10.3: VAE on binarised digits, test -ELBO <= 19.5 nats; analytic KL; L_K rises with K",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
