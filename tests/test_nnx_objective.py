"""curvature_objective: NNX models with BatchNorm and Dropout as pure loss functions of their parameters.

References: the models' own outputs (``model.eval()`` and training mode without state update), and hand-written
forward passes from the same weights (``jax.lax.conv_general_dilated``, explicit batch-norm, layer-norm and
attention formulas) differentiated by ``jax.hessian`` / ``jax.jvp(jax.grad)``; Lanczos against dense ``eigh``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import analysis
from jaxdl.models.mlp import split
from jaxdl.models.objective import curvature_objective
from jaxdl.models.resnet import ResNet20
from jaxdl.models.transformer import TransformerClassifier

EPS = 1e-5  # nnx.BatchNorm's epsilon
MODES = ("running", "batch")


def xent(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


class TinyCNN(nnx.Module):
    """conv -> BN -> relu -> strided conv -> BN -> relu -> mean pool -> Dropout -> linear."""

    def __init__(self, *, rngs, dtype=jnp.float32, rate=0.5, dropout_rngs=True):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=dtype)
        self.conv1 = nnx.Conv(2, 3, (3, 3), padding="SAME", **kw)
        self.bn1 = nnx.BatchNorm(3, **kw)
        self.conv2 = nnx.Conv(3, 3, (3, 3), strides=2, padding="SAME", use_bias=False, **kw)
        self.bn2 = nnx.BatchNorm(3, **kw)
        self.drop = nnx.Dropout(rate, rngs=rngs if dropout_rngs else None)
        self.head = nnx.Linear(3, 2, **kw)

    def __call__(self, x):
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = jax.nn.relu(self.bn2(self.conv2(h)))
        return self.head(self.drop(jnp.mean(h, axis=(1, 2))))


# ---- hand-written references -------------------------------------------------------------------------------------

def conv(x, kernel, stride=1):
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def batch_norm(h, w, stats, mode):
    """``(h - mean) / sqrt(var + eps) * scale + bias`` with the running (``stats``) or the batch statistics."""
    if mode == "running":
        mean, var = stats["mean"], stats["var"]
    else:
        mean = jnp.mean(h, axis=(0, 1, 2))
        var = jnp.mean((h - mean) ** 2, axis=(0, 1, 2))
    return (h - mean) / jnp.sqrt(var + EPS) * w["scale"] + w["bias"]


def tiny_cnn_hand(w, stats, mode, x, y):
    h = jax.nn.relu(batch_norm(conv(x, w["conv1"]["kernel"]) + w["conv1"]["bias"], w["bn1"], stats["bn1"], mode))
    h = jax.nn.relu(batch_norm(conv(h, w["conv2"]["kernel"], 2), w["bn2"], stats["bn2"], mode))
    return xent(jnp.mean(h, axis=(1, 2)) @ w["head"]["kernel"] + w["head"]["bias"], y)


def resnet_hand(w, stats, mode, x, y):
    h = jax.nn.relu(batch_norm(conv(x, w["stem"]["kernel"]), w["stem_bn"], stats["stem_bn"], mode))
    for i in sorted(w["blocks"]):
        b, s = w["blocks"][i], stats["blocks"][i]
        stride = 2 if "shortcut_conv" in b else 1
        g = jax.nn.relu(batch_norm(conv(h, b["conv1"]["kernel"], stride), b["bn1"], s["bn1"], mode))
        g = batch_norm(conv(g, b["conv2"]["kernel"]), b["bn2"], s["bn2"], mode)
        skip = h if "shortcut_conv" not in b else batch_norm(conv(h, b["shortcut_conv"]["kernel"], stride),
                                                             b["shortcut_bn"], s["shortcut_bn"], mode)
        h = jax.nn.relu(g + skip)
    return xent(jnp.mean(h, axis=(1, 2)) @ w["head"]["kernel"] + w["head"]["bias"], y)


def layer_norm(h, w, eps=1e-6):
    mean = jnp.mean(h, -1, keepdims=True)
    return (h - mean) / jnp.sqrt(jnp.mean((h - mean) ** 2, -1, keepdims=True) + eps) * w["scale"] + w["bias"]


def transformer_hand(w, x, y):
    h = w["embed"]["embedding"][x] + w["position"][: x.shape[1]]
    for i in sorted(w["blocks"]):
        b = w["blocks"][i]
        a, z = b["attention"], layer_norm(h, b["norm1"])
        q, k, v = (jnp.einsum("bld,dhk->blhk", z, a[n]["kernel"]) + a[n]["bias"] for n in ("query", "key", "value"))
        att = jax.nn.softmax(jnp.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(q.shape[-1]), axis=-1)
        heads = jnp.einsum("bhqt,bthk->bqhk", att, v)
        h = h + jnp.einsum("bqhk,hkd->bqd", heads, a["out"]["kernel"]) + a["out"]["bias"]
        z = jax.nn.gelu(layer_norm(h, b["norm2"]) @ b["hidden"]["kernel"] + b["hidden"]["bias"])
        h = h + z @ b["output"]["kernel"] + b["output"]["bias"]
    return xent(jnp.mean(layer_norm(h, w["norm"]), axis=1) @ w["head"]["kernel"] + w["head"]["bias"], y)


# ---- fixtures ----------------------------------------------------------------------------------------------------

def images(seed, n, size, channels, dtype, classes=2):
    kx, ky = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(kx, (n, size, size, channels), dtype),
            jax.random.randint(ky, (n,), 0, classes))


def built(factory, seed=0, dtype=jnp.float32):
    """``factory()``'s model with values drawn here in numpy: its initialisers never run (each would compile once
    per shape, seconds in all). Weights ``N(0, 1/fan_in)``, scales near 1, shifts near 0; BatchNorm running
    statistics away from their (0, 1) start, as after training, and in ``dtype`` (nnx.BatchNorm keeps float32)."""
    model = nnx.eval_shape(factory)
    rng = np.random.default_rng(seed)
    for i, (path, var) in enumerate(nnx.iter_graph(model)):
        if not isinstance(var, nnx.Variable):
            continue
        shape = var.get_value().shape
        if isinstance(var, nnx.RngKey):
            var.set_value(jax.random.key(seed + i))
        elif isinstance(var, nnx.RngCount):
            var.set_value(jnp.zeros(shape, jnp.uint32))
        elif isinstance(var, nnx.BatchStat):
            stat = rng.normal(0.0, 0.5, shape) if path[-1] == "mean" else rng.uniform(0.5, 2.0, shape)
            var.set_value(jnp.asarray(stat, dtype))
        elif path[-1] == "scale":
            var.set_value(jnp.asarray(1.0 + 0.2 * rng.standard_normal(shape), dtype))
        elif len(shape) == 1:
            var.set_value(jnp.asarray(0.2 * rng.standard_normal(shape), dtype))
        else:
            var.set_value(jnp.asarray(rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1])), dtype))
    return model


def weights_and_stats(model):
    return nnx.to_pure_dict(nnx.state(model, nnx.Param)), nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


@nnx.jit
def model_loss(model, x, y):
    return xent(model(x), y)


def own_loss(model, mode, x, y):
    """The model's own loss in ``mode`` with Dropout off, on a copy (training mode would update the copy's stats)."""
    view = nnx.clone(model)
    view.set_attributes(use_running_average=mode == "running", deterministic=True, raise_if_not_found=False)
    return model_loss(view, x, y)


def rel_err(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def param_paths(model):
    return sorted("/".join(map(str, p)) for p, v in nnx.iter_graph(model) if isinstance(v, nnx.Param))


def tiny_cnn(seed=0, dtype=jnp.float32, **kwargs):
    return built(lambda: TinyCNN(rngs=nnx.Rngs(0), dtype=dtype, **kwargs), seed, dtype)


def tiny_resnet(dtype=jnp.float32):
    return built(lambda: ResNet20(depth=8, width=2, num_classes=3, rngs=nnx.Rngs(0), dtype=dtype), 1, dtype)


def tiny_transformer(rate=0.0, dtype=jnp.float32):
    return built(lambda: TransformerClassifier(num_classes=3, max_length=6, vocab_size=11, dim=8, num_heads=2,
                                               mlp_dim=12, dropout=rate, rngs=nnx.Rngs(0), dtype=dtype), 2, dtype)


def tokens(seed, n=5, length=5):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.randint(kx, (n, length), 0, 11), jax.random.randint(ky, (n,), 0, 3)


# ---- (a) exactly the parameters ------------------------------------------------------------------------------------

def test_params_are_exactly_the_nnx_params():
    cases = [
        # conv1 kernel+bias, bn1 scale+bias, conv2 kernel, bn2 scale+bias, head kernel+bias: 9 arrays
        (tiny_cnn(), 9, 54 + 3 + 6 + 81 + 6 + 8, {"dropout": "off"}),
        # stem conv+bn 3, block 1: 6, blocks 2-3 with projection: 9 each, head 2
        (tiny_resnet(), 29, (27 * 2 + 4) + (2 * 9 * 4 + 8) + (9 * 2 * 4 + 9 * 16 + 16 + 2 * 4 + 8)
         + (9 * 4 * 8 + 9 * 64 + 32 + 4 * 8 + 16) + (8 * 3 + 3), {}),
        # embed, position, block (2 LN, q/k/v/out, 2 linears: 16 arrays), final LN, head
        (tiny_transformer(0.1), 1 + 1 + 16 + 2 + 2,
         88 + 48 + (16 + 3 * (64 + 8) + 64 + 8 + 16 + (96 + 12) + (96 + 8)) + 16 + 27, {"dropout": "off"}),
    ]
    for model, arrays, count, kwargs in cases:
        loss_fn, params = curvature_objective(model, xent, batch_norm="running", **kwargs)
        assert len(jax.tree.leaves(params)) == arrays
        assert analysis.num_params(params) == count
        paths = sorted("/".join(map(str, p)) for p, _ in nnx.to_flat_state(params))
        assert paths == param_paths(model)
        assert not any(p.endswith(("/mean", "/var")) or "rngs" in p for p in paths)
    # the full ResNet-20 (projection shortcuts): 0.27M parameters, as in He et al. (2016), sec. 4.2
    full = nnx.eval_shape(lambda: ResNet20(rngs=nnx.Rngs(0)))
    assert sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(full, nnx.Param))) == (432 + 32) + 3 * (2 * 2304 + 64) + (
        4608 + 9216 + 128 + 512 + 64) + 2 * (2 * 9216 + 128) + (18432 + 36864 + 256 + 2048 + 128) + 2 * (
        2 * 36864 + 256) + 650 == 272474


# ---- (b) same value as the model itself ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_loss_equals_the_models_own_loss(mode):
    x, y = images(1, 6, 8, 3, jnp.float32, classes=3)
    resnet = tiny_resnet()
    loss_fn, params = curvature_objective(resnet, xent, batch_norm=mode)
    np.testing.assert_allclose(jax.jit(loss_fn)(params, x, y), own_loss(resnet, mode, x, y), rtol=1e-6)

    xc, yc = images(2, 6, 6, 2, jnp.float32)
    cnn = tiny_cnn(0)
    loss_fn, params = curvature_objective(cnn, xent, batch_norm=mode, dropout="off")
    value = loss_fn(params, xc, yc)  # eager, as a user would call it first
    np.testing.assert_allclose(value, own_loss(cnn, mode, xc, yc), rtol=1e-6)
    other_fn, _ = curvature_objective(cnn, xent, batch_norm=MODES[1 - MODES.index(mode)], dropout="off")
    assert abs(float(jax.jit(other_fn)(params, xc, yc) - value)) > 1e-3  # two different objectives
    if mode == "running":
        cnn.eval()
        np.testing.assert_allclose(value, model_loss(cnn, xc, yc), rtol=1e-6)

    t, (xt, yt) = tiny_transformer(), tokens(3)
    loss_fn, params = curvature_objective(t, xent, batch_norm=mode)
    np.testing.assert_allclose(jax.jit(loss_fn)(params, xt, yt), model_loss(t, xt, yt), rtol=1e-6)


# ---- (c) dense Hessian against jax.hessian of the hand-written objective, (d) Lanczos against its eigh ---------

@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_tiny_cnn_hessian_matches_hand_written_objective(mode, x64):
    dtype, tol = (jnp.float64, 1e-10) if x64 else (jnp.float32, 1e-4)
    with jax.enable_x64(x64):
        x, y = images(4, 6, 6, 2, dtype)
        model = tiny_cnn(0, dtype)
        loss_fn, params = curvature_objective(model, xent, batch_norm=mode, dropout="off")
        w, stats = weights_and_stats(model)
        flat, unravel = ravel_pytree(w)
        np.testing.assert_array_equal(flat, ravel_pytree(params)[0])  # same coordinates, same order

        def hand(v, stats, x, y):
            return tiny_cnn_hand(unravel(v), stats, mode, x, y)

        np.testing.assert_allclose(loss_fn(params, x, y), hand(flat, stats, x, y), rtol=10 * tol)
        H = analysis.dense_hessian(loss_fn, params, x, y)
        H_ref = jax.jit(jax.hessian(hand))(flat, stats, x, y)
        assert H.dtype == dtype and H.shape == (flat.size, flat.size)
        assert rel_err(H, H_ref) < tol
        if x64 and mode == "batch":  # (d) Lanczos on the adapter's loss against dense eigh of the reference
            dense = jnp.linalg.eigh(H_ref)[0]
            eigs = analysis.hessian_eigs(loss_fn, params, x, y, k=3, which="both", num_matvecs=flat.size)
            np.testing.assert_allclose(eigs.eigenvalues, jnp.concatenate([dense[:3], dense[-3:]]),
                                       rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(dense))))


def test_resnet_hvp_matches_hand_written_objective():
    """Batch statistics (the harder objective) through skip connections and projections; the running-average
    objective's value is checked in test_loss_equals_the_models_own_loss, its curvature on the small CNN."""
    mode = "batch"
    with jax.enable_x64(True):
        x, y = images(5, 4, 8, 3, jnp.float64, classes=3)
        model = tiny_resnet(jnp.float64)
        loss_fn, params = curvature_objective(model, xent, batch_norm=mode)
        w, stats = weights_and_stats(model)
        flat, unravel = ravel_pytree(w)
        np.testing.assert_array_equal(flat, ravel_pytree(params)[0])
        v = jax.random.normal(jax.random.key(6), flat.shape, jnp.float64)
        hv = ravel_pytree(analysis.hvp(loss_fn, params, ravel_pytree(params)[1](v), x, y))[0]
        hand_grad = jax.grad(lambda p, stats, x, y: resnet_hand(unravel(p), stats, mode, x, y))
        hv_ref = jax.jit(lambda p, v, *batch: jax.jvp(lambda q: hand_grad(q, *batch), (p,), (v,))[1])(
            flat, v, stats, x, y)
        assert rel_err(hv, hv_ref) < 1e-10


