"""Curvature and dynamics analysis for any ``loss_fn(params, *batch) -> scalar`` and params pytree.

Every function takes the loss function, the parameters (any pytree: dicts, tuples, Flax NNX ``State``) and the
data as positional arguments; data and parameters enter compiled code as arguments, never as constants.
"""

from analysis._checks import leaf_paths as leaf_paths
from analysis._objective import BlockSpec as BlockSpec
from analysis.batches import Batches as Batches
from analysis.blocks import block_curvature as block_curvature
from analysis.blocks import BlockCurvature as BlockCurvature
from analysis._objective import layer_blocks as layer_blocks
from analysis.census import critical_point_census as critical_point_census
from analysis.census import distinct_critical_points as distinct_critical_points
from analysis.causality import causal_structure as causal_structure
from analysis.causality import CausalStructure as CausalStructure
from analysis.condition import condition_number as condition_number
from analysis.condition import ConditionInfo as ConditionInfo
from analysis.curvatures import MCFisher as MCFisher
from analysis.curvatures import supervised_loss as supervised_loss
from analysis.curvatures import SupervisedLoss as SupervisedLoss
from analysis.critical import classify_critical_point as classify_critical_point
from analysis.critical import CriticalPoint as CriticalPoint
from analysis.critical import CriticalPointInfo as CriticalPointInfo
from analysis.critical import EigenDirection as EigenDirection
from analysis.critical import escape_direction as escape_direction
from analysis.critical import find_critical_point as find_critical_point
from analysis.critical import find_critical_points as find_critical_points
from analysis.critical import hessian_direction as hessian_direction
from analysis.critical import hessian_index as hessian_index
from analysis.curvature import gradient_curvature as gradient_curvature
from analysis.curvature import GradientCurvature as GradientCurvature
from analysis.density import spectral_density as spectral_density
from analysis.density import SpectralDensity as SpectralDensity
from analysis.density import wasserstein1_discrete as wasserstein1_discrete
from analysis.descent import noisy_descent as noisy_descent
from analysis.diagonal import curvature_diagonal as curvature_diagonal
from analysis.diagonal import DiagonalEstimate as DiagonalEstimate
from analysis.dynamics import contraction_bound as contraction_bound
from analysis.dynamics import ContractionBound as ContractionBound
from analysis.dynamics import jacobian_products as jacobian_products
from analysis.dynamics import JacobianProducts as JacobianProducts
from analysis.dynamics import singular_values as singular_values
from analysis.dynamics import spectral_radius as spectral_radius
from analysis.dynamics import SpectralRadius as SpectralRadius
from analysis.dynamics import state_jacobians as state_jacobians
from analysis.dynamics import trajectory_distance as trajectory_distance
from analysis.hessian import dense_hessian as dense_hessian
from analysis.hessian import hessian_spectrum as hessian_spectrum
from analysis.hessian import hvp as hvp
from analysis.hessian import num_params as num_params
from analysis.lanczos import hessian_eigs as hessian_eigs
from analysis.lanczos import HessianEigs as HessianEigs
from analysis.influence import influence_scores as influence_scores
from analysis.influence import InfluenceScores as InfluenceScores
from analysis.kfac import kfac_factors as kfac_factors
from analysis.kfac import KroneckerFactors as KroneckerFactors
from analysis.landscape import filter_normalize as filter_normalize
from analysis.landscape import filter_normalized_direction as filter_normalized_direction
from analysis.landscape import interpolate as interpolate
from analysis.landscape import loss_along_direction as loss_along_direction
from analysis.landscape import loss_surface_2d as loss_surface_2d
from analysis.landscape import second_difference as second_difference
from analysis.matrix_functions import curvature_inverse_trace as curvature_inverse_trace
from analysis.matrix_functions import curvature_logdet as curvature_logdet
from analysis.monitor import CurvatureMonitor as CurvatureMonitor
from analysis.monitor import MonitorRecord as MonitorRecord
from analysis.monitor import MonitorState as MonitorState
from analysis.penalties import contractive_penalty as contractive_penalty
from analysis.penalties import contractive_penalty_estimate as contractive_penalty_estimate
from analysis.penalties import PenaltyEstimate as PenaltyEstimate
from analysis.penalties import projection_variance as projection_variance
from analysis.penalties import sigmoid_contractive_penalty as sigmoid_contractive_penalty
from analysis.solve import curvature_solve as curvature_solve
from analysis.solve import SolveResult as SolveResult
from analysis.trace import hessian_trace as hessian_trace
from analysis.trace import TraceEstimate as TraceEstimate

__all__ = [
    "Batches", "BlockSpec", "CausalStructure", "ConditionInfo", "ContractionBound", "CriticalPoint",
    "CriticalPointInfo", "CurvatureMonitor", "DiagonalEstimate", "EigenDirection", "GradientCurvature", "HessianEigs",
    "InfluenceScores", "JacobianProducts", "KroneckerFactors", "MCFisher", "MonitorRecord", "MonitorState",
    "PenaltyEstimate", "SolveResult", "SpectralDensity", "SpectralRadius", "SupervisedLoss", "TraceEstimate",
    "causal_structure", "classify_critical_point", "condition_number", "contraction_bound", "contractive_penalty",
    "contractive_penalty_estimate", "critical_point_census", "curvature_diagonal", "curvature_inverse_trace",
    "curvature_logdet", "curvature_solve", "dense_hessian", "distinct_critical_points", "escape_direction",
    "filter_normalize", "filter_normalized_direction", "find_critical_point", "find_critical_points",
    "gradient_curvature", "hessian_direction", "hessian_eigs", "hessian_index", "hessian_spectrum", "hessian_trace",
    "hvp", "influence_scores", "interpolate", "jacobian_products", "kfac_factors", "layer_blocks", "leaf_paths",
    "loss_along_direction", "loss_surface_2d", "noisy_descent", "num_params", "projection_variance",
    "second_difference", "sigmoid_contractive_penalty", "singular_values", "spectral_density", "spectral_radius",
    "state_jacobians", "supervised_loss", "trajectory_distance", "wasserstein1_discrete",
]
