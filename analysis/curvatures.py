"""Curvature matrices besides the Hessian: generalised Gauss-Newton, Fisher (exact, Monte-Carlo, empirical).

They need the model's outputs, which ``loss_fn(params, *batch)`` hides, so a supervised loss is built from its two
halves: ``loss = supervised_loss(predict_fn, "softmax_cross_entropy")`` is itself a ``loss_fn(params, x, y)`` (the
mean over examples of the per-example loss ``l(predict_fn(params, x)_i, y_i)``) and every estimator takes it with
``curvature=``::

    analysis.hessian_eigs(loss, params, x, y, k=5, curvature="ggn")

With ``J_i`` the Jacobian of example ``i``'s outputs with respect to the parameters and ``N`` examples:

- ``"hessian"``: the Hessian of the mean loss (the default everywhere).
- ``"ggn"``: ``G = (1/N) sum_i J_i^T H_i J_i`` with ``H_i`` the Hessian of ``l`` in the outputs (Schraudolph 2002):
  the Hessian without the second derivatives of the network; positive semi-definite for a convex ``l``. Any
  per-example loss works (``H_i`` by autodiff).
- ``"fisher"``: the Fisher information of the predictive distribution ``p(y | f)`` that the named loss is a negative
  log-likelihood of, ``(1/N) sum_i J_i^T F_i J_i`` with ``F_i = c E_{y~p}[grad(-log p) grad(-log p)^T]`` in
  closed form (see :data:`OUTPUT_LOSSES` for ``p`` and the scale ``c`` of the loss relative to ``-log p``). For these
  losses ``F = G`` exactly (canonical links); the two are computed by different code and tested against each other
  and against enumeration over labels.
- ``MCFisher(key, samples)``: the Monte-Carlo Fisher, ``F_i`` replaced by ``(1/(c S)) sum_s g_s g_s^T`` with
  ``g_s = grad_f l(f_i, y_s)`` for ``S`` labels sampled from ``p(y | f_i)``: unbiased for the Fisher, one fixed
  matrix per key (the same samples in every product, so Lanczos sees one symmetric matrix).
- ``"empirical_fisher"``: ``(1/(c N)) sum_i grad l_i grad l_i^T`` with the observed labels (the "empirical Fisher"
  of Kunstner et al. 2019, who explain why it is not the Fisher).

Each product costs one linearisation of ``predict_fn``, one forward-mode and one reverse-mode pass (about a gradient
and a half), never forms ``J``. ``block=`` restricts any of them to a sub-tree of parameters (per-layer blocks).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

PyTree = Any


class OutputLoss(NamedTuple):
    """A named per-example loss ``loss(f, y) = c * (-log p(y | f)) + const`` with its likelihood's pieces.

    ``fisher(f, u)`` is ``c E_{y~p}[grad(-log p) grad(-log p)^T] u`` in closed form; ``sample(key, f, S)`` draws
    ``S`` labels from ``p(y | f)``; ``scale`` is ``c``.
    """

    name: str
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    fisher: Callable[[jax.Array, jax.Array], jax.Array]
    sample: Callable[[jax.Array, jax.Array, int], jax.Array]
    scale: Callable[[jax.Array], float]
    targets: str


def _ce_loss(f, y):
    return jax.nn.logsumexp(f) - f[y]


def _ce_fisher(f, u):
    p = jax.nn.softmax(f)
    return p * u - p * jnp.vdot(p, u)


def _mse_fisher(f, u):
    return (2.0 / f.shape[-1]) * u


def _mse_sample(key, f, num):
    # mean over K outputs of (f - y)^2 is -log N(y; f, (K/2) I) up to a constant
    return f + jnp.sqrt(f.shape[-1] / 2.0).astype(f.dtype) * jax.random.normal(key, (num, *f.shape), f.dtype)


def _bce_loss(f, y):
    return jnp.mean(jax.nn.softplus(f) - y * f)


def _bce_fisher(f, u):
    s = jax.nn.sigmoid(f)
    return s * (1 - s) * u / f.shape[-1]


OUTPUT_LOSSES: dict[str, OutputLoss] = {
    "softmax_cross_entropy": OutputLoss(
        "softmax_cross_entropy", _ce_loss, _ce_fisher,
        lambda key, f, num: jax.random.categorical(key, f, shape=(num,)), lambda f: 1.0,
        "integer class labels, shape (N,), for logits (N, K)"),
    "mse": OutputLoss(
        "mse", lambda f, y: jnp.mean((f - y) ** 2), _mse_fisher, _mse_sample, lambda f: 1.0,
        "real targets of the outputs' shape (N, K); the loss is the mean over all N*K entries of (f - y)^2"),
    "sigmoid_binary_cross_entropy": OutputLoss(
        "sigmoid_binary_cross_entropy", _bce_loss, _bce_fisher,
        lambda key, f, num: jax.random.bernoulli(key, jax.nn.sigmoid(f), (num, *f.shape)).astype(f.dtype),
        lambda f: 1.0 / f.shape[-1],
        "targets in [0, 1] of the logits' shape (N, K); the loss is the mean over all N*K entries"),
}
"""Named output losses. ``softmax_cross_entropy``: ``p`` categorical, ``c = 1``. ``mse`` (mean over the ``K``
outputs of ``(f - y)^2``): ``p = N(f, K/2 I)``, ``c = 1``. ``sigmoid_binary_cross_entropy`` (mean over ``K``
independent logits): ``p`` a product of Bernoullis, ``c = 1/K``."""

CURVATURES = ("hessian", "ggn", "fisher", "empirical_fisher")


@dataclasses.dataclass(frozen=True)
class MCFisher:
    """The Monte-Carlo Fisher with ``samples`` labels per example drawn with ``key`` (a PRNG key).

    The same key draws the same labels in every product, so the estimate is one fixed positive semi-definite
    matrix. Over a data source or microbatches, example ``i`` of every batch uses the same random stream (each
    draw is still from its own example's ``p(y | f_i)``).
    """

    key: tuple
    samples: int = 1

    def __init__(self, key: Any, samples: int = 1):
        from analysis._checks import check_key, check_positive_int

        key = check_key(key)
        data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        object.__setattr__(self, "key", tuple(int(v) for v in jnp.ravel(data)))
        object.__setattr__(self, "samples", check_positive_int(samples, "samples", "labels sampled per example"))

    def prng_key(self) -> jax.Array:
        return jnp.asarray(self.key, jnp.uint32)


Curvature = Union[str, MCFisher]


@dataclasses.dataclass(frozen=True)
class SupervisedLoss:
    """``loss_fn(params, x, y)``: the mean over examples of ``output_loss(predict_fn(params, x)_i, y_i)``.

    Build it with :func:`supervised_loss`. It is hashable (a static argument of ``jit``) and carries the curvature
    that estimators use; ``with_curvature`` returns a copy with another one.
    """

    predict_fn: Callable
    output_loss: Union[str, Callable]
    curvature: Curvature = "hessian"

    def __call__(self, params: PyTree, x: Any, y: Any) -> jax.Array:
        outputs = self.predict_fn(params, x)
        return jnp.mean(jax.vmap(self._per_example)(outputs, y))

    @property
    def _per_example(self) -> Callable:
        named = OUTPUT_LOSSES.get(self.output_loss) if isinstance(self.output_loss, str) else None
        return named.loss if named is not None else self.output_loss

    def with_curvature(self, curvature: Curvature) -> "SupervisedLoss":
        return dataclasses.replace(self, curvature=check_curvature(curvature, self))

    def product(self, full_params: Callable, theta: PyTree, v: PyTree, x: Any, y: Any) -> PyTree:
        """``C v`` for the parameters ``theta`` (any pytree; ``full_params(theta)`` is the params pytree) and a
        tangent ``v`` of the same structure."""
        outputs, jvp = jax.linearize(lambda t: self.predict_fn(full_params(t), x), theta)
        Jv = jvp(v)
        n = outputs.shape[0]
        u = _output_product(self, outputs, y, Jv) / n
        (Cv,) = jax.linear_transpose(jvp, theta)(u.astype(outputs.dtype))
        return Cv


def _output_product(loss: SupervisedLoss, outputs: jax.Array, y: Any, Jv: jax.Array) -> jax.Array:
    """Per-example output-space products ``M_i (J v)_i`` of the chosen curvature, stacked ``(N, ...)``."""
    per_example, curvature = loss._per_example, loss.curvature
    if curvature == "ggn":
        return jax.vmap(lambda f, t, u: jax.jvp(lambda g: jax.grad(per_example)(g, t), (f,), (u,))[1])(outputs, y, Jv)
    named = OUTPUT_LOSSES.get(loss.output_loss) if isinstance(loss.output_loss, str) else None
    if curvature == "fisher":
        return jax.vmap(named.fisher)(outputs, Jv)
    grad = jax.grad(per_example)
    if curvature == "empirical_fisher":
        scale = named.scale(outputs[0]) if named is not None else 1.0
        g = jax.vmap(grad)(outputs, y)
        coef = jnp.sum((g * Jv).reshape(g.shape[0], -1), axis=1)
        return g * coef.reshape((-1,) + (1,) * (g.ndim - 1)) / scale
    keys = jax.random.split(curvature.prng_key(), outputs.shape[0])

    def sampled(key, f, u):
        labels = named.sample(key, f, curvature.samples)
        g = jax.vmap(lambda t: grad(f, t))(labels)  # (S, *f.shape)
        coef = jnp.sum((g * u).reshape(g.shape[0], -1), axis=1)
        return jnp.tensordot(coef, g, axes=1) / (curvature.samples * named.scale(f))

    return jax.vmap(sampled)(keys, outputs, Jv)


def supervised_loss(predict_fn: Callable, output_loss: Union[str, Callable]) -> SupervisedLoss:
    """A ``loss_fn(params, x, y)`` that also exposes the model's outputs, for ``curvature="ggn"`` and the Fishers.

    Args:
      predict_fn: ``predict_fn(params, x) -> outputs`` with a leading example axis ``(N, K)`` (e.g. ``apply`` from
        :func:`jaxdl.models.split`, or any function of a params pytree).
      output_loss: one of :data:`OUTPUT_LOSSES` (``"softmax_cross_entropy"``, ``"mse"``,
        ``"sigmoid_binary_cross_entropy"``), or a per-example function ``loss(f_i, y_i) -> scalar`` (then the
        Hessian, the GGN and the empirical Fisher are available, not the exact or Monte-Carlo Fisher, which need a
        likelihood to sample from).

    Returns:
      :class:`SupervisedLoss`, usable wherever a ``loss_fn`` is.

    Raises:
      TypeError / ValueError: ``predict_fn`` or a custom loss not callable, an unknown loss name.

    Example:
      >>> predict = lambda p, x: x @ p["w"]
      >>> loss = supervised_loss(predict, "softmax_cross_entropy")
      >>> x, y = jnp.eye(3), jnp.array([0, 1, 2])
      >>> float(loss({"w": jnp.zeros((3, 3))}, x, y))  # log 3
      1.0986123
    """
    if not callable(predict_fn):
        raise TypeError(f"predict_fn={predict_fn!r} is not callable; expected predict_fn(params, x) -> outputs.")
    if isinstance(output_loss, str):
        if output_loss not in OUTPUT_LOSSES:
            raise ValueError(f"output_loss={output_loss!r} is unknown; expected one of {sorted(OUTPUT_LOSSES)} or a "
                             "per-example function loss(f_i, y_i) -> scalar.")
    elif not callable(output_loss):
        raise TypeError(f"output_loss={output_loss!r} is neither a loss name nor callable; expected one of "
                        f"{sorted(OUTPUT_LOSSES)} or loss(f_i, y_i) -> scalar.")
    return SupervisedLoss(predict_fn, output_loss)


def check_curvature(curvature: Any, loss_fn: Any) -> Curvature:
    """Validate ``curvature`` for ``loss_fn`` (a plain ``loss_fn`` has only the Hessian)."""
    if not isinstance(curvature, MCFisher) and not (isinstance(curvature, str) and curvature in CURVATURES):
        raise ValueError(f"curvature={curvature!r} is invalid; expected one of {list(CURVATURES)} or "
                         "analysis.MCFisher(key, samples).")
    if curvature == "hessian":
        return curvature
    if not isinstance(loss_fn, SupervisedLoss):
        raise TypeError(f"curvature={curvature!r} needs the model's outputs, which a plain loss_fn hides; build the "
                        "loss with analysis.supervised_loss(predict_fn, output_loss).")
    if (curvature == "fisher" or isinstance(curvature, MCFisher)) and not isinstance(loss_fn.output_loss, str):
        raise ValueError(f"curvature={curvature!r} needs a likelihood to take expectations over; a custom output "
                         f"loss {loss_fn.output_loss!r} has none. Use one of {sorted(OUTPUT_LOSSES)}, or "
                         "curvature='ggn' / 'empirical_fisher'.")
    return curvature


def with_curvature(loss_fn: Callable, curvature: Curvature) -> Callable:
    """``loss_fn`` carrying ``curvature`` (``loss_fn`` itself for the Hessian of a plain loss)."""
    if isinstance(loss_fn, SupervisedLoss):
        return loss_fn.with_curvature(curvature)
    check_curvature(curvature, loss_fn)
    return loss_fn


def curvature_of(loss_fn: Callable) -> Curvature:
    return loss_fn.curvature if isinstance(loss_fn, SupervisedLoss) else "hessian"


def curvature_name(curvature: Optional[Curvature]) -> str:
    return f"mc_fisher(samples={curvature.samples})" if isinstance(curvature, MCFisher) else str(curvature)