def test_transformer_hvp_matches_hand_written_objective():
    with jax.enable_x64(True):
        model = tiny_transformer(dtype=jnp.float64)
        x, y = tokens(7)
        loss_fn, params = curvature_objective(model, xent)
        w = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        flat, unravel = ravel_pytree(w)
        np.testing.assert_array_equal(flat, ravel_pytree(params)[0])
        np.testing.assert_allclose(loss_fn(params, x, y), transformer_hand(w, x, y), rtol=1e-12)
        v = jax.random.normal(jax.random.key(8), flat.shape, jnp.float64)
        hv = ravel_pytree(analysis.hvp(loss_fn, params, ravel_pytree(params)[1](v), x, y))[0]
        hand_grad = jax.grad(lambda p, x, y: transformer_hand(unravel(p), x, y))
        hv_ref = jax.jit(lambda p, v, x, y: jax.jvp(lambda q: hand_grad(q, x, y), (p,), (v,))[1])(flat, v, x, y)
        assert rel_err(hv, hv_ref) < 1e-10


# ---- (e) Dropout: a fixed key is one sub-network ---------------------------------------------------------------------

def test_dropout_key_fixes_the_mask():
    x, y = images(10, 6, 6, 2, jnp.float32)
    model = tiny_cnn(0)
    loss = {}
    for name, key in [("a", jax.random.key(0)), ("a_raw", jax.random.PRNGKey(0)), ("b", jax.random.key(1))]:
        loss_fn, params = curvature_objective(model, xent, batch_norm="running", dropout=key)
        loss[name] = (loss_fn(params, x, y), loss_fn(params, x, y), jax.jit(loss_fn)(params, x, y))
    assert loss["a"][0] == loss["a"][1]
    np.testing.assert_allclose(loss["a"][2], loss["a"][0], rtol=1e-6)
    assert loss["a_raw"][0] == loss["a"][0]  # a raw uint32 key is the same key
    assert abs(float(loss["b"][0] - loss["a"][0])) > 1e-4
    off_fn, params = curvature_objective(model, xent, batch_norm="running", dropout="off")
    model.eval()
    assert off_fn(params, x, y) == pytest.approx(float(xent(model(x), y)), rel=1e-6)
    assert abs(float(off_fn(params, x, y) - loss["a"][0])) > 1e-4

    t, (xt, yt) = tiny_transformer(0.3), tokens(11)
    f1, p = curvature_objective(t, xent, dropout=jax.random.key(5))
    f2, _ = curvature_objective(t, xent, dropout=jax.random.key(6))
    f_off, _ = curvature_objective(t, xent, dropout="off")
    assert f1(p, xt, yt) == f1(p, xt, yt) and f1(p, xt, yt) != f2(p, xt, yt)
    assert f_off(p, xt, yt) == pytest.approx(float(xent(nnx.view(t, deterministic=True)(xt), yt)), rel=1e-6)


