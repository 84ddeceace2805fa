"""Critical points: finding them by minimising the squared gradient norm, their Hessian index, and escape directions.

Deep Learning book sec. 8.2.3: in high dimension most critical points of high cost are saddle points, and the
fraction of negative Hessian eigenvalues (the *index*) grows with the cost (Dauphin et al. 2014, Pennington & Bahri
2017). Gradient descent escapes a saddle along the eigenvector of its most negative eigenvalue; Newton's method,
which solves ``grad = 0``, is attracted to critical points of every index.

A critical point is found by minimising ``1/2 ||g(theta)||^2``, whose gradient is ``H g`` (one Hessian-vector
product). Two minimisers:

* ``"levenberg_marquardt"``: Gauss-Newton on the residual ``g(theta)`` with Jacobian ``H``; the damped step
  ``-(H^2 + mu I)^{-1} H g`` uses the exact (dense) Hessian, so it converges quadratically to critical points of any
  index of small models (a few thousand parameters).
* ``"adam"``: Adam on ``1/2 ||g||^2`` with matrix-free products ``H g``; any model size, linear convergence.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from analysis._checks import (check_choice, check_finite, check_inputs, check_key, check_number, check_params,
                              check_positive_int)
from analysis._objective import BlockSpec, check_block
from analysis.condition import condition_number
from analysis.hessian import dense_hessian, hessian_spectrum, num_params
from analysis.lanczos import hessian_eigs

PyTree = Any
METHODS = ("levenberg_marquardt", "adam")
MAX_DENSE_PARAMS = 10_000  # a (n, n) float32 Hessian of 10k parameters is 400 MB, plus its eigendecomposition


class CriticalPoint(NamedTuple):
    """Result of :func:`find_critical_point` (leaves carry a leading axis from :func:`find_critical_points`).

    Attributes:
      params: the point reached, params-shaped.
      loss: the loss there.
      grad_norm: ``||g||`` there.
      grad_norm_history: ``(steps + 1,)`` values of ``||g||`` at the start and after each step.
      converged: ``grad_norm <= gtol``.
    """

    params: PyTree
    loss: jax.Array
    grad_norm: jax.Array
    grad_norm_history: jax.Array
    converged: jax.Array


def _search(loss_fn, params, batch, method, steps, setting):
    """Minimise ``1/2 ||g||^2`` from ``params``: both methods share this loop and differ in what they measure at a
    point and how they step from it.

    Each step proposes a point, measures its gradient and curvature (the dense Hessian's eigendecomposition for
    Levenberg-Marquardt, the product ``H g``, which is the gradient of ``1/2 ||g||^2``, for Adam), and moves there.
    Levenberg-Marquardt moves only when ``||g||`` falls and adapts its damping to the outcome; Adam always moves.
    Returns ``(params, loss, ||g||, history of ||g||)``.
    """
    theta, unravel = ravel_pytree(params)

    def loss(th):
        return loss_fn(unravel(th), *batch)

    grad = jax.grad(loss)
    if method == "levenberg_marquardt":
        tiny = jnp.finfo(theta.dtype).tiny

        def measure(th):
            H = dense_hessian(loss_fn, unravel(th), *batch)  # traced: the boundary checks see only shapes
            return grad(th), jnp.linalg.eigh(0.5 * (H + H.T))

        def propose(th, g, eig, rho):
            lam, U = eig
            # Gauss-Newton on the residual g with Jacobian H: the damped step -(H^2 + mu I)^{-1} H g, with mu
            # relative to the largest curvature squared (rho -> 0 is Newton, rho large a short gradient step on
            # 1/2 ||g||^2). After a step that lowers ||g|| the damping falls, after a rejected one it rises.
            mu = rho * jnp.maximum(jnp.max(lam**2), tiny)
            step = -U @ (lam * (U.T @ g) / (lam**2 + mu))
            return th + step, jnp.maximum(rho / 3, 1e-15), jnp.minimum(rho * 4, 1e15)

        state0, monotone = jnp.asarray(setting, theta.dtype), True
    else:
        opt = optax.adam(setting)

        def measure(th):
            g, lin = jax.linearize(grad, th)
            return g, lin(g)  # gradient of 1/2 ||g||^2 is H^T g = H g

        def propose(th, g, hg, state):
            updates, state = opt.update(hg, state, th)
            return optax.apply_updates(th, updates), state, state

        state0, monotone = opt.init(theta), False

    def body(carry, _):
        # Measure the candidate, keep it or the current point, then propose the next candidate from the one kept.
        # The first candidate is the start (always kept): the loop then traces ``measure`` once, which matters
        # when it holds a dense Hessian.
        candidate, state_moved, state_kept, th, g, curvature, gsq = carry
        g_new, curvature_new = measure(candidate)
        gsq_new = jnp.vdot(g_new, g_new)
        move = jnp.isfinite(gsq_new) & (gsq_new < gsq) if monotone else jnp.asarray(True)
        pick = functools.partial(jax.tree_util.tree_map, lambda new, old: jnp.where(move, new, old))
        th, g, curvature, gsq, state = pick((candidate, g_new, curvature_new, gsq_new, state_moved),
                                            (th, g, curvature, gsq, state_kept))
        return (*propose(th, g, curvature, state), th, g, curvature, gsq), jnp.sqrt(gsq)

    # Placeholders of the right shapes for the current point until the start has been measured.
    g0, curvature0 = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(measure, theta))
    carry = (theta, state0, state0, theta, g0, curvature0, jnp.asarray(jnp.inf, theta.dtype))
    (*_, th, _, _, gsq), norms = jax.lax.scan(body, carry, None, length=steps + 1)
    return unravel(th), loss(th), jnp.sqrt(gsq), norms


@functools.partial(jax.jit, static_argnames=("loss_fn", "method", "steps", "batched"))
def _find(loss_fn, params, batch, method, steps, setting, gtol, batched):
    def one(p):
        out = _search(loss_fn, p, batch, method, steps, setting)
        return CriticalPoint(*out, converged=out[2] <= gtol)

    return jax.vmap(one)(params) if batched else one(params)


def _positive(value: Any, name: str, what: str) -> float:
    """A positive finite Python or numpy number (bool refused), named with its value otherwise."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value) or value <= 0):
        raise ValueError(f"{name}={value!r} is invalid; expected {what}.")
    return value


