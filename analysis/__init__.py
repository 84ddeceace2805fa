"""Curvature and dynamics analysis for any ``loss_fn(params, *batch) -> scalar`` and params pytree.

Every function takes the loss function, the parameters (any pytree: dicts, tuples, Flax NNX ``State``) and the
data as positional arguments; data and parameters enter compiled code as arguments, never as constants.
"""

from analysis._objective import BlockSpec as BlockSpec
from analysis._objective import layer_blocks as layer_blocks
from analysis.condition import ConditionInfo as ConditionInfo
from analysis.condition import condition_number as condition_number
from analysis.curvature import GradientCurvature as GradientCurvature
from analysis.curvature import gradient_curvature as gradient_curvature
from analysis.density import SpectralDensity as SpectralDensity
from analysis.density import spectral_density as spectral_density
from analysis.density import wasserstein1_discrete as wasserstein1_discrete
from analysis.hessian import dense_hessian as dense_hessian
from analysis.hessian import hessian_spectrum as hessian_spectrum
from analysis.hessian import hvp as hvp
from analysis.hessian import num_params as num_params
from analysis.lanczos import HessianEigs as HessianEigs
from analysis.lanczos import hessian_eigs as hessian_eigs
from analysis.penalties import PenaltyEstimate as PenaltyEstimate
from analysis.penalties import contractive_penalty as contractive_penalty
from analysis.penalties import contractive_penalty_estimate as contractive_penalty_estimate
from analysis.penalties import projection_variance as projection_variance
from analysis.penalties import sigmoid_contractive_penalty as sigmoid_contractive_penalty
from analysis.trace import TraceEstimate as TraceEstimate
from analysis.trace import hessian_trace as hessian_trace
from analysis.critical import CriticalPoint as CriticalPoint
from analysis.critical import CriticalPointInfo as CriticalPointInfo
from analysis.critical import EigenDirection as EigenDirection
from analysis.critical import classify_critical_point as classify_critical_point
from analysis.critical import escape_direction as escape_direction
from analysis.critical import find_critical_point as find_critical_point
from analysis.critical import find_critical_points as find_critical_points
from analysis.critical import hessian_direction as hessian_direction
from analysis.critical import hessian_index as hessian_index
from analysis.landscape import filter_normalize as filter_normalize
from analysis.landscape import filter_normalized_direction as filter_normalized_direction
from analysis.landscape import interpolate as interpolate
from analysis.landscape import loss_along_direction as loss_along_direction
from analysis.landscape import loss_surface_2d as loss_surface_2d
from analysis.landscape import second_difference as second_difference

__all__ = [
    "BlockSpec",
    "ConditionInfo",
    "GradientCurvature",
    "HessianEigs",
    "SpectralDensity",
    "TraceEstimate",
    "condition_number",
    "dense_hessian",
    "gradient_curvature",
    "hessian_eigs",
    "hessian_spectrum",
    "hessian_trace",
    "hvp",
    "layer_blocks",
    "num_params",
    "spectral_density",
    "wasserstein1_discrete",
]
__all__ += [
    "CriticalPoint", "CriticalPointInfo", "EigenDirection", "classify_critical_point", "escape_direction",
    "find_critical_point", "find_critical_points", "hessian_direction", "hessian_index",
    "filter_normalize", "filter_normalized_direction", "interpolate", "loss_along_direction", "loss_surface_2d",
    "second_difference",
]
__all__ += ["PenaltyEstimate", "contractive_penalty", "contractive_penalty_estimate", "projection_variance",
            "sigmoid_contractive_penalty"]
from analysis.causality import CausalStructure as CausalStructure
from analysis.causality import causal_structure as causal_structure
from analysis.dynamics import ContractionBound as ContractionBound
from analysis.dynamics import JacobianProducts as JacobianProducts
from analysis.dynamics import SpectralRadius as SpectralRadius
from analysis.dynamics import contraction_bound as contraction_bound
from analysis.dynamics import jacobian_products as jacobian_products
from analysis.dynamics import singular_values as singular_values
from analysis.dynamics import spectral_radius as spectral_radius
from analysis.dynamics import state_jacobians as state_jacobians
from analysis.dynamics import trajectory_distance as trajectory_distance
__all__ += ["CausalStructure", "causal_structure", "ContractionBound", "JacobianProducts", "SpectralRadius",
            "contraction_bound", "jacobian_products", "singular_values", "spectral_radius", "state_jacobians",
            "trajectory_distance"]
