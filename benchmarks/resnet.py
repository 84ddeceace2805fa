"""ResNet-20 curvature against PyHessian 0.1 (issue 13): top-1, top-5, trace and spectral density, time and accuracy.

Same network on both sides: jaxdl's ResNet20 (NHWC) and the identical PyTorch module written here (NCHW, XLA's
"SAME" padding reproduced), weights, BatchNorm affine parameters and running averages copied across, BatchNorm in
eval mode (running averages). Data: the first ``--images`` (default 64) scikit-learn digits as 1-channel images,
bilinearly resized from 8x8 to ``--size``, labels 0-9. Before the Hessian is measured the network is trained for
``--train-steps`` SGD steps in training mode (batch statistics), so the running averages and the weights are not
the initial ones. Reference: float64 (same weights): Lanczos with the default partial reorthogonalisation (top-5,
residuals reported), Hutch++ (trace, its standard error reported), SLQ with many probes (density; its own error estimated as
half the Wasserstein-1 distance between its two halves of probes). Errors: relative for eigenvalues (max over
top-5) and trace; W1 to the reference measure for the density.

PyHessian runs at its defaults (power iteration maxIter=100 tol=1e-3; Hutchinson maxIter=100 tol=1e-3; SLQ
iter=100 n_v=1); its warm-up call (seed 0) gives its first-call time and the target error. Ours is the smallest
setting of a ladder whose error is <= that target. Then, for r = 1..R, each quantity is timed ours, then PyHessian
(seed r), interleaved. Medians, ratios PyHessian / ours, errors, load averages at start and end.

Convolutions: on XLA:CPU a convolution in a compiled loop runs ~25x slower than alone unless it is in the NHWC/HWIO
layout (``python benchmarks/conv_loop.py``); analysis rewrites every convolution into that layout on CPU
(``analysis/_convolutions.py``), which is what made this benchmark feasible.

Usage: python benchmarks/resnet.py [--repeats R] [--json PATH] [--images N] [--size S] [--train-steps T] [--quick]
Prints a table and writes JSON. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import analysis  # noqa: E402
from jaxdl.data import digits_full  # noqa: E402
from jaxdl.models.objective import curvature_objective  # noqa: E402
from jaxdl.models.resnet import ResNet20  # noqa: E402
from jaxdl.report import environment, to_jsonable  # noqa: E402

QUANTITIES = ("top1", "top5", "trace", "density")
# Our settings, smallest first: Lanczos steps (top-k), Hutch++ matvecs (trace), (SLQ steps, probes) (density).
LADDER = {"top1": [6, 8, 12, 16, 24, 32, 48, 64], "top5": [15, 20, 30, 40, 60, 80, 120],
          "trace": [9, 15, 24, 36, 51, 75, 99, 150], "density": [(10, 1), (20, 1), (30, 1), (40, 1), (60, 1),
                                                                  (80, 1), (100, 1), (100, 2)]}
REFERENCE = {"lanczos": 200, "hutchpp": 600, "slq": (100, 8)}
QUICK_REFERENCE = {"lanczos": 30, "hutchpp": 30, "slq": (20, 2)}
SEEDS_PER_SETTING = 3  # keys over which a stochastic setting's error is taken (median) when choosing it


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def xent(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def make_data(images: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits_full()
    x = jax.image.resize(x[:images].reshape(images, 8, 8, 1), (images, size, size, 1), "bilinear")
    return np.asarray(x, np.float32), np.asarray(y[:images], np.int32)


def trained_model(x, y, steps: int) -> nnx.Module:
    """ResNet-20 (1 channel, 10 classes) after ``steps`` SGD steps in training mode, then put in eval mode."""
    model = ResNet20(in_channels=1, num_classes=10, rngs=nnx.Rngs(0))
    model.train()
    opt = nnx.Optimizer(model, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: xent(m(x), y))(model)
        opt.update(model, grads)
        return loss

    for _ in range(steps):
        step(model, opt, x, y)
    model.eval()
    return model


def float64_copy(model: nnx.Module) -> nnx.Module:
    """The same network in float64 (call under ``jax.enable_x64``)."""
    m64 = ResNet20(in_channels=1, num_classes=10, rngs=nnx.Rngs(0), dtype=jnp.float64)
    state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), nnx.state(model))
    nnx.update(m64, state)
    m64.eval()
    return m64


# --------------------------------------------------------------------------------------------------------- torch
def torch_resnet(model: nnx.Module):
    """The identical network in PyTorch (NCHW) with every weight and running average copied from ``model``."""
    import torch
    import torch.nn.functional as F

    t = lambda a: torch.from_numpy(np.array(a[...], np.float32))  # noqa: E731

    class SameConv(torch.nn.Module):  # XLA "SAME": total padding max((ceil(n/s)-1)s + k - n, 0), extra at the end
        def __init__(self, conv):
            super().__init__()
            self.stride = conv.strides if isinstance(conv.strides, int) else conv.strides[0]
            self.weight = torch.nn.Parameter(t(conv.kernel).permute(3, 2, 0, 1).contiguous())  # HWIO -> OIHW

        def forward(self, x):
            k, n, s = self.weight.shape[-1], x.shape[-1], self.stride
            total = max((-(-n // s) - 1) * s + k - n, 0)
            x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
            return F.conv2d(x, self.weight, stride=s)

    def norm(bn):
        out = torch.nn.BatchNorm2d(bn.scale.shape[0], eps=bn.epsilon)
        with torch.no_grad():
            out.weight.copy_(t(bn.scale)), out.bias.copy_(t(bn.bias))
            out.running_mean.copy_(t(bn.mean)), out.running_var.copy_(t(bn.var))
        return out

    class Block(torch.nn.Module):
        def __init__(self, b):
            super().__init__()
            self.conv1, self.bn1, self.conv2, self.bn2 = SameConv(b.conv1), norm(b.bn1), SameConv(b.conv2), norm(b.bn2)
            self.short = None if b.shortcut_conv is None else torch.nn.Sequential(SameConv(b.shortcut_conv),
                                                                                   norm(b.shortcut_bn))

        def forward(self, x):
            h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(h + (x if self.short is None else self.short(x)))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.stem_bn = SameConv(model.stem), norm(model.stem_bn)
            self.blocks = torch.nn.Sequential(*[Block(b) for b in model.blocks])
            self.head = torch.nn.Linear(*model.head.kernel.shape)
            with torch.no_grad():
                self.head.weight.copy_(t(model.head.kernel).T), self.head.bias.copy_(t(model.head.bias))

        def forward(self, x):
            return self.head(self.blocks(F.relu(self.stem_bn(self.stem(x)))).mean(dim=(2, 3)))

    return Net().eval()


def pyhessian_runner(net, x, y):
    """``run(quantity, seed) -> (seconds, answer)`` for PyHessian 0.1 at its defaults; the timed part includes
    building its ``hessian`` object (one forward and backward with ``create_graph``)."""
    import torch
    from pyhessian import hessian as PyHessian

    # PyHessian 0.1's density calls torch.eig, which current PyTorch keeps only as a stub that raises; shim it here
    # (benchmark only) with eigh of its symmetric tridiagonal matrix, in the old ([real, imag], vectors) layout.
    def _eig(T, eigenvectors=True):
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    torch.eig = _eig
    torch.set_num_threads(os.cpu_count() or 1)
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y).long()
    crit = torch.nn.CrossEntropyLoss()
    calls = {"top1": lambda c: np.sort(c.eigenvalues(top_n=1)[0])[::-1],
             "top5": lambda c: np.sort(c.eigenvalues(top_n=5)[0])[::-1],
             "trace": lambda c: float(np.mean(c.trace())),
             "density": lambda c: measure(*c.density())}

    def run(quantity, seed):
        net.zero_grad(set_to_none=True)  # a second hessian() would otherwise accumulate into .grad
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        out = calls[quantity](PyHessian(net, crit, data=(xt, yt), cuda=False))
        return time.perf_counter() - t0, out

    return run


# --------------------------------------------------------------------------------------------------------- ours
def measure(nodes, weights):
    """The averaged SLQ measure (sorted nodes, weights summing to 1) from per-probe nodes and weights, float64."""
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    weights = (weights / weights.sum(axis=-1, keepdims=True)).ravel() / nodes.shape[0]
    order = np.argsort(nodes.ravel())
    return nodes.ravel()[order], weights[order]


def ours(loss_fn, params, x, y, quantity, setting, seed):
    """One call of the library, as a user writes it; returns the answer as numpy (after the computation ends)."""
    key = jax.random.PRNGKey(seed)
    if quantity in ("top1", "top5"):
        k = 1 if quantity == "top1" else 5
        r = analysis.hessian_eigs(loss_fn, params, x, y, k=k, num_matvecs=setting, key=key)
        return np.asarray(r.eigenvalues, np.float64)[::-1]
    if quantity == "trace":
        return float(analysis.hessian_trace(loss_fn, params, x, y, num_matvecs=setting, key=key).estimate)
    sd = analysis.spectral_density(loss_fn, params, x, y, num_matvecs=setting[0], num_probes=setting[1], key=key)
    return measure(sd.nodes, sd.weights)


def w1(a, b) -> float:
    """Wasserstein-1 between two discrete measures on the line, each (sorted nodes, weights)."""
    with jax.enable_x64(True):
        return float(analysis.wasserstein1_discrete(*(jnp.asarray(v, jnp.float64) for v in (*a, *b))))


def error(quantity, answer, ref) -> float:
    if quantity == "density":
        return w1(answer, ref["density"])
    want = {"top1": ref["top5"][:1], "top5": ref["top5"], "trace": ref["trace"]}[quantity]
    return float(np.max(np.abs(np.asarray(answer, np.float64) - want) / np.abs(want)))


def reference(model, x, y, settings) -> dict:
    """Converged float64 answers for the same weights and data, with their own error measures."""
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        loss_fn, params = curvature_objective(float64_copy(model), xent, batch_norm="running")
        x64 = jnp.asarray(x, jnp.float64)
        eig = analysis.hessian_eigs(loss_fn, params, x64, y, k=5, num_matvecs=settings["lanczos"])
        tr = analysis.hessian_trace(loss_fn, params, x64, y, num_matvecs=settings["hutchpp"])
        steps, probes = settings["slq"]
        sd = analysis.spectral_density(loss_fn, params, x64, y, num_matvecs=steps, num_probes=probes)
        nodes, weights = np.asarray(sd.nodes), np.asarray(sd.weights)
    half = probes // 2
    self_w1 = w1(measure(nodes[:half], weights[:half]), measure(nodes[half:], weights[half:])) if half else None
    return {"settings": settings, "time_s": time.perf_counter() - t0,
            "top5": np.asarray(eig.eigenvalues, np.float64)[::-1], "top5_residuals": np.asarray(eig.residuals)[::-1],
            "trace": float(tr.estimate), "trace_standard_error": float(tr.standard_error),
            "density": measure(nodes, weights), "density_self_w1_estimate": None if half is None else self_w1 / 2}


def choose_setting(run_ours, quantity, ref, target, ladder):
    """Smallest ladder setting whose error (median over keys for stochastic ones) is <= ``target``; records each
    setting tried with its first-call time (compile included) and error."""
    tried, seeds = [], [0] if quantity in ("top1", "top5") else list(range(SEEDS_PER_SETTING))
    for setting in ladder:
        t0 = time.perf_counter()
        errs = [error(quantity, run_ours(quantity, setting, seeds[0]), ref)]
        first = time.perf_counter() - t0
        errs += [error(quantity, run_ours(quantity, setting, s), ref) for s in seeds[1:]]
        tried.append({"setting": setting, "first_call_s": first, "error": float(np.median(errs))})
        log(f"  ours {quantity} {setting}: first call {first:.2f} s, error {tried[-1]['error']:.2e} (target {target:.2e})")
        if tried[-1]["error"] <= target:
            return tried
    return tried  # none reached the target: the largest is timed, and the table says so


# --------------------------------------------------------------------------------------------------------- main
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/resnet.json")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="smoke setting: 32 8x8 images, 1 repeat, small ref")
    args = parser.parse_args()
    if args.quick:
        args.images, args.size, args.train_steps, args.repeats = 32, 8, 5, 1
    import pyhessian
    import torch

    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average_start": os.getloadavg(),
                 "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
                 "environment": {**environment(), "torch": torch.__version__,
                                 "pyhessian": getattr(pyhessian, "__version__", "0.1")},
                 "config": {k: v for k, v in vars(args).items() if k != "json"}}
    x, y = make_data(args.images, args.size)
    t0 = time.perf_counter()
    model = trained_model(x, y, args.train_steps)
    loss_fn, params = curvature_objective(model, xent, batch_norm="running")
    net = torch_resnet(model)
    with torch.no_grad():
        logits_t = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        loss_t = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits_t), torch.from_numpy(y).long()))
    logits_j, loss_j = np.asarray(model(jnp.asarray(x))), float(loss_fn(params, x, y))
    log(f"torch - jax: logits max abs {np.abs(logits_t - logits_j).max():.2e}, loss {loss_t - loss_j:.2e}")
    np.testing.assert_allclose(logits_t, logits_j, rtol=1e-5, atol=1e-5 * float(np.abs(logits_j).max()))
    np.testing.assert_allclose(loss_t, loss_j, rtol=1e-5)
    res["model"] = {"num_params": analysis.num_params(params), "loss": loss_j, "setup_s": time.perf_counter() - t0,
                    "torch_minus_jax_logits_max_abs": float(np.abs(logits_t - logits_j).max()),
                    "torch_minus_jax_loss": loss_t - loss_j}
    log(f"model ready ({res['model']['setup_s']:.1f} s); float64 reference")
    ref = reference(model, x, y, QUICK_REFERENCE if args.quick else REFERENCE)
    log(f"reference done ({ref['time_s']:.1f} s)")
    res["reference"] = ref
    run_py = pyhessian_runner(net, x, y)
    run_ours = lambda q, s, seed: ours(loss_fn, params, x, y, q, s, seed)  # noqa: E731

    res["quantities"] = {}
    for q in QUANTITIES:  # warm-up: PyHessian's first call gives its target error; ours picks its setting
        t_py, ans = run_py(q, 0)
        log(f"PyHessian {q} first call {t_py:.2f} s, error {error(q, ans, ref):.2e}")
        tried = choose_setting(run_ours, q, ref, error(q, ans, ref), LADDER[q])
        res["quantities"][q] = {"pyhessian": {"first_call_s": t_py, "times_s": [], "errors": [error(q, ans, ref)]},
                                "ours": {"ladder": tried, "setting": tried[-1]["setting"], "times_s": [],
                                         "errors": [], "reached_target": tried[-1]["error"] <= error(q, ans, ref)}}
    for r in range(1, args.repeats + 1):  # interleaved timing
        for q in QUANTITIES:
            row = res["quantities"][q]
            t1 = time.perf_counter()
            ans = run_ours(q, row["ours"]["setting"], r)
            row["ours"]["times_s"].append(time.perf_counter() - t1)
            row["ours"]["errors"].append(error(q, ans, ref))
            t_py, ans = run_py(q, r)
            row["pyhessian"]["times_s"].append(t_py)
            row["pyhessian"]["errors"].append(error(q, ans, ref))
            log(f"repeat {r} {q}: ours {row['ours']['times_s'][-1]:.3f} s, PyHessian {t_py:.3f} s")
    for q, row in res["quantities"].items():
        for side in ("ours", "pyhessian"):
            row[side]["median_s"] = statistics.median(row[side]["times_s"])
            row[side]["median_error"] = statistics.median(row[side]["errors"])
        row["pyhessian_over_ours"] = row["pyhessian"]["median_s"] / row["ours"]["median_s"]
        row["ours_error_le_pyhessian"] = row["ours"]["median_error"] <= row["pyhessian"]["median_error"]
        row["goal_met"] = row["ours_error_le_pyhessian"] and row["pyhessian_over_ours"] >= 5.0
    res["load_average_end"] = os.getloadavg()
    report(res)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(res), indent=2))
    print(f"\nwrote {path}")


def report(res: dict) -> None:
    c, m, ref = res["config"], res["model"], res["reference"]
    print(f"\n== ResNet-20 vs PyHessian: {c['images']} digits at {c['size']}x{c['size']}, {m['num_params']:,} params, "
          f"{res['machine']['cpu_count']} cores ({res['machine']['cpu']}), load {res['load_average_start'][0]:.2f} "
          f"-> {res['load_average_end'][0]:.2f}")
    print(f"reference (float64, {ref['time_s']:.0f} s): top-5 {np.round(ref['top5'], 5)} (residuals <= "
          f"{np.max(ref['top5_residuals']):.1e}), trace {ref['trace']:.5g} +- {ref['trace_standard_error']:.2g}, "
          f"density self-W1 ~ {ref['density_self_w1_estimate']}")
    print(f"{'quantity':<8} {'ours setting':>12} {'ours s':>9} {'ours err':>9} {'PyH s':>9} {'PyH err':>9} "
          f"{'PyH/ours':>9} {'first: ours / PyH s':>21}  goal")
    for q, row in res["quantities"].items():
        o, p = row["ours"], row["pyhessian"]
        print(f"{q:<8} {str(o['setting']):>12} {o['median_s']:9.3f} {o['median_error']:9.2e} {p['median_s']:9.3f} "
              f"{p['median_error']:9.2e} {row['pyhessian_over_ours']:8.1f}x {o['ladder'][-1]['first_call_s']:10.2f} / "
              f"{p['first_call_s']:<8.2f}  {'met' if row['goal_met'] else 'not met'}"
              f"{'' if o['reached_target'] else ' (ours never reached the target error)'}")


if __name__ == "__main__":
    main()
