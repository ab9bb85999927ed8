"""benchmarks/widgets.py --quick runs end to end, so the benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_widgets_benchmark_quick(tmp_path, lab, browser, notebook_page):
    """Reuses the session's JupyterLab and Chromium (after the widget tests ran their notebook)."""
    spec = importlib.util.spec_from_file_location("bench_widgets", REPO / "benchmarks" / "widgets.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "widgets.json"
    res = bench.main(["--quick", "--out", str(out)], lab=lab, browser=browser)
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert [p["points"] for p in res["first_paint"]] == [5_000, 20_000]
    assert all(p["first_paint_ms"] > 0 for p in res["first_paint"])
    assert all(f["frame_ms_median"] > 0 for f in res["frame"])
    assert [l["selected"] for l in res["lasso"]] == [5_000, 20_000]
    assert res["keypress"]["prefetch"]["presses"] == 4 and res["keypress"]["prefetch"]["median_ms"] >= 0
