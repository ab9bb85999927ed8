"""Region mosaics: the dated chips downloaded from the loopback WMTS server (synthetic clouds over Blue
Marble) composited into one cloud-free mosaic of the region, with per-pixel date provenance, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curator_widgets import Workspace, composite_region, load_mosaic
from curator_widgets.cli import main
from curator_widgets.errors import CuratorError
from curator_widgets.preprocess import mosaic as mosaic_mod
from curator_widgets.preprocess import psnr
from curator_widgets.sources import GIBSSource
from curator_widgets.sources.wmts_server import SYNTHETIC_CLOUDY_LAYER

from test_preprocess import REGION, SERVED, _src, cloudy_server, dated_ws  # noqa: F401 - fixtures


def canvas(ws, rows) -> np.ndarray:
    """The chips pasted at their pixel origin (what one date of the region looks like)."""
    x0, y0 = rows["x0"].min(), rows["y0"].min()
    out = np.zeros(((rows["y0"] + rows["height"]).max() - y0, (rows["x0"] + rows["width"]).max() - x0, 3), np.uint8)
    for _, r in rows.iterrows():
        out[r["y0"] - y0:r["y0"] - y0 + r["height"], r["x0"] - x0:r["x0"] - x0 + r["width"]] = ws.load_chip(int(r["id"]))
    return out


def test_region_mosaic_is_cloud_free_and_says_where_each_pixel_came_from(dated_ws):
    ws = dated_ws
    m = composite_region(ws, method="median", layer=SYNTHETIC_CLOUDY_LAYER, band_rows=48, progress=False)
    man = ws.manifest
    truth = canvas(ws, man[man["layer"] == "BlueMarble_NextGeneration"])
    days = [canvas(ws, man[(man["layer"] == SYNTHETIC_CLOUDY_LAYER) & (man["date"] == d)]) for d in SERVED]
    assert m.image.shape == truth.shape == (128, 128, 3) and m.dates == SERVED and m.provenance.min() >= 0
    single = [psnr(d, truth) for d in days]
    got = psnr(m.image, truth)
    assert got > max(single) - 1 and got > np.median(single) + 10, (got, single)
    for t, day in enumerate(days):  # each pixel is the pixel of the date its provenance names
        here = m.provenance == t
        assert np.array_equal(m.image[here], day[here])
    assert sum(m.share().values()) == pytest.approx(1.0) and sorted(m.chip_ids) == SERVED
    stored = load_mosaic(ws, m.name)
    assert np.array_equal(stored.image, m.image) and np.array_equal(stored.provenance, m.provenance)
    assert stored.meta["west"] == pytest.approx(REGION[0]) and stored.meta["north"] == pytest.approx(REGION[3])
    assert json.loads((ws.root / "workspace.json").read_text())["mosaics"][m.name]["dates"] == SERVED
    again = composite_region(ws, layer=SYNTHETIC_CLOUDY_LAYER, band_rows=48, progress=False)
    assert again.existing and np.array_equal(again.image, m.image)


def test_an_interrupted_mosaic_resumes_at_the_next_band(dated_ws, monkeypatch):
    ws = dated_ws
    real, calls = mosaic_mod.composite, []

    def failing(*a, **kw):
        if len(calls) == 1:
            raise KeyboardInterrupt  # the person stops it after the first band
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(mosaic_mod, "composite", failing)
    with pytest.raises(KeyboardInterrupt):
        composite_region(ws, layer=SYNTHETIC_CLOUDY_LAYER, name="resumed", band_rows=48, progress=False)
    assert len(list((ws.root / "preprocess" / "mosaics" / "resumed" / "bands").glob("*.npz"))) == 1
    with pytest.raises(CuratorError, match="no mosaic named 'resumed'"):
        load_mosaic(ws, "resumed")  # half a mosaic is never shown as one
    counted = []
    monkeypatch.setattr(mosaic_mod, "composite", lambda *a, **kw: counted.append(1) or real(*a, **kw))
    m = composite_region(ws, layer=SYNTHETIC_CLOUDY_LAYER, name="resumed", band_rows=48, progress=False)
    assert len(counted) == 2  # bands 2 and 3 only
    whole = composite_region(ws, layer=SYNTHETIC_CLOUDY_LAYER, name="whole", band_rows=48, progress=False)
    assert np.array_equal(m.image, whole.image) and np.array_equal(m.provenance, whole.provenance)
    assert not (ws.root / "preprocess" / "mosaics" / "resumed" / "bands").exists()


def test_mosaic_cli_and_clear_errors(dated_ws, cloudy_server, tmp_path, capsys):  # noqa: F811
    ws = dated_ws
    assert main(["preprocess", "mosaic", "-w", str(ws.root), "--name", "cli", "--method", "darkest",
                 "--dates", SERVED[0], SERVED[2], "--no-progress"]) == 0
    assert "mosaic cli: 128x128 px from 3 dates" in capsys.readouterr().out
    assert main(["preprocess", "mosaic", "-w", str(ws.root), "--name", "cli-torch", "--method", "darkest",
                 "--dates", SERVED[0], SERVED[2], "--device", "cpu", "--no-progress"]) == 0  # the GPU path's CPU twin
    assert np.array_equal(load_mosaic(ws, "cli").image, load_mosaic(ws, "cli-torch").image)
    with pytest.raises(CuratorError, match="only one date"):
        composite_region(ws, "2020-09-02", progress=False)
    with pytest.raises(CuratorError, match="no dated chips between 2021-01-01 and 2021-02-01"):
        composite_region(ws, ("2021-01-01", "2021-02-01"), progress=False)
    with pytest.raises(CuratorError, match="exists with other inputs"):
        composite_region(ws, SERVED[:2], name="cli", progress=False)
    with pytest.raises(CuratorError, match="characters other than"):
        composite_region(ws, name="../escape", progress=False)
    with pytest.raises(CuratorError, match="no dated chips"):
        composite_region(ws, bbox=(100, -10, 110, 0), progress=False)  # nothing downloaded there
    other = Workspace.create(tmp_path / "grids")
    other.ingest(_src(cloudy_server, SYNTHETIC_CLOUDY_LAYER, tmp_path), REGION, dates=SERVED[0], size=64, progress=False)
    coarser = GIBSSource(SYNTHETIC_CLOUDY_LAYER, base_url=cloudy_server.base_url, level=2, cache=tmp_path / "c2",
                         progress=False)
    other.ingest(coarser, REGION, dates=SERVED[1], size=32, progress=False)
    with pytest.raises(CuratorError, match="mismatched grids"):
        composite_region(other, progress=False)
    assert main(["preprocess", "mosaic", "-w", str(other.root)]) == 2
    assert "fix: download every date at the same level" in capsys.readouterr().err
