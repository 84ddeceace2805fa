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
from jaxdl.experiments._recurrent import figure, rmse
from jaxdl.experiments._registry import ExperimentResult, register
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


@register("lsm-vs-esn", "sec. 10.8: a spiking (LIF) liquid state machine vs the ESN on Mackey-Glass, 1-10 steps ahead")
def run(*, seed: int = 0, quick: bool = False) -> ExperimentResult:
    horizons = (1, 10) if quick else (1, 5, 10)
    seeds = range(seed, seed + (1 if quick else 5))
    lsm_units = 300
    res, example = compare(horizons, seeds, lsm_units)
    med = {k: {h: float(np.median(v)) for h, v in res[k].items()} for k in ("esn", "lsm")}
    far = [h for h in horizons if h >= 5]
    passed = (example["binary"] and all(med["lsm"][h] < res["persistence"][h] for h in far)
              and all(med["esn"][h] * 3 < med["lsm"][h] for h in horizons))
    verdict = ("Median test RMSE over " + f"{len(seeds)} seed(s), ESN (100 analog units) / LSM ({lsm_units} LIF units, "
               "binary spikes) / persistence: "
               + "; ".join(f"h={h}: {med['esn'][h]:.4f} / {med['lsm'][h]:.4f} / {res['persistence'][h]:.4f}"
                           for h in horizons)
               + f". Spikes are exactly 0 or 1: {example['binary']}; mean firing rate "
               f"{np.mean(res['firing_rate']):.2f} spikes per unit per step.")
    metrics = {"horizons": list(horizons), "rmse_esn": {str(h): v for h, v in res["esn"].items()},
               "rmse_lsm": {str(h): v for h, v in res["lsm"].items()},
               "rmse_persistence": {str(h): v for h, v in res["persistence"].items()},
               "median": {k: {str(h): v for h, v in d.items()} for k, d in med.items()},
               "firing_rate": res["firing_rate"], "binary_spikes": example["binary"], "lsm_units": lsm_units}
    return ExperimentResult("lsm-vs-esn", CLAIM, bool(passed), verdict, metrics,
                            *_figures(horizons, med, res, example))


def _figures(horizons, med, res, example):
    fig, axes = figure(2, width=5)
    ax = axes[0]
    ax.semilogy(horizons, [med["esn"][h] for h in horizons], "o-", label="ESN (analog tanh)")
    ax.semilogy(horizons, [med["lsm"][h] for h in horizons], "s-", label="LSM (LIF, binary spikes)")
    ax.semilogy(horizons, [res["persistence"][h] for h in horizons], "k^--", label="persistence")
    ax.set_xlabel("forecast horizon h (steps)")
    ax.set_ylabel("test RMSE (log)")
    ax.set_title("Mackey-Glass, h steps ahead")
    ax.legend(fontsize=8)
    ax = axes[1]
    t, u = np.nonzero(example["spikes"])
    ax.plot(t, u, "k|", ms=3)
    ax.set_xlabel("test step")
    ax.set_ylabel("unit")
    ax.set_title("LSM spike raster (100 units)")
    return ({"lsm_vs_esn": fig},
            {"lsm_vs_esn": "Left: test RMSE against horizon. Right: binary spikes of the liquid."})
