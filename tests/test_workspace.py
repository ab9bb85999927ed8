import json

import numpy as np
import pytest

from curator_widgets import CuratorError, Workspace
from curator_widgets import manifest as mf
from curator_widgets.sources import Chip


def _chips(n, prefix="k", start=0):
    rng = np.random.default_rng(0)
    for i in range(start, start + n):
        yield Chip(key=f"{prefix}{i}", image=rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                   meta={"source": "test", "layer": "L", "date": "2020-01-01", "west": 0.0, "south": 0.0,
                         "east": 1.0, "north": 1.0, "width": 16, "height": 16, "flags": ["partial"] if i % 2 else []})


def test_create_open_round_trip(tmp_path):
    ws = Workspace.create(tmp_path / "ws", description="t")
    for sub in ("chips", "models", "embeddings", "index", "projections"):
        assert (ws.root / sub).is_dir()
    res = ws.add_chips(_chips(5), progress=False)
    assert res.added == 5 and res.ids == [0, 1, 2, 3, 4]
    again = Workspace.open(tmp_path / "ws")
    df = again.manifest
    assert list(df["id"]) == [0, 1, 2, 3, 4]
    assert list(df.columns[: len(mf.COLUMNS)]) == mf.COLUMNS
    assert list(df["flags"][1]) == ["partial"] and list(df["flags"][0]) == []
    img = again.load_chip(3)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert again.meta["format"] == "curator-workspace" and again.meta["version"] == 1


def test_resume_adds_only_missing_and_never_clobbers(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    ws.add_chips(_chips(3), progress=False)
    before = ws.chip_path(0).read_bytes()
    ws2 = Workspace.open_or_create(tmp_path / "ws")
    res = ws2.add_chips(_chips(5), progress=False)
    assert (res.added, res.existing) == (2, 3)
    assert len(ws2) == 5 and ws2.chip_path(0).read_bytes() == before
    with pytest.raises(CuratorError, match="already a workspace"):
        Workspace.create(tmp_path / "ws")


def test_crash_mid_ingest_keeps_flushed_rows(tmp_path):
    ws = Workspace.create(tmp_path / "ws")

    def failing():
        yield from _chips(5)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        ws.add_chips(failing(), flush_every=2, progress=False)
    kept = len(Workspace.open(ws.root))
    assert kept == 4  # two full batches flushed; nothing half-written
    res = Workspace.open(ws.root).add_chips(_chips(5), progress=False)
    assert res.added == 1 and len(Workspace.open(ws.root)) == 5


def test_refuses_non_empty_non_workspace_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("keep me")
    with pytest.raises(CuratorError, match="not empty"):
        Workspace.create(tmp_path / "x")
    assert (tmp_path / "x" / "precious.txt").read_text() == "keep me"


def test_open_missing_newer_and_corrupt(tmp_path):
    with pytest.raises(CuratorError, match="not a workspace"):
        Workspace.open(tmp_path)
    ws = Workspace.create(tmp_path / "ws")
    meta = json.loads((ws.root / "workspace.json").read_text())
    meta["version"] = 99
    (ws.root / "workspace.json").write_text(json.dumps(meta))
    with pytest.raises(CuratorError, match="newer than this curator_widgets") as e:
        Workspace.open(ws.root)
    assert "pip install -U" in str(e.value)
    (ws.root / "workspace.json").write_text("{not json")
    with pytest.raises(CuratorError, match="corrupt"):
        Workspace.open(ws.root)


def test_corrupt_manifest_is_an_error_not_a_reset(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    ws.add_chips(_chips(2), progress=False)
    ws.manifest_path.write_bytes(b"garbage")
    with pytest.raises(CuratorError, match="unreadable"):
        Workspace.open(ws.root).manifest
    assert ws.manifest_path.read_bytes() == b"garbage"


def test_record_merges_and_bad_ids(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    ws.record("runs", "a", {"x": 1})
    Workspace.open(ws.root).record("runs", "b", {"y": 2})
    assert set(Workspace.open(ws.root).meta["runs"]) == {"a", "b"}
    with pytest.raises(CuratorError, match="not in this workspace"):
        ws.chip_path(0)
    with pytest.raises(CuratorError, match="plain name"):
        ws.embeddings_path("../x")


def test_extra_columns_are_kept(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    chip = next(_chips(1))
    chip.meta["score"] = 0.5
    ws.add_chips([chip], progress=False)
    ws.add_chips(_chips(1, start=1), progress=False)
    df = Workspace.open(ws.root).manifest
    assert df["score"][0] == 0.5 and np.isnan(df["score"][1])
