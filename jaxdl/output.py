"""Writing a report folder atomically: ``results.json``, figures as PNG and PDF, and ``index.html``.

Everything is written into a temporary sibling folder first and renamed into place at the end, so an interrupted
run never leaves a folder that looks complete (a previous complete report stays until the new one is whole).
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def to_jsonable(value: Any) -> Any:
    """Arrays, NamedTuples, dataclasses and numpy scalars to plain JSON values; non-finite floats to strings."""
    if hasattr(value, "_asdict"):
        return {k: to_jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        arr = np.asarray(value)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    return value


def environment() -> dict[str, Any]:
    """Versions, backend and device: recorded with every result."""
    import flax
    import jax
    import matfree
    import optax

    return {
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "matfree": getattr(matfree, "__version__", "unknown"),
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
    }


def median_time(fn, *args, repeats: int = 20) -> float:
    """Median wall seconds of ``fn(*args)`` over ``repeats`` calls, after one warm-up call (which compiles);
    JAX outputs are waited for."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def write_report(
    out_dir: str | os.PathLike,
    *,
    title: str,
    results: Mapping[str, Any],
    figures: Mapping[str, Any],
    captions: Mapping[str, str] | None = None,
    summary_html: str = "",
) -> Path:
    """Write ``out_dir`` atomically and return its path.

    Args:
      out_dir: destination folder (replaced as a whole if it exists).
      title: page title.
      results: JSON-serialisable numbers (see :func:`to_jsonable`); written as ``results.json``.
      figures: ``{stem: matplotlib Figure}``; each saved as ``stem.png`` and ``stem.pdf``.
      captions: ``{stem: caption}`` shown under each figure.
      summary_html: trusted HTML (built by our own code) placed above the figures.
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        captions = dict(captions or {})
        for stem, fig in figures.items():
            fig.savefig(tmp / f"{stem}.png", dpi=120, bbox_inches="tight")
            fig.savefig(tmp / f"{stem}.pdf", bbox_inches="tight")
            plt.close(fig)
        with open(tmp / "results.json", "w") as f:
            json.dump(to_jsonable(results), f, indent=2, sort_keys=False)
        (tmp / "index.html").write_text(_page(title, figures.keys(), captions, summary_html))
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _page(title: str, stems, captions: Mapping[str, str], summary_html: str) -> str:
    esc = html.escape
    items = "\n".join(
        f'<figure><img src="{esc(s)}.png" alt="{esc(s)}"><figcaption>{esc(captions.get(s, s))} '
        f'(<a href="{esc(s)}.pdf">PDF</a>)</figcaption></figure>'
        for s in stems
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
figure {{ display: inline-block; width: 48%; margin: 0.5%; vertical-align: top; }}
img {{ width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
</style></head>
<body><h1>{esc(title)}</h1>
{summary_html}
<p>All numbers: <a href="results.json">results.json</a>.</p>
{items}
</body></html>
"""
