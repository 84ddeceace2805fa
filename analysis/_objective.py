"""The flat objective every analysis routine works on.

A user supplies ``loss_fn(params, *batch)`` and a params pytree. Inside a jitted routine this module turns them into
functions of one flat vector ``theta`` (the selected block of parameters, in ``ravel_pytree`` order):
``loss(theta)``, ``grad(theta)`` and ``hvp(theta, v)``. The data and the parameters outside the block are traced
arguments of the enclosing ``jit``, so XLA never constant-folds them (STYLE.md rule 3).

Microbatching: with ``microbatched=True`` every batch array carries a leading microbatch axis. Loss, gradient and
Hessian-vector products are averaged over microbatches with ``lax.scan`` so only one microbatch is live at a time.
The average equals the full-batch value when ``loss_fn`` is a mean over examples and the microbatches have equal
size.

Data sources (:class:`analysis.Batches`): the per-batch terms below (loss and gradient, Hessian-vector products of a
stack of vectors) are what one pass over a source accumulates, batch by batch, with weights; :func:`source_matmat`
turns a pass into the matrix-vector product that the host-side Krylov loops call.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from analysis._checks import leaf_paths
from analysis._convolutions import for_backend
from analysis.curvatures import curvature_of

PyTree = Any
BlockSpec = Union[None, str, Sequence[str], Callable[[str], bool]]


def block_mask(params: PyTree, block: BlockSpec) -> list[bool]:
    """Which leaves of ``params`` belong to ``block``.

    ``block`` is None (all parameters), a path prefix such as ``"layers/0"`` (component-wise match against the
    slash-separated leaf paths that :func:`analysis.layer_blocks` lists), a sequence of prefixes, or a predicate on
    the path string.
    """
    paths = leaf_paths(params)
    if block is None:
        return [True] * len(paths)
    if callable(block):
        mask = [bool(block(p)) for p in paths]
    else:
        if not isinstance(block, str) and not (isinstance(block, (list, tuple))
                                               and all(isinstance(b, str) for b in block)):
            raise TypeError(f"block={block!r} is invalid; expected None, a path prefix such as 'layers/0', a sequence "
                            "of prefixes or a predicate on the path string.")
        prefixes = [block] if isinstance(block, str) else list(block)
        split = [tuple(p.strip("/").split("/")) for p in prefixes]
        mask = [any(tuple(path.split("/"))[: len(s)] == s for s in split) for path in paths]
    if not any(mask):
        raise ValueError(f"block={block!r} selects no parameter; available leaf paths: {paths}.")
    return mask


def check_block(params: PyTree, block: BlockSpec) -> BlockSpec:
    """Validate ``block`` against ``params`` (see :func:`block_mask`) and return it hashable, as ``jit`` needs a
    static argument to be (a list of prefixes becomes a tuple; the selection is the same)."""
    block_mask(params, block)
    return tuple(block) if isinstance(block, list) else block


def layer_blocks(params: PyTree) -> dict[str, tuple[str, ...]]:
    """Group the leaves of ``params`` into layers: ``{layer_path: (leaf_path, ...)}``.

    A layer is the parent path of its parameters (``layers/0`` for ``layers/0/kernel`` and ``layers/0/bias``);
    Flax NNX's trailing ``/value`` is ignored. Each key is a valid ``block=`` argument.
    """
    groups: dict[str, list[str]] = {}
    for path in leaf_paths(params):
        parts = path.split("/")
        if parts[-1] == "value" and len(parts) > 1:
            parts = parts[:-1]
        layer = "/".join(parts[:-1]) or parts[0]
        groups.setdefault(layer, []).append(path)
    return {k: tuple(v) for k, v in groups.items()}


class FlatObjective(NamedTuple):
    """Functions of the flat block vector; built inside a traced function, never returned from ``jit``."""

    theta: jax.Array
    unravel: Callable[[jax.Array], PyTree]
    loss: Callable[[jax.Array], jax.Array]
    grad: Callable[[jax.Array], jax.Array]
    value_and_grad: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    hvp: Callable[[jax.Array, jax.Array], jax.Array]  # C v for the loss's curvature matrix (the Hessian by default)


def _mean_over_microbatches(fn: Callable, batch: tuple) -> Any:
    """Average ``fn(microbatch)`` over the leading axis with a scan (one microbatch live at a time)."""
    count = jax.tree_util.tree_leaves(batch)[0].shape[0]
    first = jax.tree_util.tree_map(lambda a: a[0], batch)
    zero = jax.tree_util.tree_map(jnp.zeros_like, jax.eval_shape(fn, first))

    def body(acc, mb):
        return jax.tree_util.tree_map(jnp.add, acc, fn(mb)), None

    total, _ = jax.lax.scan(body, zero, batch)
    return jax.tree_util.tree_map(lambda t: t / count, total)


def make_objective(
    loss_fn: Callable, params: PyTree, batch: tuple, *, microbatched: bool = False, block: BlockSpec = None
) -> FlatObjective:
    """Build the flat objective of ``block`` (all parameters by default); call inside a traced function."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    mask = block_mask(params, block)
    theta, unravel_block = ravel_pytree([leaf for leaf, m in zip(leaves, mask) if m])
    fixed = [leaf for leaf, m in zip(leaves, mask) if not m]

    def with_block(chosen_leaves: list) -> PyTree:
        chosen, rest = iter(chosen_leaves), iter(fixed)
        return jax.tree_util.tree_unflatten(treedef, [next(chosen) if m else next(rest) for m in mask])

    def full_params(th: jax.Array) -> PyTree:
        return with_block(unravel_block(th))

    flatten = functools.partial(flatten_leaves, n=theta.shape[0], dtype=theta.dtype)

    def unravel(th: jax.Array) -> PyTree:
        """Block vector -> params-shaped pytree holding the block's entries (zeros elsewhere)."""
        chosen = iter(unravel_block(th))
        return jax.tree_util.tree_unflatten(
            treedef, [next(chosen) if m else jnp.zeros_like(leaf) for leaf, m in zip(leaves, mask)]
        )

    def loss_plain(th, *mb):
        return loss_fn(full_params(th), *mb)

    def loss_leaves(chosen_leaves, *mb):
        return loss_fn(with_block(chosen_leaves), *mb)

    # Each piece is traced once more with its convolutions in the layout XLA:CPU keeps fast inside loops
    # (analysis/_convolutions.py); a loss without convolutions compiles exactly as before. Derivatives are taken
    # with respect to the block's leaves and flattened by flatten_leaves, never through ravel_pytree's
    # concatenation (see there).
    loss_one = for_backend(loss_plain)

    @for_backend
    def vg_one(th, mb):
        value, g = jax.value_and_grad(loss_leaves)(unravel_block(th), *mb)
        return value, flatten(g)

    if curvature_of(loss_fn) == "hessian":
        @for_backend
        def hvp_one(th, v, mb):
            return jax.jvp(lambda t: flatten(jax.grad(loss_leaves)(unravel_block(t), *mb)), (th,), (v,))[1]
    else:  # a GGN or Fisher product of a supervised loss (analysis/curvatures.py)
        @for_backend
        def hvp_one(th, v, mb):
            return flatten(loss_fn.product(with_block, unravel_block(th), unravel_block(v), *mb))

    if microbatched:
        def loss(th):
            return _mean_over_microbatches(lambda mb: loss_one(th, *mb), batch)

        def value_and_grad(th):
            return _mean_over_microbatches(lambda mb: vg_one(th, mb), batch)

        def hvp(th, v):
            return _mean_over_microbatches(lambda mb: hvp_one(th, v, mb), batch)
    else:
        def loss(th):
            return loss_one(th, *batch)

        def value_and_grad(th):
            return vg_one(th, batch)

        def hvp(th, v):
            return hvp_one(th, v, batch)

    def grad(th):
        return value_and_grad(th)[1]

    return FlatObjective(theta, unravel, loss, grad, value_and_grad, hvp)


