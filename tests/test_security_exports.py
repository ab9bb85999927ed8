"""`LabelStore.export_tree` against a hostile or interrupted export folder.

The record `.curator-export.json` may come from anyone: it must never make the export delete or
overwrite a file it did not make, or write outside the folder. A SIGKILL at any moment, then a
re-run, must leave exactly the curated set: nothing missing, nothing extra, no temp files.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

from curator_widgets import CuratorError, LabelStore, Workspace
from curator_widgets.sources.base import Chip

CTX = mp.get_context("fork")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A workspace of 240 small chips, all labelled (120 positive, 120 negative)."""
    ws = Workspace.create(tmp_path_factory.mktemp("exp") / "ws")
    rng = np.random.default_rng(0)
    ws.add_chips((Chip(key=f"c{i}", meta={"source": "test"}, image=rng.integers(0, 255, (16, 16, 3), np.uint8))
                  for i in range(240)), progress=False)
    store = LabelStore(ws, task="exp")
    store.add_many(range(240), ["positive" if i % 2 else "negative" for i in range(240)])
    return ws


def tree(dest):
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.name != ".curator-export.json"
                  and not p.is_dir())


def test_a_planted_record_cannot_delete_outside_or_foreign_files(labelled, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    dest = tmp_path / "export"
    (dest / "positive").mkdir(parents=True)
    mine = dest / "positive" / "mine.txt"
    mine.write_text("mine")
    src = str(labelled.chip_path(1))
    (dest / ".curator-export.json").write_text(json.dumps({"entries": {
        "../victim.txt": src, "positive/../../victim.txt": src, str(victim): src,
        "positive/mine.txt": src}}))
    counts = LabelStore(labelled, task="exp").export_tree(dest)
    assert counts == {"negative": 120, "positive": 120}
    assert victim.read_text() == "keep" and mine.read_text() == "mine"


def test_an_existing_file_that_we_did_not_make_is_never_overwritten(labelled, tmp_path):
    dest = tmp_path / "export"
    store = LabelStore(labelled, task="exp")
    store.export_tree(dest)
    target = dest / "positive" / f"00000001_{labelled.chip_path(1).name}"
    mine = target.with_name("users-file.tmp")  # made while our link still holds its inode, so the file
    mine.write_text("a file the user put there")  # cannot reuse that inode number (the check compares inodes)
    os.replace(mine, target)
    rec = json.loads((dest / ".curator-export.json").read_text())
    rec["entries"].pop(f"positive/{target.name}")  # and the record does not claim it
    (dest / ".curator-export.json").write_text(json.dumps(rec))
    with pytest.raises(CuratorError, match="exists and was not made by an earlier export"):
        store.export_tree(dest)
    assert target.read_text() == "a file the user put there"


def test_a_user_file_that_reused_the_inode_number_of_our_link_is_not_taken_for_ours(labelled, tmp_path):
    """The inode number of a link an export made can be reused by a file made after the link is gone; the
    record's stamp also holds the inode change time, so that file is never overwritten or deleted."""
    dest = tmp_path / "export"
    store = LabelStore(labelled, task="exp")
    store.export_tree(dest)
    rel = next(r for r in json.loads((dest / ".curator-export.json").read_text())["made"] if r.startswith("positive/"))
    target = dest / rel
    target.unlink()
    target.write_text("a file the user put there")  # may or may not get the freed number: force the case
    st = os.lstat(target)
    rec = json.loads((dest / ".curator-export.json").read_text())
    assert len(rec["made"][rel]) == 3
    rec["made"][rel] = [st.st_dev, st.st_ino, st.st_ctime_ns - 1]  # our link's stamp, had it held this number
    (dest / ".curator-export.json").write_text(json.dumps(rec))
    with pytest.raises(CuratorError, match="exists and was not made by an earlier export"):
        store.export_tree(dest)
    assert target.read_text() == "a file the user put there"
    rec["made"][rel] = [st.st_dev, st.st_ino]  # a record from an older version (no change time) still works
    (dest / ".curator-export.json").write_text(json.dumps(rec))
    target.unlink()
    store.export_tree(dest)
    assert target.is_symlink()


def test_a_label_folder_linking_out_is_refused(labelled, tmp_path):
    dest, elsewhere = tmp_path / "export", tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest.mkdir()
    (dest / ".curator-export.json").write_text(json.dumps({"entries": {}}))
    os.symlink(elsewhere, dest / "positive")
    with pytest.raises(CuratorError, match="would land outside"):
        LabelStore(labelled, task="exp").export_tree(dest)
    assert list(elsewhere.iterdir()) == []


def test_copy_over_an_earlier_symlink_export_makes_copies(labelled, tmp_path):
    dest = tmp_path / "export"
    store = LabelStore(labelled, task="exp")
    store.export_tree(dest, mode="symlink")
    assert all(p.is_symlink() for p in (dest / "positive").iterdir())
    store.export_tree(dest, mode="copy")
    files = list((dest / "positive").iterdir()) + list((dest / "negative").iterdir())
    assert len(files) == 240 and not any(p.is_symlink() for p in files)
    assert json.loads((dest / ".curator-export.json").read_text())["mode"] == "copy"
    store.export_tree(dest, mode="symlink")  # and back
    assert all(p.is_symlink() for p in (dest / "negative").iterdir())


def test_a_kill_before_the_first_record_leaves_a_folder_that_resumes(labelled, tmp_path):
    dest = tmp_path / "export"
    dest.mkdir()
    (dest / "..curator-export.json.k1ll3d.tmp").write_text("{")  # what atomic_path leaves at a SIGKILL
    assert LabelStore(labelled, task="exp").export_tree(dest) == {"negative": 120, "positive": 120}
    assert not list(dest.glob("*.tmp"))


def _export(ws_root, dest, mode):
    LabelStore(Workspace.open(ws_root), task="exp").export_tree(dest, mode=mode)
    os._exit(0)


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_export_survives_sigkill_at_random_moments(labelled, tmp_path, mode):
    dest = tmp_path / "export"
    rng = random.Random(7)
    before = {p: p.stat().st_mtime_ns for p in (labelled.root / "chips").rglob("*.png")}
    killed = 0
    for _ in range(8):
        proc = CTX.Process(target=_export, args=(labelled.root, dest, mode))
        proc.start()
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.join()
    assert killed >= 3
    LabelStore(labelled, task="exp").export_tree(dest, mode=mode)
    expected = sorted(f"{'positive' if i % 2 else 'negative'}/{i:08d}_{labelled.chip_path(i).name}"
                      for i in range(240))
    assert tree(dest) == expected  # nothing missing, nothing duplicated, no temp files left
    assert all(p.is_symlink() == (mode == "symlink") for p in (dest / "positive").iterdir())
    assert json.loads((dest / ".curator-export.json").read_text())["complete"] is True
    assert {p: p.stat().st_mtime_ns for p in (labelled.root / "chips").rglob("*.png")} == before
