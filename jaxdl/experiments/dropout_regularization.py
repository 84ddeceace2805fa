"""Dropout as a regulariser, and as cheap bagging (Deep Learning sec. 7.11-7.12), on digits.

The same network is trained with and without dropout (inclusion 0.8 for inputs, 0.5 for hidden units; a fresh mask
per example) for the same number of steps; dropout should narrow the gap between training and test performance.
Bagging trains ``k`` networks without dropout on bootstrap resamples and averages their softmax outputs (eq. 7.52);
it is compared with the dropout network on accuracy, training time, stored parameters and inference passes.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import digits
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.init import stack
from jaxdl.models import DropoutMLP, dropout_split

CLAIM = ("Deep Learning sec. 7.12: dropout narrows the train/test gap of the same network trained without it, and "
         "approximates bagging (sec. 7.11) at the cost of one network instead of k.")


def train_networks(net, params, x, y, index_sets, keys, *, epochs: int, batch_size: int, learning_rate: float):
    """Minibatch Adam for stacked networks (vmapped): network ``i`` trains on ``x[index_sets[i]]`` (the data, or a
    bootstrap resample) with dropout masks and shuffles from ``keys[i]``.

    Returns ``(params, losses, seconds)``: ``seconds`` is the training time after compilation (compiled ahead of
    time with ``lower().compile()``), so costs compare runs, not compilers."""
    n = index_sets.shape[1]
    steps = n // batch_size
    optimizer = optax.adam(learning_rate)

    def loss_fn(p, xb, yb, k):
        logits = net(p, xb, key=k, train=True)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

    def one(p, idx, key):
        def epoch(carry, k):
            k_perm, k_drop = jax.random.split(k)
            order = idx[jax.random.permutation(k_perm, n)][: steps * batch_size].reshape(steps, batch_size)

            def step(carry, inputs):
                p, s = carry
                b, kd = inputs
                loss, grads = jax.value_and_grad(loss_fn)(p, x[b], y[b], kd)
                updates, s = optimizer.update(grads, s, p)
                return (optax.apply_updates(p, updates), s), loss

            carry, losses = jax.lax.scan(step, carry, (order, jax.random.split(k_drop, steps)))
            return carry, jnp.mean(losses)

        (p, _), losses = jax.lax.scan(epoch, (p, optimizer.init(p)), jax.random.split(key, epochs))
        return p, losses

    compiled = jax.jit(jax.vmap(one)).lower(params, index_sets, keys).compile()
    start = time.perf_counter()
    trained, losses = jax.block_until_ready(compiled(params, index_sets, keys))
    return trained, losses, time.perf_counter() - start


def _evaluate(net, params, x, y):
    """Weight-scaling softmax outputs of stacked networks, ``(networks, examples, classes)``."""
    return jax.jit(jax.vmap(lambda p, xb: jax.nn.softmax(net(p, xb)), in_axes=(0, None)))(params, x)


def _scores(probs, y):
    nll = float(-jnp.mean(jnp.log(jnp.take_along_axis(probs, y[:, None], axis=1) + 1e-12)))
    return {"accuracy": float(jnp.mean(jnp.argmax(probs, 1) == y)), "nll": nll}


def measure(*, seed: int, quick: bool) -> dict:
    """The same network with and without dropout over several seeds, and a bagged ensemble without dropout."""
    sizes = [64, 64, 64, 10] if quick else [64, 256, 256, 10]
    epochs = 15 if quick else 100
    seeds = 2 if quick else 3
    bags = 2 if quick else 5  # quick: as many as the seeds, so the no-dropout training compiles once
    batch_size, lr = 32, 1e-3
    data = digits(seed=seed)
    x, y = data.x_train, data.y_train
    n = x.shape[0]
    key = jax.random.PRNGKey(seed)
    k_plain, k_drop, k_bag, k_boot = jax.random.split(key, 4)

    def members(include, count, offset):
        models = [DropoutMLP(sizes, include=include, rngs=nnx.Rngs(seed * 100 + offset + i)) for i in range(count)]
        nets = [dropout_split(m) for m in models]
        return nets[0][0], stack([p for _, p in nets])

    results, curves, times = {}, {}, {}
    identity = jnp.tile(jnp.arange(n), (seeds, 1))
    # The same architecture without dropout (inclusion 1 everywhere) and with the book's defaults.
    for name, include, k in (("no dropout", 1.0, k_plain), ("dropout", None, k_drop)):
        net, params = members(include, seeds, 0)
        trained, losses, elapsed = train_networks(net, params, x, y, identity, jax.random.split(k, seeds),
                                                  epochs=epochs, batch_size=batch_size, learning_rate=lr)
        train_p, test_p = _evaluate(net, trained, x, y), _evaluate(net, trained, data.x_test, data.y_test)
        per_seed = [{"train": _scores(train_p[i], y), "test": _scores(test_p[i], data.y_test)} for i in range(seeds)]
        results[name] = {
            "per_seed": per_seed,
            "train_accuracy": float(np.mean([s["train"]["accuracy"] for s in per_seed])),
            "test_accuracy": float(np.mean([s["test"]["accuracy"] for s in per_seed])),
            "train_nll": float(np.mean([s["train"]["nll"] for s in per_seed])),
            "test_nll": float(np.mean([s["test"]["nll"] for s in per_seed])),
        }
        results[name]["accuracy_gap"] = results[name]["train_accuracy"] - results[name]["test_accuracy"]
        results[name]["nll_gap"] = results[name]["test_nll"] - results[name]["train_nll"]
        curves[name] = np.asarray(losses)
        times[name] = elapsed / seeds  # one network's share of the vmapped run

    # Bagging: k networks without dropout, each on its own bootstrap resample of the training set.
    net, params = members(1.0, bags, 1000)
    boot = jax.random.randint(k_boot, (bags, n), 0, n)
    trained, _, elapsed = train_networks(net, params, x, y, boot, jax.random.split(k_bag, bags), epochs=epochs,
                                         batch_size=batch_size, learning_rate=lr)
    ensemble = _evaluate(net, trained, data.x_test, data.y_test).mean(0)
    members_test = _evaluate(net, trained, data.x_test, data.y_test)
    ensemble_train = _evaluate(net, trained, x, y).mean(0)
    num_params = sum(int(a.size) for a in jax.tree_util.tree_leaves(params)) // bags
    results["bagging"] = {
        "k": bags, "test": _scores(ensemble, data.y_test), "train": _scores(ensemble_train, y),
        "member_test_accuracy_mean": float(np.mean([_scores(m, data.y_test)["accuracy"] for m in members_test])),
        "training_seconds": elapsed, "stored_parameters": bags * num_params, "forward_passes_per_prediction": bags,
    }
    results["dropout"].update(training_seconds_per_network=times["dropout"], stored_parameters=num_params,
                              forward_passes_per_prediction=1)
    results["no dropout"].update(training_seconds_per_network=times["no dropout"], stored_parameters=num_params)

    return {"sizes": sizes, "epochs": epochs, "seeds": seeds, "batch_size": batch_size, "learning_rate": lr,
            "results": results, "training_curves": curves}


def verdict(m: dict) -> Verdict:
    """Dropout narrows both the accuracy gap and the NLL gap between training and test."""
    results, bags = m["results"], m["results"]["bagging"]["k"]
    plain, drop, bag = results["no dropout"], results["dropout"], results["bagging"]
    passed = drop["accuracy_gap"] < plain["accuracy_gap"] and drop["nll_gap"] < plain["nll_gap"]
    text = (f"Network {m['sizes']}, {m['epochs']} epochs, mean of {m['seeds']} seeds. Without dropout: train/test "
            f"accuracy {plain['train_accuracy']:.4f}/{plain['test_accuracy']:.4f} (gap {plain['accuracy_gap']:.4f}), "
            f"NLL gap {plain['nll_gap']:.3f}. With dropout (0.8/0.5): {drop['train_accuracy']:.4f}/"
            f"{drop['test_accuracy']:.4f} (gap {drop['accuracy_gap']:.4f}), NLL gap {drop['nll_gap']:.3f}. Bagging "
            f"{bags} networks: test accuracy {bag['test']['accuracy']:.4f} (members "
            f"{bag['member_test_accuracy_mean']:.4f}"
            f"), {bags}x the parameters and forward passes, {bag['training_seconds']:.1f} s to train vs "
            f"{drop['training_seconds_per_network']:.1f} s for one dropout network.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Training curves with and without dropout, and train/test accuracy of the three models."""
    results = m["results"]
    fig, (ax0, ax1) = figure(2)
    for name, c in m["training_curves"].items():
        for i, row in enumerate(np.asarray(c)):
            ax0.semilogy(np.arange(1, row.size + 1), row, color="C0" if name == "dropout" else "C1", alpha=0.7,
                         label=name if i == 0 else None)
    ax0.set_xlabel("epoch")
    ax0.set_ylabel("training loss with masks (log)")
    ax0.set_title("training curves")
    ax0.legend()
    names = ["no dropout", "dropout"]
    train = [results[n]["train_accuracy"] for n in names] + [results["bagging"]["train"]["accuracy"]]
    test = [results[n]["test_accuracy"] for n in names] + [results["bagging"]["test"]["accuracy"]]
    pos = np.arange(3)
    ax1.bar(pos - 0.2, train, width=0.4, label="train")
    ax1.bar(pos + 0.2, test, width=0.4, label="test")
    ax1.set_xticks(pos, names + [f"bagging (k={results['bagging']['k']})"])
    ax1.set_ylim(min(test) - 0.03, 1.005)
    ax1.set_ylabel("accuracy")
    ax1.set_title("train vs test accuracy")
    ax1.legend()
    return {"dropout_regularization": (fig, "Left: training loss per epoch (with dropout masks where used). Right: "
                                            "train and test accuracy of the network without dropout, with dropout "
                                            "(weight scaling at test time), and a bagged ensemble.")}


EXPERIMENT = experiment(
    "dropout-regularization",
    summary="sec. 7.11-7.12: dropout narrows the train/test gap on digits; vs bagging k nets",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
