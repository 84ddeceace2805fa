"""The main job on the ResNet and the Transformer: settings, the data views, the objective the report trains and
analyses, and a tiny end-to-end run of each model through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdl.cli import main
from jaxdl.data import digits, digits_images, digits_sequences, images_from
from jaxdl.models import ResNet20
from jaxdl.report import analysis_batch, build_problem, load_config
from jaxdl.report.config import MODEL_DEFAULTS, ReportConfig

TINY = {
    "resnet20": """
[report]
model = "resnet20"
width = 2
depth = 8
steps = 6
batch_size = 64
monitor_every = 3
eval_every = 3
checkpoint_every = 6
analysis_examples = 32
k = 2
lanczos_matvecs = 8
trace_matvecs = 6
slq_matvecs = 6
slq_probes = 1
layer_matvecs = 4
landscape_points = 3
landscape_grid = 3
dense_limit = 100
""",
    "transformer": """
[report]
model = "transformer"
width = 4
num_heads = 2
steps = 6
monitor_every = 3
eval_every = 3
checkpoint_every = 6
analysis_examples = 32
k = 2
lanczos_matvecs = 40
trace_matvecs = 6
slq_matvecs = 6
slq_probes = 1
layer_matvecs = 4
landscape_points = 3
landscape_grid = 3
""",
}
STEMS = ["loss", "accuracy", "gradient_curvature", "predicted_vs_actual", "top_eigenvalue", "spectral_density",
         "extreme_eigenvalues", "eigenvector_slices", "landscape_2d"]


def test_images_and_sequences_are_the_digits_split():
    flat = digits()
    images, seqs = digits_images(), digits_sequences()
    for view, shape in ((images, (8, 8, 1)), (seqs, (8, 8))):
        assert view.x_train.shape[1:] == shape and view.x_test.shape[1:] == shape
        np.testing.assert_array_equal(np.asarray(view.x_train).reshape(-1, 64), np.asarray(flat.x_train))
        np.testing.assert_array_equal(np.asarray(view.y_test), np.asarray(flat.y_test))
    big = digits_images(16)
    np.testing.assert_array_equal(np.asarray(big.x_train)[:, ::2, ::2], np.asarray(images.x_train))
    np.testing.assert_array_equal(np.asarray(big.x_train)[:, 1::2, 1::2], np.asarray(images.x_train))
    smooth = digits_images(16, method="bilinear")
    assert smooth.x_train.shape == (1347, 16, 16, 1) and smooth.x_train.dtype == jnp.float32
    with pytest.raises(ValueError, match="size=12 is invalid"):
        images_from(flat, 12)
    with pytest.raises(ValueError, match="method='cubic' is invalid"):
        images_from(flat, 16, method="cubic")


def test_model_settings_defaults_and_errors():
    cfg = load_config(None, model="resnet20")
    assert cfg.width == MODEL_DEFAULTS["resnet20"]["width"] and cfg.batch_size == MODEL_DEFAULTS["resnet20"]["batch_size"]
    assert load_config(None, model="resnet20", steps=7, width=4).steps == 7
    assert ReportConfig(model="transformer").validate().num_heads == 4  # architecture defaults without load_config
    record = load_config(None, model="transformer").record()
    assert "hidden" not in record and "image_size" not in record and record["width"] == 32
    assert set(ReportConfig().record()) == set(ReportConfig.__dataclass_fields__) - {
        "width", "depth", "num_heads", "image_size", "analysis_examples", "layer_matvecs"}
    for kwargs, match in [({"width": 4}, "width=4 is invalid for model='mlp'"),
                          ({"model": "resnet20", "depth": 10}, "depth=10 is invalid"),
                          ({"model": "resnet20", "image_size": 12}, "image_size=12"),
                          ({"model": "transformer", "width": 6}, "multiple of num_heads"),
                          ({"model": "transformer", "image_size": 8}, "image_size=8 is invalid for model"),
                          ({"model": "resnet20", "layer_matvecs": 2}, "layer_matvecs=2"),
                          ({"model": "vgg"}, "model='vgg' is unknown")]:
        with pytest.raises(ValueError, match=match):
            load_config(None, **kwargs)
    with pytest.raises(TypeError, match="width must be an int"):
        load_config(None, model="resnet20", width=2.5)


def test_report_loss_is_the_models_training_mode_loss():
    """The ResNet problem's loss is the model's own training-mode loss (BatchNorm by the batch statistics)."""
    cfg = load_config(None, model="resnet20", width=2, depth=8)
    problem = build_problem(cfg)
    x, y = problem.data.x_train[:40], problem.data.y_train[:40]
    model = ResNet20(num_classes=10, in_channels=1, width=2, depth=8, rngs=nnx.Rngs(cfg.seed))
    model.train()
    own = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model(x), y))
    np.testing.assert_allclose(problem.loss_fn(problem.params, x, y), own, rtol=1e-6)
    model.eval()  # the deployed network (running averages at their initial values) is a different function
    deployed = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model(x), y))
    assert abs(float(deployed) - float(own)) > 1e-3
    batch = analysis_batch(cfg, problem)
    assert batch[0].shape == (cfg.analysis_examples, 8, 8, 1)
    np.testing.assert_array_equal(np.asarray(batch[1]), np.asarray(problem.data.y_train[:cfg.analysis_examples]))


@pytest.mark.parametrize("model", ["resnet20", "transformer"])
def test_tiny_network_report(model, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY[model])
    out = tmp_path / "rep"
    assert main(["report", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    r = json.loads((out / "results.json").read_text())
    m = r["model"]
    assert m["name"] == model and m["num_params"] > 0 and m["analysis_examples"] == 32
    assert m["dropout"] == "off" and m["batch_norm"] == ("batch" if model == "resnet20" else None)
    assert r["config"]["model"] == model and "hidden" not in r["config"]
    numbers = [r["final"][k] for k in ("train_loss", "test_loss", "loss", "gTg", "gTHg")]
    numbers += r["lanczos"]["eigenvalues"] + [r["trace"]["estimate"]]
    numbers += [p[k] for p in r["per_layer"] for k in ("top_eigenvalue", "trace")]
    assert all(isinstance(v, float) and np.isfinite(v) for v in numbers)
    layers = [p["layer"] for p in r["per_layer"]]
    page = (out / "index.html").read_text()
    if model == "resnet20":
        assert layers == ["stem + stem_bn", "blocks/0", "blocks/1", "blocks/2", "head"]
        assert not r["exact"]["computed"] and "exceeds dense_limit" in r["exact"]["reason"]
        assert "exact spectrum" in page and "batch_norm=&#x27;batch&#x27;" in page
    else:
        assert layers == ["embed + position", "blocks/0/norm1 + blocks/0/attention",
                          "blocks/0/norm2 + blocks/0/hidden + blocks/0/output", "norm + head"]
        ex = r["exact"]
        assert ex["computed"]  # a few hundred parameters: the dense float64 Hessian of the analysis batch
        np.testing.assert_allclose(r["lanczos"]["eigenvalues"][-1], ex["top_k"][-1], rtol=1e-2)
        for row in r["per_layer"]:
            assert row["top_eigenvalue"] <= row["exact_top_eigenvalue"] * (1 + 1e-3) + 1e-6
    assert sum(p["num_params"] for p in r["per_layer"]) == m["num_params"]
    for stem in STEMS:
        assert (out / f"{stem}.png").stat().st_size > 1000 and f'src="{stem}.png"' in page
