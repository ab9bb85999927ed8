"""Ingest against hostile or awkward input, and against SIGKILL.

A decompression bomb or a corrupt file is reported by path and skipped, never the end of the
ingest; a folder of small images ingests at their own size; an ingest that adds nothing says
why; a killed ingest loses seconds of work and leaves no orphan chip files after a resume.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from curator_widgets import CuratorError, FolderSource, Workspace
from curator_widgets.sources.base import Chip, Source

CTX = mp.get_context("fork")


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height: over Pillow's limit, Image.open itself refuses it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b"")


def image_folder(root, size, n=6, classes=("a", "b")):
    rng = np.random.default_rng(size)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_decompression_bomb_is_skipped_by_path_and_the_rest_ingested(tmp_path):
    folder = image_folder(tmp_path / "imgs", 32)
    (folder / "a" / "bomb.png").write_bytes(bomb_png(30000, 30000))
    (folder / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    ws = Workspace.create(tmp_path / "ws")
    with pytest.warns(UserWarning, match="bomb.png"):
        res = ws.ingest(FolderSource(folder), progress=False)
    assert res.added == 12
    skipped = {os.path.basename(s.where): s.reason for s in res.skipped}
    assert set(skipped) == {"bomb.png", "broken.jpg"}
    assert "decompression bomb" in skipped["bomb.png"]


@pytest.mark.parametrize("size", [64, 150])
def test_a_folder_of_small_images_ingests_at_their_own_size(tmp_path, size):
    folder = image_folder(tmp_path / "imgs", size)
    ws = Workspace.create(tmp_path / "ws")
    res = ws.ingest(FolderSource(folder), progress=False)  # the defaults a new user runs
    assert res.added == 12 and not res.skipped
    assert set(ws.manifest["width"]) == {size} and set(ws.manifest["label"]) == {"a", "b"}
    assert ws.load_chip(0).shape == (size, size, 3)


def test_an_ingest_that_adds_nothing_says_why(tmp_path):
    folder = image_folder(tmp_path / "imgs", 64)
    ws = Workspace.create(tmp_path / "ws")
    with pytest.warns(UserWarning), pytest.raises(CuratorError, match="nothing was ingested from folder: all 12 "
                                                  "inputs were skipped: chip size 256 px is larger") as e:
        ws.ingest(FolderSource(folder), size=256, progress=False)
    assert "size=None" in e.value.fix and len(ws) == 0
    assert ws.ingest(FolderSource(folder), size=64, progress=False).added == 12
    assert ws.ingest(FolderSource(folder), size=64, progress=False).existing == 12  # a re-run is no error
    for bad in (0, -64, "64", 2.5):
        with pytest.raises(CuratorError, match="is not a positive number of pixels"):
            ws.ingest(FolderSource(folder), size=bad, progress=False)
    with pytest.raises(CuratorError, match=r"yielded no chips for this region, dates and size \(blank_dropped: 3\)"):
        ws.ingest(AllBlank(), progress=False)


class AllBlank(Source):
    """A source whose every chip was blank (as a GIBS night-side download): it keeps counters."""

    name = "blank"

    def chips(self, region=None, dates=None, size=16, overlap=0.0, boundary="shift"):
        self.stats = {"blank_dropped": 3, "held_back": 0}
        return iter(())


def test_a_create_killed_half_way_is_finished_by_a_rerun_but_foreign_data_is_refused(tmp_path):
    root = tmp_path / "ws"
    for sub in ("chips", "models", "embeddings", "index", "projections"):
        (root / sub).mkdir(parents=True)  # a kill before workspace.json was written
    Workspace.create(tmp_path / "tmp-ws")
    (tmp_path / "tmp-ws" / "manifest.parquet").rename(root / "manifest.parquet")
    (root / ".workspace.json.abc123.tmp").write_text("{")
    ws = Workspace.create(root)
    assert len(ws) == 0 and Workspace.open(root).meta["format"] == "curator-workspace"
    other = tmp_path / "other"
    (other / "chips").mkdir(parents=True)
    (other / "chips" / "mine.png").write_bytes(b"x")
    with pytest.raises(CuratorError, match="exists and is not empty"):
        Workspace.create(other)


class SlowSource(Source):
    """`n` chips at about `rate` per second: a stand-in for a download, so a kill lands mid-ingest."""

    name = "slow"

    def __init__(self, n: int, rate: float):
        super().__init__()
        self.n, self.rate = n, rate

    def chips(self, region=None, dates=None, size=16, overlap=0.0, boundary="shift"):
        for i in range(self.n):
            time.sleep(1 / self.rate)
            pixels = np.full((16, 16, 3), i % 251, np.uint8)
            pixels[0, 0] = (i // 251, i % 7, 3)
            yield Chip(key=f"slow:{i}", image=pixels, meta={"source": self.name, "width": 16, "height": 16})


def _ingest(root, n, rate):
    Workspace.open(root).ingest(SlowSource(n, rate), progress=False)
    os._exit(0)


def chip_files(ws):
    return sorted(str(p.relative_to(ws.root)) for p in (ws.root / "chips").rglob("*") if p.is_file())


def test_a_killed_ingest_loses_seconds_and_resumes_without_orphans(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    n = 700
    proc = CTX.Process(target=_ingest, args=(ws.root, n, 250.0))
    proc.start()
    deadline = time.monotonic() + 60
    while not any((ws.root / "chips").rglob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the child has started cutting
    time.sleep(3.0)  # hundreds of chips cut; the manifest was flushed at least once (every 2 s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    kept = len(Workspace.open(ws.root))
    assert kept >= 50, f"only {kept} chips survived 3 s of ingest"  # it was 0: a flush every 2,048 chips
    rng = random.Random(3)
    for _ in range(4):  # more kills at random moments
        proc = CTX.Process(target=_ingest, args=(ws.root, n, 2000.0))
        proc.start()
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    ws = Workspace.open(ws.root)
    res = ws.ingest(SlowSource(n, 1e6), progress=False)
    df = ws.manifest
    assert res.added + res.existing == n
    assert sorted(df["key"]) == sorted(f"slow:{i}" for i in range(n)) and df["key"].is_unique
    assert chip_files(ws) == sorted(df["path"])  # every file is in the manifest: no orphans, no temp files
    for cid in rng.sample(range(n), 40):  # each row's file holds that chip's pixels
        i = int(df["key"][cid].split(":")[1])
        px = ws.load_chip(cid)
        assert px[1, 1, 0] == i % 251 and tuple(px[0, 0]) == (i // 251, i % 7, 3)
