"""Open a report's ``index.html`` in headless Chromium: check that every figure loads and take a screenshot.

Usage: ``python -m jaxdl.report.browser_check reports/default [--screenshot PATH]``. Needs Debian's ``chromium`` package
(``apt-get install chromium``); exits 2 with a clear message when no Chromium is found, 1 when a figure fails.

How: a small probe page beside the report loads each ``<img>`` of ``index.html`` and writes, once every image has
either loaded (non-zero natural size) or failed, a line ``figures-ok N/M`` into its own DOM; Chromium's
``--dump-dom`` prints that DOM. A second Chromium call screenshots ``index.html`` itself.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files"]


def find_chromium() -> Optional[str]:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.extend(v for k, v in attrs if k == "src" and v)


def figure_sources(index_html: Path) -> list[str]:
    parser = _Images()
    parser.feed(index_html.read_text())
    return parser.sources


PROBE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const srcs = %s; let done = 0, ok = 0; const bad = [];
function finish() { document.getElementById('out').textContent = 'figures-ok ' + ok + '/' + srcs.length +
  (bad.length ? ' failed: ' + bad.join(',') : ''); }
if (!srcs.length) finish();
for (const s of srcs) { const im = new Image();
  im.onload = () => { if (im.naturalWidth > 0) ok++; else bad.push(s); if (++done === srcs.length) finish(); };
  im.onerror = () => { bad.push(s); if (++done === srcs.length) finish(); };
  im.src = s; }
</script></body></html>"""


def check_report(report_dir: str | Path, screenshot: Optional[str | Path] = None, *, chromium: Optional[str] = None,
                 timeout: float = 120.0) -> dict:
    """Load every figure of ``report_dir/index.html`` in headless Chromium; return counts and the screenshot path.

    Raises:
      FileNotFoundError: no ``index.html`` in ``report_dir``, or no Chromium on PATH.
    """
    report = Path(report_dir).resolve()
    index = report / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"{index} does not exist; expected a report folder written by `jaxdl report`.")
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found on PATH (tried " + ", ".join(CHROMIUM_NAMES) + "); install "
                                "Debian's package with `apt-get install chromium`.")
    sources = figure_sources(index)
    with tempfile.TemporaryDirectory() as profile:
        probe = report / ".browser-probe.html"
        probe.write_text(PROBE % json.dumps(sources))
        try:
            dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                                  "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=timeout)
        finally:
            probe.unlink(missing_ok=True)
        match = re.search(r"figures-ok (\d+)/(\d+)( failed: ([^<\s]+))?", dom.stdout)
        shot = Path(screenshot).resolve() if screenshot else report.parent / f"{report.name}-screenshot.png"
        subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2400",
                        "--virtual-time-budget=10000", f"--screenshot={shot}", index.as_uri()],
                       capture_output=True, text=True, timeout=timeout)
    loaded = int(match.group(1)) if match else 0
    return {"figures": len(sources), "loaded": loaded, "failed": (match.group(4) or "").split(",") if match and
            match.group(4) else ([] if match else sources), "screenshot": str(shot) if shot.exists() else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check a jaxdl report in headless Chromium.")
    parser.add_argument("report_dir", help="a folder written by `jaxdl report` or `jaxdl experiment`")
    parser.add_argument("--screenshot", help="PNG path (default: <report_dir>-screenshot.png beside the folder)")
    args = parser.parse_args(argv)
    try:
        result = check_report(args.report_dir, args.screenshot)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{result['loaded']}/{result['figures']} figures loaded; screenshot: {result['screenshot']}")
    if result["failed"]:
        print(f"failed: {', '.join(result['failed'])}", file=sys.stderr)
    return 0 if result["loaded"] == result["figures"] and result["figures"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
