"""Cost of curvature monitoring during training (ANCHORS.md "Training-time monitoring").

Setting A (digits 1797 x 64 full batch, MLP 64-H-H-10 tanh, softmax cross-entropy, float32, SGD). For each
configuration, 100 training steps are timed after warm-up: plain steps, and steps where every N-th one is monitored
(loss, g^T g, g^T H g, eq. 8.10 prediction and the actual change on the same batch; optionally the top eigenvalue
by warm-started Lanczos). Reports the median over repeats of the time per step and its ratio to plain training.

Usage: python benchmarks/monitor.py [--json PATH] [--repeats N]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.monitor import CurvatureMonitor  # noqa: E402
from benchmarks.curvature import setting_a  # noqa: E402
from jaxdl.output import environment, to_jsonable  # noqa: E402
from jaxdl.train import init_state, make_monitored_train_step, make_optimizer, make_train_step  # noqa: E402

STEPS = 100


def time_run(plain, monitored, state, mstate, x, y, every, repeats):
    """Median seconds per step of STEPS steps with every ``every``-th monitored (None = never)."""

    def run():
        s, m = state, mstate
        for t in range(STEPS):
            if every is not None and t % every == 0:
                s, m, rec = monitored(s, m, x, y)
            else:
                s, _ = plain(s, x, y)
        return jax.block_until_ready(s.params)

    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) / STEPS)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default="benchmarks/results/monitor.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    res = {"environment": environment(), "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "rows": []}
    print(f"{'H':>4} {'lanczos':>7} {'plain ms':>9} {'N=1 ms':>8} {'N=1 x':>6} {'N=10 ms':>8} {'N=10 x':>7}")
    for hidden in (32, 128):
        loss, params, x, y = setting_a(hidden)
        opt = make_optimizer("sgd", 0.1)
        plain = make_train_step(loss, opt)
        state = init_state(params, opt)
        for lanczos in (0, 8):
            mon = CurvatureMonitor(every=1, learning_rate=0.1, lanczos_steps=lanczos)
            monitored = make_monitored_train_step(loss, opt, mon)
            mstate = mon.init(params)
            base = time_run(plain, monitored, state, mstate, x, y, None, args.repeats)
            every1 = time_run(plain, monitored, state, mstate, x, y, 1, args.repeats)
            every10 = time_run(plain, monitored, state, mstate, x, y, 10, args.repeats)
            row = {"hidden": hidden, "lanczos_steps": lanczos, "plain_s": base, "every1_s": every1,
                   "every10_s": every10, "every1_ratio": every1 / base, "every10_ratio": every10 / base}
            res["rows"].append(row)
            print(f"{hidden:>4} {lanczos:>7} {base*1e3:>9.3f} {every1*1e3:>8.3f} {every1/base:>6.2f} "
                  f"{every10*1e3:>8.3f} {every10/base:>7.3f}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(res), indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
