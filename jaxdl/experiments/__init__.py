"""Experiments, one file per claim of the textbook material, registered by name for ``jaxdl experiment NAME``.

Importing this package imports every experiment module so that each registers itself.
"""

from jaxdl.experiments._registry import EXPERIMENTS as EXPERIMENTS
from jaxdl.experiments._registry import Experiment as Experiment
from jaxdl.experiments._registry import ExperimentResult as ExperimentResult
from jaxdl.experiments._registry import get_experiment as get_experiment
from jaxdl.experiments._registry import register as register

# Experiment modules (each registers itself on import); one line per module.

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentResult", "get_experiment", "register"]
