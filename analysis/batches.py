"""Data sources larger than memory: a re-iterable of batches in place of the batch arrays of any estimator.

``Batches(source)`` wraps anything that yields the batch arguments of ``loss_fn(params, *batch)`` one batch at a
time, anew on every pass: a list of tuples, a grain ``DataLoader``/``MapDataset``/``IterDataset``, a generator
function (a zero-argument callable returning a fresh iterator), or numpy arrays in host memory or on disk
(:meth:`Batches.from_arrays`, sliced by grain). Every estimator accepts it as its only data argument::

    analysis.hessian_eigs(loss_fn, params, analysis.Batches(loader), k=5)

A pass over the source accumulates ``sum_b w_b f_b / sum_b w_b`` of a per-batch quantity ``f_b`` (loss, gradient,
Hessian-vector products, a dense Hessian, landscape values), ``w_b`` being the batch's number of examples by default.
When ``loss_fn`` is a mean over examples this is exactly the full-data value, up to rounding, whatever the batch
sizes (an unequal last batch included): ``sum_b n_b mean_b / sum_b n_b`` is the mean over all examples. The sum runs
in float64 when ``jax_enable_x64`` is on, otherwise in the dtype of the quantity. Each batch runs one jitted kernel
(compiled once per batch shape, reused on every pass); at most two batches are in flight, so memory holds about one
batch, never the whole source. The order is the source's own, so results are deterministic when the source is.
"""

from __future__ import annotations

import collections.abc
import functools
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from analysis._checks import (DataSource, _batch_leaf_names, _is_inexact, check_batch, check_bool, check_finite,
                              check_inputs, check_number, check_params, check_positive_int, check_same_length,
                              check_scalar_loss, error_summary)

PyTree = Any
Weights = Union[str, Callable[..., Any]]
WEIGHTS = ("examples", "uniform")


class Batches(DataSource):
    """A data source: a re-iterable of batches, each a tuple of the arguments after ``params`` of ``loss_fn``.

    Args:
      source: what yields the batches, anew on every pass (Lanczos makes one pass per Hessian-vector product):
        a list or tuple of batch tuples, a grain ``DataLoader``, ``MapDataset`` or ``IterDataset`` (any object whose
        ``__iter__`` restarts), or a zero-argument callable returning a fresh iterator (a generator function).
        Each batch is a tuple of arrays (or pytrees of arrays) sharing a leading example axis, e.g. ``(x, y)``; a
        loss of one argument takes 1-tuples ``(x,)``. Its shapes may differ between batches (a smaller last batch);
        its structure, ranks and dtypes may not.
      weights: the weight of each batch in the average: ``"examples"`` (its leading length, exact for a ``loss_fn``
        that is a mean over examples), ``"uniform"`` (each batch counts once: the mean of the per-batch values, for
        a loss that is not a mean, e.g. a sum per batch), or a callable ``weights(*batch) -> number >= 0`` (e.g.
        the number of unmasked tokens).
      progress: show a tqdm bar over the batches of each pass.

    Raises:
      TypeError / ValueError: a one-shot iterator (a generator object: pass the generator function instead), an
        array (use :meth:`from_arrays`), an object that is neither iterable nor callable, invalid ``weights`` or
        ``progress``. A batch that is not a tuple of arrays, is empty, differs in structure from the first, has
        arrays of different leading lengths, holds NaN/inf, or fails in ``loss_fn`` is refused when it is consumed,
        with its index named; so is a source that yields no batch or changes between passes.

    Example:
      >>> x, y = np.ones((300, 5), np.float32), np.zeros(300, np.int32)
      >>> data = Batches([(x[:128], y[:128]), (x[128:256], y[128:256]), (x[256:], y[256:])])
      >>> data = Batches.from_arrays(x, y, batch_size=128)  # the same three batches, sliced by grain
      >>> analysis.hessian_eigs(loss_fn, params, data, k=5)  # doctest: +SKIP
    """

    def __init__(self, source: Any, *, weights: Weights = "examples", progress: bool = False):
        self._new_iterator = _iterator_factory(source)
        if not callable(weights):
            weights = _choice(weights)
        self.source, self.weights, self.progress = source, weights, check_bool(progress, "progress")
        self._structure: Optional[tuple] = None  # (treedef, ranks and dtypes) of the first batch ever seen

    @classmethod
    def from_arrays(cls, *arrays: Any, batch_size: int, weights: Weights = "examples",
                    progress: bool = False) -> "Batches":
        """Batches of ``batch_size`` consecutive examples (the last one smaller) of arrays sharing a leading axis.

        The arrays stay where they are (numpy arrays in host memory, ``np.load(..., mmap_mode="r")`` on disk): a
        grain ``MapDataset`` slices one batch at a time, so only that batch is copied to the device.

        Raises:
          ValueError / TypeError: no arrays, arrays without a leading axis or of different leading lengths, an
            empty array, ``batch_size < 1``.
        """
        import grain  # only this constructor needs grain; Batches over other sources does not

        if not arrays:
            raise ValueError("from_arrays needs at least one array (the arguments after params of loss_fn).")
        shapes = [np.shape(a) for a in arrays]
        if any(len(s) == 0 for s in shapes) or len({s[0] for s in shapes}) > 1:
            raise ValueError(f"from_arrays got array shapes {shapes}; expected arrays sharing a leading example "
                             "axis (examples are paired by position).")
        batch_size = check_positive_int(batch_size, "batch_size", "examples per batch")
        total = shapes[0][0]
        if total == 0:
            raise ValueError(f"from_arrays got arrays of shapes {shapes}: no example; expected at least one.")
        starts = grain.MapDataset.range(0, total, batch_size)
        return cls(starts.map(functools.partial(_slice, arrays, batch_size)), weights=weights, progress=progress)

    def __repr__(self) -> str:
        return f"Batches({type(self.source).__name__}, weights={self.weights!r}, progress={self.progress})"

    def _run(self, loss_fn: Callable, params: PyTree, what: str) -> "SourceRun":
        return SourceRun(self, loss_fn, params, what)


