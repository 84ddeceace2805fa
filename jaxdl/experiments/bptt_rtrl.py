"""BPTT vs real-time recurrent learning (Deep Learning sec. 10.2.2): the same gradient, opposite costs.

Measured: (1) RTRL's forward-only gradient equals ``jax.grad`` through ``lax.scan`` (BPTT) to rounding, over seeds, in
float64 and float32; (2) the cost per step against the number of hidden units ``n`` (RTRL ``O(n^4)``, BPTT
``O(n^2)``), as XLA's compiled floating-point operation count of the scanned step (device independent) and as wall
time per gradient (on small widths per-step overheads hide the asymptotics, so its slope is reported, not asserted);
(3) XLA's compiled scratch memory against the sequence length ``T`` (BPTT grows like ``T n``, RTRL is flat at
``O(n^3)``) and the length where the two memory lines cross, which grows like ``n^2``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter

from jaxdl.experiments._common import figure, loglog_slope
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.timing import median_time
from jaxdl.rtrl import (bptt_value_and_grad, compile_with_memory, crossover_length, leaky_step, random_problem,
                        rtrl_value_and_grad, squared_error)

CLAIM = ("Deep Learning sec. 10.2.2: real-time recurrent learning computes the same gradient as back-propagation "
         "through time without storing the sequence, at O(n^4) time per step instead of O(n^2), so it only wins on "
         "memory, for sequences longer than about n^2 steps.")


def max_relative_error(a, b) -> float:
    """``max |a - b| / max |b|`` over all leaves (a scale-free gradient comparison)."""
    num = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                               jax.tree_util.tree_leaves(b)))
    den = max(float(jnp.max(jnp.abs(y))) for y in jax.tree_util.tree_leaves(b))
    return num / den


def agreement(seeds: int, n: int = 8, length: int = 40) -> dict:
    """Max relative gradient difference per seed. Matrix products run at full precision: on GPUs XLA's default
    float32 product is TF32 (10-bit mantissa), whose rounding alone is ~3e-4 relative here, not float32's."""
    out = {}
    for name, dtype in (("float64", jnp.float64), ("float32", jnp.float32)):
        with jax.enable_x64(dtype == jnp.float64), jax.default_matmul_precision("highest"):
            errs = []
            for s in range(seeds):
                params, h0, xs, ys = random_problem(jax.random.PRNGKey(s), n, length, dtype=dtype)
                _, g_rtrl = rtrl_value_and_grad(leaky_step, squared_error, params, h0, xs, ys)
                _, g_bptt = bptt_value_and_grad(leaky_step, squared_error, params, h0, xs, ys)
                errs.append(max_relative_error(g_rtrl, g_bptt))
        out[name] = errs
    return out


def step_flops(compiled) -> float:
    """XLA's floating-point operation count of a compiled gradient. Its cost model counts the body of a loop once,
    so for these ``lax.scan`` gradients this is the cost of one time step plus the small work outside the loop (RTRL's
    count does not change with ``T``, BPTT's by a few flops per step; ``nan`` where the backend reports none)."""
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"])
    except Exception:  # noqa: BLE001 - some backends report no cost analysis
        return float("nan")


def costs(widths, lengths, repeats: int) -> dict:
    """Time per gradient at ``T = lengths[0]``, compiled flops per step and scratch bytes at every ``T``, per width."""
    rows = []
    for n in widths:
        row = {"n": n, "time_s": {}, "temp_bytes": {"bptt": [], "rtrl": []}, "flops": {"bptt": [], "rtrl": []}}
        for name, fn in (("bptt", bptt_value_and_grad), ("rtrl", rtrl_value_and_grad)):
            f = functools.partial(fn, leaky_step, squared_error)
            for i, length in enumerate(lengths):
                args = random_problem(jax.random.PRNGKey(0), n, length)
                compiled, temp = compile_with_memory(f, *args)
                row["temp_bytes"][name].append(temp)
                row["flops"][name].append(step_flops(compiled))
                if i == 0:
                    row["time_s"][name] = median_time(compiled, *args, repeats=repeats)
        rows.append(row)
    return rows


