"""Lanczos against its own Hessian-vector products, and against matfree's ``tridiag_sym`` (issue 15).

ANCHORS.md setting B (benchmarks/setting_b.py): the MLP 3072-W-W-W-10 (tanh) and the four-convolution CNN, widths
and batch times ``scale``, random data, float32. For each size:

- one HVP (jitted, median);
- 90-step Lanczos and one residual product, k=1: ours (:func:`analysis.hessian_eigs`, row-major basis) with partial
  reorthogonalisation (the default) and with full reorthogonalisation against the filled rows, and matfree's
  ``tridiag_sym(reortho="full")`` driven by the same objective and the same tridiagonal eigensolver (what
  ``analysis.hessian_eigs`` ran before); the three alternate in every repeat; each reported as a multiple of the
  time of its 91 HVPs;
- the largest Ritz value and its residual for each (same start vector), and how many of the 90 partial steps
  reorthogonalised against the whole basis.

``--compile`` also times the first compilation of both programs at the full 46.2M-parameter MLP (tracing and
lowering, then XLA's compile, no persistent cache), without running them.

Usage: python benchmarks/lanczos.py [--repeats N] [--mlp-scales S ...] [--cnn-scales S ...] [--compile] [--json P]
Prints a table and writes JSON. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matfree.decomp
import numpy as np

jax.config.update("jax_default_matmul_precision", "highest")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from analysis._objective import make_objective  # noqa: E402
from analysis.lanczos import lanczos_decompose_counted, tridiagonal_eigh  # noqa: E402
from benchmarks.setting_b import problem  # noqa: E402
from jaxdl.report import environment  # noqa: E402
from jaxdl.timing import median_time  # noqa: E402

STEPS = 90


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_matvecs"))
def matfree_top(loss_fn, params, x, y, key, num_matvecs):
    """matfree's tridiag_sym on the same flat objective, then the top Ritz pair and its residual (one product)."""
    obj = make_objective(loss_fn, params, (x, y))
    v0 = jax.random.normal(key, obj.theta.shape, obj.theta.dtype)  # the start vector analysis.hessian_eigs draws
    decompose = matfree.decomp.tridiag_sym(num_matvecs, reortho="full", materialize=True, custom_vjp=False)
    Q, T, *_ = decompose(lambda v: obj.hvp(obj.theta, v), v0)
    ritz, S = tridiagonal_eigh(T)
    top = jnp.nanargmax(ritz)
    vec = S[:, top].astype(Q.dtype) @ Q
    vec = vec / jnp.linalg.norm(vec)
    return ritz[top], jnp.linalg.norm(obj.hvp(obj.theta, vec) - ritz[top] * vec)


def ours_top(loss_fn, params, x, y, key, num_matvecs, reorthogonalise):
    out = analysis.hessian_eigs(loss_fn, params, x, y, k=1, num_matvecs=num_matvecs, key=key,
                                reorthogonalise=reorthogonalise)
    return out.eigenvalues[-1], out.residuals[-1]


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_matvecs"))
def partial_count(loss_fn, params, x, y, key, num_matvecs):
    """Steps of partial reorthogonalisation that read the whole basis (same objective and start vector)."""
    obj = make_objective(loss_fn, params, (x, y))
    v0 = jax.random.normal(key, obj.theta.shape, obj.theta.dtype)
    return lanczos_decompose_counted(lambda v: obj.hvp(obj.theta, v), v0, num_matvecs, None, "partial")[1]