def _slice(arrays: tuple, batch_size: int, start: int) -> tuple:
    return tuple(a[start:start + batch_size] for a in arrays)


def _choice(weights: Any) -> str:
    if not isinstance(weights, str) or weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} is invalid; expected 'examples', 'uniform' or a callable "
                         "weights(*batch) -> number.")
    return weights


def _iterator_factory(source: Any) -> Callable[[], collections.abc.Iterator]:
    """A function returning a fresh iterator over ``source`` on every call; refuses what can be iterated once."""
    if isinstance(source, Batches):
        raise TypeError("source is already a Batches; pass it to the estimator directly.")
    if isinstance(source, collections.abc.Iterator):
        raise TypeError(f"source is a one-shot iterator ({type(source).__name__}); the estimators pass over the data "
                        "many times (Lanczos: once per Hessian-vector product). Pass a re-iterable (a list, a grain "
                        "DataLoader or MapDataset) or the generator function itself: Batches(make_batches), not "
                        "Batches(make_batches()).")
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        raise TypeError(f"source is an array of shape {np.shape(source)}, not a source of batches; split arrays "
                        "with Batches.from_arrays(x, y, batch_size=...).")
    if isinstance(source, (list, tuple)) and source and all(hasattr(b, "shape") for b in source):
        raise TypeError(f"source is a {type(source).__name__} of arrays, which is one batch, not a source of batches; "
                        "pass a list of batch tuples [(x0, y0), (x1, y1), ...] or split the arrays with "
                        "Batches.from_arrays(x, y, batch_size=...).")
    if isinstance(source, (str, bytes, dict)):
        raise TypeError(f"source is a {type(source).__name__}; expected a re-iterable of batch tuples or a "
                        "zero-argument callable returning an iterator.")
    if hasattr(source, "__iter__"):
        return lambda: iter(source)
    if callable(source):
        return functools.partial(_call_factory, source)
    raise TypeError(f"source is a {type(source).__name__}, which is neither iterable nor callable; expected a "
                    "re-iterable of batch tuples (a list, a grain DataLoader) or a zero-argument callable returning "
                    "an iterator (a generator function).")


def _call_factory(factory: Callable) -> collections.abc.Iterator:
    try:
        made = factory()
    except TypeError as err:
        raise TypeError(f"the source callable {factory!r} must take no argument and return an iterator of batches; "
                        f"calling it raised {error_summary(err)}") from err
    try:
        return iter(made)
    except TypeError:
        raise TypeError(f"the source callable {factory!r} returned a {type(made).__name__}; expected an iterator "
                        "or iterable of batch tuples.") from None


