"""Flax NNX models, one family per file; each crosses into pure code through ``split``."""

from jaxdl.models.mlp import MLP as MLP
from jaxdl.models.mlp import split as split
from jaxdl.models.perceptron import Perceptron as Perceptron
from jaxdl.models.perceptron import PerceptronFit as PerceptronFit
from jaxdl.models.perceptron import least_squares_fit as least_squares_fit
from jaxdl.models.perceptron import perceptron_fit as perceptron_fit

__all__ = ["MLP", "split"]
__all__ += ["Perceptron", "PerceptronFit", "least_squares_fit", "perceptron_fit"]
