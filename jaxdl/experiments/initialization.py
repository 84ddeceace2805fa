"""Initialization (Deep Learning sec. 8.2.7 and 8.4): symmetry, zero gradients and the small positive ReLU bias.

Measured on the digits with an MLP ``64-32-32-10`` trained by full-batch gradient descent:

* all weights zero: every hidden unit computes the same function forever (bitwise-equal kernel columns after
  training), the weights never leave zero, and the loss stalls at the entropy of the label frequencies (the best a
  bias-only model can do; a closed-form reference);
* all weights equal to a constant: the units move but stay identical up to rounding, so the network acts as if it had
  one unit per layer. In exact arithmetic the columns stay equal; in floating point a matrix product may round its
  columns differently (GEMM tiling and vector width differ between CPUs), so the verdict allows a column gap of
  ``4 * steps * eps * max|W|`` (a few rounding errors of the weights per step) and demands that random
  initialization's gap be at least 1000 times larger. The symmetric state is a saddle (sec. 8.2.3): gradient descent
  amplifies any asymmetry, rounding included, so the claim is checked after :data:`SYMMETRY_STEPS` steps and the
  gap at the end of a longer run is reported, not judged;
* a ReLU network at zero receives an exactly zero gradient in every weight and hidden bias;
* random (LeCun / He normal) initialization breaks the symmetry and the loss falls far below;
* a hidden bias of 0.1 raises the fraction of ReLUs active on the data at the start.

:func:`jaxdl.models.init.initialize_mlp` gives every configuration its exact initial values.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import digits_full
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import initialize_mlp, stack
from jaxdl.train import train_scan

CLAIM = ("Deep Learning sec. 8.2.7 and 8.4: initial parameters must break symmetry between hidden units; with all "
         "weights zero (or equal) the units stay identical under gradient descent and a ReLU network gets no gradient "
         "at all, random initialization breaks the symmetry, and a small positive bias keeps ReLUs active at the "
         "start.")
SYMMETRY_STEPS = 300  # steps after which the symmetry claims are judged (all of a quick run)
ROUNDING_ULPS_PER_STEP = 4  # rounding errors of the weights a column difference may gain per step


def kernels(params) -> list[np.ndarray]:
    """The kernel of every layer, as host arrays (leading axes of a stack are kept)."""
    layers = nnx.to_pure_dict(params)["layers"]
    return [np.asarray(layers[i]["kernel"]) for i in sorted(layers)]


def column_gap(kernel: np.ndarray) -> float:
    """``max_j |W[:, j] - W[:, 0]|``: zero exactly when every hidden unit has bitwise the same incoming weights."""
    return float(np.max(np.abs(kernel - kernel[..., :1])))


def min_pairwise_column_distance(kernel: np.ndarray) -> float:
    """Smallest Euclidean distance between two columns (two hidden units): positive once symmetry is broken."""
    cols = kernel.T
    d = np.linalg.norm(cols[:, None, :] - cols[None, :, :], axis=-1)
    return float(np.min(d[np.triu_indices(cols.shape[0], 1)]))


def symmetry_tolerance(kernel_list: Sequence[np.ndarray], steps: int) -> float:
    """The column gap rounding alone can explain after ``steps`` gradient steps:
    ``ROUNDING_ULPS_PER_STEP * steps * eps * max|W|`` (eps of the kernels' dtype, ``max|W|`` over the kernels)."""
    eps = float(np.finfo(kernel_list[0].dtype).eps)
    scale = max(float(np.max(np.abs(k))) for k in kernel_list)
    return ROUNDING_ULPS_PER_STEP * steps * eps * scale


def label_entropy(y: np.ndarray, num_classes: int) -> float:
    """Entropy of the label frequencies (nats): the lowest cross-entropy of a model that ignores its input."""
    p = np.bincount(np.asarray(y), minlength=num_classes) / len(y)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def _cross_entropy(apply):
    def loss_fn(p, x, y):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y))

    return loss_fn