def bench(model: str, scale: float, repeats: int) -> dict:
    loss, params, x, y = problem(model, scale)
    n = analysis.num_params(params)
    key = jax.random.PRNGKey(0)
    v = jax.tree_util.tree_map(lambda p: jax.random.normal(jax.random.PRNGKey(3), p.shape, p.dtype), params)
    hvp = jax.jit(lambda p, u, a, b: analysis.hvp(loss, p, u, a, b))
    t_hvp = median_time(lambda: hvp(params, v, x, y), repeats=repeats, inner=3)
    runs = {"ours": lambda: ours_top(loss, params, x, y, key, STEPS, "partial"),
            "ours_full": lambda: ours_top(loss, params, x, y, key, STEPS, "full"),
            "matfree": lambda: matfree_top(loss, params, x, y, key, STEPS)}
    first, times, tops = {}, {name: [] for name in runs}, {}
    for name, fn in runs.items():
        start = time.perf_counter()
        tops[name] = [float(t) for t in jax.block_until_ready(fn())]
        first[name] = time.perf_counter() - start
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    products = STEPS + 1
    row = {"model": model, "scale": scale, "params": n, "batch": int(x.shape[0]), "hvp_s": t_hvp,
           "products": products}
    for name in runs:
        t = float(np.median(times[name]))
        row[name] = {"s": t, "over_hvps": t / (products * t_hvp), "first_call_s": first[name],
                     "top_eigenvalue": tops[name][0], "top_residual": tops[name][1]}
    row["matfree_over_ours"] = row["matfree"]["s"] / row["ours"]["s"]
    row["full_over_partial"] = row["ours_full"]["s"] / row["ours"]["s"]
    row["partial_full_passes"] = int(partial_count(loss, params, x, y, key, STEPS))
    print(f"{model} x{scale:<5} n={n:>10,}  HVP {t_hvp * 1e3:8.2f} ms   partial {row['ours']['s']:7.3f} s "
          f"({row['ours']['over_hvps']:.2f}x its HVPs, {row['partial_full_passes']} full passes)   full "
          f"{row['ours_full']['s']:7.3f} s ({row['ours_full']['over_hvps']:.2f}x)   matfree {row['matfree']['s']:7.3f} s "
          f"({row['matfree']['over_hvps']:.2f}x)   top {tops['ours'][0]:.6g} / {tops['ours_full'][0]:.6g} / "
          f"{tops['matfree'][0]:.6g}   residual {tops['ours'][1]:.2g} / {tops['ours_full'][1]:.2g} / "
          f"{tops['matfree'][1]:.2g}", flush=True)
    return row


def compile_times() -> dict:
    """First trace+lower and XLA compile of both 90-step programs at the full setting-B MLP (46.2M parameters)."""
    loss, params, x, y = problem("mlp", 1.0)
    key = jax.random.PRNGKey(0)
    from analysis.lanczos import _hessian_eigs
    programs = {
        "ours": lambda: _hessian_eigs.lower(loss, params, (x, y), key, 1, "largest", STEPS, False, False, None,
                                            None, "partial"),
        "matfree": lambda: matfree_top.lower(loss, params, x, y, key, STEPS),
    }
    out = {"params": analysis.num_params(params)}
    for name, lower in programs.items():
        start = time.perf_counter()
        lowered = lower()
        traced = time.perf_counter() - start
        start = time.perf_counter()
        lowered.compile()
        out[name] = {"trace_and_lower_s": traced, "compile_s": time.perf_counter() - start}
        print(f"compile, MLP 46.2M, {name}: trace+lower {traced:.2f} s, XLA compile {out[name]['compile_s']:.2f} s",
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mlp-scales", type=float, nargs="*", default=[0.05, 0.1, 0.2])
    ap.add_argument("--cnn-scales", type=float, nargs="*", default=[0.25])
    ap.add_argument("--compile", action="store_true", help="also time compiling both at 46.2M parameters")
    ap.add_argument("--json", default="benchmarks/results/lanczos.json")
    args = ap.parse_args()
    load = os.getloadavg()
    rows = [bench("mlp", s, args.repeats) for s in args.mlp_scales]
    rows += [bench("cnn", s, args.repeats) for s in args.cnn_scales]
    out = {"rows": rows, "steps": STEPS, "repeats": args.repeats, "load_average_start": load,
           "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "environment": environment(), "date": time.strftime("%Y-%m-%d")}
    if args.compile:
        out["compile"] = compile_times()
    out["load_average_end"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"load average {load[0]:.2f} at the start, {out['load_average_end'][0]:.2f} at the end; wrote {args.json}")


if __name__ == "__main__":
    main()
