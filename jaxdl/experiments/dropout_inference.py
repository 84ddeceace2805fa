"""Dropout inference rules (Deep Learning sec. 7.12): weight scaling, Monte-Carlo averaging, and the exact arithmetic
and renormalised geometric means over all ``2**d`` sub-networks.

Measured on digits pooled to 4 x 4 pixels (16 inputs), so that every mask can be enumerated: for softmax regression
(16 droppable inputs) the weight scaling rule equals the geometric mean to float64 round-off (eq. 7.58-7.66); for an
MLP whose 16 inputs are dropped before a ReLU layer it is only an approximation, measured (dropping only the
hidden units of that MLP is softmax regression on the hidden features, exact again); the Monte-Carlo estimate
approaches the exact arithmetic mean with error proportional to ``1/sqrt(K)``; and the two conventions (inverted and
weight scaling) are the same model after rescaling the weights by the inclusion probabilities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import digits
from jaxdl.experiments._common import figure, loglog_slope
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models import DropoutMLP, dropout_split, exact_means, sample_predictions, weight_scaling_predict
from jaxdl.train import train_scan

CLAIM = ("Deep Learning sec. 7.12: for softmax regression the weight scaling rule equals the renormalised geometric "
         "mean of all 2^d dropout sub-networks exactly; Monte-Carlo averaging over K masks converges to the exact "
         "arithmetic mean with error O(1/sqrt(K)); inverted and weight-scaled dropout agree in expectation.")


def pooled_digits(dtype=jnp.float32, seed: int = 0):
    """Digits average-pooled 2 x 2 to 4 x 4 = 16 inputs in [0, 1]: small enough to enumerate every input mask."""
    data = digits(seed=seed, dtype=dtype)

    def pool(x):
        return x.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)

    return data._replace(x_train=pool(data.x_train), x_test=pool(data.x_test))


def train_dropout(net, params, x, y, *, key, steps: int, learning_rate: float = 0.01):
    """Full-batch Adam on the dropout training loss (a fresh mask per example and step)."""
    optimizer = optax.adam(learning_rate)

    def loss_fn(p, xb, yb, k):
        logits = net(p, xb, key=k, train=True)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

    train = jax.jit(lambda p, xb, yb, k: train_scan(loss_fn, optimizer, p, xb, yb, steps=steps, key=k)[0])
    return train(params, x, y, key)


def _rescaled(params, include):
    """Weights of the inverted-convention model equal to a weight-scaling model: ``W_inv = p * W_ws`` row-wise."""
    d = nnx.to_pure_dict(params)
    for i, p in enumerate(include):
        d["layers"][i]["kernel"] = d["layers"][i]["kernel"] * p
    out = jax.tree_util.tree_map(lambda a: a, params)
    nnx.replace_by_pure_dict(out, d)
    return out


def measure(*, seed: int, quick: bool) -> dict:
    """Weight scaling against the exact ensembles, Monte-Carlo error against K, and the two conventions."""
    steps = 100 if quick else 1000
    num_eval = 64 if quick else 450
    k_max = 256 if quick else 4096
    key = jax.random.PRNGKey(seed)
    k_train1, k_train2, k_mc, k_mask = jax.random.split(key, 4)

    with jax.enable_x64(True):
        data = pooled_digits(jnp.float64, seed)
        x_eval = data.x_test[:num_eval]
        # Softmax regression with input dropout (p = 0.8): 16 droppable units, 65,536 sub-networks.
        net_sr, params_sr = dropout_split(DropoutMLP([16, 10], include=0.8, rngs=nnx.Rngs(seed), dtype=jnp.float64))
        params_sr = train_dropout(net_sr, params_sr, data.x_train, data.y_train, key=k_train1, steps=steps)
        ws_sr = weight_scaling_predict(net_sr, params_sr, x_eval)
        am_sr, gm_sr = exact_means(net_sr, params_sr, x_eval, chunk=1024)
        # MLP 16-16-10 with input dropout (p = 0.8) feeding a ReLU layer: the ensemble is nonlinear in the masks.
        net_mlp, params_mlp = dropout_split(DropoutMLP([16, 16, 10], include=(0.8, 1.0), rngs=nnx.Rngs(seed + 1),
                                                       dtype=jnp.float64))
        params_mlp = train_dropout(net_mlp, params_mlp, data.x_train, data.y_train, key=k_train2, steps=steps)
        ws_mlp = weight_scaling_predict(net_mlp, params_mlp, x_eval)
        am_mlp, gm_mlp = exact_means(net_mlp, params_mlp, x_eval, chunk=1024)
        # The same MLP with only its 16 hidden units dropped (p = 0.5) is softmax regression on the hidden features,
        # so the identity must hold again.
        net_hid, _ = dropout_split(DropoutMLP([16, 16, 10], include=(1.0, 0.5), rngs=nnx.Rngs(seed + 1),
                                              dtype=jnp.float64))
        ws_hid = weight_scaling_predict(net_hid, params_mlp, x_eval)
        _, gm_hid = exact_means(net_hid, params_mlp, x_eval, chunk=1024)
        samples = sample_predictions(net_mlp, params_mlp, x_eval, key=k_mc, num_samples=k_max)
        running = jnp.cumsum(samples, axis=0) / jnp.arange(1, k_max + 1)[:, None, None]
        ks = 2 ** np.arange(int(np.log2(k_max)) + 1)
        mc_rms = np.asarray(jnp.sqrt(jnp.mean((running[ks - 1] - am_mlp) ** 2, axis=(1, 2))))
        # Per-sample variance of the softmax outputs: the 1/sqrt(K) law's constant, E|MC_K - AM|^2 = var / K.
        sample_var = float(jnp.mean(jnp.var(samples, axis=0)))

        # Conventions: a weight-scaling model and the inverted model with W * p give the same sub-networks.
        net_ws, params_ws = dropout_split(DropoutMLP([16, 16, 10], include=(0.8, 0.5), convention="weight_scaling",
                                                     rngs=nnx.Rngs(seed + 2), dtype=jnp.float64))
        net_inv, _ = dropout_split(DropoutMLP([16, 16, 10], include=(0.8, 0.5), convention="inverted",
                                              rngs=nnx.Rngs(seed + 2), dtype=jnp.float64))
        params_inv = _rescaled(params_ws, net_ws.include)
        masks = [jax.random.bernoulli(k, p, (num_eval, w)).astype(jnp.float64)
                 for k, p, w in zip(jax.random.split(k_mask, 2), net_ws.include, net_ws.widths)]
        sub_diff = float(jnp.max(jnp.abs(net_ws(params_ws, x_eval, masks=masks)
                                         - net_inv(params_inv, x_eval, masks=masks))))
        inf_diff = float(jnp.max(jnp.abs(net_ws(params_ws, x_eval) - net_inv(params_inv, x_eval))))

        def accuracy(probs):
            return float(jnp.mean(jnp.argmax(probs, 1) == data.y_test[:num_eval]))

        sr = {"ws_vs_geometric_max_abs": float(jnp.max(jnp.abs(ws_sr - gm_sr))),
              "ws_vs_arithmetic_max_abs": float(jnp.max(jnp.abs(ws_sr - am_sr))),
              "accuracy": {"weight_scaling": accuracy(ws_sr), "arithmetic": accuracy(am_sr),
                           "geometric": accuracy(gm_sr)}}
        mlp = {"ws_vs_geometric_max_abs": float(jnp.max(jnp.abs(ws_mlp - gm_mlp))),
               "ws_vs_arithmetic_max_abs": float(jnp.max(jnp.abs(ws_mlp - am_mlp))),
               "geometric_vs_arithmetic_max_abs": float(jnp.max(jnp.abs(gm_mlp - am_mlp))),
               "hidden_dropout_only_ws_vs_geometric_max_abs": float(jnp.max(jnp.abs(ws_hid - gm_hid))),
               "accuracy": {"weight_scaling": accuracy(ws_mlp), "arithmetic": accuracy(am_mlp),
                            "geometric": accuracy(gm_mlp)}}

    slope = loglog_slope(ks, mc_rms)
    predicted = np.sqrt(sample_var / ks)
    law_ratio = mc_rms / predicted
    return {"num_eval": num_eval, "train_steps": steps, "softmax_regression": sr, "mlp": mlp,
            "monte_carlo": {"K": ks.tolist(), "rms_error": mc_rms.tolist(), "loglog_slope": slope,
                            "per_sample_variance": sample_var, "measured_over_predicted": law_ratio.tolist(),
                            "predicted_rms_error": predicted.tolist()},
            "conventions": {"subnetwork_max_abs_difference": sub_diff, "inference_max_abs_difference": inf_diff}}


def verdict(m: dict) -> Verdict:
    """Weight scaling is the geometric mean wherever the ensemble is softmax regression, MC error follows
    1/sqrt(K), and the two conventions agree."""
    sr, mlp, mc = m["softmax_regression"], m["mlp"], m["monte_carlo"]
    sub_diff, inf_diff = (m["conventions"]["subnetwork_max_abs_difference"],
                          m["conventions"]["inference_max_abs_difference"])
    ks, mc_rms, slope = mc["K"], mc["rms_error"], mc["loglog_slope"]
    law_ratio = np.asarray(mc["measured_over_predicted"])
    passed = (sr["ws_vs_geometric_max_abs"] < 1e-13 and mlp["hidden_dropout_only_ws_vs_geometric_max_abs"] < 1e-13
              and -0.6 < slope < -0.4 and np.all((law_ratio > 0.5)
              & (law_ratio < 2.0)) and sub_diff < 1e-12 and inf_diff < 1e-12)
    text = (f"Softmax regression, 2^16 sub-networks, float64: weight scaling vs renormalised geometric mean "
            f"{sr['ws_vs_geometric_max_abs']:.1e} (vs the arithmetic mean {sr['ws_vs_arithmetic_max_abs']:.1e}). "
            f"MLP 16-16-10, hidden units dropped (softmax regression on h): weight scaling vs geometric "
            f"{mlp['hidden_dropout_only_ws_vs_geometric_max_abs']:.1e}. Same MLP, inputs dropped before the ReLU "
            f"layer: weight scaling vs geometric {mlp['ws_vs_geometric_max_abs']:.1e}, vs arithmetic "
            f"{mlp['ws_vs_arithmetic_max_abs']:.1e}; accuracies WS/AM/GM "
            + "/".join(f"{v:.3f}" for v in mlp["accuracy"].values())
            + f". Monte-Carlo RMS error vs exact arithmetic mean: K=1 {mc_rms[0]:.1e}, K={ks[-1]} {mc_rms[-1]:.1e}, "
            f"log-log slope {slope:.3f} (1/sqrt(K) is -0.5), measured/predicted sqrt(var/K) in "
            f"[{law_ratio.min():.2f}, {law_ratio.max():.2f}]. Conventions after rescaling W by p: sub-networks "
            f"differ by {sub_diff:.1e}, inference by {inf_diff:.1e}.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Monte-Carlo error against K with the 1/sqrt(K) law, and weight scaling against the exact ensembles."""
    sr, mlp, mc = m["softmax_regression"], m["mlp"], m["monte_carlo"]
    ks, mc_rms, predicted = (np.asarray(mc[key]) for key in ("K", "rms_error", "predicted_rms_error"))
    fig, (ax0, ax1) = figure(2)
    ax0.loglog(ks, mc_rms, "o-", label="Monte-Carlo mean of K masks")
    ax0.loglog(ks, predicted, "k--", label="sqrt(per-sample variance / K)")
    ax0.set_xlabel("number of sampled masks K (log)")
    ax0.set_ylabel("RMS error vs exact arithmetic mean (log)")
    ax0.set_title("MLP with input dropout, 2^16 sub-networks")
    ax0.legend()
    labels = ["WS vs geometric", "WS vs arithmetic"]
    floor = 1e-17
    ax1.bar(np.arange(2) - 0.2, np.maximum([sr["ws_vs_geometric_max_abs"], sr["ws_vs_arithmetic_max_abs"]], floor),
            width=0.4, label="softmax regression")
    ax1.bar(np.arange(2) + 0.2, np.maximum([mlp["ws_vs_geometric_max_abs"], mlp["ws_vs_arithmetic_max_abs"]], floor),
            width=0.4, label="MLP, input dropout")
    ax1.set_yscale("log")
    ax1.set_xticks(range(2), labels)
    ax1.set_ylabel("max |difference| of class probabilities (log)")
    ax1.set_title("weight scaling rule vs exact ensembles (float64)")
    ax1.legend(loc="center")
    return {"dropout_inference": (fig, "Left: Monte-Carlo dropout error against K with the 1/sqrt(K) prediction. "
                                       "Right: the weight scaling rule equals the geometric mean for softmax "
                                       "regression to round-off, and approximates it for an MLP.")}


EXPERIMENT = experiment(
    "dropout-inference",
    summary="sec. 7.12: weight scaling = geometric mean for softmax regression; MC error ~ 1/sqrt(K)",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
