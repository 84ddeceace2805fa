"""Curvature benchmark, ANCHORS.md setting A: scikit-learn digits (1797 x 64, pixels / 16), full batch, MLP
64-H-H-10 with tanh, softmax cross-entropy, float32.

Measures, in one run: HVP / gradient time (H = 32 and 128); the dense Hessian and full spectrum (3.5k parameters,
first call including compile) and the peak memory of a 10k-parameter dense Hessian; Lanczos top-5 time and error;
Hutchinson / Hutch++ trace error at equal matvecs; SLQ time and Wasserstein-1 distance to the exact spectrum. With
the ``compare`` extra installed (torch 2.13.0, pyhessian 0.1) it runs PyHessian and PyTorch's double-backward HVP on
the identical network (weights copied across) on the same data in the same process.

Usage: python benchmarks/curvature.py [--json PATH] [--repeats N] [--no-peers] [--no-dense-10k]
Prints a table and writes JSON. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from jaxdl.data import digits_full  # noqa: E402
from jaxdl.models import MLP, split  # noqa: E402
from jaxdl.report import environment  # noqa: E402
from jaxdl.timing import median_time  # noqa: E402
from jaxdl.train import init_state, make_optimizer, make_train_step, softmax_cross_entropy  # noqa: E402


def block(x):
    return jax.block_until_ready(x)


def first_call(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = block(fn())
    return time.perf_counter() - t0, out


def setting_a(hidden: int, *, trained_steps: int = 0, lr: float = 0.5, dtype=jnp.float32):
    x, y = digits_full(dtype=dtype)
    apply, params = split(MLP([64, hidden, hidden, 10], rngs=nnx.Rngs(0), dtype=dtype))
    loss = softmax_cross_entropy(apply)
    if trained_steps:
        opt = make_optimizer("sgd", lr)
        step = make_train_step(loss, opt)
        state = init_state(params, opt)
        for _ in range(trained_steps):
            state, _ = step(state, x, y)
        params = state.params
    return loss, params, x, y


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want) / np.abs(want)))


# --------------------------------------------------------------------------------------------------------- torch
def torch_available() -> bool:
    try:
        import pyhessian  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_model(params, hidden: int):
    """The same MLP in PyTorch with the JAX weights copied across (kernel transposed)."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                              torch.nn.Tanh(), torch.nn.Linear(hidden, 10))
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, lin in enumerate(linears):
            layer = params["layers"][i]
            lin.weight.copy_(torch.from_numpy(np.asarray(layer["kernel"][...]).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(layer["bias"][...]).copy()))
    return net


def torch_hvp_vs_grad(params, hidden, x, y, repeats):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    net = torch_model(params, hidden)
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)).long()
    crit = torch.nn.CrossEntropyLoss()
    ps = list(net.parameters())
    v = [torch.randn_like(p) for p in ps]

    def grad():
        return torch.autograd.grad(crit(net(xt), yt), ps)

    def hvp():
        g = torch.autograd.grad(crit(net(xt), yt), ps, create_graph=True)
        return torch.autograd.grad(g, ps, grad_outputs=v)

    def timed(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(10):
                fn()
            ts.append((time.perf_counter() - t0) / 10)
        return statistics.median(ts)

    return {"torch_grad_s": timed(grad), "torch_hvp_s": timed(hvp)}


def pyhessian_class():
    """PyHessian 0.1's ``hessian`` class, with ``torch.eig`` shimmed: its density calls ``torch.eig``, which current
    PyTorch keeps only as a stub that raises; the shim (benchmark only) is ``eigh`` of its symmetric tridiagonal
    matrix in the old ([real, imag], vectors) layout."""
    import torch
    from pyhessian import hessian as PyHessian

    def _eig(T, eigenvectors=True):
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    torch.eig = _eig
    return PyHessian


def interleaved_against_pyhessian(loss, params, x, y, repeats):
    """Top-5 (ours: 40 Lanczos steps) and density (both: SLQ 100 steps, 1 probe) timed in one loop, ours then
    PyHessian's in each repeat, so that both see the same machine state; medians and ratios."""
    import torch

    PyHessian = pyhessian_class()
    net = torch_model(params, 32)
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)).long()
    crit = torch.nn.CrossEntropyLoss()
    ours = {"top5": lambda: block(analysis.hessian_eigs(loss, params, x, y, k=5, num_matvecs=40).eigenvalues),
            "density": lambda: block(analysis.spectral_density(loss, params, x, y, num_matvecs=100,
                                                               num_probes=1).nodes)}
    theirs = {"top5": lambda c: c.eigenvalues(top_n=5), "density": lambda c: c.density(iter=100, n_v=1)}
    times = {q: {"ours": [], "pyhessian": []} for q in ours}
    for q in ours:  # warm-up (compilation; PyHessian's first call)
        ours[q]()
        theirs[q](PyHessian(net, crit, data=(xt, yt), cuda=False))
    for r in range(repeats):
        for q in ours:
            t0 = time.perf_counter()
            ours[q]()
            times[q]["ours"].append(time.perf_counter() - t0)
            torch.manual_seed(r)
            comp = PyHessian(net, crit, data=(xt, yt), cuda=False)  # built outside the timing, as below
            t0 = time.perf_counter()
            theirs[q](comp)
            times[q]["pyhessian"].append(time.perf_counter() - t0)
    out = {"times_s": times, "load_average_end": os.getloadavg()}
    for q, t in times.items():
        out[f"{q}_pyhessian_over_ours"] = statistics.median(t["pyhessian"]) / statistics.median(t["ours"])
    return out