# ---- (f) errors ------------------------------------------------------------------------------------------------------

class Counter(nnx.Variable):
    pass


class WithCounter(nnx.Module):
    def __init__(self):
        self.linear = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        self.calls = Counter(jnp.zeros(()))

    def __call__(self, x):
        return self.linear(x)


class StatsOnly(nnx.Module):
    def __init__(self):
        self.stat = nnx.BatchStat(jnp.zeros(2))

    def __call__(self, x):
        return x + self.stat[...]


class Pair(nnx.Module):
    def __init__(self):
        self.linear = nnx.Linear(2, 1, rngs=nnx.Rngs(0))

    def __call__(self, x, z):
        return self.linear(x) * z


def test_num_inputs_splits_model_inputs_from_targets():
    kx, kz, ky = jax.random.split(jax.random.key(0), 3)
    model, x, z, y = Pair(), jax.random.normal(kx, (3, 2)), jax.random.normal(kz, (3, 1)), jax.random.normal(ky, (3, 1))
    mse = lambda out, y: jnp.mean((out - y) ** 2)
    loss_fn, params = curvature_objective(model, mse, num_inputs=2)
    assert loss_fn(params, x, z, y) == pytest.approx(float(mse(model(x, z), y)), rel=1e-6)
    with pytest.raises(TypeError, match="at least 2 batch array"):
        loss_fn(params, x)


