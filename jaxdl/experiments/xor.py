"""XOR (Deep Learning sec. 6.1): a linear model cannot learn it; one hidden ReLU layer can.

Measured: the least-squares linear model's outputs (1/2 everywhere, in closed form), the book's hand-set ReLU network
(outputs exactly [0, 1, 1, 0]), MLPs trained from many seeds (fraction that solve it), and the perceptron (the
learning rule, from many starts, and a dense search over linear separators: never more than 3 of 4 correct).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import xor
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import stack
from jaxdl.train import train_scan
from jaxdl.models import MLP, Perceptron, least_squares_fit, perceptron_fit, split

CLAIM = ("Deep Learning sec. 6.1: the least-squares linear model outputs 1/2 on every XOR point and a perceptron gets "
         "at most 3 of 4 right, while the ReLU network W=[[1,1],[1,1]], c=[0,-1], w=[1,-2], b=0 outputs exactly "
         "[0,1,1,0] and a trained MLP solves XOR.")


def book_relu_network(dtype=jnp.float32):
    """``(apply, params)`` of the book's XOR solution: ``f(x) = w^T max(0, W^T x + c) + b`` (eq. 6.3 with the
    parameters under fig. 6.3), as a :class:`jaxdl.models.MLP` ``[2, 2, 1]`` with ReLU."""
    apply, params = split(MLP([2, 2, 1], activation="relu", rngs=nnx.Rngs(0), dtype=dtype))
    values = {
        "layers": {
            0: {"kernel": jnp.array([[1.0, 1.0], [1.0, 1.0]], dtype), "bias": jnp.array([0.0, -1.0], dtype)},
            1: {"kernel": jnp.array([[1.0], [-2.0]], dtype), "bias": jnp.array([0.0], dtype)},
        }
    }
    nnx.replace_by_pure_dict(params, values)
    return apply, params


def _mse(apply):
    def loss_fn(params, x, y):
        return jnp.mean((apply(params, x)[:, 0] - y) ** 2)

    return loss_fn


def train_mlps(width: int, activation: str, seeds: int, steps: int, seed: int = 0):
    """Train ``seeds`` MLPs ``[2, width, 1]`` on XOR (MSE, Adam 0.05, full batch), vmapped; returns
    ``(apply, stacked_params, outputs (seeds, 4))``."""
    x, y = xor()
    models = [MLP([2, width, 1], activation=activation, rngs=nnx.Rngs(seed * 1000 + s)) for s in range(seeds)]
    apply, _ = split(models[0])
    params = stack([split(m)[1] for m in models])
    train = jax.jit(jax.vmap(lambda p, xb, yb: train_scan(_mse(apply), optax.adam(0.05), p, xb, yb, steps=steps)[0],
                             in_axes=(0, None, None)))
    trained = train(params, x, y)
    outputs = jax.vmap(lambda p: apply(p, x)[:, 0])(trained)
    return apply, trained, outputs


@jax.jit(static_argnames=("num_separators",))
def _search(num_separators: int, key: jax.Array) -> jax.Array:
    x, y = xor()
    wb = jax.random.normal(key, (num_separators, 3))
    return jnp.sum(((x @ wb[:, :2].T + wb[:, 2]) > 0) == (y[:, None] > 0.5), axis=0)


def perceptron_search(num_separators: int, key: jax.Array) -> tuple[int, int]:
    """Largest number of XOR points any of ``num_separators`` random threshold units classifies correctly, and how
    many units reach it (``w, b ~ N(0, 1)``; the sign pattern is all that matters)."""
    correct = _search(num_separators, key)
    best = int(jnp.max(correct))
    return best, int(jnp.sum(correct == best))


def measure(*, seed: int, quick: bool) -> dict:
    seeds, steps, starts, separators = (8, 400, 8, 20_000) if quick else (50, 2000, 64, 1_000_000)
    # Quick mode trains one configuration: each extra width costs a compilation of seconds.
    configs = ((8, "relu"),) if quick else ((2, "relu"), (8, "relu"), (8, "tanh"))
    key = jax.random.PRNGKey(seed)
    grid = np.linspace(-0.25, 1.25, 121)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    with jax.enable_x64(True):
        x64, y64 = xor(jnp.float64)
        w_ls, b_ls = least_squares_fit(x64, y64)
        ls_out = np.asarray(x64 @ w_ls + b_ls)
        apply_book, params_book = book_relu_network(jnp.float64)
        book_out = np.asarray(apply_book(params_book, x64)[:, 0])
        hidden = np.asarray(jax.nn.relu(x64 @ jnp.ones((2, 2)) + jnp.array([0.0, -1.0])))
        book_surface = np.asarray(apply_book(params_book, jnp.asarray(points))[:, 0]).reshape(gx.shape)
    linear_surface = (points @ np.asarray(w_ls) + float(b_ls)).reshape(gx.shape)

    x, y = xor()
    solved = {}
    outputs = {}
    for width, act in configs:
        _, _, out = train_mlps(width, act, seeds, steps, seed)
        outputs[f"{act}-{width}"] = np.asarray(out)
        solved[f"{act}-{width}"] = float(jnp.mean(jnp.all(jnp.abs(out - y) < 0.1, axis=1)))

    # Perceptron: the learning rule from many random starts, and a dense random search over separators.
    k_start, k_search = jax.random.split(key)
    _, template = split(Perceptron(2, rngs=nnx.Rngs(0)))
    starts_wb = jax.random.normal(k_start, (starts, 3))

    def rule_from(wb):
        params = jax.tree_util.tree_map_with_path(
            lambda path, leaf: (wb[:2, None] if "kernel" in str(path) else wb[2:]).astype(leaf.dtype), template)
        return perceptron_fit(params, x, y, epochs=50).best_accuracy

    rule_best = np.asarray([float(rule_from(wb)) for wb in starts_wb])
    search_best, search_count = perceptron_search(separators, k_search)
    return {
        "least_squares": {"w": np.asarray(w_ls).tolist(), "b": float(b_ls), "outputs": ls_out.tolist(),
                          "max_abs_deviation_from_half": float(np.max(np.abs(ls_out - 0.5)))},
        "book_relu_network": {"outputs": book_out.tolist(),
                              "max_abs_error": float(np.max(np.abs(book_out - np.array([0.0, 1.0, 1.0, 0.0])))),
                              "hidden_representation": hidden.tolist()},
        "trained_mlp_fraction_solved": solved,
        "trained_mlp_seeds": seeds,
        "trained_mlp_steps": steps,
        "trained_mlp_outputs": {k: v.tolist() for k, v in outputs.items()},
        "perceptron_rule_best_accuracy": float(rule_best.max()),
        "perceptron_rule_starts": int(rule_best.size),
        "perceptron_search_best_correct": search_best,
        "perceptron_search_separators": separators,
        "perceptron_search_count_at_best": search_count,
        "surfaces": {"grid": grid.tolist(), "least_squares": linear_surface.tolist(), "book": book_surface.tolist()},
    }


def verdict(m: dict) -> Verdict:
    ls, book, solved = m["least_squares"], m["book_relu_network"], m["trained_mlp_fraction_solved"]
    ls_dev, book_dev = ls["max_abs_deviation_from_half"], book["max_abs_error"]
    rule_best, search_best = m["perceptron_rule_best_accuracy"], m["perceptron_search_best_correct"]
    passed = (ls_dev < 1e-12 and book_dev == 0.0 and max(solved.values()) >= 0.9
              and rule_best <= 0.75 and search_best == 3)
    text = (f"Least squares: w = {np.round(np.asarray(ls['w']), 12).tolist()}, b = {ls['b']:.12f}, outputs within "
            f"{ls_dev:.1e} of 1/2. Book ReLU network outputs {book['outputs']} (max error {book_dev:.1e}). "
            f"Trained MLPs solving XOR (all outputs within 0.1) over {m['trained_mlp_seeds']} seeds: "
            + ", ".join(f"{k} {v:.0%}" for k, v in solved.items())
            + f". Perceptron: best accuracy of the learning rule from {m['perceptron_rule_starts']} starts "
            f"{rule_best:.2f}; "
            f"best of {m['perceptron_search_separators']:,} random separators {search_best}/4 correct.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    grid = np.asarray(m["surfaces"]["grid"])
    gx, gy = np.meshgrid(grid, grid)
    hidden = np.asarray(m["book_relu_network"]["hidden_representation"])
    solved = m["trained_mlp_fraction_solved"]
    x, y = (np.asarray(a) for a in xor())
    fig, axes = figure(3, width=4.2)
    for ax, surface, title in ((axes[0], m["surfaces"]["least_squares"], "least-squares linear model"),
                               (axes[1], m["surfaces"]["book"], "book's ReLU network")):
        # Level boundaries at odd multiples of 0.05, so the constant 1/2 (+- round-off) sits inside one band.
        im = ax.contourf(gx, gy, np.asarray(surface), levels=np.linspace(-0.55, 1.55, 22), cmap="coolwarm")
        for target, marker, face in ((0.0, "o", "white"), (1.0, "s", "black")):
            pick = y == target
            ax.scatter(x[pick, 0], x[pick, 1], marker=marker, facecolors=face, edgecolors="k", s=90,
                       label=f"target {target:g}")
        ax.legend(loc="upper center", fontsize=8)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.set_title(title)
    fig.colorbar(im, ax=axes[:2], label="model output $f(x)$")
    axes[2].scatter(hidden[:, 0], hidden[:, 1], c=y, cmap="coolwarm", edgecolors="k", s=80)
    for i, label in ((0, "x=(0,0)"), (1, "x=(0,1) and (1,0)"), (3, "x=(1,1)")):
        axes[2].annotate(label, tuple(hidden[i]), textcoords="offset points", xytext=(6, 6))
    axes[2].plot([0.5, 2.0], [0.0, 0.75], "k--", lw=1, label="$h_1 - 2h_2 = 1/2$")
    axes[2].set_xlabel("$h_1$")
    axes[2].set_ylabel("$h_2$")
    axes[2].set_title("learned space $h = \\max(0, W^T x + c)$")
    axes[2].legend(loc="upper left")

    fig2, (ax,) = figure(1, width=6)
    outputs = m["trained_mlp_outputs"]
    for i, name in enumerate(outputs):
        err = np.max(np.abs(np.asarray(outputs[name]) - y), axis=1)
        ax.scatter(np.full(err.shape, i) + np.linspace(-0.2, 0.2, err.size), np.maximum(err, 1e-6), s=12,
                   label=f"{name}: {solved[name]:.0%} solved")
    ax.axhline(0.1, color="k", ls="--", lw=1, label="solved threshold 0.1")
    ax.set_xticks(range(len(outputs)), list(outputs))
    ax.set_yscale("log")
    ax.set_xlabel("hidden layer (activation-width)")
    ax.set_ylabel("max |f(x) - y| over the 4 points (log, floored at 1e-6)")
    ax.set_title("trained MLPs on XOR, one dot per seed")
    ax.legend(fontsize=8)
    return {
        "xor_surfaces": (fig, "Left: the least-squares linear model is 1/2 everywhere. Middle: the book's ReLU "
                              "network. Right: in the hidden space (0,1) and (1,0) coincide and a line separates the "
                              "classes."),
        "xor_trained_mlps": (fig2, "Worst-case error of MLPs trained from different seeds (Adam, MSE, full batch)."),
    }


EXPERIMENT = experiment(
    "xor", summary="sec. 6.1: linear models fail on XOR (1/2 everywhere; perceptron <= 3/4), a ReLU network solves it",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
