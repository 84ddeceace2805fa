"""The training engine: a plug-in ``step(state, batch, key) -> (state, metrics)`` run over one shuffled epoch
(:func:`epoch_scan`), many epochs (:func:`run_epochs`) or one key per step in jitted chunks (:func:`scan_steps`).

Loop machinery only, with no optimizer or loss of its own: every model's ``fit_*`` (GAN, VAE, RBM, perceptron,
hand-written backprop) supplies its step, and :mod:`jaxdl.train` adds the optax steps and the main job's driver.
Data enter the scans as arguments, never as closed-over constants; the same key gives the same bits.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from analysis._checks import check_key, check_positive_int

PyTree = Any


def _num_examples(data: PyTree) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data is an empty pytree; expected arrays with a leading example axis.")
    if any(jnp.ndim(a) == 0 for a in leaves):
        raise ValueError("data holds a scalar; expected arrays with a leading example axis.")
    sizes = {int(jnp.shape(a)[0]) for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"data arrays have different numbers of examples {sorted(sizes)}; expected one common "
                         "leading axis.")
    n = sizes.pop()
    if n == 0:
        raise ValueError("data is empty; expected at least one example.")
    return n


def epoch_batches(key: jax.Array, num_examples: int, batch_size: int, *, step_keys: bool = True):
    """The minibatch indices ``(num_batches, batch_size)`` of one shuffled epoch and the key of each step.

    With ``step_keys`` the key splits into ``(k_perm, k_steps)``: ``k_perm`` shuffles and row ``t`` of
    ``split(k_steps, num_batches)`` is step ``t``'s key; without, ``key`` itself shuffles and the keys are None. The
    ``num_examples % batch_size`` examples left over after the permutation are dropped.
    """
    kperm, ksteps = jax.random.split(key) if step_keys else (key, None)
    num_batches = num_examples // batch_size
    idx = jax.random.permutation(kperm, num_examples)[: num_batches * batch_size].reshape(num_batches, batch_size)
    return idx, None if ksteps is None else jax.random.split(ksteps, num_batches)


def epoch_scan(step: Callable, state: PyTree, key: Optional[jax.Array], data: PyTree, *,
               batch_size: Optional[int], step_keys: bool = True) -> tuple[PyTree, PyTree]:
    """One pass over ``data`` in one ``lax.scan``: ``step(state, batch, k) -> (state, metrics)`` per minibatch.

    Args:
      step: the plug-in update; ``batch`` has the pytree structure of ``data``, ``k`` is the step's key or None.
      state: the carried pytree (parameters, optimizer state, chains ...), returned anew.
      key: shuffles as :func:`epoch_batches` (and gives each step a key when ``step_keys``); None = examples in
        order and no keys.
      data: a pytree of arrays with a common leading example axis (an array, ``(x, y)``).
      batch_size: examples per step (a static int <= the number of examples; the remainder is dropped), or None for
        one example per step without a batch axis.
      step_keys: give each step its own key (else ``key`` only shuffles and ``k`` is None).

    Returns:
      ``(state, metrics)``, the metrics of every step stacked along a leading axis.

    Not jitted here: call it inside a ``jax.jit`` with ``step`` and ``batch_size`` static (and ``vmap`` it if you
    like); settings are checked at trace time.

    Raises:
      TypeError, ValueError: ``step`` not callable, ``batch_size`` not an int in ``[1, examples]``, ``key`` not a
        single PRNG key, data empty, scalar or of unequal lengths.

    Example:
      >>> def step(total, xb, k):
      ...     return total + jnp.sum(xb), jnp.sum(xb)
      >>> total, sums = epoch_scan(step, 0.0, jax.random.key(0), jnp.arange(10.0), batch_size=3)
      >>> sums.shape, float(total) == float(jnp.sum(sums))
      ((3,), True)
    """
    if not callable(step):
        raise TypeError(f"step must be callable, got {type(step).__name__}.")
    n = _num_examples(data)
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size", "examples per step")
        if batch_size > n:
            raise ValueError(f"batch_size={batch_size} is invalid; expected at most {n} (the number of examples).")
    if key is None:  # in order: slice the data, no gather
        xs = data if batch_size is None else jax.tree.map(
            lambda a: a[: n // batch_size * batch_size].reshape(n // batch_size, batch_size, *a.shape[1:]), data)
        return jax.lax.scan(lambda s, b: step(s, b, None), state, xs)
    check_key(key)
    if batch_size is None:
        kperm, ksteps = jax.random.split(key) if step_keys else (key, None)
        idx, keys = jax.random.permutation(kperm, n), None if ksteps is None else jax.random.split(ksteps, n)
    else:
        idx, keys = epoch_batches(key, n, batch_size, step_keys=step_keys)

    def body(s, inputs):
        batch_idx, k = inputs
        return step(s, jax.tree.map(lambda a: a[batch_idx], data), k)

    return jax.lax.scan(body, state, (idx, keys))


def run_epochs(step: Callable, state: PyTree, key: Optional[jax.Array], data: PyTree, *, epochs: int,
               batch_size: Optional[int], step_keys: bool = True,
               epoch_end: Optional[Callable[[PyTree, PyTree], PyTree]] = None) -> tuple[PyTree, PyTree]:
    """``epochs`` passes of :func:`epoch_scan` in one ``lax.scan``; epoch ``e`` uses row ``e`` of
    ``jax.random.split(key, epochs)`` (``key=None``: every epoch in order).

    ``epoch_end(state, metrics) -> summary`` turns an epoch's stacked step metrics into what is kept for it (default:
    all of them). Returns ``(state, summaries)`` stacked over epochs. Not jitted here, like :func:`epoch_scan`.

    Raises:
      TypeError, ValueError: as :func:`epoch_scan`, and ``epochs`` not a positive int.
    """
    check_positive_int(epochs, "epochs", "passes over the data")
    if key is not None:
        check_key(key)

    def epoch(s, k):
        s, metrics = epoch_scan(step, s, k, data, batch_size=batch_size, step_keys=step_keys)
        return s, metrics if epoch_end is None else epoch_end(s, metrics)

    return jax.lax.scan(epoch, state, None if key is None else jax.random.split(key, epochs), length=epochs)


def scan_steps(step: Callable, state: PyTree, keys: jax.Array, data: PyTree = None, *,
               chunk: Optional[int] = None) -> tuple[PyTree, PyTree]:
    """``step(state, data, k) -> (state, metrics)`` once per key of ``keys`` (``(steps,)``, e.g.
    ``jax.random.split(key, steps)``), ``chunk`` steps per jitted ``lax.scan`` (default: all in one).

    For loops that draw their own minibatches from the key (a GAN's alternating updates). ``step`` is a static
    argument of the jitted chunk: pass a module-level function or a hashable object (a frozen dataclass of the
    static settings with ``__call__``), never a new closure, so that calls with equal steps share one compilation;
    ``data`` (arrays, learning rates) is traced.

    Returns:
      ``(state, metrics)``, the metrics of every step concatenated along a leading axis as host numpy arrays.

    Raises:
      TypeError, ValueError: ``step`` not callable, ``chunk`` not a positive int, ``keys`` not a non-empty batch of
        PRNG keys.
    """
    if not callable(step):
        raise TypeError(f"step must be callable, got {type(step).__name__}.")
    if jnp.ndim(keys) < 1 or len(keys) == 0:
        raise ValueError(f"keys has shape {jnp.shape(keys)}; expected a non-empty batch of PRNG keys "
                         "(jax.random.split(key, steps)).")
    check_key(keys[0], "keys[0]")
    steps = len(keys)
    chunk = steps if chunk is None else check_positive_int(chunk, "chunk", "steps per jitted scan")
    parts = []
    for start in range(0, steps, chunk):
        state, metrics = _scan_chunk(step, state, keys[start : start + chunk], data)
        parts.append(metrics)
    parts = jax.device_get(parts)
    return state, jax.tree.map(lambda *p: np.concatenate([np.asarray(a) for a in p]), *parts)


@functools.partial(jax.jit, static_argnums=0)
def _scan_chunk(step: Callable, state: PyTree, keys: jax.Array, data: PyTree):
    return jax.lax.scan(lambda s, k: step(s, data, k), state, keys)
