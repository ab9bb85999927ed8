"""The GIBS layer catalog over the real 2015 capabilities document and today's service header."""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import pytest

from curator_widgets.errors import CuratorError
from curator_widgets.sources.catalog import (Period, TimeRange, cache_dir, load_catalog, parse_capabilities,
                                             parse_time)
from curator_widgets.sources.tilematrix import tile_matrix_set
from helpers import free_port

CAPS_2015 = "wmts_capabilities_geographic_2015.xml"
MODIS = "MODIS_Terra_CorrectedReflectance_TrueColor"


@pytest.fixture
def cat(gibs_data, tmp_path):
    return load_catalog(gibs_data / CAPS_2015, cache=tmp_path)


def test_parses_every_layer_of_the_2015_document(cat):
    assert len(cat) == 101
    modis = cat.get(MODIS)
    assert modis.formats == ["image/jpeg"]
    assert modis.tile_matrix_sets == ["EPSG4326_250m"]
    assert modis.time_default == "2015-05-15"
    assert [str(r) for r in modis.time_ranges] == ["2012-05-08/2015-05-15/P1D"]
    assert modis.bbox == (-180.0, -90.0, 180.0, 90.0)
    assert modis.templates["image/jpeg"].endswith(f"/{MODIS}/default/{{Time}}/{{TileMatrixSet}}/{{TileMatrix}}/"
                                                  "{TileRow}/{TileCol}.jpg")
    bm = cat.get("BlueMarble_NextGeneration")
    assert not bm.has_time and bm.resolve_dates(None) == ["default"]
    assert sum(layer.has_time for layer in cat) == 90
    assert {layer.format for layer in cat} == {"image/jpeg", "image/png"}
    # the document's own tile matrix sets, snapped to GIBS's exact grid despite its 6371 km sphere
    tms = cat.tile_matrix_set_for(modis)
    assert tms.identifier == "EPSG4326_250m" and tms.max_level == 8
    assert tms.pixel_size(0) == 0.5625 and tms.pixel_size(5) == 0.017578125


def test_service_header_gives_the_rest_tile_address(gibs_data, tmp_path):
    head = load_catalog(gibs_data / "epsg4326_best_header_gc.xml", cache=tmp_path)
    assert len(head) == 0
    assert head.tile_url == "https://gibs.earthdata.nasa.gov/wmts/epsg4326/best/"
    assert head.title == "NASA Global Imagery Browse Services for EOSDIS"


def test_search_all_words_case_insensitive_ranked(cat):
    hits = cat.search("Modis TERRA true color")
    assert hits[0].identifier == MODIS
    assert all("terra" in h.identifier.lower() for h in hits)
    sea_ice = [h.identifier for h in cat.search("sea ice")]
    assert sea_ice and all("sea" in s.lower() and "ice" in s.lower() for s in sea_ice)
    # whole-word hits rank above substring hits
    assert sea_ice.index("MODIS_Terra_Sea_Ice") < len(sea_ice)
    assert cat.search("bluemarble")[0].identifier.startswith("BlueMarble")
    assert cat.search("no such words here") == []
    assert cat.search(["CorrectedReflectance", "aqua"])[0].identifier.startswith("MODIS_Aqua_CorrectedReflectance")


def test_unknown_layer_suggests_close_matches(cat):
    with pytest.raises(CuratorError, match="unknown GIBS layer 'MODIS_Terra_CorectedReflectance_TrueColour'") as e:
        cat.get("MODIS_Terra_CorectedReflectance_TrueColour")
    assert e.value.fix.startswith(f"did you mean {MODIS}")
    with pytest.raises(CuratorError) as e:
        cat.get("bluemarble_nextgeneration")
    assert "BlueMarble_NextGeneration" in e.value.fix
    with pytest.raises(CuratorError) as e:
        cat.get("zzzz")
    assert "curator gibs search" in e.value.fix


def test_dates_validated_against_the_time_dimension(cat):
    modis = cat.get(MODIS)
    assert modis.resolve_dates("2014-01-01") == ["2014-01-01"]
    assert modis.resolve_dates(None) == ["2015-05-15"]
    assert modis.resolve_dates(("2015-05-13", "2015-05-15")) == ["2015-05-13", "2015-05-14", "2015-05-15"]
    assert modis.resolve_dates("2015-05-14/2015-05-15") == ["2015-05-14", "2015-05-15"]
    assert modis.resolve_dates(["2013-01-02", "2013-01-01", "2013-01-02"]) == ["2013-01-02", "2013-01-01"]
    assert modis.resolve_dates(datetime.date(2014, 3, 1)) == ["2014-03-01"]
    assert modis.resolve_dates((datetime.date(2014, 3, 1), "2014-03-02")) == ["2014-03-01", "2014-03-02"]
    with pytest.raises(CuratorError, match=r"date 2020-09-27 is outside the time range of "
                                           r"MODIS_Terra_CorrectedReflectance_TrueColor: 2012-05-08 to 2015-05-15 "
                                           r"\(every 1 day\)"):
        modis.resolve_dates("2020-09-27")
    with pytest.raises(CuratorError, match="outside the time range"):
        modis.resolve_dates(("2015-05-01", "2015-06-01"))
    with pytest.raises(CuratorError, match="ends .* before it starts"):
        modis.resolve_dates(("2015-05-02", "2015-05-01"))
    with pytest.raises(CuratorError, match="is not a date") as e:
        modis.resolve_dates("27/09/2015x")
    assert "YYYY-MM-DD" in e.value.fix