def _active_fraction(params, x) -> list[float]:
    """Fraction of (example, unit) pairs with positive pre-activation, per hidden layer (NumPy, on the host)."""
    layers = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(params))["layers"]
    h, fractions = np.asarray(x, np.float64), []
    for i in sorted(layers)[:-1]:
        pre = h @ layers[i]["kernel"] + layers[i]["bias"]
        fractions.append(float(np.mean(pre > 0)))
        h = np.maximum(pre, 0.0)
    return fractions


def measure(*, seed: int, quick: bool) -> dict:
    """Train the six initializations; column gaps, weight changes, losses, ReLU gradients and active fractions."""
    examples, steps, lr = (512, 300, 0.5) if quick else (1797, 3000, 0.5)
    sizes = [64, 32, 32, 10]
    x, y = digits_full()
    x, y = x[:examples], y[:examples]
    entropy = label_entropy(np.asarray(y), 10)
    configs = {  # name: (activation, scheme, constant, hidden bias)
        "zeros, tanh": ("tanh", "zeros", 0.0, 0.0),
        "constant 0.02, tanh": ("tanh", "constant", 0.02, 0.0),
        "LeCun normal, tanh": ("tanh", "lecun", 0.0, 0.0),
        "zeros, ReLU": ("relu", "zeros", 0.0, 0.0),
        "He normal, ReLU, bias 0": ("relu", "he", 0.0, 0.0),
        "He normal, ReLU, bias 0.1": ("relu", "he", 0.0, 0.1),
    }
    initial, applies = {}, {}
    for name, (act, scheme, const, bias) in configs.items():
        applies[act], initial[name] = initialize_mlp(sizes, scheme=scheme, activation=act, seed=seed,
                                                     constant=const, hidden_bias=bias)
    symmetry_steps = min(steps, SYMMETRY_STEPS)
    final, at_check, curves, final_loss, check_loss = {}, {}, {}, {}, {}
    opt = optax.sgd(lr)
    for act in ("tanh", "relu"):
        # One compiled, vmapped run per activation (training, final losses and, for ReLU, the gradient at zero):
        # the configurations differ only in their values. Results are sliced on the host. A longer run continues
        # from the state at the symmetry check (plain SGD carries no optimizer state).
        names = [n for n in configs if configs[n][0] == act]
        loss_fn = _cross_entropy(applies[act])

        def train_all(p, x, y, loss_fn=loss_fn, num_steps=symmetry_steps):
            trained, losses = jax.vmap(lambda q: train_scan(loss_fn, opt, q, x, y, steps=num_steps))(p)
            return trained, losses, jax.vmap(lambda q: loss_fn(q, x, y))(trained), jax.vmap(
                lambda q: jax.grad(loss_fn)(q, x, y))(p)

        checked, losses, ends, grads = jax.device_get(jax.jit(train_all)(stack([initial[n] for n in names]), x, y))
        trained, check_ends = checked, ends
        if steps > symmetry_steps:
            trained, more, ends, _ = jax.device_get(jax.jit(partial(train_all, num_steps=steps - symmetry_steps))(
                checked, x, y))
            losses = np.concatenate([losses, more], axis=1)
        for i, n in enumerate(names):
            at_check[n] = jax.tree_util.tree_map(lambda a: a[i], checked)
            final[n] = jax.tree_util.tree_map(lambda a: a[i], trained)
            curves[n] = np.asarray(losses[i])
            final_loss[n], check_loss[n] = float(ends[i]), float(check_ends[i])
            if n == "zeros, ReLU":
                g = jax.tree_util.tree_map(lambda a: np.abs(a[i]), nnx.to_pure_dict(grads))["layers"]
    hidden_grad_max = max(float(g[i][k].max()) for i in (0, 1) for k in ("kernel", "bias"))
    hidden_grad_max = max(hidden_grad_max, float(g[2]["kernel"].max()))
    output_bias_grad = float(g[2]["bias"].max())

    const = "constant 0.02, tanh"
    randoms = ("LeCun normal, tanh", "He normal, ReLU, bias 0", "He normal, ReLU, bias 0.1")
    gaps = {n: [column_gap(k) for k in kernels(at_check[n])[:2]] for n in configs}
    final_gaps = {n: [column_gap(k) for k in kernels(final[n])[:2]] for n in configs}
    tolerance = symmetry_tolerance(kernels(at_check[const])[:2], symmetry_steps)
    random_gap = min(min(gaps[n]) for n in randoms)
    distances = {n: min(min_pairwise_column_distance(k) for k in kernels(final[n])[:2]) for n in configs}
    moved = {n: max(float(np.max(np.abs(a - b))) for a, b in zip(kernels(final[n]), kernels(initial[n])))
             for n in configs}
    active = {b: _active_fraction(initial[f"He normal, ReLU, bias {b}"], x) for b in ("0", "0.1")}

    metrics = {
        "setting": {"sizes": sizes, "examples": examples, "steps": steps, "learning_rate": lr, "optimizer": "sgd",
                    "symmetry_check_steps": symmetry_steps},
        "label_entropy": entropy,
        "final_loss": final_loss,
        "loss_at_symmetry_check": check_loss,
        "max_column_gap_hidden_layers": gaps,
        "max_column_gap_hidden_layers_final": final_gaps,
        "symmetry_rounding_tolerance": tolerance,
        "min_column_gap_random_init": random_gap,
        "min_distance_between_hidden_units": distances,
        "max_weight_change": moved,
        "relu_zero_init": {"max_abs_grad_weights_and_hidden_biases": hidden_grad_max,
                           "max_abs_grad_output_bias": output_bias_grad},
        "relu_active_fraction_at_init": {"bias 0": active["0"], "bias 0.1": active["0.1"]},
        "loss_curves_every_10": {n: c[::10].tolist() for n, c in curves.items()},
        "loss_curves": {n: c.tolist() for n, c in curves.items()},
    }
    return metrics