def _gtol(gtol: Optional[float], params: PyTree) -> float:
    """The gradient-norm tolerance of a critical point: given (positive, finite) or ``10 sqrt(eps)`` of the dtype."""
    if gtol is None:
        return 10.0 * float(np.sqrt(jnp.finfo(jnp.result_type(*jax.tree_util.tree_leaves(params))).eps))
    return float(_positive(gtol, "gtol", "a positive finite gradient-norm tolerance"))


def _validate(loss_fn, params, batch, method, steps, learning_rate, damping, gtol):
    """Boundary checks of both finders (``params`` is one start); returns ``(method, steps, setting, gtol)``."""
    check_inputs(loss_fn, params, batch, microbatched=False)
    method = check_choice(method, "method", METHODS)
    steps = check_positive_int(steps, "steps")
    for name, value in (("learning_rate", learning_rate), ("damping", damping)):
        _positive(value, name, "a positive finite number")
    if method == "levenberg_marquardt" and num_params(params) > MAX_DENSE_PARAMS:
        raise ValueError(f"{num_params(params)} parameters are too many for method='levenberg_marquardt' (dense "
                         f"Hessian, at most {MAX_DENSE_PARAMS}); use method='adam'.")
    return method, steps, (damping if method == "levenberg_marquardt" else learning_rate), _gtol(gtol, params)


def find_critical_point(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    method: str = "levenberg_marquardt",
    steps: int = 100,
    learning_rate: float = 1e-3,
    damping: float = 1e-3,
    gtol: Optional[float] = None,
) -> CriticalPoint:
    """Minimise ``1/2 ||grad loss||^2`` from ``params`` to reach a nearby critical point of any index.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar``.
      params: the start, any pytree of floating-point arrays.
      *batch: data arrays passed to ``loss_fn``.
      method: ``"levenberg_marquardt"`` (dense Hessian per step; at most ``MAX_DENSE_PARAMS`` parameters) or
        ``"adam"`` (one Hessian-vector product per step, any size).
      steps: iterations, all inside one compiled ``lax.scan``.
      learning_rate: Adam's step size (``method="adam"``).
      damping: initial Levenberg-Marquardt damping relative to ``max lambda^2``; adapted per step (divided by 3
        after a step that lowers ``||g||``, multiplied by 4 and the step rejected otherwise).
      gtol: ``converged`` means ``||g|| <= gtol``; default ``10 sqrt(eps)`` of the parameter dtype
        (3.5e-3 in float32, 1.5e-7 in float64).

    Returns:
      :class:`CriticalPoint`. Check ``converged``: a local minimum of ``||g||^2`` with ``g != 0`` is not critical.

    Raises:
      ValueError / TypeError: unknown method, ``steps < 1``, non-positive step size, damping or tolerance, too many
        parameters for the dense method, invalid inputs.

    Example:
      >>> saddle = lambda p: p[0] ** 2 - p[1] ** 2
      >>> cp = find_critical_point(saddle, jnp.array([0.3, -0.2]), steps=5)
      >>> bool(jnp.max(jnp.abs(cp.params)) < 1e-12), bool(cp.converged)
      (True, True)
    """
    method, steps, setting, gtol = _validate(loss_fn, params, batch, method, steps, learning_rate, damping, gtol)
    return _find(loss_fn, params, batch, method, steps, setting, gtol, False)


