"""Pure, jitted training over optax: ``train_step(state, *batch) -> (state, metrics)`` and a small driver.

The engine that every model's ``fit_*`` runs on (:mod:`jaxdl.engine`) and the losses (:mod:`jaxdl.losses`) are
re-exported here.

State is an explicit pytree returned anew each step (STYLE.md rule 5); shuffling is deterministic in the PRNG key;
monitors from ``analysis.monitor`` plug into :func:`fit` and see the state before and after each step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from analysis._checks import check_choice, check_finite, check_key, check_number, check_positive_int, check_same_length
from jaxdl.engine import epoch_batches as epoch_batches  # noqa: F401 - the engine is part of the training API
from jaxdl.engine import epoch_scan as epoch_scan  # noqa: F401
from jaxdl.engine import run_epochs as run_epochs  # noqa: F401
from jaxdl.engine import scan_steps as scan_steps  # noqa: F401
from jaxdl.losses import accuracy as accuracy  # noqa: F401 - losses are part of the training API
from jaxdl.losses import masked_mse as masked_mse  # noqa: F401
from jaxdl.losses import softmax_cross_entropy as softmax_cross_entropy  # noqa: F401

PyTree = Any
OPTIMIZERS = ("sgd", "momentum", "adam")


class TrainState(NamedTuple):
    params: PyTree
    opt_state: PyTree
    step: jax.Array


class TrainingDiverged(ValueError):
    """Training produced a non-finite or exploding loss, or non-finite parameters (the learning rate is too large).

    Attributes:
      step: the step whose loss was non-finite or exploded (or after which the parameters were non-finite).
      learning_rate: the learning rate of the run.
    """

    def __init__(self, step: int, learning_rate: float, detail: str):
        self.step, self.learning_rate = step, learning_rate
        super().__init__(f"training diverged at step {step} with learning_rate={learning_rate!r}: {detail}; lower "
                         "the learning rate (--lr) or clip the gradients (--clip-norm).")


def _check_optimizer(optimizer: Any) -> None:
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"optimizer must be an optax GradientTransformation (see make_optimizer), got "
                        f"{type(optimizer).__name__}.")


def _check_loss_and_optimizer(loss_fn: Callable, optimizer: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}.")
    _check_optimizer(optimizer)


def make_optimizer(
    name: str = "sgd", learning_rate: float = 0.1, *, momentum: float = 0.9, clip_norm: Optional[float] = None
) -> optax.GradientTransformation:
    """An optax optimizer by name, validated before anything is built.

    Args:
      name: ``"sgd"``, ``"momentum"`` (heavy ball) or ``"adam"``.
      learning_rate: positive step size.
      momentum: in [0, 1) for ``"momentum"``.
      clip_norm: if given (positive), gradients are first clipped to this global norm (``clip_by_global_norm``).

    Raises:
      ValueError: an unknown name, or a setting out of range or not finite.
      TypeError: a setting that is not a real number (bool and strings are not numbers).
    """
    check_choice(name, "optimizer", OPTIMIZERS)
    check_number(learning_rate, "learning_rate", positive=True)
    check_number(momentum, "momentum", minimum=0.0, maximum=1.0, include_maximum=False)
    if clip_norm is not None:
        check_number(clip_norm, "clip_norm", positive=True)
    if name == "sgd":
        opt = optax.sgd(learning_rate)
    elif name == "momentum":
        opt = optax.sgd(learning_rate, momentum=momentum)
    else:
        opt = optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm is not None else opt


def init_state(params: PyTree, optimizer: optax.GradientTransformation) -> TrainState:
    """The train state at step 0: ``params``, the optimizer's initial state and the step counter.

    Raises:
      TypeError: ``optimizer`` is not an optax transformation.
      ValueError: ``params`` is empty or holds NaN/inf (concrete values only; traced ones are not inspected).
    """
    _check_optimizer(optimizer)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("params is an empty pytree; expected at least one array.")
    check_finite(params, ())
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted ``train_step(state, *batch) -> (state, {"loss", "grad_norm"})`` (loss before the update).

    Raises:
      TypeError: ``loss_fn`` is not callable or ``optimizer`` is not an optax transformation.
    """
    _check_loss_and_optimizer(loss_fn, optimizer)

    @jax.jit
    def train_step(state: TrainState, *batch):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, *batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return train_step