def verdict(m: dict) -> Verdict:
    """Zero init bitwise, constant init up to rounding (far below random init's gap), zero ReLU gradient, bias."""
    steps, symmetry_steps = m["setting"]["steps"], m["setting"]["symmetry_check_steps"]
    entropy, final_loss, check_loss = m["label_entropy"], m["final_loss"], m["loss_at_symmetry_check"]
    gaps, final_gaps = m["max_column_gap_hidden_layers"], m["max_column_gap_hidden_layers_final"]
    tolerance, random_gap = m["symmetry_rounding_tolerance"], m["min_column_gap_random_init"]
    distances, moved = m["min_distance_between_hidden_units"], m["max_weight_change"]
    hidden_grad_max = m["relu_zero_init"]["max_abs_grad_weights_and_hidden_biases"]
    output_bias_grad = m["relu_zero_init"]["max_abs_grad_output_bias"]
    active = {"0": m["relu_active_fraction_at_init"]["bias 0"], "0.1": m["relu_active_fraction_at_init"]["bias 0.1"]}
    const = "constant 0.02, tanh"
    randoms = ("LeCun normal, tanh", "He normal, ReLU, bias 0", "He normal, ReLU, bias 0.1")
    # Zero weights stay exactly zero in any arithmetic (every product has a zero factor): that check is bitwise.
    zeros_ok = all(max(final_gaps[n]) == 0.0 and moved[n] == 0.0 and abs(final_loss[n] - entropy) < 1e-3
                   for n in ("zeros, tanh", "zeros, ReLU"))
    const_ok = max(gaps[const]) <= tolerance and moved[const] > 0 and random_gap >= 1000 * tolerance
    relu_ok = hidden_grad_max == 0.0 and output_bias_grad > 0
    random_ok = all(distances[n] > 0 and check_loss[n] < 0.5 * check_loss[const] for n in randoms)
    bias_ok = np.mean(active["0.1"]) > np.mean(active["0"])
    passed = bool(zeros_ok and const_ok and relu_ok and random_ok and bias_ok)
    later = "" if steps == symmetry_steps else (
        f" After all {steps} steps the constant-init gap is {max(final_gaps[const]):.3g}: the symmetric state is a "
        "saddle, and gradient descent amplifies any asymmetry, rounding included (reported, not judged).")
    text = (
        f"After {steps} gradient steps: zero init keeps every hidden kernel column bitwise equal (max gap "
        f"{max(final_gaps['zeros, tanh']):.1g}), never moves the kernels (max change {moved['zeros, tanh']:.1g}) "
        f"and stalls at loss {final_loss['zeros, tanh']:.5f} = label entropy {entropy:.5f}. After "
        f"{symmetry_steps} steps, constant 0.02 init has moved the weights yet keeps the columns equal up to "
        f"rounding: gap {max(gaps[const]):.2g} <= {tolerance:.2g} = {ROUNDING_ULPS_PER_STEP} x {symmetry_steps} "
        f"steps x eps x max|W|, while random init's columns differ by {random_gap:.3g} "
        f"({random_gap / tolerance:.2g} times the tolerance); loss {check_loss[const]:.4f} against "
        f"{check_loss['LeCun normal, tanh']:.4f} (LeCun, tanh).{later} A zero ReLU network has gradient exactly "
        f"{hidden_grad_max:.1g} in every weight and hidden bias (output bias {output_bias_grad:.3g}). Random init: "
        f"final loss {final_loss['LeCun normal, tanh']:.4f} (tanh), {final_loss['He normal, ReLU, bias 0']:.4f} / "
        f"{final_loss['He normal, ReLU, bias 0.1']:.4f} (ReLU, bias 0 / 0.1), closest hidden units "
        f"{distances['LeCun normal, tanh']:.3g} apart. Active ReLUs at the start: "
        f"{np.mean(active['0']):.3f} with bias 0, {np.mean(active['0.1']):.3f} with bias 0.1.")
    return Verdict(passed, text)


