"""Dynamics of recurrent maps ``h_t = f(params, h_{t-1}, x_t)``: state-to-state Jacobians, spectral radius, singular
values, products over time and echo-state checks (Deep Learning sec. 8.2.5, 10.7, 10.8).

Works on any pure ``step_fn(params, h, x) -> h`` and any params pytree; the parameters and the inputs enter compiled
code as arguments. The gradient of a loss at step ``T`` with respect to ``h_t`` is multiplied by the product
``dh_T/dh_t = J_T J_{T-1} ... J_{t+1}``: its norm against ``T - t`` is what vanishes or explodes (sec. 10.7).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from analysis._checks import check_choice, check_finite, check_key, check_number, check_positive_int, error_summary

PyTree = Any
METHODS = ("auto", "dense", "arnoldi")
DENSE_LIMIT = 512  # "auto" computes all eigenvalues up to this size and uses restarted Arnoldi above it.


def _check_sequence(xs: jax.Array, name: str = "xs") -> None:
    shape = jnp.shape(xs)
    if len(shape) != 2:
        raise ValueError(f"{name} has shape {shape}; expected rank 2, (time, features).")
    if shape[0] == 0:
        raise ValueError(f"{name} has shape {shape}: the sequence is empty; expected at least one time step.")


def _check_state(h0: jax.Array, name: str = "h0") -> None:
    if jnp.ndim(h0) != 1 or jnp.shape(h0)[0] == 0:
        raise ValueError(f"{name} has shape {jnp.shape(h0)}; expected a non-empty state vector (n,).")
    if not jnp.issubdtype(jnp.result_type(h0), jnp.floating):
        raise TypeError(f"{name} has dtype {jnp.result_type(h0)}; expected a floating-point state (Jacobians are "
                        "taken with respect to it).")


def _check_matrices(a: Any, name: str, *, ndim: Optional[int] = 2) -> jax.Array:
    """A non-empty, finite square matrix (``ndim=2``), stack ``(T, n, n)`` (3) or ``(..., n, n)`` (None) of real
    or complex numbers."""
    a = jnp.asarray(a)
    if (a.ndim < 2 or (ndim is not None and a.ndim != ndim) or a.shape[-1] != a.shape[-2] or 0 in a.shape):
        expected = {2: "square matrix (n, n)", 3: "stack (T, n, n) of square matrices"}.get(
            ndim, "stack (..., n, n) of square matrices")
        raise ValueError(f"{name} has shape {a.shape}; expected a non-empty {expected}.")
    if not (jnp.issubdtype(a.dtype, jnp.inexact) or jnp.issubdtype(a.dtype, jnp.integer)):
        raise TypeError(f"{name} has dtype {a.dtype}; expected real or complex numbers.")
    check_finite({}, (), extra={name: a})
    return a


def _check_step(step_fn: Callable, params: PyTree, states: dict, xs: jax.Array) -> None:
    """``step_fn(params, h, x)`` maps a state to one of the same shape and dtype; no NaN/inf in any input."""
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable as step_fn(params, h, x), got {type(step_fn).__name__}.")
    check_finite({}, (), extra={"params": params, **states, "xs": xs})
    name, h = next(iter(states.items()))
    try:
        out = jax.eval_shape(step_fn, params, h, xs[0])
    except Exception as err:  # what the user's step raised on these shapes; the original stays chained
        raise ValueError(f"step_fn(params, h, x) failed for {name} of shape {jnp.shape(h)} and one input x of shape "
                         f"{jnp.shape(xs)[1:]} (xs has shape {jnp.shape(xs)}): {error_summary(err)}") from err
    if getattr(out, "shape", None) != jnp.shape(h) or getattr(out, "dtype", None) != jnp.result_type(h):
        raise ValueError(f"step_fn(params, h, x) must return the next state with the shape and dtype of {name}, "
                         f"{jnp.shape(h)} {jnp.result_type(h)}; it returned "
                         f"{getattr(out, 'shape', type(out).__name__)} {getattr(out, 'dtype', '')}.")


@functools.partial(jax.jit, static_argnames="step_fn")
def _state_jacobians(step_fn, params, h0, xs):
    def body(h, x):
        jac = jax.jacfwd(step_fn, argnums=1)(params, h, x)
        h = step_fn(params, h, x)
        return h, (h, jac)

    _, (states, jacs) = jax.lax.scan(body, h0, xs)
    return states, jacs


def state_jacobians(step_fn: Callable, params: PyTree, h0: jax.Array, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """States ``h_1..h_T`` and Jacobians ``J_t = dh_t / dh_{t-1}`` along the trajectory from ``h0``.

    Args:
      step_fn: ``step_fn(params, h, x) -> h``, pure (hashable: it is a static argument of ``jit``).
      params: any pytree.
      h0: initial state ``(n,)``.
      xs: inputs ``(T, d)``.

    Returns:
      ``(states (T, n), jacobians (T, n, n))`` with ``jacobians[t-1] = dh_t / dh_{t-1}`` (forward mode, ``n`` JVPs).

    Raises:
      ValueError / TypeError: ``xs`` not of rank 2 or empty, ``h0`` not a floating-point vector, NaN/inf in
        ``params``, ``h0`` or ``xs``, a ``step_fn`` that fails on these shapes or does not return a state like ``h0``.

    Example:
      >>> step = lambda W, h, x: W @ h + x
      >>> _, J = state_jacobians(step, 0.5 * jnp.eye(2), jnp.zeros(2), jnp.ones((3, 2)))
      >>> J.shape
      (3, 2, 2)
    """
    _check_sequence(xs)
    _check_state(h0)
    _check_step(step_fn, params, {"h0": h0}, xs)
    return _state_jacobians(step_fn, params, h0, xs)


class SpectralRadius(NamedTuple):
    """``value = |eigenvalue|``; ``residual = ||A v - eigenvalue v||`` for the unit eigenvector estimate (0 for dense).

    ``converged`` is False when restarted Arnoldi hit ``max_restarts`` with ``residual > tol * value``.
    """

    value: jax.Array
    eigenvalue: jax.Array
    residual: jax.Array
    converged: jax.Array
    restarts: jax.Array
    method: str


def _dense_matvec(v, mat):
    return mat @ v


def _complex_dtype(dtype):
    return jnp.complex128 if jnp.dtype(dtype) == jnp.float64 else jnp.complex64


def _arnoldi_fill(matvec, V, H, start, m):
    """Extend a Krylov decomposition ``A V[:j] = V[:j+1] H[:j+1, :j]`` from column ``start`` to ``m``.

    Full reorthogonalisation by classical Gram-Schmidt applied twice ("twice is enough", Giraud et al. 2005).
    """
    rows = jnp.arange(V.shape[0])

    def body(j, carry):
        V, H = carry
        w = matvec(V[j])
        keep = (rows <= j).astype(V.dtype)
        for _ in range(2):
            c = (V.conj() @ w) * keep
            w = w - c @ V
            H = H.at[:, j].add(c)
        beta = jnp.linalg.norm(w)
        # An invariant subspace (beta = 0) leaves a zero basis vector; the Ritz values found so far are exact.
        safe = jnp.where(beta > 0, beta, 1.0)
        H = H.at[j + 1, j].set(beta.astype(H.dtype))
        return V.at[j + 1].set(w / safe), H

    return jax.lax.fori_loop(start, m, body, (V, H))


@functools.partial(jax.jit, static_argnames=("matvec", "n", "m", "k", "max_restarts"))
def _arnoldi_radius(matvec, args, v0, tol, n, m, k, max_restarts):
    cdtype = v0.dtype
    mv = lambda v: matvec(v, *args).astype(cdtype)  # noqa: E731
    V = jnp.zeros((m + 1, n), cdtype).at[0].set(v0 / jnp.linalg.norm(v0))
    H = jnp.zeros((m + 1, m), cdtype)

    def ritz(V, H):
        theta, Y = jnp.linalg.eig(H[:m, :m])
        order = jnp.argsort(-jnp.abs(theta))
        theta, Y = theta[order], Y[:, order]
        Y = Y / jnp.linalg.norm(Y, axis=0, keepdims=True)
        residuals = jnp.abs(H[m, m - 1]) * jnp.abs(Y[m - 1])
        return theta, Y, residuals

    def cycle(state):
        V, H, start, it, _, _, _ = state
        V, H = _arnoldi_fill(mv, V, H, start, m)
        theta, Y, residuals = ritz(V, H)
        # Thick restart (Stewart's Krylov-Schur idea with an orthonormal, not triangular, basis): keep the span of
        # the k largest Ritz vectors, which H maps into itself, and continue the decomposition from there.
        U, _ = jnp.linalg.qr(Y[:, :k])
        V_new = jnp.zeros_like(V).at[:k].set(U.T @ V[:m]).at[k].set(V[m])
        H_new = jnp.zeros_like(H).at[:k, :k].set(U.conj().T @ H[:m, :m] @ U).at[k, :k].set(H[m, m - 1] * U[m - 1])
        return V_new, H_new, k, it + 1, theta[0], residuals[0], (V, H)

    def not_done(state):
        _, _, _, it, theta, res, _ = state
        return (it < max_restarts) & ((it == 0) | (res > tol * jnp.abs(theta)))

    init = (V, H, 0, 0, jnp.zeros((), cdtype), jnp.asarray(jnp.inf, jnp.abs(v0).dtype), (V, H))
    _, _, _, it, theta, res, _ = jax.lax.while_loop(not_done, cycle, init)
    return theta, res, it


def spectral_radius(
    a: Union[jax.Array, Callable],
    *args: Any,
    size: Optional[int] = None,
    method: str = "auto",
    num_matvecs: Optional[int] = None,
    num_wanted: Optional[int] = None,
    max_restarts: int = 100,
    tol: Optional[float] = None,
    key: Optional[jax.Array] = None,
) -> SpectralRadius:
    """Largest eigenvalue modulus ``max |lambda_i|`` of a square (generally non-symmetric) matrix.

    ``"dense"`` computes every eigenvalue (``jnp.linalg.eigvals``, ``O(n^3)``). ``"arnoldi"`` needs only products
    ``A v``: restarted Arnoldi in complex arithmetic with full reorthogonalisation, keeping the ``num_wanted`` largest
    Ritz vectors at each restart, until the top Ritz pair's residual is below ``tol * |lambda|``. ``"auto"`` is dense
    up to ``n = 512``. Both agree to about 1e-6 relative on random reservoirs and RNN Jacobians (tests/test_dynamics.py).

    Args:
      a: an ``(n, n)`` array, or ``matvec(v, *args) -> A v`` (then ``size=n`` is required and ``method`` may not be
        dense). Pass arrays through ``args``: they enter compiled code as arguments.
      size: ``n`` for a matvec.
      method: ``"auto"``, ``"dense"`` or ``"arnoldi"``.
      num_matvecs: Krylov dimension per cycle (default ``min(n, 64)``).
      num_wanted: Ritz vectors kept per restart (default ``num_matvecs // 3``).
      max_restarts: cycles at most.
      tol: relative residual target (default ``1e-10`` in float64, ``1e-5`` in float32).
      key: PRNG key of the start vector (default ``PRNGKey(0)``).

    Returns:
      :class:`SpectralRadius`.

    Raises:
      ValueError / TypeError: a non-square or non-finite array, a matvec without ``size`` or that does not map
        ``(n,)`` vectors to ``(n,)`` vectors, NaN/inf in ``args``, bad sizes, a non-positive ``tol``, a ``key`` that
        is not one PRNG key, or an unknown method.

    Example:
      >>> float(spectral_radius(jnp.array([[0.0, -2.0], [2.0, 0.0]])).value)
      2.0
    """
    method = check_choice(method, "method", METHODS)
    # Checked even where the dense method leaves them unused: a bad setting is a mistake worth naming at once.
    key = None if key is None else check_key(key)
    if tol is not None:
        check_number(tol, "tol", positive=True)
    if callable(a):
        if size is None:
            raise ValueError("a matvec needs size=n, the dimension of the vectors it acts on.")
        if method == "dense":
            raise ValueError("method='dense' needs the matrix itself; pass an (n, n) array.")
        n, matvec = check_positive_int(size, "size"), a
        check_finite({}, (), extra={"args": args})
        try:
            out = jax.eval_shape(lambda v: a(v, *args), jax.ShapeDtypeStruct((n,), jnp.float32))
        except Exception as err:  # the user's matvec on a vector of the stated size; the original stays chained
            raise ValueError(f"the matvec a(v, *args) failed for v of shape ({n},) (size={n}): "
                             f"{error_summary(err)}") from err
        if getattr(out, "shape", None) != (n,):
            raise ValueError(f"the matvec a(v, *args) must return a vector of shape ({n},) (size={n}); it returned "
                             f"{getattr(out, 'shape', type(out).__name__)}.")
        dtype = out.dtype
    else:
        a = _check_matrices(a, "a")
        n, dtype = a.shape[0], a.dtype
        if method == "dense" or (method == "auto" and n <= DENSE_LIMIT):
            ev = jnp.linalg.eigvals(a)
            i = jnp.argmax(jnp.abs(ev))
            return SpectralRadius(jnp.abs(ev[i]), ev[i], jnp.zeros((), jnp.abs(ev).dtype), jnp.asarray(True),
                                  jnp.asarray(0), "dense")
        matvec, args = _dense_matvec, (a,)
    m = min(n, 64) if num_matvecs is None else check_positive_int(num_matvecs, "num_matvecs")
    if m > n:
        raise ValueError(f"num_matvecs={m} exceeds the dimension n={n}.")
    k = max(1, m // 3) if num_wanted is None else check_positive_int(num_wanted, "num_wanted")
    if k >= m:
        raise ValueError(f"num_wanted={k} must be smaller than num_matvecs={m}.")
    max_restarts = check_positive_int(max_restarts, "max_restarts")
    cdtype = _complex_dtype(dtype)
    if tol is None:
        tol = 1e-10 if cdtype == jnp.complex128 else 1e-5
    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, (n,), jnp.abs(jnp.zeros((), cdtype)).dtype).astype(cdtype)
    theta, res, it = _arnoldi_radius(matvec, tuple(args), v0, tol, n, m, k, max_restarts)
    return SpectralRadius(jnp.abs(theta), theta, res, res <= tol * jnp.abs(theta), it, "arnoldi")


def singular_values(jacobians: jax.Array) -> jax.Array:
    """Singular values, descending, of each matrix in a ``(..., n, n)`` stack (e.g. the ``J_t``).

    Raises:
      ValueError / TypeError: not a non-empty stack of square matrices of real or complex numbers, or NaN/inf in it.
    """
    return jnp.linalg.svd(_check_matrices(jacobians, "jacobians", ndim=None),
                          compute_uv=False)


class JacobianProducts(NamedTuple):
    """Norms of ``dh_T/dh_t = J_T ... J_{t+1}`` against the distance ``T - t = 1..T``.

    ``log_spectral_norm`` (natural log) stays finite where ``spectral_norm`` itself under- or overflows the dtype
    (a vanishing product falls below float32's smallest normal number within about a hundred steps).
    """

    distance: jax.Array
    spectral_norm: jax.Array
    smallest_singular_value: jax.Array
    frobenius_norm: jax.Array
    log_spectral_norm: jax.Array


@jax.jit
def _products(jacobians):
    # The running product is renormalised every step and its scale kept as a logarithm, so that exponentially
    # vanishing or exploding products keep full relative precision instead of reaching 0 or inf.
    def body(carry, jac):
        prod, log_scale = carry
        prod = prod @ jac
        s = jnp.linalg.svd(prod, compute_uv=False)
        fro = jnp.linalg.norm(prod)
        log_top = jnp.log(s[0]) + log_scale
        scale = jnp.where(s[0] > 0, s[0], 1.0)
        out = (log_top, s[-1] / scale, fro / scale)
        return (prod / scale, log_scale + jnp.log(scale)), out

    eye = jnp.eye(jacobians.shape[1], dtype=jacobians.dtype)
    init = (eye, jnp.zeros((), jacobians.dtype))
    _, (log_top, bottom_rel, fro_rel) = jax.lax.scan(body, init, jacobians[::-1])
    top = jnp.exp(log_top)
    return top, bottom_rel * top, fro_rel * top, log_top


def jacobian_products(jacobians: jax.Array) -> JacobianProducts:
    """How the gradient reaching ``h_t`` from a loss at step ``T`` scales with ``T - t`` (sec. 10.7, eq. 10.36).

    Args:
      jacobians: ``(T, n, n)`` stack ``J_1..J_T`` from :func:`state_jacobians`.

    Returns:
      :class:`JacobianProducts` with ``distance = 1..T``.

    Raises:
      ValueError / TypeError: ``jacobians`` not a non-empty ``(T, n, n)`` stack of real numbers, or NaN/inf in it.

    Example:
      >>> jacobian_products(jnp.stack([0.5 * jnp.eye(2)] * 3)).spectral_norm
      Array([0.5  , 0.25 , 0.125], dtype=float32)
    """
    jacobians = _check_matrices(jacobians, "jacobians", ndim=3)
    if not jnp.issubdtype(jacobians.dtype, jnp.floating):
        raise TypeError(f"jacobians has dtype {jacobians.dtype}; expected a floating-point dtype.")
    shape = jacobians.shape
    top, bottom, fro, log_top = _products(jacobians)
    return JacobianProducts(jnp.arange(1, shape[0] + 1), top, bottom, fro, log_top)


@functools.partial(jax.jit, static_argnames="step_fn")
def _distances(step_fn, params, h_a, h_b, xs):
    def body(carry, x):
        a, b = carry
        a, b = step_fn(params, a, x), step_fn(params, b, x)
        return (a, b), jnp.linalg.norm(a - b)

    _, dist = jax.lax.scan(body, (h_a, h_b), xs)
    return dist


def trajectory_distance(step_fn: Callable, params: PyTree, h_a: jax.Array, h_b: jax.Array, xs: jax.Array):
    """``||h_t^a - h_t^b||`` for ``t = 1..T``: two initial states driven by the same inputs.

    With ``h_b = h_a + delta`` this is the response to a perturbation; with two unrelated states it is the
    empirical washout test of the echo state property (the distance must fade for the network to forget its start).

    Raises:
      ValueError / TypeError: as :func:`state_jacobians`, for each of ``h_a`` and ``h_b``, or their shapes or
        dtypes differ.
    """
    _check_sequence(xs)
    _check_state(h_a, "h_a")
    _check_state(h_b, "h_b")
    if jnp.shape(h_a) != jnp.shape(h_b):
        raise ValueError(f"h_a has shape {jnp.shape(h_a)} but h_b has {jnp.shape(h_b)}; expected equal shapes.")
    if jnp.result_type(h_a) != jnp.result_type(h_b):
        raise TypeError(f"h_a has dtype {jnp.result_type(h_a)} but h_b has {jnp.result_type(h_b)}; expected equal "
                        "dtypes.")
    _check_step(step_fn, params, {"h_a": h_a, "h_b": h_b}, xs)
    return _distances(step_fn, params, h_a, h_b, xs)


class ContractionBound(NamedTuple):
    """``sigma_max(W)`` and the Lipschitz bound ``(1 - a) + a * sigma_max(W)`` of a leaky tanh step."""

    largest_singular_value: jax.Array
    lipschitz: jax.Array


def contraction_bound(w: jax.Array, leak: float = 1.0) -> ContractionBound:
    """Sufficient condition for the echo state property (Jaeger 2001; sec. 10.8).

    ``h' = (1 - a) h + a tanh(W h + u)`` with tanh 1-Lipschitz gives
    ``||h'_1 - h'_2|| <= ((1 - a) + a sigma_max(W)) ||h_1 - h_2||`` for every input ``u``: when ``sigma_max(W) < 1``
    every step contracts the distance between two states by at least this factor, so initial conditions wash out.

    Raises:
      ValueError / TypeError: a non-square or non-finite ``w``, or a leak outside (0, 1].
    """
    w = _check_matrices(w, "w")
    leak = check_number(leak, "leak", positive=True, maximum=1.0)
    s = jnp.linalg.svd(w, compute_uv=False)[0]
    return ContractionBound(s, (1.0 - leak) + leak * s)