def measure(*, seed: int, quick: bool) -> dict:
    """Gradient agreement over seeds, and compiled flops, scratch memory and wall time per width and length."""
    # Every (width, length) pair is a compilation: quick mode measures one width.
    seeds = 2 if quick else 5
    widths = (8,) if quick else (4, 8, 16, 32, 64)
    lengths = (32, 256) if quick else (64, 256, 1024)
    errs = agreement(seeds)
    rows = costs(widths, lengths, repeats=3 if quick else 7)
    crossover = [crossover_length(r["temp_bytes"]["bptt"], r["temp_bytes"]["rtrl"], lengths) for r in rows]
    t_bptt = np.array([r["time_s"]["bptt"] for r in rows])
    t_rtrl = np.array([r["time_s"]["rtrl"] for r in rows])
    # Exponents from the two largest widths (overheads dominate small n).
    slope_rtrl, slope_bptt = loglog_slope(widths[-2:], t_rtrl[-2:]), loglog_slope(widths[-2:], t_bptt[-2:])
    flops = {k: np.array([r["flops"][k][0] for r in rows]) for k in ("bptt", "rtrl")}
    flop_slope = {k: loglog_slope(widths[-2:], v[-2:]) for k, v in flops.items()}
    return {"gradient_relative_error": errs, "widths": list(widths), "lengths": list(lengths), "costs": rows,
            "crossover_length": crossover, "crossover_slope": loglog_slope(widths, crossover),
            "slope_rtrl": slope_rtrl, "slope_bptt": slope_bptt,
            "flops_per_step": {k: v.tolist() for k, v in flops.items()}, "flop_slope": flop_slope, "quick": quick}


def verdict(m: dict) -> Verdict:
    """Gradients agree, RTRL is slower, its memory flat in T and BPTT's growing; full runs also check the slopes."""
    errs, widths, lengths, rows = m["gradient_relative_error"], m["widths"], m["lengths"], m["costs"]
    flops, flop_slope, crossover_slope = m["flops_per_step"], m["flop_slope"], m["crossover_slope"]
    t_bptt, t_rtrl = rows[-1]["time_s"]["bptt"], rows[-1]["time_s"]["rtrl"]
    rtrl_flat = [max(r["temp_bytes"]["rtrl"]) / max(1, min(r["temp_bytes"]["rtrl"])) for r in rows]
    bptt_growth = [r["temp_bytes"]["bptt"][-1] / max(1, r["temp_bytes"]["bptt"][0]) for r in rows]
    scaling = (3.5 <= flop_slope["rtrl"] <= 4.5 and 1.5 <= flop_slope["bptt"] <= 2.5
               and 1.5 <= crossover_slope <= 2.5)
    passed = (max(errs["float64"]) <= 1e-10 and max(errs["float32"]) <= 1e-4 and t_rtrl > t_bptt
              and all(f <= 1.5 for f in rtrl_flat) and all(g >= 2.0 for g in bptt_growth)
              and (m["quick"] or scaling))
    text = (f"RTRL vs BPTT gradient, max relative error over {len(errs['float64'])} seeds: float64 "
            f"{max(errs['float64']):.1e}, float32 {max(errs['float32']):.1e}. Time per gradient at T={lengths[0]}, "
            f"n={widths[-1]}: RTRL {t_rtrl * 1e3:.1f} ms vs BPTT {t_bptt * 1e3:.2f} ms ({t_rtrl / t_bptt:.0f}x); "
            f"log-log slope over the two largest widths: RTRL {m['slope_rtrl']:.2f}, BPTT {m['slope_bptt']:.2f} "
            f"(BPTT's time is per-step overhead at these widths). XLA flops per step at n={widths[-1]}: RTRL "
            f"{flops['rtrl'][-1]:.3g} vs BPTT {flops['bptt'][-1]:.3g}, slopes {flop_slope['rtrl']:.2f} (n^4) and "
            f"{flop_slope['bptt']:.2f} (n^2). "
            f"Compiled scratch memory from T={lengths[0]} to {lengths[-1]}: BPTT x{min(bptt_growth):.1f}-"
            f"{max(bptt_growth):.1f}, RTRL x{max(rtrl_flat):.2f} at most; memory crossover length "
            + ", ".join(f"n={n}: T={c:.0f}" for n, c in zip(widths, m["crossover_length"]))
            + f" (log-log slope {crossover_slope:.2f} against n; n^2 predicts 2).")
    return Verdict(bool(passed), text)


def _log_ticks(axis, values):
    """Tick a log axis at the measured values only (the default minor labels overlap on short ranges)."""
    axis.set_major_locator(FixedLocator(values))
    axis.set_major_formatter(FixedFormatter([f"{v:g}" for v in values]))
    axis.set_minor_formatter(NullFormatter())