def run_pyhessian(params, x, y, hidden, repeats):
    """PyHessian 0.1 on the identical network: top-1, top-5, trace (25 probes), density (SLQ 100 steps)."""
    import torch

    PyHessian = pyhessian_class()
    net = torch_model(params, hidden)
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)).long()
    crit = torch.nn.CrossEntropyLoss()
    out = {}

    def timed(fn, n):
        ts, res = [], None
        for i in range(n):
            torch.manual_seed(i)
            comp = PyHessian(net, crit, data=(xt, yt), cuda=False)
            t0 = time.perf_counter()
            res = fn(comp)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts), res

    out["top1_s"], (vals1, _) = timed(lambda c: c.eigenvalues(top_n=1), repeats)
    out["top1"] = vals1
    out["top5_s"], (vals5, _) = timed(lambda c: c.eigenvalues(top_n=5), repeats)
    out["top5"] = sorted(vals5)
    out["trace_s"], tr = timed(lambda c: c.trace(maxIter=25, tol=0.0), repeats)
    out["trace"] = float(np.mean(tr))
    out["density_s"], (eigs, weights) = timed(lambda c: c.density(iter=100, n_v=1), max(1, repeats // 3))
    out["density_nodes"] = np.asarray(eigs, np.float64)
    out["density_weights"] = np.asarray(weights, np.float64)
    return out


# --------------------------------------------------------------------------------------------------------- dense 10k
def dense_10k_child() -> None:
    """Run in a fresh process: dense Hessian + spectrum of a 10,230-parameter MLP (H = 70); print JSON."""
    loss, params, x, y = setting_a(70)
    n = analysis.num_params(params)
    t, H = first_call(lambda: analysis.dense_hessian(loss, params, x, y, block_size=256))
    t2, ev = first_call(lambda: jnp.linalg.eigvalsh(H))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"num_params": n, "dense_s": t, "eigvalsh_s": t2, "peak_rss_gib": peak_gib,
                      "finite": bool(np.all(np.isfinite(np.asarray(ev))))}))