def checked_source(loss_fn: Callable, params: PyTree, batch: tuple, *, microbatched: bool,
                   extra: Optional[dict[str, PyTree]] = None) -> Optional[Batches]:
    """The boundary checks of an estimator: :func:`analysis._checks.check_inputs` for arrays (returns None), or,
    when the data are one :class:`Batches`, the checks that need no data (returns the source; each batch is checked
    as it is consumed)."""
    if not any(isinstance(b, Batches) for b in batch):
        check_inputs(loss_fn, params, batch, microbatched=microbatched, extra=extra)
        return None
    if len(batch) != 1:
        raise TypeError(f"a Batches source replaces all the data arguments; got it among {len(batch)} arguments "
                        f"({', '.join(type(b).__name__ for b in batch)}). Yield every argument in the batch tuples.")
    if check_bool(microbatched, "microbatched"):
        raise ValueError("microbatched=True stacks microbatches of arrays on a leading axis; a Batches source is "
                         "already split into batches: drop microbatched=True.")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}.")
    check_params(params)
    check_finite(params, (), extra=extra)
    return batch[0]


def _spec(tree: PyTree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(x), np.dtype(x.dtype)) for x in leaves)


def _wide(dtype: np.dtype) -> np.dtype:
    """The accumulation dtype of a quantity: float64 where x64 is enabled, otherwise its own."""
    return np.dtype(np.float64) if jax.config.jax_enable_x64 and jnp.issubdtype(dtype, jnp.floating) else dtype


@functools.partial(jax.jit, static_argnames=("term", "loss_fn", "options"), donate_argnames=("acc",))
def _accumulate_batch(term, loss_fn, options, params, operand, acc, weight, index, status, batch):
    """``acc + weight * term(batch)`` and the finiteness status: the one kernel a pass runs per batch."""
    value = term(loss_fn, params, operand, batch, **dict(options))
    acc = jax.tree_util.tree_map(lambda a, v: a + weight.astype(a.dtype) * v.astype(a.dtype), acc, value)
    # NaN/inf in the data is counted here, on the device, without a host synchronisation per batch; status keeps
    # the index and per-leaf counts of the first bad batch and is read once at the end of the pass.
    counts = jnp.stack([jnp.sum(~jnp.isfinite(x)).astype(jnp.int32) if _is_inexact(x) else jnp.zeros((), jnp.int32)
                        for x in jax.tree_util.tree_leaves(batch)])
    first = (status[0] < 0) & jnp.any(counts > 0)
    return acc, jnp.where(first, jnp.concatenate([index[None], counts]), status)


_VALUE_CACHE: dict = {}


def _value_like(term, loss_fn, options, params, operand, batch) -> PyTree:
    """Shapes and dtypes of ``term(batch)``, cached per structure and shapes (tracing the term anew on every pass
    would cost more than dispatching the pass)."""
    key = (term, loss_fn, options, _spec(params), _spec(operand), _spec(batch))
    if key not in _VALUE_CACHE:
        if len(_VALUE_CACHE) > 256:
            _VALUE_CACHE.clear()
        _VALUE_CACHE[key] = jax.eval_shape(functools.partial(term, loss_fn, **dict(options)), params, operand, batch)
    return _VALUE_CACHE[key]


