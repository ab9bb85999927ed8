"""GIBSSource end to end over the loopback WMTS server: chips, metadata, faults, resume."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from curator_widgets.bbox import BBox
from curator_widgets.errors import CuratorError
from curator_widgets.images import read_image
from curator_widgets.sources import BlueMarbleSource
from curator_widgets.sources.catalog import load_catalog
from curator_widgets.sources.gibs import GIBSSource
from curator_widgets.sources.wmts_server import ServedLayer, WMTSServer
from curator_widgets.workspace import Workspace
from helpers import free_port

MODIS = "MODIS_Terra_CorrectedReflectance_TrueColor"
BM = "BlueMarble_NextGeneration"
GEO_KEYS = ("layer", "west", "south", "east", "north", "tile_matrix_set", "tile_matrix", "pixel_size", "x0", "y0",
            "width", "height", "land_fraction", "flags")


def _src(server, layer=MODIS, **kw) -> GIBSSource:
    return GIBSSource(layer, base_url=server.base_url, progress=False, retries=2, **kw)


@pytest.mark.parametrize("region", [(-20, 10, 40, 35), (170, -20, -170, 0)])
def test_bluemarble_through_the_gibs_path_matches_bluemarble_source(gibs_server, region):
    """The offline path and the live path share one code path: same chips, same metadata."""
    src = _src(gibs_server, BM)
    assert src.level == 3 and src.tms.identifier == "500m"
    got = list(src.chips(region, size=64))
    ref = list(BlueMarbleSource(level=3).chips(region, size=64))
    assert len(got) == len(ref) > 0
    for a, b in zip(got, ref):
        assert {k: a.meta[k] for k in GEO_KEYS} == {k: b.meta[k] for k in GEO_KEYS}
        assert a.meta["date"] is None and a.meta["source"] == "gibs"
        assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 3  # only JPEG q95 differs
    if region[0] > region[2]:
        # chips on both sides of the antimeridian (on the snapped grid a chip edge lies on it)
        assert any(c.meta["west"] >= 170 for c in got) and any(c.meta["east"] <= -170 for c in got)
    assert all(f"/{BM}/default/default/500m/3/" in p for p in gibs_server.tile_requests())


def test_modis_chips_carry_metadata_and_quality_flags(gibs_server):
    src = _src(gibs_server, level=3)
    chips = list(src.chips((-20, -10, 40, 35), dates="2020-09-27", size=64))
    _, pr, windows, tiles = src.plan((-20, -10, 40, 35), "2020-09-27", 64)
    # 60 x 45 degrees at 0.0703125 deg/px (854 x 641 px), grown to whole 64 px chips on the level's grid
    assert (pr.width, pr.height, len(tiles)) == (896, 704, 6)
    assert len(chips) == len(windows) == src.stats["chips"] == 14 * 11
    m = chips[0].meta
    assert (m["source"], m["layer"], m["date"], m["tile_matrix_set"], m["tile_matrix"]) == \
        ("gibs", MODIS, "2020-09-27", "250m", 3)
    assert m["pixel_size"] == 0.0703125 and (m["width"], m["height"]) == (64, 64)
    assert (m["west"], m["north"]) == (-22.5, 36.0)  # snapped outward to the level-3 grid of 64 px chips
    assert chips[0].key == f"gibs:{MODIS}:2020-09-27:250m:3:64:{m['y0']}:{m['x0']}"

    def at(lon, lat):
        return next(c for c in chips if BBox(c.meta["west"], c.meta["south"], c.meta["east"],
                                             c.meta["north"]).contains(lon, lat))

    for lon, lat in ((6.58, 0.0), (31.35, 0.0), (8.78, 10.0), (33.51, 10.0)):
        assert "swath_gap" in at(lon, lat).meta["flags"], (lon, lat)
    for lon, lat in ((20.0, 25.0), (22.0, 20.0), (28.0, 26.0)):
        sahara = at(lon, lat).meta
        assert "cloudy" not in sahara["flags"] and sahara["cloud_fraction"] < 0.3
        assert sahara["land_fraction"] > 0.95
    assert all(c.meta["cloud_fraction"] is not None for c in chips)
    assert sum("swath_gap" in c.meta["flags"] for c in chips) >= 10


def test_real_level5_tiles_come_through_byte_exact(gibs_server, gibs_data):
    src = _src(gibs_server)
    assert src.level == 5  # the finest level the server lists for the layer
    chips = list(src.chips((-90, 36, -72, 45), dates="2020-09-27", size=256))
    assert len(chips) == 2 * 4  # two 512-px tiles, 2 x 2 chips each
    tile0 = read_image(gibs_data / f"{MODIS}_tile0.jpg")
    tile1 = read_image(gibs_data / f"{MODIS}_tile1.jpg")
    first = chips[0]
    assert (first.meta["west"], first.meta["north"]) == (-90.0, 45.0)
    assert np.array_equal(first.image, tile0[:256, :256])
    last = chips[-1]
    assert (last.meta["east"], last.meta["south"]) == (-72.0, 36.0)
    assert np.array_equal(last.image, tile1[256:, 256:])


def test_swath_fill_option(gibs_server):
    src = _src(gibs_server, level=3, fill="nearest")
    chips = list(src.chips((0, -5, 20, 5), dates="2020-09-27", size=64))
    filled = [c for c in chips if "swath_gap" in c.meta["flags"]]
    assert filled and all("swath_filled" in c.meta["flags"] for c in filled)
    assert all(c.key.endswith(":nearest") for c in chips)
    for c in filled:
        assert (c.image.max(axis=2) <= 10).mean() < 0.005


def test_blank_chips_dropped_or_kept_flagged(gibs_server):
    region = (-30, 86, 30, 90)  # the unlit Arctic: no data on 2020-09-27
    src = _src(gibs_server, level=3)
    assert list(src.chips(region, dates="2020-09-27", size=32)) == []
    assert src.stats["blank_dropped"] == 56  # 28 x 2 chips of 32 px on the level-3 grid
    kept = list(_src(gibs_server, level=3, keep_blank=True).chips(region, dates="2020-09-27", size=32))
    assert len(kept) == 56
    assert kept and all(c.meta["flags"] == ["blank"] and c.meta["cloud_fraction"] is None for c in kept)


def test_missing_date_is_reported_and_other_dates_still_cut(gibs_server):
    src = _src(gibs_server, level=2)
    with pytest.warns(UserWarning, match="2020-09-26: no tiles could be fetched .*HTTP 404"):
        chips = list(src.chips((-20, -10, 40, 35), dates=("2020-09-26", "2020-09-27"), size=64))
    assert chips and {c.meta["date"] for c in chips} == {"2020-09-27"}
    assert any("2020-09-26" in e.where for e in src.errors)


def test_bad_inputs_fail_before_any_tile_request(gibs_server):
    src = _src(gibs_server, level=3)
    cases = [
        (dict(region=(-20, 40, 40, 10), dates="2020-09-27"), "south=40.0 is not below north=10.0"),
        (dict(region=(-200, 10, 40, 35), dates="2020-09-27"), r"west=-200.0 is out of range \[-180, 180\]"),
        (dict(region=(-20, 10, 40, 35), dates="2021-01-01"),
         r"date 2021-01-01 is outside the time range of MODIS_Terra_CorrectedReflectance_TrueColor: "
         r"2020-09-01 to 2020-09-30"),
        (dict(region=(0, 0, 2, 2), dates="2020-09-27", size=256), r"chip size 256 px is larger than the region"),
    ]
    for kw, msg in cases:
        with pytest.raises(CuratorError, match=msg):
            list(src.chips(size=kw.pop("size", 64), **kw))
    with pytest.raises(CuratorError, match=r"needs 50 tiles \(50 x 1 dates\) of 512 px, more than max_tiles=40") as e:
        _src(gibs_server, BM, level=3, max_tiles=40).plan((-180, -90, 180, 90), None, 64)
    assert "coarser level (e.g. level=2)" in e.value.fix
    with pytest.raises(CuratorError, match=r"needs 45 tiles \(15 x 3 dates\)"):
        _src(gibs_server, level=2, max_tiles=40).plan(None, ("2020-09-25", "2020-09-27"), 64)
    assert gibs_server.tile_requests() == []


def test_bad_source_parameters(gibs_server):
    with pytest.raises(CuratorError, match="unknown GIBS layer 'MODIS_Terra_CorrectedReflectance_TrueColour'") as e:
        _src(gibs_server, "MODIS_Terra_CorrectedReflectance_TrueColour")
    assert MODIS in e.value.fix
    with pytest.raises(CuratorError, match=r"level 4 is not served for BlueMarble_NextGeneration "
                                           r"\(500m levels 0\.\.3\)"):
        _src(gibs_server, BM, level=4)
    with pytest.raises(CuratorError, match="unknown swath fill method 'blur'"):
        _src(gibs_server, fill="blur")
    with pytest.raises(CuratorError, match="not served in tile matrix set '1km'"):
        _src(gibs_server, tile_matrix_set="1km")
    with pytest.raises(CuratorError, match="GIBS chips need a size"):
        list(_src(gibs_server, level=3).chips((0, 0, 10, 10), "2020-09-27", size=None))
    vector = load_catalog(gibs_server.capabilities_url)
    vector.layers[MODIS].formats = ["application/vnd.mapbox-vector-tile"]
    with pytest.raises(CuratorError, match="serves application/vnd.mapbox-vector-tile, not JPEG or PNG imagery"):
        GIBSSource(MODIS, catalog=vector, progress=False)
    regional = _src(gibs_server, level=3)
    regional.layer.bbox = (-10.0, -10.0, 10.0, 10.0)
    with pytest.raises(CuratorError, match=r"region \(50.0, 50.0, 60.0, 60.0\) lies outside .*extent"):
        regional.plan((50, 50, 60, 60), "2020-09-27", 32)
    regional.plan((170, -5, -5, 5), "2020-09-27", 32)  # across the antimeridian into the extent: fine


def test_unreachable_server_is_reported_as_offline(gibs_server, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/wmts/epsg4326/best"
    with pytest.raises(CuratorError, match="unreachable .*offline") as e:
        GIBSSource(BM, base_url=dead, timeout=2, progress=False)
    assert "BlueMarbleSource()" in e.value.fix and "curator demo" in e.value.fix
    # catalog known (e.g. cached), tile server gone
    cat = load_catalog(gibs_server.capabilities_url, cache=tmp_path)
    src = GIBSSource(BM, catalog=cat, base_url=dead, level=1, timeout=2, progress=False, retries=1)
    with pytest.raises(CuratorError, match=f"tile server {dead} is unreachable .*offline") as e:
        list(src.chips((-20, 10, 40, 35), size=32))
    assert "BlueMarbleSource()" in e.value.fix


def test_ingest_with_faults_then_resume_loses_and_duplicates_nothing(gibs_server, tmp_path):
    region, kw = (-20, -10, 40, 35), dict(dates="2020-09-27", size=64, overlap=0.25)
    ws = Workspace.create(tmp_path / "ws")
    gibs_server.inject("500", times=-1, match="/250m/3/1/4.jpg")  # one of the six tiles keeps failing
    gibs_server.inject("truncate", times=1, match="/250m/3/2/5.jpg")  # one arrives broken once
    src = _src(gibs_server, level=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = ws.ingest(src, region=region, progress=False, **kw)
    held = src.stats["held_back"]
    assert first.added > 0 and held > 0
    assert any("re-run the same ingest" in s.reason and "HTTP 500" in s.reason for s in first.skipped)
    rep = src.reports[-1]
    assert rep.fetched == 5 and [f.request.col for f in rep.failed] == [4] and rep.retries >= 3
    before = ws.manifest.copy()

    gibs_server.reset()  # the server recovers
    again = _src(gibs_server, level=3)
    second = ws.ingest(again, region=region, progress=False, **kw)
    assert again.reports[-1].fetched == 1 and again.reports[-1].cached == 5
    assert [p.rsplit("/", 4)[-3:] for p in gibs_server.tile_requests()] == [["3", "1", "4.jpg"]]
    assert second.added == held and second.existing == first.added
    df = ws.manifest
    assert len(df) == first.added + held and df["key"].is_unique and list(df["id"]) == list(range(len(df)))
    assert df.iloc[: len(before)]["key"].tolist() == before["key"].tolist()  # earlier rows untouched
    _, _, windows, _ = again.plan(region, kw["dates"], 64, 0.25)
    assert len(df) == len(windows) - again.stats["blank_dropped"]
    third = ws.ingest(_src(gibs_server, level=3), region=region, progress=False, **kw)
    assert third.added == 0 and len(gibs_server.tile_requests()) == 1
    chip = ws.load_chip(int(df.index[-1]))
    assert chip.shape == (64, 64, 3)
    assert set(df["date"]) == {"2020-09-27"} and df["cloud_fraction"].notna().all()


def test_web_mercator_layer_end_to_end(tmp_path, monkeypatch):
    """An EPSG:3857 layer (GoogleMapsCompatible) goes through the same path; each tile is one colour."""
    monkeypatch.setenv("CURATOR_CACHE_DIR", str(tmp_path))

    def render(z, row, col, t):
        return np.full((256, 256, 3), (10 * row + 20, 10 * col + 20, 200), np.uint8)

    layer = ServedLayer("Colour_Tiles", render, tile_matrix_set="GoogleMapsCompatible_Level6", format="image/png",
                        max_level=6)
    with WMTSServer([layer]) as server:
        src = GIBSSource("Colour_Tiles", base_url=server.base_url, level=3, progress=False)
        assert src.tms.crs == "EPSG:3857" and src.ext == "png"
        chips = list(src.chips((-45, 0, 45, 66.5), size=256))
    # level 3: 8 x 8 tiles of 45 degrees; the box is exactly tiles cols 3-4, rows 2-3
    assert len(chips) == 4
    for c in chips:
        row, col = c.meta["y0"] // 256, c.meta["x0"] // 256
        assert (c.image == (10 * row + 20, 10 * col + 20, 200)).all()
        assert c.meta["tile_matrix_set"] == "GoogleMapsCompatible_Level6" and c.meta["pixel_size"] == 45 / 256
    north = max(c.meta["north"] for c in chips)
    assert north == pytest.approx(66.51326044311186)
    assert min(c.meta["south"] for c in chips) == pytest.approx(0.0, abs=1e-9)


def test_partitions_one_piece_per_date_whose_chips_are_the_whole_call(gibs_server):
    """What a Dask worker cuts (ws.ingest with a client): the pieces' chips, in order, are one call's."""
    region = (-20, -10, 40, 35)
    src = _src(gibs_server, BM, level=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a static layer's single piece passes no date (no "dates ignored")
        pieces = src.partitions(region=region)
        assert pieces == [{"region": region, "dates": None}]
        assert [c.key for c in src.chips(**pieces[0], size=64)] == [c.key for c in _src(gibs_server, BM, level=2).chips(
            region, size=64)]
    modis = _src(gibs_server, level=2)
    pieces = modis.partitions(region=region, dates=("2020-09-26", "2020-09-27"))
    assert [p["dates"] for p in pieces] == ["2020-09-26", "2020-09-27"]
    with pytest.warns(UserWarning, match="2020-09-26: no tiles"):
        whole = [c.key for c in _src(gibs_server, level=2).chips(region, dates=("2020-09-26", "2020-09-27"), size=64)]
        parts = [c.key for p in pieces for c in _src(gibs_server, level=2).chips(**p, size=64)]
    assert parts == whole and whole
