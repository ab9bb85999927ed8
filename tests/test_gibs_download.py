"""The tile downloader against the loopback WMTS server, with injected faults."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from curator_widgets.errors import CuratorError
from curator_widgets.images import read_image
from curator_widgets.sources.download import TileDownloader, TileRequest, looks_like_image, run_sync
from helpers import free_port

BM = "BlueMarble_NextGeneration"
MODIS = "MODIS_Terra_CorrectedReflectance_TrueColor"


def _template(server) -> str:
    return server.base_url + "/{Layer}/default/{Time}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}.jpg"


def _bm_tiles(level: int = 1) -> list[TileRequest]:
    cols, rows = {0: (2, 1), 1: (3, 2), 2: (5, 3)}[level]
    return [TileRequest(BM, "default", "500m", level, r, c) for r in range(rows) for c in range(cols)]


def _dl(server, tmp_path, **kw) -> TileDownloader:
    kw = {"retries": 3, "backoff": 0.01, "timeout": 5.0, "progress": False, **kw}
    return TileDownloader(_template(server), tmp_path / "tiles", **kw)


def test_fetch_cache_and_resume_fetches_only_missing(gibs_server, tmp_path):
    dl = _dl(gibs_server, tmp_path)
    tiles = _bm_tiles(1)
    rep = dl.download(tiles)
    assert (rep.requested, rep.fetched, rep.cached, rep.failed) == (6, 6, 0, [])
    assert read_image(dl.path(tiles[0])).shape == (512, 512, 3)
    assert dl.path(tiles[0]).relative_to(dl.server_dir).as_posix() == f"{BM}/default/500m/1/0/0.jpg"
    for t in tiles[:2]:
        dl.path(t).unlink()
    gibs_server.reset()
    rep = dl.download(tiles)
    assert (rep.fetched, rep.cached) == (2, 4)
    assert sorted(gibs_server.tile_requests()) == sorted(
        f"/wmts/epsg4326/best/{BM}/default/default/500m/1/{t.row}/{t.col}.jpg" for t in tiles[:2])
    assert "6 tiles: 2 downloaded, 4 from cache, 0 failed" in rep.summary()


def test_retries_5xx_with_backoff_then_succeeds(gibs_server, tmp_path):
    gibs_server.inject("500", times=2, match="/500m/1/1/2.jpg")
    gibs_server.inject("503", times=1, match="/500m/1/0/0.jpg")
    rep = _dl(gibs_server, tmp_path).download(_bm_tiles(1))
    assert rep.ok and rep.fetched == 6 and rep.retries == 3
    assert sum(p.endswith("/1/1/2.jpg") for p in gibs_server.tile_requests()) == 3


def test_5xx_forever_fails_after_retries_with_reason(gibs_server, tmp_path):
    gibs_server.inject("500", times=-1, match="/500m/1/1/2.jpg")
    rep = _dl(gibs_server, tmp_path, retries=2).download(_bm_tiles(1))
    assert rep.fetched == 5 and len(rep.failed) == 1
    f = rep.failed[0]
    assert (f.kind, f.status, f.attempts) == ("http5xx", 500, 3)
    assert "HTTP 500" in f.reason and "1 failed (HTTP 500" in rep.summary()


def test_no_retry_on_4xx_missing_date(gibs_server, tmp_path):
    """The MODIS layer has imagery for 2020-09-27 only: another date answers 404, asked once."""
    tiles = [TileRequest(MODIS, "2020-09-26", "250m", 1, 0, c) for c in range(3)]
    rep = _dl(gibs_server, tmp_path).download(tiles)
    assert rep.fetched == 0 and len(rep.failed) == 3 and rep.retries == 0
    assert all(f.status == 404 and f.kind == "http4xx" and f.attempts == 1 for f in rep.failed)
    assert "no imagery for this date/tile" in rep.failed[0].reason
    assert len(gibs_server.tile_requests()) == 3
    assert not rep.offline


def test_injected_404_is_not_retried(gibs_server, tmp_path):
    gibs_server.inject("404", times=-1, match="/500m/1/0/1.jpg")
    rep = _dl(gibs_server, tmp_path).download(_bm_tiles(1))
    assert [f.status for f in rep.failed] == [404]
    assert sum(p.endswith("/1/0/1.jpg") for p in gibs_server.tile_requests()) == 1


def test_timeout_is_retried(gibs_server, tmp_path):
    tiles = _bm_tiles(0)
    _dl(gibs_server, tmp_path / "warm").download(tiles)  # the server renders them once, ahead of the short timeout
    gibs_server.inject("timeout", times=1, match="/500m/0/0/1.jpg", delay=1.5)
    rep = _dl(gibs_server, tmp_path, timeout=0.5).download(tiles)
    assert rep.ok and rep.fetched == 2 and rep.retries == 1


def test_timeout_forever_reported(gibs_server, tmp_path):
    _dl(gibs_server, tmp_path / "warm").download(_bm_tiles(0))
    gibs_server.inject("timeout", times=-1, match="/500m/0/0/1.jpg", delay=1.0)
    rep = _dl(gibs_server, tmp_path, timeout=0.3, retries=1).download(_bm_tiles(0))
    assert len(rep.failed) == 1 and rep.failed[0].kind == "timeout" and "timeout" in rep.failed[0].reason


def test_truncated_jpeg_detected_retried_and_never_cached(gibs_server, tmp_path):
    gibs_server.inject("truncate", times=1, match="/500m/0/0/0.jpg")
    dl = _dl(gibs_server, tmp_path)
    rep = dl.download(_bm_tiles(0))
    assert rep.ok and rep.retries == 1
    read_image(dl.path(_bm_tiles(0)[0]))  # the cached copy is the complete one
    gibs_server.inject("truncate", times=-1, match="/500m/1/0/0.jpg")
    rep = dl.download(_bm_tiles(1))
    assert [f.kind for f in rep.failed] == ["corrupt"] and "truncated JPEG" in rep.failed[0].reason
    assert not dl.path(_bm_tiles(1)[0]).exists()
    assert not list(dl.server_dir.rglob("*.tmp"))


def test_garbage_body_reported(gibs_server, tmp_path):
    gibs_server.inject("garbage", times=-1, match="/500m/0/0/0.jpg")
    rep = _dl(gibs_server, tmp_path, retries=1).download(_bm_tiles(0))
    assert len(rep.failed) == 1
    assert "not an image" in rep.failed[0].reason and "Proxy error" in rep.failed[0].reason


def test_dropped_connection_is_retried(gibs_server, tmp_path):
    gibs_server.inject("drop", times=1, match="/500m/0/0/0.jpg")
    rep = _dl(gibs_server, tmp_path).download(_bm_tiles(0))
    assert rep.ok and rep.retries == 1


def test_concurrency_is_bounded(gibs_server, tmp_path):
    gibs_server.latency = 0.05
    try:
        _dl(gibs_server, tmp_path, concurrency=3).download(_bm_tiles(2))
        assert 1 < gibs_server.max_in_flight <= 3
        gibs_server.reset()
        _dl(gibs_server, tmp_path / "b", concurrency=1).download(_bm_tiles(1))
        assert gibs_server.max_in_flight == 1
    finally:
        gibs_server.latency = 0.0


def test_offline_gives_up_fast(tmp_path):
    port = free_port()
    dl = TileDownloader(f"http://127.0.0.1:{port}/{{Layer}}/{{TileMatrix}}/{{TileRow}}/{{TileCol}}.jpg",
                        tmp_path, retries=3, backoff=0.01, progress=False, concurrency=4)
    t0 = time.perf_counter()
    rep = dl.download([TileRequest(BM, "default", "500m", 3, r, c) for r in range(5) for c in range(10)])
    assert rep.offline and len(rep.failed) == 50
    assert sum(f.kind == "unreachable" for f in rep.failed) > 30  # the rest were never tried
    assert time.perf_counter() - t0 < 20


def test_works_inside_a_running_event_loop(gibs_server, tmp_path):
    """Jupyter runs an event loop already; the sync API must still work there."""
    async def inside():
        return _dl(gibs_server, tmp_path).download(_bm_tiles(0))

    # a fresh thread owns its loop, so a loop left running in the main thread by another test
    # (pytest-playwright's sync API) cannot interfere
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, inside()).result().fetched == 2
    assert run_sync(lambda: asyncio.sleep(0, result=7)) == 7


def test_bad_parameters_and_image_checks(tmp_path):
    with pytest.raises(CuratorError, match="concurrency 0 must be at least 1"):
        TileDownloader("http://x/{Layer}", tmp_path, concurrency=0)
    with pytest.raises(CuratorError, match="retries -1 must be >= 0"):
        TileDownloader("http://x/{Layer}", tmp_path, retries=-1)
    assert looks_like_image(b"\xff\xd8\xff\xe0" + b"x" * 10 + b"\xff\xd9", "jpg") is None
    assert "truncated JPEG" in looks_like_image(b"\xff\xd8\xff\xe0" + b"x" * 10, "jpg")
    assert "truncated PNG" in looks_like_image(b"\x89PNG\r\n\x1a\n" + b"x" * 40, "png")
    assert "not an image" in looks_like_image(b"<ExceptionReport/>", "png")
