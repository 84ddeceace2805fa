"""Convolutions that XLA:CPU runs fast inside compiled loops.

XLA:CPU calls its fast (Eigen) convolution only for one layout, batch-spatial-feature input, spatial-in-out kernel
and batch-spatial-feature output (NHWC / HWIO / NHWC). Any other dimension order is rewritten into that one with
explicit transposes by a compiler pass that visits the entry computation only; a convolution inside a ``while`` body
is left as it is and falls back to a naive loop kernel. Reverse-mode differentiation produces exactly such
convolutions (the kernel gradient contracts over the batch, ``f01b_i01o->01bf``), and every Krylov method
(Lanczos, the trace and density estimators, microbatch scans) runs its Hessian-vector products inside loops: measured
with ``python benchmarks/conv_loop.py``, a convolutional HVP costs ~20-40x more inside ``lax.fori_loop`` than alone.

:func:`canonical_convolutions` re-traces a function and writes every convolution in the canonical order with the
transposes spelled out, which is what the compiler pass would have done. The arithmetic of each convolution is
unchanged (same operands, same contraction), so products agree with the unrewritten function to rounding; on the
benchmark's net they agree bit for bit. Convolutions nested inside the user's own loops or conditionals (``scan``,
``while_loop``, ``cond`` in ``loss_fn``) are left as they are; nested ``jit`` calls are inlined and rewritten.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax.extend.core import primitives

from analysis._jaxpr import equations, evaluate


def _canonical_numbers(ndim: int) -> jax.lax.ConvDimensionNumbers:
    spatial = tuple(range(1, ndim - 1))
    return jax.lax.ConvDimensionNumbers((0, ndim - 1, *spatial), (ndim - 1, ndim - 2, *range(ndim - 2)),
                                        (0, ndim - 1, *spatial))


def _canonical_conv(lhs: jax.Array, rhs: jax.Array, *, dimension_numbers, **params) -> jax.Array:
    """One ``conv_general_dilated`` in NHWC / HWIO / NHWC order, operands and result transposed around it."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    canonical = _canonical_numbers(len(lhs_spec))
    if tuple(dimension_numbers) == tuple(canonical):
        return primitives.conv_general_dilated_p.bind(lhs, rhs, dimension_numbers=dimension_numbers, **params)
    # A spec lists (batch or out-feature, feature or in-feature, spatial...) axes; the canonical order puts the
    # feature axis of activations last and the two feature axes of the kernel after its spatial axes.
    lhs = jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    rhs = jnp.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    out = primitives.conv_general_dilated_p.bind(lhs, rhs, dimension_numbers=canonical, **params)
    placed = (out_spec[0], *out_spec[2:], out_spec[1])  # axis i of `out` belongs at position placed[i]
    order = [0] * len(placed)
    for i, axis in enumerate(placed):
        order[axis] = i
    return jnp.transpose(out, order)


def _rewrite(eqn: Any, inputs: list) -> Optional[list]:
    if eqn.primitive is primitives.conv_general_dilated_p:
        return [_canonical_conv(*inputs, **eqn.params)]
    return None


def _has_convolution(jaxpr: Any) -> bool:
    return any(eqn.primitive is primitives.conv_general_dilated_p for eqn in equations(jaxpr))


def canonical_convolutions(fun: Callable) -> Callable:
    """``fun`` with every convolution in the one layout XLA:CPU runs fast inside loops (see the module docstring).

    A function without convolutions is called as it is, so its compiled program does not change. For use inside a
    traced function (the arguments may be tracers).
    """

    def wrapped(*args: Any) -> Any:
        closed, shapes = jax.make_jaxpr(fun, return_shape=True)(*args)
        if not _has_convolution(closed.jaxpr):
            return fun(*args)
        outputs = evaluate(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args), _rewrite)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), outputs)

    return wrapped


def for_backend(fun: Callable) -> Callable:
    """:func:`canonical_convolutions` on the CPU backend, where the slowdown occurs; ``fun`` itself elsewhere."""
    return canonical_convolutions(fun) if jax.default_backend() == "cpu" else fun
