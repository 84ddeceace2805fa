"""Convolutions inside compiled loops on XLA:CPU: one Hessian-vector product of a small conv net dispatched alone,
inside ``lax.fori_loop`` (as Krylov methods run it), inside an unrolled loop, and inside ``lax.fori_loop`` with the
convolutions rewritten by analysis (``analysis/_convolutions.py``, what every analysis routine does on CPU).

Usage: python benchmarks/conv_loop.py [--json PATH] [--repeats N]
Prints seconds per product and writes JSON. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis._convolutions import canonical_convolutions  # noqa: E402
from jaxdl.report import environment  # noqa: E402
from jaxdl.timing import median_time  # noqa: E402

PRODUCTS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/conv_loop.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    w = jax.random.normal(k[0], (3, 3, 16, 16)) * 0.1
    x = jax.random.normal(k[1], (64, 16, 16, 16))
    dims = ("NHWC", "HWIO", "NHWC")

    def loss(w, x):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
        y = jax.lax.conv_general_dilated(jnp.tanh(y), w, (1, 1), "SAME", dimension_numbers=dims)
        return jnp.mean(y**2)

    def hvp(v, w, x):
        return jax.jvp(lambda p: jax.grad(loss)(p, x), (w,), (v,))[1]

    def loop(unroll, product=hvp):
        def run(v, w, x):
            return jax.lax.fori_loop(0, PRODUCTS, lambda i, u: product(u, w, x) / jnp.linalg.norm(u), v,
                                     unroll=unroll)
        return jax.jit(run)

    v = jnp.ones_like(w)
    rows = {"alone": median_time(jax.jit(hvp), v, w, x, repeats=args.repeats),
            "fori_loop": median_time(loop(False), v, w, x, repeats=args.repeats) / PRODUCTS,
            "fori_loop_unrolled": median_time(loop(True), v, w, x, repeats=args.repeats) / PRODUCTS,
            "fori_loop_rewritten": median_time(loop(False, canonical_convolutions(hvp)), v, w, x,
                                               repeats=args.repeats) / PRODUCTS}
    for name, t in rows.items():
        print(f"{name:>20}: {t * 1e3:8.2f} ms per product ({t / rows['alone']:.1f}x alone)")
    out = {"seconds_per_product": rows, "loadavg": os.getloadavg(), "environment": environment()}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
