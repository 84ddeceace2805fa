"""A liquid state machine next to the echo state network on the same task (Deep Learning sec. 10.8).

Both reservoirs are fixed and random, both readouts are closed-form ridge regressions; the liquid state machine's
units are leaky integrate-and-fire neurons whose outputs are binary spikes (the readout sees exponentially filtered
spike trains). Task: reservoirpy's Mackey-Glass (2000 steps, last 20% test, 100 warm-up steps), predicting
``h = 1, 5, 10`` steps ahead, against persistence ``y_{t+h} = x_t``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.data import forecasting_split, mackey_glass
from jaxdl.experiments._common import figure, rmse
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models import ESN, LSM

CLAIM = ("Deep Learning sec. 10.8: liquid state machines are reservoir computers with spiking (binary) units; with "
         "a linear readout they carry information about the input history (beating persistence several steps ahead), "
         "while the analog echo state network of the same setting is far more precise.")


def compare(horizons, seeds, lsm_units: int):
    with jax.enable_x64(True):
        series = mackey_glass(2000, method="reservoirpy", dtype=jnp.float64)
        out = {"esn": {}, "lsm": {}, "persistence": {}, "firing_rate": []}
        example = None
        for h in horizons:
            x_tr, x_te, y_tr, y_te = forecasting_split(series, horizon=h)
            mu, sd = x_tr.mean(), x_tr.std()
            esn, lsm = [], []
            for s in seeds:
                e = ESN(1, 100, 1, spectral_radius=1.25, leak=0.3, ridge=1e-5, rngs=nnx.Rngs(s), dtype=jnp.float64)
                esn.append(rmse(e.fit(x_tr, y_tr, warmup=100)(x_te), y_te))
                m = LSM(1, lsm_units, 1, rngs=nnx.Rngs(s), dtype=jnp.float64)
                m.fit((x_tr - mu) / sd, y_tr, warmup=100)
                spikes, traces = m.run((x_te - mu) / sd)
                pred = traces @ m.w_out[...] + m.b_out[...]
                lsm.append(rmse(pred, y_te))
                out["firing_rate"].append(float(spikes.mean()))
                binary = bool(jnp.all((spikes == 0) | (spikes == 1)))
                if example is None:
                    example = {"spikes": np.asarray(spikes[:200, :100]), "binary": binary}
                example["binary"] = example["binary"] and binary
            out["esn"][h], out["lsm"][h], out["persistence"][h] = np.array(esn), np.array(lsm), rmse(x_te, y_te)
    return out, example


def measure(*, seed: int, quick: bool) -> dict:
    """Test RMSE of the ESN, the LSM and persistence per horizon and seed, firing rates and a spike raster."""
    horizons = (1, 10) if quick else (1, 5, 10)
    seeds = range(seed, seed + (1 if quick else 5))
    lsm_units = 300
    res, example = compare(horizons, seeds, lsm_units)
    return {"horizons": list(horizons), "rmse_esn": {str(h): v for h, v in res["esn"].items()},
            "rmse_lsm": {str(h): v for h, v in res["lsm"].items()},
            "rmse_persistence": {str(h): v for h, v in res["persistence"].items()},
            "median": {k: {str(h): float(np.median(v)) for h, v in res[k].items()} for k in ("esn", "lsm")},
            "firing_rate": res["firing_rate"], "binary_spikes": example["binary"], "lsm_units": lsm_units,
            "spike_raster": example["spikes"].astype(np.int8)}


def verdict(m: dict) -> Verdict:
    """Binary spikes, the LSM beating persistence from 5 steps ahead, and the ESN 3x more precise at every horizon."""
    horizons, med, persistence = [str(h) for h in m["horizons"]], m["median"], m["rmse_persistence"]
    far = [str(h) for h in m["horizons"] if h >= 5]
    passed = (m["binary_spikes"] and all(med["lsm"][h] < persistence[h] for h in far)
              and all(med["esn"][h] * 3 < med["lsm"][h] for h in horizons))
    text = (f"Median test RMSE over {len(m['rmse_esn'][horizons[0]])} seed(s), ESN (100 analog units) / LSM "
            f"({m['lsm_units']} LIF units, binary spikes) / persistence: "
            + "; ".join(f"h={h}: {med['esn'][h]:.4f} / {med['lsm'][h]:.4f} / {persistence[h]:.4f}" for h in horizons)
            + f". Spikes are exactly 0 or 1: {m['binary_spikes']}; mean firing rate "
            f"{np.mean(m['firing_rate']):.2f} spikes per unit per step.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Median test RMSE against the horizon, and the spike raster of the liquid."""
    horizons, med, persistence = m["horizons"], m["median"], m["rmse_persistence"]
    fig, axes = figure(2, width=5, height=3.6)
    ax = axes[0]
    ax.semilogy(horizons, [med["esn"][str(h)] for h in horizons], "o-", label="ESN (analog tanh)")
    ax.semilogy(horizons, [med["lsm"][str(h)] for h in horizons], "s-", label="LSM (LIF, binary spikes)")
    ax.semilogy(horizons, [persistence[str(h)] for h in horizons], "k^--", label="persistence")
    ax.set_xlabel("forecast horizon h (steps)")
    ax.set_ylabel("test RMSE (log)")
    ax.set_title("Mackey-Glass, h steps ahead")
    ax.legend(fontsize=8)
    ax = axes[1]
    t, u = np.nonzero(np.asarray(m["spike_raster"]))
    ax.plot(t, u, "k|", ms=3)
    ax.set_xlabel("test step")
    ax.set_ylabel("unit")
    ax.set_title("LSM spike raster (100 units)")
    return {"lsm_vs_esn": (fig, "Left: test RMSE against horizon. Right: binary spikes of the liquid.")}


EXPERIMENT = experiment(
    "lsm-vs-esn",
    summary="sec. 10.8: a spiking (LIF) liquid state machine vs the ESN on Mackey-Glass, 1-10 steps ahead",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
