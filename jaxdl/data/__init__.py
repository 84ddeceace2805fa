"""Data sets shipped with packages or generated in code; nothing is downloaded at run time.

Every loader validates its settings and returns plain ``jax.Array`` values. One private module per kind of data;
the public names are re-exported here.
"""

from jaxdl.data._digits import Dataset as Dataset
from jaxdl.data._digits import digits as digits
from jaxdl.data._digits import digits_binarized as digits_binarized
from jaxdl.data._digits import digits_full as digits_full
from jaxdl.data._digits import minibatches as minibatches
from jaxdl.data._digits import xor as xor

# Further data modules re-export their public names below, one line per name.
from jaxdl.data._tasks import FUNCTIONS_1D as FUNCTIONS_1D
from jaxdl.data._tasks import circle as circle
from jaxdl.data._tasks import function_1d as function_1d
from jaxdl.data._tasks import linearly_separable as linearly_separable
from jaxdl.data._tasks import sawtooth as sawtooth
from jaxdl.data._tasks import tent_composition as tent_composition
from jaxdl.data._tasks import tent_map as tent_map
from jaxdl.data._mixtures import GaussianMixture as GaussianMixture
from jaxdl.data._mixtures import gaussian_mixture as gaussian_mixture
from jaxdl.data._mixtures import ring_mixture as ring_mixture
from jaxdl.data._sequences import SequenceTask as SequenceTask
from jaxdl.data._sequences import copy_memory as copy_memory
from jaxdl.data._sequences import delay_lines as delay_lines
from jaxdl.data._sequences import delayed_recall as delayed_recall
from jaxdl.data._sequences import forecasting_split as forecasting_split
from jaxdl.data._sequences import mackey_glass as mackey_glass
from jaxdl.data._images import digits_images as digits_images
from jaxdl.data._images import digits_sequences as digits_sequences
from jaxdl.data._images import images_from as images_from
from jaxdl.data._images import sequences_from as sequences_from
