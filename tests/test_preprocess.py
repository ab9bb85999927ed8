"""Composites, cloud masks and swath fills: on synthetic cloud stacks with known truth, through the
loopback WMTS server (download over dates -> composite -> chips), and on the real MODIS mosaic."""

from __future__ import annotations

import numpy as np
import pytest

from curator_widgets import Workspace
from curator_widgets.cli import main
from curator_widgets.errors import CuratorError
from curator_widgets.index import filter_mask
from curator_widgets.preprocess import (composite, composite_chips, cloud_masks, detect_clouds, fill_gaps, fill_swaths,
                                        load_cloud_mask, load_provenance, mask_iou, psnr, synthetic_clouds)
from curator_widgets.preprocess.swaths import SYNTHESIZED
from curator_widgets.sources import GIBSSource
from curator_widgets.sources.quality import nodata_mask
from curator_widgets.sources.wmts_server import (SYNTHETIC_CLOUDY_LAYER, WMTSServer, bluemarble_layer,
                                                 cloudy_bluemarble_layer)

SERVED = ["2020-09-01", "2020-09-02", "2020-09-04", "2020-09-05", "2020-09-06"]  # 09-03 has no imagery
REGION = (0.0, 36.0, 9.0, 45.0)  # Mediterranean coast: land, sea, mountains -> 2 x 2 chips of 64 px at level 3


@pytest.fixture(scope="module")
def clear_chip() -> np.ndarray:
    from curator_widgets.sources.bluemarble import world_raster

    return world_raster(3)[1100:1228, 2700:2828].copy()  # 128 px of Europe


@pytest.fixture(scope="module")
def cloudy_server():
    with WMTSServer([bluemarble_layer(), cloudy_bluemarble_layer(SERVED)]) as server:
        yield server


def _src(server, layer, tmp_path):
    return GIBSSource(layer, base_url=server.base_url, level=3, cache=tmp_path / "cache", progress=False)


def _stack(clear, days=5, cover=0.45):
    return [synthetic_clouds(clear, seed=s, cover=cover, origin=(1100, 2700)) for s in range(days)]


# ---------------------------------------------------------------------------- arrays
def test_median_composite_recovers_the_clear_image_and_says_where_each_pixel_came_from(clear_chip):
    views = _stack(clear_chip)
    stack = np.stack([v.image for v in views])
    best_day = max(psnr(v.image, clear_chip) for v in views)
    scores = {m: psnr(composite(stack, m).image, clear_chip) for m in ("median", "darkest", "subtract")}
    assert scores["median"] > best_day + 8, (scores, best_day)
    assert scores["median"] >= max(scores["darkest"], scores["subtract"]) - 0.5
    comp = composite(stack, "median")
    rows, cols = np.indices(comp.provenance.shape)
    assert comp.provenance.min() >= 0  # every pixel had data on some date
    assert np.array_equal(comp.image, stack[comp.provenance, rows, cols])  # provenance is exact
    cloudy_everywhere = np.stack([v.mask for v in views]).all(0)
    taken_cloudy = np.stack([v.mask for v in views])[comp.provenance, rows, cols]
    assert taken_cloudy[~cloudy_everywhere].mean() < 0.05  # a cloudy day is picked only where all are


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_the_torch_pixel_picker_equals_numpy_for_every_rule(clear_chip, device):
    # the GPU path of composites ("auto" is CUDA when present); CI compares it with numpy on the CPU
    stack = np.stack([v.image for v in _stack(clear_chip, days=4)])
    stack[1, :, :30] = 0  # a swath gap, so no-data handling is compared too
    for method in ("median", "darkest", "subtract"):
        ref, got = composite(stack, method), composite(stack, method, device=device)
        assert np.array_equal(ref.provenance, got.provenance), method
        assert np.array_equal(ref.image, got.image), method


def test_composite_never_takes_no_data_while_a_date_has_data(clear_chip):
    a, b = clear_chip.copy(), clear_chip.copy()
    a[:, :40] = 0  # a swath gap on day 0
    for method in ("median", "darkest", "subtract"):
        comp = composite([a, b], method)
        assert (comp.provenance[:, :40] == 1).all(), method


