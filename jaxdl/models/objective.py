"""Any Flax NNX module as a pure curvature objective ``loss_fn(params, *batch)`` over its ``nnx.Param`` leaves.

A model with BatchNorm or Dropout computes a different function in training and in evaluation, and carries state
that is not a parameter (BatchNorm's running mean and variance, ``nnx.BatchStat``; the keys and counters of its
random streams, ``nnx.RngState``). Splitting the whole model and differentiating everything would treat running
statistics as parameters; :func:`curvature_objective` instead differentiates the ``nnx.Param`` leaves only, holds
every other variable fixed at its current value, and asks which function to differentiate:

- ``batch_norm="running"``: normalisation by the stored running averages, an affine map of fixed coefficients.
  The objective is the loss of the deployed (``model.eval()``) network.
- ``batch_norm="batch"``: normalisation by the mean and variance of the batch passed to ``loss_fn``, as in
  training. The objective is the training-mode loss, in which every example's output depends on the whole batch
  through those statistics, and the Hessian includes the second derivatives through them. The updated running
  averages are computed and discarded; nothing is written back to the model.
- ``dropout="off"``: every Dropout layer is the identity (evaluation mode).
- ``dropout=key``: one fixed mask per Dropout layer, drawn from ``key``: the objective is the loss of that one
  sub-network, the same function at every call, so its Hessian is well defined. A different key is a different
  sub-network (the expected training loss over masks is the average over keys).

Modes are set through the attributes ``model.eval()`` / ``model.train()`` set (``use_running_average`` and
``deterministic``) on a view of the model; a module whose ``__call__`` passes those flags explicitly overrides them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from analysis._checks import check_choice, check_key, check_positive_int

BATCH_NORM_MODES = ("running", "batch")
PLACED_TYPES = (nnx.Param, nnx.BatchStat, nnx.RngState)


def _path(parts: Sequence[Any]) -> str:
    return "/".join(str(p) for p in parts) or "<root>"


def _variables(model: nnx.Module) -> list[tuple[str, nnx.Variable]]:
    return [(_path(p), node) for p, node in nnx.iter_graph(model) if isinstance(node, nnx.Variable)]


def _modules(model: nnx.Module) -> list[tuple[str, nnx.Module]]:
    return [(_path(p), node) for p, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)]


def _listing(items: list[tuple[str, Any]], limit: int = 4) -> str:
    shown = ", ".join(f"{type(v).__name__} at '{p}'" for p, v in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def non_param_state(model: nnx.Module) -> list[tuple[str, nnx.Variable]]:
    """``(path, variable)`` of every variable of ``model`` that is not an ``nnx.Param``."""
    return [(p, v) for p, v in _variables(model) if not isinstance(v, nnx.Param)]


def _is_stochastic(module: nnx.Module) -> bool:
    """A module that draws random numbers unless ``deterministic``: ``nnx.Dropout`` (``rate``), attention with
    ``dropout_rate``; a module with a ``deterministic`` flag and no rate is counted as stochastic."""
    if not hasattr(module, "deterministic"):
        return False
    rates = [getattr(module, name) for name in ("rate", "dropout_rate") if hasattr(module, name)]
    return not rates or any(float(r) > 0.0 for r in rates)


def _check_dropout(dropout: Any, stochastic: list, model_name: str):
    """``"off"``, ``None`` (only for a model without Dropout) or one PRNG key, returned as a typed key."""
    if dropout is None:
        if stochastic:
            raise ValueError(f"{model_name} has Dropout ({_listing(stochastic)}); choose dropout='off' (the "
                             "deterministic network) or dropout=jax.random.key(seed) (one fixed mask).")
        return "off"
    if isinstance(dropout, str):
        if dropout == "off":
            return "off"
        hint = " needs a fixed PRNG key" if dropout == "on" else " is unknown"
        raise ValueError(f"dropout={dropout!r}{hint}; expected 'off' or a PRNG key (dropout=jax.random.key(seed)) "
                         "from which one fixed mask per Dropout layer is drawn.")
    key = check_key(dropout, "dropout")
    return key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)


def _fixed_keys(fixed: nnx.State, key: jax.Array) -> nnx.State:
    """Every RNG stream restarted from ``fold_in(key, i)`` with its counter at 0: the masks depend on ``key`` only."""
    flat = list(nnx.to_flat_state(fixed))
    streams = [path for path, var in flat if isinstance(var, nnx.RngKey)]
    index = {path: i for i, path in enumerate(streams)}

    def restart(path, var):
        if isinstance(var, nnx.RngKey):
            value = jax.random.fold_in(key, index[path])
            if jax.random.key_impl(value) != jax.random.key_impl(var.get_value()):
                value = jax.random.wrap_key_data(jax.random.key_data(value),
                                                 impl=jax.random.key_impl(var.get_value()))
            return var.replace(value)
        if isinstance(var, nnx.RngCount):
            return var.replace(jnp.zeros_like(var.get_value()))
        return var

    return nnx.map_state(restart, fixed)


def curvature_objective(
    model: nnx.Module,
    loss: Callable[..., jax.Array],
    *,
    batch_norm: str | None = None,
    dropout: str | jax.Array | None = None,
    hold_fixed: Sequence[type] = (),
    num_inputs: int = 1,
) -> tuple[Callable[..., jax.Array], nnx.State]:
    """``(loss_fn, params)``: the loss of ``model`` as a pure function of its ``nnx.Param`` leaves.

    ``loss_fn(params, *batch) = loss(model(*batch[:num_inputs]), *batch[num_inputs:])`` evaluated in the chosen
    BatchNorm and Dropout modes (see the module docstring for the objective each mode defines), with every variable
    that is not an ``nnx.Param`` held at its current value. ``loss_fn`` is pure and jit-able; it never writes to
    ``model`` (in ``"batch"`` mode the new running statistics are computed on a copy and discarded). ``params`` is
    the ``nnx.State`` of the ``nnx.Param`` leaves (their current values), as returned by ``jaxdl.models.split``.
    The fixed state enters ``loss_fn`` as a constant: it is small (statistics and keys), the parameters and the
    batch are arguments.

    Args:
      model: any NNX module; it is not modified.
      loss: ``loss(outputs, *targets) -> scalar``, e.g.
        ``lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()``.
      batch_norm: ``"running"`` (deployed network) or ``"batch"`` (training-mode batch statistics); required when
        the model has BatchNorm (a module with ``use_running_average``), optional otherwise.
      dropout: ``"off"`` or a PRNG key (one fixed mask per Dropout layer); required when the model has Dropout.
      hold_fixed: further ``nnx.Variable`` subclasses (e.g. ``nnx.Intermediate``, ``nnx.Cache``, your own) to hold
        fixed like the BatchNorm statistics. ``nnx.BatchStat`` and ``nnx.RngState`` are always held fixed.
      num_inputs: how many leading batch arrays are passed to the model; the rest go to ``loss`` after the output.

    Returns:
      ``(loss_fn, params)``.

    Raises:
      TypeError: ``model`` is not an ``nnx.Module``, ``loss`` is not callable, ``hold_fixed`` holds something other
        than an ``nnx.Variable`` subclass, ``dropout`` is neither a string nor one PRNG key.
      ValueError: the model has no ``nnx.Param``; it has a variable of a type not placed (not Param, BatchStat,
        RngState or in ``hold_fixed``; the type and path are named); ``batch_norm`` is unknown or missing for a
        model with BatchNorm; ``dropout`` is missing for a model with Dropout, ``"on"`` without a key, or a key for
        a Dropout layer built without ``rngs``.
      TypeError from ``loss_fn``: fewer than ``num_inputs`` batch arrays.

    Example:
      >>> model = ResNet20(depth=8, width=4, num_classes=3, rngs=nnx.Rngs(0))
      >>> xent = lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      >>> loss_fn, params = curvature_objective(model, xent, batch_norm="running")
      >>> x, y = jnp.ones((4, 8, 8, 3)), jnp.arange(4) % 3
      >>> analysis.hessian_eigs(loss_fn, params, x, y, k=3).eigenvalues.shape
      (3,)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}.")
    if not callable(loss):
        raise TypeError(f"loss must be callable as loss(outputs, *targets), got {type(loss).__name__}.")
    num_inputs = check_positive_int(num_inputs, "num_inputs", "batch arrays passed to the model")
    hold_fixed = tuple(hold_fixed)
    for t in hold_fixed:
        if not (isinstance(t, type) and issubclass(t, nnx.Variable)):
            raise TypeError(f"hold_fixed entries must be nnx.Variable subclasses, got {t!r}.")
        if issubclass(t, nnx.Param) or issubclass(nnx.Param, t):
            raise ValueError(f"hold_fixed contains {t.__name__}, which would hold the parameters fixed; "
                             "nnx.Param leaves are what the objective differentiates.")
    name = type(model).__name__

    variables = _variables(model)
    if not any(isinstance(v, nnx.Param) for _, v in variables):
        raise ValueError(f"{name} has no nnx.Param variables; there is nothing to differentiate.")
    unplaced = [(p, v) for p, v in variables if not isinstance(v, PLACED_TYPES + hold_fixed)]
    if unplaced:
        kinds = sorted({type(v).__name__ for _, v in unplaced})
        raise ValueError(f"{name} has state that is neither nnx.Param, nnx.BatchStat nor nnx.RngState: "
                         f"{_listing(unplaced)}. Pass hold_fixed=({', '.join(kinds)},) to hold it fixed at its "
                         "current value, or remove it from the model.")

    modules = _modules(model)
    normalising = [(p, m) for p, m in modules if hasattr(m, "use_running_average")]
    if batch_norm is None and normalising:
        raise ValueError(f"{name} has BatchNorm ({_listing(normalising)}); choose batch_norm='running' (the deployed "
                         "network's loss) or batch_norm='batch' (the training-mode loss with batch statistics).")
    batch_norm = check_choice("running" if batch_norm is None else batch_norm, "batch_norm", BATCH_NORM_MODES)
    stochastic = [(p, m) for p, m in modules if _is_stochastic(m)]
    key = _check_dropout(dropout, stochastic, name)
    if not isinstance(key, str):
        keyless = [(p, m) for p, m in stochastic if getattr(m, "rngs", None) is None]
        if keyless:
            raise ValueError(f"{name} has Dropout built without rngs ({_listing(keyless)}), so no fixed key can be "
                             "placed in it; build it with rngs (nnx.Dropout(rate, rngs=rngs); keep_rngs=True for "
                             "attention) or use dropout='off'.")

    view = nnx.with_attributes(model, use_running_average=batch_norm == "running",
                               deterministic=isinstance(key, str), raise_if_not_found=False)
    graphdef, params, fixed = nnx.split(view, nnx.Param, ...)
    if not isinstance(key, str):
        fixed = _fixed_keys(fixed, key)
    # Arrays only: the Variables are rebuilt inside each trace, so BatchNorm's update and the RNG counters in
    # "batch" / keyed mode land on a copy that is discarded; nothing is shared with the model's variables.
    fixed_leaves, fixed_def = jax.tree.flatten(fixed)

    def loss_fn(params, *batch):
        if len(batch) < num_inputs:
            raise TypeError(f"loss_fn expects at least {num_inputs} batch array(s) for the model, got {len(batch)}.")
        module = nnx.merge(graphdef, params, jax.tree.unflatten(fixed_def, fixed_leaves))
        return loss(module(*batch[:num_inputs]), *batch[num_inputs:])

    return loss_fn, params
