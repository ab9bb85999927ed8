"""Tile math for GIBS tile matrix sets, checked against NASA's own tilematrixsets.xml."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from curator_widgets.bbox import BBox
from curator_widgets.errors import CuratorError
from curator_widgets.sources import bluemarble
from curator_widgets.sources.tilematrix import (GIBS_TILE_MATRIX_SETS, lonlat_to_pixel, parse_tile_matrix_sets,
                                                pixel_to_lonlat, region_tiles, region_to_pixels, tile_bbox,
                                                tile_matrix_set)

OWS = "{http://www.opengis.net/ows/1.1}"


def _reference(gibs_data):
    """{(crs, set): [(scale, top_left, tile_w, tile_h, matrix_w, matrix_h)]} parsed from the real file."""
    root = ET.parse(gibs_data / "tilematrixsets.xml").getroot()
    out = {}
    for proj in root.findall("Projection"):
        for s in proj.findall("TileMatrixSet"):
            out[(proj.get("id"), s.findtext(f"{OWS}Identifier"))] = [
                (float(m.findtext("ScaleDenominator")), tuple(float(v) for v in m.findtext("TopLeftCorner").split()),
                 int(m.findtext("TileWidth")), int(m.findtext("TileHeight")),
                 int(m.findtext("MatrixWidth")), int(m.findtext("MatrixHeight")))
                for m in s.findall("TileMatrix")]
    return out


def test_packaged_sets_match_tilematrixsets_xml(gibs_data):
    ref = _reference(gibs_data)
    wanted = {k for k in ref if k[0] in ("EPSG:4326", "EPSG:3857")}
    assert set(GIBS_TILE_MATRIX_SETS) == wanted
    for key, tms in GIBS_TILE_MATRIX_SETS.items():
        assert len(tms.matrices) == len(ref[key]), key
        for z, (m, (scale, tl, tw, th, mw, mh)) in enumerate(zip(tms.matrices, ref[key])):
            assert m.identifier == str(z)
            assert m.scale_denominator == scale
            assert m.top_left == tl
            assert (m.tile_width, m.tile_height, m.matrix_width, m.matrix_height) == (tw, th, mw, mh)


def test_parser_reads_the_same_numbers(gibs_data):
    parsed = parse_tile_matrix_sets(ET.parse(gibs_data / "tilematrixsets.xml").getroot())
    # names repeat across projections; the 3857 and 4326-only names must parse identically
    for name in ("GoogleMapsCompatible_Level9", "16km", "15.625m"):
        assert parsed[name] == tile_matrix_set(name)


def test_geographic_pixel_sizes_are_288_over_512_halving(gibs_data):
    for (crs, name), tms in GIBS_TILE_MATRIX_SETS.items():
        if crs != "EPSG:4326":
            continue
        for z in range(tms.max_level + 1):
            assert tms.pixel_size(z) == 288.0 / 512.0 / 2 ** z
            h, w = tms.world_shape(z)
            m = tms.level(z)
            # the matrix covers the world (GIBS pads the last tile row/column past 180/-90)
            assert m.matrix_width * m.tile_width >= w and (m.matrix_width - 1) * m.tile_width < w
            assert m.matrix_height * m.tile_height >= h and (m.matrix_height - 1) * m.tile_height < h


def test_bluemarble_grid_is_the_gibs_500m_grid():
    tms = tile_matrix_set(bluemarble.TILE_MATRIX_SET)
    assert bluemarble.LEVEL0_PIXEL_SIZE == tms.pixel_size(0)
    for z in range(bluemarble.MAX_LEVEL + 1):
        assert bluemarble.level_pixel_size(z) == tms.pixel_size(z) == tms.degrees_per_pixel(z)


def test_mercator_pixel_size_and_world():
    tms = tile_matrix_set("GoogleMapsCompatible_Level9")
    assert tms.crs == "EPSG:3857"
    assert tms.pixel_size(0) == pytest.approx(2 * 20037508.342789244 / 256, rel=1e-9)
    assert tms.world_shape(3) == (2048, 2048)
    assert tms.degrees_per_pixel(0) == pytest.approx(360 / 256)


def test_real_tiles_world_files_match_tile_bbox(gibs_data):
    """The two real 512x512 tiles sit at 250m level 5, row 5, cols 10 and 11 (from their .wld)."""
    tms = tile_matrix_set("250m")
    for name, col in (("tile0", 10), ("tile1", 11)):
        a, _, _, e, cx, cy = (float(v) for v in (gibs_data / f"MODIS_Terra_CorrectedReflectance_TrueColor_{name}.wld")
                              .read_text().split())
        assert a == tms.pixel_size(5) and e == -a
        west, south, east, north = tile_bbox(tms, 5, 5, col)
        assert (west, north) == pytest.approx((cx - a / 2, cy + a / 2))
        assert east - west == pytest.approx(512 * a)
        (inside,) = region_tiles(tms, 5, (west + 0.1, south + 0.1, east - 0.1, north - 0.1))
        assert list(inside.tiles()) == [(5, col)]


def test_region_tiles_simple_and_antimeridian():
    tms = tile_matrix_set("250m")
    (r,) = region_tiles(tms, 2, (-20, 10, 40, 35))  # 72 degrees per tile at level 2
    assert (r.row0, r.row1, r.col0, r.col1) == (0, 2, 2, 4)  # lon -20 -> tile 2.2, 40 -> 3.06
    ranges = region_tiles(tms, 3, (170, -10, -170, 10))  # 36-degree tiles, across 180
    assert len(ranges) == 2
    east, west = ranges
    assert (east.col0, east.col1) == (9, 10) and (west.col0, west.col1) == (0, 1)
    assert (east.row0, east.row1) == (2, 3)
    assert sum(len(x) for x in ranges) == 2


def test_antimeridian_pixels_wrap():
    tms = tile_matrix_set("500m")
    pr = region_to_pixels(tms, 3, BBox(179, 0, -179, 1))
    ps = tms.pixel_size(3)
    # snapped outward at both ends: 179 -> column 5105 (of 5120), -179 -> column 15
    assert (pr.col0, pr.width) == (math.floor(359 / ps), 5120 - math.floor(359 / ps) + math.ceil(1 / ps))
    cols = pr.columns()
    assert cols[0] > cols[-1]  # wraps from the east edge to the west edge


def test_lonlat_pixel_roundtrip_both_crs():
    for name in ("250m", "GoogleMapsCompatible_Level9"):
        tms = tile_matrix_set(name)
        for lon, lat in ((-179.5, 80.0), (0.0, 0.0), (123.456, -33.3), (179.9, -84.0)):
            x, y = lonlat_to_pixel(tms, 4, lon, lat)
            lon2, lat2 = pixel_to_lonlat(tms, 4, x, y)
            assert (lon2, lat2) == pytest.approx((lon, lat), abs=1e-9)
    g = tile_matrix_set("250m")
    assert lonlat_to_pixel(g, 0, -180, 90) == (0, 0)
    assert lonlat_to_pixel(g, 0, 0, 0) == (320, 160)  # 0.5625 deg/px
    m = tile_matrix_set("GoogleMapsCompatible_Level3")
    assert lonlat_to_pixel(m, 0, 0, 0) == pytest.approx((128, 128))


def test_mercator_region_bbox_is_nonlinear_in_latitude():
    tms = tile_matrix_set("GoogleMapsCompatible_Level6")
    pr = region_to_pixels(tms, 3, BBox(-10, 40, 10, 60))
    from curator_widgets.sources.tiling import grid_windows

    wins = grid_windows(pr.height, pr.width, 32, 0.0, "shift")
    top = pr.window_bbox(wins[0])
    bottom = pr.window_bbox(wins[-1])
    assert top[3] >= 59.9 and bottom[1] <= 40.1
    # equal pixel heights cover fewer degrees further north
    assert (top[3] - top[1]) < (bottom[3] - bottom[1])


def test_level_out_of_range_and_unknown_set_errors():
    with pytest.raises(CuratorError, match=r"levels 0\.\.8, not 9"):
        tile_matrix_set("250m").level(9)
    with pytest.raises(CuratorError, match="unknown GIBS tile matrix set 'EPSG:4326_1km'") as e:
        tile_matrix_set("EPSG:4326_1km")
    assert "500m" in e.value.fix
    assert tile_matrix_set("EPSG4326_31m").identifier == "31.25m"  # the 2015 name
