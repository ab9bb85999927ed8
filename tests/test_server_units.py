"""The server extension's pure parts: safe workspace paths, tile math and rendering, thumbnails."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from curator_widgets import BlueMarbleSource, CuratorError, Workspace
from curator_widgets.server import safepath, thumbs, tiles


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("srvroot")
    ws = Workspace.create(r / "projects" / "ws1")
    ws.ingest(BlueMarbleSource(level=0), region=(-180, -90, 180, 90), size=64, progress=False)
    (r / "secret").mkdir()
    (r / "secret" / "workspace.json").write_text("{}")
    return r


@pytest.mark.parametrize("key", [
    "../x", "projects/../../x", "..", ".", "./projects/ws1", "projects//ws1", "/etc", "~/ws", "a\\..\\b",
    "projects/%2e%2e/ws1", "%2e%2e", "c:/windows", "projects/ws1\x00", "projects/ws1/",
])
def test_escaping_or_odd_paths_are_refused(root, key):
    with pytest.raises(safepath.Refused) as e:
        safepath.resolve_workspace(root, key)
    assert "workspace path" in e.value.problem and e.value.fix


def test_symlink_out_of_the_root_is_refused(root, tmp_path):
    outside = tmp_path / "outside-ws"
    Workspace.create(outside)
    link = root / "link"
    if not link.exists():
        os.symlink(outside, link)
    with pytest.raises(safepath.Refused, match="leaves the Jupyter root"):
        safepath.resolve_workspace(root, "link")


def test_plain_paths_resolve_and_non_workspaces_are_not_found(root):
    assert safepath.resolve_workspace(root, "projects/ws1") == (root / "projects" / "ws1").resolve()
    with pytest.raises(safepath.Missing, match="no workspace at 'projects'"):
        safepath.resolve_workspace(root, "projects")


def test_tile_request_validation_messages():
    ok = tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "500m", "2", "1", "-3", wrap=True)
    assert (ok.z, ok.row, ok.col, ok.wrap) == (2, 1, -3, True)
    cases = [
        (("bluemarble", "..", "default", "500m", "0", "0", "0"), "bad layer"),
        (("bluemarble", "L", "2020/01/01", "500m", "0", "0", "0"), "bad date"),
        (("bluemarble", "L", "default", "500m", "x", "0", "0"), "tile indices must be integers"),
        (("bluemarble", "L", "default", "500m", "9", "0", "0"), "zoom 9 is outside 0..8"),
        (("bluemarble", "L", "default", "500m", "0", "1", "0"), "tile row 1 is outside 0..0"),
        (("bluemarble", "L", "default", "500m", "0", "0", "2"), "tile column 2 is outside 0..1"),
    ]
    for args, msg in cases:
        with pytest.raises(CuratorError, match=msg):
            tiles.parse_request(*args)


def test_grid_matches_gibs_geographic_sets():
    from curator_widgets.sources.tilematrix import tile_matrix_set

    tms = tile_matrix_set("500m")
    for z in range(8):
        rows, cols = tiles.world_tiles(z)
        m = tms.level(z)
        assert (cols, rows) == (m.matrix_width, m.matrix_height)


def test_blue_marble_tiles_match_the_source_raster_and_wrap():
    from curator_widgets.sources.bluemarble import world_raster

    world = world_raster(1)  # 640 x 1280 px at level 1
    t = tiles.bluemarble_tile(tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "500m", "1", "0", "1"))
    assert np.array_equal(t, world[0:512, 512:1024])
    last = tiles.bluemarble_tile(tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "500m", "1", "1", "2"))
    assert np.array_equal(last[:128, :256], world[512:640, 1024:1280]) and last[:, 256:].max() == 0  # GIBS-like edge
    wrapped = tiles.bluemarble_tile(tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "500m",
                                                       "1", "0", "2", wrap=True))
    assert np.array_equal(wrapped[:, :256], world[0:512, 1024:1280])
    assert np.array_equal(wrapped[:, 256:], world[0:512, 0:256])  # continues past 180 degrees
    west = tiles.bluemarble_tile(tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "500m",
                                                    "1", "0", "-1", wrap=True))
    assert np.array_equal(west, world[0:512, 768:1280])


def test_zoom_beyond_the_data_upsamples():
    t = tiles.bluemarble_tile(tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "500m", "5", "4", "9"))
    assert t.shape == (512, 512, 3) and t.std() > 1


def test_tile_cache_and_errors():
    cache = tiles.TileCache(max_items=2)
    reqs = [tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "500m", "0", "0", str(c)) for c in (0, 1)]
    a = cache.get(reqs[0])
    assert cache.get(reqs[0]) is a and Image.open(io.BytesIO(a)).format == "JPEG"
    with pytest.raises(CuratorError, match="Blue Marble is served on the 500m grid"):
        tiles.render_tile(tiles.parse_request("bluemarble", "BlueMarble_NextGeneration", "default", "250m", "0", "0", "0"))
    with pytest.raises(CuratorError, match="unknown tile source 'wms'"):
        tiles.render_tile(tiles.parse_request("wms", "X", "default", "500m", "0", "0", "0"))


def test_thumbnails_are_cached_on_disk_and_invalidated(root):
    ws = root / "projects" / "ws1"
    data, etag = thumbs.thumbnail(ws, 3, 100)
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.size == (64, 64)
    cached = thumbs.cache_file(ws, 3, 128)
    assert cached.is_file()
    data2, etag2 = thumbs.thumbnail(ws, 3, 128)
    assert data2 == data and etag2 == etag
    src = thumbs.chip_source(ws, 3)
    os.utime(src, ns=(cached.stat().st_mtime_ns + 10**9,) * 2)  # the chip changed after caching
    _, etag3 = thumbs.thumbnail(ws, 3, 128)
    assert etag3 != etag
    assert thumbs.clear_cache(ws) >= 1 and not cached.exists()


def test_thumbnail_errors(root):
    ws = root / "projects" / "ws1"
    with pytest.raises(CuratorError, match="chip id 5000 is not in this workspace"):
        thumbs.thumbnail(ws, 5000, 128)
    with pytest.raises(CuratorError, match="thumbnail size 'big' is not a number"):
        thumbs.snap_size("big")
    with pytest.raises(CuratorError, match="thumbnail size 0 is out of range"):
        thumbs.snap_size(0)
    assert [thumbs.snap_size(s) for s in (1, 64, 65, 300, 4000)] == [64, 64, 128, 512, 512]
