"""Transductions and causality (Deep Learning sec. 10.2-10.4), measured on the full Jacobian.

Five recurrent maps are built (aligned causal, bidirectional, sequence-to-vector, vector-to-sequence,
encoder-decoder) and :func:`analysis.causal_structure` computes every block ``dy_t / dx_s``. A causal network must
show exact zeros for ``s > t``; a bidirectional one must not. Then both aligned networks are trained on a task that
needs the future (``y_t = x_{t+k}``) and on one that needs only the past (``y_t = x_{t-k}``): the causal network
cannot do better than the variance of the target on the first, the bidirectional one can.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.ticker import MaxNLocator

from analysis import causal_structure
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.train import masked_mse, train_scan
from jaxdl.models import (
    RNN,
    BidirectionalRNN,
    EncoderDecoder,
    SequenceToVector,
    VectorToSequence,
    split,
)
from jaxdl.train import make_optimizer

CLAIM = ("Deep Learning sec. 10.2-10.4: an aligned RNN is causal (dy_t/dx_s = 0 for s > t), a bidirectional RNN is "
         "not and can use the future; sequence-to-vector, vector-to-sequence and encoder-decoder maps use the whole "
         "input.")


def shifted_task(key, batch: int, length: int, shift: int):
    """Inputs ``N(0, 1)`` ``(batch, length, 1)``; targets ``x_{t+shift}`` (``shift > 0``: the future) with a mask of
    the steps where the target exists."""
    x = jax.random.normal(key, (batch, length, 1))
    idx = jnp.arange(length) + shift
    valid = (idx >= 0) & (idx < length)
    y = jnp.where(valid[None, :, None], x[:, jnp.clip(idx, 0, length - 1)], 0.0)
    return x, y, jnp.broadcast_to(valid, (batch, length)).astype(x.dtype)


def _train(model, shift, key, steps, length):
    apply, params = split(model)
    k_train, k_test = jax.random.split(key)
    x, y, mask = shifted_task(k_train, 256, length, shift)
    loss = masked_mse(apply)
    opt = make_optimizer("adam", 1e-2)
    trained, losses = jax.jit(lambda p, *data: train_scan(loss, opt, p, *data, steps=steps))(params, x, y, mask)
    xt, yt, mt = shifted_task(k_test, 512, length, shift)
    return float(loss(trained, xt, yt, mt)), np.asarray(losses)


def measure(*, seed: int, quick: bool) -> dict:
    """Jacobian block norms of the five maps, and test MSE and training curves of both aligned networks."""
    length, hidden, shift = 12, 16, 2
    # Quick mode trains the future-dependent task only, briefly: each training loop costs a compilation.
    steps = 150 if quick else 1500
    tasks = (("future", shift),) if quick else (("future", shift), ("past", -shift))
    rngs = lambda k: nnx.Rngs(seed * 100 + k)  # noqa: E731
    xs = jax.random.normal(jax.random.PRNGKey(seed), (length, 2))
    models = {
        "aligned (causal)": RNN(2, hidden, 2, rngs=rngs(0)),
        "bidirectional": BidirectionalRNN(2, hidden, 2, rngs=rngs(1)),
        "sequence-to-vector": SequenceToVector(2, hidden, 2, rngs=rngs(2)),
        "encoder-decoder": EncoderDecoder(2, hidden, 2, 5, rngs=rngs(3)),
    }
    structures = {}
    for name, model in models.items():
        apply, params = split(model)
        structures[name] = causal_structure(lambda x, p, apply=apply: apply(p, x), xs, params)
    apply_v, params_v = split(VectorToSequence(2, hidden, 2, length, rngs=rngs(4)))
    structures["vector-to-sequence"] = causal_structure(lambda x, p: apply_v(p, x[0]), xs[:1], params_v)

    # Training: the future-dependent task (y_t = x_{t+k}) and the past-dependent one (y_t = x_{t-k}).
    key = jax.random.PRNGKey(seed + 1)
    mse, curves = {}, {}
    for task, s in tasks:
        for name, cls in (("causal", RNN), ("bidirectional", BidirectionalRNN)):
            mse[f"{name}/{task}"], curves[f"{name}/{task}"] = _train(cls(1, hidden, 1, rngs=rngs(10)), s, key, steps,
                                                                     length)
    return {
        "structures": {k: {"aligned": s.aligned, "causal": s.causal, "anticausal": s.anticausal,
                           "max_future_influence": s.max_future_influence, "max_past_influence": s.max_past_influence,
                           "first_input": s.first_input, "last_input": s.last_input}
                       for k, s in structures.items()},
        "test_mse": mse, "train_steps": steps, "shift": shift, "length": length, "hidden": hidden,
        "influence": {k: np.asarray(s.influence) for k, s in structures.items()}, "training_curves": curves,
    }


def verdict(m: dict) -> Verdict:
    """Exact zeros above the diagonal for the causal RNN only, whole-input maps, and only the bidirectional one
    predicting the future."""
    structures, mse, shift = m["structures"], m["test_mse"], m["shift"]
    causal, bi = structures["aligned (causal)"], structures["bidirectional"]
    whole_input = {k: bool(np.all(np.asarray(s["first_input"]) == 0)
                           and np.all(np.asarray(s["last_input"]) == np.shape(m["influence"][k])[1] - 1))
                   for k, s in structures.items() if k in ("sequence-to-vector", "encoder-decoder",
                                                          "vector-to-sequence")}
    passed = (causal["causal"] and causal["max_future_influence"] == 0.0 and causal["max_past_influence"] > 0
              and not bi["causal"] and bi["max_future_influence"] > 0 and all(whole_input.values())
              and mse["causal/future"] > 0.8 and mse["bidirectional/future"] < 0.1
              and mse.get("causal/past", 0.0) < 0.1)
    text = (f"Causal RNN: largest |dy_t/dx_s| block with s > t = {causal['max_future_influence']:.1e} (exactly 0) "
            f"vs {causal['max_past_influence']:.3f} for s <= t; bidirectional: {bi['max_future_influence']:.3f} for "
            f"s > t. Sequence-to-vector, vector-to-sequence and encoder-decoder outputs depend on every input step: "
            f"{whole_input}. Predicting x_(t+{shift}): test MSE causal {mse['causal/future']:.3f} (target variance "
            f"1) vs bidirectional {mse['bidirectional/future']:.4f}"
            + (f"; predicting x_(t-{shift}): causal {mse['causal/past']:.4f}, bidirectional "
               f"{mse['bidirectional/past']:.4f}." if "causal/past" in mse else "."))
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Jacobian block norms of every map, and the training curves of the shifted tasks."""
    influence, curves, mse = m["influence"], m["training_curves"], m["test_mse"]
    fig, axes = figure(len(influence), width=3.2, height=3.2)
    for ax, (name, infl) in zip(axes, influence.items()):
        infl = np.asarray(infl)
        im = ax.imshow(np.log10(np.maximum(infl, 1e-12)), cmap="viridis", vmin=-6, vmax=0, aspect="auto",
                       origin="upper")
        ax.set_title(name, fontsize=9)
        # A single output (sequence-to-vector) or a single input vector (vector-to-sequence) has no step axis.
        ax.set_xlabel("input step s" if infl.shape[1] > 1 else "input vector x")
        ax.set_ylabel("output step t" if infl.shape[0] > 1 else "output vector y")
        for axis, size in ((ax.xaxis, infl.shape[1]), (ax.yaxis, infl.shape[0])):
            if size > 1:
                axis.set_major_locator(MaxNLocator(integer=True))
            else:
                axis.set_ticks([])
    fig.colorbar(im, ax=axes, label="log10 ||dy_t/dx_s||_F (clipped at -6)")
    fig2, (ax,) = figure(1, width=6, height=3.6)
    for name, losses in curves.items():
        losses = np.asarray(losses)
        ax.plot(np.arange(1, losses.size + 1), losses, label=f"{name}: test MSE {mse[name]:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("training MSE (log)")
    ax.set_title("future-dependent (y_t = x_{t+2}) vs past-dependent (y_t = x_{t-2}) targets")
    ax.legend(fontsize=8)
    return {
        "causal_structure": (fig, "Block norms of the full Jacobian dy_t/dx_s (colour clipped at 1e-6). The causal RNN "
                                  "is exactly zero above the diagonal (darkest colour); the bidirectional one is not; "
                                  "the vector and encoder-decoder maps use every input step."),
        "future_vs_past_training": (fig2, "Training curves: only the bidirectional network can predict a future "
                                          "input; both predict a past one."),
    }


EXPERIMENT = experiment(
    "rnn-transductions",
    summary="sec. 10.2-10.4: causal vs bidirectional RNNs (exact Jacobian test), five transductions",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