# --------------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="benchmarks/results/curvature.json")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-dense-10k", action="store_true")
    parser.add_argument("--dense-10k-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dense_10k_child:
        dense_10k_child()
        return
    peers = torch_available() and not args.no_peers
    res: dict = {"environment": environment(), "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                 "date": time.strftime("%Y-%m-%d"), "peers_installed": torch_available(),
                 "load_average_start": os.getloadavg()}

    # 1. Dense Hessian + full spectrum of the trained H=32 network, first call (compile included).
    loss, params, x, y = setting_a(32, trained_steps=200)
    n = analysis.num_params(params)
    t_dense, H = first_call(lambda: analysis.dense_hessian(loss, params, x, y, block_size=256))
    t_eig, exact32 = first_call(lambda: jnp.linalg.eigvalsh(H))
    t_dense_warm = median_time(lambda: analysis.dense_hessian(loss, params, x, y, block_size=256), repeats=1)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
        loss64, _, x64, _ = setting_a(32, dtype=jnp.float64)
        exact = np.asarray(analysis.hessian_spectrum(loss64, p64, x64, y, block_size=256))
    res["dense"] = {"num_params": n, "hessian_first_call_s": t_dense, "eigvalsh_first_call_s": t_eig,
                    "total_first_call_s": t_dense + t_eig, "hessian_warm_s": t_dense_warm,
                    "float32_spectrum_max_abs_err": float(np.max(np.abs(np.sort(np.asarray(exact32)) - exact)))}

    # 2. HVP / gradient.
    res["hvp"] = {}
    for hidden in (32, 128):
        lh, ph, xh, yh = (loss, params, x, y) if hidden == 32 else setting_a(hidden)
        v = jax.tree_util.tree_map(lambda a: jnp.ones_like(a) * 0.01, ph)
        grad = jax.jit(jax.grad(lh))
        fwd_rev = jax.jit(lambda p, v, x, y: jax.jvp(lambda q: jax.grad(lh)(q, x, y), (p,), (v,))[1])
        rev_rev = jax.jit(lambda p, v, x, y: jax.grad(lambda q: jax.tree_util.tree_reduce(
            jnp.add, jax.tree_util.tree_map(jnp.vdot, jax.grad(lh)(q, x, y), v)))(p))
        row = {
            "num_params": analysis.num_params(ph),
            "grad_s": median_time(lambda: grad(ph, xh, yh), repeats=args.repeats, inner=20),
            "hvp_library_s": median_time(lambda: analysis.hvp(lh, ph, v, xh, yh), repeats=args.repeats, inner=20),
            "hvp_fwd_over_rev_raw_s": median_time(lambda: fwd_rev(ph, v, xh, yh), repeats=args.repeats, inner=20),
            "hvp_rev_over_rev_s": median_time(lambda: rev_rev(ph, v, xh, yh), repeats=args.repeats, inner=20),
        }
        row["library_hvp_over_grad"] = row["hvp_library_s"] / row["grad_s"]
        row["raw_hvp_over_grad"] = row["hvp_fwd_over_rev_raw_s"] / row["grad_s"]
        row["rev_rev_over_grad"] = row["hvp_rev_over_rev_s"] / row["grad_s"]
        if peers:
            row.update(torch_hvp_vs_grad(ph, hidden, xh, yh, args.repeats))
            row["torch_hvp_over_grad"] = row["torch_hvp_s"] / row["torch_grad_s"]
            row["torch_hvp_over_jax_hvp"] = row["torch_hvp_s"] / row["hvp_library_s"]
        res["hvp"][hidden] = row

    # 3. Lanczos top-5 (and top-1) against the exact float64 spectrum.
    res["lanczos"] = {}
    for m in (20, 40, 60):
        t_first, r = first_call(lambda: analysis.hessian_eigs(loss, params, x, y, k=5, num_matvecs=m).eigenvalues)
        t = median_time(lambda: analysis.hessian_eigs(loss, params, x, y, k=5, num_matvecs=m).eigenvalues,
                        repeats=args.repeats)
        res["lanczos"][m] = {"first_call_s": t_first, "time_s": t, "top5_rel_err": rel_err(r, exact[-5:]),
                             "top1_rel_err": rel_err(r[-1:], exact[-1:])}

    # 4. Trace at equal matvecs, 30 seeds each: RMS error and mean reported standard error.
    exact_trace = float(exact.sum())
    res["trace"] = {"exact": exact_trace}
    for method in ("hutchinson", "hutch++"):
        est, se = [], []
        for s in range(30):
            r = analysis.hessian_trace(loss, params, x, y, num_matvecs=25, method=method, key=jax.random.PRNGKey(s))
            est.append(float(r.estimate))
            se.append(float(r.standard_error))
        t = median_time(lambda: analysis.hessian_trace(loss, params, x, y, num_matvecs=25, method=method).estimate,
                        repeats=args.repeats)
        est = np.array(est)
        res["trace"][method] = {"time_s": t, "rms_rel_err": float(np.sqrt(np.mean((est - exact_trace) ** 2)))
                                / abs(exact_trace), "mean_standard_error": float(np.mean(se)),
                                "seed0_rel_err": abs(est[0] - exact_trace) / abs(exact_trace)}

    # 5. SLQ, 100 steps, one probe (PyHessian's default) and 10 probes.
    res["slq"] = {}
    for probes in (1, 10):
        t_first, sd = first_call(lambda: analysis.spectral_density(loss, params, x, y, num_matvecs=100,
                                                                   num_probes=probes))
        t = median_time(lambda: analysis.spectral_density(loss, params, x, y, num_matvecs=100,
                                                          num_probes=probes).nodes, repeats=max(3, args.repeats // 2))
        res["slq"][probes] = {"first_call_s": t_first, "time_s": t, "wasserstein1": float(sd.wasserstein1(exact))}

    # 6. PyHessian on the identical network and data.
    if peers:
        ph = run_pyhessian(params, x, y, 32, max(3, args.repeats // 2))
        w1 = analysis.wasserstein1_discrete(
            *(jnp.asarray(a) for a in _sorted_measure(ph["density_nodes"], ph["density_weights"])),
            jnp.asarray(exact), jnp.full(exact.shape, 1.0 / exact.size))
        res["pyhessian"] = {
            "top1_s": ph["top1_s"], "top1_rel_err": rel_err(ph["top1"], exact[-1:]),
            "top5_s": ph["top5_s"], "top5_rel_err": rel_err(ph["top5"], exact[-5:]),
            "trace_s": ph["trace_s"], "trace_rel_err": abs(ph["trace"] - exact_trace) / abs(exact_trace),
            "density_s": ph["density_s"], "density_wasserstein1": float(w1),
        }
        res["interleaved"] = interleaved_against_pyhessian(loss, params, x, y, max(3, args.repeats))
        res["ratios"] = {  # from the interleaved loop: ours and PyHessian's repeats alternate
            "pyhessian_top5_time_over_ours_40": res["interleaved"]["top5_pyhessian_over_ours"],
            "pyhessian_density_time_over_ours": res["interleaved"]["density_pyhessian_over_ours"],
        }

    # 7. 10k parameters, dense, in a fresh process for a clean peak-memory reading.
    if not args.no_dense_10k:
        out = subprocess.run([sys.executable, __file__, "--dense-10k-child"], capture_output=True, text=True)
        res["dense_10k"] = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else \
            {"error": out.stderr[-2000:]}

    report(res)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    from jaxdl.report import to_jsonable

    path.write_text(json.dumps(to_jsonable(res), indent=2))
    print(f"\nwrote {path}")


def _sorted_measure(nodes, weights):
    nodes, weights = np.ravel(nodes), np.ravel(weights)
    weights = weights / weights.sum()
    order = np.argsort(nodes)
    return nodes[order], weights[order]


def report(res: dict) -> None:
    ms = 1e3
    print(f"\n== ANCHORS setting A, load average {res['load_average_start'][0]:.2f} at start, "
          f"{res['machine']['cpu_count']} CPU cores, {res['environment']['backend']}, "
          f"jax {res['environment']['jax']}")
    print("\nHVP / gradient (median ms)")
    for hidden, r in res["hvp"].items():
        line = (f"  H={hidden:>3} n={r['num_params']:>6}: grad {r['grad_s']*ms:.2f}  library HVP {r['hvp_library_s']*ms:.2f}"
                f" ({r['library_hvp_over_grad']:.2f}x)  raw fwd-rev {r['raw_hvp_over_grad']:.2f}x"
                f"  rev-rev {r['rev_rev_over_grad']:.2f}x")
        if "torch_hvp_s" in r:
            line += (f"  | torch grad {r['torch_grad_s']*ms:.2f} HVP {r['torch_hvp_s']*ms:.2f} "
                     f"({r['torch_hvp_over_grad']:.2f}x); torch HVP / ours {r['torch_hvp_over_jax_hvp']:.2f}x")
        print(line)
    d = res["dense"]
    print(f"\nDense Hessian n={d['num_params']}: first call {d['hessian_first_call_s']:.2f} s + eigvalsh "
          f"{d['eigvalsh_first_call_s']:.2f} s = {d['total_first_call_s']:.2f} s (warm Hessian {d['hessian_warm_s']:.2f} s)")
    if "dense_10k" in res:
        print(f"Dense 10k: {res['dense_10k']}")
    print("\nLanczos top-5 (partial reorthogonalisation, the default)")
    for m, r in res["lanczos"].items():
        print(f"  {m:>3} matvecs: {r['time_s']*ms:.1f} ms (first call {r['first_call_s']:.2f} s), "
              f"top-5 rel err {r['top5_rel_err']:.1e}, top-1 {r['top1_rel_err']:.1e}")
    print(f"\nTrace, 25 matvecs, 30 seeds (exact {res['trace']['exact']:.4f})")
    for m in ("hutchinson", "hutch++"):
        r = res["trace"][m]
        print(f"  {m:<10}: {r['time_s']*ms:.1f} ms, RMS rel err {r['rms_rel_err']:.2%}, mean SE {r['mean_standard_error']:.3g}")
    print("\nSLQ, 100 Lanczos steps")
    for p, r in res["slq"].items():
        print(f"  {p:>2} probe(s): {r['time_s']:.3f} s (first call {r['first_call_s']:.2f} s), W1 to exact {r['wasserstein1']:.3g}")
    if "pyhessian" in res:
        p = res["pyhessian"]
        print(f"\nPyHessian 0.1: top-1 {p['top1_s']:.3f} s (rel err {p['top1_rel_err']:.1e}), top-5 {p['top5_s']:.3f} s "
              f"(rel err {p['top5_rel_err']:.1e}), trace {p['trace_s']:.3f} s (rel err {p['trace_rel_err']:.2%}), "
              f"density {p['density_s']:.2f} s (W1 {p['density_wasserstein1']:.3g})")
        print(f"  ratios: {res['ratios']}")


if __name__ == "__main__":
    main()
