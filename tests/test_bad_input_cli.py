"""Bad input to the ``jaxdl`` command and to :mod:`jaxdl.train`: refused at once, with the value named, and nothing
a user owns is changed (the ``user_folder`` fixture checks every file of the folder the test runs in)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.cli import main
from jaxdl.report import MARKER, OutputError, check_output_dir, checkpoint_dir_for, write_marker, write_report
from jaxdl.train import TrainingDiverged, fit, init_state, make_optimizer, make_train_step, raise_if_diverged
from jaxdl.train import train_scan
from tests.conftest import _snapshot

ROOT = Path(__file__).resolve().parents[1]
SMALL = """
[report]
hidden = [8]
steps = 10
batch_size = 64
monitor_every = 5
eval_every = 50
checkpoint_every = 5
k = 2
lanczos_matvecs = 30
trace_matvecs = 12
slq_matvecs = 12
slq_probes = 2
landscape_points = 5
landscape_grid = 3
"""


def _add_user_files(user_folder, make) -> None:
    """Let ``make(root)`` add user files, then take them into the fixture's record of what must not change."""
    make(user_folder.root)
    user_folder.before = _snapshot(user_folder.root)


def _cli(args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "jaxdl.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def _exit_2(argv, capsys) -> str:
    """Run ``jaxdl argv`` in this process; it must stop with status 2. Returns what it printed to stderr."""
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    return capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# --out: jaxdl replaces only folders it wrote. Real processes: the refusal comes before training (and before JAX is
# imported), so each costs a Python start-up.

def _empty_folder(root):
    (root / "empty_folder").mkdir()


def _link_to_folder(root):
    (root / "link_to_folder").symlink_to(root / "plain_folder", target_is_directory=True)


@pytest.mark.parametrize("out, cwd, make, says", [
    ("plain_folder", ".", None, "was not written by jaxdl"),
    ("empty_folder", ".", _empty_folder, "was not written by jaxdl"),
    ("a_file", ".", None, "is a file"),
    (".", ".", None, "the current folder or one of its parents"),
    ("..", "data", None, "the current folder or one of its parents"),
    ("..", ".", None, "the current folder or one of its parents"),
    ("link_to_folder", ".", _link_to_folder, "symbolic link"),
    ("a_file/report", ".", None, "is a file, not a folder"),
])
def test_report_refuses_an_out_it_did_not_write(user_folder, out, cwd, make, says):
    if make is not None:
        _add_user_files(user_folder, make)
    proc = _cli(["report", "--out", out, "--quiet"], cwd=user_folder.root / cwd)
    assert proc.returncode == 2, proc.stderr
    assert f"output folder '{out}'" in proc.stderr and says in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_experiment_refuses_a_plain_folder_before_running(user_folder):
    proc = _cli(["experiment", "xor", "--quick", "--out", "plain_folder"], cwd=user_folder.root)
    assert proc.returncode == 2 and "output folder 'plain_folder'" in proc.stderr, proc.stderr


@pytest.mark.parametrize("path, says", [
    ("/", "the current folder or one of its parents (or a filesystem root)"),
    ("data", "the home folder"),
    ("data/table.csv", "is a file"),
])
def test_check_output_dir_refuses_root_home_and_files(user_folder, monkeypatch, path, says):
    monkeypatch.setenv("HOME", str(user_folder.root / "data"))
    with pytest.raises(OutputError, match=f"output folder '{path}'.*{re.escape(says)}"):
        check_output_dir(path)


def _unmarked_checkpoints(root):
    (root / ".rep.checkpoints").mkdir()
    (root / ".rep.checkpoints" / "mine.txt").write_text("a user's folder that happens to have this name\n")


def _file_checkpoints(root):
    (root / ".rep.checkpoints").write_text("a user's file\n")


@pytest.mark.parametrize("make", [_unmarked_checkpoints, _file_checkpoints])
def test_report_refuses_a_checkpoint_folder_it_did_not_write(user_folder, capsys, make):
    _add_user_files(user_folder, make)
    err = _exit_2(["report", "--out", "rep", "--quiet"], capsys)
    assert "checkpoint folder" in err and ".rep.checkpoints" in err
    assert not (user_folder.root / "rep").exists()


@pytest.mark.parametrize("kind, text", [("checkpoints", None), ("report", "not json"), ("report", "[1, 2]")])
def test_a_wrong_or_broken_marker_is_not_ours(user_folder, kind, text):
    def make(root):
        (root / "rep").mkdir()
        write_marker(root / "rep", kind)
        if text is not None:
            (root / "rep" / MARKER).write_text(text)

    _add_user_files(user_folder, make)
    with pytest.raises(OutputError, match="output folder 'rep'.*was not written by jaxdl"):
        write_report("rep", title="t", results={}, figures={})


def test_a_report_folder_jaxdl_wrote_is_marked_and_replaced(user_folder):
    def make(root):  # a user's folder whose name looks like one of jaxdl's leftovers: never ours to remove
        (root / ".rep.old-1").mkdir()
        (root / ".rep.old-1" / "keep.txt").write_text("mine\n")

    _add_user_files(user_folder, make)
    rep = user_folder.allow("rep")
    out = write_report("rep", title="first", results={"run": 1}, figures={})
    assert out == rep.resolve()
    marker = json.loads((rep / MARKER).read_text())
    assert marker["tool"] == "jaxdl" and marker["kind"] == "report" and marker["version"]
    (rep / "stale.txt").write_text("from the first run\n")
    write_report("rep", title="second", results={"run": 2}, figures={})
    assert json.loads((rep / "results.json").read_text()) == {"run": 2}
    assert not (rep / "stale.txt").exists() and (rep / MARKER).is_file()
    assert (user_folder.root / ".rep.old-1" / "keep.txt").read_text() == "mine\n"
    siblings = sorted(p.name for p in user_folder.root.iterdir() if p.name.startswith(".rep"))
    assert siblings == [".rep.old-1"]  # no temporary folder of ours left behind


# ---------------------------------------------------------------------------------------------------------------
# Settings: every one validated for type, range and finiteness, from flags and from TOML; exit status 2.

@pytest.mark.parametrize("flags, says", [
    (["--lr", "inf"], "--lr: 'inf' is invalid; expected a finite number"),
    (["--lr", "nan"], "--lr: 'nan' is invalid; expected a finite number"),
    (["--lr", "0"], "--lr: 0.0 is invalid; expected a positive number"),
    (["--lr", "fast"], "--lr: 'fast' is not a number"),
    (["--momentum", "nan"], "--momentum: 'nan' is invalid; expected a finite number"),
    (["--momentum", "1"], "momentum=1.0 is invalid; expected a number < 1"),
    (["--clip-norm", "inf"], "--clip-norm: 'inf' is invalid; expected a finite number"),
    (["--seed", "1.5"], "--seed: '1.5' is not an integer"),
    (["--seed", "-1"], "--seed: -1 is invalid"),
    (["--hidden", "a,b"], "hidden='a,b' is invalid; expected comma-separated integers"),
    (["--hidden", ","], "hidden=() is invalid"),
    (["--steps", "0"], "--steps: 0 is invalid; expected a positive integer"),
    (["--batch-size", "100000"], "batch_size=100000 is invalid; the training set of dataset 'digits' has 1347"),
    (["--optimizer", "lbfgs"], "optimizer='lbfgs' is unknown"),
    (["--width", "8"], "width=8 is invalid for model='mlp'"),
    (["--model", "transformer", "--width", "6"], "multiple of num_heads"),
    (["--model", "resnet20", "--num-heads", "2"], "num_heads=2 is invalid for model='resnet20'"),
    (["--depth", "0"], "--depth: 0 is invalid; expected a positive integer"),
])
def test_bad_flags_exit_2_naming_the_setting(user_folder, capsys, flags, says):
    user_folder.allow("rep")
    err = _exit_2(["report", "--out", "rep", "--quiet", *flags], capsys)
    assert says in err and "Traceback" not in err
    assert not (user_folder.root / "rep").exists()


@pytest.mark.parametrize("toml, says", [
    ("learning_rate = inf", "learning_rate=inf is invalid; expected a finite number"),
    ("learning_rate = nan", "learning_rate=nan is invalid; expected a finite number"),
    ("learning_rate = true", "learning_rate must be a real number, got bool True"),
    ("learning_rate = \"0.5\"", "learning_rate must be a real number, got str '0.5'"),
    ("momentum = \"x\"", "momentum must be a real number, got str 'x'"),
    ("clip_norm = \"x\"", "clip_norm must be a real number, got str 'x'"),
    ("clip_norm = -inf", "clip_norm=-inf is invalid; expected a finite number"),
    ("float64 = \"yes\"", "float64='yes' is invalid; expected True or False"),
    ("batch_size = true", "batch_size must be an int, got True"),
    ("seed = 1.5", "seed must be an int, got 1.5"),
    ("hidden = [true]", "hidden=(True,) is invalid"),
    ("hidden = \"a,b\"", "hidden='a,b' is invalid"),
    ("hidden = 32", "hidden=32 is invalid"),
    ("steps = 0", "steps=0 is invalid; expected an integer >= 1"),
    ("k = 2.0", "k must be an int, got 2.0"),
    ("model = 3", "model=3 is unknown"),
    ("stepz = 3", "unknown setting(s) ['stepz']"),
    ("steps = [", "is not valid TOML"),
    ("report = 3", "'report' must be a table"),
])
def test_bad_toml_settings_exit_2_naming_the_setting(user_folder, capsys, tmp_path_factory, toml, says):
    config = tmp_path_factory.mktemp("config") / "bad.toml"
    config.write_text(toml + "\n")
    user_folder.allow("rep")
    err = _exit_2(["report", "--config", str(config), "--out", "rep", "--quiet"], capsys)
    assert says in err
    assert not (user_folder.root / "rep").exists()


@pytest.mark.parametrize("argv, says", [
    (["experiment", "xor", "--seed", "x"], "--seed: 'x' is not an integer"),
    (["experiment", "xor", "--seed", "-3"], "--seed: -3 is invalid"),
    (["experiment", "no_such_thing", "--out", "out"], "unknown experiment 'no_such_thing'"),
])
def test_bad_experiment_arguments_exit_2(user_folder, capsys, argv, says):
    assert says in _exit_2(argv, capsys)


# ---------------------------------------------------------------------------------------------------------------
# jaxdl.train at the boundary: settings, keys, batch lengths, NaN/inf, before anything is compiled.

@pytest.mark.parametrize("args, kwargs, error, says", [
    (("lbfgs", 0.1), {}, ValueError, "optimizer='lbfgs' is invalid"),
    (("sgd", float("inf")), {}, ValueError, "learning_rate=inf"),
    (("sgd", float("nan")), {}, ValueError, "learning_rate=nan"),
    (("sgd", 0.0), {}, ValueError, "learning_rate=0.0 is invalid; expected a positive number"),
    (("sgd", True), {}, TypeError, "learning_rate must be a real number, got bool True"),
    (("sgd", "0.1"), {}, TypeError, "learning_rate must be a real number, got str '0.1'"),
    (("momentum", 0.1), {"momentum": 1.0}, ValueError, "momentum=1.0 is invalid; expected a number < 1"),
    (("momentum", 0.1), {"momentum": -0.5}, ValueError, "momentum=-0.5 is invalid; expected a number >= 0"),
    (("momentum", 0.1), {"momentum": float("nan")}, ValueError, "momentum=nan"),
    (("sgd", 0.1), {"clip_norm": 0.0}, ValueError, "clip_norm=0.0 is invalid; expected a positive number"),
    (("sgd", 0.1), {"clip_norm": float("inf")}, ValueError, "clip_norm=inf"),
    (("sgd", 0.1), {"clip_norm": "x"}, TypeError, "clip_norm must be a real number, got str 'x'"),
])
def test_make_optimizer_refuses_bad_settings(user_folder, args, kwargs, error, says):
    with pytest.raises(error, match=re.escape(says)):
        make_optimizer(*args, **kwargs)


def _problem():
    def loss(params, x, y):
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

    params = {"w": jnp.full((3,), 0.1), "b": jnp.zeros(())}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3)), jnp.float32)
    return loss, params, x, x[:, 0]


