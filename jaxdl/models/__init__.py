"""Flax NNX models, one family per file; each crosses into pure code through ``split``."""

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

__all__ = ["MLP", "split"]
__all__ += ["Perceptron", "PerceptronFit", "least_squares_fit", "perceptron_fit"]
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
__all__ += ["Generator", "sample_latent", "split_method", "VAE", "VAEHistory", "fit_vae", "gaussian_kl",
            "reparameterize", "GAN", "Discriminator", "GANHistory", "discriminator_loss", "fit_gan", "generator_loss",
            "RBM", "AISResult", "RBMHistory", "RBMParams", "ais_log_partition", "cd_gradient", "fit_rbm",
            "free_energy", "gibbs_chain", "log_likelihood_exact", "log_partition_exact"]
__all__ += ["DropoutMLP", "DropoutNet", "dropout_split", "exact_arithmetic_mean", "exact_geometric_mean", "exact_means",
            "monte_carlo_predict", "sample_predictions", "weight_scaling_predict"]
__all__ += ["Autoencoder", "AutoencoderFns", "autoencoder_split", "principal_angle_cosines", "reconstruction_error",
            "sparsity_penalty"]
