"""The experiment contract: ``measure`` returns the numbers, ``verdict`` and ``figures`` need nothing else.

Three cheap experiments (one per family) are measured once; their verdicts and figures are then computed again from
the metrics after a round trip through JSON (as ``results.json`` stores them), which fails if either reads anything
but the metrics.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from jaxdl.experiments import EXPERIMENTS, Experiment, Verdict, get_experiment
from jaxdl.report import to_jsonable


def test_every_module_registers_one_experiment_with_the_three_functions():
    import importlib

    for name, exp in EXPERIMENTS.items():
        assert isinstance(exp, Experiment) and exp.name == name
        module = importlib.import_module(exp.measure.__module__)
        assert module.EXPERIMENT is exp, name
        assert (exp.measure, exp.verdict, exp.figures) == (module.measure, module.verdict, module.figures), name
        assert exp.claim and exp.summary, name


@pytest.mark.parametrize("name", ["rbm-cd-bias", "cliffs", "lsm-vs-esn"])
def test_verdict_and_figures_come_from_the_metrics_alone(name):
    exp = get_experiment(name)
    metrics = exp.measure(seed=0, quick=True)
    stored = json.loads(json.dumps(to_jsonable(metrics)))
    direct = exp.verdict(metrics)
    assert isinstance(direct, Verdict) and isinstance(direct.passed, bool) and direct.text
    assert exp.verdict(stored) == direct
    drawn, redrawn = exp.figures(metrics), exp.figures(stored)
    assert drawn and set(drawn) == set(redrawn)
    for stem, (fig, caption) in redrawn.items():
        assert caption == drawn[stem][1] and fig.axes, stem
    plt.close("all")


def test_run_checks_its_arguments():
    exp = get_experiment("cliffs")
    with pytest.raises(TypeError, match="seed must be an int"):
        exp.run(seed=1.5)
    with pytest.raises(ValueError, match="seed=-1"):
        exp.run(seed=-1)
    with pytest.raises(TypeError, match="quick must be a bool"):
        exp.run(quick=1)
    with pytest.raises(KeyError, match="unknown experiment 'nope'"):
        get_experiment("nope")