@pytest.mark.parametrize("change, error, says", [
    (lambda a: {**a, "key": 0}, TypeError, "key must be a JAX PRNG key .* got int 0"),
    (lambda a: {**a, "key": jax.random.split(jax.random.PRNGKey(0), 3)}, ValueError,
     r"key has dtype uint32 and shape \(3, 2\)"),
    (lambda a: {**a, "key": jnp.zeros(2)}, ValueError, "key has dtype float32"),
    (lambda a: {**a, "data": (a["data"][0], a["data"][1][:10])}, ValueError,
     r"batch arrays disagree on their leading axis \(batch\[0\]: 16, batch\[1\]: 10\)"),
    (lambda a: {**a, "data": a["data"][0]}, TypeError, "data must be a non-empty tuple of arrays"),
    (lambda a: {**a, "data": (a["data"][0].at[2, 1].set(jnp.nan), a["data"][1])}, ValueError,
     r"batch\[0\] contains 1 NaN/inf"),
    (lambda a: {**a, "params": {"w": jnp.full((3,), jnp.inf), "b": jnp.zeros(())}}, ValueError,
     "params leaf 'w' contains 3 NaN/inf"),
    (lambda a: {**a, "batch_size": 0}, ValueError, "batch_size=0 is invalid"),
    (lambda a: {**a, "batch_size": True}, TypeError, "batch_size must be an int, got True"),
    (lambda a: {**a, "batch_size": 17}, ValueError, "batch_size=17 is invalid; expected 1 <= batch_size <= 16"),
    (lambda a: {**a, "steps": 2.0}, TypeError, "steps must be an int, got 2.0"),
    (lambda a: {**a, "eval_every": -1}, ValueError, "eval_every=-1 is invalid"),
])
def test_fit_refuses_bad_input_at_the_boundary(user_folder, change, error, says):
    loss, params, x, y = _problem()
    args = change({"params": params, "data": (x, y), "key": jax.random.PRNGKey(0), "batch_size": 4, "steps": 2,
                   "eval_every": 0})
    with pytest.raises(error, match=says):
        fit(loss, args["params"], make_optimizer("sgd", 0.1), args["data"], steps=args["steps"],
            batch_size=args["batch_size"], key=args["key"], eval_every=args["eval_every"])


