"""The report page in headless Chromium: every figure loads (skipped when Chromium is not installed)."""

from __future__ import annotations

import pytest

from jaxdl.report.browser_check import check_report, find_chromium
from jaxdl.report import write_report


@pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (apt-get install chromium)")
def test_every_figure_loads_in_chromium(tmp_path):
    import matplotlib.pyplot as plt

    figs = {}
    for name in ("one", "two"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        figs[name] = fig
    out = write_report(tmp_path / "rep", title="t", results={"x": 1}, figures=figs)
    result = check_report(out, tmp_path / "shot.png")
    assert result == {"figures": 2, "loaded": 2, "failed": [], "screenshot": str(tmp_path / "shot.png")}
    # A missing figure is caught.
    (out / "two.png").unlink()
    broken = check_report(out, tmp_path / "shot2.png")
    assert broken["loaded"] == 1 and broken["failed"] == ["two.png"]


def test_missing_report_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.html does not exist"):
        check_report(tmp_path)
