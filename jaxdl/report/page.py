"""The HTML of a report folder: the page around the figures, and the summaries placed above them."""

from __future__ import annotations

import html
import math
from typing import Iterable, Mapping

import numpy as np


def page_html(title: str, stems: Iterable[str], captions: Mapping[str, str], summary_html: str) -> str:
    """``index.html``: the title, ``summary_html`` (trusted), a link to ``results.json`` and each figure
    ``stem.png`` with its caption and a link to ``stem.pdf``."""
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


def summary_html(r) -> str:
    """The table of the main numbers of a :class:`jaxdl.report.ReportResults`, and the per-layer blocks."""
    f, t, m = r.final, r.trace, r.model
    if hasattr(m, "sizes"):
        rows = [("parameters", f"{m.num_params} ({'-'.join(map(str, m.sizes))})")]
    else:
        shape = "x".join(map(str, m.input_shape))
        rows = [("model", html.escape(f"{m.name}: {', '.join(f'{k} {v}' for k, v in m.architecture.items())}")),
                ("parameters", f"{m.num_params} (inputs {shape}, {m.num_classes} classes)"),
                ("objective (training and analysis)", html.escape(m.objective)),
                ("analysis batch", f"{m.analysis_examples} of {m.train_examples} training examples")]
    rows += [
        ("final train / test loss", f"{f.train_loss:.4f} / {f.test_loss:.4f}"),
        ("final train / test accuracy", f"{f.train_acc:.3f} / {f.test_acc:.3f}"),
        ("g<sup>T</sup>g, g<sup>T</sup>Hg", f"{f.gTg:.4g}, {f.gTHg:.4g}"),
        ("trace (Hutch++)", f"{t.estimate:.4g} &plusmn; {t.standard_error:.2g}"),
        ("Lanczos eigenvalues (residual)", ", ".join(
            f"{float(v):.4g} ({float(e):.1g})" for v, e in zip(np.asarray(r.lanczos.eigenvalues),
                                                              np.asarray(r.lanczos.residuals)))),
    ]
    ex = r.exact
    if not ex.computed:
        rows.append(("exact spectrum", f"not computed: {html.escape(ex.reason)}"))
    if ex.computed:
        c = ex.condition
        rows += [
            ("exact trace", f"{ex.trace:.4g}"),
            ("condition number (non-null)", f"{c.condition_number:.4g} (null tolerance {c.null_tolerance:.2g})"),
            ("negative / near-zero / positive", f"{c.num_negative} / {c.num_near_zero} / {c.num_positive}"),
            ("Hessian index (fraction negative)", f"{c.index:.4f}"),
            ("SLQ Wasserstein-1 to exact", f"{ex.slq_wasserstein1:.3g}"),
        ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    layer_rows = "".join(
        f"<tr><td>{html.escape(p.layer)}</td><td>{p.num_params}</td><td>{p.top_eigenvalue:.4g}</td>"
        f"<td>{getattr(p, 'exact_top_eigenvalue', math.nan):.4g}</td><td>{p.trace:.4g} &plusmn; "
        f"{p.trace_standard_error:.2g}</td><td>{getattr(p, 'exact_trace', math.nan):.4g}</td></tr>"
        for p in r.per_layer)
    layers = ("<h2>Per-layer Hessian blocks</h2><table><tr><th>layer</th><th>parameters</th><th>top eigenvalue "
              "(Lanczos)</th><th>exact</th><th>trace (Hutch++)</th><th>exact</th></tr>" + layer_rows + "</table>")
    return f"<table>{body}</table>{layers}"


def verdict_html(claim: str, passed: bool, verdict: str) -> str:
    """An experiment's claim and verdict."""
    status = "supported" if passed else "NOT supported"
    return (f"<p><b>Claim:</b> {html.escape(claim)}</p><p><b>Verdict ({status}):</b> {html.escape(verdict)}</p>")