@pytest.mark.parametrize("kwargs, error, says", [
    ({"key": 3}, TypeError, "key must be a JAX PRNG key"),
    ({"key": jax.random.split(jax.random.key(0), 2)}, ValueError, r"key has shape \(2,\)"),
    ({"steps": True}, TypeError, "steps must be an int, got True"),
])
def test_train_scan_refuses_bad_keys_and_steps(user_folder, kwargs, error, says):
    loss, params, x, y = _problem()
    with pytest.raises(error, match=says):
        train_scan(loss, make_optimizer("sgd", 0.1), params, x, y, **{"steps": 2, **kwargs})


def test_train_step_and_state_refuse_bad_input(user_folder):
    loss, params, x, y = _problem()
    opt = make_optimizer("sgd", 0.1)
    with pytest.raises(TypeError, match="optimizer must be an optax GradientTransformation"):
        make_train_step(loss, "sgd")
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        make_train_step(None, opt)
    with pytest.raises(ValueError, match="params leaf 'b' contains 1 NaN/inf"):
        init_state({"w": params["w"], "b": jnp.asarray(jnp.nan)}, opt)
    with pytest.raises(ValueError, match=r"batch\[1\] contains 16 NaN/inf"):
        train_scan(loss, opt, params, x, jnp.full_like(y, jnp.inf), steps=2)


