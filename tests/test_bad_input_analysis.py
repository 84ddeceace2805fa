"""Bad input to every public entry point of ``analysis`` raises a ``ValueError``/``TypeError`` that names the
offending argument or value: no silent NaN, no raw JAX traceback. Valid input still works inside a user's ``jit``.

Tiny problems only: a 3-parameter quadratic and a 2-3-1 MLP held in a dict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from analysis import plots
from analysis.monitor import CurvatureMonitor

NAN, INF = float("nan"), float("inf")


def quad_loss(p, amat, bvec):
    w = p["w"]
    return 0.5 * w @ amat @ w + bvec @ w


QP = {"w": jnp.array([1.0, -2.0, 0.5])}
AMAT, BVEC = jnp.diag(jnp.array([1.0, 2.0, 3.0])), jnp.array([0.1, 0.2, 0.3])
QUAD = (AMAT, BVEC)


def mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["l0"]["kernel"] + p["l0"]["bias"])
    return jnp.mean((h @ p["l1"]["kernel"] + p["l1"]["bias"] - y) ** 2)


_rng = np.random.default_rng(0)
MP = {"l0": {"kernel": jnp.asarray(_rng.standard_normal((2, 3)), jnp.float32), "bias": jnp.zeros(3)},
      "l1": {"kernel": jnp.asarray(_rng.standard_normal((3, 1)), jnp.float32), "bias": jnp.zeros(1)}}
X = jnp.asarray(_rng.standard_normal((8, 2)), jnp.float32)
Y = jnp.asarray(_rng.standard_normal((8, 1)), jnp.float32)


def with_nan(tree, value=NAN):
    """The pytree with its first leaf's first entry replaced by ``value``."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(value)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def elman(w, h, x):
    return jnp.tanh(w @ h + x)


W2, H2, XS = 0.5 * jnp.eye(2), jnp.zeros(2), jnp.ones((4, 2))


def encoder(w, x):
    return jnp.tanh(x @ w)


EW, EX = 0.5 * jnp.ones((3, 2)), jnp.ones((4, 3))
SD = analysis.SpectralDensity(jnp.array([[1.0, 2.0]]), jnp.array([[0.5, 0.5]]))
KEY = jax.random.PRNGKey(0)
MICRO_X, MICRO_Y = jnp.ones((2, 4, 2)), jnp.ones((2, 4, 1))

