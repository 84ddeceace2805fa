"""Input validation shared by every analysis entry point.

Two kinds of error (STYLE.md rule 9): what is known at trace time (structure, shapes, dtypes, settings) raises
``TypeError``/``ValueError`` naming the offending value; finiteness of concrete arrays is checked once at the
boundary, before anything is compiled, never inside an iterative loop.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def leaf_paths(tree: PyTree) -> list[str]:
    """Slash-separated path of every leaf, in ``tree_flatten`` order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path, simple=True, separator="/") or "<root>" for path, _ in flat]


def _dtype(x: Any) -> np.dtype:
    dtype = getattr(x, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.dtype(jnp.result_type(x))


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


@jax.jit
def _nonfinite_counts(leaves: list) -> jax.Array:
    return jnp.stack([jnp.sum(~jnp.isfinite(leaf)) for leaf in leaves])


def _batch_leaf_names(batch: tuple) -> list[str]:
    names = []
    for i, arr in enumerate(batch):
        for path in leaf_paths(arr):
            names.append(f"batch[{i}]" + ("" if path == "<root>" else f" leaf '{path}'"))
    return names


def check_params(params: PyTree) -> None:
    """Parameters must be a non-empty pytree of floating-point arrays."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params is an empty pytree; expected at least one floating-point array.")
    for i, leaf in enumerate(leaves):
        dtype = _dtype(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"params leaf '{leaf_paths(params)[i]}' has dtype {dtype}; expected a floating-point dtype "
                "(curvature is undefined for integer parameters)."
            )


def check_batch(batch: tuple, *, microbatched: bool) -> None:
    """Every batch array must be non-empty along its leading axis (and along the microbatch axis)."""
    leaves = jax.tree_util.tree_leaves(batch)
    for i, leaf in enumerate(leaves):
        shape = jnp.shape(leaf)
        if len(shape) == 0 and microbatched:
            raise ValueError(f"{_batch_leaf_names(batch)[i]} is a scalar; microbatched=True needs a leading "
                             "microbatch axis.")
        if len(shape) and shape[0] == 0:
            raise ValueError(f"{_batch_leaf_names(batch)[i]} has shape {shape}: the batch is empty; expected at "
                             "least one example.")
        if microbatched and len(shape) > 1 and shape[1] == 0:
            raise ValueError(f"{_batch_leaf_names(batch)[i]} has shape {shape}: the microbatches are empty.")
    if microbatched:
        sizes = {jnp.shape(leaf)[0] for leaf in leaves}
        if len(sizes) > 1:
            raise ValueError(f"microbatched batch arrays disagree on the number of microbatches: {sorted(sizes)}.")


# jax.Arrays are immutable: once one is known to be finite it stays so. Remembering them (weakly, by identity) makes
# repeated analysis calls on the same data and parameters skip the device reduction and its host synchronisation.
_KNOWN_FINITE: "weakref.WeakValueDictionary[int, jax.Array]" = weakref.WeakValueDictionary()


def _needs_check(x: Any) -> bool:
    if not _is_concrete(x):
        return False
    return not (isinstance(x, jax.Array) and _KNOWN_FINITE.get(id(x)) is x)


_PARAMS, _BATCH = "<params>", "<batch>"  # tags of the two fixed groups; extra pytrees are tagged by their names


def check_finite(params: PyTree, batch: tuple, *, extra: Optional[dict[str, PyTree]] = None) -> None:
    """No NaN/inf in concrete parameters or floating-point data: one device reduction, one small transfer.

    ``extra`` maps names to further pytrees checked in the same reduction (a direction, a grid of coefficients);
    an offending leaf is reported as ``name leaf 'path'``, or as ``name`` when the pytree is a single array.
    Arrays that are tracers (the call sits inside a user's ``jit``) cannot be inspected and are skipped.
    """
    extra = extra or {}
    p_leaves = jax.tree_util.tree_leaves(params)
    b_leaves = jax.tree_util.tree_leaves(batch)
    chosen = [(_PARAMS, i, x) for i, x in enumerate(p_leaves) if _needs_check(x)]
    chosen += [(_BATCH, i, x) for i, x in enumerate(b_leaves)
               if _needs_check(x) and np.issubdtype(_dtype(x), np.inexact)]
    for name, tree in extra.items():
        chosen += [(name, i, x) for i, x in enumerate(jax.tree_util.tree_leaves(tree)) if _needs_check(x)]
    if not chosen:
        return
    try:
        counts = np.asarray(_nonfinite_counts([x for _, _, x in chosen]))
    except jax.errors.TracerArrayConversionError:
        # Called inside a user's jit with arrays closed over: the counts are traced values and cannot be read here.
        return
    if not counts.any():
        for _, _, x in chosen:
            if isinstance(x, jax.Array):
                _KNOWN_FINITE[id(x)] = x
        return
    kind, i, _ = chosen[int(np.flatnonzero(counts)[0])]
    bad = int(counts[np.flatnonzero(counts)[0]])
    if kind == _PARAMS:
        raise ValueError(f"params leaf '{leaf_paths(params)[i]}' contains {bad} NaN/inf value(s); expected finite "
                         "values.")
    if kind == _BATCH:
        raise ValueError(f"{_batch_leaf_names(batch)[i]} contains {bad} NaN/inf value(s); expected finite data.")
    path = leaf_paths(extra[kind])[i]
    where = kind if path == "<root>" else f"{kind} leaf '{path}'"
    raise ValueError(f"{where} contains {bad} NaN/inf value(s); expected finite values.")


def check_scalar_loss(loss_fn: Callable, params: PyTree, batch: tuple, *, microbatched: bool) -> None:
    """``loss_fn(params, *batch)`` must return a real scalar (checked abstractly, nothing is computed)."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}.")
    one = jax.tree_util.tree_map(lambda a: a[0], batch) if microbatched else batch
    out = _output_shape(loss_fn, params, one)
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"loss_fn must return a scalar; it returned shape {shape}.")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"loss_fn must return a real floating-point scalar; it returned dtype {out.dtype}.")


