"""analysis._convolutions: every convolution rewritten into XLA:CPU's fast layout computes the same numbers.

References: ``jax.lax.conv_general_dilated`` itself under every dimension order, and the unrewritten Hessian-vector
product of a small conv net. Tolerances: float32 5e-6 relative to the largest entry, float64 1e-13. Structural check:
after the rewrite, no convolution in the compiled Lanczos loop has a layout other than ``b01f_01io->b01f``.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
from analysis._convolutions import _canonical_conv, canonical_convolutions

TOL = {jnp.float32: 5e-6, jnp.float64: 1e-13}
SPECS_2D = ["NCHW", "NHWC", "HWNC", "CWNH"]
KERNELS_2D = ["OIHW", "HWIO", "IHOW"]


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("lhs_spec", SPECS_2D)
def test_canonical_conv_matches_lax_in_every_layout(dtype, lhs_spec):
    with jax.enable_x64(dtype == jnp.float64):
        _check_layouts(dtype, lhs_spec)


def _check_layouts(dtype, lhs_spec):
    rng = np.random.default_rng(len(lhs_spec) + SPECS_2D.index(lhs_spec))
    for kernel_spec, out_spec in zip(KERNELS_2D, reversed(SPECS_2D)):
        dims = jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), (lhs_spec, kernel_spec, out_spec))
        sizes = {"N": 3, "C": 4, "H": 7, "W": 6}
        ksizes = {"O": 6, "I": 2, "H": 3, "W": 2}
        lhs = jnp.asarray(rng.normal(size=[sizes[c] for c in lhs_spec]), dtype)
        rhs = jnp.asarray(rng.normal(size=[ksizes[c] for c in kernel_spec]), dtype)
        kw = dict(window_strides=(2, 1), padding=((1, 0), (2, 1)), lhs_dilation=(1, 2), rhs_dilation=(2, 1),
                  feature_group_count=2)
        want = jax.lax.conv_general_dilated(lhs, rhs, dimension_numbers=dims, **kw)
        eqn = jax.make_jaxpr(lambda a, b: jax.lax.conv_general_dilated(a, b, dimension_numbers=dims, **kw))(
            lhs, rhs).jaxpr.eqns[0]  # the primitive's own parameters, as the rewrite receives them
        got = jax.jit(lambda a, b: _canonical_conv(a, b, **eqn.params))(lhs, rhs)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert _rel(got, want) < TOL[dtype], (lhs_spec, kernel_spec, out_spec)


def _conv_net(dtype, seed, layout="NHWC"):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = {"w1": jax.random.normal(k[0], (3, 3, 2, 4), dtype) * 0.4,
              "w2": jax.random.normal(k[1], (3, 3, 4, 4), dtype) * 0.3,
              "head": jax.random.normal(k[2], (4, 3), dtype) * 0.5}
    x = jax.random.normal(k[3], (5, 6, 6, 2), dtype)
    y = jnp.arange(5) % 3
    dims = (layout, "HWIO", layout)
    if layout == "NCHW":
        x = jnp.transpose(x, (0, 3, 1, 2))

    def loss(p, x, y):
        h = jnp.tanh(jax.lax.conv_general_dilated(x, p["w1"], (1, 1), "SAME", dimension_numbers=dims))
        h = jax.jit(lambda h, w: jax.lax.conv_general_dilated(h, w, (2, 2), "SAME", dimension_numbers=dims))(
            h, p["w2"])  # a nested jit, inlined by the rewrite
        logits = jnp.mean(jnp.tanh(h), axis=(2, 3) if layout == "NCHW" else (1, 2)) @ p["head"]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(5), y])

    return loss, params, (x, y)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_rewritten_hvp_matches_plain_hvp(dtype, seed, layout):
    with jax.enable_x64(dtype == jnp.float64):
        _check_hvp(dtype, seed, layout)


def _check_hvp(dtype, seed, layout):
    loss, params, batch = _conv_net(dtype, seed, layout)
    v = jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size, dtype=dtype)).reshape(a.shape), params)

    def hvp(p, v, *b):
        return jax.jvp(lambda q: jax.grad(loss)(q, *b), (p,), (v,))[1]

    want = jax.jit(hvp)(params, v, *batch)
    got = jax.jit(canonical_convolutions(hvp))(params, v, *batch)
    for name in params:
        assert _rel(got[name], want[name]) < TOL[dtype], name


def _conv_layouts(compiled_text):
    return set(re.findall(r"convolution\(.*?dim_labels=(\S+?),", compiled_text))


def test_lanczos_loop_compiles_only_canonical_convolutions():
    loss, params, batch = _conv_net(jnp.float32, 0)
    from analysis.lanczos import _hessian_eigs  # the compiled Lanczos loop behind hessian_eigs

    text = _hessian_eigs.lower(loss, params, batch, jax.random.PRNGKey(0), k=2, which="largest", num_matvecs=6,
                               return_vectors=False, microbatched=False, block=None,
                               basis_sharding=None).compile().as_text()
    layouts = _conv_layouts(text)
    assert layouts == {"b01f_01io->b01f"}, layouts


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 2e-4), (jnp.float64, 1e-9)])
def test_hessian_eigs_of_a_conv_net_match_the_dense_spectrum(dtype, rtol):
    with jax.enable_x64(dtype == jnp.float64):
        loss, params, batch = _conv_net(dtype, 3, "NCHW")
        dense = np.asarray(analysis.hessian_spectrum(loss, params, *batch))
        eigs = analysis.hessian_eigs(loss, params, *batch, k=2, num_matvecs=80, key=jax.random.PRNGKey(1))
    top = np.sort(np.asarray(eigs.eigenvalues))
    np.testing.assert_allclose(top, dense[-2:], rtol=rtol, atol=rtol * abs(dense[-1]))


def test_function_without_convolutions_compiles_unchanged():
    def f(x, w):
        return jnp.tanh(x @ w).sum()

    x, w = jnp.ones((3, 4)), jnp.ones((4, 2))
    plain = jax.jit(jax.grad(f)).lower(x, w).as_text()
    wrapped = jax.jit(canonical_convolutions(jax.grad(f))).lower(x, w).as_text()
    strip = lambda text: re.sub(r"jit_\w+|loc\(.*?\)|#loc\d*", "", text)  # noqa: E731
    assert strip(plain) == strip(wrapped)