def test_composite_rejects_one_date_and_mismatched_grids(clear_chip):
    with pytest.raises(CuratorError, match="two or more dates"):
        composite([clear_chip])
    with pytest.raises(CuratorError, match="mismatched grids"):
        composite([clear_chip, clear_chip[:64]])
    with pytest.raises(CuratorError, match="unknown composite method"):
        composite([clear_chip, clear_chip], "mean")


def test_cloud_masks_match_the_synthetic_truth(clear_chip):
    views = _stack(clear_chip)
    iou = {m: np.mean([mask_iou(detect_clouds(v.image, m), v.mask) for v in views]) for m in ("rgb", "hysteresis")}
    assert iou["hysteresis"] > 0.85 and iou["hysteresis"] > iou["rgb"], iou
    assert not detect_clouds(clear_chip).mean() > 0.02  # no clouds on the cloud-free Blue Marble


def test_adjacent_day_fill_copies_the_other_dates_pixels(clear_chip):
    gap = clear_chip.copy()
    gap[:, 50:70] = 0
    half = clear_chip.copy()
    half[:64, 50:70] = 0  # the adjacent date saw only the lower half of the wedge
    filled, prov = fill_gaps(gap, "adjacent", [half])
    assert np.array_equal(filled[64:, 50:70], clear_chip[64:, 50:70]) and (prov[64:, 50:70] == 1).all()
    assert (prov[:64, 50:70] == SYNTHESIZED).all() and not nodata_mask(filled).any()
    assert (prov[:, :40] == 0).all()
    with pytest.raises(CuratorError, match="mismatched grids"):
        fill_gaps(gap, "adjacent", [half[:64]])


# ---------------------------------------------------------------------------- workspace, over the loopback server
@pytest.fixture(scope="module")
def dated_ws(cloudy_server, tmp_path_factory):
    """Cloudy chips for every served date plus the clear Blue Marble chips of the same places."""
    tmp = tmp_path_factory.mktemp("dated")
    ws = Workspace.create(tmp / "ws")
    cloudy = _src(cloudy_server, SYNTHETIC_CLOUDY_LAYER, tmp)
    with pytest.warns(UserWarning, match="no tiles could be fetched"):  # 2020-09-03: a date without data
        res = ws.ingest(cloudy, REGION, dates=("2020-09-01", "2020-09-06"), size=64, progress=False)
    assert res.added == 4 * len(SERVED)
    ws.ingest(_src(cloudy_server, "BlueMarble_NextGeneration", tmp), REGION, size=64, progress=False)
    return ws


def test_download_over_dates_then_composite_chips(dated_ws, capsys):
    ws = dated_ws
    res = composite_chips(ws, progress=False)
    assert res.added == 4 and res.existing == 0
    man = ws.manifest
    clear = man[man["layer"] == "BlueMarble_NextGeneration"]
    for cid in res.ids:
        row = man.loc[cid]
        assert "composite" in row["flags"] and row["date"] == SERVED[-1] and row["source"] == "composite"
        truth = clear[(clear["x0"] == row["x0"]) & (clear["y0"] == row["y0"])]
        assert len(truth) == 1
        truth_img = ws.load_chip(int(truth["id"].iloc[0]))
        days = man[(man["layer"] == SYNTHETIC_CLOUDY_LAYER) & (man["x0"] == row["x0"]) & (man["y0"] == row["y0"])
                   & ~man["flags"].map(lambda f: "composite" in list(f))]
        single = [psnr(ws.load_chip(int(i)), truth_img) for i in days["id"]]
        got = psnr(ws.load_chip(cid), truth_img)  # as good as the best day (which no one knows) ...
        assert got > max(single) - 1 and got > np.median(single) + 10, (got, single)  # ... far above a typical one
        prov = load_provenance(ws, cid)
        assert prov.dates == SERVED and sorted(prov.chip_ids) == sorted(days["id"].tolist())
        assert prov.index.shape == (64, 64) and prov.index.min() >= 0
    again = composite_chips(ws, progress=False)  # resumable: nothing recomputed
    assert (again.added, again.existing) == (0, 4)
    assert main(["preprocess", "composite", "-w", str(ws.root), "--method", "subtract", "--no-progress"]) == 0
    assert "composite chips: 4 written" in capsys.readouterr().out
    with pytest.raises(CuratorError, match="no dated chips between 2021-01-01 and 2021-02-01"):
        composite_chips(ws, ("2021-01-01", "2021-02-01"), progress=False)
    with pytest.raises(CuratorError, match="only one date"):
        composite_chips(ws, "2020-09-02", progress=False)


