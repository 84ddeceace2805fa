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
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.extended):
        return dtype  # a typed PRNG key: not a numpy dtype
    return np.dtype(dtype) if dtype is not None else np.dtype(jnp.result_type(x))


def _is_inexact(x: Any) -> bool:
    """Whether ``x`` is a floating-point or complex array or number (the only kinds that can hold NaN/inf)."""
    try:
        return bool(jnp.issubdtype(_dtype(x), jnp.inexact))
    except TypeError:  # not an array at all (a string, a callable): nothing to check
        return False


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
    an offending leaf is reported as ``name leaf 'path'``, or as ``name`` when the pytree is a single array. Only
    floating-point and complex leaves of ``batch`` and ``extra`` are inspected (nothing else can be NaN/inf).
    Arrays that are tracers (the call sits inside a user's ``jit``) cannot be inspected and are skipped.
    """
    extra = extra or {}
    p_leaves = jax.tree_util.tree_leaves(params)
    b_leaves = jax.tree_util.tree_leaves(batch)
    chosen = [(_PARAMS, i, x) for i, x in enumerate(p_leaves) if _needs_check(x)]
    chosen += [(_BATCH, i, x) for i, x in enumerate(b_leaves) if _needs_check(x) and _is_inexact(x)]
    for name, tree in extra.items():
        chosen += [(name, i, x) for i, x in enumerate(jax.tree_util.tree_leaves(tree))
                   if _needs_check(x) and _is_inexact(x)]
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
    try:
        out = _output_shape(loss_fn, params, one)
    except Exception as err:  # whatever the user's loss raised on these shapes; the original stays chained
        raise ValueError(_loss_failure(params, batch, microbatched, err)) from err
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"loss_fn must return a scalar; it returned shape {shape}.")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"loss_fn must return a real floating-point scalar; it returned dtype {out.dtype}.")


def _loss_failure(params: PyTree, batch: tuple, microbatched: bool, err: Exception) -> str:
    """Why tracing the loss failed, in the user's terms: the shapes it was given and any lengths that disagree."""
    names = _batch_leaf_names(batch)
    shapes = [jnp.shape(x) for x in jax.tree_util.tree_leaves(batch)]
    p_shapes = [f"'{path}': {jnp.shape(x)}" for path, x in zip(leaf_paths(params), jax.tree_util.tree_leaves(params))]
    what = "one microbatch" if microbatched else "the batch"
    msg = (f"loss_fn(params, *batch) failed on {what}: batch shapes "
           f"{', '.join(f'{n}: {s}' for n, s in zip(names, shapes)) or 'none'}; params shapes "
           f"{', '.join(p_shapes[:8])}{', ...' if len(p_shapes) > 8 else ''}.")
    axis = 1 if microbatched else 0
    lengths = {s[axis] for s in shapes if len(s) > axis}
    if len(lengths) > 1:
        kind = "per-microbatch sizes (axis 1)" if microbatched else "leading lengths (axis 0)"
        msg += (f" The batch arrays have different {kind}: {', '.join(str(s[axis]) for s in shapes if len(s) > axis)}"
                "; examples are usually paired by position, so expected one length for all.")
    return msg + f" The error was {error_summary(err)}"


def error_summary(err: Exception) -> str:
    """``Type: first line of the message`` of an error raised by user code, for a message that chains it."""
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


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


def check_like(v: PyTree, params: PyTree, name: str = "v", *, same_dtype: bool = False) -> None:
    """``v`` must have exactly the pytree structure and leaf shapes of ``params`` (and, with ``same_dtype``, the
    dtype of each parameter leaf, as a tangent of ``jax.jvp`` must); otherwise its leaves must be real numbers."""
    sv, sp = jax.tree_util.tree_structure(v), jax.tree_util.tree_structure(params)
    if sv != sp:
        raise ValueError(f"{name} has pytree structure {sv}; expected the structure of params, {sp}.")
    paths = leaf_paths(params)
    for path, a, b in zip(paths, jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(params)):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"{name} leaf '{path}' has shape {jnp.shape(a)}; expected {jnp.shape(b)}.")
        da, db = _dtype(a), _dtype(b)
        if same_dtype and da != db:
            raise TypeError(f"{name} leaf '{path}' has dtype {da}; expected {db}, the dtype of that params leaf.")
        if not (jnp.issubdtype(da, jnp.floating) or jnp.issubdtype(da, jnp.integer)):
            raise TypeError(f"{name} leaf '{path}' has dtype {da}; expected real numbers.")