# (id, call, error type, regular expression the message must match)
CASES = [
    # hvp: the vector joins the finiteness check; dtypes must match (jvp needs it)
    ("hvp-nan-v", lambda: analysis.hvp(quad_loss, QP, with_nan(QP), *QUAD), ValueError,
     r"^v leaf 'w' contains 1 NaN/inf"),
    ("hvp-inf-v-mlp", lambda: analysis.hvp(mlp_loss, MP, with_nan(MP, INF), X, Y), ValueError,
     r"v leaf 'l0/bias' contains 1 NaN/inf"),
    ("hvp-int-v", lambda: analysis.hvp(quad_loss, QP, {"w": jnp.arange(3)}, *QUAD), TypeError,
     r"v leaf 'w' has dtype int32; expected float32"),
    # batches whose lengths disagree: a clear error naming the shapes instead of a raw JAX one
    ("hvp-ragged-batch", lambda: analysis.hvp(mlp_loss, MP, MP, X, Y[:6]), ValueError,
     r"batch\[0\]: \(8, 2\), batch\[1\]: \(6, 1\).*different leading lengths \(axis 0\): 8, 6"),
    ("eigs-ragged-batch", lambda: analysis.hessian_eigs(mlp_loss, MP, X[:5], Y, k=1), ValueError,
     r"failed on the batch: batch shapes batch\[0\]: \(5, 2\)"),
    ("curvature-ragged-batch", lambda: analysis.gradient_curvature(mlp_loss, MP, X, Y[:7]), ValueError,
     r"different leading lengths"),
    ("interpolate-ragged-batch", lambda: analysis.interpolate(mlp_loss, MP, MP, jnp.zeros(2), X, Y[:3]),
     ValueError, r"batch\[1\]: \(3, 1\)"),
    ("dense-ragged-microbatches",
     lambda: analysis.dense_hessian(mlp_loss, MP, MICRO_X, MICRO_Y[:, :3], microbatched=True), ValueError,
     r"failed on one microbatch.*per-microbatch sizes \(axis 1\): 4, 3"),
    ("trace-microbatch-count",
     lambda: analysis.hessian_trace(mlp_loss, MP, MICRO_X, jnp.ones((3, 4, 1)), microbatched=True), ValueError,
     r"disagree on the number of microbatches: \[2, 3\]"),
    ("microbatched-not-bool", lambda: analysis.gradient_curvature(mlp_loss, MP, X, Y, microbatched="yes"),
     TypeError, r"microbatched='yes' is invalid; expected True or False"),
    # PRNG keys
    ("eigs-int-key", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=1, key=0), TypeError,
     r"key must be a JAX PRNG key.*got int 0"),
    ("eigs-raw-key-shape", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=1, key=jnp.zeros(3, jnp.uint32)),
     ValueError, r"key has dtype uint32 and shape \(3,\)"),
    ("eigs-key-batch", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=1,
                                                     key=jax.random.split(jax.random.key(0), 2)),
     ValueError, r"key has shape \(2,\); expected a single typed PRNG key"),
    ("trace-float-key", lambda: analysis.hessian_trace(quad_loss, QP, *QUAD, num_matvecs=4, key=1.5), TypeError,
     r"key must be a JAX PRNG key"),
    ("density-int-key", lambda: analysis.spectral_density(quad_loss, QP, *QUAD, num_matvecs=2, key=3), TypeError,
     r"key must be a JAX PRNG key"),
    ("monitor-init-key", lambda: CurvatureMonitor(lanczos_steps=2).init(QP, key=7), TypeError,
     r"key must be a JAX PRNG key"),
    ("direction-int-key", lambda: analysis.filter_normalized_direction(0, MP), TypeError,
     r"key must be a JAX PRNG key"),
    ("hessian-direction-dense-key", lambda: analysis.hessian_direction(quad_loss, QP, *QUAD, method="dense", key=5),
     TypeError, r"key must be a JAX PRNG key"),
    ("escape-direction-key-shape",
     lambda: analysis.escape_direction(quad_loss, QP, *QUAD, key=jnp.zeros((2, 2), jnp.uint32)), ValueError,
     r"key has dtype uint32 and shape \(2, 2\)"),
    ("radius-int-key", lambda: analysis.spectral_radius(jnp.eye(3), key=0), TypeError,
     r"key must be a JAX PRNG key"),
    ("penalty-estimate-key", lambda: analysis.contractive_penalty_estimate(encoder, EW, EX, key=2), TypeError,
     r"key must be a JAX PRNG key"),
    # hyper-parameters
    ("eigs-k-too-large", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=4), ValueError,
     r"k=4 asks for 4 eigenpairs but the Hessian has only n=3"),
    ("eigs-k-both-too-large", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=2, which="both"), ValueError,
     r"k=2 asks for 4 eigenpairs"),
    ("eigs-k-bool", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=True), TypeError,
     r"k must be an int, got True"),
    ("eigs-reorthogonalise", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=1, reorthogonalise="some"),
     ValueError, "reorthogonalise='some' is invalid; expected one of 'partial', 'full'"),
    ("eigs-which", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=1, which="top"), ValueError,
     r"which='top' is invalid; expected one of 'largest'"),
    ("eigs-num-matvecs-zero", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=1, num_matvecs=0), ValueError,
     r"num_matvecs=0 is invalid"),
    ("eigs-missing-block", lambda: analysis.hessian_eigs(mlp_loss, MP, X, Y, k=1, block="l2"), ValueError,
     r"block='l2' selects no parameter; available leaf paths"),
    ("eigs-block-type", lambda: analysis.hessian_eigs(mlp_loss, MP, X, Y, k=1, block=3), TypeError,
     r"block=3 is invalid"),
    ("eigs-return-vectors", lambda: analysis.hessian_eigs(quad_loss, QP, *QUAD, k=1, return_vectors="yes"),
     TypeError, r"return_vectors='yes' is invalid"),
    ("spectrum-missing-block-list", lambda: analysis.hessian_spectrum(mlp_loss, MP, X, Y, block=["l9"]), ValueError,
     r"block=\['l9'\] selects no parameter"),
    ("trace-negative-matvecs", lambda: analysis.hessian_trace(quad_loss, QP, *QUAD, num_matvecs=-3), ValueError,
     r"num_matvecs=-3 is invalid"),
    ("trace-missing-block", lambda: analysis.hessian_trace(mlp_loss, MP, X, Y, num_matvecs=4, block="l0/weights"),
     ValueError, r"block='l0/weights' selects no parameter"),
    ("density-probes-zero", lambda: analysis.spectral_density(quad_loss, QP, *QUAD, num_matvecs=2, num_probes=0),
     ValueError, r"num_probes=0 is invalid"),
    ("density-probes-bool", lambda: analysis.spectral_density(quad_loss, QP, *QUAD, num_matvecs=2,
                                                              num_probes=False),
     TypeError, r"num_probes must be an int, got False"),
    ("density-matvecs-too-many", lambda: analysis.spectral_density(quad_loss, QP, *QUAD, num_matvecs=4), ValueError,
     r"num_matvecs=4 exceeds the number of parameters n=3"),
    ("density-sigma-nan", lambda: SD.density(jnp.linspace(0, 3, 5), sigma=NAN), ValueError,
     r"sigma=nan is invalid; expected a finite number"),
    ("density-grid-nan", lambda: SD.density(jnp.array([0.0, NAN, 2.0]), sigma=0.1), ValueError,
     r"^grid contains 1 NaN/inf"),
    ("wasserstein-eigenvalues-nan", lambda: SD.wasserstein1(jnp.array([1.0, INF])), ValueError,
     r"^eigenvalues contains 1 NaN/inf"),
    ("wasserstein-discrete-lengths",
     lambda: analysis.wasserstein1_discrete(jnp.ones(2), jnp.ones(3) / 3, jnp.ones(2), jnp.ones(2) / 2),
     ValueError, r"wx has shape \(3,\); expected \(2,\)"),
    ("condition-rtol-nan", lambda: analysis.condition_number(jnp.array([1.0, 2.0]), rtol=NAN), ValueError,
     r"rtol=nan is invalid"),
    ("condition-atol-negative", lambda: analysis.condition_number(jnp.array([1.0, 2.0]), atol=-1), ValueError,
     r"atol=-1.0 is invalid; expected a number >= 0"),
    ("monitor-learning-rate-inf", lambda: CurvatureMonitor(learning_rate=INF), ValueError,
     r"learning_rate=inf is invalid; expected a finite number"),
    ("monitor-learning-rate-bool", lambda: CurvatureMonitor(learning_rate=True), TypeError,
     r"learning_rate must be a real number, got bool"),
    ("monitor-init-nan-params", lambda: CurvatureMonitor(lanczos_steps=2).init(with_nan(QP)), ValueError,
     r"params leaf 'w' contains 1 NaN/inf"),
    ("monitor-measure-state",
     lambda: CurvatureMonitor(lanczos_steps=2).measure(mlp_loss, MP, CurvatureMonitor(lanczos_steps=2).init(QP),
                                                       X, Y),
     ValueError, r"state must be the MonitorState of monitor.init\(params\).*shape \(3,\)"),
    ("monitor-measure-ragged",
     lambda: CurvatureMonitor(lanczos_steps=2).measure(mlp_loss, MP, CurvatureMonitor(lanczos_steps=2).init(MP),
                                                       X, Y[:2]),
     ValueError, r"different leading lengths"),
    # landscapes: directions and coefficients
    ("slice-inf-alphas", lambda: analysis.loss_along_direction(quad_loss, QP, QP, jnp.array([0.0, INF]), *QUAD),
     ValueError, r"^alphas contains 1 NaN/inf"),
    ("surface-nan-d2", lambda: analysis.loss_surface_2d(mlp_loss, MP, MP, with_nan(MP), jnp.zeros(2),
                                                        jnp.zeros(2), X, Y),
     ValueError, r"^d2 leaf 'l0/bias' contains 1 NaN/inf"),
    ("slice-bool-direction", lambda: analysis.loss_along_direction(quad_loss, QP, {"w": jnp.ones(3, bool)},
                                                                   jnp.zeros(2), *QUAD),
     TypeError, r"direction leaf 'w' has dtype bool"),
    ("filter-normalize-nan", lambda: analysis.filter_normalize(with_nan(MP), MP), ValueError,
     r"^direction leaf 'l0/bias' contains 1 NaN/inf"),
    ("filter-normalize-nan-params", lambda: analysis.filter_normalize(MP, with_nan(MP, INF)), ValueError,
     r"^params leaf 'l0/bias' contains 1 NaN/inf"),
    ("random-direction-nan-params", lambda: analysis.filter_normalized_direction(KEY, with_nan(MP)), ValueError,
     r"params leaf 'l0/bias' contains 1 NaN/inf"),
    ("random-direction-ignore-vectors", lambda: analysis.filter_normalized_direction(KEY, MP, ignore_vectors="no"),
     TypeError, r"ignore_vectors='no' is invalid"),
    ("second-difference-nan", lambda: analysis.second_difference([0.0, 1.0, 2.0], [1.0, NAN, 1.0]), ValueError,
     r"^values contains 1 NaN/inf"),
    # critical points
    ("critical-points-nan-start",
     lambda: analysis.find_critical_points(quad_loss, {"w": jnp.stack([QP["w"], QP["w"].at[2].set(NAN)])},
                                           *QUAD, steps=2),
     ValueError, r"^starts leaf 'w' contains 1 NaN/inf"),
    ("critical-point-gtol-nan", lambda: analysis.find_critical_point(quad_loss, QP, *QUAD, gtol=NAN), ValueError,
     r"gtol=nan is invalid"),
    ("critical-point-gtol-inf", lambda: analysis.find_critical_point(quad_loss, QP, *QUAD, gtol=INF), ValueError,
     r"gtol=inf is invalid"),
    ("critical-point-steps-bool", lambda: analysis.find_critical_point(quad_loss, QP, *QUAD, steps=True), TypeError,
     r"steps must be an int, got True"),
    ("critical-point-ragged", lambda: analysis.find_critical_point(mlp_loss, MP, X, Y[:4], steps=2), ValueError,
     r"batch\[1\]: \(4, 1\)"),
    ("classify-atol-nan", lambda: analysis.classify_critical_point(quad_loss, QP, *QUAD, atol=NAN), ValueError,
     r"atol=nan is invalid"),
    ("classify-rtol-negative", lambda: analysis.classify_critical_point(quad_loss, QP, *QUAD, rtol=-0.1),
     ValueError, r"rtol=-0.1 is invalid"),
    ("index-missing-block", lambda: analysis.hessian_index(mlp_loss, MP, X, Y, block="l3"), ValueError,
     r"block='l3' selects no parameter"),
    ("hessian-direction-which", lambda: analysis.hessian_direction(quad_loss, QP, *QUAD, which="middle"),
     ValueError, r"which='middle' is invalid"),
    # dynamics
    ("radius-nan", lambda: analysis.spectral_radius(jnp.eye(2).at[0, 1].set(NAN)), ValueError,
     r"^a contains 1 NaN/inf"),
    ("radius-non-square", lambda: analysis.spectral_radius(jnp.ones((2, 3))), ValueError,
     r"a has shape \(2, 3\); expected a non-empty square matrix"),
    ("radius-rank-3", lambda: analysis.spectral_radius(jnp.ones((2, 2, 2))), ValueError,
     r"a has shape \(2, 2, 2\)"),
    ("radius-tol-negative", lambda: analysis.spectral_radius(jnp.eye(3), method="arnoldi", num_matvecs=2, tol=-1),
     ValueError, r"tol=-1.0 is invalid; expected a positive number"),
    ("radius-matvec-size", lambda: analysis.spectral_radius(lambda v, m: m @ v, jnp.eye(3), size=4), ValueError,
     r"matvec a\(v, \*args\) failed for v of shape \(4,\)"),
    ("radius-matvec-nan-args", lambda: analysis.spectral_radius(lambda v, m: m @ v, with_nan(jnp.eye(3)), size=3),
     ValueError, r"^args leaf '0' contains 1 NaN/inf"),
    ("contraction-inf-w", lambda: analysis.contraction_bound(jnp.eye(2) * INF), ValueError,
     r"^w contains 4 NaN/inf"),
    ("contraction-leak-nan", lambda: analysis.contraction_bound(jnp.eye(2), NAN), ValueError,
     r"leak=nan is invalid"),
    ("singular-values-non-square", lambda: analysis.singular_values(jnp.ones((2, 3))), ValueError,
     r"jacobians has shape \(2, 3\); expected a non-empty stack \(\.\.\., n, n\)"),
    ("singular-values-nan", lambda: analysis.singular_values(with_nan(jnp.ones((3, 2, 2)))), ValueError,
     r"^jacobians contains 1 NaN/inf"),
    ("products-rank-2", lambda: analysis.jacobian_products(jnp.eye(2)), ValueError,
     r"jacobians has shape \(2, 2\); expected a non-empty stack \(T, n, n\)"),
    ("products-inf", lambda: analysis.jacobian_products(with_nan(jnp.ones((3, 2, 2)), INF)), ValueError,
     r"^jacobians contains 1 NaN/inf"),
    ("jacobians-nan-h0", lambda: analysis.state_jacobians(elman, W2, with_nan(H2), XS), ValueError,
     r"^h0 contains 1 NaN/inf"),
    ("jacobians-nan-params", lambda: analysis.state_jacobians(elman, with_nan(W2), H2, XS), ValueError,
     r"^params contains 1 NaN/inf"),
    ("jacobians-int-h0", lambda: analysis.state_jacobians(elman, W2, jnp.zeros(2, jnp.int32), XS), TypeError,
     r"h0 has dtype int32; expected a floating-point state"),
    ("jacobians-input-width", lambda: analysis.state_jacobians(elman, W2, H2, jnp.ones((4, 3))), ValueError,
     r"step_fn\(params, h, x\) failed for h0 of shape \(2,\) and one input x of shape \(3,\)"),
    ("distance-nan-xs", lambda: analysis.trajectory_distance(elman, W2, H2, H2 + 1, with_nan(XS)), ValueError,
     r"^xs contains 1 NaN/inf"),
    ("distance-step-shape", lambda: analysis.trajectory_distance(lambda w, h, x: jnp.sum(h), W2, H2, H2 + 1, XS),
     ValueError, r"must return the next state with the shape and dtype of h_a, \(2,\) float32; it returned \(\)"),
    ("causal-nan-xs", lambda: analysis.causal_structure(lambda x: x, with_nan(jnp.ones((3, 2)))), ValueError,
     r"^xs contains 1 NaN/inf"),
    ("causal-atol-nan", lambda: analysis.causal_structure(lambda x: x, jnp.ones((3, 2)), atol=NAN), ValueError,
     r"atol=nan is invalid"),
    ("causal-int-xs", lambda: analysis.causal_structure(lambda x: x, jnp.ones((3, 2), jnp.int32)), TypeError,
     r"xs has dtype int32; expected a floating-point dtype"),
    ("causal-nan-args", lambda: analysis.causal_structure(lambda x, w: x @ w, jnp.ones((3, 2)),
                                                          with_nan(jnp.ones((2, 2)))),
     ValueError, r"^args leaf '0' contains 1 NaN/inf"),
    # penalties
    ("penalty-encoder-shapes", lambda: analysis.contractive_penalty(encoder, EW, jnp.ones((4, 5))), ValueError,
     r"encoder\(params, x\[0\]\) failed for one example of shape \(5,\) \(x has shape \(4, 5\)\)"),
    ("penalty-nan-x", lambda: analysis.contractive_penalty(encoder, EW, with_nan(EX)), ValueError,
     r"^x contains 1 NaN/inf"),
    ("penalty-estimate-probes", lambda: analysis.contractive_penalty_estimate(encoder, EW, EX, num_probes=1),
     ValueError, r"num_probes=1 is invalid; expected an integer >= 2"),
    ("projection-variance-nan-params", lambda: analysis.projection_variance(encoder, with_nan(EW), EX), ValueError,
     r"params leaf '<root>' contains 1 NaN/inf"),
    ("sigmoid-penalty-inf-weights",
     lambda: analysis.sigmoid_contractive_penalty(with_nan(jnp.ones((3, 2)), INF), jnp.zeros(2), EX), ValueError,
     r"^weights contains 1 NaN/inf"),
    # plots
    ("plot-eigenvalues-lengths", lambda: plots.eigenvalues_figure(np.ones(3), np.ones(2)), ValueError,
     r"residuals has shape \(2,\); expected 3 points, like values"),
    ("plot-landscape-shape", lambda: plots.landscape_2d_figure(np.ones(3), np.ones(4), np.ones((4, 3))), ValueError,
     r"surface has shape \(4, 3\); expected \(len\(alphas\), len\(betas\)\) = \(3, 4\)"),
    ("plot-slices-lengths", lambda: plots.slices_figure(np.ones(5), {"top": np.ones(4)}), ValueError,
     r"slices\['top'\] has shape \(4,\); expected 5 points"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named(user_folder, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_failed_loss_trace_is_chained_to_the_original_error(user_folder):
    with pytest.raises(ValueError) as info:
        analysis.hvp(mlp_loss, MP, MP, X, Y[:6])
    assert isinstance(info.value.__cause__, TypeError)  # the raw JAX error stays visible, chained
    assert "The error was TypeError" in str(info.value)


def test_batch_arguments_need_not_share_a_leading_length(user_folder):
    """In ``loss_fn(params, *batch)`` a batch argument is any array: a (3, 3) matrix next to a (5,) vector is fine."""
    def loss(p, amat, extra):
        return quad_loss(p, amat, BVEC) + jnp.sum(extra)

    hv = analysis.hvp(loss, QP, QP, AMAT, jnp.ones(5))
    np.testing.assert_array_equal(np.asarray(hv["w"]), np.asarray(AMAT @ QP["w"]))


def test_typed_key_in_the_batch_is_accepted(user_folder):
    """A typed PRNG key among the batch arguments (dropout-style losses) is neither data to check nor an error."""
    def loss(p, amat, bvec, key):
        return quad_loss(p, amat, bvec) + 0.0 * jax.random.normal(key)

    hv = analysis.hvp(loss, QP, QP, *QUAD, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(hv["w"]), np.asarray(AMAT @ QP["w"]))


def test_valid_input_inside_a_users_jit(user_folder):
    """Checks skip traced values (they cannot be inspected) and keep the trace-time ones: valid input still works
    under ``jax.jit``, with traced parameters, directions, keys, matrices and states."""
    @jax.jit
    def run(p, v, key, x, y, w, h0):
        hv = analysis.hvp(mlp_loss, p, v, x, y)
        eigs = analysis.hessian_eigs(mlp_loss, p, x, y, k=1, key=key, num_matvecs=4)
        gc = analysis.gradient_curvature(mlp_loss, p, x, y)
        slice_ = analysis.loss_along_direction(mlp_loss, p, v, jnp.array([0.0, 0.5]), x, y)
        direction = analysis.filter_normalized_direction(key, p)
        radius = analysis.spectral_radius(w).value
        states, jacs = analysis.state_jacobians(elman, w, h0, XS)
        penalty = analysis.contractive_penalty_estimate(encoder, EW, EX, key=key, num_probes=2).estimate
        return hv, eigs.eigenvalues, gc.gTHg, slice_, direction, radius, jacs, penalty

    out = run(MP, MP, KEY, X, Y, W2, H2)
    eager = (analysis.hvp(mlp_loss, MP, MP, X, Y),
             analysis.hessian_eigs(mlp_loss, MP, X, Y, k=1, key=KEY, num_matvecs=4).eigenvalues,
             analysis.gradient_curvature(mlp_loss, MP, X, Y).gTHg,
             analysis.loss_along_direction(mlp_loss, MP, MP, jnp.array([0.0, 0.5]), X, Y),
             analysis.filter_normalized_direction(KEY, MP),
             analysis.spectral_radius(W2).value,
             analysis.state_jacobians(elman, W2, H2, XS)[1],
             analysis.contractive_penalty_estimate(encoder, EW, EX, key=KEY, num_probes=2).estimate)
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(eager)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_monitor_measure_inside_jit(user_folder):
    monitor = CurvatureMonitor(lanczos_steps=2)
    state = monitor.init(MP, jax.random.PRNGKey(1))
    loss, _, record, _ = jax.jit(lambda p, s, x, y: monitor.measure(mlp_loss, p, s, x, y))(MP, state, X, Y)
    np.testing.assert_allclose(float(loss), float(mlp_loss(MP, X, Y)), rtol=1e-6)
    assert np.isfinite(float(record.top_eigenvalue))
