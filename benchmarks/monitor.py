"""Cost of curvature monitoring during training (ANCHORS.md "Training-time monitoring").

Setting A (digits 1797 x 64 full batch, MLP 64-H-H-10 tanh, softmax cross-entropy, float32, SGD), H = 32 and 128;
with ``--large`` also setting B's MLP (3072-4096-4096-4096-10, batch 1024, random data; for an accelerator). For
each configuration, 100 training steps are timed after warm-up: plain steps, and steps where every N-th one is
monitored, N = 1 and 10. Monitor configurations:

* ``eq. 8.10``: loss, g^T g, g^T H g, the predicted change and the ratio (the quantities ANCHORS.md names);
* ``+ actual``: also the actual change of the loss on the same batch (one forward pass more);
* ``+ actual + top eig``: also the top eigenvalue by 8 warm-started Lanczos products at every monitored step.

In the same run it times the gradient and one Hessian-vector product (``jvp`` of ``grad``): g^T H g needs g first,
so a monitored step cannot cost less than the HVP, and HVP / grad is the floor of the N = 1 ratio on that machine.
Reports medians over repeats (ratios: medians of per-repeat ratios, runs interleaved). Usage: python benchmarks/monitor.py [--json PATH] [--repeats N] [--large]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.monitor import CurvatureMonitor  # noqa: E402
from benchmarks.curvature import setting_a  # noqa: E402
from benchmarks.setting_b import problem  # noqa: E402
from jaxdl.report import environment, to_jsonable  # noqa: E402
from jaxdl.train import init_state, make_monitored_train_step, make_optimizer, make_train_step  # noqa: E402

STEPS = 100
CONFIGS = {
    "eq. 8.10": dict(lanczos_steps=0, actual_change=False),
    "+ actual": dict(lanczos_steps=0, actual_change=True),
    "+ actual + top eig": dict(lanczos_steps=8, actual_change=True),
}


def make_run(plain, monitored, state, mstate, batch, every):
    """A function running STEPS steps with every ``every``-th monitored (None = never); returns seconds per step."""

    def run():
        s, m = state, mstate
        t0 = time.perf_counter()
        for t in range(STEPS):
            if every is not None and t % every == 0:
                s, m, _ = monitored(s, m, *batch)
            else:
                s, _ = plain(s, *batch)
        jax.block_until_ready(s.params)
        return (time.perf_counter() - t0) / STEPS

    run()  # compile and warm up
    return run


def hvp_over_grad(loss, params, batch, repeats):
    """Median time of one HVP along g (jvp of grad, gradient included) over that of one gradient."""
    grad = jax.jit(jax.grad(loss))
    hvp = jax.jit(lambda p, *b: jax.jvp(lambda q: jax.grad(loss)(q, *b), (p,), (p,))[1])

    def med(fn):
        jax.block_until_ready(fn(params, *batch))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(20):
                out = fn(params, *batch)
            jax.block_until_ready(out)
            ts.append((time.perf_counter() - t0) / 20)
        return statistics.median(ts)

    return med(hvp) / med(grad)


def bench(name, loss, params, batch, lr, repeats):
    """Rows for the three monitor configurations. Plain, N = 1 and N = 10 runs are interleaved within each repeat
    and the ratios are medians of per-repeat ratios, so slow drifts of the machine cancel."""
    opt = make_optimizer("sgd", lr)
    plain = make_train_step(loss, opt)
    state = init_state(params, opt)
    floor = hvp_over_grad(loss, params, batch, repeats)
    rows = []
    for config, kw in CONFIGS.items():
        mon = CurvatureMonitor(every=1, learning_rate=lr, **kw)
        monitored = make_monitored_train_step(loss, opt, mon)
        mstate = mon.init(params)
        runs = [make_run(plain, monitored, state, mstate, batch, every) for every in (None, 1, 10)]
        times = np.array([[run() for run in runs] for _ in range(repeats)])  # (repeats, 3)
        base, every1, every10 = np.median(times, axis=0)
        r1, r10 = np.median(times[:, 1] / times[:, 0]), np.median(times[:, 2] / times[:, 0])
        row = {"setting": name, "monitor": config, "plain_s": base, "hvp_over_grad": floor, "every1_s": every1,
               "every10_s": every10, "every1_ratio": r1, "every10_ratio": r10,
               "every10_ratio_range": [float(np.min(times[:, 2] / times[:, 0])),
                                       float(np.max(times[:, 2] / times[:, 0]))]}
        rows.append(row)
        print(f"{name:<14} {config:<19} {base*1e3:>9.3f} {floor:>9.2f} {every1*1e3:>8.3f} {r1:>6.2f} "
              f"{every10*1e3:>8.3f} {r10:>7.3f} ({row['every10_ratio_range'][0]:.3f}-"
              f"{row['every10_ratio_range'][1]:.3f})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default="benchmarks/results/monitor.json")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--large", action="store_true", help="also setting B's 46.2M-parameter MLP")
    args = parser.parse_args()
    res = {"environment": environment(), "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "rows": []}
    print(f"device: {jax.devices()[0].device_kind}; {STEPS} steps per timing, median of {args.repeats}")
    print(f"{'setting':<14} {'monitor':<19} {'plain ms':>9} {'HVP/grad':>9} {'N=1 ms':>8} {'N=1 x':>6} "
          f"{'N=10 ms':>8} {'N=10 x':>7} (range over repeats)")
    for hidden in (32, 128):
        loss, params, x, y = setting_a(hidden)
        res["rows"] += bench(f"A, H={hidden}", loss, params, (x, y), 0.1, args.repeats)
    if args.large:
        loss, params, x, y = problem("mlp")
        res["rows"] += bench("B, MLP 46.2M", loss, params, (x, y), 0.01, args.repeats)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(res), indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