def check_positive_int(value: Any, name: str, what: Optional[str] = None, *, minimum: int = 1) -> int:
    """An ``int`` (bool refused) of at least ``minimum``; returns it as a Python ``int``.

    ``what`` says what the number counts (``"passes over the data"``) and joins the message.
    """
    meaning = f" ({what})" if what else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int{meaning}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name}={value} is invalid; expected an integer >= {minimum}{meaning}.")
    return int(value)


def check_bool(value: Any, name: str) -> bool:
    """A switch must be ``True`` or ``False`` (``"no"`` or ``0`` would otherwise be read by truthiness)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} is invalid; expected True or False.")
    return bool(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``; names the value and the choices otherwise."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {', '.join(map(repr, choices))}.")
    return value


class DataSource:
    """Marker base class of :class:`analysis.Batches`, so that routines taking arrays can refuse a source clearly
    (this module cannot import that one)."""


SOURCE_ROUTINES = ("hvp, dense_hessian, hessian_spectrum, hessian_eigs, hessian_trace, spectral_density, "
                   "block_curvature, gradient_curvature, loss_along_direction, interpolate and loss_surface_2d")


def check_inputs(loss_fn: Callable, params: PyTree, batch: tuple, *, microbatched: bool,
                 extra: Optional[dict[str, PyTree]] = None) -> None:
    """All boundary checks of a ``loss_fn(params, *batch)`` call, in the order a user would fix them; ``extra``
    pytrees (see :func:`check_finite`) join the finiteness check."""
    if any(isinstance(b, DataSource) for b in batch):
        raise TypeError(f"this routine takes data arrays, not a Batches data source; the routines that take one are "
                        f"{SOURCE_ROUTINES}.")
    check_bool(microbatched, "microbatched")
    check_params(params)
    check_batch(batch, microbatched=microbatched)
    check_finite(params, batch, extra=extra)
    check_scalar_loss(loss_fn, params, batch, microbatched=microbatched)


def check_key(key: Any, name: str = "key") -> jax.Array:
    """A JAX PRNG key: a typed key (``jax.random.key``) of shape ``()`` or a raw ``uint32[2]`` (``PRNGKey``).

    An int, a float array or a batch of keys is refused with the value's type, dtype and shape named.
    """
    if isinstance(key, (bool, int, float, np.integer, np.floating)) or key is None:
        raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got "
                        f"{type(key).__name__} {key!r}.")
    if not hasattr(key, "dtype") or not hasattr(key, "shape"):
        raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got "
                        f"{type(key).__name__}.")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{name} has shape {key.shape}; expected a single typed PRNG key of shape ().")
        return key
    if np.dtype(key.dtype) != np.uint32 or tuple(key.shape) != (2,):
        raise ValueError(f"{name} has dtype {key.dtype} and shape {tuple(key.shape)}; expected a single PRNG key: "
                         "a typed key of shape () or a raw uint32 key of shape (2,).")
    return key


def check_number(value: Any, name: str, *, positive: bool = False, minimum: Optional[float] = None,
                 maximum: Optional[float] = None, include_maximum: bool = True) -> float:
    """A finite real number (bool is not a number), optionally ``> 0`` and within ``[minimum, maximum]``.

    ``include_maximum=False`` makes the upper bound open (a dropout probability lies in ``[0, 1)``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if not (hasattr(value, "shape") and np.shape(value) == () and _is_concrete(value)
                and jnp.issubdtype(_dtype(value), jnp.number) and not jnp.issubdtype(_dtype(value), jnp.bool_)):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}.")
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"{name}={number!r} is invalid; expected a finite number.")
    if positive and not number > 0:
        raise ValueError(f"{name}={number!r} is invalid; expected a positive number.")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name}={number!r} is invalid; expected a number >= {minimum}.")
    if maximum is not None and (number > maximum or (not include_maximum and number == maximum)):
        bound = f"<= {maximum}" if include_maximum else f"< {maximum}"
        raise ValueError(f"{name}={number!r} is invalid; expected a number {bound}.")
    return number


def check_same_length(batch: tuple, *, axis_name: str = "leading axis") -> None:
    """All batch arrays (every leaf) must share their length along axis 0: examples are paired by position."""
    leaves = jax.tree_util.tree_leaves(batch)
    shaped = [(i, jnp.shape(x)) for i, x in enumerate(leaves) if len(jnp.shape(x))]
    lengths = {shape[0] for _, shape in shaped}
    if len(lengths) > 1:
        names = _batch_leaf_names(batch)
        detail = ", ".join(f"{names[i]}: {shape[0]}" for i, shape in shaped)
        raise ValueError(f"batch arrays disagree on their {axis_name} ({detail}); expected one length for all "
                         "(examples are paired by position).")
