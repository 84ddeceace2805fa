"""VAE benchmark, ANCHORS.md setting: digits binarised at > 0.5, train_test_split(random_state=0, test_size=0.25),
64-128-8 (tanh) Gaussian encoder, Bernoulli decoder, Adam 1e-3, batch 32, 200 epochs. Reports the test negative ELBO
(100 z per image), the importance-weighted bound -L_1000, and time per epoch.

Usage: python benchmarks/vae.py [--json PATH] [--seeds N] [--epochs E]
Prints a table and writes JSON. Asserts nothing about speed. Timed after a one-epoch warm-up that compiles the epoch;
each fit is timed end to end and divided by the number of epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxdl.data import digits_binarized  # noqa: E402
from jaxdl.experiments.vae import ANCHOR_ELBO, ANCHOR_IWAE, TARGET, evaluate  # noqa: E402
from jaxdl.models.vae import VAE, fit_vae  # noqa: E402
from jaxdl.report import environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (default 3)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs (default 200, as ANCHORS.md)")
    args = parser.parse_args()
    data = digits_binarized()
    settings = dict(batch_size=32, learning_rate=1e-3)
    fit_vae(VAE(64, [128], 8, rngs=nnx.Rngs(123)), data.x_train, key=jax.random.key(123), epochs=1, **settings)
    runs = []
    for seed in range(args.seeds):
        start = time.perf_counter()
        model, _ = fit_vae(VAE(64, [128], 8, activation="tanh", rngs=nnx.Rngs(seed)), data.x_train,
                           key=jax.random.key(seed), epochs=args.epochs, **settings)
        jax.block_until_ready(nnx.state(model))
        seconds = time.perf_counter() - start
        b = evaluate(model, jax.random.key(1000 + seed), data.x_test, (1, 1000), elbo_samples=100, kl_samples=10)
        runs.append({"seed": seed, "test_negative_elbo": -b["elbo"], "test_negative_iwae_1000": -b["L_1000"],
                     "seconds_per_epoch": seconds / args.epochs})
    med = {k: statistics.median(r[k] for r in runs) for k in ("test_negative_elbo", "test_negative_iwae_1000",
                                                               "seconds_per_epoch")}
    print(f"VAE 64-128-8 (tanh), Bernoulli decoder, Adam 1e-3, batch 32, {args.epochs} epochs, {args.seeds} seeds")
    print(f"{'seed':<6}{'-ELBO (test)':>14}{'-L_1000 (test)':>16}{'ms/epoch':>11}")
    for r in runs:
        print(f"{r['seed']:<6}{r['test_negative_elbo']:>14.3f}{r['test_negative_iwae_1000']:>16.3f}"
              f"{1e3 * r['seconds_per_epoch']:>11.2f}")
    print(f"{'median':<6}{med['test_negative_elbo']:>14.3f}{med['test_negative_iwae_1000']:>16.3f}"
          f"{1e3 * med['seconds_per_epoch']:>11.2f}")
    print(f"ANCHORS.md: -ELBO ~{ANCHOR_ELBO}, -L_1000 ~{ANCHOR_IWAE}; target -ELBO <= {TARGET}")
    if args.json:
        record = {"benchmark": "vae", "epochs": args.epochs, "settings": settings, "runs": runs, "median": med,
                  "environment": environment()}
        Path(args.json).write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
