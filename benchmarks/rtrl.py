"""RTRL vs BPTT cost: time per gradient and XLA's compiled scratch memory against width n and sequence length T.

Same leaky Elman cell and squared-error readout as ``jaxdl experiment bptt-rtrl``. For each width the gradient is
compiled once per length (``jax.jit(...).lower(...).compile()``, whose ``memory_analysis()`` gives the scratch
bytes), called once to warm up, then timed (median of ``--repeats`` calls, ``block_until_ready``). Reported: the
ratio RTRL / BPTT of time at the shortest length, the memory of each at every length, and the length at which BPTT's
memory (fitted linear in T) reaches RTRL's (flat in T). Asserts nothing about speed.

Usage: ``python benchmarks/rtrl.py [--json PATH] [--repeats 7] [--widths 4 8 16 32 64] [--lengths 64 256 1024]``.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import jax
import numpy as np

from jaxdl.rtrl import crossover_length, leaky_step, random_problem, squared_error
from jaxdl.timing import median_time
from jaxdl.rtrl import bptt_value_and_grad, compile_with_memory, rtrl_value_and_grad


def measure(n: int, lengths, repeats: int) -> dict:
    row = {"n": n, "time_s": {}, "temp_bytes": {}}
    for name, fn in (("bptt", bptt_value_and_grad), ("rtrl", rtrl_value_and_grad)):
        f = functools.partial(fn, leaky_step, squared_error)
        row["temp_bytes"][name] = []
        row["time_s"][name] = []
        for length in lengths:
            args = random_problem(jax.random.PRNGKey(0), n, length)
            compiled, temp = compile_with_memory(f, *args)
            row["temp_bytes"][name].append(temp)
            row["time_s"][name].append(median_time(compiled, *args, repeats=repeats))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    rows = [measure(n, args.lengths, args.repeats) for n in args.widths]
    print(f"jax {jax.__version__}, {jax.default_backend()}; float32; median of {args.repeats} runs")
    print(f"{'n':>4} {'T':>6} {'BPTT ms':>9} {'RTRL ms':>10} {'RTRL/BPTT':>10} {'BPTT KiB':>10} {'RTRL KiB':>10}")
    for r in rows:
        for i, length in enumerate(args.lengths):
            tb, tr = r["time_s"]["bptt"][i], r["time_s"]["rtrl"][i]
            mb, mr = r["temp_bytes"]["bptt"][i] / 1024, r["temp_bytes"]["rtrl"][i] / 1024
            print(f"{r['n']:>4} {length:>6} {tb * 1e3:>9.3f} {tr * 1e3:>10.3f} {tr / tb:>10.1f} {mb:>10.1f} {mr:>10.1f}")
    cross = {r["n"]: crossover_length(r["temp_bytes"]["bptt"], r["temp_bytes"]["rtrl"], args.lengths) for r in rows}
    print("memory crossover length (BPTT = RTRL): " + ", ".join(f"n={n}: T={c:.0f}" for n, c in cross.items()))
    ns = np.array(args.widths, float)
    t_rtrl = np.array([r["time_s"]["rtrl"][0] for r in rows])
    t_bptt = np.array([r["time_s"]["bptt"][0] for r in rows])
    if len(ns) > 1:
        slope_r = float(np.polyfit(np.log(ns[-2:]), np.log(t_rtrl[-2:]), 1)[0])
        slope_b = float(np.polyfit(np.log(ns[-2:]), np.log(t_bptt[-2:]), 1)[0])
        print(f"log-log time slope over the two largest widths at T={args.lengths[0]}: RTRL {slope_r:.2f}, "
              f"BPTT {slope_b:.2f}")
    if args.json:
        from jaxdl.report import environment

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "lengths": args.lengths, "crossover_length": cross,
                                         "repeats": args.repeats, "environment": environment()}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
