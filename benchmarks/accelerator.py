"""HVP cost and Lanczos on an accelerator, ANCHORS.md setting B (benchmarks/setting_b.py), float32 at the highest
matmul precision, in one process: our HVP (``analysis.hvp``) against the gradient, their compiled memory, PyTorch's
double-backward HVP on the same architecture when torch is importable, and 90-step Lanczos (``analysis.hessian_eigs``,
its default partial reorthogonalisation): first call (compile included) and steady-state time against the time of its HVPs alone.

Usage: python benchmarks/accelerator.py [--json PATH] [--repeats 10] [--scale 1.0] [--models mlp,cnn]
(``--scale 0.05`` runs the same code in seconds on a CPU). Prints a table and writes JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_default_matmul_precision", "highest")


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from jaxdl.timing import median_time  # noqa: E402
from benchmarks.setting_b import problem  # noqa: E402
from jaxdl.report import environment, to_jsonable  # noqa: E402

LANCZOS_STEPS = 90


def compiled_bytes(fn, *args) -> int:
    """Temporary plus output bytes of the compiled ``fn(*args)`` (XLA's memory analysis; arguments excluded)."""
    mem = fn.lower(*args).compile().memory_analysis()
    return int(mem.temp_size_in_bytes + mem.output_size_in_bytes) if mem is not None else -1


def torch_ratio(model: str, scale: float, repeats: int) -> dict | None:
    """PyTorch double-backward HVP and gradient times on the same architecture (its own random weights)."""
    try:
        import torch
    except ImportError:
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    if model == "mlp":
        w, b = max(8, int(4096 * scale)), max(8, int(1024 * scale))
        net = torch.nn.Sequential(torch.nn.Linear(3072, w), torch.nn.Tanh(), torch.nn.Linear(w, w), torch.nn.Tanh(),
                                  torch.nn.Linear(w, w), torch.nn.Tanh(), torch.nn.Linear(w, 10))
        x = torch.randn(b, 3072)
    else:
        ch = [3] + [max(4, int(c * scale)) for c in (64, 128, 256, 256)]
        layers = []
        for i, (a, c) in enumerate(zip(ch[:-1], ch[1:])):
            layers += [torch.nn.Conv2d(a, c, 3, stride=1 if i == 0 else 2, padding=1), torch.nn.ReLU()]
        net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(ch[-1], 10))
        x = torch.randn(max(8, int(256 * scale)), 3, 32, 32)
    net, x = net.to(dev), x.to(dev)
    y = torch.randint(0, 10, (x.shape[0],), device=dev)
    params = [p for p in net.parameters()]
    v = [torch.randn_like(p) for p in params]
    loss_fn = torch.nn.CrossEntropyLoss()

    def sync(out):
        if dev == "cuda":
            torch.cuda.synchronize()
        return out

    def grad():
        return sync(torch.autograd.grad(loss_fn(net(x), y), params))

    def hvp():
        g = torch.autograd.grad(loss_fn(net(x), y), params, create_graph=True)
        return sync(torch.autograd.grad(g, params, grad_outputs=v))

    tg = median_time(grad, repeats=repeats, inner=5)  # each call synchronises itself
    th = median_time(hvp, repeats=repeats, inner=5)
    return {"device": dev, "torch": torch.__version__, "grad_s": tg, "hvp_s": th, "hvp_over_grad": th / tg}


def bench_model(model: str, scale: float, repeats: int) -> dict:
    loss, params, x, y = problem(model, scale)
    n = analysis.num_params(params)
    v = jax.tree_util.tree_map(lambda p: jax.random.normal(jax.random.PRNGKey(3), p.shape, p.dtype), params)
    grad = jax.jit(jax.value_and_grad(loss))
    hvp = jax.jit(lambda p, u, a, b: analysis.hvp(loss, p, u, a, b))
    t_grad = median_time(lambda: grad(params, x, y), repeats=repeats, inner=5)
    t_hvp = median_time(lambda: hvp(params, v, x, y), repeats=repeats, inner=5)
    mem_grad, mem_hvp = compiled_bytes(grad, params, x, y), compiled_bytes(hvp, params, v, x, y)

    t0 = time.perf_counter()
    first = analysis.hessian_eigs(loss, params, x, y, k=1, num_matvecs=LANCZOS_STEPS)
    jax.block_until_ready(first.eigenvalues)
    t_first = time.perf_counter() - t0
    t_lanczos = median_time(
        lambda: analysis.hessian_eigs(loss, params, x, y, k=1, num_matvecs=LANCZOS_STEPS).eigenvalues,
        repeats=max(3, repeats // 3))
    products = LANCZOS_STEPS + 1  # the Krylov steps and one residual product
    row = {
        "model": model, "params": n, "batch": int(x.shape[0]),
        "grad_s": t_grad, "hvp_s": t_hvp, "hvp_over_grad": t_hvp / t_grad,
        "grad_bytes": mem_grad, "hvp_bytes": mem_hvp, "hvp_over_grad_bytes": mem_hvp / mem_grad,
        "lanczos_first_call_s": t_first, "lanczos_s": t_lanczos, "lanczos_products": products,
        "lanczos_over_hvps": t_lanczos / (products * t_hvp),
        "top_eigenvalue": float(first.eigenvalues[-1]), "top_residual": float(first.residuals[-1]),
        "torch": torch_ratio(model, scale, repeats),
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="benchmarks/results/accelerator.json")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0, help="width/batch factor (1.0 = setting B)")
    parser.add_argument("--models", default="mlp,cnn")
    args = parser.parse_args()
    res = {"environment": environment(), "date": time.strftime("%Y-%m-%d"), "scale": args.scale, "rows": []}
    print(f"device: {jax.devices()[0].device_kind}; jax {jax.__version__}; scale {args.scale}")
    for model in args.models.split(","):
        row = bench_model(model, args.scale, args.repeats)
        res["rows"].append(row)
        t = row["torch"]
        print(f"{model}: {row['params']:,} params, batch {row['batch']}")
        print(f"  grad {row['grad_s']*1e3:.3f} ms, HVP {row['hvp_s']*1e3:.3f} ms = {row['hvp_over_grad']:.2f}x grad; "
              f"compiled memory HVP / grad = {row['hvp_over_grad_bytes']:.2f}x "
              f"({row['hvp_bytes']/2**20:.0f} / {row['grad_bytes']/2**20:.0f} MiB)")
        if t:
            print(f"  PyTorch {t['torch']} ({t['device']}) double-backward HVP {t['hvp_s']*1e3:.3f} ms = "
                  f"{t['hvp_over_grad']:.2f}x its grad; ours is {t['hvp_s']/row['hvp_s']:.2f}x faster")
        print(f"  Lanczos {LANCZOS_STEPS} steps: first call {row['lanczos_first_call_s']:.2f} s (compile included), "
              f"then {row['lanczos_s']:.3f} s = {row['lanczos_over_hvps']:.2f}x its {products_str(row)} HVPs; "
              f"top eigenvalue {row['top_eigenvalue']:.5g} (residual {row['top_residual']:.2g})")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(res), indent=2))
    print(f"wrote {path}")


def products_str(row) -> str:
    return str(row["lanczos_products"])


if __name__ == "__main__":
    main()
