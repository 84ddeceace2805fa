"""A census of critical points along training runs (Deep Learning sec. 8.2.3, Dauphin et al. 2014).

Starts are taken along Adam runs from several initialisations (high loss early, low loss late); from each,
Levenberg-Marquardt on ``1/2 ||g||^2`` (:func:`analysis.find_critical_points`) reaches a nearby critical point of any
index, and every converged point is classified by its exact Hessian. Points related by a symmetry of the model have
the same loss and index, so :func:`distinct_critical_points` keeps one of each.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from analysis.critical import classify_critical_point, find_critical_points


@functools.partial(jax.jit, static_argnames=("loss_fn", "steps"))
def _adam_snapshots(loss_fn, starts, x, y, record, steps):
    """Adam (lr 0.01) from every start for ``steps`` steps; parameters after each step number in ``record``."""
    opt = optax.adam(0.01)

    def one(p):
        def body(carry, _):
            p, state = carry
            updates, state = opt.update(jax.grad(loss_fn)(p, x, y), state, p)
            p = optax.apply_updates(p, updates)
            return (p, state), p

        return jax.lax.scan(body, (p, opt.init(p)), None, length=steps)[1]

    path = jax.vmap(one)(starts)  # leaves (starts, steps, ...)
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a[:, record - 1], 0, 1), path)


def critical_point_census(loss_fn, starts, x, y, *, snapshot_steps, lm_steps: int, symmetric=None,
                          gtol: float = 1e-9):
    """Starts along Adam training runs from ``starts`` (stacked initialisations), Levenberg-Marquardt from each,
    and the exact Hessian classification of every converged critical point.

    ``symmetric`` (one unstacked start with all hidden units equal) is trained and searched in the same compiled
    calls; Adam keeps its units equal, so it ends at a minimum of the loss restricted to equal units, and the
    search then settles on the critical point there.

    Returns:
      ``(records, converged_fraction, symmetric_point)``: one dict per converged census point (loss, index, kind,
      ...), the converged fraction of the census starts, and the :class:`analysis.CriticalPoint` reached from
      ``symmetric`` (None without it).
    """
    # Stacking and slicing happen on the host: each eager device slice would cost a compilation of its own.
    host = functools.partial(jax.tree_util.tree_map, np.asarray)
    seeds = jax.tree_util.tree_leaves(starts)[0].shape[0]
    if symmetric is not None:
        starts = jax.tree_util.tree_map(lambda a, b: np.concatenate([a, b[None]]), host(starts), host(symmetric))
    trained = sorted(s for s in snapshot_steps if s > 0)
    groups = [host(starts)] if 0 in snapshot_steps else []
    if trained:
        snaps = host(_adam_snapshots(loss_fn, jax.tree_util.tree_map(jnp.asarray, starts), x, y,
                                     jnp.asarray(trained), trained[-1]))
        groups += [jax.tree_util.tree_map(lambda a: a[j], snaps) for j in range(len(trained))]
    members = seeds + (symmetric is not None)
    census = [jax.tree_util.tree_map(lambda a: a[:seeds], g) for g in groups]
    if symmetric is not None:
        census.append(jax.tree_util.tree_map(lambda a: a[seeds:members], groups[-1]))
    everything = jax.tree_util.tree_map(lambda *a: jnp.asarray(np.concatenate(a)), *census)
    found = find_critical_points(loss_fn, everything, x, y, steps=lm_steps, gtol=gtol)
    total = seeds * len(groups)
    converged = np.asarray(found.converged)[:total]
    order = sorted(snapshot_steps)
    records = []
    host = jax.tree_util.tree_map(np.asarray, found.params)
    for i in np.flatnonzero(converged):
        point = jax.tree_util.tree_map(lambda a: jnp.asarray(a[i]), host)
        info = classify_critical_point(loss_fn, point, x, y, gtol=gtol)
        records.append({"loss": info.loss, "index": info.index, "kind": info.kind, "grad_norm": info.grad_norm,
                        "snapshot_step": int(order[i // seeds]), "min_eigenvalue": info.min_eigenvalue,
                        "num_near_zero": info.num_near_zero})
    point = None
    if symmetric is not None:
        point = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[total]), found)
    return records, float(converged.mean()), point


def distinct_critical_points(records: list[dict], *, rtol: float = 1e-8) -> list[dict]:
    """One record per distinct critical point, by loss and index, in order of loss.

    Points related by a permutation of the hidden units have the same loss and spectrum, so loss and index identify
    a point up to that symmetry; two losses within ``rtol`` (relative) with the same index are the same point.
    """
    kept: list[dict] = []
    for r in sorted(records, key=lambda r: r["loss"]):
        if not any(abs(r["loss"] - k["loss"]) <= rtol * abs(k["loss"]) and r["index"] == k["index"] for k in kept):
            kept.append(r)
    return kept
