"""The main job: configuration, command line, report contents, checkpoints and resume after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxdl.cli import main
from jaxdl.report import MARKER, ReportConfig, build_problem, checkpoint_dir_for, load_config, run_report
from jaxdl.report import train_with_checkpoints
from tests.conftest import JAX_CACHE

ROOT = Path(__file__).resolve().parents[1]
SMALL = """
[report]
hidden = [8]
steps = {steps}
batch_size = 64
learning_rate = 0.1
monitor_every = {monitor_every}
eval_every = 50
checkpoint_every = {checkpoint_every}
k = 2
lanczos_matvecs = 30
trace_matvecs = 12
slq_matvecs = 12
slq_probes = 2
landscape_points = 5
landscape_grid = 3
"""


def small_config(tmp_path: Path, steps=60, monitor_every=5, checkpoint_every=20) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(steps=steps, monitor_every=monitor_every, checkpoint_every=checkpoint_every))
    return path


def test_config_precedence_and_errors(tmp_path):
    cfg = load_config(small_config(tmp_path), steps=7, learning_rate=None)
    assert (cfg.steps, cfg.hidden, cfg.learning_rate, cfg.batch_size) == (7, (8,), 0.1, 64)
    assert load_config(None, hidden="16,4").hidden == (16, 4)
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['stepz'\].*valid settings: model"):
        load_config(bad)
    bad.write_text("steps = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    for kwargs, match in [({"optimizer": "lbfgs"}, "optimizer='lbfgs' is unknown; expected one of sgd"),
                          ({"steps": 0}, "steps=0 is invalid"), ({"momentum": 1.0}, "momentum=1.0"),
                          ({"hidden": "8,x"}, "comma-separated"), ({"dataset": "mnist"}, "dataset='mnist'")]:
        with pytest.raises(ValueError, match=match):
            load_config(None, **kwargs)


def test_cli_exit_status_2_on_bad_input(capsys, tmp_path):
    for argv, match in [(["report", "--optimizer", "lbfgs"], "optimizer='lbfgs' is unknown"),
                        (["report", "--steps", "-1"], "-1 is invalid"),
                        (["report", "--resume", "--out", str(tmp_path / "none")], "no checkpoint"),
                        (["experiment", "no_such_thing"], "unknown experiment 'no_such_thing'; choose from: ")]:
        with pytest.raises(SystemExit) as err:
            main(argv)
        assert err.value.code == 2
        assert match in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "ill-conditioning" in listing


def test_small_report_contents(tmp_path):
    cfg = load_config(small_config(tmp_path))
    out = run_report(cfg, tmp_path / "rep", progress=False)
    r = json.loads((out / "results.json").read_text())
    assert json.loads((out / MARKER).read_text())["kind"] == "report"
    assert json.loads((checkpoint_dir_for(out) / MARKER).read_text())["kind"] == "checkpoints"
    for key in ("jax", "flax", "optax", "backend", "devices"):
        assert key in r["environment"]
    assert r["config"]["hidden"] == [8] and r["seed"] == 0
    page = (out / "index.html").read_text()
    stems = ["loss", "accuracy", "gradient_curvature", "predicted_vs_actual", "top_eigenvalue", "spectral_density",
             "extreme_eigenvalues", "eigenvector_slices", "landscape_2d"]
    for stem in stems:
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.pdf").stat().st_size > 1000
        assert f'src="{stem}.png"' in page
    ex = r["exact"]
    assert ex["computed"]
    # Lanczos against the exact spectrum, Hutch++ against the exact trace, per-layer blocks against exact blocks.
    np.testing.assert_allclose(r["lanczos"]["eigenvalues"][-1], ex["top_k"][-1], rtol=1e-4)
    assert abs(r["trace"]["estimate"] - ex["trace"]) <= 4 * r["trace"]["standard_error"] + 1e-6
    for row in r["per_layer"]:
        np.testing.assert_allclose(row["top_eigenvalue"], row["exact_top_eigenvalue"], rtol=1e-3)
    # Monitor: eq. 8.10 prediction close to the actual change while steps are small.
    mon = r["history"]["monitor"]
    pred, act = np.array(mon["predicted_change"]), np.array(mon["actual_change"])
    assert len(pred) == 60 // 5 and np.all(np.isfinite(act))
    assert np.corrcoef(pred, act)[0, 1] > 0.9


def _run_cli(args, cache_dir=None, **kw):
    """``jaxdl`` in a fresh process. With ``cache_dir`` it uses JAX's persistent compilation cache there, so programs
    compiled before are loaded, not compiled again (the cache holds compiled programs; the computation is the
    same)."""
    env = dict(os.environ)
    if cache_dir is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.Popen([sys.executable, "-m", "jaxdl.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _strip(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in ("timing_s",)}


def test_killed_run_resumes_bit_identically(tmp_path):
    config = small_config(tmp_path, steps=300, monitor_every=1, checkpoint_every=25)
    full, part = tmp_path / "full", tmp_path / "part"
    cache = JAX_CACHE  # shared with this test process, which compiled the same programs for the small report
    proc = _run_cli(["report", "--config", str(config), "--out", str(full), "--quiet"], cache)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()

    proc = _run_cli(["report", "--config", str(config), "--out", str(part), "--quiet"], cache)
    ckpt = checkpoint_dir_for(part)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not part.exists(), "a killed run left a report folder behind"
    # Killed after the first checkpoint: usually mid-training; on a fast machine possibly during the analysis.
    # Either way the resumed run must reproduce the uninterrupted one exactly.
    steps_saved = sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
    assert steps_saved and steps_saved[0] >= 25

    proc = _run_cli(["report", "--config", str(config), "--out", str(part), "--quiet", "--resume"], cache)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    a = json.loads((full / "results.json").read_text())
    b = json.loads((part / "results.json").read_text())
    assert a["params_sha256"] == b["params_sha256"]
    assert _strip(a) == _strip(b)


def test_resume_with_other_settings_is_refused(tmp_path):
    config = small_config(tmp_path, steps=40, checkpoint_every=20)
    cfg = load_config(config)
    train_with_checkpoints(cfg, build_problem(cfg), checkpoint_dir_for(tmp_path / "r"), progress=False, resume=False)
    with pytest.raises(SystemExit) as err:
        main(["report", "--config", str(config), "--out", str(tmp_path / "r"), "--resume", "--lr", "0.2",
              "--quiet"])
    assert err.value.code == 2


def test_default_config_is_the_documented_default():
    cfg = ReportConfig().validate()
    assert (cfg.hidden, cfg.activation, cfg.optimizer, cfg.learning_rate, cfg.steps) == ((32, 32), "tanh", "sgd",
                                                                                         0.5, 300)
    assert os.path.basename(str(checkpoint_dir_for("reports/default"))) == ".default.checkpoints"


def test_report_package_exports_and_jax_free_fast_path():
    import ast

    import jaxdl.report

    tree = ast.parse((ROOT / "jaxdl" / "report" / "__init__.py").read_text())
    typed = {a.asname: node.module.rsplit(".", 1)[1] for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module.startswith("jaxdl.report.") for a in node.names}
    assert typed == jaxdl.report._EXPORTS  # the names type checkers see are the names the package exports
    for name in jaxdl.report.__all__:
        assert getattr(jaxdl.report, name) is getattr(sys.modules[f"jaxdl.report.{typed[name]}"], name)
    # The command line's refusal of an output folder must not wait for JAX.
    code = ("import sys, jaxdl.cli\nfrom jaxdl.report import MAX_SEED, OutputError, check_report_paths, load_config\n"
            "jaxdl.cli.build_parser()\nprint('jax' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr
