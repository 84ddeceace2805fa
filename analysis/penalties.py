"""The contractive penalty ``Omega(h) = ||d f(x) / d x||_F^2`` of an encoder ``f`` (Deep Learning eq. 14.18;
Rifai et al. 2011), three ways.

- :func:`contractive_penalty`: exact, the full Jacobian of each example by forward mode (``jax.jacfwd``), any
  encoder ``encoder(params, x) -> h`` on one example;
- :func:`contractive_penalty_estimate`: unbiased random projections ``||J||_F^2 = E ||J v||^2`` for ``v`` with
  identity covariance (Gaussian or Rademacher), one Jacobian-vector product per probe, with a standard error; the
  cost does not grow with the input dimension, so it suits large encoders. For Gaussian probes the per-probe variance
  is ``2 ||J^T J||_F^2``; for Rademacher probes ``2 (||J^T J||_F^2 - sum_i (J^T J)_ii^2)``
  (:func:`projection_variance` gives both exactly);
- :func:`sigmoid_contractive_penalty`: the closed form for ``h = sigmoid(x W + b)``:
  ``sum_j (h_j (1 - h_j))^2 sum_i W_ij^2`` (Rifai et al. 2011, eq. 5 of the paper; with tied weights the decoder
  reuses ``W^T``, the encoder Jacobian is the same).

Everything reduces over examples with ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from analysis._checks import check_choice, check_finite, check_key, check_params, check_positive_int, error_summary

PyTree = Any
REDUCTIONS = ("mean", "sum", "none")
PROBES = ("gaussian", "rademacher")


class PenaltyEstimate(NamedTuple):
    """A random-projection estimate of the contractive penalty.

    Attributes:
      estimate: the reduced estimate (per example for ``reduction="none"``).
      standard_error: its standard error from the sample variance over probes.
      probe_variance: sample variance of one probe's ``||J v||^2``, per example ``(n,)``.
      num_probes: probes per example.
    """

    estimate: jax.Array
    standard_error: jax.Array
    probe_variance: jax.Array
    num_probes: int


def _check_x(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x has shape {x.shape}; expected (examples, features).")
    if x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: the batch is empty; expected at least one example.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x has dtype {x.dtype}; expected a floating-point dtype.")
    return x


def _check_finite_params_and_x(params: PyTree, x: jax.Array) -> None:
    """Floating-point parameters, and no NaN/inf in them or in ``x`` (one device reduction for both; the error
    names the offending leaf, e.g. ``params leaf 'b1'`` or ``x``)."""
    check_params(params)
    check_finite(params, (), extra={"x": x})


def _check_encoder(encoder: Callable, params: PyTree, x: jax.Array) -> None:
    if not callable(encoder):
        raise TypeError(f"encoder must be callable as encoder(params, x), got {type(encoder).__name__}.")
    _check_finite_params_and_x(params, x)
    try:
        out = jax.eval_shape(encoder, params, x[0])
    except Exception as err:  # what the user's encoder raised on these shapes; the original stays chained
        raise ValueError(f"encoder(params, x[0]) failed for one example of shape {x[0].shape} (x has shape "
                         f"{x.shape}): {error_summary(err)}") from err
    if not hasattr(out, "shape") or len(out.shape) != 1:
        raise ValueError(f"encoder(params, x[0]) must return a code vector of shape (k,); got "
                         f"{getattr(out, 'shape', type(out).__name__)} for one example of shape {x[0].shape}.")


def _reduce(values: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


@functools.partial(jax.jit, static_argnames=("encoder", "reduction"))
def _exact(encoder, params, x, reduction):
    jac = jax.vmap(jax.jacfwd(encoder, argnums=1), in_axes=(None, 0))(params, x)  # (n, k, d)
    return _reduce(jnp.sum(jac**2, axis=(1, 2)), reduction)


def contractive_penalty(encoder: Callable, params: PyTree, x: jax.Array, *, reduction: str = "mean") -> jax.Array:
    """Exact ``||J_f(x)||_F^2`` of ``encoder`` at every example, by ``jax.jacfwd`` (``d`` forward passes each).

    Args:
      encoder: ``encoder(params, x_one) -> h`` with ``x_one`` of shape ``(d,)`` and ``h`` of shape ``(k,)``.
      params: any pytree of floating-point arrays.
      x: ``(n, d)`` inputs.
      reduction: ``"mean"`` (eq. 14.18 averaged over the batch), ``"sum"`` or ``"none"`` (``(n,)``).

    Returns:
      The reduced penalty.

    Raises:
      ValueError / TypeError: empty, non-2-D or non-finite ``x``, an encoder that does not return a vector, bad
        parameters, an unknown reduction.

    Example:
      >>> encoder = lambda w, x: jnp.tanh(x @ w)
      >>> float(contractive_penalty(encoder, jnp.zeros((3, 2)) + 0.5, jnp.zeros((4, 3))))
      1.5
    """
    x = _check_x(x)
    reduction = check_choice(reduction, "reduction", REDUCTIONS)
    _check_encoder(encoder, params, x)
    return _exact(encoder, params, x, reduction)


@functools.partial(jax.jit, static_argnames=("encoder", "num_probes", "probe", "reduction"))
def _estimate(encoder, params, x, key, num_probes, probe, reduction):
    n, d = x.shape
    # Drawn flat and reshaped: XLA compiles the counter-based generator for a 3-D shape several times slower.
    if probe == "gaussian":
        v = jax.random.normal(key, (n * num_probes * d,), x.dtype)
    else:
        v = jax.random.rademacher(key, (n * num_probes * d,), x.dtype)
    v = v.reshape(n, num_probes, d)

    def squared_norm(xi, vj):
        _, jv = jax.jvp(lambda z: encoder(params, z), (xi,), (vj,))
        return jnp.sum(jv**2)

    # All probes of all examples as one vectorised batch of Jacobian-vector products (a lax.map over probes
    # compiles several times slower and runs no faster at these sizes).
    samples = jax.vmap(jax.vmap(squared_norm, in_axes=(None, 0)))(x, v)  # (n, num_probes)
    per_mean = jnp.mean(samples, axis=1)
    per_var = jnp.var(samples, axis=1, ddof=1)
    scale = {"mean": 1.0 / n, "sum": 1.0, "none": 1.0}[reduction]
    estimate = _reduce(per_mean, reduction)
    if reduction == "none":
        se = jnp.sqrt(per_var / num_probes)
    else:
        se = scale * jnp.sqrt(jnp.sum(per_var) / num_probes)  # probes of different examples are independent
    return estimate, se, per_var


def contractive_penalty_estimate(
    encoder: Callable,
    params: PyTree,
    x: jax.Array,
    *,
    key: Optional[jax.Array] = None,
    num_probes: int = 16,
    probe: str = "gaussian",
    reduction: str = "mean",
) -> PenaltyEstimate:
    """Unbiased random-projection estimate of ``||J_f(x)||_F^2``: the mean of ``||J v||^2`` over ``num_probes``
    independent probes per example, each one ``jax.jvp`` (no Jacobian is formed).

    Args:
      encoder, params, x, reduction: as in :func:`contractive_penalty`.
      key: PRNG key of the probes (default ``PRNGKey(0)``); same key, same estimate.
      num_probes: probes per example, at least 2 (a standard error needs two).
      probe: ``"gaussian"`` (``N(0, I)``) or ``"rademacher"`` (random signs, lower variance).

    Returns:
      :class:`PenaltyEstimate`.

    Raises:
      ValueError / TypeError: as :func:`contractive_penalty`, ``num_probes < 2``, an unknown ``probe``, a ``key``
        that is not one PRNG key.

    Example:
      >>> encoder = lambda w, x: x @ w
      >>> est = contractive_penalty_estimate(encoder, jnp.eye(3), jnp.ones((5, 3)), probe="rademacher")
      >>> float(est.estimate), float(est.standard_error)
      (3.0, 0.0)
    """
    x = _check_x(x)
    reduction = check_choice(reduction, "reduction", REDUCTIONS)
    probe = check_choice(probe, "probe", PROBES)
    num_probes = check_positive_int(num_probes, "num_probes", minimum=2)
    _check_encoder(encoder, params, x)
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    estimate, se, var = _estimate(encoder, params, x, key, num_probes, probe, reduction)
    return PenaltyEstimate(estimate, se, var, num_probes)


@functools.partial(jax.jit, static_argnames=("encoder", "probe"))
def _variance(encoder, params, x, probe):
    jac = jax.vmap(jax.jacfwd(encoder, argnums=1), in_axes=(None, 0))(params, x)  # (n, k, d)
    gram = jnp.einsum("nki,nkj->nij", jac, jac)
    total = 2.0 * jnp.sum(gram**2, axis=(1, 2))
    if probe == "rademacher":
        total = total - 2.0 * jnp.sum(jnp.diagonal(gram, axis1=1, axis2=2) ** 2, axis=1)
    return total


def projection_variance(encoder: Callable, params: PyTree, x: jax.Array, *, probe: str = "gaussian") -> jax.Array:
    """Exact variance of one probe's ``||J v||^2`` at every example, ``(n,)``: ``2 ||J^T J||_F^2`` for Gaussian
    probes, ``2 (||J^T J||_F^2 - sum_i (J^T J)_ii^2)`` for Rademacher probes (Hutchinson 1989). Uses the full
    Jacobian, so it is meant for checks and small encoders."""
    x = _check_x(x)
    probe = check_choice(probe, "probe", PROBES)
    _check_encoder(encoder, params, x)
    return _variance(encoder, params, x, probe)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _sigmoid(weights, bias, x, reduction):
    h = jax.nn.sigmoid(x @ weights + bias)
    column_norms = jnp.sum(weights**2, axis=0)  # ||W_:j||^2, the input weights of code unit j
    return _reduce(jnp.sum((h * (1.0 - h)) ** 2 * column_norms, axis=1), reduction)


def sigmoid_contractive_penalty(
    weights: jax.Array, bias: jax.Array, x: jax.Array, *, reduction: str = "mean"
) -> jax.Array:
    """Closed-form contractive penalty of a sigmoid encoder ``h = sigmoid(x W + b)`` (Rifai et al. 2011):
    ``J = diag(h (1 - h)) W^T``, so ``||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2``. Costs one forward pass.

    Args:
      weights: ``(d, k)`` encoder weights (the ``nnx.Linear`` kernel layout); with tied weights the decoder uses
        ``weights.T``.
      bias: ``(k,)``.
      x: ``(n, d)`` inputs.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
      ValueError: shapes that do not match, empty or non-finite inputs or weights.

    Example:
      >>> float(sigmoid_contractive_penalty(jnp.ones((2, 3)), jnp.zeros(3), jnp.zeros((1, 2))))
      0.375
    """
    x = _check_x(x)
    reduction = check_choice(reduction, "reduction", REDUCTIONS)
    weights, bias = jnp.asarray(weights), jnp.asarray(bias)
    if weights.ndim != 2 or weights.shape[0] != x.shape[1]:
        raise ValueError(f"weights has shape {weights.shape}; expected ({x.shape[1]}, code_size) for x of shape "
                         f"{x.shape}.")
    if bias.shape != (weights.shape[1],):
        raise ValueError(f"bias has shape {bias.shape}; expected ({weights.shape[1]},).")
    check_params({"weights": weights, "bias": bias})
    check_finite({}, (), extra={"weights": weights, "bias": bias, "x": x})  # errors name the argument
    return _sigmoid(weights, bias, x, reduction)
