"""GGN, Fisher (exact, Monte-Carlo, empirical) behind every estimator, against explicit dense references.

References, none of which uses the library's products: ``J`` from ``jax.jacfwd`` of the flat outputs and the output
Hessians from ``jax.hessian`` (GGN = (1/N) sum J_i^T H_i J_i); the exact Fisher by enumeration over every label
(softmax: K classes; Bernoulli: all 2^K outcomes) or in closed form (Gaussian); the empirical and Monte-Carlo
Fishers as explicit sums of outer products of per-example parameter gradients. Tolerances relative to the largest
entry: float32 2e-5, float64 1e-11.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import analysis
from analysis.curvatures import OUTPUT_LOSSES
from jaxdl.models import MLP, split

TOL = {jnp.float32: 2e-5, jnp.float64: 1e-11}
N, D, H, K = 6, 4, 3, 3


def _problem(loss_name, dtype, seed):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    params = {"hidden": {"w": jax.random.normal(k[0], (D, H), dtype) * 0.7, "b": jnp.zeros(H, dtype) + 0.1},
              "out": {"w": jax.random.normal(k[1], (H, K), dtype) * 0.7}}
    x = jax.random.normal(k[2], (N, D), dtype)
    if loss_name == "softmax_cross_entropy":
        y = jax.random.randint(k[3], (N,), 0, K)
    elif loss_name == "mse":
        y = jax.random.normal(k[3], (N, K), dtype)
    else:
        y = jax.random.bernoulli(k[3], 0.4, (N, K)).astype(dtype)

    def predict(p, x):
        return jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"]) @ p["out"]["w"]

    return analysis.supervised_loss(predict, loss_name), predict, params, x, y


def _jacobians(predict, params, x):
    theta, unravel = ravel_pytree(params)
    return jax.jacfwd(lambda t: predict(unravel(t), x))(theta)  # (N, K, n)


def _close(got, want, dtype):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert err < TOL[dtype], err


def _ggn_reference(loss_name, predict, params, x, y):
    J = _jacobians(predict, params, x)
    Hout = jax.vmap(jax.hessian(OUTPUT_LOSSES[loss_name].loss))(predict(params, x), y)
    return jnp.einsum("nka,nkl,nlb->ab", J, Hout, J) / N


def _fisher_reference(loss_name, predict, params, x):
    """Exact Fisher by enumeration over labels, scaled as the loss is (1/c times the expected outer product)."""
    J, f = _jacobians(predict, params, x), predict(params, x)
    spec = OUTPUT_LOSSES[loss_name]
    grad = jax.grad(spec.loss)
    if loss_name == "mse":  # Gaussian N(f, K/2 I): E[g g^T] = (2/K) I, c = 1
        return (2.0 / K) * jnp.einsum("nka,nkb->ab", J, J) / N
    if loss_name == "softmax_cross_entropy":
        outcomes = [jnp.full((N,), c) for c in range(K)]
        probs = [jax.nn.softmax(f)[:, c] for c in range(K)]
    else:
        outcomes, probs = [], []
        s = jax.nn.sigmoid(f)
        for bits in itertools.product([0.0, 1.0], repeat=K):
            b = jnp.asarray(bits, f.dtype)
            outcomes.append(jnp.broadcast_to(b, f.shape))
            probs.append(jnp.prod(jnp.where(b == 1, s, 1 - s), axis=1))
    total = 0
    for yy, pr in zip(outcomes, probs):
        g = jnp.einsum("nka,nk->na", J, jax.vmap(grad)(f, yy))  # per-example parameter gradients
        total = total + jnp.einsum("n,na,nb->ab", pr, g, g)
    return total / N / spec.scale(f[0])


def _per_example_grads(predict, params, x, y, loss_name):
    theta, unravel = ravel_pytree(params)
    spec = OUTPUT_LOSSES[loss_name]
    return jax.vmap(lambda xi, yi: jax.grad(lambda t: spec.loss(predict(unravel(t), xi[None])[0], yi))(theta))(x, y)


LOSSES = list(OUTPUT_LOSSES)


@pytest.mark.parametrize("loss_name, dtype, seed", [
    ("softmax_cross_entropy", jnp.float32, 0), ("softmax_cross_entropy", jnp.float64, 0),
    ("softmax_cross_entropy", jnp.float64, 1), ("mse", jnp.float32, 1), ("mse", jnp.float64, 0),
    ("sigmoid_binary_cross_entropy", jnp.float64, 1)])
def test_dense_ggn_fisher_and_empirical_fisher_match_explicit_references(loss_name, dtype, seed):
    with jax.enable_x64(dtype == jnp.float64):
        loss, predict, params, x, y = _problem(loss_name, dtype, seed)
        ggn = _ggn_reference(loss_name, predict, params, x, y)
        _close(analysis.dense_hessian(loss, params, x, y, curvature="ggn"), ggn, dtype)
        # the Fisher is computed from the likelihood in closed form, the GGN by autodiff: both equal enumeration
        _close(analysis.dense_hessian(loss, params, x, y, curvature="fisher"),
               _fisher_reference(loss_name, predict, params, x), dtype)
        _close(ggn, _fisher_reference(loss_name, predict, params, x), dtype)
        g = _per_example_grads(predict, params, x, y, loss_name)
        scale = OUTPUT_LOSSES[loss_name].scale(predict(params, x)[0])
        _close(analysis.dense_hessian(loss, params, x, y, curvature="empirical_fisher"), g.T @ g / N / scale, dtype)
        assert float(jnp.abs(loss(params, x, y) - jnp.mean(jax.vmap(OUTPUT_LOSSES[loss_name].loss)(
            predict(params, x), y)))) < 1e-6


@pytest.mark.parametrize("loss_name", LOSSES)
def test_monte_carlo_fisher_is_the_explicit_sum_over_its_samples_and_unbiased(loss_name):
    with jax.enable_x64(True):
        loss, predict, params, x, y = _problem(loss_name, jnp.float64, 2)
        key, samples = jax.random.PRNGKey(7), 3
        got = analysis.dense_hessian(loss, params, x, y, curvature=analysis.MCFisher(key, samples))
        spec, f = OUTPUT_LOSSES[loss_name], predict(params, x)
        draws = jax.vmap(lambda kk, fi: spec.sample(kk, fi, samples))(jax.random.split(key, N), f)  # (N, S, ...)
        total = 0
        for s in range(samples):
            g = _per_example_grads(predict, params, x, draws[:, s], loss_name)
            total = total + g.T @ g
        _close(got, total / (N * samples * spec.scale(f[0])), jnp.float64)
        # Unbiased: 4000 labels per example land within 10% (Frobenius) of the exact Fisher. The expected relative
        # error at this sample size is about 2-3%; the key is fixed, so the check is deterministic.
        many = analysis.dense_hessian(loss, params, x, y, curvature=analysis.MCFisher(jax.random.PRNGKey(1), 4000))
        exact = _fisher_reference(loss_name, predict, params, x)
        assert float(jnp.linalg.norm(many - exact) / jnp.linalg.norm(exact)) < 0.1


def test_ggn_equals_hessian_for_a_linear_model_with_cross_entropy():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.PRNGKey(3), 2)
        x, y = jax.random.normal(k[0], (8, 5), jnp.float64), jnp.arange(8) % 3
        loss = analysis.supervised_loss(lambda p, x: x @ p["w"] + p["b"], "softmax_cross_entropy")
        params = {"w": jax.random.normal(k[1], (5, 3), jnp.float64), "b": jnp.zeros(3, jnp.float64)}
        _close(analysis.dense_hessian(loss, params, x, y, curvature="ggn"), analysis.dense_hessian(loss, params, x, y),
               jnp.float64)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_every_estimator_takes_the_ggn(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        loss, predict, params, x, y = _problem("softmax_cross_entropy", dtype, 4)
        G = np.asarray(_ggn_reference("softmax_cross_entropy", predict, params, x, y), np.float64)
        exact = np.linalg.eigvalsh(G)
        n = G.shape[0]
        rtol = 1e-4 if dtype == jnp.float32 else 1e-9
        for m in (20, n):  # n: past the Krylov space's exhaustion (rank <= N (K-1) = 12 < n = 24)
            eigs = analysis.hessian_eigs(loss, params, x, y, k=3, num_matvecs=m, curvature="ggn")
            np.testing.assert_allclose(np.asarray(eigs.eigenvalues), exact[-3:], rtol=rtol, atol=rtol * exact[-1])
            assert float(jnp.max(eigs.residuals)) < 1e-3 * exact[-1]
        np.testing.assert_allclose(np.asarray(analysis.hessian_spectrum(loss, params, x, y, curvature="ggn")),
                                   exact, atol=TOL[dtype] * 10 * exact[-1])
        tr = analysis.hessian_trace(loss, params, x, y, num_matvecs=30, curvature="ggn", key=jax.random.PRNGKey(5))
        assert abs(float(tr.estimate) - np.trace(G)) <= 4 * float(tr.standard_error) + 1e-4 * np.trace(G)
        sd = analysis.spectral_density(loss, params, x, y, num_matvecs=n, curvature="ggn")
        # with the Krylov space exhausted every quadrature node of weight is an exact eigenvalue of the GGN
        nodes, weights = np.asarray(sd.nodes[0], np.float64), np.asarray(sd.weights[0], np.float64)
        assert abs(weights.sum() - 1) < 1e-5
        gaps = np.min(np.abs(nodes[weights > 1e-6][:, None] - exact[None]), axis=1)
        assert np.max(gaps) < 1e-4 * exact[-1] if dtype == jnp.float32 else np.max(gaps) < 1e-10 * exact[-1]
        gc = analysis.gradient_curvature(loss, params, x, y, curvature="ggn")
        g = np.asarray(ravel_pytree(jax.grad(loss)(params, x, y))[0], np.float64)
        np.testing.assert_allclose(float(gc.gTHg), g @ G @ g, rtol=rtol)
        v = jax.tree_util.tree_map(jnp.ones_like, params)
        Gv = ravel_pytree(analysis.hvp(loss, params, v, x, y, curvature="ggn"))[0]
        _close(Gv, G @ np.ones(n), dtype)


def test_blocks_microbatches_and_data_sources_give_the_same_ggn():
    with jax.enable_x64(True):
        loss, predict, params, x, y = _problem("mse", jnp.float64, 5)
        full = analysis.dense_hessian(loss, params, x, y, curvature="fisher")
        sources = analysis.Batches([(x[:4], y[:4]), (x[4:], y[4:])])  # unequal batches, weighted by size
        _close(analysis.dense_hessian(loss, params, sources, curvature="fisher"), full, jnp.float64)
        stacked = (x.reshape(2, 3, D), y.reshape(2, 3, K))
        _close(analysis.dense_hessian(loss, params, *stacked, microbatched=True, curvature="fisher"), full,
               jnp.float64)
        # the hidden layer's block is the corresponding sub-matrix (ravel order: hidden/b, hidden/w, out/w)
        n_hidden = H + D * H
        _close(analysis.dense_hessian(loss, params, x, y, block="hidden", curvature="fisher"),
               full[:n_hidden, :n_hidden], jnp.float64)


def test_ggn_of_an_nnx_model():
    with jax.enable_x64(True):
        apply, params = split(MLP([D, 5, K], rngs=nnx.Rngs(0), dtype=jnp.float64))
        x = jax.random.normal(jax.random.PRNGKey(0), (N, D), jnp.float64)
        y = jnp.arange(N) % K
        loss = analysis.supervised_loss(apply, "softmax_cross_entropy")
        want = _ggn_reference("softmax_cross_entropy", apply, params, x, y)
        _close(analysis.dense_hessian(loss, params, x, y, curvature="ggn"), want, jnp.float64)


def test_custom_output_loss_gives_ggn_and_empirical_fisher():
    with jax.enable_x64(True):
        _, predict, params, x, y = _problem("mse", jnp.float64, 6)

        def huber(f, t):
            r = f - t
            return jnp.sum(jnp.where(jnp.abs(r) < 1, 0.5 * r**2, jnp.abs(r) - 0.5))

        loss = analysis.supervised_loss(predict, huber)
        J = _jacobians(predict, params, x)
        Hout = jax.vmap(jax.hessian(huber))(predict(params, x), y)
        _close(analysis.dense_hessian(loss, params, x, y, curvature="ggn"),
               jnp.einsum("nka,nkl,nlb->ab", J, Hout, J) / N, jnp.float64)
        with pytest.raises(ValueError, match="likelihood"):
            analysis.dense_hessian(loss, params, x, y, curvature="fisher")


def test_bad_curvature_arguments_are_refused_with_the_value_named():
    loss, predict, params, x, y = _problem("softmax_cross_entropy", jnp.float32, 0)
    plain = lambda p, x, y: loss(p, x, y)  # noqa: E731
    with pytest.raises(TypeError, match="supervised_loss"):
        analysis.hessian_eigs(plain, params, x, y, k=1, curvature="ggn")
    with pytest.raises(ValueError, match="'gauss-newton'"):
        analysis.hessian_trace(loss, params, x, y, curvature="gauss-newton")
    with pytest.raises(ValueError, match="'hinge'"):
        analysis.supervised_loss(predict, "hinge")
    with pytest.raises(TypeError, match="predict_fn"):
        analysis.supervised_loss("not a function", "mse")
    with pytest.raises(ValueError, match="samples=0"):
        analysis.MCFisher(jax.random.PRNGKey(0), 0)
    with pytest.raises((TypeError, ValueError), match="key"):
        analysis.MCFisher(3)