def find_critical_points(
    loss_fn: Callable,
    starts: PyTree,
    *batch: Any,
    method: str = "levenberg_marquardt",
    steps: int = 100,
    learning_rate: float = 1e-3,
    damping: float = 1e-3,
    gtol: Optional[float] = None,
) -> CriticalPoint:
    """:func:`find_critical_point` from many starts at once (``vmap``; one compilation).

    Args:
      starts: params pytree whose leaves carry a leading axis of starts.
      Others: as in :func:`find_critical_point`.

    Returns:
      :class:`CriticalPoint` whose fields carry the leading axis of starts.
    """
    leaves = jax.tree_util.tree_leaves(starts)
    if not leaves or any(jnp.ndim(x) == 0 for x in leaves):
        raise ValueError("starts must be a non-empty params pytree whose leaves carry a leading axis of starts.")
    counts = {jnp.shape(x)[0] for x in leaves}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"starts' leaves disagree on the number of starts or have none: {sorted(counts)}.")
    check_params(starts)
    check_finite({}, (), extra={"starts": starts})  # every start, not only the first that _validate sees
    first = jax.tree_util.tree_map(lambda x: x[0], starts)
    method, steps, setting, gtol = _validate(loss_fn, first, batch, method, steps, learning_rate, damping, gtol)
    return _find(loss_fn, starts, batch, method, steps, setting, gtol, True)


class CriticalPointInfo(NamedTuple):
    """Second-order classification of a point from its exact Hessian spectrum.

    Attributes:
      kind: ``"not critical"`` (``||g|| > gtol``), ``"minimum"`` (no negative eigenvalue: the second-order
        necessary condition), ``"maximum"`` (no positive one), ``"saddle"`` (both signs) or ``"flat"`` (every
        eigenvalue within the null tolerance).
      strict: no eigenvalue within the null tolerance (the second-order test is conclusive).
      loss, grad_norm: at the point.
      index: fraction of negative eigenvalues (Dauphin et al. 2014).
      num_negative, num_near_zero, num_positive: inertia under ``null_tolerance``.
      min_eigenvalue, max_eigenvalue: extremes of the spectrum.
      null_tolerance: ``|lambda| <= null_tolerance`` counts as zero (see :func:`analysis.condition_number`).
      eigenvalues: the full ascending spectrum (numpy).
    """

    kind: str
    strict: bool
    loss: float
    grad_norm: float
    index: float
    num_negative: int
    num_near_zero: int
    num_positive: int
    min_eigenvalue: float
    max_eigenvalue: float
    null_tolerance: float
    eigenvalues: np.ndarray


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _value_and_grad_norm(loss_fn, params, batch):
    loss, g = jax.value_and_grad(loss_fn)(params, *batch)
    return loss, optax.tree.norm(g)


def _null_tolerances(rtol: Optional[float], atol: Optional[float]) -> tuple[Optional[float], Optional[float]]:
    """The eigenvalue null tolerances: ``rtol`` in ``[0, 1)``, ``atol >= 0``, both finite (or None)."""
    if rtol is not None:
        rtol = check_number(rtol, "rtol", minimum=0, maximum=1, include_maximum=False)
    if atol is not None:
        atol = check_number(atol, "atol", minimum=0)
    return rtol, atol


def _inertia(lam: np.ndarray, rtol: Optional[float], atol: Optional[float]) -> tuple[int, int, int, float]:
    rtol, atol = _null_tolerances(rtol, atol)
    absmax = float(np.max(np.abs(lam)))
    if absmax == 0.0 or (atol is not None and atol >= absmax):
        return 0, lam.size, 0, float(atol or 0.0)
    info = condition_number(lam, rtol=rtol, atol=atol)
    return info.num_negative, info.num_near_zero, info.num_positive, info.null_tolerance


