"""Shared fixtures: a quadratic with a prescribed spectrum and a trained digits MLP with its exact Hessian."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

# The suite's time goes mostly into compiling many small programs. These two LLVM settings of XLA:CPU cut that by
# about a quarter (the tiny ResNet report: 72 s -> 53 s) at some cost in run time, which small tests do not feel.
# They change code generation only, no floating-point semantics (no fast-math); set before JAX starts its backend,
# and inherited by the subprocesses that tests start.
TEST_XLA_FLAGS = "--xla_llvm_disable_expensive_passes=true --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl.data import digits_full

from jaxdl.models import MLP, split
from jaxdl.train import init_state, make_optimizer, make_train_step, softmax_cross_entropy

# Many tests build the same small networks anew (new closures, so jit's in-memory cache misses) and compile
# identical programs. JAX's persistent compilation cache, keyed on the compiled program, lets them, the pytest-xdist
# workers and later runs share those compilations. It stores executables only; no result depends on it.
JAX_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"
jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

# A spectrum with negative, exactly zero (repeated) and positive eigenvalues.
SPECTRUM = np.concatenate([np.linspace(-4.0, -0.5, 8), np.zeros(6), np.geomspace(1e-2, 50.0, 66)])


def quadratic_problem(seed: int, dtype):
    """``loss(p, A) = 1/2 p^T A p + b^T p`` with ``A = Q diag(SPECTRUM) Q^T``: its Hessian is exactly ``A``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((SPECTRUM.size, SPECTRUM.size)))
    a = (q * SPECTRUM) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.standard_normal(SPECTRUM.size)

    def loss(params, amat, bvec):
        w = params["w"]
        return 0.5 * w @ amat @ w + bvec @ w

    params = {"w": jnp.asarray(rng.standard_normal(SPECTRUM.size), dtype)}
    return loss, params, jnp.asarray(a, dtype), jnp.asarray(b, dtype)


def shared_array(tmp_path_factory, name: str, compute) -> np.ndarray:
    """``compute()`` once per test run, shared by the pytest-xdist workers through a file under a lock (the array is
    deterministic, so whichever worker computes it, all get the same bits)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder, not earlier runs'
    path = root / f"{name}.npy"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            np.save(path, compute())
    return np.load(path)


@pytest.fixture(scope="session")
def digits_mlp(tmp_path_factory):
    """The digits MLP 64-32-32-10 (tanh) after 200 full-batch SGD steps (lr 0.5) on 256 digits, in float32 and
    float64 (the same parameter values), with the exact float64 spectrum of that Hessian as the reference."""
    x, y = digits_full()
    x, y = x[:256], y[:256]
    apply, params = split(MLP([64, 32, 32, 10], rngs=nnx.Rngs(0)))
    loss = softmax_cross_entropy(apply)
    opt = make_optimizer("sgd", 0.5)
    step = make_train_step(loss, opt)
    state = init_state(params, opt)
    for _ in range(200):
        state, _ = step(state, x, y)
    p32 = state.params
    with jax.enable_x64(True):
        apply64, _ = split(MLP([64, 32, 32, 10], rngs=nnx.Rngs(0), dtype=jnp.float64))
        loss64 = softmax_cross_entropy(apply64)
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), p32)
        x64, y64 = jnp.asarray(np.asarray(x), jnp.float64), y
        from analysis import hessian_spectrum

        exact = shared_array(tmp_path_factory, "digits_mlp_spectrum",
                             lambda: np.asarray(hessian_spectrum(loss64, p64, x64, y64, block_size=256)))
    return {"loss32": loss, "p32": p32, "x32": x, "y": y, "loss64": loss64, "p64": p64, "x64": x64,
            "exact": exact}


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and content hash (files) — what a user would notice."""
    import hashlib

    snap = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            snap[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            snap[rel] = ("dir",)
        else:
            snap[rel] = ("file", path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return snap


class UserFolder:
    """A folder of files a user owns, with the current directory inside it during the test.

    ``allow(name)`` names an output folder the test lets the program create (paths under it may change);
    everything else must be byte-identical afterwards, which the fixture asserts on teardown.
    """

    def __init__(self, root: Path):
        self.root = root
        (root / "notes.txt").write_text("a user's notes\n")
        (root / "data").mkdir()
        (root / "data" / "table.csv").write_text("x,y\n1,2\n")
        (root / "plain_folder").mkdir()
        (root / "plain_folder" / "keep.txt").write_text("not a jaxdl report\n")
        (root / "a_file").write_text("a file, not a folder\n")
        self.allowed: list[str] = []
        self.before = _snapshot(root)

    def allow(self, name: str) -> Path:
        self.allowed.append(name)
        return self.root / name

    def changed(self) -> list[str]:
        after = _snapshot(self.root)
        keys = set(self.before) | set(after)
        return sorted(k for k in keys if self.before.get(k) != after.get(k)
                      and not any(k == a or k.startswith(a + os.sep) or k.startswith("." + a) for a in self.allowed))


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """Runs the test inside a folder of user files and fails it if any of them changed (see :class:`UserFolder`)."""
    folder = UserFolder(tmp_path)
    monkeypatch.chdir(tmp_path)
    yield folder
    changed = folder.changed()
    assert not changed, f"files outside the allowed output folders changed: {changed}"
