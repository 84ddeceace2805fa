"""Batched probes (issue 15): the stochastic estimators with their probes vectorised together against one at a time.

Setting A (ANCHORS.md): the digits MLP 64-H-H-10, tanh, float32, on the full batch of 1,797 examples and on its first
256 (a minibatch, where one product is too small to keep two cores busy). For each estimator
at ``--probes`` probes (default 10) it times ``batch_size=1`` (probes one after another) against
``batch_size=probes`` (one block product per step for all of them), alternating the two in each repeat, and reports
the ratio of the medians and the largest difference between the two results (same key, hence the same probes):

- SLQ (:func:`analysis.spectral_density`, 100 Lanczos steps per probe): nodes and weights;
- Hutchinson and Hutch++ traces (:func:`analysis.hessian_trace`): estimate and standard error;
- the Hutchinson diagonal (:func:`analysis.curvature_diagonal`): every entry;
- ``slq-matfree``: the SLQ this library ran before (matfree's ``tridiag_sym`` per probe, probes one after another),
  timed in the same loop, against ours batched: the before/after of issue 15 in one run.

Usage: python benchmarks/probes.py [--repeats N] [--probes P] [--hidden H ...] [--examples M ...] [--json PATH]
Prints a table and writes JSON. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import functools

import jax
import matfree.decomp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from benchmarks.curvature import setting_a  # noqa: E402
from analysis._objective import make_objective  # noqa: E402
from analysis.density import quadrature  # noqa: E402
from analysis.lanczos import tridiagonal_eigh  # noqa: E402
from jaxdl.report import environment  # noqa: E402


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_matvecs", "num_probes"))
def matfree_slq(loss_fn, params, x, y, key, num_matvecs, num_probes):
    """The previous analysis.spectral_density: the same probes, matfree's tridiag_sym per probe, lax.map."""
    obj = make_objective(loss_fn, params, (x, y))
    probes = jax.random.rademacher(key, (num_probes, obj.theta.shape[0]), obj.theta.dtype)
    decompose = matfree.decomp.tridiag_sym(num_matvecs, reortho="full", materialize=True, custom_vjp=False)

    def one(z):
        _, T, *_ = decompose(lambda v: obj.hvp(obj.theta, v), z)
        ritz, S = tridiagonal_eigh(T)
        return quadrature(ritz, S[0, :], obj.theta.dtype)

    return jax.lax.map(one, probes)


def estimators(loss, params, x, y, probes: int, slq_steps: int):
    """name -> (function of batch_size returning the arrays to compare)."""
    key = jax.random.PRNGKey(0)
    return {
        "slq": lambda bs: analysis.spectral_density(loss, params, x, y, num_matvecs=slq_steps, num_probes=probes,
                                                    key=key, batch_size=bs)[:2],
        "hutchinson": lambda bs: analysis.hessian_trace(loss, params, x, y, num_matvecs=probes, key=key,
                                                        method="hutchinson", batch_size=bs)[:2],
        "hutch++": lambda bs: analysis.hessian_trace(loss, params, x, y, num_matvecs=3 * probes, key=key,
                                                     method="hutch++", batch_size=bs)[:2],
        "diagonal": lambda bs: jax.tree_util.tree_leaves(analysis.curvature_diagonal(
            loss, params, x, y, method="hutchinson", num_matvecs=probes, key=key, batch_size=bs).diagonal),
        # batch_size 1: the previous implementation; batch_size = probes: ours, batched
        "slq-matfree": lambda bs: (matfree_slq(loss, params, x, y, key, slq_steps, probes) if bs == 1 else
                                   analysis.spectral_density(loss, params, x, y, num_matvecs=slq_steps,
                                                             num_probes=probes, key=key, batch_size=bs)[:2]),
    }


def timed(fn) -> tuple[float, list]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def largest_difference(a: list, b: list) -> float:
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)))) for u, v in zip(a, b))


def run(hidden: int, probes: int, repeats: int, slq_steps: int, examples: int) -> list[dict]:
    loss, params, x, y = setting_a(hidden, trained_steps=200)
    x, y = x[:examples], y[:examples]
    rows = []
    for name, fn in estimators(loss, params, x, y, probes, slq_steps).items():
        # Hutch++ spends a third of its products on Hutchinson probes and the rest in two sketch blocks; its
        # ``batch_size`` is the number of products vectorised at a time in each stage.
        batched = probes
        first = {bs: timed(lambda: fn(bs))[0] for bs in (1, batched)}  # compile included
        times = {1: [], batched: []}
        outs = {}
        for _ in range(repeats):
            for bs in (1, batched):
                t, outs[bs] = timed(lambda: fn(bs))
                times[bs].append(t)
        seq, vec = float(np.median(times[1])), float(np.median(times[batched]))
        rows.append({"estimator": name, "hidden": hidden, "num_params": analysis.num_params(params),
                     "examples": int(x.shape[0]),
                     "probes": probes, "sequential_s": seq, "batched_s": vec, "speedup": seq / vec,
                     "first_call_s": {"sequential": first[1], "batched": first[batched]},
                     "max_abs_difference": largest_difference(outs[1], outs[batched])})
        print(f"H={hidden:4d} batch {x.shape[0]:4d} {name:10s} one at a time {seq * 1e3:8.1f} ms   "
              f"batched {vec * 1e3:8.1f} ms   {seq / vec:5.2f}x   max |diff| {rows[-1]['max_abs_difference']:.2e}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--probes", type=int, default=10)
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--slq-steps", type=int, default=100)
    ap.add_argument("--examples", type=int, nargs="+", default=[1797, 256],
                    help="batch sizes: the first examples of the digits (1,797 = the full batch)")
    ap.add_argument("--json", default="benchmarks/results/probes.json")
    args = ap.parse_args()
    load = os.getloadavg()
    rows = [row for h in args.hidden for m in args.examples
            for row in run(h, args.probes, args.repeats, args.slq_steps, m)]
    out = {"rows": rows, "repeats": args.repeats, "load_average_start": load, "load_average_end": os.getloadavg(),
           "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "environment": environment(), "date": time.strftime("%Y-%m-%d")}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"load average {load[0]:.2f} at the start, {out['load_average_end'][0]:.2f} at the end; wrote {args.json}")


if __name__ == "__main__":
    main()