def classify_critical_point(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    gtol: Optional[float] = None,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    block: BlockSpec = None,
) -> CriticalPointInfo:
    """Gradient norm, exact Hessian inertia and index at ``params``, and the kind of critical point.

    The spectrum is :func:`analysis.hessian_spectrum` (dense; small models), the null tolerance that of
    :func:`analysis.condition_number` (default ``n eps max |lambda|``).

    Args:
      loss_fn, params, *batch: as in :func:`find_critical_point`.
      gtol: gradient-norm tolerance of a critical point (default as in :func:`find_critical_point`).
      rtol, atol: null tolerance of the eigenvalues, relative to ``max |lambda|`` or absolute.
      block: restrict the Hessian to a block of parameters (see :func:`analysis.layer_blocks`).

    Returns:
      :class:`CriticalPointInfo`.

    Raises:
      ValueError / TypeError: a non-positive or non-finite ``gtol``, ``rtol`` outside ``[0, 1)``, a negative
        ``atol``, a ``block`` that selects nothing, invalid inputs (see :func:`analysis.hvp`).

    Example:
      >>> classify_critical_point(lambda p: p[0] ** 2 - p[1] ** 2 + p[2] ** 2, jnp.zeros(3)).kind
      'saddle'
    """
    check_inputs(loss_fn, params, batch, microbatched=False)
    gtol = _gtol(gtol, params)
    block = check_block(params, block)
    rtol, atol = _null_tolerances(rtol, atol)  # refused before the Hessian is computed
    lam = np.asarray(hessian_spectrum(loss_fn, params, *batch, block=block))
    if not np.all(np.isfinite(lam)):
        raise ValueError(f"the Hessian has {int(np.sum(~np.isfinite(lam)))} NaN/inf eigenvalue(s) at params.")
    neg, zero, pos, tol = _inertia(lam, rtol, atol)
    loss, gnorm = (float(v) for v in _value_and_grad_norm(loss_fn, params, batch))
    if gnorm > gtol:
        kind = "not critical"
    elif neg == 0 and pos == 0:
        kind = "flat"
    elif neg == 0:
        kind = "minimum"
    elif pos == 0:
        kind = "maximum"
    else:
        kind = "saddle"
    return CriticalPointInfo(kind, zero == 0, loss, gnorm, neg / lam.size, neg, zero, pos, float(lam[0]),
                             float(lam[-1]), tol, lam)


def hessian_index(
    loss_fn: Callable, params: PyTree, *batch: Any, rtol: Optional[float] = None, atol: Optional[float] = None,
    block: BlockSpec = None,
) -> float:
    """Fraction of negative eigenvalues of the exact Hessian (the index of Dauphin et al. 2014).

    Example:
      >>> hessian_index(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2))
      0.5
    """
    check_inputs(loss_fn, params, batch, microbatched=False)
    block = check_block(params, block)
    rtol, atol = _null_tolerances(rtol, atol)
    lam = np.asarray(hessian_spectrum(loss_fn, params, *batch, block=block))
    if not np.all(np.isfinite(lam)):
        raise ValueError(f"the Hessian has {int(np.sum(~np.isfinite(lam)))} NaN/inf eigenvalue(s) at params.")
    return _inertia(lam, rtol, atol)[0] / lam.size


class EigenDirection(NamedTuple):
    """One Hessian eigenpair. ``direction`` is a unit params-shaped pytree; ``residual = ||H v - lambda v||``."""

    eigenvalue: jax.Array
    direction: PyTree
    residual: jax.Array


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _orient(loss_fn, params, vector, batch):
    # Eigenvectors have no sign; choose the one along which the loss falls to first order (g . v <= 0), and at an
    # exact critical point the one whose largest-magnitude entry is positive, so the result is reproducible.
    g, _ = ravel_pytree(jax.grad(loss_fn)(params, *batch))
    v, unravel = ravel_pytree(vector)
    slope = jnp.vdot(g, v)
    scale = jnp.finfo(v.dtype).eps * 100 * jnp.linalg.norm(g)
    sign = jnp.where(jnp.abs(slope) > scale, -jnp.sign(slope), jnp.sign(v[jnp.argmax(jnp.abs(v))]))
    return unravel(jnp.where(sign == 0, 1, sign) * v)


@functools.partial(jax.jit, static_argnames=("loss_fn", "which", "block"))
def _dense_direction(loss_fn, params, batch, which, block):
    H = dense_hessian(loss_fn, params, *batch, block=block)
    lam, U = jnp.linalg.eigh(0.5 * (H + H.T))
    i = 0 if which == "smallest" else lam.shape[0] - 1
    v = U[:, i]
    residual = jnp.linalg.norm(H @ v - lam[i] * v)
    return lam[i], v, residual