# ---------------------------------------------------------------------------------------------------------------
# Divergence: stopped with the step and the learning rate named, no report written.

def test_raise_if_diverged_names_the_step_and_the_learning_rate(user_folder):
    loss, params, x, y = _problem()
    state, history = fit(loss, params, make_optimizer("sgd", 1e30), (x, y), steps=6)
    losses = np.asarray(history.loss, np.float64)
    first_bad = int(np.flatnonzero(~np.isfinite(losses) | (losses > 1e6 * max(losses[0], 1.0)))[0])
    with pytest.raises(TrainingDiverged, match=f"training diverged at step {first_bad} with learning_rate=1e\\+30: "
                                               "the training loss .*; lower the learning rate") as err:
        raise_if_diverged(history, state.params, learning_rate=1e30)
    assert err.value.step == first_bad and err.value.learning_rate == 1e30
    history = history._replace(loss=np.where(np.arange(6) == 4, np.nan, 0.5))
    with pytest.raises(TrainingDiverged, match="at step 4 .* the training loss became nan"):
        raise_if_diverged(history, params, learning_rate=0.1)
    state, history = fit(loss, params, make_optimizer("sgd", 0.1), (x, y), steps=3)
    raise_if_diverged(history, state.params, learning_rate=0.1)  # a sound run passes
    with pytest.raises(TrainingDiverged, match="at step 2 .* the parameters became non-finite"):
        raise_if_diverged(history, {"w": jnp.full(3, jnp.inf)}, learning_rate=0.1)


def test_report_that_diverges_exits_2_and_writes_no_report(user_folder, capsys, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "small.toml"
    config.write_text(SMALL)
    user_folder.allow("rep")  # and its checkpoint folder .rep.checkpoints beside it
    err = _exit_2(["report", "--config", str(config), "--lr", "1e30", "--out", "rep", "--quiet"], capsys)
    assert "training diverged at step 1 with learning_rate=1e+30: the training loss grew to" in err
    assert "--clip-norm" in err
    assert "Traceback" not in err
    assert not (user_folder.root / "rep").exists()
    assert (checkpoint_dir_for("rep") / MARKER).is_file()
