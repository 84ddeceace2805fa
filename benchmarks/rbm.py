"""RBM benchmark, ANCHORS.md setting: digits binarised at > 0.5, train_test_split(random_state=0, test_size=0.25),
10 hidden units, 100 epochs. Ours (CD-1, CD-10, PCD-1 with 10 chains; batch 10, SGD with momentum 0.5, learning rate
0.05 decayed linearly, weight decay 1e-4) against scikit-learn's BernoulliRBM (learning rate 0.1, batch 10, its PCD-1
with 10 chains), every model scored by the
same exact test log-likelihood (log Z by enumerating the 2^10 hidden states), time per epoch measured in the same run.

Usage: python benchmarks/rbm.py [--json PATH] [--seeds N] [--epochs E]
Prints a table and writes JSON. Asserts nothing about speed. Ours is timed after a one-epoch warm-up that compiles
the epoch; each fit is timed end to end (initialisation, epochs, host loop) and divided by the number of epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxdl.data import digits_binarized  # noqa: E402
from jaxdl.experiments.rbm import METHODS, TRAINING, independent_pixels_log_likelihood, sklearn_rbm  # noqa: E402
from jaxdl.models.rbm import fit_rbm, log_likelihood_exact  # noqa: E402
from jaxdl.report import environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (default 100, as ANCHORS.md)")
    args = parser.parse_args()
    data = digits_binarized()
    x_train, x_test = data.x_train, data.x_test
    rows: dict[str, dict[str, list[float]]] = {}

    for name, extra in METHODS.items():  # compile each method's epoch once, outside the timings
        fit_rbm(x_train, 10, key=jax.random.key(123), epochs=1, **TRAINING, **extra)
    sk_name = "scikit-learn BernoulliRBM"
    # Interleaved per seed, so that load on the shared machine falls on all models alike; ratios are per seed.
    for seed in range(args.seeds):
        params, seconds = sklearn_rbm(x_train, 10, args.epochs, seed)
        row = rows.setdefault(sk_name, {"test_log_likelihood": [], "seconds_per_epoch": [], "sklearn_over_ours": []})
        row["test_log_likelihood"].append(float(jnp.mean(log_likelihood_exact(params, x_test))))
        row["seconds_per_epoch"].append(seconds / args.epochs)
        row["sklearn_over_ours"].append(1.0)
        for name, extra in METHODS.items():
            start = time.perf_counter()
            params, _ = fit_rbm(x_train, 10, key=jax.random.key(seed), epochs=args.epochs, **TRAINING, **extra)
            jax.block_until_ready(params)
            per_epoch = (time.perf_counter() - start) / args.epochs
            row = rows.setdefault(f"ours {name}", {"test_log_likelihood": [], "seconds_per_epoch": [],
                                                   "sklearn_over_ours": []})
            row["test_log_likelihood"].append(float(jnp.mean(log_likelihood_exact(params, x_test))))
            row["seconds_per_epoch"].append(per_epoch)
            row["sklearn_over_ours"].append(seconds / args.epochs / per_epoch)

    baseline = independent_pixels_log_likelihood(x_train, x_test)
    summary = {}
    print(f"RBM, 10 hidden, {args.epochs} epochs, binarised digits ({x_train.shape[0]} train / {x_test.shape[0]} "
          f"test), {args.seeds} seeds; exact test log-likelihood (nats/image); medians over seeds")
    print(f"{'model':<28}{'median LL':>11}{'min':>9}{'max':>9}{'ms/epoch':>11}{'sklearn/ours':>14}")
    for name, row in rows.items():
        ll, t = row["test_log_likelihood"], statistics.median(row["seconds_per_epoch"])
        ratio = statistics.median(row["sklearn_over_ours"])
        summary[name] = {"median_test_log_likelihood": statistics.median(ll), "min": min(ll), "max": max(ll),
                         "median_seconds_per_epoch": t, "median_sklearn_time_over_ours": ratio, **row}
        print(f"{name:<28}{statistics.median(ll):>11.3f}{min(ll):>9.3f}{max(ll):>9.3f}{1e3 * t:>11.2f}{ratio:>14.2f}")
    print(f"{'independent pixels':<28}{baseline:>11.3f}")
    print("ANCHORS.md: CD-1 -19.96, CD-10 -19.92, PCD-1 -20.08, scikit-learn -21.72, independent pixels -24.64; "
          "target ours >= -20.5")
    if args.json:
        record = {"benchmark": "rbm", "epochs": args.epochs, "seeds": args.seeds, "training": TRAINING,
                  "results": summary, "independent_pixels": baseline, "environment": environment()}
        Path(args.json).write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