def train_scan(
    loss_fn: Callable, optimizer: optax.GradientTransformation, params: PyTree, *batch, steps: int,
    key: Optional[jax.Array] = None,
):
    """``steps`` full-batch steps of :func:`make_train_step` on ``loss_fn(params, *batch)`` in one ``lax.scan``.

    With ``key``, step ``t`` calls ``loss_fn(params, *batch, k_t)`` with its own key ``k_t`` (row ``t`` of
    ``jax.random.split(key, steps)``): a fresh dropout mask or corruption every step.

    Returns ``(params, losses)``: the final parameters and the loss before each step. Not jitted here, so callers
    can ``jax.vmap`` it over stacked parameters (one network per seed) and jit the result once.

    Raises:
      TypeError, ValueError: ``steps`` not a positive int, ``key`` not a single PRNG key, NaN/inf in concrete
        ``params`` or ``batch`` (inside a user's ``jit`` the values are traced and not inspected).
    """
    check_positive_int(steps, "steps")
    if key is not None:
        check_key(key)
    _check_loss_and_optimizer(loss_fn, optimizer)
    check_finite(params, batch)
    train_step = make_train_step(loss_fn, optimizer)
    keys = None if key is None else jax.random.split(key, steps)

    def body(state, k):
        state, metrics = train_step(state, *batch, *(() if k is None else (k,)))
        return state, metrics["loss"]

    state, losses = jax.lax.scan(body, init_state(params, optimizer), keys, length=steps)
    return state.params, losses


# The training engine: every driver of the library (fit_vae, fit_rbm, fit_gan, perceptron_fit, sgd_fit) is a plug-in
# ``step(state, batch, key) -> (state, metrics)`` run by one of the three functions below.


def fit_lbfgs(loss_fn: Callable, params: PyTree, *batch, steps: int):
    """``steps`` iterations of optax's L-BFGS (zoom line search) on ``loss_fn(params, *batch)`` in one ``lax.scan``;
    for small smooth problems that first-order methods converge on too slowly (a linear autoencoder's principal
    subspace). Returns ``(params, losses)``; not jitted here, like :func:`train_scan`."""
    from analysis._checks import check_positive_int

    check_positive_int(steps, "steps", "L-BFGS iterations")
    optimizer = optax.lbfgs()

    def value_fn(p):
        return loss_fn(p, *batch)

    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def step(carry, _):
        p, state = carry
        value, grads = value_and_grad(p, state=state)
        updates, state = optimizer.update(grads, state, p, value=value, grad=grads, value_fn=value_fn)
        return (optax.apply_updates(p, updates), state), value

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params, losses


def make_monitored_train_step(
    loss_fn: Callable, optimizer: optax.GradientTransformation, monitor, *, eigen: bool = True
) -> Callable:
    """A jitted ``step(state, monitor_state, *batch) -> (state, monitor_state, record)``.

    The gradient comes from the monitor's linearisation (no second gradient). With ``monitor.actual_change`` the
    loss after the update is evaluated on the same batch so that the eq. 8.10 prediction and the actual change
    compare like for like. ``eigen=False`` compiles the step without the Lanczos products (the top eigenvalue is
    then NaN in the record): ``fit`` uses it between ``monitor.eigen_every`` steps.

    Raises:
      TypeError: ``loss_fn`` is not callable or ``optimizer`` is not an optax transformation.
    """
    _check_loss_and_optimizer(loss_fn, optimizer)

    @jax.jit
    def monitored_step(state: TrainState, mstate, *batch):
        _, grads, record, mstate = monitor.measure(loss_fn, state.params, mstate, *batch, eigen=eigen)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if monitor.actual_change:
            record = monitor.complete(record, loss_fn(params, *batch))
        return TrainState(params, opt_state, state.step + 1), mstate, record

    return monitored_step


@functools.lru_cache(maxsize=16)
def _compiled_steps(loss_fn: Callable, optimizer: optax.GradientTransformation, monitor) -> tuple[Callable, dict]:
    """The jitted steps of :func:`fit`, shared by calls with the same loss, optimizer and monitor (a run trained in
    segments compiles once)."""
    monitored = {} if monitor is None else {
        e: make_monitored_train_step(loss_fn, optimizer, monitor, eigen=e) for e in (False, True)}
    return make_train_step(loss_fn, optimizer), monitored


