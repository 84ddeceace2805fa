"""Writing a report folder atomically: ``results.json``, figures as PNG and PDF, and ``index.html``.

Everything is written into a temporary sibling folder first and renamed into place at the end, so an interrupted
run never leaves a folder that looks complete (a previous complete report stays until the new one is whole).

jaxdl never destroys what a user owns: every folder it writes (a report, a checkpoint folder) carries a marker file,
:data:`MARKER`, and :func:`check_output_dir` refuses any existing path that is not such a folder (a plain folder,
a file, a symbolic link, the current folder or one of its parents, the home folder, a filesystem root).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxdl.report.page import page_html

MARKER = ".jaxdl-report"  # in every folder jaxdl writes: {"tool": "jaxdl", "kind": ..., "version": ...}


class OutputError(ValueError):
    """An output path jaxdl will not write to, because replacing it could destroy something it did not write."""


def write_marker(folder: str | os.PathLike, kind: str) -> None:
    """Mark ``folder`` as written by jaxdl (``kind``: ``"report"`` or ``"checkpoints"``), so it may be replaced."""
    from jaxdl import __version__

    (Path(folder) / MARKER).write_text(json.dumps({"tool": "jaxdl", "kind": kind, "version": __version__}) + "\n")


def is_marked(folder: str | os.PathLike, kind: str) -> bool:
    """Whether ``folder`` is a real folder (not a link) carrying jaxdl's marker of this ``kind``."""
    folder, marker = Path(folder), Path(folder) / MARKER
    if folder.is_symlink() or not folder.is_dir() or marker.is_symlink() or not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("tool") == "jaxdl" and data.get("kind") == kind


def check_output_dir(path: str | os.PathLike, *, kind: str = "report", what: str = "output folder") -> Path:
    """The absolute path jaxdl may (re)create as a folder of ``kind``; refuses anything it did not write.

    A path that does not exist yet is fine (its parents are created). An existing path is accepted only if it is a
    folder carrying jaxdl's marker of this ``kind`` (see :func:`write_marker`); it is then replaced as a whole.

    Args:
      path: the folder to write.
      kind: ``"report"`` or ``"checkpoints"``.
      what: how the error messages name the folder.

    Returns:
      The path made absolute, with symbolic links of its parents resolved.

    Raises:
      OutputError: the path is a symbolic link, the current folder or one of its parents, the home folder or one
        of its parents, a filesystem root, lies below a file, or exists without jaxdl's marker.
    """
    given = Path(path)
    target = Path(os.path.abspath(given))
    name = f"{what} '{given}'" + ("" if str(given) == str(target) else f" ({target})")
    if target.is_symlink():
        raise OutputError(f"{name} is a symbolic link; jaxdl does not replace links or what they point to. Choose "
                          "another folder.")
    resolved = target.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved.parent == resolved:
        raise OutputError(f"{name} is the current folder or one of its parents (or a filesystem root); jaxdl would "
                          "replace it as a whole. Choose a new folder, like reports/mine.")
    if resolved == home or resolved in home.parents:
        raise OutputError(f"{name} is the home folder or one of its parents; jaxdl would replace it as a whole. "
                          "Choose a new folder, like reports/mine.")
    for above in target.parents:
        if above.exists() and not above.is_dir():
            raise OutputError(f"{name} cannot be created: '{above}' is a file, not a folder.")
    if target.exists():
        if not target.is_dir():
            raise OutputError(f"{name} exists and is a file, not a folder written by jaxdl; jaxdl does not replace "
                              "it. Choose another folder or move the file away.")
        if not is_marked(target, kind):
            raise OutputError(f"{name} exists and was not written by jaxdl (it has no {MARKER} marker of a jaxdl "
                              f"{kind} folder); jaxdl replaces only folders it wrote. Choose another folder or remove "
                              "it yourself.")
    return resolved


def checkpoint_dir_for(out_dir: str | os.PathLike) -> Path:
    """Checkpoints live beside the report folder, never inside it: ``<parent>/.<name>.checkpoints``."""
    out = Path(out_dir).resolve()
    return out.parent / f".{out.name}.checkpoints"


def check_report_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """:func:`check_output_dir` for a report folder and for its checkpoint folder; returns both paths.

    Raises:
      OutputError: as :func:`check_output_dir`, for either folder.
    """
    out = check_output_dir(out_dir)
    return out, check_output_dir(checkpoint_dir_for(out), kind="checkpoints", what="checkpoint folder")


def to_jsonable(value: Any) -> Any:
    """Arrays, NamedTuples, dataclasses and numpy scalars to plain JSON values; non-finite floats to strings."""
    if hasattr(value, "_asdict"):
        return {k: to_jsonable(v) for k, v in value._asdict().items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
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
      out_dir: destination folder; an existing one is replaced as a whole only if jaxdl wrote it (see
        :func:`check_output_dir`, checked before anything is written and again before the final rename).
      title: page title.
      results: JSON-serialisable numbers (see :func:`to_jsonable`); written as ``results.json``.
      figures: ``{stem: matplotlib Figure}``; each saved as ``stem.png`` and ``stem.pdf``.
      captions: ``{stem: caption}`` shown under each figure.
      summary_html: trusted HTML (built by our own code) placed above the figures.

    Raises:
      OutputError: ``out_dir`` exists and was not written by jaxdl, or may not be replaced (a link, the current
        folder, ...); nothing is written then.
    """
    import matplotlib.pyplot as plt

    out = check_output_dir(out_dir)
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
        (tmp / "index.html").write_text(page_html(title, figures.keys(), captions, summary_html))
        write_marker(tmp, "report")
        check_output_dir(out_dir)  # again: something may have appeared at ``out`` while the report was computed
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``. A previous ``out`` (a checked, marked report) is first moved into a fresh folder
    of our own and deleted only once the new one is in place: nothing but jaxdl's own folders is ever removed."""
    if not out.exists():
        tmp.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(old / out.name)
    try:
        tmp.rename(out)
    except BaseException:
        (old / out.name).rename(out)  # put the previous report back
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)
