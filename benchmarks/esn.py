"""Echo state network benchmark against reservoirpy (NumPy backend): accuracy and time in the same run.

Settings (ANCHORS.md): Mackey-Glass tau = 17 by reservoirpy's recurrence (h = 1), one-step-ahead, last 20% test,
100 warm-up steps, ``ESN(units, sr=1.25, lr=0.3, ridge=1e-5)``.

* README setting: 100 units, 2,000 steps, 7 seeds: RMSE and R^2 of each implementation.
* Large setting: 1,000 units, 50,000 steps (40,000 fit + 10,000 run): time of fit + run (median of ``--repeats``
  after a warm-up call that compiles ours and initialises reservoirpy's weights), and RMSE / R^2.

Rows of the large setting: reservoirpy's default reservoir (10% Erdos-Renyi connectivity) and ours with the same
topology; ours with a fixed fan-in of 10 (Lukosevicius 2012) against reservoirpy with the same 1% density and against
reservoirpy's default. Everything in float64. reservoirpy is optional (``pip install -e .[compare]``); without it only
our rows are measured. Asserts nothing about speed.

Usage: ``python benchmarks/esn.py [--json PATH] [--repeats 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from jaxdl.data import forecasting_split, mackey_glass  # noqa: E402
from jaxdl.models import ESN  # noqa: E402

try:
    import reservoirpy
    from reservoirpy import ESN as RpyESN

    RPY_VERSION = reservoirpy.__version__
except ImportError:  # the `compare` extra is not installed
    RpyESN, RPY_VERSION = None, None


def metrics(pred, target) -> tuple[float, float]:
    pred, target = np.asarray(pred), np.asarray(target)
    err = float(np.sqrt(np.mean((pred - target) ** 2)))
    r2 = float(1 - np.sum((pred - target) ** 2) / np.sum((target - target.mean()) ** 2))
    return err, r2


def data(steps: int):
    series = mackey_glass(steps, method="reservoirpy", dtype=jnp.float64)
    return forecasting_split(series, horizon=1, test_fraction=0.2)


def ours_fit_run(esn: ESN, x_tr, y_tr, x_te):
    esn.reset()
    pred = esn.fit(x_tr, y_tr, warmup=100)(x_te)
    return pred.block_until_ready()


def rpy_fit_run(model, x_tr, y_tr, x_te):
    model.fit(x_tr, y_tr, warmup=100)
    return model.run(x_te)


def timed(fn, repeats: int):
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call; returns (median, times, output)."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times, out


def readme_setting(seeds) -> dict:
    x_tr, x_te, y_tr, y_te = data(2000)
    rows = {"ours": [], "reservoirpy": []}
    for s in seeds:
        esn = ESN(1, 100, 1, spectral_radius=1.25, leak=0.3, ridge=1e-5, rngs=nnx.Rngs(s), dtype=jnp.float64)
        rows["ours"].append(metrics(ours_fit_run(esn, x_tr, y_tr, x_te), y_te))
        if RpyESN is not None:
            model = RpyESN(units=100, sr=1.25, lr=0.3, ridge=1e-5, seed=s)
            rows["reservoirpy"].append(metrics(rpy_fit_run(model, *map(np.asarray, (x_tr, y_tr, x_te))), y_te))
    out = {k: {"rmse": [r[0] for r in v], "r2": [r[1] for r in v]} for k, v in rows.items() if v}
    out["persistence_rmse"] = metrics(x_te, y_te)[0]
    return out


def large_setting(steps: int, units: int, repeats: int, seed: int, unroll: int = 1, dense_row: bool = False) -> dict:
    x_tr, x_te, y_tr, y_te = data(steps + 1)
    np_args = tuple(map(np.asarray, (x_tr, y_tr, x_te)))
    configs = {
        "ours, 10% connectivity (reservoirpy's topology)": dict(connectivity=0.1),
        "ours, fan-in 10": dict(fan_in=10),
    }
    if dense_row:
        configs["ours, 10% connectivity, stored dense"] = dict(connectivity=0.1, sparse=False)
    rows = {}
    for name, kw in configs.items():
        esn = ESN(1, units, 1, spectral_radius=1.25, leak=0.3, ridge=1e-5, rngs=nnx.Rngs(seed), dtype=jnp.float64,
                  unroll=unroll, **kw)
        med, times, pred = timed(lambda: ours_fit_run(esn, x_tr, y_tr, x_te), repeats)
        rows[name] = {"time_s": med, "times_s": times, **dict(zip(("rmse", "r2"), metrics(pred, y_te)))}
    if RpyESN is not None:
        for name, conn in (("reservoirpy, 10% connectivity (default)", 0.1), ("reservoirpy, 1% connectivity", 0.01)):
            model = RpyESN(units=units, sr=1.25, lr=0.3, ridge=1e-5, rc_connectivity=conn, seed=seed)
            med, times, pred = timed(lambda: rpy_fit_run(model, *np_args), repeats)
            rows[name] = {"time_s": med, "times_s": times, **dict(zip(("rmse", "r2"), metrics(pred, y_te)))}
    return {"units": units, "steps": steps, "fit_steps": int(x_tr.shape[0]), "run_steps": int(x_te.shape[0]),
            "rows": rows, "persistence_rmse": metrics(x_te, y_te)[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 300 units over 10,000 steps")
    parser.add_argument("--unroll", type=int, default=1, help="unroll our time loops (pays on an accelerator)")
    parser.add_argument("--dense-row", action="store_true", help="also time our reservoir stored as a dense matrix")
    args = parser.parse_args()
    seeds = range(2) if args.quick else range(7)
    units, steps = (300, 10_000) if args.quick else (1000, 50_000)

    readme = readme_setting(seeds)
    large = large_setting(steps, units, args.repeats, seed=0, unroll=args.unroll, dense_row=args.dense_row)

    print(f"reservoirpy: {RPY_VERSION or 'not installed (pip install -e .[compare])'}; jax {jax.__version__} on "
          f"{jax.devices()[0].device_kind}; {platform.processor() or platform.machine()}; unroll {args.unroll}")
    print(f"\nREADME setting (100 units, 2000 steps, {len(seeds)} seeds); persistence RMSE "
          f"{readme['persistence_rmse']:.4f}")
    print(f"{'implementation':<14} {'RMSE median':>12} {'RMSE range':>18} {'R^2 median':>11}")
    for name in ("ours", "reservoirpy"):
        if name in readme:
            r, q = np.array(readme[name]["rmse"]), np.array(readme[name]["r2"])
            print(f"{name:<14} {np.median(r):>12.4f} {r.min():>8.4f} - {r.max():<7.4f} {np.median(q):>11.5f}")
        else:
            print(f"{name:<14} {'not installed':>12}")
    print(f"\nLarge setting ({units} units, {steps} steps: fit {large['fit_steps']}, run {large['run_steps']}); "
          f"median of {args.repeats} runs; persistence RMSE {large['persistence_rmse']:.4f}")
    print(f"{'configuration':<50} {'time (s)':>9} {'RMSE':>9} {'R^2':>10}")
    for name, row in large["rows"].items():
        print(f"{name:<50} {row['time_s']:>9.3f} {row['rmse']:>9.2e} {row['r2']:>10.6f}")
    ratios = {}
    rows = large["rows"]
    pairs = (("reservoirpy, 10% connectivity (default)", "ours, 10% connectivity (reservoirpy's topology)"),
             ("reservoirpy, 1% connectivity", "ours, fan-in 10"),
             ("reservoirpy, 10% connectivity (default)", "ours, fan-in 10"),
             ("reservoirpy, 10% connectivity (default)", "ours, 10% connectivity, stored dense"))
    for peer, ours in pairs:
        if peer in rows and ours in rows:
            ratios[f"{peer} / {ours}"] = rows[peer]["time_s"] / rows[ours]["time_s"]
    if ratios:
        print("\nspeed-up (reservoirpy time / our time, same run):")
        for k, v in ratios.items():
            print(f"  {k}: {v:.2f}x")
    if args.json:
        from jaxdl.report import environment

        payload = {"readme_setting": readme, "large_setting": large, "speedup": ratios,
                   "reservoirpy": RPY_VERSION, "environment": environment(), "repeats": args.repeats,
                   "unroll": args.unroll}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
