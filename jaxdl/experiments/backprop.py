"""Back-propagation by hand equals automatic differentiation, and SGD is a separate optimizer that consumes either
(Deep Learning sec. 6.5, algorithms 6.3-6.4; sec. 8.3.1, algorithm 8.1).

Measured on digits with a ReLU MLP: the relative error of :func:`jaxdl.backprop.backprop` against ``jax.grad`` per
layer in float32 and float64, two SGD runs from the same key that differ only in the gradient function, and the
time of one gradient each way.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.backprop import backprop, sgd, sgd_fit
from jaxdl.data import digits
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models import MLP, split
from jaxdl.timing import median_time
from jaxdl.train import accuracy

CLAIM = ("Deep Learning sec. 6.5 and 8.3: the hand-written backward pass of a ReLU MLP (algorithms 6.3-6.4) equals "
         "automatic differentiation to float tolerance, and SGD (algorithm 8.1) is an optimizer that consumes any "
         "gradient: the same run with either gradient gives the same trajectory.")


def reference_loss(apply, weight_decay: float):
    """Mean softmax cross-entropy plus ``weight_decay * sum ||W||_F^2``, written independently of the backward pass."""

    def loss_fn(params, x, y):
        logits = apply(params, x)
        nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
        kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params) if "kernel" in str(path)]
        return nll + weight_decay * sum(jnp.sum(w * w) for w in kernels)

    return loss_fn


def gradient_errors(sizes, x, y, *, seed: int, weight_decay: float, dtype) -> dict[str, float]:
    """Largest relative error ``|g_bp - g_ad| / max|g_ad|`` per parameter leaf, and the loss difference."""
    apply, params = split(MLP(list(sizes), activation="relu", rngs=nnx.Rngs(seed), dtype=dtype))
    value_bp, grads_bp = backprop(params, x, y, activation="relu", weight_decay=weight_decay)
    value_ad, grads_ad = jax.jit(jax.value_and_grad(reference_loss(apply, weight_decay)))(params, x, y)
    errors = {}
    for (path, g_bp), g_ad in zip(jax.tree_util.tree_leaves_with_path(grads_bp), jax.tree_util.tree_leaves(grads_ad)):
        name = jax.tree_util.keystr(path, simple=True, separator="/").removesuffix("/value")
        errors[name] = float(jnp.max(jnp.abs(g_bp - g_ad)) / jnp.max(jnp.abs(g_ad)))
    errors["loss"] = float(jnp.abs(value_bp - value_ad) / jnp.abs(value_ad))
    return errors


def measure(*, seed: int, quick: bool) -> dict:
    """Gradient errors in float32 and float64, two SGD runs differing only in the gradient, and gradient timings."""
    sizes = (64, 64, 32, 10) if quick else (64, 128, 64, 10)
    seeds = 1 if quick else 5
    epochs = 8 if quick else 30
    weight_decay = 1e-3
    data32 = digits(seed=seed)
    errors = {"float32": [], "float64": []}
    for s in range(seeds):
        errors["float32"].append(gradient_errors(sizes, data32.x_train, data32.y_train, seed=seed + s,
                                                 weight_decay=weight_decay, dtype=jnp.float32))
        with jax.enable_x64(True):
            data64 = digits(seed=seed, dtype=jnp.float64)
            errors["float64"].append(gradient_errors(sizes, data64.x_train, data64.y_train, seed=seed + s,
                                                     weight_decay=weight_decay, dtype=jnp.float64))
    worst = {k: max(max(e.values()) for e in v) for k, v in errors.items()}

    # SGD twice from the same parameters and key; only the gradient function differs.
    apply, params = split(MLP(list(sizes), activation="relu", rngs=nnx.Rngs(seed)))
    optimizer = sgd(0.1, final_learning_rate=0.01, decay_steps=epochs * (data32.x_train.shape[0] // 32))
    by_hand = functools.partial(backprop, activation="relu", weight_decay=weight_decay)
    by_ad = jax.value_and_grad(reference_loss(apply, weight_decay))
    key = jax.random.PRNGKey(seed + 1)
    runs = {}
    for name, grad_fn in (("backprop", by_hand), ("jax.grad", by_ad)):
        trained, losses = sgd_fit(grad_fn, optimizer, params, data32.x_train, data32.y_train, key=key,
                                  epochs=epochs, batch_size=32)
        acc = accuracy(apply)
        runs[name] = {"losses": np.asarray(losses),
                      "train_accuracy": float(acc(trained, data32.x_train, data32.y_train)),
                      "test_accuracy": float(acc(trained, data32.x_test, data32.y_test))}
    loss_gap = float(np.max(np.abs(runs["backprop"]["losses"] - runs["jax.grad"]["losses"])))

    x, y = data32.x_train, data32.y_train
    repeats = 3 if quick else 30
    t_bp = median_time(by_hand, params, x, y, repeats=repeats)
    t_ad = median_time(jax.jit(by_ad), params, x, y, repeats=repeats)

    # SGD must also train: the last epoch's mean loss well below the first's.
    per_epoch = runs["backprop"]["losses"].reshape(epochs, -1).mean(axis=1)
    return {
        "sizes": list(sizes), "weight_decay": weight_decay, "relative_errors": errors, "worst_relative_error": worst,
        "sgd": {k: {kk: vv for kk, vv in v.items() if kk != "losses"} for k, v in runs.items()},
        "sgd_max_loss_difference": loss_gap, "sgd_epochs": epochs,
        "gradient_time_ms": {"backprop": t_bp * 1e3, "jax.grad": t_ad * 1e3},
        "seeds": seeds,
        "sgd_epoch_mean_loss": per_epoch,
        "sgd_losses": {k: v["losses"] for k, v in runs.items()},
    }


def verdict(m: dict) -> Verdict:
    """Hand-written gradients match jax.grad to float tolerance, and SGD gives one trajectory with either and trains."""
    worst, loss_gap, per_epoch, sgd = (m["worst_relative_error"], m["sgd_max_loss_difference"],
                                       m["sgd_epoch_mean_loss"], m["sgd"])
    passed = (worst["float64"] < 1e-12 and worst["float32"] < 1e-4 and loss_gap < 1e-3
              and per_epoch[-1] < 0.5 * per_epoch[0])
    text = (f"Largest relative gradient error, hand-written vs jax.grad, over {m['seeds']} seeds and every layer: "
            f"{worst['float64']:.1e} in float64, {worst['float32']:.1e} in float32. SGD ({m['sgd_epochs']} epochs, "
            f"batch 32) with either gradient: largest per-step loss difference {loss_gap:.1e}, mean epoch loss "
            f"{per_epoch[0]:.3f} -> {per_epoch[-1]:.3f}, test accuracy "
            f"{sgd['backprop']['test_accuracy']:.4f} (backprop) vs {sgd['jax.grad']['test_accuracy']:.4f} "
            f"(jax.grad). One full-batch gradient: {m['gradient_time_ms']['backprop']:.2f} ms by hand, "
            f"{m['gradient_time_ms']['jax.grad']:.2f} ms by jax.grad.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Worst relative error per parameter leaf, and the SGD losses with either gradient."""
    errors = m["relative_errors"]
    fig, (ax0, ax1) = figure(2)
    names = [k for k in errors["float32"][0] if k != "loss"]
    for i, dtype in enumerate(("float32", "float64")):
        worst = [max(e[n] for e in errors[dtype]) for n in names]
        ax0.bar(np.arange(len(names)) + (i - 0.5) * 0.4, np.maximum(worst, 1e-18), width=0.4, label=dtype)
    ax0.set_yscale("log")
    ax0.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax0.set_ylabel("max relative error vs jax.grad (log)")
    ax0.set_title("hand-written backward pass")
    ax0.legend(loc="center right")
    for name, style in (("backprop", "-"), ("jax.grad", "--")):
        losses = np.asarray(m["sgd_losses"][name])
        ax1.semilogy(np.arange(losses.size), losses, style, lw=1, label=f"SGD with {name}")
    ax1.set_xlabel("SGD step")
    ax1.set_ylabel("minibatch loss (log)")
    ax1.set_title("same key, either gradient")
    ax1.legend()
    return {"backprop_vs_autodiff": (fig, "Left: worst relative error per parameter leaf of the hand-written gradient "
                                          "against jax.grad. Right: SGD minibatch losses with the two gradient "
                                          "functions (the curves coincide).")}


EXPERIMENT = experiment(
    "backprop",
    summary="sec. 6.5 / 8.3: hand-written backprop equals jax.grad; SGD consumes either gradient identically",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
