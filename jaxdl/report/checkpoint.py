"""Training checkpoints with orbax-checkpoint: the train state, the monitor state and the history so far.

Each checkpoint is finalised atomically by orbax (written to a temporary folder, renamed when complete), so a run
killed mid-save leaves the previous checkpoint intact. Restoring gives the saved arrays bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


class Checkpointer:
    """Save and restore ``(pytree, metadata)`` pairs by step in ``directory``, keeping the newest ``max_to_keep``."""

    def __init__(self, directory: str | Path, *, max_to_keep: int = 2):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep={max_to_keep} is invalid; expected >= 1.")
        self.directory = Path(directory).resolve()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False),
        )

    def save(self, step: int, tree: PyTree, meta: dict) -> None:
        """Save ``tree`` (arrays) and ``meta`` (JSON-serialisable) as checkpoint ``step`` and wait until written."""
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                         meta=ocp.args.JsonSave(meta)))
        self._manager.wait_until_finished()

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def restore(self, step: int, like: PyTree) -> tuple[PyTree, dict]:
        """Restore checkpoint ``step`` into the structure (and dtypes) of ``like``."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                  meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def close(self) -> None:
        self._manager.close()


def history_to_json(history: dict[str, Any]) -> dict[str, Any]:
    """Numpy arrays to lists of Python floats (exact round trip for float32/float64 via repr)."""
    return {k: (history_to_json(v) if isinstance(v, dict) else np.asarray(v).tolist()) for k, v in history.items()}
