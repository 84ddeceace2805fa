"""GGN-vector products against curvlinops (issue 14): ANCHORS.md setting A, scikit-learn digits (1797 x 64,
pixels / 16), full batch, MLP 64-H-H-10 (tanh), softmax cross-entropy, float32, the same weights in PyTorch.

Timed, interleaved in one loop (repeat r: ours gradient, ours GGN-vp, curvlinops GGN-vp, PyTorch gradient):
- ours: ``jax.grad`` of the loss (jitted) and ``analysis.hvp(loss, params, v, x, y, curvature="ggn")`` as a user
  calls it (input checks included), and the jitted product alone (the kernel every estimator runs);
- curvlinops: ``GGNLinearOperator(model, CrossEntropyLoss(), params, [(X, y)]) @ v`` (operator built once, outside
  the timing) and PyTorch's ``autograd.grad`` of the same loss.
Accuracy: both products against ours in float64 (same weights and vector). Ratios: GGN-vp / gradient of each library,
and curvlinops / ours.

Usage: python benchmarks/ggn.py [--json PATH] [--repeats N] [--hidden H ...]
Prints a table and writes JSON. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from analysis.hessian import _curvature_product_tree  # noqa: E402
from jaxdl.data import digits_full  # noqa: E402
from jaxdl.models import MLP, split  # noqa: E402
from jaxdl.report import environment  # noqa: E402


def timed(fn, sync) -> float:
    t0 = time.perf_counter()
    sync(fn())
    return time.perf_counter() - t0


def torch_order(params) -> np.ndarray:
    """``perm`` with ``torch_vector = ours_flat[perm]``: PyTorch lists weight (out x in) then bias per layer, ours is
    ``ravel_pytree`` order; built by ravelling a pytree of positions."""
    flat, unravel = ravel_pytree(params)
    index = unravel(jnp.arange(flat.size, dtype=jnp.float32))  # exact positions below 2^24
    parts = []
    for i in range(len(params["layers"])):
        layer = index["layers"][i]
        parts += [np.asarray(layer["kernel"][...]).T.ravel(), np.asarray(layer["bias"][...]).ravel()]
    return np.concatenate(parts).astype(np.int64)


def torch_side(params, hidden, x, y, v_flat):
    """The same network, data and vector in PyTorch: (gradient fn, GGN-vp fn, result -> our flat order)."""
    import torch
    from curvlinops import GGNLinearOperator

    torch.set_num_threads(os.cpu_count() or 1)
    net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                              torch.nn.Tanh(), torch.nn.Linear(hidden, 10))
    with torch.no_grad():
        for lin, layer in zip([m for m in net if isinstance(m, torch.nn.Linear)], params["layers"].values()):
            lin.weight.copy_(torch.from_numpy(np.asarray(layer["kernel"][...]).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(layer["bias"][...]).copy()))
    perm = torch_order(params)
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y)).long()
    crit = torch.nn.CrossEntropyLoss()
    ps = list(net.parameters())
    ggn = GGNLinearOperator(net, crit, ps, [(xt, yt)], check_deterministic=False)
    vt = torch.from_numpy(np.asarray(v_flat)[perm].astype(np.float32))

    def grad():
        return torch.autograd.grad(crit(net(xt), yt), ps)

    def product():
        return ggn @ vt

    def to_ours(out):
        flat = np.empty(perm.size)
        flat[perm] = out.detach().numpy()
        return flat

    return grad, product, to_ours


def run(hidden: int, repeats: int) -> dict:
    x, y = digits_full()
    apply, params = split(MLP([64, hidden, hidden, 10], rngs=nnx.Rngs(0)))
    loss = analysis.supervised_loss(apply, "softmax_cross_entropy")
    flat, unravel = ravel_pytree(params)
    v = unravel(jax.random.normal(jax.random.PRNGKey(1), flat.shape, flat.dtype))
    grad_fn = jax.jit(jax.grad(loss))
    kernel = functools.partial(_curvature_product_tree, loss.with_curvature("ggn"))

    def ours_grad():
        return grad_fn(params, x, y)

    def ours_api():
        return analysis.hvp(loss, params, v, x, y, curvature="ggn")

    def ours_kernel():
        return kernel(params, v, (x, y), False)

    t_grad, t_ggn, t_vp = torch_side(params, hidden, x, y, ravel_pytree(v)[0])
    jsync, tsync = jax.block_until_ready, (lambda out: out)
    for fn in (ours_grad, ours_api, ours_kernel):
        jsync(fn())
    t_grad(), t_ggn()
    rows = {k: [] for k in ("ours_grad", "ours_ggn_api", "ours_ggn_kernel", "curvlinops_ggn", "torch_grad")}
    for _ in range(repeats):  # interleaved
        rows["ours_grad"].append(timed(ours_grad, jsync))
        rows["ours_ggn_api"].append(timed(ours_api, jsync))
        rows["ours_ggn_kernel"].append(timed(ours_kernel, jsync))
        rows["curvlinops_ggn"].append(timed(t_ggn, tsync))
        rows["torch_grad"].append(timed(t_grad, tsync))
    med = {k: statistics.median(t) for k, t in rows.items()}
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
        v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), v)
        apply64 = split(MLP([64, hidden, hidden, 10], rngs=nnx.Rngs(0), dtype=jnp.float64))[0]
        ref = np.asarray(ravel_pytree(analysis.hvp(analysis.supervised_loss(apply64, "softmax_cross_entropy"),
                                                   p64, v64, jnp.asarray(np.asarray(x), jnp.float64), y,
                                                   curvature="ggn"))[0])
    ours = np.asarray(ravel_pytree(ours_api())[0], np.float64)
    theirs = t_vp(t_ggn())
    err = lambda a: float(np.linalg.norm(a - ref) / np.linalg.norm(ref))  # noqa: E731
    return {"hidden": hidden, "num_params": analysis.num_params(params), "times_s": rows, "median_s": med,
            "ours_ggn_over_grad": med["ours_ggn_kernel"] / med["ours_grad"],
            "ours_api_ggn_over_grad": med["ours_ggn_api"] / med["ours_grad"],
            "curvlinops_ggn_over_torch_grad": med["curvlinops_ggn"] / med["torch_grad"],
            "curvlinops_over_ours_api": med["curvlinops_ggn"] / med["ours_ggn_api"],
            "rel_error_vs_float64": {"ours": err(ours), "curvlinops": err(theirs)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/ggn.json")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 128, 512])
    args = parser.parse_args()
    import curvlinops  # noqa: F401  (the compare extra)
    from importlib.metadata import version

    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average_start": os.getloadavg(),
           "environment": {**environment(), "curvlinops": version("curvlinops-for-pytorch"),
                           "torch": version("torch")}, "cpu_count": os.cpu_count(), "results": []}
    print(f"{'H':>5} {'params':>8} {'ours grad':>10} {'ours GGN':>10} {'(kernel)':>10} {'curvl GGN':>10} "
          f"{'torch grad':>10} {'GGN/grad ours':>14} {'curvl/ours':>10} {'err ours / curvl':>18}")
    for h in args.hidden:
        r = run(h, args.repeats)
        out["results"].append(r)
        m = r["median_s"]
        print(f"{h:>5} {r['num_params']:>8} {m['ours_grad'] * 1e3:9.2f}m {m['ours_ggn_api'] * 1e3:9.2f}m "
              f"{m['ours_ggn_kernel'] * 1e3:9.2f}m {m['curvlinops_ggn'] * 1e3:9.2f}m {m['torch_grad'] * 1e3:9.2f}m "
              f"{r['ours_ggn_over_grad']:13.2f}x {r['curvlinops_over_ours_api']:9.2f}x "
              f"{r['rel_error_vs_float64']['ours']:.1e} / {r['rel_error_vs_float64']['curvlinops']:.1e}")
    out["load_average_end"] = os.getloadavg()
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float))
    print(f"load {out['load_average_start'][0]:.2f} -> {out['load_average_end'][0]:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