def flatten_leaves(leaves: Sequence[jax.Array], n: int, dtype: Any) -> jax.Array:
    """The flat vector of ``leaves`` in ``ravel_pytree`` order (cast to ``dtype``), written leaf by leaf into one
    buffer with ``dynamic_update_slice``.

    Why not ``ravel_pytree``'s concatenation: a gradient flattened by concatenation inside a compiled loop
    (Lanczos, SLQ, mapped probes) compiled on XLA:CPU to a concatenate fusion that took 28 ms per call for 712k
    parameters, ten times the rest of the Hessian-vector product (measured: an HVP of the 0.7M-parameter MLP of
    ``benchmarks/setting_b.py`` in a ``fori_loop``, 31 ms with it, 2.5 ms with this, the same bits).
    """
    flat = jnp.zeros((n,), dtype)
    offset = 0
    for leaf in leaves:
        flat = jax.lax.dynamic_update_slice(flat, jnp.ravel(leaf).astype(dtype), (offset,))
        offset += leaf.size
    return flat


def flat_dtype(params: PyTree) -> jnp.dtype:
    """The dtype of the flat parameter vector (``ravel_pytree`` promotes the leaves to their common type)."""
    return jnp.result_type(*jax.tree_util.tree_leaves(params))


def flat_view(params: PyTree, block: BlockSpec) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
    """The flat block vector of ``params`` and its ``unravel``, outside any trace (for the host-side loops)."""
    obj = make_objective(None, params, (), block=block)
    return obj.theta, obj.unravel


def value_and_grad_term(loss_fn: Callable, params: PyTree, operand: None, batch: tuple, *, block: BlockSpec):
    """Per-batch term of a data source: the loss and the flat gradient of ``block`` on ``batch``."""
    obj = make_objective(loss_fn, params, batch, block=block)
    return obj.value_and_grad(obj.theta)


def hvp_term(loss_fn: Callable, params: PyTree, vectors: jax.Array, batch: tuple, *, block: BlockSpec,
             batch_size: int) -> jax.Array:
    """Per-batch term of a data source: ``H_batch v`` for every row of ``vectors (p, n)``, ``batch_size`` rows
    vectorised at a time."""
    obj = make_objective(loss_fn, params, batch, block=block)
    return jax.lax.map(functools.partial(obj.hvp, obj.theta), vectors,
                       batch_size=min(batch_size, vectors.shape[0]))


def source_matmat(run: Any, block: BlockSpec, batch_size: int = 8) -> Callable[[jax.Array], jax.Array]:
    """``V (p, n) -> H V`` for the Hessian of the mean loss over a data source: one pass per call, every batch's
    products computed together (``run`` is an :class:`analysis.batches.SourceRun`)."""
    options = (("block", block), ("batch_size", batch_size))
    return lambda vectors: run.accumulate(hvp_term, vectors, options)
