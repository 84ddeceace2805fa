"""Analysis on a batch sharded over 4 forced CPU devices equals the single-device result; so does Lanczos with its
Krylov basis split over the devices along the parameter axis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from flax import nnx
    import analysis
    from jaxdl.models import MLP, split
    from jaxdl.train import softmax_cross_entropy

    assert len(jax.devices()) == 4, jax.devices()
    apply, params = split(MLP([6, 8, 3], rngs=nnx.Rngs(0)))
    loss = softmax_cross_entropy(apply)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 6))
    y = jax.random.randint(jax.random.PRNGKey(2), (64,), 0, 3)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ys = jax.device_put(y, NamedSharding(mesh, P("data")))
    assert len(xs.sharding.device_set) == 4
    key = jax.random.PRNGKey(3)
    for f in (
        lambda x, y: analysis.hessian_eigs(loss, params, x, y, k=3, which="both", num_matvecs=40, key=key).eigenvalues,
        lambda x, y: analysis.hessian_trace(loss, params, x, y, num_matvecs=12, key=key).estimate,
        lambda x, y: analysis.spectral_density(loss, params, x, y, num_matvecs=20, num_probes=2, key=key).nodes,
        lambda x, y: analysis.gradient_curvature(loss, params, x, y).gTHg,
        lambda x, y: analysis.dense_hessian(loss, params, x, y),
    ):
        np.testing.assert_allclose(np.asarray(f(xs, ys)), np.asarray(f(x, y)), rtol=2e-5, atol=2e-6)

    # The Krylov basis split over the parameter axis: each device holds a quarter of every row, same spectrum.
    from analysis.lanczos import lanczos_decompose
    basis = NamedSharding(mesh, P(None, "data"))
    a = jax.random.normal(jax.random.PRNGKey(4), (80, 80))
    quad = lambda p, a: 0.5 * p["w"] @ (a @ a.T / 80) @ p["w"]
    w = {"w": jnp.ones(80)}
    state = jax.jit(lambda v: lanczos_decompose(lambda u: (a @ a.T / 80) @ u, v, 30, basis))(jnp.ones(80))
    assert state.Q.sharding.is_equivalent_to(basis, 2), state.Q.sharding
    assert {s.data.shape for s in state.Q.addressable_shards} == {(32, 20)}
    split_eigs = analysis.hessian_eigs(quad, w, a, k=4, num_matvecs=30, basis_sharding=basis).eigenvalues
    whole = analysis.hessian_eigs(quad, w, a, k=4, num_matvecs=30).eigenvalues
    exact = np.linalg.eigvalsh(np.asarray(a @ a.T / 80, np.float64))[-4:]
    np.testing.assert_allclose(np.asarray(split_eigs), np.asarray(whole), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(split_eigs), exact, rtol=1e-4)
    print("SHARDED_OK")
    """
)


def test_sharded_batch_matches_single_device():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED_OK" in out.stdout