_SHAPE_CACHE: dict = {}


def _output_shape(loss_fn: Callable, params: PyTree, batch: tuple):
    """``jax.eval_shape`` of the loss, cached per (function, structure, shapes, dtypes): tracing a Flax model on
    every call would cost more than a Hessian-vector product."""

    def spec(tree):
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        return treedef, tuple((np.shape(x), _dtype(x)) for x in leaves)

    try:
        key = (loss_fn, spec(params), spec(batch))
        hash(key)
    except TypeError:
        return jax.eval_shape(loss_fn, params, *batch)
    if key not in _SHAPE_CACHE:
        if len(_SHAPE_CACHE) > 256:
            _SHAPE_CACHE.clear()
        _SHAPE_CACHE[key] = jax.eval_shape(loss_fn, params, *batch)
    return _SHAPE_CACHE[key]


def check_like(v: PyTree, params: PyTree, name: str = "v") -> None:
    """``v`` must have exactly the pytree structure and leaf shapes of ``params``."""
    sv, sp = jax.tree_util.tree_structure(v), jax.tree_util.tree_structure(params)
    if sv != sp:
        raise ValueError(f"{name} has pytree structure {sv}; expected the structure of params, {sp}.")
    for i, (a, b) in enumerate(zip(jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(params))):
        if jnp.shape(a) != jnp.shape(b):
            path = leaf_paths(params)[i]
            raise ValueError(f"{name} leaf '{path}' has shape {jnp.shape(a)}; expected {jnp.shape(b)}.")


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name}={value} is invalid; expected an integer >= {minimum}.")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {', '.join(map(repr, choices))}.")
    return value


def check_inputs(loss_fn: Callable, params: PyTree, batch: tuple, *, microbatched: bool,
                 extra: Optional[dict[str, PyTree]] = None) -> None:
    """All boundary checks of a ``loss_fn(params, *batch)`` call, in the order a user would fix them; ``extra``
    pytrees (see :func:`check_finite`) join the finiteness check."""
    check_params(params)
    check_batch(batch, microbatched=microbatched)
    check_finite(params, batch, extra=extra)
    check_scalar_loss(loss_fn, params, batch, microbatched=microbatched)