@jax.jit
def _take(arrays, idx):
    return tuple(a[idx] for a in arrays)


class History(NamedTuple):
    """Per-step arrays of a :func:`fit` run (host numpy). ``monitor_*`` arrays hold monitored steps only;
    ``monitor_state`` is the monitor's carried state at the end (pass it back to continue a run)."""

    step: Any
    loss: Any
    grad_norm: Any
    monitor_step: Any
    monitor: dict
    evals: dict
    monitor_state: Any = None


def _check_fit_inputs(loss_fn, optimizer, data, steps, batch_size, eval_every) -> tuple[tuple, int]:
    """The checks of :func:`fit` that need no state; returns the data as a tuple of arrays and its length."""
    check_positive_int(steps, "steps")
    check_positive_int(eval_every, "eval_every", minimum=0)
    _check_loss_and_optimizer(loss_fn, optimizer)
    if not isinstance(data, (tuple, list)) or not data:
        raise TypeError(f"data must be a non-empty tuple of arrays like (x, y), got {type(data).__name__}.")
    data = tuple(jnp.asarray(a) for a in data)
    for i, a in enumerate(data):
        if a.ndim == 0:
            raise ValueError(f"data[{i}] is a scalar; expected arrays with a leading example axis.")
    check_same_length(data)
    n = int(data[0].shape[0])
    if n == 0:
        raise ValueError("the training data set is empty.")
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
        if batch_size > n:
            raise ValueError(f"batch_size={batch_size} is invalid; expected 1 <= batch_size <= {n} (the number of "
                             "examples), or None.")
    return data, n


def raise_if_diverged(history: History, params: PyTree, *, learning_rate: float, start_loss: Optional[float] = None,
                      max_growth: float = 1e6) -> None:
    """Stop a run whose loss became non-finite or exploded, or whose parameters became non-finite.

    The loss has exploded when it exceeds ``max_growth * max(|start_loss|, 1)``: a loss a million times its
    starting value is no longer training (with a learning rate of 1e30 the cross-entropy of the digits MLP jumps
    from 2.4 to 1e29 in one step and stays there, with tanh saturated and the Hessian exactly zero).

    Args:
      history: a :func:`fit` history (``history.loss[i]`` is the loss before step ``history.step[i]``).
      params: the parameters after the last step of ``history``.
      learning_rate: named in the error.
      start_loss: the loss at the start of the run (default: the first loss of ``history``).
      max_growth: how many times its starting value the loss may grow.

    Raises:
      TrainingDiverged: naming the first offending step.
    """
    check_number(max_growth, "max_growth", minimum=1.0)
    steps, losses = np.asarray(history.step), np.asarray(history.loss, dtype=np.float64)
    start = float(losses[0] if start_loss is None else start_loss)
    limit = max_growth * max(abs(start), 1.0)
    bad = np.flatnonzero(~np.isfinite(losses) | (np.abs(losses) > limit))
    if bad.size:
        loss = losses[bad[0]]
        detail = (f"the training loss became {loss}" if not np.isfinite(loss) else
                  f"the training loss grew to {loss:.3g}, more than {max_growth:.0e} times its value at the start "
                  f"({start:.3g})")
        raise TrainingDiverged(int(steps[bad[0]]), learning_rate, detail)
    if not bool(_all_finite(jax.tree_util.tree_leaves(params))):
        raise TrainingDiverged(int(steps[-1]), learning_rate, "the parameters became non-finite (NaN/inf) after "
                               "this step")


