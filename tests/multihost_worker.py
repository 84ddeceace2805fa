"""One process of the multi-host test (tests/test_multihost.py): run the analysis on a batch split over processes.

Usage: python tests/multihost_worker.py OUT.npz [PROCESS_ID NUM_PROCESSES PORT]
Without the last three it runs alone, on the whole batch, as the reference. With them it joins a JAX cluster of
``NUM_PROCESSES`` processes on localhost (JAX's CPU collectives, gloo), holds only its own slice of every batch and
builds global arrays from the slices; every process writes the (replicated) results.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

out = sys.argv[1]
multi = len(sys.argv) > 2
if multi:
    pid, nproc, port = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=nproc, process_id=pid,
                               initialization_timeout=120)

from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import analysis  # noqa: E402
from jaxdl.models import MLP, split  # noqa: E402
from jaxdl.train import softmax_cross_entropy  # noqa: E402

apply, params = split(MLP([6, 8, 3], rngs=nnx.Rngs(0)))
loss = softmax_cross_entropy(apply)
x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (64, 6)))
y = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (64,), 0, 3))

if multi:
    assert jax.process_count() == nproc and len(jax.devices()) == nproc * len(jax.local_devices())
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))

    def global_batch(*arrays):
        """Each process passes only its rows; the result is one array over all processes' devices."""
        rows = arrays[0].shape[0] // nproc
        return tuple(jax.make_array_from_process_local_data(sharding, a[pid * rows:(pid + 1) * rows])
                     for a in arrays)
else:
    def global_batch(*arrays):
        return arrays

data = global_batch(x, y)
if multi:
    assert not data[0].is_fully_addressable and data[0].shape == (64, 6)


def batches():  # a data source of two batches of 32, each split over the processes
    for start in (0, 32):
        yield global_batch(x[start:start + 32], y[start:start + 32])


source = analysis.Batches(batches)
key = jax.random.PRNGKey(3)
results = {
    "eigs": analysis.hessian_eigs(loss, params, *data, k=3, which="both", num_matvecs=40, key=key).eigenvalues,
    "trace": analysis.hessian_trace(loss, params, *data, num_matvecs=12, key=key).estimate,
    "density": analysis.spectral_density(loss, params, *data, num_matvecs=20, num_probes=2, key=key).nodes,
    "gTHg": analysis.gradient_curvature(loss, params, *data).gTHg,
    "dense": analysis.dense_hessian(loss, params, *data),
    "source_eigs": analysis.hessian_eigs(loss, params, source, k=3, num_matvecs=40, key=key).eigenvalues,
    "source_gTHg": analysis.gradient_curvature(loss, params, source).gTHg,
}
np.savez(out, **{name: np.asarray(value) for name, value in results.items()})
print("WORKER_OK", flush=True)
