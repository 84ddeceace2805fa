"""Data sources (analysis.Batches): every estimator over unequal batches equals the full-batch computation."""

from __future__ import annotations

import grain
import grain.python as gp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from analysis.batches import Batches, _accumulate_batch
from analysis.lanczos import _stacked_step

SIZES = (128, 128, 44)  # 300 examples, an unequal last batch


def mlp_loss(params, x, y):
    """Mean softmax cross-entropy of a one-hidden-layer tanh MLP (dict params)."""
    h = jnp.tanh(x @ params["hidden"]["w"] + params["hidden"]["b"])
    logits = h @ params["out"]["w"] + params["out"]["b"]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0])


def problem(dtype):
    """Parameters (51 of them), 300 examples as host numpy arrays, and their split into batches of SIZES."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((sum(SIZES), 4)).astype(dtype)
    y = rng.integers(0, 3, sum(SIZES)).astype(np.int32)
    params = {"hidden": {"w": rng.standard_normal((4, 6)), "b": 0.1 * rng.standard_normal(6)},
              "out": {"w": rng.standard_normal((6, 3)), "b": 0.1 * rng.standard_normal(3)}}
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    edges = np.cumsum((0,) + SIZES)
    batches = [(x[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    return params, x, y, batches


def like(params, seed):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def flat(tree):
    return np.asarray(jax.flatten_util.ravel_pytree(tree)[0], np.float64)


def close(got, want, tol):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("x64", [True, False])
def test_every_estimator_over_batches_equals_the_full_batch(x64):
    # float64: equal up to rounding (1e-12); float32: a sum of three batch means in float32 (stated 2e-4 relative,
    # Lanczos amplifies rounding in the small Ritz values, hence the absolute floor).
    tol = 1e-12 if x64 else 2e-4
    dtype = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):
        params, x, y, batches = problem(dtype)
        data = Batches(batches)
        full = (jnp.asarray(x), jnp.asarray(y))

        gc = analysis.gradient_curvature(mlp_loss, params, data)
        ref = analysis.gradient_curvature(mlp_loss, params, *full)
        for a, b in zip((gc.loss, gc.gTg, gc.gTHg), (ref.loss, ref.gTg, ref.gTHg)):
            close(a, b, tol)
        close(flat(gc.grad), flat(ref.grad), tol)
        v = like(params, 1)
        close(flat(analysis.hvp(mlp_loss, params, v, data)), flat(analysis.hvp(mlp_loss, params, v, *full)), tol)

        H = analysis.dense_hessian(mlp_loss, params, data)
        H_ref = analysis.dense_hessian(mlp_loss, params, *full)
        assert H.shape == (51, 51) and H.dtype == H_ref.dtype
        close(H, H_ref, tol)
        spectrum = analysis.hessian_spectrum(mlp_loss, params, data)
        close(spectrum, np.linalg.eigvalsh(0.5 * (np.asarray(H_ref) + np.asarray(H_ref).T)), tol if x64 else 1e-4)
        assert analysis.condition_number(spectrum).condition_number > 1

        eigs = analysis.hessian_eigs(mlp_loss, params, data, k=3, which="both", num_matvecs=30)
        eigs_ref = analysis.hessian_eigs(mlp_loss, params, *full, k=3, which="both", num_matvecs=30)
        close(eigs.eigenvalues, eigs_ref.eigenvalues, tol)
        close(eigs.eigenvalues[-3:], np.sort(np.asarray(spectrum))[-3:], 1e-9 if x64 else 2e-4)
        close(eigs.residuals, eigs_ref.residuals, 1e-9 if x64 else 1e-3)
        assert np.all(np.asarray(eigs.residuals[-3:]) < (1e-8 if x64 else 1e-3))

        for method in ("hutchinson", "hutch++"):
            tr = analysis.hessian_trace(mlp_loss, params, data, num_matvecs=12, method=method)
            tr_ref = analysis.hessian_trace(mlp_loss, params, *full, num_matvecs=12, method=method)
            close(tr.estimate, tr_ref.estimate, tol)
            close(tr.standard_error, tr_ref.standard_error, 1e-10 if x64 else 1e-3)

        sd = analysis.spectral_density(mlp_loss, params, data, num_matvecs=20, num_probes=3)
        sd_ref = analysis.spectral_density(mlp_loss, params, *full, num_matvecs=20, num_probes=3)
        for power in range(4):  # quadrature moments sum_j w_j node_j^p of each probe
            close(jnp.sum(sd.weights * sd.nodes**power, axis=1), jnp.sum(sd_ref.weights * sd_ref.nodes**power, axis=1),
                  tol if x64 else 1e-3)

        d1, d2 = like(params, 2), like(params, 3)
        alphas, betas = jnp.linspace(-1, 1, 5), jnp.linspace(-0.5, 0.5, 3)
        close(analysis.loss_along_direction(mlp_loss, params, d1, alphas, data),
              analysis.loss_along_direction(mlp_loss, params, d1, alphas, *full), tol)
        close(analysis.loss_surface_2d(mlp_loss, params, d1, d2, alphas, betas, data, chunk_size=4),
              analysis.loss_surface_2d(mlp_loss, params, d1, d2, alphas, betas, *full), tol)


def test_grain_loader_generator_factory_and_host_arrays():
    with jax.enable_x64(True):
        params, x, y, batches = problem(np.float64)

        class Examples:  # grain's random-access protocol over the host arrays
            def __len__(self):
                return len(y)

            def __getitem__(self, i):
                return x[i], y[i]

        sampler = gp.IndexSampler(len(y), shard_options=gp.NoSharding(), shuffle=True, num_epochs=1, seed=0)
        loader = gp.DataLoader(data_source=Examples(), sampler=sampler, worker_count=0,
                               operations=[gp.Batch(128, drop_remainder=False)])
        sources = {
            "grain DataLoader": loader,
            "grain MapDataset": grain.MapDataset.source(Examples()).shuffle(seed=0).batch(128),
            "grain IterDataset": grain.MapDataset.source(Examples()).batch(128).to_iter_dataset(),
            "generator factory": lambda: (b for b in batches),
        }
        ref = analysis.gradient_curvature(mlp_loss, params, x, y)
        eig_ref = analysis.hessian_eigs(mlp_loss, params, x, y, k=2, num_matvecs=20).eigenvalues
        for name, source in sources.items():
            data = Batches(source)
            gc = analysis.gradient_curvature(mlp_loss, params, data)
            close(gc.gTHg, ref.gTHg, 1e-12)
            close(flat(gc.grad), flat(ref.grad), 1e-12)
            close(analysis.hessian_eigs(mlp_loss, params, data, k=2, num_matvecs=20).eigenvalues, eig_ref, 1e-12)
        arrays = Batches.from_arrays(x, y, batch_size=128)
        assert [b[0].shape[0] for b in arrays._new_iterator()] == list(SIZES)
        close(analysis.gradient_curvature(mlp_loss, params, arrays).gTHg, ref.gTHg, 1e-12)


def test_weights_uniform_and_custom():
    with jax.enable_x64(True):
        params, x, y, batches = problem(np.float64)
        per_batch = [analysis.gradient_curvature(mlp_loss, params, *b).loss for b in batches]
        uniform = analysis.gradient_curvature(mlp_loss, params, Batches(batches, weights="uniform")).loss
        close(uniform, np.mean(per_batch), 1e-12)
        custom = analysis.gradient_curvature(mlp_loss, params, Batches(batches, weights=lambda xb, yb: len(yb)))
        close(custom.loss, analysis.gradient_curvature(mlp_loss, params, x, y).loss, 1e-12)
        # block= and interpolate pass through to the source path too.
        block = analysis.gradient_curvature(mlp_loss, params, Batches(batches), block="out")
        close(block.gTHg, analysis.gradient_curvature(mlp_loss, params, x, y, block="out").gTHg, 1e-12)
        other, alphas = like(params, 6), jnp.linspace(0, 1, 3)
        close(analysis.interpolate(mlp_loss, params, other, alphas, Batches(batches)),
              analysis.interpolate(mlp_loss, params, other, alphas, x, y), 1e-12)


def test_one_kernel_per_batch_shape_and_deterministic():
    params, _, _, batches = problem(np.float32)
    data = Batches(batches)
    v = like(params, 4)

    def loss(p, x, y):  # a new function: nothing compiled for it yet
        return mlp_loss(p, x, y)

    before = _accumulate_batch._cache_size()
    first = analysis.hvp(loss, params, v, data)
    assert _accumulate_batch._cache_size() - before == 2  # batches of 128 and of 44
    second = analysis.hvp(loss, params, like(params, 5), data)
    assert _accumulate_batch._cache_size() - before == 2  # new values, no retrace
    np.testing.assert_array_equal(flat(analysis.hvp(loss, params, v, data)), flat(first))
    assert not np.array_equal(flat(first), flat(second))
    # Lanczos: one pass per product, the same two kernels on every pass, whatever num_matvecs.
    analysis.hessian_eigs(loss, params, data, k=2, num_matvecs=10)
    after_eigs = _accumulate_batch._cache_size()
    assert after_eigs - before == 4  # the (1, n) products of Lanczos and the (2, n) of the residuals
    analysis.hessian_eigs(loss, params, data, k=2, num_matvecs=25)
    steps = _stacked_step._cache_size()  # its basis has num_matvecs + 1 rows: one compilation per Krylov size
    analysis.hessian_eigs(loss, params, data, k=2, num_matvecs=25, key=jax.random.PRNGKey(1))
    assert _accumulate_batch._cache_size() == after_eigs and _stacked_step._cache_size() == steps


def test_progress_bar(capsys):
    params, _, _, batches = problem(np.float32)
    analysis.gradient_curvature(mlp_loss, params, Batches(batches, progress=True))
    assert "gradient_curvature: pass 2" in capsys.readouterr().err


def test_sources_that_cannot_be_passed_over_again_are_refused():
    params, x, y, batches = problem(np.float32)
    with pytest.raises(TypeError, match="one-shot iterator.*generator function itself"):
        Batches(b for b in batches)
    with pytest.raises(TypeError, match="one-shot iterator"):
        Batches(iter(batches))
    with pytest.raises(TypeError, match="from_arrays"):
        Batches(x)
    with pytest.raises(TypeError, match="tuple of arrays, which is one batch"):
        Batches((x, y))
    with pytest.raises(TypeError, match="neither iterable nor callable"):
        Batches(3)
    with pytest.raises(ValueError, match="weights='often' is invalid"):
        Batches(batches, weights="often")
    with pytest.raises(TypeError, match="progress='yes' is invalid"):
        Batches(batches, progress="yes")
    shrinking = iter([batches, batches[:2]])
    with pytest.raises(ValueError, match="changed between passes: pass 1 yielded 3 batches.*pass 2 2"):
        analysis.gradient_curvature(mlp_loss, params, Batches(lambda: iter(next(shrinking))))
    exhausted = iter(batches)
    with pytest.raises(ValueError, match="no batch on pass 2.*fresh iterator"):
        analysis.gradient_curvature(mlp_loss, params, Batches(lambda: exhausted))
    with pytest.raises(ValueError, match="arrays sharing a leading example axis"):
        Batches.from_arrays(x, y[:10], batch_size=8)
    with pytest.raises(ValueError, match="batch_size=0 is invalid"):
        Batches.from_arrays(x, y, batch_size=0)


def test_bad_batches_are_named_as_they_are_consumed():
    params, x, y, batches = problem(np.float32)

    def run(source, **kw):
        return analysis.hessian_trace(mlp_loss, params, Batches(source, **kw), num_matvecs=6)

    with pytest.raises(ValueError, match="yielded no batch"):
        run([])
    with pytest.raises(TypeError, match="batch 0 of the data source is a dict; expected a tuple of arrays"):
        run([{"x": x, "y": y}])
    with pytest.raises(TypeError, match=r"batch 1 of the data source: batch\[1\] is a str"):
        run([batches[0], (x[:3], "labels")])
    with pytest.raises(ValueError, match="batch 1 of the data source has structure .* the first batch had"):
        run([batches[0], (x[:3],)])
    with pytest.raises(ValueError, match="batch 2 of the data source has structure"):
        run([batches[0], batches[1], (x[:3].astype(np.float16), y[:3])])
    bad = x[256:].copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"batch 2 of the data source: batch\[0\] contains 1 NaN/inf"):
        run([batches[0], batches[1], (bad, y[256:])])
    with pytest.raises(ValueError, match=r"batch 1 of the data source: batch\[0\] has shape \(0, 4\)"):
        run([batches[0], (x[:0], y[:0])])
    with pytest.raises(ValueError, match="batch 0 of the data source: batch arrays disagree on their leading axis"):
        run([(x[:5], y[:4])])
    with pytest.raises(ValueError, match="batch 0 of the data source: loss_fn.*failed"):
        run([(x[:5, :3], y[:5])])
    with pytest.raises(ValueError, match=r"weights\(\*batch\)=-1.0 is invalid"):
        run(batches, weights=lambda xb, yb: -1.0)
    with pytest.raises(ValueError, match="sum to 0.0"):
        run(batches, weights=lambda xb, yb: 0.0)
    data = Batches(batches)
    with pytest.raises(ValueError, match="drop microbatched=True"):
        analysis.hessian_trace(mlp_loss, params, data, microbatched=True)
    with pytest.raises(TypeError, match="replaces all the data arguments"):
        analysis.hessian_trace(mlp_loss, params, data, y)
    with pytest.raises(TypeError, match="takes data arrays, not a Batches data source"):
        analysis.classify_critical_point(mlp_loss, params, data)
    with pytest.raises(ValueError, match="params leaf 'out/b' contains 1 NaN/inf"):
        bad_params = {**params, "out": {**params["out"], "b": params["out"]["b"].at[0].set(jnp.inf)}}
        analysis.hessian_trace(mlp_loss, bad_params, data)