@jax.jit
def _all_finite(leaves: list) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def fit(
    loss_fn: Callable,
    params: PyTree,
    optimizer: optax.GradientTransformation,
    data: Sequence[jax.Array],
    *,
    steps: int,
    batch_size: Optional[int] = None,
    key: Optional[jax.Array] = None,
    monitor=None,
    evaluate: Optional[Callable[[PyTree], dict]] = None,
    eval_every: int = 0,
    progress: bool = False,
    state: Optional[TrainState] = None,
    monitor_state=None,
    final_eval: bool = True,
) -> tuple[TrainState, History]:
    """Train for ``steps`` steps on ``data`` (arrays with a common leading example axis).

    Everything is a function of the absolute step number, so a run split into segments (checkpoint, resume) is
    bit-identical to the same run in one piece: the minibatch of step ``t`` is batch ``t mod B`` of epoch
    ``t div B`` (``B`` batches per epoch), shuffled by ``fold_in(key, epoch)``; monitoring happens at multiples of
    ``monitor.every`` (the top eigenvalue at multiples of ``monitor.eigen_every``); evaluation at step 0, at
    multiples of ``eval_every`` and (``final_eval``) at the end.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar``.
      params: initial parameters (ignored when ``state`` is given).
      optimizer: an optax transformation (see :func:`make_optimizer`).
      data: the training arrays, e.g. ``(x, y)``.
      steps: number of update steps in this call.
      batch_size: minibatch size; None = full batch (the remainder of an epoch is dropped).
      key: PRNG key for shuffling and the monitor's start vector (default ``PRNGKey(0)``).
      monitor: an ``analysis.monitor.CurvatureMonitor``.
      evaluate: ``evaluate(params) -> {name: float}``.
      eval_every: evaluation interval in steps (0 = only at step 0 and at the end).
      progress: show a tqdm bar (True), or advance this tqdm-like object by one per step.
      state: continue from this state instead of ``init_state(params, optimizer)``.
      monitor_state: continue the monitor from this state (``history.monitor_state`` of the previous segment).
      final_eval: evaluate after the last step of this call.

    Returns:
      ``(state, history)``; host arrays are fetched once at the end (no per-step host synchronisation except
      evaluation).

    Raises:
      TypeError, ValueError: at the boundary, before anything is compiled: ``steps``, ``batch_size`` or
        ``eval_every`` not an int in range, data arrays of different lengths or empty, ``key`` not a single PRNG
        key, NaN/inf in the data or the initial parameters. Divergence during training is not an error here; see
        :func:`raise_if_diverged`.
    """
    from tqdm.auto import tqdm

    from jaxdl.data import minibatches

    data, n = _check_fit_inputs(loss_fn, optimizer, data, steps, batch_size, eval_every)
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    if state is None:
        state = init_state(params, optimizer)
    elif not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState (see init_state), got {type(state).__name__}.")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be callable or None, got {type(evaluate).__name__}.")
    check_finite(state.params, data)
    plain, monitored = _compiled_steps(loss_fn, optimizer, monitor)
    if monitor is not None:
        mstate = monitor.init(state.params, jax.random.fold_in(key, 1)) if monitor_state is None else monitor_state
    else:
        mstate = monitor_state
    per_epoch = None if batch_size is None else n // batch_size

    losses, norms, mon_steps, records = [], [], [], []
    evals: dict[str, list] = {"step": []}

    def run_eval(step):
        evals["step"].append(step)
        for name, value in evaluate(state.params).items():
            evals.setdefault(name, []).append(float(value))

    start = int(state.step)
    if evaluate is not None and start == 0:
        run_eval(0)
    order, order_epoch = None, -1
    bar = progress if hasattr(progress, "update") else tqdm(total=steps, desc="training", disable=not progress)
    for step in range(start, start + steps):
        if batch_size is None:
            batch = data
        else:
            epoch, pos = divmod(step, per_epoch)
            if epoch != order_epoch:
                order, order_epoch = minibatches(jax.random.fold_in(key, epoch), n, batch_size), epoch
            batch = _take(data, order[pos])
        if monitor is not None and monitor.monitors(step):
            state, mstate, rec = monitored[monitor.measures_eigenvalue(step)](state, mstate, *batch)
            mon_steps.append(step)
            records.append(rec)
            losses.append(rec.loss)
            norms.append(jnp.sqrt(rec.gTg))
        else:
            state, metrics = plain(state, *batch)
            losses.append(metrics["loss"])
            norms.append(metrics["grad_norm"])
        done = step + 1
        bar.update(1)
        if evaluate is not None and ((eval_every and done % eval_every == 0) or (final_eval and done == start + steps)):
            if not evals["step"] or evals["step"][-1] != done:
                run_eval(done)
    if bar is not progress:
        bar.close()
    fetched = jax.device_get((losses, norms, records))
    mon = {f: np.array([getattr(r, f) for r in fetched[2]]) for f in (records[0]._fields if records else ())}
    history = History(np.arange(start, start + steps), np.array(fetched[0]), np.array(fetched[1]),
                      np.array(mon_steps, dtype=np.int64), mon, {k: np.array(v) for k, v in evals.items()}, mstate)
    return state, history