class SourceRun:
    """One estimator call over a :class:`Batches`: its passes, checks and progress bars."""

    def __init__(self, source: Batches, loss_fn: Callable, params: PyTree, what: str):
        self.source, self.loss_fn, self.params, self.what = source, loss_fn, params, what
        self.passes = 0
        self._first_pass: Optional[tuple[int, float]] = None  # (batches, total weight) of the first pass
        self._checked_shapes: set = set()

    def accumulate(self, term: Callable, operand: PyTree, options: tuple = ()) -> PyTree:
        """One pass: the weighted mean over batches of ``term(loss_fn, params, operand, batch, **options)``.

        ``term`` is a module-level function (a static argument of the kernel) returning a pytree of arrays;
        ``options`` a tuple of ``(name, hashable value)`` pairs.
        """
        self.passes += 1
        count, total, acc, status, like, pending, last = 0, 0.0, None, None, None, None, None
        expected = self._first_pass[0] if self._first_pass else _length(self.source.source)
        bar = tqdm(desc=f"{self.what}: pass {self.passes}", total=expected, unit="batch", leave=False,
                   disable=not self.source.progress)
        try:
            for index, item in enumerate(self.source._new_iterator()):
                batch, weight = self._checked(item, index)
                if acc is None:
                    like = _value_like(term, self.loss_fn, options, self.params, operand, batch)
                    acc = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, _wide(s.dtype)), like)
                    status = jnp.asarray([-1] + [0] * len(jax.tree_util.tree_leaves(batch)), jnp.int32)
                    weight_dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
                acc, status = _accumulate_batch(term, self.loss_fn, options, self.params, operand, acc,
                                                np.asarray(weight, weight_dtype), np.int32(index), status, batch)
                if pending is not None:
                    pending.block_until_ready()  # at most two batches in flight: memory of about one batch
                pending, last = status, batch
                count, total = count + 1, total + weight
                bar.update()
        finally:
            bar.close()
        self._check_pass(count, total, status, last)
        return jax.tree_util.tree_map(lambda a, s: (a / total).astype(s.dtype), acc, like)

    def _checked(self, item: Any, index: int) -> tuple[tuple, float]:
        """Validate one batch as it is consumed (host-side, no device work) and return it with its weight."""
        where = f"batch {index} of the data source"
        if isinstance(item, list):
            item = tuple(item)
        if not isinstance(item, tuple):
            raise TypeError(f"{where} is a {type(item).__name__}; expected a tuple of arrays, the arguments after "
                            "params of loss_fn(params, *batch) (a single array as (x,); map dict items to tuples, "
                            "e.g. grain's .map(lambda d: (d['x'], d['y']))).")
        leaves, treedef = jax.tree_util.tree_flatten(item)
        if not leaves:
            raise ValueError(f"{where} holds no array; expected a tuple of arrays.")
        names = _batch_leaf_names(item)
        for name, leaf in zip(names, leaves):
            if not isinstance(leaf, (np.ndarray, np.generic, jax.Array)) or np.dtype(leaf.dtype).kind not in "biufc":
                what = f"array of dtype {leaf.dtype}" if hasattr(leaf, "dtype") else type(leaf).__name__
                raise TypeError(f"{where}: {name} is a {what}; expected a numpy or JAX array of numbers.")
        structure = (treedef, tuple((np.ndim(x), np.dtype(x.dtype)) for x in leaves))
        if self.source._structure is None:
            self.source._structure = structure
        elif structure != self.source._structure:
            raise ValueError(f"{where} has structure {_describe(structure)}; the first batch had "
                             f"{_describe(self.source._structure)}. Every batch must hold the same arguments with "
                             "the same ranks and dtypes (only the shapes may differ).")
        try:
            check_batch(item, microbatched=False)
            weight = self._weight(item)
            shapes = _spec(item)
            if shapes not in self._checked_shapes:
                check_scalar_loss(self.loss_fn, self.params, item, microbatched=False)
                self._checked_shapes.add(shapes)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from err
        return item, weight

    def _weight(self, batch: tuple) -> float:
        weights = self.source.weights
        if weights == "uniform":
            return 1.0
        if weights == "examples":
            check_same_length(batch)
            lengths = [np.shape(x)[0] for x in jax.tree_util.tree_leaves(batch) if np.ndim(x)]
            if not lengths:
                raise ValueError("every array is a scalar, so the batch has no example axis to count; use "
                                 "weights='uniform' or a callable.")
            return float(lengths[0])
        return check_number(weights(*batch), "weights(*batch)", minimum=0)

    def _check_pass(self, count: int, total: float, status: Optional[jax.Array], last: Optional[tuple]) -> None:
        if count == 0:
            raise ValueError(f"the data source yielded no batch on pass {self.passes}" +
                             (" (a callable must return a fresh iterator on every call)" if self.passes > 1 else "")
                             + "; expected at least one batch.")
        state = np.asarray(status)
        if state[0] >= 0:
            leaf = int(np.flatnonzero(state[1:])[0])
            raise ValueError(f"batch {int(state[0])} of the data source: {_batch_leaf_names(last)[leaf]} contains "
                             f"{int(state[1 + leaf])} NaN/inf value(s); expected finite data.")
        if not total > 0:
            raise ValueError(f"the batch weights of the data source sum to {total}; expected a positive total.")
        if self._first_pass is None:
            self._first_pass = (count, total)
        elif self._first_pass != (count, total):
            raise ValueError(f"the data source changed between passes: pass 1 yielded {self._first_pass[0]} "
                             f"batches of total weight {self._first_pass[1]}, pass {self.passes} {count} of "
                             f"{total}. Every pass must yield the same batches (fix the loader's seed; an "
                             "infinite or re-shuffling source cannot be used).")


def _length(source: Any) -> Optional[int]:
    try:
        return len(source)
    except Exception:  # many iterables (a grain DataLoader, a generator function) have no length
        return None


def _describe(structure: tuple) -> str:
    treedef, leaves = structure
    return f"{treedef} with (rank, dtype) {', '.join(f'({r}, {d})' for r, d in leaves)}"