def figures(m: dict) -> dict:
    """Loss curves of the six initializations; active ReLU fractions with and without the 0.1 bias."""
    entropy = m["label_entropy"]
    active = {"0": m["relu_active_fraction_at_init"]["bias 0"], "0.1": m["relu_active_fraction_at_init"]["bias 0.1"]}
    fig, (ax,) = figure(1, width=6.5)
    for name, curve in m["loss_curves"].items():
        ax.plot(np.arange(len(curve)), curve, label=name)
    ax.axhline(entropy, color="k", ls=":", lw=1, label=f"label entropy {entropy:.3f} (bias-only optimum)")
    ax.set_yscale("log")
    ax.set_xlabel("gradient step (full batch)")
    ax.set_ylabel("training cross-entropy (nats, log scale)")
    ax.set_title("digits MLP 64-32-32-10: loss by initialization")
    ax.legend(fontsize=7)
    fig2, (ax2,) = figure(1, width=5)
    layers = np.arange(1, len(active["0"]) + 1)
    ax2.bar(layers - 0.2, active["0"], width=0.4, label="hidden bias 0")
    ax2.bar(layers + 0.2, active["0.1"], width=0.4, label="hidden bias 0.1")
    ax2.set_xticks(layers)
    ax2.set_xlabel("hidden layer")
    ax2.set_ylabel("fraction of ReLUs active at init (over examples and units)")
    ax2.set_ylim(0, 1)
    ax2.set_title("He-normal ReLU network on the digits, before training")
    ax2.legend()
    return {
        "initialization_loss_curves": (fig, "Training loss of the same network from six initializations; zero and "
                                            "constant weights keep the hidden units identical (up to rounding)."),
        "initialization_relu_active": (fig2, "A small positive bias raises the fraction of active ReLUs at the "
                                             "start."),
    }


EXPERIMENT = experiment(
    "initialization", summary="sec. 8.2.7: zero weights keep hidden units bitwise identical, equal weights up to "
    "rounding, zero ReLU gradient, random init breaks symmetry, bias 0.1 keeps ReLUs active",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
