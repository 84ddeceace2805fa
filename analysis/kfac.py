"""Kronecker-factored curvature (K-FAC) of dense and convolutional layers, found in any ``predict_fn``.

For a layer ``z = a W (+ b)`` the GGN block of ``W`` is ``(1/N) sum_i (a_i a_i^T) kron B_i`` with
``B_i = J_i^T H_i J_i`` (``J_i`` the Jacobian of example ``i``'s outputs in ``z_i``, ``H_i`` the output-loss
Hessian). K-FAC (Martens & Grosse 2015) replaces the mean of products by the product of means, ``A kron B`` with
``A = (1/N) sum_i a_i a_i^T`` and ``B = (1/N) sum_i B_i``; with a bias the input gains a constant 1 (the bias is
the last row of the homogeneous kernel). ``B`` is computed exactly, from the symmetric square root of each ``H_i``
back-propagated to ``z`` (``K`` reverse passes for ``K`` outputs), not from sampled labels. Convolutions follow KFC
(Grosse & Martens 2016): ``a`` the input patches at every output position ``t`` and ``B`` averaged over the ``T``
positions, ``A = (1/N) sum_{i,t} a_it a_it^T``, ``B = (1/(N T)) sum_{i,t} B_it``.

Layers are found by reading the jaxpr of ``predict_fn``: every ``dot_general`` (a 2-D kernel contracted with the
last axis of a 2-D input) and every ``conv_general_dilated`` (ungrouped) whose kernel is a parameter leaf; the
layer's bias is the leaf named ``bias`` beside it, assumed added to the layer's output. Layers inside the model's
own ``scan`` / ``while`` / ``cond`` are not seen. K-FAC is exact for one example, and for the last layer under
``"mse"`` (constant ``H``); the tests check both against the exact GGN block.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.extend.core import primitives

from analysis._checks import leaf_paths
from analysis._jaxpr import bind, equations, evaluate
from analysis._objective import layer_blocks
from analysis.curvatures import SupervisedLoss

PyTree = Any
_ALIASES = (primitives.convert_element_type_p, primitives.copy_p)


class KroneckerFactors(NamedTuple):
    """One layer's K-FAC block ``A kron B``.

    Attributes:
      kind: ``"dense"`` or ``"conv"``.
      kernel: leaf path of the kernel; ``bias``: leaf path of the bias folded into ``A`` (or None).
      A: input factor, ``(d_in + 1)^2`` with a bias (conv: ``d_in`` = patch size ``kh kw c_in``).
      B: output factor, ``d_out x d_out``.
    """

    kind: str
    kernel: str
    bias: Optional[str]
    A: jax.Array
    B: jax.Array

    def eigenvalues(self) -> jax.Array:
        """All eigenvalues of ``A kron B`` (products of the factors' eigenvalues), ascending."""
        return jnp.sort(jnp.outer(jnp.linalg.eigvalsh(self.A), jnp.linalg.eigvalsh(self.B)).ravel())


def _find_layers(jaxpr: Any, num_leaves: int) -> dict:
    """``{id(eqn): (kind, leaf index)}`` of the dense and conv equations whose kernel is a parameter leaf."""
    owner = {v: i for i, v in enumerate(jaxpr.invars[:num_leaves])}
    layers = {}
    for eqn in equations(jaxpr):
        if eqn.primitive in _ALIASES and eqn.invars[0] in owner:
            owner[eqn.outvars[0]] = owner[eqn.invars[0]]
        elif eqn.primitive is primitives.dot_general_p and eqn.invars[1] in owner:
            (contract, batch) = eqn.params["dimension_numbers"]
            lhs, rhs = (v.aval for v in eqn.invars)
            if lhs.ndim == 2 and rhs.ndim == 2 and contract == ((1,), (0,)) and batch == ((), ()):
                layers[id(eqn)] = ("dense", owner[eqn.invars[1]])
        elif (eqn.primitive is primitives.conv_general_dilated_p and eqn.invars[1] in owner
              and eqn.params["feature_group_count"] == 1 and eqn.params["batch_group_count"] == 1):
            layers[id(eqn)] = ("conv", owner[eqn.invars[1]])
    return layers


def _patches(lhs: jax.Array, rhs_shape: tuple, params: dict) -> jax.Array:
    """The input patches of a convolution, ``(N * T, kh kw c_in)`` (feature order irrelevant to the spectrum)."""
    lhs_spec, rhs_spec, _ = params["dimension_numbers"]
    lhs = jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))  # batch, spatial..., feature
    spatial = "HWD"[: len(lhs_spec) - 2]
    p = jax.lax.conv_general_dilated_patches(
        lhs, tuple(rhs_shape[d] for d in rhs_spec[2:]), params["window_strides"], params["padding"],
        lhs_dilation=params["lhs_dilation"], rhs_dilation=params["rhs_dilation"],
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    return p.reshape(-1, p.shape[-1])


def kfac_factors(loss: SupervisedLoss, params: PyTree, x: Any, y: Any) -> dict[str, KroneckerFactors]:
    """The K-FAC factors of every dense and convolutional layer of ``loss.predict_fn`` at ``params``.

    Args:
      loss: an :func:`analysis.supervised_loss` (its output loss gives ``H_i``; it must be convex in the outputs).
      params: the parameters (any pytree; Flax NNX ``State`` included).
      x, y: one batch of inputs and targets.

    Returns:
      ``{layer path: KroneckerFactors}`` in the order the layers run.

    Raises:
      TypeError / ValueError: ``loss`` not a supervised loss, a model with no dense or conv layer found.
    """
    if not isinstance(loss, SupervisedLoss):
        raise TypeError(f"loss={loss!r} is not an analysis.supervised_loss; K-FAC needs the model's outputs.")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    paths = leaf_paths(params)

    def predict(leaves, x):
        return loss.predict_fn(jax.tree_util.tree_unflatten(treedef, leaves), x)

    closed = jax.make_jaxpr(predict)(leaves, x)
    layers = _find_layers(closed.jaxpr, len(leaves))
    if not layers:
        raise ValueError("no dense (dot_general with a 2-D parameter kernel) or convolution layer was found in "
                         "predict_fn; K-FAC has nothing to factor.")
    args = [*leaves, *jax.tree_util.tree_leaves(x)]
    recorded: dict = {}

    def record(eqn, inputs):
        if id(eqn) not in layers:
            return None
        out = bind(eqn, inputs)
        recorded[id(eqn)] = (inputs[0], eqn.params, inputs[1].shape, jax.ShapeDtypeStruct(out.shape, out.dtype))
        return [out]

    evaluate(closed.jaxpr, closed.consts, args, record)
    order = list(recorded)  # evaluation order

    def perturbed(eps):
        def visit(eqn, inputs):
            return None if id(eqn) not in layers else [bind(eqn, inputs) + eps[id(eqn)]]

        return evaluate(closed.jaxpr, closed.consts, args, visit)[0]

    eps0 = {k: jnp.zeros(recorded[k][3].shape, recorded[k][3].dtype) for k in order}
    outputs, pullback = jax.vjp(perturbed, eps0)
    n = outputs.shape[0]
    hess = jax.vmap(jax.hessian(loss._per_example))(outputs, y)  # (N, K, K)
    w, V = jnp.linalg.eigh(hess)
    roots = V * jnp.sqrt(jnp.maximum(w, 0))[:, None, :]  # H_i = roots_i roots_i^T (rounding below 0 dropped)
    grads = jax.vmap(lambda c: pullback(c)[0])(jnp.moveaxis(roots, -1, 0))  # {key: (K, *z.shape)}

    blocks = layer_blocks(params)
    result = {}
    for key in order:
        kind, leaf = layers[key]
        lhs, eqn_params, rhs_shape, _ = recorded[key]
        layer = next(name for name, members in blocks.items() if paths[leaf] in members)
        bias = next((p for p in blocks[layer] if p != paths[leaf] and p.split("/")[-2 if p.endswith("/value") else -1]
                     == "bias"), None)
        g = grads[key]
        if kind == "dense":
            a, positions = lhs, 1
            gz = g.reshape(-1, g.shape[-1])
        else:
            out_spec = eqn_params["dimension_numbers"][2]
            a = _patches(lhs, rhs_shape, eqn_params)
            gz = jnp.moveaxis(g, 1 + out_spec[1], -1)
            positions = gz[0].size // (n * gz.shape[-1])
            gz = gz.reshape(-1, gz.shape[-1])
        if bias is not None:
            a = jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], axis=1)
        result[layer] = KroneckerFactors(kind, paths[leaf], bias, a.T @ a / n, gz.T @ gz / (n * positions))
    return result

