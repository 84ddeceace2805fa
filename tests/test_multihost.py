"""Multi-host JAX: the analysis after ``jax.distributed.initialize()`` on two real processes (localhost, CPU
collectives), each holding half of every batch, equals the analysis of the whole batch in one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "multihost_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(args: list[str]) -> subprocess.Popen:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags))  # one CPU device per process
    return subprocess.Popen([sys.executable, str(WORKER), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen]) -> list[str]:
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0 and "WORKER_OK" in log, log[-3000:]
    return logs


def test_two_processes_equal_one(tmp_path):
    port = free_port()
    procs = [launch([str(tmp_path / "single.npz")])]
    procs += [launch([str(tmp_path / f"rank{i}.npz"), str(i), "2", str(port)]) for i in range(2)]
    finish(procs)
    single = np.load(tmp_path / "single.npz")
    ranks = [np.load(tmp_path / f"rank{i}.npz") for i in range(2)]
    assert set(single.files) == set(ranks[0].files) and len(single.files) == 7
    for name in single.files:
        # Both processes hold the same replicated result, bit for bit (one computation, its result broadcast).
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
        # Against one process: the same float32 arithmetic summed in another order (per-process partial sums).
        np.testing.assert_allclose(ranks[0][name], single[name], rtol=2e-5, atol=2e-6, err_msg=name)
