"""Experiment 1 of sec. 8.2 (ill-conditioning), quick setting: the measured claims hold numerically."""

from __future__ import annotations

import numpy as np

from jaxdl.experiments import get_experiment


def test_ill_conditioning_quick():
    res = get_experiment("ill-conditioning").run(seed=0, quick=True)
    m = res.metrics
    # Eq. 8.10 along -g at the end of training: every step predicted to raise the loss does, and the sign of the
    # prediction matches the actual change for the small and large steps alike.
    pred, act = np.asarray(m["probe"]["predicted"]), np.asarray(m["probe"]["actual"])
    assert np.any(pred > 0) and np.all(act[pred > 0] > 0)
    assert np.mean(np.sign(pred) == np.sign(act)) >= 0.85
    # Learning succeeds; the exact (float64) non-null condition number is finite and large.
    assert m["test_error_end"] < 0.5 * m["test_error_start"]
    conds = [c["condition_number"] for c in m["condition_numbers"].values()]
    assert all(np.isfinite(c) and c > 1e3 for c in conds)
    # The verdict is the conjunction of the measured checks, not a constant.
    assert res.passed == all(m["checks"].values())
    assert f"{m['test_error_end']:.3f}" in res.verdict
    assert set(res.figures) == {"gradient_norm_and_curvature", "test_error", "condition_number",
                                "predicted_vs_actual", "top_eigenvalue"}