def test_errors_name_the_state_and_the_choice():
    with pytest.raises(ValueError, match=r"Counter at 'calls'.*hold_fixed=\(Counter,\)"):
        curvature_objective(WithCounter(), xent)
    loss_fn, params = curvature_objective(WithCounter(), xent, hold_fixed=(Counter,))
    assert len(jax.tree.leaves(params)) == 2 and np.isfinite(loss_fn(params, jnp.ones((3, 2)), jnp.zeros(3, int)))
    with pytest.raises(ValueError, match="no nnx.Param"):
        curvature_objective(StatsOnly(), xent)

    cnn = tiny_cnn()
    with pytest.raises(ValueError, match=r"batch_norm='sideways' is invalid.*'running', 'batch'"):
        curvature_objective(cnn, xent, batch_norm="sideways", dropout="off")
    with pytest.raises(ValueError, match=r"BatchNorm at 'bn1'.*batch_norm='running'"):
        curvature_objective(cnn, xent, dropout="off")
    with pytest.raises(ValueError, match=r"Dropout at 'drop'.*dropout='off'"):
        curvature_objective(cnn, xent, batch_norm="running")
    with pytest.raises(ValueError, match=r"dropout='on' needs a fixed PRNG key"):
        curvature_objective(cnn, xent, batch_norm="running", dropout="on")
    with pytest.raises(ValueError, match=r"dropout='sometimes' is unknown"):
        curvature_objective(cnn, xent, batch_norm="running", dropout="sometimes")
    with pytest.raises(TypeError, match="dropout must be a JAX PRNG key"):
        curvature_objective(cnn, xent, batch_norm="running", dropout=3)
    with pytest.raises(ValueError, match=r"Dropout built without rngs \(Dropout at 'drop'\)"):
        curvature_objective(tiny_cnn(dropout_rngs=False), xent, batch_norm="running",
                            dropout=jax.random.key(0))
    with pytest.raises(ValueError, match="hold_fixed contains Param"):
        curvature_objective(cnn, xent, batch_norm="running", dropout="off", hold_fixed=(nnx.Param,))
    with pytest.raises(TypeError, match="hold_fixed entries"):
        curvature_objective(cnn, xent, batch_norm="running", dropout="off", hold_fixed=(int,))
    with pytest.raises(TypeError, match="model must be a flax.nnx.Module"):
        curvature_objective(lambda x: x, xent)
    with pytest.raises(TypeError, match="loss must be callable"):
        curvature_objective(cnn, "xent", batch_norm="running", dropout="off")
    with pytest.raises(ValueError, match=r"BatchStat at 'bn1/mean'.*curvature_objective"):
        split(cnn)


