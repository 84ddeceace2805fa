"""Echo state network on Mackey-Glass (Deep Learning sec. 10.8): teacher-forced one-step-ahead prediction in
reservoirpy's README setting, and closed-loop generation.

Setting (ANCHORS.md): Mackey-Glass tau = 17 by reservoirpy's own recurrence (h = 1, 2000 steps), one-step-ahead,
last 20% test, 100 warm-up steps; ``ESN(units=100, sr=1.25, lr=0.3, ridge=1e-5)`` with reservoirpy's defaults
(10% connectivity, +-1 input weights on 10% of the units, no bias). reservoirpy reaches RMSE 0.0019-0.0030 and
R^2 0.99983-0.99993 over 7 seeds; persistence (``y_t = x_t``) has RMSE 0.032. Then the readout is trained once
(teacher forcing) and the network runs on its own predictions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.data import forecasting_split, mackey_glass
from jaxdl.experiments._common import figure, r2, rmse
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models import ESN

CLAIM = ("Deep Learning sec. 10.8: an echo state network, whose only trained part is a linear readout solved in "
         "closed form, predicts the chaotic Mackey-Glass series one step ahead (reservoirpy's README setting: RMSE "
         "0.0019-0.0030, R^2 0.99983-0.99993) and, run on its own outputs, keeps generating it.")
ANCHOR_RMSE = (0.0019, 0.0030)
ANCHOR_R2 = (0.99983, 0.99993)


def readme_setting(seeds, *, units: int = 100):
    """RMSE and R^2 of the reservoirpy README setting for each seed, float64, and the test predictions."""
    with jax.enable_x64(True):
        series = mackey_glass(2000, method="reservoirpy", dtype=jnp.float64)
        x_tr, x_te, y_tr, y_te = forecasting_split(series, horizon=1, test_fraction=0.2)
        rows, preds = [], {}
        for s in seeds:
            esn = ESN(1, units, 1, spectral_radius=1.25, leak=0.3, ridge=1e-5, rngs=nnx.Rngs(s), dtype=jnp.float64)
            pred = esn.fit(x_tr, y_tr, warmup=100)(x_te)
            rows.append((rmse(pred, y_te), r2(pred, y_te)))
            preds[s] = np.asarray(pred[:, 0])
        persistence = rmse(x_te, y_te)
    return np.array(rows), persistence, preds, np.asarray(y_te[:, 0])


def generation(seeds, *, units: int, train: int = 2000, horizon: int = 500, threshold: float = 0.2):
    """Closed-loop runs: steps until the error first exceeds ``threshold`` standard deviations of the series."""
    with jax.enable_x64(True):
        series = mackey_glass(train + horizon, method="reservoirpy", dtype=jnp.float64)
        mu, sd = series[:train].mean(), series[:train].std()
        z = (series - mu) / sd
        valid, runs = [], {}
        for s in seeds:
            esn = ESN(1, units, 1, spectral_radius=1.25, leak=0.3, ridge=1e-8, rngs=nnx.Rngs(s), dtype=jnp.float64)
            esn.fit(z[: train - 1], z[1:train], warmup=100)
            esn(z[train - 1: train])  # consume the last known value: the next output predicts step `train`
            gen = np.asarray(esn.generate(horizon)[:, 0])
            err = np.abs(gen - np.asarray(z[train:, 0]))
            valid.append(int(np.argmax(err > threshold)) if np.any(err > threshold) else horizon)
            runs[s] = gen * float(sd) + float(mu)
    return np.array(valid), runs, np.asarray(series[train:, 0])


def measure(*, seed: int, quick: bool) -> dict:
    """One-step-ahead RMSE and R^2 over seeds in the README setting, and closed-loop generation runs."""
    seeds = range(seed, seed + 7)  # 100-unit fits are cheap; fewer seeds make the median too noisy to compare
    rows, persistence, preds, target = readme_setting(seeds)
    gen_seeds = range(seed, seed + (1 if quick else 5))
    units = 300 if quick else 500
    valid, runs, truth = generation(gen_seeds, units=units, horizon=200 if quick else 500)
    return {"rmse": rows[:, 0], "r2": rows[:, 1], "median_rmse": float(np.median(rows[:, 0])),
            "median_r2": float(np.median(rows[:, 1])), "persistence_rmse": persistence, "seeds": list(seeds),
            "anchor_rmse": ANCHOR_RMSE, "anchor_r2": ANCHOR_R2, "generation_valid_steps": valid,
            "generation_units": units, "one_step_predictions": {str(s): p for s, p in preds.items()},
            "one_step_target": target, "generation_runs": {str(s): g for s, g in runs.items()},
            "generation_truth": truth}


def verdict(m: dict) -> Verdict:
    """Median RMSE and R^2 within reservoirpy's range, RMSE 5x below persistence, 100+ valid closed-loop steps."""
    rmse_, r2_, valid = np.asarray(m["rmse"]), np.asarray(m["r2"]), np.asarray(m["generation_valid_steps"])
    med_rmse, med_r2, persistence = m["median_rmse"], m["median_r2"], m["persistence_rmse"]
    passed = (med_rmse <= ANCHOR_RMSE[1] and med_r2 >= ANCHOR_R2[0] and med_rmse < persistence / 5
              and float(np.median(valid)) >= 100)
    text = (f"One-step-ahead over {rmse_.size} seeds: RMSE median {med_rmse:.4f} (range {rmse_.min():.4f}-"
            f"{rmse_.max():.4f}; reservoirpy {ANCHOR_RMSE[0]}-{ANCHOR_RMSE[1]}), R^2 median {med_r2:.5f} "
            f"(range {r2_.min():.5f}-{r2_.max():.5f}; reservoirpy {ANCHOR_R2[0]}-{ANCHOR_R2[1]}); "
            f"persistence RMSE {persistence:.4f}. Closed loop ({m['generation_units']} units, ridge 1e-8): the "
            f"generated series stays within 0.2 standard deviations for {int(np.median(valid))} steps (median over "
            f"{valid.size} seeds; per seed {valid.tolist()}).")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """One-step predictions and their errors per seed; closed-loop runs against the true series."""
    preds = {s: np.asarray(p) for s, p in m["one_step_predictions"].items()}
    runs = {s: np.asarray(g) for s, g in m["generation_runs"].items()}
    target, truth = np.asarray(m["one_step_target"]), np.asarray(m["generation_truth"])
    valid = m["generation_valid_steps"]
    fig, axes = figure(2, width=5.5, height=3.6)
    s0 = next(iter(preds))
    t = np.arange(target.size)
    axes[0].plot(t, target, "k-", lw=1, label="Mackey-Glass (test)")
    axes[0].plot(t, preds[s0], "C1--", lw=1, label=f"ESN one-step prediction (seed {s0})")
    axes[0].set_xlabel("test step")
    axes[0].set_ylabel("x(t)")
    axes[0].set_title("teacher-forced one-step-ahead")
    axes[0].legend(fontsize=8)
    for s, p in preds.items():
        axes[1].semilogy(t, np.maximum(np.abs(p - target), 1e-9), lw=0.6, label=f"seed {s}")
    axes[1].set_xlabel("test step")
    axes[1].set_ylabel("|prediction - target| (log)")
    axes[1].set_title("absolute one-step errors")
    axes[1].legend(fontsize=6, ncol=2)
    fig2, (ax,) = figure(1, width=8, height=3.6)
    for (s, g), v in zip(runs.items(), valid):
        ax.plot(np.arange(g.size), g, lw=0.8, label=f"generated, seed {s} (valid {v} steps)")
    # Drawn last and dashed so that it stays visible where the generated runs still follow it.
    ax.plot(np.arange(truth.size), truth, "k--", lw=1.2, label="Mackey-Glass", zorder=3)
    ax.set_xlabel("steps after the end of teacher forcing")
    ax.set_ylabel("x(t)")
    ax.set_title("closed-loop generation")
    ax.legend(fontsize=7)
    return {
        "esn_one_step": (fig, "ESN(100 units, sr 1.25, leak 0.3, ridge 1e-5) on reservoirpy's Mackey-Glass: test "
                              "predictions and absolute errors per seed."),
        "esn_generation": (fig2, "After teacher forcing, the ESN's output is fed back as its input; the series is "
                                 "reproduced for hundreds of steps before chaos separates them."),
    }


EXPERIMENT = experiment(
    "esn-mackey-glass", summary="sec. 10.8: ESN one-step-ahead on Mackey-Glass (reservoirpy README setting) and "
                                "closed-loop generation",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
