"""Minimax vs non-saturating generator loss when the discriminator wins (Deep Learning sec. 20.10.4).

Setting: a 1-D two-component Gaussian mixture far from where a freshly initialised generator puts its samples, so a
discriminator trained against the frozen generator learns to reject them confidently (D(G(z)) -> 0). At checkpoints
of that discriminator training we measure, by autodiff, the generator-loss gradient with respect to each sample's
logit l (closed forms: -D for minimax, -(1 - D) for non-saturating; their ratio D / (1 - D)) and the norms of the
gradients with respect to the generator's parameters.
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
import optax
from flax import nnx

from jaxdl.data import gaussian_mixture
from jaxdl.experiments._common import curves
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.gan import GAN, discriminator_loss, generator_loss

CLAIM = ("Deep Learning sec. 20.10.4: when the discriminator confidently rejects generated samples, the minimax "
         "generator loss log(1 - D(G(z))) saturates: its gradient with respect to the logit is -D, which vanishes, "
         "while the non-saturating loss -log D(G(z)) keeps a gradient -(1 - D) of order one.")


@partial(jax.jit, static_argnums=0, static_argnames=("steps", "batch_size"))
def _train_discriminator(graphdef, params, key, x, *, steps: int, batch_size: int):
    """``steps`` Adam updates (1e-3) of D alone against the frozen generator; returns the new parameters."""
    opt = optax.adam(1e-3)
    dp = params["discriminator"]

    def step(carry, k):
        dp, s = carry
        kr, kz = jax.random.split(k)
        xr = x[jax.random.randint(kr, (batch_size,), 0, x.shape[0])]

        def loss(p):
            m = nnx.merge(graphdef, nnx.State({"generator": params["generator"], "discriminator": p}))
            return discriminator_loss(m.discriminator(xr), m.discriminator(m.sample(kz, batch_size)))

        updates, s = opt.update(jax.grad(loss)(dp), s, dp)
        return (optax.apply_updates(dp, updates), s), None

    (dp, _), _ = jax.lax.scan(step, (dp, opt.init(dp)), jax.random.split(key, steps))
    return nnx.State({"generator": params["generator"], "discriminator": dp})


@partial(jax.jit, static_argnums=0, static_argnames="num_samples")
def _measure(graphdef, params, key, *, num_samples: int):
    """Per-sample D, autodiff logit gradients of both losses, and generator-parameter gradient norms."""

    def logits_of(gp):
        m = nnx.merge(graphdef, nnx.State({"generator": gp, "discriminator": params["discriminator"]}))
        return m.discriminator(m.sample(key, num_samples))

    logits = logits_of(params["generator"])
    # d(mean loss)/d(l_i) times the batch size is the per-sample derivative of the loss term.
    g_mm = jax.grad(lambda l: generator_loss(l, "minimax"))(logits) * num_samples
    g_ns = jax.grad(lambda l: generator_loss(l, "non_saturating"))(logits) * num_samples
    norms = [optax.global_norm(jax.grad(lambda gp, kind=kind: generator_loss(logits_of(gp), kind))(
        params["generator"])) for kind in ("minimax", "non_saturating")]
    return jax.nn.sigmoid(logits), g_mm, g_ns, norms[0], norms[1]


def measure(*, seed: int, quick: bool) -> dict:
    """Train D alone against a frozen generator; at each checkpoint measure D(G(z)) and both losses' gradients."""
    checkpoints = [0, 10, 30, 100, 300] if quick else [0, 10, 30, 100, 300, 1000, 3000]
    target = gaussian_mixture([0.3, 0.7], [3.0, 6.0], [0.5, 0.7])
    key = jax.random.key(seed)
    x = target.sample(jax.random.fold_in(key, 1), 20_000)
    gan = GAN(4, [32, 32], 1, [32, 32], output="identity", rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(gan, nnx.Param)
    rows, done = [], 0
    for c in checkpoints:
        while done < c:  # blocks of 10 steps: one compilation serves every checkpoint
            params = _train_discriminator(graphdef, params, jax.random.fold_in(key, done), x, steps=10,
                                          batch_size=256)
            done += 10
        d, g_mm, g_ns, n_mm, n_ns = _measure(graphdef, params, jax.random.fold_in(key, 10**6), num_samples=4096)
        d, g_mm, g_ns = (np.asarray(a, np.float64) for a in (d, g_mm, g_ns))
        rows.append({"discriminator_steps": c, "mean_d_fake": float(d.mean()),
                     "logit_grad_error_minimax": float(np.max(np.abs(g_mm + d))),
                     "logit_grad_error_non_saturating": float(np.max(np.abs(g_ns + (1 - d)))),
                     "mean_abs_logit_grad_minimax": float(np.abs(g_mm).mean()),
                     "mean_abs_logit_grad_non_saturating": float(np.abs(g_ns).mean()),
                     "logit_grad_ratio": float(np.abs(g_mm).mean() / np.abs(g_ns).mean()),
                     "closed_form_ratio": float(d.mean() / (1 - d).mean()),
                     "param_grad_norm_minimax": float(n_mm), "param_grad_norm_non_saturating": float(n_ns),
                     "param_grad_ratio": float(n_mm / n_ns)})
    return {"checkpoints": rows, "target": "0.3 N(3, 0.5^2) + 0.7 N(6, 0.7^2)",
            "architecture": "G 4-32-32-1, D 1-32-32-1, ReLU; D trained alone with Adam 1e-3, batch 256"}


def verdict(m: dict) -> Verdict:
    """At the last checkpoint D rejects the samples, and the minimax gradients are < 1% of the non-saturating ones."""
    rows = m["checkpoints"]
    last = rows[-1]
    closed_form_ok = all(r["logit_grad_error_minimax"] < 1e-5 and r["logit_grad_error_non_saturating"] < 1e-5
                         for r in rows)
    confident = last["mean_d_fake"] < 0.01
    passed = (closed_form_ok and confident and last["logit_grad_ratio"] < 0.01 and last["param_grad_ratio"] < 0.01
              and last["mean_abs_logit_grad_non_saturating"] > 0.99)
    text = (f"After {last['discriminator_steps']} discriminator steps mean D(G(z)) = {last['mean_d_fake']:.2e}: "
            f"mean |dJ/dl| minimax {last['mean_abs_logit_grad_minimax']:.2e} vs non-saturating "
            f"{last['mean_abs_logit_grad_non_saturating']:.4f} (ratio {last['logit_grad_ratio']:.2e}, closed form "
            f"D/(1-D) {last['closed_form_ratio']:.2e}); generator-parameter gradient norms "
            f"{last['param_grad_norm_minimax']:.2e} vs {last['param_grad_norm_non_saturating']:.2e} (ratio "
            f"{last['param_grad_ratio']:.2e}). Autodiff logit gradients equal -D and -(1-D) to "
            f"{max(max(r['logit_grad_error_minimax'], r['logit_grad_error_non_saturating']) for r in rows):.1e}.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """The closed-form logit gradients with the measured means, and the parameter-gradient norms per checkpoint."""
    rows = m["checkpoints"]
    d_grid = np.logspace(-5, np.log10(0.999), 200)  # the closed forms |dJ/dl| = D and 1 - D, drawn over D
    fig = curves(d_grid, {"minimax |dJ/dl| = D": d_grid, "non-saturating |dJ/dl| = 1 - D": 1 - d_grid},
                 xlabel="D(G(z)) (discriminator output on a generated sample)",
                 ylabel="|d loss / d logit| (log scale)", logx=True, logy=True,
                 title="Generator loss gradient with respect to the logit")
    ax = fig.axes[0]
    dm = [r["mean_d_fake"] for r in rows]
    ax.scatter(dm, [r["mean_abs_logit_grad_minimax"] for r in rows], color="C0", zorder=3, label="measured, minimax")
    ax.scatter(dm, [r["mean_abs_logit_grad_non_saturating"] for r in rows], color="C1", zorder=3,
               label="measured, non-saturating")
    ax.legend(fontsize=8)
    steps = np.array([max(r["discriminator_steps"], 1) for r in rows])
    fig2 = curves(steps, {"minimax": [r["param_grad_norm_minimax"] for r in rows],
                          "non-saturating": [r["param_grad_norm_non_saturating"] for r in rows],
                          "mean D(G(z))": [r["mean_d_fake"] for r in rows]},
                  xlabel="discriminator training steps (0 plotted at 1)",
                  ylabel="generator gradient norm / mean D (log scale)", logx=True, logy=True,
                  title="Generator gradients as the discriminator wins")
    return {"gan_logit_gradient": (fig, "Closed-form |dJ/dl| for both generator losses against D, with the measured "
                                        "means at each discriminator checkpoint."),
            "gan_param_gradient": (fig2, "Norm of the generator-parameter gradient of each loss, and mean D(G(z)), "
                                         "as the discriminator trains against a frozen generator.")}


EXPERIMENT = experiment(
    "gan-saturation", summary="sec. 20.10.4: minimax generator gradient vanishes (ratio D/(1-D)) when D rejects "
                              "samples; the non-saturating one does not",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
