"""Wall-clock timing of JAX calls, shared by the experiments that report costs and by the benchmarks."""

from __future__ import annotations

import time

import jax
import numpy as np


def median_time(fn, *args, repeats: int = 20, inner: int = 1) -> float:
    """Median over ``repeats`` of the mean wall seconds of ``inner`` calls of ``fn(*args)``, after one warm-up call
    (which compiles); JAX outputs are waited for (only the last of the ``inner`` calls, so that asynchronous
    dispatch overlaps them as it would in a loop)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / inner)
    return float(np.median(times))
