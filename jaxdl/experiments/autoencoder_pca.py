"""Undercomplete autoencoders (Deep Learning sec. 14.1): a linear autoencoder trained with squared error learns the
subspace of PCA; a nonlinear one can do better with the same code size.

Measured on all 1,797 digits (pixels / 16) with code size k = 10: the linear autoencoder's reconstruction error
against scikit-learn's PCA (ANCHORS.md: 0.01920) and the cosines of the principal angles between the decoder's span
and the top-10 principal components; then a nonlinear undercomplete autoencoder and PCA on a train/test split.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdl.data import digits, digits_full
from jaxdl.experiments._common import figure
from jaxdl.experiments._registry import Verdict, experiment
from jaxdl.train import fit_lbfgs, train_scan
from jaxdl.models import Autoencoder, autoencoder_split, principal_angle_cosines, reconstruction_error

CLAIM = ("Deep Learning sec. 14.1: an undercomplete linear autoencoder with mean squared error learns the same "
         "subspace as PCA (principal-angle cosines > 0.999, reconstruction error within 0.1% of PCA's on digits, "
         "k = 10); a nonlinear encoder and decoder can learn a more powerful generalisation.")


def pca_reference(x_fit: np.ndarray, k: int, *others: np.ndarray):
    """scikit-learn PCA with ``k`` components fitted on ``x_fit``: ``(components (d, k), [MSE on x_fit, *others])``."""
    from sklearn.decomposition import PCA

    pca = PCA(k).fit(x_fit)
    errors = [float(np.mean((a - pca.inverse_transform(pca.transform(a))) ** 2)) for a in (x_fit, *others)]
    return pca.components_.T, errors


def train_linear(x: jax.Array, k: int, *, steps: int, seed: int):
    """A linear autoencoder ``[d -> k -> d]`` with biases, trained by L-BFGS on the mean squared error."""
    fns, params = autoencoder_split(Autoencoder(x.shape[1], k, undercomplete=True, rngs=nnx.Rngs(seed)))

    def loss_fn(p, xb):
        return reconstruction_error(xb, fns.apply(p, xb))

    params, losses = jax.jit(lambda p, xb: fit_lbfgs(loss_fn, p, xb, steps=steps))(params, x)
    return fns, params, losses


def train_nonlinear(x: jax.Array, k: int, hidden: int, *, steps: int, seed: int):
    """A nonlinear undercomplete autoencoder ``[d -> hidden -> k -> hidden -> d]`` (tanh, sigmoid output), Adam."""
    model = Autoencoder(x.shape[1], k, hidden=(hidden,), encoder_activation="tanh", decoder_activation="sigmoid",
                        undercomplete=True, rngs=nnx.Rngs(seed))
    fns, params = autoencoder_split(model)

    def loss_fn(p, xb):
        return reconstruction_error(xb, fns.apply(p, xb))

    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.05))
    params, losses = jax.jit(lambda p, xb: train_scan(loss_fn, optimizer, p, xb, steps=steps))(params, x)
    return fns, params, losses


def _split_comparison(k: int, lbfgs_steps: int, adam_steps: int, seed: int) -> dict:
    """Nonlinear undercomplete autoencoder, linear autoencoder and PCA, all fitted on the training split."""
    data = digits(seed=seed)
    _, (pca_train, pca_test) = pca_reference(np.asarray(data.x_train, np.float64), k, np.asarray(data.x_test))
    nfns, nparams, nlosses = train_nonlinear(data.x_train, k, 128, steps=adam_steps, seed=seed)
    nl_train = float(reconstruction_error(data.x_train, nfns.apply(nparams, data.x_train)))
    nl_test = float(reconstruction_error(data.x_test, nfns.apply(nparams, data.x_test)))
    lfns, lparams, _ = train_linear(data.x_train, k, steps=lbfgs_steps, seed=seed)
    lin_test = float(reconstruction_error(data.x_test, lfns.apply(lparams, data.x_test)))
    return {"pca_train": pca_train, "pca_test": pca_test, "linear_test": lin_test, "nonlinear_train": nl_train,
            "nonlinear_test": nl_test, "fns": nfns, "params": nparams, "losses": np.asarray(nlosses)}


def measure(*, seed: int, quick: bool) -> dict:
    """Linear autoencoder against PCA on all digits; outside quick mode also the train/test comparison."""
    k = 10
    lbfgs_steps = 1000
    adam_steps = 6000
    x, _ = digits_full()
    components, (pca_mse,) = pca_reference(np.asarray(x, np.float64), k)
    fns, params, losses = train_linear(x, k, steps=lbfgs_steps, seed=seed)
    linear_mse = float(reconstruction_error(x, fns.apply(params, x)))
    decoder = nnx.to_pure_dict(params)["decoder"][0]["kernel"]  # (k, d): rows span the decoder's image
    cosines = np.asarray(principal_angle_cosines(decoder.T, jnp.asarray(components, decoder.dtype)))
    rel = linear_mse / pca_mse - 1.0

    split = _split_comparison(k, lbfgs_steps, adam_steps, seed) if not quick else None
    sample = x[:1]
    images = {"input": np.asarray(sample).reshape(8, 8),
              "linear AE": np.asarray(fns.apply(params, sample)).reshape(8, 8)}
    if split is not None:
        images["nonlinear AE"] = np.asarray(split["fns"].apply(split["params"], sample)).reshape(8, 8)
    return {"k": k, "lbfgs_steps": lbfgs_steps, "adam_steps": adam_steps,
            "linear": {"mse": linear_mse, "pca_mse": pca_mse, "relative_difference": rel,
                       "principal_angle_cosines": cosines.tolist()},
            "split": {kk: v for kk, v in (split or {}).items() if kk not in ("fns", "params", "losses")},
            "linear_losses": np.asarray(losses),
            "nonlinear_losses": split["losses"] if split is not None else None,
            "reconstructions": images,
            "first_component": np.asarray(components[:, 0]).reshape(8, 8)}


def verdict(m: dict) -> Verdict:
    """The linear autoencoder's error within 0.1% of PCA's and every principal-angle cosine above 0.999."""
    k, lin, split = m["k"], m["linear"], m["split"]
    rel, cos_min = lin["relative_difference"], min(lin["principal_angle_cosines"])
    passed = abs(rel) < 1e-3 and cos_min > 0.999
    text = (f"Linear autoencoder, k={k}, all 1,797 digits: MSE {lin['mse']:.5f} vs PCA {lin['pca_mse']:.5f} (relative "
            f"difference {rel:+.1e}); principal-angle cosines with PCA's top-{k} subspace min {cos_min:.6f}.")
    if split:
        text += (f" Train/test split: nonlinear autoencoder (64-128-10-128-64, tanh) MSE "
                 f"{split['nonlinear_train']:.5f}/{split['nonlinear_test']:.5f}, PCA {split['pca_train']:.5f}/"
                 f"{split['pca_test']:.5f}, linear autoencoder test {split['linear_test']:.5f}.")
    return Verdict(bool(passed), text)


def figures(m: dict) -> dict:
    """Training curves relative to PCA, principal-angle cosines, and a digit with its reconstructions."""
    pca_mse, cosines = m["linear"]["pca_mse"], np.asarray(m["linear"]["principal_angle_cosines"])
    fig, (ax0, ax1) = figure(2)
    ax0.semilogy(np.maximum(np.asarray(m["linear_losses"]) / pca_mse - 1.0, 1e-9),
                 label="linear AE (L-BFGS), all digits")
    if m["nonlinear_losses"] is not None:
        ax0.semilogy(np.maximum(np.asarray(m["nonlinear_losses"]) / m["split"]["pca_train"] - 1.0, 1e-9),
                     label="nonlinear AE (Adam), train split")
    ax0.axhline(1e-3, color="k", ls="--", lw=1, label="0.1% of PCA")
    ax0.set_xlabel("optimizer step")
    ax0.set_ylabel("MSE / PCA's MSE - 1 (log; floored at 1e-9)")
    ax0.set_title("reconstruction error relative to PCA")
    ax0.legend(fontsize=8)
    ax1.plot(np.arange(1, cosines.size + 1), cosines, "o-")
    ax1.set_ylim(min(0.99, float(cosines.min()) - 1e-3), 1.0005)
    ax1.set_xlabel("principal angle index")
    ax1.set_ylabel("cosine")
    ax1.set_title("decoder span vs PCA subspace")
    fig2, axes = figure(4, width=2.2, height=2.4)
    for ax, (title, img) in zip(axes, m["reconstructions"].items()):
        ax.imshow(np.asarray(img), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
    axes[3].imshow(np.asarray(m["first_component"]), cmap="coolwarm")
    axes[3].set_title("1st principal component", fontsize=9)
    for ax in axes:
        ax.axis("off")
    return {"autoencoder_pca": (fig, "Left: training curves relative to PCA's error. Right: cosines of the principal "
                                     "angles between the linear decoder's span and PCA's top-k subspace."),
            "autoencoder_pca_reconstructions": (fig2, "A digit, its reconstructions (k = 10), the first component.")}


EXPERIMENT = experiment(
    "autoencoder-pca", summary="sec. 14.1: a linear undercomplete autoencoder learns the PCA subspace (digits, k=10)",
    claim=CLAIM, measure=measure, verdict=verdict, figures=figures)