def test_periods_months_and_subdaily():
    monthly = TimeRange.parse("2004-01-01/2004-12-01/P1M")
    assert monthly.contains(parse_time("2004-07-01")) and not monthly.contains(parse_time("2004-07-02"))
    assert len(list(monthly.steps(parse_time("2004-01-01"), parse_time("2005-01-01")))) == 12
    eight = TimeRange.parse("2000-02-18/2000-12-31/P8D")
    assert eight.contains(parse_time("2000-02-26")) and not eight.contains(parse_time("2000-02-27"))
    tenmin = TimeRange.parse("2020-01-01T00:00:00Z/2020-01-01T01:00:00Z/PT10M")
    assert tenmin.period.subdaily and len(list(tenmin.steps(tenmin.start, tenmin.end))) == 7
    assert Period.parse("P1Y").months == 12 and Period.parse("P1D").describe() == "every 1 day"
    assert Period.parse("P1DT12H").seconds == 36 * 3600 and Period.parse("P1Y2M").months == 14
    for bad in ("1 day", "P0D", "-P1D", "P1.5D", "P1W2D", "PT"):  # never advances, or not ISO 8601 (weeks stand alone)
        with pytest.raises(CuratorError, match="not an ISO 8601 duration"):
            Period.parse(bad)


def test_catalog_cached_on_disk_with_its_age(gibs_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATOR_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    cat = load_catalog(gibs_data / CAPS_2015)
    files = list((tmp_path / "c" / "catalogs").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["format"] == "curator-gibs-catalog"
    assert cat.age > 0  # a file's age is its modification time
    again = load_catalog(gibs_data / CAPS_2015)
    assert again.layers.keys() == cat.layers.keys() and again.get(MODIS) == cat.get(MODIS)
    monkeypatch.delenv("CURATOR_CACHE_DIR")
    assert cache_dir() == Path(os.path.expanduser("~/.cache/curator_widgets"))


def test_url_catalog_cache_fresh_then_stale_offline(gibs_server, tmp_path):
    url = gibs_server.capabilities_url
    first = load_catalog(url, cache=tmp_path)
    assert "BlueMarble_NextGeneration" in first and first.age < 60
    n = len(gibs_server.log)
    load_catalog(url, cache=tmp_path)  # fresh cache: no request
    assert len(gibs_server.log) == n
    load_catalog(url, cache=tmp_path, refresh=True)
    assert len(gibs_server.log) == n + 1
    # the server goes away: a stale cache still serves, with a warning naming its age
    cache_file = next((tmp_path / "catalogs").glob("*.json"))
    d = json.loads(cache_file.read_text())
    d["catalog"]["fetched_at"] = time.time() - 3 * 86400
    cache_file.write_text(json.dumps(d))
    gibs_server.inject("drop", times=-1, match="WMTSCapabilities")
    with pytest.warns(UserWarning, match="using the cached catalog .* 72.0 h ago"):
        stale = load_catalog(url, cache=tmp_path, timeout=2)
    assert stale.age > 2 * 86400


def test_unreachable_server_says_offline_and_points_to_bluemarble(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/wmts/epsg4326/best/1.0.0/WMTSCapabilities.xml"
    with pytest.raises(CuratorError, match="unreachable .*offline") as e:
        load_catalog(url, cache=tmp_path, timeout=2)
    assert "BlueMarbleSource()" in e.value.fix and "curator demo" in e.value.fix


def test_garbage_and_wrong_documents(gibs_server, tmp_path, gibs_data):
    with pytest.raises(CuratorError, match="did not return a WMTS capabilities document .*not XML") as e:
        parse_capabilities(b"<html><body>Service Unavailable", source="http://x/caps.xml")
    assert "WMTSCapabilities.xml" in e.value.fix
    with pytest.raises(CuratorError, match="is not a WMTS capabilities document .*TileMatrixSets"):
        parse_capabilities((gibs_data / "tilematrixsets.xml").read_bytes(), source="tilematrixsets.xml")
    gibs_server.inject("garbage", match="WMTSCapabilities")
    with pytest.raises(CuratorError, match="not a WMTS capabilities document .*<html>.*Proxy error"):
        load_catalog(gibs_server.capabilities_url, cache=tmp_path)
    with pytest.raises(CuratorError, match="answered HTTP 404"):
        load_catalog(gibs_server.url + "/nothing/1.0.0/WMTSCapabilities.xml", cache=tmp_path)
    with pytest.raises(CuratorError, match="capabilities file not found"):
        load_catalog(tmp_path / "missing.xml", cache=tmp_path)


def test_loopback_capabilities_roundtrip(gibs_server, tmp_path):
    cat = load_catalog(gibs_server.capabilities_url, cache=tmp_path)
    bm = cat.get("BlueMarble_NextGeneration")
    tms = cat.tile_matrix_set_for(bm)
    assert tms.identifier == "500m" and bm.max_level(tms) == 3 and not bm.has_time
    modis = cat.get(MODIS)
    assert modis.max_level(cat.tile_matrix_set_for(modis)) == 5
    assert modis.describe_time() == "2020-09-01 to 2020-09-30 (every 1 day)"
    assert cat.tile_url == gibs_server.base_url + "/"
    assert cat.tile_matrix_sets["500m"] == tile_matrix_set("500m")  # every number survives the document
    assert cat.tile_matrix_sets["250m"] == tile_matrix_set("250m")
