"""The server extension against hostile workspaces, on a real `jupyter server`.

A shared workspace (unpacked from an archive, cloned, on a hub) is untrusted: its manifest may
name absolute or `../` paths, its files may be symlinks out of the root or into hidden folders,
its images may be huge or decompression bombs. Nothing outside the root may be served, no reply
may name a server path, nothing may be written outside the workspace, and memory stays bounded.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import os
import struct
import zlib

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from curator_widgets import Workspace
from curator_widgets import manifest as mf

from _jupyter import JupyterProcess

TOKEN = "curator-test-token"
SECRET = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)  # pixels that must never leak


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, with a one-row IDAT: a bomb by its header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + \
        chunk(b"IEND", b"")


def hostile_workspace(root, outside):
    """root/shared/ws: chip i is one attack (or a control); returns {name: chip id}."""
    ws = Workspace.create(root / "shared" / "ws")
    chips = ws.root / "chips"
    good = chips / "good.png"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(good)
    (chips / ".hidden").mkdir()
    Image.fromarray(np.full((40, 40, 3), 10, np.uint8)).save(chips / ".hidden" / "h.png")
    os.symlink(outside / "secret.png", chips / "link-out.png")
    os.symlink(chips / ".hidden" / "h.png", chips / "link-hidden.png")
    os.symlink(chips / "loop-a.png", chips / "loop-b.png")
    os.symlink(chips / "loop-b.png", chips / "loop-a.png")
    Image.new("1", (12000, 12000)).save(chips / "huge.png")  # ~20 KB on disk, 144 MP decoded
    (chips / "bomb.png").write_bytes(png_header_only(20000, 20000))  # over Pillow's bomb limit
    Image.new("L", (6000, 6000), 128).save(chips / "big.jpg", quality=70)  # over the cap; draft() decodes it at 1/8
    cases = {
        "good": "chips/good.png",
        "absolute": str(outside / "secret.png"),
        "dotdot": "../../../outside/secret.png",
        "symlink_out": "chips/link-out.png",
        "hidden": "chips/.hidden/h.png",
        "symlink_hidden": "chips/link-hidden.png",
        "loop": "chips/loop-a.png",
        "long_name": "chips/" + "x" * 300 + ".png",
        "etc": "/etc/hostname",
        "huge": "chips/huge.png",
        "bomb": "chips/bomb.png",
        "big_jpeg": "chips/big.jpg",
        "missing": "chips/nothing-here.png",
        "not_image": "workspace.json",
    }
    rows = [{"id": i, "key": f"k{i}", "path": p, "source": "folder"} for i, p in enumerate(cases.values())]
    mf.write(ws.manifest_path, mf.rows_to_table(rows))
    return {name: i for i, name in enumerate(cases)}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "root", base / "outside"
    outside.mkdir()
    Image.fromarray(SECRET).save(outside / "secret.png")
    root.mkdir()
    ids = hostile_workspace(root, outside)
    # a hidden workspace (Jupyter hides .folders unless allow_hidden)
    hid = Workspace.create(root / ".hidden" / "ws")
    Image.fromarray(np.full((40, 40, 3), 50, np.uint8)).save(hid.root / "chips" / "a.png")
    mf.write(hid.manifest_path, mf.rows_to_table([{"id": 0, "key": "a", "path": "chips/a.png", "source": "folder"}]))
    # a workspace whose manifest is a symlink to one outside the root
    far = Workspace.create(outside / "far")
    Image.fromarray(SECRET).save(far.root / "chips" / "s.png")
    mf.write(far.manifest_path, mf.rows_to_table([{"id": 0, "key": "s", "path": "chips/s.png", "source": "folder"}]))
    lm = Workspace.create(root / "linked-manifest")
    os.unlink(lm.manifest_path)
    os.symlink(far.manifest_path, lm.manifest_path)
    # a workspace whose thumbnail cache links out of it: a planted cached thumbnail, and a cache dir outside
    cw = Workspace.create(root / "cache-link")
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(cw.root / "chips" / "c.png")
    mf.write(cw.manifest_path, mf.rows_to_table([{"id": i, "key": f"c{i}", "path": "chips/c.png", "source": "folder"}
                                                 for i in range(2)]))
    planted = cw.root / ".cache" / "thumbs" / "128" / "00000"
    planted.mkdir(parents=True)
    os.symlink(outside / "secret.png", planted / "00000000.jpg")
    (outside / "cache-target").mkdir()
    os.symlink(outside / "cache-target", cw.root / ".cache" / "thumbs" / "64")
    proc = JupyterProcess(root, app="server", token=TOKEN)
    try:
        proc.wait()
        yield proc, ids, base
    finally:
        proc.stop()


def get(server, path):
    return httpx.get(server.url + path, headers={"Authorization": f"token {TOKEN}"}, timeout=120)


def assert_no_server_path(r, base):
    assert str(base) not in r.text and "/etc/" not in r.text and "/tmp" not in r.text, r.text


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink_out", "hidden", "symlink_hidden", "etc"])
def test_files_outside_the_root_or_hidden_are_not_served(hostile, case):
    server, ids, base = hostile
    r = get(server, f"/curator/thumbs/shared/ws/{ids[case]}")
    assert r.status_code in (403, 404), (case, r.status_code, r.text)
    assert not r.headers.get("content-type", "").startswith("image/")
    assert_no_server_path(r, base)


@pytest.mark.parametrize("case", ["loop", "long_name", "missing", "not_image", "huge", "bomb"])
def test_odd_files_are_4xx_without_paths(hostile, case):
    server, ids, base = hostile
    r = get(server, f"/curator/thumbs/shared/ws/{ids[case]}")
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert_no_server_path(r, base)
    if case in ("huge", "bomb"):
        assert "too large to thumbnail" in r.json()["error"]


def test_the_control_chip_and_a_big_jpeg_are_served(hostile):
    server, ids, _ = hostile
    r = get(server, f"/curator/thumbs/shared/ws/{ids['good']}")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (40, 40)
    r = get(server, f"/curator/thumbs/shared/ws/{ids['big_jpeg']}?size=128")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (128, 128)


@pytest.mark.parametrize("chip", ["²", "1" * 5000, "-1", "1e3", "٣", "0x1", "%20"])
def test_odd_chip_ids_are_400(hostile, chip):
    server, _, base = hostile
    r = get(server, f"/curator/thumbs/shared/ws/{chip}")
    assert r.status_code in (400, 404), (chip[:20], r.status_code)
    assert_no_server_path(r, base)


@pytest.mark.parametrize("ws_part", [".hidden/ws", "x" * 300, "shared/" + "y" * 300 + "/ws"])
def test_hidden_or_overlong_workspaces_are_not_found(hostile, ws_part):
    server, _, base = hostile
    r = get(server, f"/curator/thumbs/{ws_part}/0")
    assert r.status_code == 404, (ws_part[:20], r.status_code, r.text)
    assert_no_server_path(r, base)


@pytest.mark.parametrize("col", ["1" + "0" * 20, "9" * 40, "-" + "9" * 39, "1e20", "9" * 4000])
def test_huge_wrapped_tile_columns_are_not_500(hostile, col):
    server, _, base = hostile
    r = get(server, f"/curator/tiles/bluemarble/BlueMarble_NextGeneration/default/500m/1/0/{col}.jpg?wrap=1")
    assert r.status_code in (200, 400), (col[:20], r.status_code, r.text[:200])
    if len(col) <= 40 and col.lstrip("-").isdigit():
        assert r.status_code == 200  # any integer column wraps onto the globe


def test_a_symlinked_manifest_outside_the_root_is_refused(hostile):
    server, _, base = hostile
    r = get(server, "/curator/thumbs/linked-manifest/0")
    assert r.status_code == 403 and not r.headers.get("content-type", "").startswith("image/")
    assert_no_server_path(r, base)


def test_planted_cache_links_are_neither_served_nor_written_through(hostile):
    server, _, base = hostile
    r = get(server, "/curator/thumbs/cache-link/0?size=128")  # the cached file is a link to the secret
    assert r.status_code == 200
    assert np.asarray(Image.open(io.BytesIO(r.content)).convert("L")).mean() > 150  # the chip (200), not SECRET
    r = get(server, "/curator/thumbs/cache-link/1?size=64")  # the 64 px cache dir links outside
    assert r.status_code == 200
    assert list((base / "outside" / "cache-target").rglob("*")) == []


def test_server_memory_stays_bounded_under_huge_images(hostile):
    server, ids, _ = hostile
    proc = psutil.Process(server.proc.pid)
    get(server, f"/curator/thumbs/shared/ws/{ids['good']}")  # warm: imports done
    before = proc.memory_info().rss
    paths = [f"/curator/thumbs/shared/ws/{ids[c]}?size={s}" for c in ("huge", "bomb", "big_jpeg")
             for s in (64, 128, 256, 512)] * 2
    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda p: get(server, p).status_code, paths))
    assert set(codes) <= {200, 400}
    grown = (proc.memory_info().rss - before) / 2**20
    # before the pixel cap one 12000 x 12000 PNG took the server from 424 MB to 2.55 GB
    assert grown < 200, f"server RSS grew by {grown:.0f} MB"