def test_model_hyper_parameters_are_validated():
    with pytest.raises(ValueError, match=r"depth=9 is invalid; expected 6n \+ 2"):
        ResNet20(depth=9, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="width=0 is invalid"):
        ResNet20(width=0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="num_classes must be an int"):
        ResNet20(num_classes=2.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="momentum=1.0 is invalid"):
        ResNet20(momentum=1.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="x has shape"):
        tiny_resnet()(jnp.zeros((2, 8, 8, 1)))
    kw = dict(num_classes=2, max_length=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dim=6 is invalid with num_heads=4"):
        TransformerClassifier(vocab_size=5, dim=6, num_heads=4, **kw)
    with pytest.raises(ValueError, match="give exactly one"):
        TransformerClassifier(vocab_size=5, in_features=3, **kw)
    with pytest.raises(ValueError, match="dropout=1.0 is invalid"):
        TransformerClassifier(vocab_size=5, dim=8, num_heads=2, dropout=1.0, **kw)
    vec = built(lambda: TransformerClassifier(in_features=3, dim=8, num_heads=2, num_classes=2, max_length=4,
                                              rngs=nnx.Rngs(0)))
    assert vec(jnp.ones((2, 4, 3))).shape == (2, 2)
    with pytest.raises(ValueError, match="at most max_length=4"):
        vec(jnp.ones((2, 5, 3)))


# ---- (g) no mutation; (h) no retrace -------------------------------------------------------------------------------

def test_batch_mode_hessian_leaves_the_model_untouched():
    x, y = images(12, 6, 6, 2, jnp.float32)
    model = tiny_cnn(0)
    watched = nnx.Any(nnx.BatchStat, nnx.RngState)

    def snapshot():
        bits = lambda a: np.array(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
        return jax.tree.map(bits, nnx.to_pure_dict(nnx.state(model, watched)))

    before = snapshot()
    loss_fn, params = curvature_objective(model, xent, batch_norm="batch", dropout=jax.random.key(0))
    analysis.dense_hessian(loss_fn, params, x, y)
    jax.jit(loss_fn)(params, x, y)
    after = snapshot()
    assert jax.tree.structure(after) == jax.tree.structure(before)
    jax.tree.map(np.testing.assert_array_equal, before, after)
    assert model.bn1.use_running_average is False and model.drop.deterministic is False  # modes untouched


def test_jit_does_not_retrace():
    traces = []

    def counted(logits, y):
        traces.append(1)
        return xent(logits, y)

    x, y = images(13, 6, 6, 2, jnp.float32)
    loss_fn, params = curvature_objective(tiny_cnn(), counted, batch_norm="batch",
                                          dropout=jax.random.key(0))
    jitted = jax.jit(loss_fn)
    first = jitted(params, x, y)
    shifted = jax.tree.map(lambda a: a + 0.1, params)
    second = jitted(shifted, x + 1.0, y)
    assert len(traces) == 1 and first != second