def figures(m: dict) -> dict:
    """Time, flops, memory and memory crossover against width and length; the gradient agreement per seed."""
    errs, rows, widths, lengths = m["gradient_relative_error"], m["costs"], m["widths"], m["lengths"]
    fig, axes = figure(4, width=4.2, height=3.6)
    ns = np.array(widths, float)
    ax = axes[0]
    for name, marker in (("bptt", "o"), ("rtrl", "s")):
        ax.loglog(ns, [r["time_s"][name] * 1e3 for r in rows], marker=marker, label=name.upper())
    ax.loglog(ns, rows[-1]["time_s"]["rtrl"] * 1e3 * (ns / ns[-1]) ** 4, "k:", label="slope 4 (n^4)")
    ax.set_ylabel(f"time per gradient, T={lengths[0]} (ms, log)")
    ax.set_title("wall time")
    ax = axes[1]
    for name, marker in (("bptt", "o"), ("rtrl", "s")):
        ax.loglog(ns, [r["flops"][name][0] for r in rows], marker=marker, label=name.upper())
    ax.loglog(ns, rows[-1]["flops"]["rtrl"][0] * (ns / ns[-1]) ** 4, "k:", label="slope 4 (n^4)")
    ax.loglog(ns, rows[-1]["flops"]["bptt"][0] * (ns / ns[-1]) ** 2, "k--", lw=0.8, label="slope 2 (n^2)")
    ax.set_ylabel("XLA flops per time step (log)")
    ax.set_title("compiled cost per step")
    for ax in axes[:2]:
        ax.set_xlabel("hidden units n")
        _log_ticks(ax.xaxis, widths)
        ax.legend(fontsize=8)
    ax = axes[2]
    for i, r in enumerate(rows):
        ax.loglog(lengths, np.maximum(r["temp_bytes"]["bptt"], 1), "-o", color=f"C{i}", label=f"n={r['n']}")
        ax.loglog(lengths, np.maximum(r["temp_bytes"]["rtrl"], 1), "--s", color=f"C{i}")
    ax.plot([], [], "k-o", label="BPTT")
    ax.plot([], [], "k--s", label="RTRL")
    ax.set_xlabel("sequence length T (steps)")
    _log_ticks(ax.xaxis, lengths)
    ax.set_ylabel("XLA scratch memory (bytes, log)")
    ax.set_title("memory: BPTT grows with T, RTRL does not")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax = axes[3]
    cross = np.asarray(m["crossover_length"])
    ax.loglog(ns, cross, "o-", label="measured crossover")
    ax.loglog(ns, cross[-1] * (ns / ns[-1]) ** 2, "k:", label="slope 2 (n^2)")
    ax.set_xlabel("hidden units n")
    _log_ticks(ax.xaxis, widths)
    ax.set_ylabel("T with BPTT memory = RTRL memory (log)")
    ax.set_title("memory crossover")
    ax.legend(fontsize=8)
    fig2, (ax,) = figure(1, width=5, height=3.6)
    for i, (name, e) in enumerate(errs.items()):
        ax.semilogy(np.full(len(e), i), np.maximum(e, 1e-18), "o", label=name)
    ax.axhline(1e-10, color="C0", ls=":", label="float64 bound 1e-10")
    ax.axhline(1e-4, color="C1", ls=":", label="float32 bound 1e-4")
    ax.set_xticks(range(len(errs)), list(errs))
    ax.set_ylabel("max |g_RTRL - g_BPTT| / max |g_BPTT| (log)")
    ax.set_title("RTRL reproduces BPTT")
    ax.legend(fontsize=8)
    return {
        "rtrl_cost": (fig, "From left: wall time per gradient against width (RTRL approaches slope 4; BPTT is "
                           "overhead-bound); XLA's flop count of one time step (slopes 4 and 2); compiled scratch "
                           "memory against sequence length; the length where BPTT starts to need more memory than "
                           "RTRL."),
        "rtrl_agreement": (fig2, "Relative difference between the RTRL and BPTT gradients, one dot per seed."),
    }


EXPERIMENT = experiment(
    "bptt-rtrl", summary="sec. 10.2.2: RTRL = BPTT gradients (float64 and float32); time O(n^4) vs memory O(T n)",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