def hessian_direction(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    which: str = "largest",
    method: str = "lanczos",
    key: Optional[jax.Array] = None,
    num_matvecs: Optional[int] = None,
    block: BlockSpec = None,
) -> EigenDirection:
    """The eigenvector of the largest or smallest (most negative) Hessian eigenvalue, as a params-shaped pytree.

    Its sign is chosen so that the loss decreases along it to first order (``g . v <= 0``); at an exact critical
    point, so that its largest-magnitude entry is positive. A repeated eigenvalue has a whole eigenspace; one unit
    vector of it is returned.

    Args:
      loss_fn, params, *batch: as in :func:`find_critical_point`.
      which: ``"largest"`` or ``"smallest"``.
      method: ``"lanczos"`` (:func:`analysis.hessian_eigs`, matrix-free) or ``"dense"`` (exact ``eigh``).
      key, num_matvecs: Lanczos start vector and Krylov dimension (see :func:`analysis.hessian_eigs`).
      block: restrict to a block of parameters; the direction is zero elsewhere.

    Returns:
      :class:`EigenDirection`.

    Raises:
      ValueError / TypeError: an unknown ``which`` or ``method``, a bad ``key`` or ``num_matvecs``, a ``block`` that
        selects nothing, too many parameters for ``method="dense"``, invalid inputs (see :func:`analysis.hvp`).

    Example:
      >>> d = hessian_direction(lambda p: p[0] ** 2 - 3 * p[1] ** 2, jnp.zeros(2), which="smallest", method="dense")
      >>> float(d.eigenvalue), d.direction
      (-6.0, Array([0., 1.], dtype=float32))
    """
    which = check_choice(which, "which", ("largest", "smallest"))
    method = check_choice(method, "method", ("lanczos", "dense"))
    if method == "lanczos":
        eigs = hessian_eigs(loss_fn, params, *batch, k=1, which=which, key=key, num_matvecs=num_matvecs,
                            return_vectors=True, block=block)
        value, residual = eigs.eigenvalues[0], eigs.residuals[0]
        vector = jax.tree_util.tree_map(lambda leaf: leaf[0], eigs.eigenvectors)
    else:
        check_inputs(loss_fn, params, batch, microbatched=False)
        block = check_block(params, block)
        if key is not None:
            check_key(key)  # unused by the dense method, but a bad key is still a mistake worth naming
        if num_matvecs is not None:
            check_positive_int(num_matvecs, "num_matvecs")
        n = num_params(params, block)
        if n > MAX_DENSE_PARAMS:
            raise ValueError(f"{n} parameters are too many for method='dense' (at most {MAX_DENSE_PARAMS}); use "
                             "method='lanczos'.")
        value, flat, residual = _dense_direction(loss_fn, params, batch, which, block)
        vector = _unravel_block(params, block, flat)
    return EigenDirection(value, _orient(loss_fn, params, vector, batch), residual)


def _unravel_block(params: PyTree, block: BlockSpec, flat: jax.Array) -> PyTree:
    """Block vector -> params-shaped pytree (zeros outside the block), in ``analysis.dense_hessian``'s order."""
    from analysis._objective import block_mask

    leaves, treedef = jax.tree_util.tree_flatten(params)
    mask = block_mask(params, block)
    _, unravel = ravel_pytree([leaf for leaf, m in zip(leaves, mask) if m])
    chosen = iter(unravel(flat))
    return jax.tree_util.tree_unflatten(
        treedef, [next(chosen) if m else jnp.zeros_like(leaf) for leaf, m in zip(leaves, mask)])


def escape_direction(
    loss_fn: Callable,
    params: PyTree,
    *batch: Any,
    method: str = "lanczos",
    key: Optional[jax.Array] = None,
    num_matvecs: Optional[int] = None,
    block: BlockSpec = None,
) -> EigenDirection:
    """The direction in which gradient descent leaves a saddle: the eigenvector of the most negative eigenvalue.

    Near a saddle ``theta*`` gradient descent multiplies the component of ``theta - theta*`` along an eigenvector
    of eigenvalue ``lambda`` by ``1 - eps lambda`` per step, so the component along the most negative eigenvalue
    grows fastest and dominates the escape (Deep Learning sec. 8.2.3). If ``eigenvalue >= 0`` there is no
    descent direction of negative curvature (the point is a local minimum to second order).

    Args and returns: as in :func:`hessian_direction` with ``which="smallest"``.

    Example:
      >>> escape_direction(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2), method="dense").eigenvalue
      Array(-2., dtype=float32)
    """
    return hessian_direction(loss_fn, params, *batch, which="smallest", method=method, key=key,
                             num_matvecs=num_matvecs, block=block)

