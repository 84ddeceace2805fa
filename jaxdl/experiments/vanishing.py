"""Vanishing and exploding gradients (Deep Learning sec. 8.2.5 and 10.7), measured on state-to-state Jacobians.

Linear recurrence ``h_t = W h_{t-1}`` with spectral radius 0.9, 1.0 and 1.1: a perturbation ``delta v`` along the top
eigenvector is ``delta lambda^k v`` after ``k`` steps, so its size is exactly ``delta |lambda|^k`` (eq. 10.39-10.41).
Tanh recurrence ``h_t = tanh(W h_{t-1} + B x_t)`` with gain ``g``: the states stay in [-1, 1] whatever ``g``, yet for
``g > 1`` the norms of the Jacobian products ``dh_T/dh_t`` that multiply back-propagated gradients grow exponentially
with ``T - t`` (the chaotic regime); for ``g < 1`` they vanish. The spectral radius is computed densely and by
restarted Arnoldi, which must agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from analysis import jacobian_products, singular_values, spectral_radius, state_jacobians, trajectory_distance
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.models.esn import reservoir_matrix, to_dense

CLAIM = ("Deep Learning sec. 8.2.5/10.7: in h_t = W h_(t-1) a perturbation along an eigenvector scales as "
         "|lambda|^t (vanishing for |lambda| < 1, exploding for > 1); tanh keeps the states bounded while the "
         "products of Jacobians that carry gradients back in time can still explode.")


def linear_step(w, h, x):
    return w @ h + x


def tanh_step(params, h, x):
    w, b = params
    return jnp.tanh(w @ h + b @ x)


def real_top_matrix(key, n: int, radius: float) -> tuple[jax.Array, jax.Array]:
    """A non-normal ``W = S diag(lambda) S^{-1}`` with a real top eigenvalue ``radius`` (the others inside
    ``0.7 * radius``) and its unit top eigenvector."""
    k1, k2 = jax.random.split(key)
    s = jnp.eye(n) + 0.5 * jax.random.normal(k1, (n, n)) / n**0.5
    lam = jnp.concatenate([jnp.array([radius]), radius * jax.random.uniform(k2, (n - 1,), minval=-0.7, maxval=0.7)])
    w = (s * lam) @ jnp.linalg.inv(s)
    return w, s[:, 0] / jnp.linalg.norm(s[:, 0])


def linear_perturbations(radii, n: int, steps: int, delta: float, seed: int) -> dict:
    """Measured ``||h'_k - h_k||`` for ``h'_0 = h_0 + delta v`` against ``delta |lambda|^k`` (float64)."""
    out = {}
    with jax.enable_x64(True):
        for i, rho in enumerate(radii):
            w, v = real_top_matrix(jax.random.PRNGKey(seed * 10 + i), n, rho)
            h0 = jax.random.normal(jax.random.PRNGKey(seed + 99), (n,))
            xs = jnp.zeros((steps, n))
            dist = np.asarray(trajectory_distance(linear_step, w, h0, h0 + delta * v, xs))
            predicted = delta * rho ** np.arange(1, steps + 1)
            prods = jacobian_products(jnp.broadcast_to(w, (steps, n, n)))
            out[rho] = {"distance": dist, "predicted": predicted,
                        "max_relative_error": float(np.max(np.abs(dist - predicted) / predicted)),
                        "product_norm": np.asarray(prods.spectral_norm),
                        "dense_radius": float(spectral_radius(w, method="dense").value)}
    return out


def tanh_products(gains, n: int, burn_in: int, steps: int, seed: int) -> dict:
    out = {}
    for i, g in enumerate(gains):
        k = jax.random.split(jax.random.PRNGKey(seed * 100 + i), 4)
        w = g * jax.random.normal(k[0], (n, n)) / n**0.5
        b = jax.random.normal(k[1], (n, 1)) / n**0.5
        xs = 0.1 * jax.random.normal(k[2], (burn_in + steps, 1))
        h0 = 0.1 * jax.random.normal(k[3], (n,))
        states, jacs = state_jacobians(tanh_step, (w, b), h0, xs)
        prods = jacobian_products(jacs[burn_in:])
        # The log-norm, not the norm: a vanishing product leaves float32's range within ~100 steps.
        log_norm = np.asarray(prods.log_spectral_norm, np.float64)
        half = steps // 2
        slope = float(np.polyfit(np.arange(half, steps), log_norm[half:], 1)[0])
        sv_w = float(singular_values(w)[0])
        out[g] = {"max_abs_state": float(jnp.max(jnp.abs(states))), "log_growth_per_step": slope,
                  "product_norm": np.exp(log_norm),
                  "max_jacobian_singular_value": float(jnp.max(singular_values(jacs)[:, 0])),
                  "largest_singular_value_w": sv_w}
    return out


def radius_agreement(units: int, seed: int) -> dict:
    with jax.enable_x64(True):
        w = to_dense(reservoir_matrix(jax.random.PRNGKey(seed), units, spectral_radius=1.25, sparse=False,
                                      dtype=jnp.float64))
        dense = spectral_radius(w, method="dense")
        iterative = spectral_radius(w, method="arnoldi")
        eig = np.asarray(jnp.linalg.eigvals(w))
    return {"units": units, "dense": float(dense.value), "arnoldi": float(iterative.value),
            "relative_difference": float(abs(iterative.value - dense.value) / dense.value),
            "arnoldi_residual": float(iterative.residual), "arnoldi_restarts": int(iterative.restarts),
            "eigenvalues": eig, "arnoldi_eigenvalue": complex(iterative.eigenvalue)}


def measure(*, seed: int, quick: bool) -> dict:
    """Linear-RNN perturbations against delta |lambda|^k, tanh Jacobian products, and dense vs Arnoldi radii."""
    radii, gains = (0.9, 1.0, 1.1), (0.5, 0.9, 1.5, 3.0)
    n, steps, delta = (20, 60, 1e-3) if quick else (60, 200, 1e-3)
    lin = linear_perturbations(radii, n, steps, delta, seed)
    tanh = tanh_products(gains, 32 if quick else 100, 50, 60 if quick else 150, seed)
    agree = radius_agreement(200 if quick else 1000, seed)
    return {
        "linear": {str(r): {k: v for k, v in d.items() if k in ("max_relative_error", "dense_radius")} |
                   {"distance_over_delta_last": float(d["distance"][-1] / delta)} for r, d in lin.items()},
        "tanh": {str(g): {k: v for k, v in d.items() if k != "product_norm"} |
                 {"product_norm_last": float(d["product_norm"][-1])} for g, d in tanh.items()},
        "spectral_radius": {k: v for k, v in agree.items() if k != "eigenvalues"} |
                           {"arnoldi_eigenvalue": [agree["arnoldi_eigenvalue"].real,
                                                   agree["arnoldi_eigenvalue"].imag]},
        "steps": steps, "delta": delta,
        "radii": list(radii),
        "linear_distance": {str(r): d["distance"] for r, d in lin.items()},
        "linear_predicted": {str(r): d["predicted"] for r, d in lin.items()},
        "tanh_product_norm": {str(g): d["product_norm"] for g, d in tanh.items()},
        "reservoir_eigenvalues": {"real": agree["eigenvalues"].real, "imag": agree["eigenvalues"].imag},
    }


def verdict(m: dict) -> Verdict:
    """Perturbations follow delta |lambda|^k, tanh states stay bounded while gain 3 explodes and 0.5 vanishes, and the
    two spectral radii agree."""
    lin, tanh, agree, steps = m["linear"], m["tanh"], m["spectral_radius"], m["steps"]
    lin_err = max(v["max_relative_error"] for v in lin.values())
    bounded = max(v["max_abs_state"] for v in tanh.values())
    sv_ok = all(v["max_jacobian_singular_value"] <= v["largest_singular_value_w"] * (1 + 1e-5) for v in tanh.values())
    passed = (lin_err <= 1e-10 and bounded <= 1.0 and tanh["3.0"]["log_growth_per_step"] > 0.05
              and tanh["0.5"]["log_growth_per_step"] < 0 and agree["relative_difference"] <= 1e-4 and sv_ok)
    text = (f"Linear RNN: ||h'_k - h_k|| equals delta |lambda|^k to {lin_err:.1e} relative over {steps} steps for "
            f"spectral radius {tuple(m['radii'])} (after {steps} steps: "
            + ", ".join(f"{r}: {d['distance_over_delta_last']:.3g} delta" for r, d in lin.items())
            + f"). Tanh RNN: max |h| = {bounded:.4f} <= 1 for every gain, while the log-norm of dh_T/dh_t grows per "
            "step by " + ", ".join(f"g={g}: {d['log_growth_per_step']:+.3f}" for g, d in tanh.items())
            + f" (||dh_T/dh_t|| at distance {len(m['tanh_product_norm']['3.0'])} for g=3: "
            f"{tanh['3.0']['product_norm_last']:.2e}); every sigma_max(J_t) <= sigma_max(W): {sv_ok}. Spectral radius "
            f"of a {agree['units']}-unit reservoir: dense {agree['dense']:.10f}, restarted Arnoldi "
            f"{agree['arnoldi']:.10f} (relative difference {agree['relative_difference']:.1e}).")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Linear perturbations, tanh Jacobian-product norms, and the reservoir spectrum with both radii."""
    delta, tanh, agree = m["delta"], m["tanh"], m["spectral_radius"]
    fig, axes = figure(3, width=4.4, height=3.6)
    ax = axes[0]
    for i, rho in enumerate(m["linear_distance"]):
        distance, predicted = np.asarray(m["linear_distance"][rho]), np.asarray(m["linear_predicted"][rho])
        k = np.arange(1, distance.size + 1)
        ax.semilogy(k[::5], distance[::5], "o", ms=3, color=f"C{i}", label=f"measured, radius {rho}")
        ax.semilogy(k, predicted, "-", color=f"C{i}", lw=1, label=f"delta |lambda|^k, {rho}")
    ax.set_xlabel("steps k")
    ax.set_ylabel("||h'_k - h_k|| (log)")
    ax.set_title(f"linear RNN, perturbation delta={delta:g} along v_1")
    ax.legend(fontsize=7)
    ax = axes[1]
    for i, (g, norms) in enumerate(m["tanh_product_norm"].items()):
        norms = np.asarray(norms)
        ax.semilogy(np.arange(1, norms.size + 1), norms, color=f"C{i}",
                    label=f"g={g}: max|h|={tanh[g]['max_abs_state']:.3f}")
    ax.set_xlabel("distance T - t (steps)")
    ax.set_ylabel("||dh_T/dh_t||_2 (log)")
    ax.set_title("tanh RNN: bounded states, products can explode")
    ax.legend(fontsize=7)
    ax = axes[2]
    eig = np.asarray(m["reservoir_eigenvalues"]["real"]) + 1j * np.asarray(m["reservoir_eigenvalues"]["imag"])
    ax.plot(eig.real, eig.imag, ".", ms=2, color="0.5", label=f"all {eig.size} eigenvalues (dense)")
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(agree["dense"] * np.cos(t), agree["dense"] * np.sin(t), "C0-", lw=1, label="dense spectral radius")
    z = complex(*agree["arnoldi_eigenvalue"])
    ax.plot([z.real], [z.imag], "C3x", ms=10, label=f"Arnoldi top: |z|={abs(z):.6f}")
    ax.set_aspect("equal")
    ax.set_xlabel("Re lambda")
    ax.set_ylabel("Im lambda")
    ax.set_title("reservoir spectrum")
    ax.legend(fontsize=7, loc="lower left")
    return {"vanishing_exploding": (fig, "Left: perturbations of a linear RNN follow delta |lambda|^k exactly. Middle: "
                                         "norms of Jacobian products of tanh RNNs with gain g; states stay within "
                                         "[-1, 1]. Right: eigenvalues of a reservoir, dense vs restarted Arnoldi.")}


EXPERIMENT = experiment(
    "vanishing-exploding", summary="sec. 8.2.5/10.7: |lambda|^t perturbation scaling; bounded tanh states, exploding "
                                   "Jacobian products",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
