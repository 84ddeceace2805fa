"""Bad input to models, data, RTRL and the training drivers: a ValueError/TypeError naming the offending value."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxdl import data, rtrl
from jaxdl import models as M
from jaxdl.models import rbm

NAN, INF = float("nan"), math.inf
KEY = jax.random.key(0)
X_BIN = jnp.asarray([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])


def _rbm_params(bad: str | None = None):
    params = rbm.RBM(3, 2, rngs=nnx.Rngs(0)).params()
    if bad is not None:
        params = params._replace(**{bad: getattr(params, bad).at[0].set(NAN)})
    return params


def _tiny_gan():
    return M.GAN(2, [4], 1, [4], rngs=nnx.Rngs(0))


def _rtrl(xs):
    def step(cell, h, x):
        return jnp.tanh(cell @ h + x)

    def loss(readout, h, y):
        return jnp.sum((readout * h - y) ** 2)

    return rtrl.rtrl_value_and_grad(step, loss, (jnp.eye(2), jnp.ones(())), jnp.zeros(2), xs, jnp.ones((3, 2)))


CASES = {
    # RBM: non-finite parameters are named by leaf; keys are checked.
    "log_partition_exact NaN weights": (lambda: rbm.log_partition_exact(_rbm_params("weights")), ValueError,
                                        "params leaf 'weights'"),
    "log_partition_exact NaN hidden bias": (lambda: rbm.log_partition_exact(_rbm_params("hidden_bias")), ValueError,
                                            "params leaf 'hidden_bias'"),
    "free_energy NaN visible bias": (lambda: rbm.free_energy(_rbm_params("visible_bias"), X_BIN), ValueError,
                                     "params leaf 'visible_bias'"),
    "free_energy NaN data": (lambda: rbm.free_energy(_rbm_params(), X_BIN.at[0, 0].set(NAN)), ValueError, "v contains"),
    "log_likelihood_exact NaN weights": (lambda: rbm.log_likelihood_exact(_rbm_params("weights"), X_BIN), ValueError,
                                         "params leaf 'weights'"),
    "gibbs_chain int key": (lambda: rbm.gibbs_chain(_rbm_params(), 0, X_BIN, 1), TypeError, "key must be a JAX PRNG"),
    "gibbs_chain batch of keys": (lambda: rbm.gibbs_chain(_rbm_params(), jax.random.split(KEY, 2), X_BIN, 1),
                                  ValueError, r"key has shape \(2,\)"),
    "gibbs_chain NaN weights": (lambda: rbm.gibbs_chain(_rbm_params("weights"), KEY, X_BIN, 1), ValueError,
                                "params leaf 'weights'"),
    "cd_gradient int key": (lambda: rbm.cd_gradient(_rbm_params(), 3, X_BIN, 1), TypeError, "key must be"),
    "cd_gradient NaN weights": (lambda: rbm.cd_gradient(_rbm_params("weights"), KEY, X_BIN, 1), ValueError,
                                "params leaf 'weights'"),
    "ais int key": (lambda: rbm.ais_log_partition(_rbm_params(), 1, num_betas=5, num_runs=2), TypeError,
                    "key must be"),
    "ais NaN weights": (lambda: rbm.ais_log_partition(_rbm_params("weights"), KEY, num_betas=5, num_runs=2),
                        ValueError, "params leaf 'weights'"),
    "RBM bool size": (lambda: rbm.RBM(True, 2, rngs=nnx.Rngs(0)), TypeError, "num_visible must be an int"),
    "RBM NaN weight scale": (lambda: rbm.RBM(3, 2, rngs=nnx.Rngs(0), weight_scale=NAN), ValueError,
                             "weight_scale=nan"),
    "fit_rbm int key": (lambda: rbm.fit_rbm(X_BIN, 2, key=0, epochs=1, batch_size=1), TypeError, "key must be"),
    "fit_rbm string rate": (lambda: rbm.fit_rbm(X_BIN, 2, key=KEY, epochs=1, batch_size=1, learning_rate="a"),
                            TypeError, "learning_rate must be a real number"),
    "fit_rbm momentum 1": (lambda: rbm.fit_rbm(X_BIN, 2, key=KEY, epochs=1, batch_size=1, momentum=1.0),
                           ValueError, "momentum=1.0"),
    "fit_rbm NaN data": (lambda: rbm.fit_rbm(X_BIN.at[0, 0].set(NAN), 2, key=KEY), ValueError, "x contains NaN"),
    # MLP, dropout, generator family, perceptron, autoencoder, RNN, LSM.
    "MLP bool width": (lambda: M.MLP([2, True], rngs=nnx.Rngs(0)), ValueError, r"sizes=\[2, True\]"),
    "dropout NaN": (lambda: M.DropoutMLP([2, 3, 1], drop=NAN, rngs=nnx.Rngs(0)), ValueError, r"drop\[0\]=nan"),
    "dropout 1": (lambda: M.DropoutMLP([2, 3, 1], drop=1.0, rngs=nnx.Rngs(0)), ValueError, r"drop\[0\]=1.0"),
    "dropout bool": (lambda: M.DropoutMLP([2, 3, 1], include=True, rngs=nnx.Rngs(0)), ValueError,
                     r"include\[0\]=True"),
    "dropout int key": (lambda: M.DropoutMLP([2, 3, 1], rngs=nnx.Rngs(0))(jnp.ones((1, 2)), key=0, train=True),
                        TypeError, "key must be"),
    "generator bool hidden": (lambda: M.Generator(2, [True], 1, rngs=nnx.Rngs(0)), ValueError, "hidden_sizes"),
    "VAE zero width": (lambda: M.VAE(2, [0], 1, rngs=nnx.Rngs(0)), ValueError, "hidden_sizes"),
    "GAN zero output": (lambda: M.GAN(2, [8], 0, [8], rngs=nnx.Rngs(0)), ValueError, "output_size=0"),
    "sample_latent int key": (lambda: M.sample_latent(0, 2, 2), TypeError, "key must be"),
    "reparameterize int key": (lambda: M.reparameterize(0, jnp.zeros(2), jnp.zeros(2)), TypeError, "key must be"),
    "perceptron bool inputs": (lambda: M.Perceptron(True, rngs=nnx.Rngs(0)), TypeError,
                               "num_inputs must be an int"),
    "perceptron_fit lengths": (lambda: M.perceptron_fit(M.split(M.Perceptron(2, rngs=nnx.Rngs(0)))[1],
                                                        jnp.ones((3, 2)), jnp.ones(2)), ValueError, "y has shape"),
    "perceptron_fit NaN rate": (lambda: M.perceptron_fit(M.split(M.Perceptron(2, rngs=nnx.Rngs(0)))[1],
                                                         jnp.ones((2, 2)), jnp.ones(2), learning_rate=NAN),
                                ValueError, "learning_rate=nan"),
    "autoencoder zero code": (lambda: M.Autoencoder(4, 0, rngs=nnx.Rngs(0)), ValueError, "code_size=0"),
    "RNN bool hidden": (lambda: M.RNN(1, True, 1, rngs=nnx.Rngs(0)), ValueError, "hidden=True"),
    "RNN NaN spectral radius": (lambda: M.RNN(1, 3, 1, spectral_radius=NAN, rngs=nnx.Rngs(0)), ValueError,
                                "spectral_radius=nan"),
    "LSM zero units": (lambda: M.LSM(1, 0, rngs=nnx.Rngs(0)), ValueError, "units=0"),
    # ESN hyper-parameters and reservoir keys.
    "ESN bool leak": (lambda: M.ESN(1, 5, 1, leak=True, rngs=nnx.Rngs(0)), TypeError, "leak must be a real"),
    "ESN leak 0": (lambda: M.ESN(1, 5, 1, leak=0.0, rngs=nnx.Rngs(0)), ValueError, "leak=0.0"),
    "ESN inf spectral radius": (lambda: M.ESN(1, 5, 1, spectral_radius=INF, rngs=nnx.Rngs(0)), ValueError,
                                "spectral_radius=inf"),
    "ESN bool spectral radius": (lambda: M.ESN(1, 5, 1, spectral_radius=True, rngs=nnx.Rngs(0)), TypeError,
                                 "spectral_radius must be a real"),
    "ESN NaN ridge": (lambda: M.ESN(1, 5, 1, ridge=NAN, rngs=nnx.Rngs(0)), ValueError, "ridge=nan"),
    "ESN NaN sparsity": (lambda: M.ESN(1, 5, 1, connectivity=NAN, rngs=nnx.Rngs(0)), ValueError, "connectivity=nan"),
    "ESN string input connectivity": (lambda: M.ESN(1, 5, 1, input_connectivity="x", rngs=nnx.Rngs(0)), TypeError,
                                      "input_connectivity must be a real"),
    "ESN inf bias scaling": (lambda: M.ESN(1, 5, 1, bias_scaling=INF, rngs=nnx.Rngs(0)), ValueError,
                             "bias_scaling=inf"),
    "ESN bool units": (lambda: M.ESN(1, True, 1, rngs=nnx.Rngs(0)), TypeError, "units must be an int"),
    "reservoir_matrix int key": (lambda: M.reservoir_matrix(0, 5, spectral_radius=0.9), TypeError, "key must be"),
    "input_matrix int key": (lambda: M.input_matrix(0, 5, 1), TypeError, "key must be"),
    # Training drivers.
    "fit_gan int key": (lambda: M.fit_gan(_tiny_gan(), jnp.ones((4, 1)), key=0, steps=1, batch_size=2), TypeError,
                        "key must be"),
    "fit_gan NaN rate": (lambda: M.fit_gan(_tiny_gan(), jnp.ones((4, 1)), key=KEY, steps=1, batch_size=2,
                                           learning_rate=NAN), ValueError, "learning_rate=nan"),
    "fit_gan NaN beta1": (lambda: M.fit_gan(_tiny_gan(), jnp.ones((4, 1)), key=KEY, steps=1, batch_size=2,
                                            beta1=NAN), ValueError, "beta1=nan"),
    "fit_gan NaN data": (lambda: M.fit_gan(_tiny_gan(), jnp.full((4, 1), NAN), key=KEY, steps=1, batch_size=2),
                         ValueError, "x_data contains NaN"),
    "fit_gan zero steps": (lambda: M.fit_gan(_tiny_gan(), jnp.ones((4, 1)), key=KEY, steps=0), ValueError,
                           "steps=0"),
    # RTRL.
    "rtrl NaN inputs": (lambda: _rtrl(jnp.full((3, 2), NAN)), ValueError, "xs contains 6 NaN"),
    "rtrl lengths": (lambda: _rtrl(jnp.ones((4, 2))), ValueError, "xs has 4 steps"),
    # Data.
    "digits NaN test fraction": (lambda: data.digits(test_fraction=NAN), ValueError, "test_fraction=nan"),
    "mackey_glass negative tau": (lambda: data.mackey_glass(100, tau=-1), ValueError, "tau=-1"),
    "mackey_glass zero steps": (lambda: data.mackey_glass(0), ValueError, "num_steps=0"),
    "delay_lines int key": (lambda: data.delay_lines(0, 10, 2), TypeError, "key must be"),
    "delayed_recall negative length": (lambda: data.delayed_recall(KEY, 2, -1, 1), ValueError, "length=-1"),
    "minibatches int key": (lambda: data.minibatches(0, 10, 2), TypeError, "key must be"),
    "minibatches empty": (lambda: data.minibatches(KEY, 0, 2), ValueError, "num_examples=0"),
    "mixture zero samples": (lambda: data.ring_mixture().sample(KEY, 0), ValueError, "num_samples=0"),
    "mixture int key": (lambda: data.ring_mixture().sample(0, 4), TypeError, "key must be"),
    "linearly_separable empty": (lambda: data.linearly_separable(0), ValueError, "num_examples=0"),
    "tent_composition negative depth": (lambda: data.tent_composition(-1), ValueError, "depth=-1"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_a_clear_error(name, user_folder):
    fn, error, match = CASES[name]
    with pytest.raises(error, match=match):
        fn()
