"""Flax NNX models, one family per file; each crosses into pure code through ``split`` (parameter-only models) or
``curvature_objective`` (BatchNorm, Dropout, any other state)."""

from jaxdl.models.mlp import MLP as MLP
from jaxdl.models.mlp import split as split
from jaxdl.models.autoencoder import Autoencoder as Autoencoder
from jaxdl.models.autoencoder import AutoencoderFns as AutoencoderFns
from jaxdl.models.autoencoder import autoencoder_split as autoencoder_split
from jaxdl.models.autoencoder import principal_angle_cosines as principal_angle_cosines
from jaxdl.models.autoencoder import reconstruction_error as reconstruction_error
from jaxdl.models.autoencoder import sparsity_penalty as sparsity_penalty
from jaxdl.models.dropout import DropoutMLP as DropoutMLP
from jaxdl.models.dropout import DropoutNet as DropoutNet
from jaxdl.models.dropout import dropout_split as dropout_split
from jaxdl.models.dropout import exact_arithmetic_mean as exact_arithmetic_mean
from jaxdl.models.dropout import exact_geometric_mean as exact_geometric_mean
from jaxdl.models.dropout import exact_means as exact_means
from jaxdl.models.dropout import monte_carlo_predict as monte_carlo_predict
from jaxdl.models.dropout import sample_predictions as sample_predictions
from jaxdl.models.dropout import weight_scaling_predict as weight_scaling_predict
from jaxdl.models.perceptron import Perceptron as Perceptron
from jaxdl.models.perceptron import PerceptronFit as PerceptronFit
from jaxdl.models.perceptron import least_squares_fit as least_squares_fit
from jaxdl.models.perceptron import perceptron_fit as perceptron_fit
from jaxdl.models.generator import Generator as Generator
from jaxdl.models.generator import sample_latent as sample_latent
from jaxdl.models.generator import split_method as split_method
from jaxdl.models.vae import VAE as VAE
from jaxdl.models.vae import VAEHistory as VAEHistory
from jaxdl.models.vae import fit_vae as fit_vae
from jaxdl.models.vae import gaussian_kl as gaussian_kl
from jaxdl.models.vae import reparameterize as reparameterize
from jaxdl.models.gan import GAN as GAN
from jaxdl.models.gan import Discriminator as Discriminator
from jaxdl.models.gan import GANHistory as GANHistory
from jaxdl.models.gan import discriminator_loss as discriminator_loss
from jaxdl.models.gan import fit_gan as fit_gan
from jaxdl.models.gan import generator_loss as generator_loss
from jaxdl.models.rbm import RBM as RBM
from jaxdl.models.rbm import AISResult as AISResult
from jaxdl.models.rbm import RBMHistory as RBMHistory
from jaxdl.models.rbm import RBMParams as RBMParams
from jaxdl.models.rbm import ais_log_partition as ais_log_partition
from jaxdl.models.rbm import cd_gradient as cd_gradient
from jaxdl.models.rbm import fit_rbm as fit_rbm
from jaxdl.models.rbm import free_energy as free_energy
from jaxdl.models.rbm import gibbs_chain as gibbs_chain
from jaxdl.models.rbm import log_likelihood_exact as log_likelihood_exact
from jaxdl.models.rbm import log_partition_exact as log_partition_exact
from jaxdl.models.esn import ESN as ESN
from jaxdl.models.esn import ReservoirWeights as ReservoirWeights
from jaxdl.models.esn import SparseRows as SparseRows
from jaxdl.models.esn import input_matrix as input_matrix
from jaxdl.models.esn import memory_capacity as memory_capacity
from jaxdl.models.esn import readout_statistics as readout_statistics
from jaxdl.models.esn import reservoir_matrix as reservoir_matrix
from jaxdl.models.esn import reservoir_step as reservoir_step
from jaxdl.models.esn import run_reservoir as run_reservoir
from jaxdl.models.esn import spectral_radius_dense as spectral_radius_dense
from jaxdl.models.esn import to_dense as to_dense
from jaxdl.models._readout import ReadoutStatistics as ReadoutStatistics
from jaxdl.models._readout import ridge_regression as ridge_regression
from jaxdl.models._readout import solve_readout as solve_readout
from jaxdl.models._readout import state_statistics as state_statistics
from jaxdl.models.lsm import LSM as LSM
from jaxdl.models.lsm import LIFState as LIFState
from jaxdl.models.lsm import lif_step as lif_step
from jaxdl.models.lsm import run_liquid as run_liquid
from jaxdl.models.rnn import RNN as RNN
from jaxdl.models.rnn import BidirectionalRNN as BidirectionalRNN
from jaxdl.models.rnn import CellParams as CellParams
from jaxdl.models.rnn import ElmanCell as ElmanCell
from jaxdl.models.rnn import EncoderDecoder as EncoderDecoder
from jaxdl.models.rnn import SequenceToVector as SequenceToVector
from jaxdl.models.rnn import VectorToSequence as VectorToSequence
from jaxdl.models.rnn import elman_scan as elman_scan
from jaxdl.models.rnn import elman_step as elman_step
from jaxdl.models.init import initialize_mlp as initialize_mlp
from jaxdl.models.init import init_stack as init_stack
from jaxdl.models.init import stack as stack
from jaxdl.models.objective import curvature_objective as curvature_objective
from jaxdl.models.resnet import ResNet20 as ResNet20
from jaxdl.models.transformer import TransformerBlock as TransformerBlock
from jaxdl.models.transformer import TransformerClassifier as TransformerClassifier

__all__ = [
    "AISResult", "Autoencoder", "AutoencoderFns", "BidirectionalRNN", "CellParams", "Discriminator", "DropoutMLP",
    "DropoutNet", "ESN", "ElmanCell", "EncoderDecoder", "GAN", "GANHistory", "Generator", "LIFState", "LSM", "MLP",
    "Perceptron", "PerceptronFit", "RBM", "RBMHistory", "RBMParams", "RNN", "ReadoutStatistics", "ResNet20",
    "ReservoirWeights", "SequenceToVector", "SparseRows", "TransformerBlock", "TransformerClassifier", "VAE",
    "VAEHistory", "VectorToSequence", "ais_log_partition", "autoencoder_split", "cd_gradient", "curvature_objective",
    "discriminator_loss", "dropout_split", "elman_scan", "elman_step", "exact_arithmetic_mean", "exact_geometric_mean",
    "exact_means", "fit_gan", "fit_rbm", "fit_vae", "free_energy", "gaussian_kl", "generator_loss", "gibbs_chain",
    "init_stack", "initialize_mlp", "input_matrix", "least_squares_fit", "lif_step", "log_likelihood_exact",
    "log_partition_exact", "memory_capacity", "monte_carlo_predict", "perceptron_fit", "principal_angle_cosines",
    "readout_statistics", "reconstruction_error", "reparameterize", "reservoir_matrix", "reservoir_step",
    "ridge_regression", "run_liquid", "run_reservoir", "sample_latent", "sample_predictions", "solve_readout",
    "sparsity_penalty", "spectral_radius_dense", "split", "split_method", "stack", "state_statistics", "to_dense",
    "weight_scaling_predict",
]
