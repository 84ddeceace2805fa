"""Condition number and inertia of a Hessian spectrum with an explicit null-space tolerance.

Softmax networks have exact zero Hessian eigenvalues (the loss is invariant to adding a constant to every logit),
so ``max |lambda| / min |lambda|`` is infinite. The condition number is defined on the non-null spectrum: the
eigenvalues with ``|lambda| > tol``, where ``tol`` is stated, returned and by default
``n * eps(dtype) * max |lambda|`` (the rank tolerance of ``numpy.linalg.matrix_rank``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from analysis._checks import check_number


class ConditionInfo(NamedTuple):
    """Summary of a symmetric spectrum.

    Attributes:
      condition_number: ``max |lambda| / min |lambda|`` over eigenvalues with ``|lambda| > null_tolerance``.
      max_abs: the largest ``|lambda|``.
      min_abs_nonnull: the smallest ``|lambda|`` above the tolerance.
      null_tolerance: eigenvalues with ``|lambda| <= null_tolerance`` count as zero.
      num_negative / num_near_zero / num_positive: inertia under that tolerance.
      index: fraction of negative eigenvalues (the Hessian index of Dauphin et al. 2014).
    """

    condition_number: float
    max_abs: float
    min_abs_nonnull: float
    null_tolerance: float
    num_negative: int
    num_near_zero: int
    num_positive: int
    index: float


def condition_number(
    eigenvalues: jax.Array, *, rtol: Optional[float] = None, atol: Optional[float] = None
) -> ConditionInfo:
    """Condition number of the non-null part of a full spectrum (e.g. from :func:`analysis.hessian_spectrum`).

    Args:
      eigenvalues: all eigenvalues of a symmetric matrix (a partial Lanczos spectrum does not determine the
        smallest non-null magnitude).
      rtol: null tolerance relative to ``max |lambda|``; default ``n * eps(dtype)``.
      atol: absolute null tolerance; overrides ``rtol``.

    Returns:
      :class:`ConditionInfo` of plain Python numbers.

    Raises:
      ValueError / TypeError: empty, non-1-D, non-real or non-finite eigenvalues, a negative or non-finite
        tolerance, or no eigenvalue above the tolerance.

    Example:
      >>> condition_number(jnp.array([-1.0, 0.0, 2.0, 4.0])).condition_number
      4.0
    """
    lam = np.asarray(eigenvalues)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array; got shape {lam.shape}.")
    if not (np.issubdtype(lam.dtype, np.floating) or np.issubdtype(lam.dtype, np.integer)):
        raise TypeError(f"eigenvalues have dtype {lam.dtype}; expected real numbers (a symmetric spectrum).")
    if not np.all(np.isfinite(lam)):
        raise ValueError(f"eigenvalues contain {int(np.sum(~np.isfinite(lam)))} NaN/inf value(s).")
    absl = np.abs(lam)
    max_abs = float(absl.max())
    if rtol is not None:
        rtol = check_number(rtol, "rtol", minimum=0)
    if atol is not None:
        tol = check_number(atol, "atol", minimum=0)
    else:
        if rtol is None:
            rtol = lam.size * float(jnp.finfo(lam.dtype if np.issubdtype(lam.dtype, np.floating) else float).eps)
        tol = rtol * max_abs
    nonnull = absl[absl > tol]
    if nonnull.size == 0:
        raise ValueError(f"every eigenvalue is within the null tolerance {tol:.3g}; the condition number is undefined.")
    neg = int(np.sum(lam < -tol))
    zero = int(np.sum(absl <= tol))
    return ConditionInfo(
        condition_number=float(nonnull.max() / nonnull.min()),
        max_abs=max_abs,
        min_abs_nonnull=float(nonnull.min()),
        null_tolerance=tol,
        num_negative=neg,
        num_near_zero=zero,
        num_positive=int(lam.size - neg - zero),
        index=neg / lam.size,
    )
