"""Experiments, one file per claim of the textbook material, registered by name for ``jaxdl experiment NAME``.

Each module measures one claim (``measure``), judges it from the numbers alone (``verdict``) and draws them
(``figures``); importing this package imports every module so that each registers itself.
"""

from jaxdl.experiments._registry import EXPERIMENTS as EXPERIMENTS
from jaxdl.experiments._registry import Experiment as Experiment
from jaxdl.experiments._registry import ExperimentResult as ExperimentResult
from jaxdl.experiments._registry import get_experiment as get_experiment
from jaxdl.experiments._registry import Verdict as Verdict
from jaxdl.experiments._registry import experiment as experiment

# Experiment modules (each registers itself on import); one line per module.
from jaxdl.experiments import ill_conditioning as ill_conditioning  # noqa: F401
from jaxdl.experiments import gan_digits as gan_digits  # noqa: F401
from jaxdl.experiments import gan_mixture as gan_mixture  # noqa: F401
from jaxdl.experiments import gan_saturation as gan_saturation  # noqa: F401
from jaxdl.experiments import rbm as rbm  # noqa: F401
from jaxdl.experiments import rbm_ais as rbm_ais  # noqa: F401
from jaxdl.experiments import rbm_cd_bias as rbm_cd_bias  # noqa: F401
from jaxdl.experiments import vae as vae  # noqa: F401
from jaxdl.experiments import autoencoder_pca as autoencoder_pca  # noqa: F401
from jaxdl.experiments import backprop as backprop  # noqa: F401
from jaxdl.experiments import contractive_autoencoder as contractive_autoencoder  # noqa: F401
from jaxdl.experiments import denoising_autoencoder as denoising_autoencoder  # noqa: F401
from jaxdl.experiments import depth as depth  # noqa: F401
from jaxdl.experiments import dropout_inference as dropout_inference  # noqa: F401
from jaxdl.experiments import dropout_regularization as dropout_regularization  # noqa: F401
from jaxdl.experiments import sparse_autoencoder as sparse_autoencoder  # noqa: F401
from jaxdl.experiments import universal as universal  # noqa: F401
from jaxdl.experiments import xor as xor  # noqa: F401
from jaxdl.experiments import bptt_rtrl as bptt_rtrl  # noqa: F401
from jaxdl.experiments import echo_state as echo_state  # noqa: F401
from jaxdl.experiments import esn as esn  # noqa: F401
from jaxdl.experiments import esn_init as esn_init  # noqa: F401
from jaxdl.experiments import lsm as lsm  # noqa: F401
from jaxdl.experiments import transductions as transductions  # noqa: F401
from jaxdl.experiments import vanishing as vanishing  # noqa: F401
from jaxdl.experiments import saddles as saddles  # noqa: F401
from jaxdl.experiments import local_minima as local_minima  # noqa: F401
from jaxdl.experiments import cliffs as cliffs  # noqa: F401
from jaxdl.experiments import inexact_gradients as inexact_gradients  # noqa: F401
from jaxdl.experiments import initialization as initialization  # noqa: F401
from jaxdl.experiments import landscapes as landscapes  # noqa: F401
from jaxdl.experiments import influence as influence  # noqa: F401

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentResult", "Verdict", "experiment", "get_experiment"]
