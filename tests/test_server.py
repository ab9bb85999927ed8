"""The Jupyter server extension over real HTTP: auth required, no path escapes, caching headers,
Blue Marble and live-GIBS tiles. One `jupyter server` per module, enabled by the same config file
a pip install puts in etc/jupyter/jupyter_server_config.d/."""

from __future__ import annotations

import io
import json
import os

import httpx
import numpy as np
import pytest
from PIL import Image

from curator_widgets import BlueMarbleSource, Workspace

from _jupyter import REPO, JupyterProcess

TOKEN = "curator-test-token"
BM = "bluemarble/BlueMarble_NextGeneration/default/500m"


@pytest.fixture(scope="module")
def server(tmp_path_factory, wmts_server):
    base = tmp_path_factory.mktemp("server")
    root = base / "root"
    ws = Workspace.create(root / "projects" / "ws1")
    ws.ingest(BlueMarbleSource(level=1), region=(-30, 0, 30, 40), size=64, progress=False)
    outside = Workspace.create(base / "outside")  # a real workspace the server must never reach
    outside.ingest(BlueMarbleSource(level=0), region=(-180, -90, 180, 90), size=64, progress=False)
    os.symlink(base / "outside", root / "escape")
    proc = JupyterProcess(root, app="server", token=TOKEN, enable_via_config=True,
                          env={"CURATOR_GIBS_BASE_URL": wmts_server.base_url,
                               "CURATOR_CACHE_DIR": str(base / "cache")})
    try:
        proc.wait()
        yield proc
    finally:
        proc.stop()


def get(server, path, token=True, **kw):
    headers = kw.pop("headers", {})
    if token:
        headers["Authorization"] = f"token {TOKEN}"
    return httpx.get(server.url + path, headers=headers, timeout=60, **kw)


def test_config_file_enables_the_extension():
    cfg = json.loads((REPO / "jupyter-config" / "jupyter_server_config.d" / "curator_widgets.json").read_text())
    assert cfg == {"ServerApp": {"jpserver_extensions": {"curator_widgets.server": True}}}


def test_extension_loaded_from_config_and_exports_root(server):
    assert "curator_widgets: serving /curator/tiles" in server.log()
    r = get(server, f"/curator/tiles/{BM}/0/0/0.jpg")
    assert r.status_code == 200


@pytest.mark.parametrize("path", [f"/curator/tiles/{BM}/0/0/0.jpg", "/curator/thumbs/projects/ws1/0"])
def test_no_token_no_access(server, path):
    r = get(server, path, token=False)
    assert r.status_code == 403 and not r.headers.get("content-type", "").startswith("image/")
    r = get(server, path, token=False, headers={"Authorization": "token wrong-token"})
    assert r.status_code == 403
    r = get(server, path + f"?token={TOKEN}", token=False)  # the query form Jupyter also accepts
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("ws_part", [
    "..%2Foutside", "%2e%2e%2Foutside", "%2E%2E/outside", "projects/%2e%2e/%2e%2e/outside", "..%5Coutside",
    "%252e%252e%252foutside", "%2Fetc", "escape", "projects/..%2F..%2Foutside", "projects/ws1/%2e%2e/%2e%2e/outside",
])
def test_path_traversal_is_refused(server, ws_part):
    r = httpx.get(f"{server.url}/curator/thumbs/{ws_part}/0", headers={"Authorization": f"token {TOKEN}"}, timeout=30)
    assert r.status_code in (400, 404), (ws_part, r.status_code)
    assert not r.headers.get("content-type", "").startswith("image/")
    if r.status_code == 400:
        body = r.json()
        assert "workspace path" in body["error"] and body["fix"]


def test_unencoded_dot_segments_are_refused(server):
    # a raw request line with ../ (clients such as curl --path-as-is send it unnormalized)
    with httpx.Client() as c:
        req = c.build_request("GET", f"{server.url}/curator/thumbs/projects/ws1/0",
                              headers={"Authorization": f"token {TOKEN}"})
        req.url = req.url.copy_with(raw_path=b"/curator/thumbs/projects/../../outside/0")
        r = c.send(req)
    assert r.status_code in (400, 404) and not r.headers.get("content-type", "").startswith("image/")


def test_thumbnail_caching_headers_and_304(server):
    r = get(server, "/curator/thumbs/projects/ws1/3?size=128")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "private, max-age=3600" and r.headers["etag"].startswith('"')
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    again = get(server, "/curator/thumbs/projects/ws1/3?size=128", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert (server.root / "projects" / "ws1" / ".cache" / "thumbs" / "128" / "00000" / "00000003.jpg").is_file()


def test_thumbnail_bad_requests(server):
    r = get(server, "/curator/thumbs/projects/ws1/9999")
    assert r.status_code == 404 and "chip id 9999 is not in this workspace" in r.json()["error"]
    r = get(server, "/curator/thumbs/projects/ws1/abc")
    assert r.status_code == 400 and "not a non-negative integer" in r.json()["error"]
    r = get(server, "/curator/thumbs/projects/nows/1")
    assert r.status_code == 404 and "no workspace at 'projects/nows'" in r.json()["error"]
    r = get(server, "/curator/thumbs/projects/ws1/1?size=huge")
    assert r.status_code == 400 and "not a number" in r.json()["error"]


def test_blue_marble_tiles(server):
    from curator_widgets.sources.bluemarble import world_raster

    r = get(server, f"/curator/tiles/{BM}/1/0/0.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"].startswith("public, max-age=") and r.headers["etag"]
    tile = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16)
    assert tile.shape == (512, 512, 3)
    assert np.abs(tile - world_raster(1)[:512, :512]).mean() < 4  # JPEG of the same pixels
    wrapped = get(server, f"/curator/tiles/{BM}/1/0/-1.jpg?wrap=1")
    assert wrapped.status_code == 200
    assert get(server, f"/curator/tiles/{BM}/1/0/-1.jpg").status_code == 404  # GIBS has no column -1
    assert get(server, f"/curator/tiles/{BM}/1/0/0.jpg", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    r = get(server, "/curator/tiles/bluemarble/Other_Layer/default/500m/0/0/0.jpg")
    assert r.status_code == 404 and "serves only BlueMarble_NextGeneration" in r.json()["error"]
    r = get(server, f"/curator/tiles/{BM}/12/0/0.jpg")
    assert r.status_code == 404 and "zoom 12 is outside" in r.json()["error"]


def test_live_gibs_tiles_go_through_the_tile_cache(server, wmts_server):
    wmts_server.reset()
    path = "/curator/tiles/gibs/BlueMarble_NextGeneration/default/500m/1/0/1.jpg"
    r = get(server, path)
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (512, 512)
    n = len(wmts_server.tile_requests())
    assert n == 1
    assert get(server, path.replace("/1/0/1.jpg", "/1/0/1.jpg?x=1")).status_code == 200
    # a second server-side render (another wrap variant) reads the disk cache, not the network
    assert get(server, "/curator/tiles/gibs/BlueMarble_NextGeneration/default/500m/1/0/3.jpg?wrap=1").status_code == 200
    assert len(wmts_server.tile_requests()) == n + 1  # only column 0 was new (3 wraps to 1 + 0)
    r = get(server, "/curator/tiles/gibs/No_Such_Layer/default/500m/1/0/1.jpg")
    assert r.status_code == 404 and "could not be fetched" in r.json()["error"]
