"""Bernoulli-Bernoulli restricted Boltzmann machine (Deep Learning sec. 16.7.1, 20.2) and its Monte-Carlo chains.

Energy (eq. 16.10 / 20.5)  E(v, h) = -b^T v - c^T h - v^T W h, p(v, h) = exp(-E(v, h)) / Z, with ``W (visible,
hidden)``, ``b`` the visible and ``c`` the hidden biases. Both conditionals factorise (eq. 20.10-20.15)

    p(h_j = 1 | v) = sigmoid(c_j + v^T W_:j),      p(v_i = 1 | h) = sigmoid(b_i + W_i: h),

so block Gibbs sampling alternates two layer-wide Bernoulli draws (sec. 17.4). Summing h out gives the free energy
F(v) = -b^T v - sum_j softplus(c_j + v^T W_:j), p(v) = exp(-F(v)) / Z, and the log-likelihood gradient (sec. 18.1)

    d log p(v) / dW = v E[h | v]^T - E_model[v h^T]

whose intractable negative phase contrastive divergence (CD-k, sec. 18.2, alg. 18.2) estimates with k Gibbs steps
started at the data, and persistent CD (PCD / SML, alg. 18.3) with chains carried across updates.

The partition function is exact by enumerating the smaller layer (:func:`log_partition_exact`, up to 2^20 states)
and estimated by annealed importance sampling for larger machines (:func:`ais_log_partition`, sec. 18.7).
Chains run in ``lax.scan``; parameters, data and chain states are arguments; chain lengths are static ints.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from analysis._checks import check_finite, check_key, check_number, check_positive_int
from jaxdl.engine import epoch_scan

MAX_ENUMERATED_UNITS = 20


class RBMParams(NamedTuple):
    """Parameters as a plain pytree: ``weights (visible, hidden)``, ``visible_bias (visible,)``, ``hidden_bias``."""

    weights: jax.Array
    visible_bias: jax.Array
    hidden_bias: jax.Array


def _arrays(params: Any) -> RBMParams:
    """Accept :class:`RBMParams`, an :class:`RBM` or its ``nnx.State``: anything with the three attributes."""
    return RBMParams(*(getattr(params, n)[...] for n in RBMParams._fields))


class RBM(nnx.Module):
    """The model's parameters as NNX ``Param`` variables; the math lives in the pure functions of this module.

    Args:
      num_visible, num_hidden: layer sizes (> 0).
      weight_scale: standard deviation of the initial weights (0.01, Hinton's practical guide, sec. 8).
      visible_bias: initial visible biases; :func:`visible_bias_from_data` gives the usual log-odds start.
      rngs: NNX random streams.

    Example:
      >>> rbm = RBM(6, 4, rngs=nnx.Rngs(0))
      >>> free_energy(rbm.params(), jnp.zeros((2, 6))).shape
      (2,)
    """

    def __init__(self, num_visible: int, num_hidden: int, *, rngs: nnx.Rngs, weight_scale: float = 0.01,
                 visible_bias: jax.Array | None = None, dtype=jnp.float32):
        check_positive_int(num_visible, "num_visible", "the number of visible units")
        check_positive_int(num_hidden, "num_hidden", "the number of hidden units")
        check_number(weight_scale, "weight_scale", minimum=0)
        b = jnp.zeros((num_visible,), dtype) if visible_bias is None else jnp.asarray(visible_bias, dtype)
        check_finite({}, (), extra={"visible_bias": b})
        if b.shape != (num_visible,):
            raise ValueError(f"visible_bias has shape {b.shape}; expected ({num_visible},).")
        self.weights = nnx.Param(weight_scale * jax.random.normal(rngs.params(), (num_visible, num_hidden), dtype))
        self.visible_bias = nnx.Param(b)
        self.hidden_bias = nnx.Param(jnp.zeros((num_hidden,), dtype))

    def params(self) -> RBMParams:
        return _arrays(self)


def check_params(params, key: Any = None, key_name: str = "key") -> RBMParams:
    """The three parameter arrays, after checking they are finite (the message names the leaf, e.g.
    ``params leaf 'weights'``) and, when given, that ``key`` is a single PRNG key."""
    arrays = _arrays(params)
    if key is not None:
        check_key(key, key_name)
    check_finite(arrays._asdict(), ())
    return arrays


def check_binary(v, name: str = "v") -> None:
    """Raise ValueError unless ``v`` is a non-empty 2-D array of finite 0/1 values (skipped for traced arrays)."""
    if isinstance(v, jax.core.Tracer):
        return
    arr = np.asarray(v)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} has shape {arr.shape}; expected a non-empty (examples, units) matrix.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; expected binary 0/1 data.")
    if not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)].ravel()[0]
        raise ValueError(f"{name} contains the value {bad}; a Bernoulli RBM expects binary 0/1 data "
                         "(binarise it first, e.g. jaxdl.data.digits_binarized).")


def visible_bias_from_data(v: jax.Array, eps: float = 1e-3) -> jax.Array:
    """log(p / (1 - p)) of the per-unit training mean p (clipped to [eps, 1 - eps]): the RBM with W = 0 that matches
    the data marginals, the usual starting point (Hinton 2010, sec. 8) and the AIS base model."""
    check_binary(v, "v")
    p = jnp.clip(jnp.mean(v, axis=0), eps, 1.0 - eps)
    return jnp.log(p) - jnp.log1p(-p)


def energy(params, v: jax.Array, h: jax.Array) -> jax.Array:
    """E(v, h) = -b^T v - c^T h - v^T W h (eq. 20.5), one value per row of ``v`` and ``h``."""
    w, b, c = _arrays(params)
    return -(v @ b) - (h @ c) - jnp.sum((v @ w) * h, axis=-1)


def free_energy(params, v: jax.Array) -> jax.Array:
    """F(v) = -log sum_h exp(-E(v, h)) = -b^T v - sum_j softplus(c_j + v^T W_:j).

    Raises:
      ValueError: NaN/inf parameters or visible states.
    """
    w, b, c = check_params(params)
    check_finite({}, (), extra={"v": v})
    return -(v @ b) - jnp.sum(jax.nn.softplus(v @ w + c), axis=-1)


def hidden_probabilities(params, v: jax.Array) -> jax.Array:
    """p(h = 1 | v) = sigmoid(c + v W) (eq. 20.14)."""
    w, _, c = _arrays(params)
    return jax.nn.sigmoid(v @ w + c)


def visible_probabilities(params, h: jax.Array) -> jax.Array:
    """p(v = 1 | h) = sigmoid(b + h W^T) (eq. 20.15)."""
    w, b, _ = _arrays(params)
    return jax.nn.sigmoid(h @ w.T + b)


def gibbs_step(params, key: jax.Array, v: jax.Array) -> jax.Array:
    """One block Gibbs step v -> h ~ p(h | v) -> v' ~ p(v | h) (sec. 17.4)."""
    nh = params.hidden_bias.shape[-1]
    # One uniform draw serves both layers (h_j = [u_j < p_j]): half the random-number kernels to compile.
    u = jax.random.uniform(key, (*v.shape[:-1], nh + v.shape[-1]), v.dtype)
    h = (u[..., :nh] < hidden_probabilities(params, v)).astype(v.dtype)
    return (u[..., nh:] < visible_probabilities(params, h)).astype(v.dtype)


def gibbs_chain(params, key: jax.Array, v0: jax.Array, num_steps: int) -> jax.Array:
    """Run ``num_steps`` block Gibbs steps from ``v0 (chains, visible)`` in a ``lax.scan``; returns the final state.

    Example:
      >>> p = RBM(6, 4, rngs=nnx.Rngs(0)).params()
      >>> gibbs_chain(p, jax.random.key(1), jnp.zeros((3, 6)), 10).shape
      (3, 6)

    Raises:
      TypeError, ValueError: an invalid key, ``num_steps`` not an int >= 0, NaN/inf parameters or states.
    """
    check_positive_int(num_steps, "num_steps", "Gibbs steps", minimum=0)
    check_params(params, key)
    check_finite({}, (), extra={"v0": v0})
    return _gibbs_chain(params, key, v0, num_steps)


@partial(jax.jit, static_argnames="num_steps")
def _gibbs_chain(params, key: jax.Array, v0: jax.Array, num_steps: int) -> jax.Array:

    def body(v, k):
        return gibbs_step(params, k, v), None

    v, _ = jax.lax.scan(body, v0, jax.random.split(key, num_steps))
    return v


def cd_gradient(params, key: jax.Array, v_data: jax.Array, k: int, chains: jax.Array | None = None):
    """The CD-k (``chains=None``) or PCD (``chains`` given) estimate of the mean log-likelihood gradient.

    Positive phase: v E[h | v] over the data. Negative phase: v_k E[h | v_k] after ``k`` Gibbs steps from the data
    (CD-k, alg. 18.2) or from the persistent ``chains`` (PCD, alg. 18.3). Conditional expectations replace sampled
    hidden states in both statistics (Rao-Blackwellisation: same mean, less variance).

    Args:
      params: RBM parameters.
      key: PRNG key.
      v_data: ``(batch, visible)`` binary data.
      k: Gibbs steps (static int >= 1).
      chains: ``(num_chains, visible)`` persistent chain states for PCD, or None for CD-k.

    Returns:
      ``(gradient, v_k)``: an :class:`RBMParams` of ascent directions and the chains' new states.

    Raises:
      ValueError: ``k < 1``; non-binary or non-finite concrete data; NaN/inf parameters.
      TypeError: ``key`` is not a single PRNG key.
    """
    check_positive_int(k, "k", "Gibbs steps per update")
    check_params(params, key)
    check_binary(v_data, "v_data")
    start = v_data if chains is None else chains
    v_k = gibbs_chain(params, key, start, k)
    ph_data, ph_model = hidden_probabilities(params, v_data), hidden_probabilities(params, v_k)
    grad = RBMParams(
        weights=v_data.T @ ph_data / v_data.shape[0] - v_k.T @ ph_model / v_k.shape[0],
        visible_bias=jnp.mean(v_data, 0) - jnp.mean(v_k, 0),
        hidden_bias=jnp.mean(ph_data, 0) - jnp.mean(ph_model, 0),
    )
    return grad, v_k


def binary_states(num_units: int, start: jax.Array | int, count: int, dtype=jnp.float32) -> jax.Array:
    """The ``count`` binary vectors with integer codes ``start, start + 1, ...`` (bit i = unit i), ``(count, n)``."""
    codes = start + jnp.arange(count)
    return ((codes[:, None] >> jnp.arange(num_units)) & 1).astype(dtype)


def log_partition_exact(params, block: int = 4096) -> jax.Array:
    """log Z by enumerating the smaller layer: log sum_h exp(c^T h + sum_i softplus(b_i + W_i: h)) when
    hidden <= visible, else log sum_v exp(-F(v)). States are generated ``block`` at a time in ``lax.map``.

    Raises:
      ValueError: the smaller layer has more than 20 units (use :func:`ais_log_partition`); NaN/inf parameters
        (the message names the leaf); ``block`` not a positive int.
    """
    check_positive_int(block, "block", "states enumerated at a time")
    return _log_partition_exact(check_params(params), block)


@partial(jax.jit, static_argnames="block")
def _log_partition_exact(params, block: int = 4096) -> jax.Array:
    w, b, c = _arrays(params)
    nv, nh = w.shape
    n = min(nv, nh)
    if n > MAX_ENUMERATED_UNITS:
        raise ValueError(f"the smaller layer has {n} units; exact enumeration supports at most "
                         f"{MAX_ENUMERATED_UNITS} (2^{MAX_ENUMERATED_UNITS} states). Use ais_log_partition.")
    # Enumerating hidden states is the visible free energy with the roles of the layers swapped.
    w_s, b_s, c_s = (w.T, c, b) if nh <= nv else (w, b, c)
    size = min(block, 2**n)
    num_blocks = 2**n // size

    def one_block(i):
        states = binary_states(n, i * size, size, w.dtype)
        return jax.nn.logsumexp(states @ b_s + jnp.sum(jax.nn.softplus(states @ w_s + c_s), axis=-1))

    return jax.nn.logsumexp(jax.lax.map(one_block, jnp.arange(num_blocks)))


def log_likelihood_exact(params, v: jax.Array) -> jax.Array:
    """log p(v) = -F(v) - log Z, exact (enumeration), one value per row. Raises as :func:`log_partition_exact`."""
    check_binary(v, "v")
    return -free_energy(params, v) - log_partition_exact(params)


class AISResult(NamedTuple):
    """``log_partition``: the AIS estimate of log Z; ``std_error``: its standard error in nats (delta method:
    std(w) / (mean(w) sqrt(runs))); ``log_weights``: ``(runs,)`` per-run log importance weights."""

    log_partition: jax.Array
    std_error: jax.Array
    log_weights: jax.Array


def ais_log_partition(params, key: jax.Array, *, num_betas: int = 10000, num_runs: int = 100,
                      base_visible_bias: jax.Array | None = None) -> AISResult:
    """Annealed importance sampling for log Z (sec. 18.7; Salakhutdinov and Murray 2008).

    Anneals from the base RBM A (W = 0, visible biases ``base_visible_bias``, default zeros; log Z_A in closed form)
    to the target through p_beta(v) ~ exp((1 - beta) b_A^T v + beta b^T v) prod_j (1 + exp(beta (c_j + v^T W_:j))),
    with ``num_betas`` equally spaced temperatures and one block Gibbs step leaving each p_beta invariant.
    ``E[w] = Z / Z_A``, so log Z = log Z_A + log mean w (a stochastic lower bound in expectation, by Jensen).

    Raises:
      ValueError: ``num_betas < 2`` or ``num_runs < 1``; NaN/inf parameters or base biases.
      TypeError: ``key`` is not a single PRNG key.

    Example:
      >>> p = RBM(6, 4, rngs=nnx.Rngs(0)).params()
      >>> r = ais_log_partition(p, jax.random.key(0), num_betas=100, num_runs=10)
      >>> bool(jnp.abs(r.log_partition - log_partition_exact(p)) < 0.05)
      True
    """
    check_positive_int(num_betas, "num_betas", "annealing temperatures", minimum=2)
    check_positive_int(num_runs, "num_runs", "independent AIS runs")
    check_params(params, key)
    if base_visible_bias is not None:
        check_finite({}, (), extra={"base_visible_bias": base_visible_bias})
    return _ais_log_partition(params, key, num_betas=num_betas, num_runs=num_runs,
                              base_visible_bias=base_visible_bias)


@partial(jax.jit, static_argnames=("num_betas", "num_runs"))
def _ais_log_partition(params, key, *, num_betas, num_runs, base_visible_bias) -> AISResult:
    w, b, c = _arrays(params)
    nv, nh = w.shape
    b_a = jnp.zeros_like(b) if base_visible_bias is None else jnp.asarray(base_visible_bias, b.dtype)
    log_z_a = jnp.sum(jax.nn.softplus(b_a)) + nh * math.log(2.0)

    k0, kscan = jax.random.split(key)
    v = jax.random.bernoulli(k0, jax.nn.sigmoid(b_a), (num_runs, nv)).astype(w.dtype)
    betas = jnp.linspace(0.0, 1.0, num_betas, dtype=w.dtype)

    def body(carry, inputs):
        v, log_w = carry
        beta_prev, beta, k = inputs
        # log p*_beta(v) = (1 - beta) b_A.v + beta b.v + sum_j softplus(beta a_j), a = c + v W; at beta = 0 the
        # hidden sum is nh log 2, so Z_0 = Z_A. The weight increment is log p*_beta(v) - log p*_beta_prev(v).
        a = v @ w + c
        log_w = log_w + (beta - beta_prev) * (v @ b - v @ b_a) + jnp.sum(
            jax.nn.softplus(beta * a) - jax.nn.softplus(beta_prev * a), axis=-1)
        u = jax.random.uniform(k, (num_runs, nh + nv), w.dtype)  # one Gibbs step that leaves p_beta invariant
        h = (u[:, :nh] < jax.nn.sigmoid(beta * a)).astype(v.dtype)
        v = (u[:, nh:] < jax.nn.sigmoid((1 - beta) * b_a + beta * (h @ w.T + b))).astype(v.dtype)
        return (v, log_w), None

    keys = jax.random.split(kscan, num_betas - 1)
    (_, log_w), _ = jax.lax.scan(body, (v, jnp.zeros((num_runs,), w.dtype)), (betas[:-1], betas[1:], keys))
    log_mean = jax.nn.logsumexp(log_w) - math.log(num_runs)
    # Standard error of mean(w) relative to mean(w), computed from normalised weights to avoid overflow.
    rel = jnp.exp(log_w - jnp.max(log_w))
    rel_se = jnp.std(rel) / jnp.mean(rel) / math.sqrt(num_runs)
    return AISResult(log_z_a + log_mean, rel_se, log_w)


class CDState(NamedTuple):
    """Training state: parameters, momentum velocity (same structure) and the persistent chains (used by PCD)."""

    params: RBMParams
    velocity: RBMParams
    chains: jax.Array


def _cd_step(state: CDState, v: jax.Array, key: jax.Array, *, k: int, persistent: bool, learning_rate: float,
             momentum: float, weight_decay: float) -> tuple[CDState, jax.Array]:
    """The plug-in step of :func:`cd_epoch`: one CD-k / PCD-k update of ``state`` on the minibatch ``v`` with
    momentum and L2 weight decay on W; its metric is the minibatch's mean squared one-step reconstruction error."""
    grad, v_k = cd_gradient(state.params, key, v, k, state.chains if persistent else None)
    grad = grad._replace(weights=grad.weights - weight_decay * state.params.weights)
    velocity = jax.tree.map(lambda m, g: momentum * m + learning_rate * g, state.velocity, grad)
    params = jax.tree.map(jnp.add, state.params, velocity)
    recon = visible_probabilities(state.params, hidden_probabilities(state.params, v))
    return CDState(params, velocity, v_k if persistent else state.chains), jnp.mean((recon - v) ** 2)


@partial(jax.jit, static_argnames=("k", "persistent", "batch_size"))
def cd_epoch(state: CDState, key: jax.Array, x: jax.Array, *, k: int, persistent: bool, batch_size: int,
             learning_rate: float, momentum: float, weight_decay: float) -> tuple[CDState, jax.Array]:
    """One shuffled pass of CD-k or PCD-k updates with momentum and L2 weight decay on W, in a ``lax.scan``
    (:func:`jaxdl.train.epoch_scan`, a key per step).

    Returns the new state and the epoch's mean squared one-step reconstruction error (a cheap progress signal;
    it is not the likelihood).
    """
    step = partial(_cd_step, k=k, persistent=persistent, learning_rate=learning_rate, momentum=momentum,
                   weight_decay=weight_decay)
    state, errors = epoch_scan(step, state, key, x, batch_size=batch_size)
    return state, jnp.mean(errors)


class RBMHistory(NamedTuple):
    """Per epoch: reconstruction error; exact mean log-likelihood of the training and evaluation data (nats per
    example; NaN when not tracked or the machine is too large to enumerate)."""

    reconstruction_error: np.ndarray
    train_log_likelihood: np.ndarray
    eval_log_likelihood: np.ndarray


def fit_rbm(x: jax.Array, num_hidden: int, *, key: jax.Array, k: int = 1, persistent: bool = False,
            epochs: int = 100, batch_size: int = 10, learning_rate: float = 0.05, momentum: float = 0.5,
            weight_decay: float = 1e-4, weight_scale: float = 0.01, num_chains: int | None = None,
            decay: bool = False, x_eval: jax.Array | None = None,
            track_log_likelihood: bool = False) -> tuple[RBMParams, RBMHistory]:
    """Train a Bernoulli RBM on binary ``x`` with CD-k (``persistent=False``) or PCD-k (``persistent=True``).

    Weights start at N(0, ``weight_scale``^2), visible biases at the data log-odds, hidden biases at zero; PCD's
    ``num_chains`` chains (default ``batch_size``) start at random training examples. The same ``key`` gives the same
    parameters bit for bit.

    Args:
      x: ``(examples, visible)`` binary training data.
      num_hidden: hidden units (> 0).
      key: PRNG key.
      k: Gibbs steps per update (>= 1).
      persistent: PCD instead of CD.
      epochs, batch_size: passes and examples per update.
      learning_rate, momentum, weight_decay: SGD with momentum on the CD ascent direction, L2 decay on W.
      weight_scale: initial weight standard deviation.
      num_chains: persistent chains for PCD (default ``batch_size``); more chains, less noisy negative phase.
      decay: decay the learning rate linearly from ``learning_rate`` to ``learning_rate / epochs`` (Tieleman 2008
        decays PCD's rate the same way; the chains then track the slowing model more closely).
      x_eval: optional binary evaluation data for the tracked log-likelihood.
      track_log_likelihood: record the exact log-likelihood every epoch (needs min(visible, hidden) <= 20).

    Returns:
      ``(params, history)``.

    Raises:
      ValueError: non-binary, NaN or empty data; ``k < 1``; non-positive sizes; bad rates.

    Example:
      >>> x = (jax.random.uniform(jax.random.key(0), (100, 6)) < 0.3).astype(jnp.float32)
      >>> params, hist = fit_rbm(x, 3, key=jax.random.key(1), epochs=2)
      >>> params.weights.shape
      (6, 3)
    """
    check_key(key)
    check_binary(x, "x")
    if x_eval is not None:
        check_binary(x_eval, "x_eval")
    check_positive_int(k, "k", "Gibbs steps per update")
    check_positive_int(epochs, "epochs", "passes over the data")
    check_positive_int(batch_size, "batch_size", "examples per update")
    num_chains = batch_size if num_chains is None else check_positive_int(num_chains, "num_chains", "PCD chains")
    if batch_size > len(x):
        raise ValueError(f"batch_size={batch_size} is invalid; expected at most {len(x)} examples.")
    check_number(learning_rate, "learning_rate", positive=True)
    check_number(momentum, "momentum", minimum=0, maximum=1, include_maximum=False)
    check_number(weight_decay, "weight_decay", minimum=0)
    x = jnp.asarray(x)
    if track_log_likelihood and min(x.shape[1], num_hidden) > MAX_ENUMERATED_UNITS:
        raise ValueError(f"track_log_likelihood needs min(visible, hidden) <= {MAX_ENUMERATED_UNITS}; got "
                         f"{min(x.shape[1], num_hidden)}.")
    k_init, k_chain, k_train = jax.random.split(key, 3)
    rbm = RBM(x.shape[1], num_hidden, rngs=nnx.Rngs(params=k_init), weight_scale=weight_scale,
              visible_bias=visible_bias_from_data(x), dtype=x.dtype)
    params = rbm.params()
    chains = x[jax.random.randint(k_chain, (num_chains,), 0, x.shape[0])]
    state = CDState(params, jax.tree.map(jnp.zeros_like, params), chains)
    recon, ll_train, ll_eval = [], [], []
    nan = jnp.asarray(jnp.nan, x.dtype)
    for epoch, epoch_key in enumerate(jax.random.split(k_train, epochs)):
        rate = learning_rate * (1.0 - epoch / epochs if decay else 1.0)
        state, err = cd_epoch(state, epoch_key, x, k=k, persistent=persistent, batch_size=batch_size,
                              learning_rate=rate, momentum=momentum, weight_decay=weight_decay)
        recon.append(err)
        if track_log_likelihood:
            log_z = log_partition_exact(state.params)
            ll_train.append(jnp.mean(-free_energy(state.params, x)) - log_z)
            ll_eval.append(nan if x_eval is None else jnp.mean(-free_energy(state.params, x_eval)) - log_z)
        else:
            ll_train.append(nan)
            ll_eval.append(nan)
    history = RBMHistory(*(np.asarray(jax.device_get(h)) for h in (recon, ll_train, ll_eval)))
    return state.params, history