def test_composite_of_mismatched_grids_is_refused(cloudy_server, tmp_path, capsys):
    ws = Workspace.create(tmp_path / "ws")
    src = _src(cloudy_server, SYNTHETIC_CLOUDY_LAYER, tmp_path)
    ws.ingest(src, REGION, dates="2020-09-01", size=64, progress=False)
    ws.ingest(src, REGION, dates="2020-09-02", size=128, progress=False)  # another chip size: no window in common
    with pytest.raises(CuratorError, match="mismatched grids"):
        composite_chips(ws, progress=False)
    assert main(["preprocess", "composite", "-w", str(ws.root)]) == 2
    assert "fix: download every date with the same layer" in capsys.readouterr().err


def test_cloud_masks_are_stored_per_chip_and_filter_search(dated_ws, capsys):
    ws = dated_ws
    res = cloud_masks(ws, progress=False)
    assert res.added == len(ws) and res.existing == 0
    man = ws.manifest
    cloudy_days = man[(man["layer"] == SYNTHETIC_CLOUDY_LAYER) & ~man["flags"].map(lambda f: "composite" in list(f))]
    clear = man[man["layer"] == "BlueMarble_NextGeneration"]
    assert clear["cloud_fraction"].max() < 0.05 and cloudy_days["cloud_fraction"].mean() > 0.25
    mask = load_cloud_mask(ws, int(cloudy_days["id"].iloc[0]))
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert abs(mask.mean() - cloudy_days["cloud_fraction"].iloc[0]) < 1e-3
    keep = filter_mask(ws, {"max_cloud": 0.2})
    assert keep[clear["id"]].all() and (man["cloud_fraction"][keep] <= 0.2).all()
    from curator_widgets.sampling import farthest_point_sample

    clear_ids = np.flatnonzero(keep)  # a diverse sample drawn from the clear chips only
    X = np.stack([ws.load_chip(int(i))[::8, ::8].ravel() for i in range(len(ws))]).astype(np.float32)
    picks = clear_ids[farthest_point_sample(X[clear_ids], 3, progress=False)[0]]
    assert (man["cloud_fraction"][picks] <= 0.2).all() and len(set(picks)) == 3
    flagged = man["flags"].map(lambda f: "cloudy" in list(f))
    assert (flagged == (man["cloud_fraction"] >= 0.5)).all()
    assert main(["preprocess", "clouds", "-w", str(ws.root), "--no-progress"]) == 0
    assert f"cloud masks: 0 written, {len(ws)} already done" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the real MODIS day
def test_fill_swaths_on_the_real_modis_mosaic(gibs_server, tmp_path, capsys):
    ws = Workspace.create(tmp_path / "ws")
    src = GIBSSource("MODIS_Terra_CorrectedReflectance_TrueColor", base_url=gibs_server.base_url, level=3,
                     cache=tmp_path / "cache", progress=False)
    ws.ingest(src, (0, -5, 20, 5), dates="2020-09-27", size=64, progress=False)
    gaps = ws.manifest[ws.manifest["flags"].map(lambda f: "swath_gap" in list(f))]
    assert len(gaps) >= 3
    res = fill_swaths(ws, "adjacent", progress=False)  # one date only: falls back to neighbouring pixels
    assert res.added == len(gaps)
    for cid, orig in zip(res.ids, gaps["id"]):
        img = ws.load_chip(cid)
        assert not nodata_mask(img).any()
        prov = load_provenance(ws, cid)
        assert (prov.index[nodata_mask(ws.load_chip(int(orig)))] == SYNTHESIZED).all()
        assert ws.manifest.loc[cid, "flags"].tolist().count("swath_filled") == 1
    assert main(["preprocess", "fill-swaths", "-w", str(ws.root), "--no-progress"]) == 0
    assert f"swath fills: 0 written, {len(gaps)} already done" in capsys.readouterr().out
    with pytest.raises(CuratorError, match="only one date"):
        composite_chips(ws, progress=False)
