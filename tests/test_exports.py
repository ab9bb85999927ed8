"""Exports to STAC, georeferenced PNG, Hugging Face, FiftyOne and Label Studio, and labels back in:
each format round-trips, foreign or damaged input is one CuratorError that writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curator_widgets import CuratorError, LabelStore, Workspace, export_labels, import_labels
from curator_widgets.exports import FORMATS, detect_format
from curator_widgets.exports.geo import WGS84_WKT, read_world_file
from curator_widgets.images import read_image, write_image
from curator_widgets.sources import Chip

CLASSES = ("forest", "river", "beach")


@pytest.fixture
def ws(tmp_path) -> Workspace:
    """12 chips with bounds, dates, GIBS layers and tile matrices; chips 0-5 are distinct images."""
    ws = Workspace.create(tmp_path / "ws")
    rng = np.random.default_rng(0)
    chips = []
    for i in range(12):
        img = tmp_path / f"img{i}.png"
        write_image(img, rng.integers(0, 255, (8, 6, 3), dtype=np.uint8))
        w, s = -120.0 + i, 30.0 + i / 2
        chips.append(Chip(key=f"gibs-{i}", path=img, meta={
            "source": "gibs", "layer": "MODIS_Terra_CorrectedReflectance_TrueColor", "date": f"2024-06-{1 + i:02d}",
            "west": w, "south": s, "east": w + 0.75, "north": s + 1.0, "width": 6, "height": 8,
            "tile_matrix_set": "250m", "tile_matrix": 5}))
    ws.add_chips(chips, progress=False)
    return ws


@pytest.fixture
def store(ws, labels_db) -> LabelStore:
    """The labelled set on each backend (SQLite file, PostgreSQL database): see conftest's labels_db."""
    st = labels_db.open(ws, label_set=CLASSES, task="landcover", annotator="ana", session="s1")
    st.add_many([0, 1, 2, 3], ["forest", "river", "beach", "forest"])
    st.add_many([4, 5], ["river", "beach"], annotator="ben")
    st.add(1, "beach", annotator="cho")  # a relabel: the latest wins
    st.add(6, "unsure")  # not in the curated set by default
    return st


def fresh(ws: Workspace, task: str = "again", db=None) -> LabelStore:
    """A new task to import into: in the same database as `db` (a labels_db), else the workspace's file."""
    if db is not None:
        return db.open(ws, label_set=CLASSES, task=task, annotator="importer")
    return LabelStore(ws, label_set=CLASSES, task=task, annotator="importer")


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", [*FORMATS, "csv"])
def test_round_trip_gives_the_same_labels(store, ws, tmp_path, fmt, labels_db):
    dest = tmp_path / f"out-{fmt}"
    if fmt == "csv":
        dest = store.export(tmp_path / "set.csv")
    else:
        assert export_labels(store, fmt, dest) == dest
    assert detect_format(dest) == fmt
    other = fresh(ws, db=labels_db)
    assert import_labels(other, dest) == 6
    assert other.current() == store.current(include_unsure=False) == \
        {0: "forest", 1: "beach", 2: "beach", 3: "forest", 4: "river", 5: "beach"}
    ev = other.events()
    assert set(ev["source"]) == {"import"}
    carries_annotator = fmt in ("stac", "hf", "labelstudio", "csv")
    expected = {0: "ana", 1: "cho", 4: "ben"} if carries_annotator else {0: "importer", 1: "importer", 4: "importer"}
    assert {c: ev.set_index("chip_id").loc[c, "annotator"] for c in expected} == expected


def test_stac_items_validate_offline_and_carry_the_label_extension(store, tmp_path):
    import pystac
    from pystac.validation import validate_dict

    dest = export_labels(store, "stac", tmp_path / "stac")
    catalog = pystac.Catalog.from_file(str(dest / "catalog.json"))
    items = sorted(catalog.get_items(recursive=True), key=lambda it: it.id)
    assert [it.id for it in items] == [f"chip-{i:08d}" for i in range(6)]
    validate_dict(json.loads((dest / "catalog.json").read_text()), extensions=[])  # core schema, bundled
    label_schema = "https://stac-extensions.github.io/label/v1.0.1/schema.json"
    man = store.workspace.manifest
    for it in items:
        d = json.loads((dest / it.id / f"{it.id}.json").read_text())
        if it.id in (items[0].id, items[-1].id):  # items are alike; each validation costs ~1 s
            validate_dict(d, extensions=[])  # the label extension's schema is online only: checked below
            if it.id == items[0].id:  # and the validator does reject a broken item
                with pytest.raises(pystac.errors.STACValidationError):
                    validate_dict({**d, "bbox": "everywhere"}, extensions=[])
        assert label_schema in d["stac_extensions"]
        props, cid = d["properties"], d["properties"]["curator:chip_id"]
        assert props["label:type"] == "vector" and props["label:properties"] == ["label"]
        assert props["label:description"] and props["label:tasks"] == ["classification"]
        assert props["label:classes"] == [{"name": "label", "classes": [*CLASSES, "unsure"]}]
        row = man.iloc[cid]
        assert d["bbox"] == [row.west, row.south, row.east, row.north]
        assert props["datetime"].startswith(row.date)
        assert (props["gibs:layer"], props["gibs:tile_matrix_set"], props["gibs:tile_matrix"]) == \
            (row.layer, "250m", 5)
        image = dest / it.id / d["assets"]["image"]["href"]
        assert d["assets"]["image"]["type"] == "image/png" and image.read_bytes() == Path(row.path).read_bytes()
        labels = json.loads((dest / it.id / d["assets"]["labels"]["href"]).read_text())
        assert labels["features"][0]["properties"]["label"] == store.label_of(cid)


def test_georeferenced_chips_land_where_the_manifest_says(store, tmp_path):
    dest = export_labels(store, "geo", tmp_path / "geo")
    pngs = sorted(dest.glob("*/*.png"))
    assert len(pngs) == 6
    man = store.workspace.manifest
    for png in pngs:
        cid = int(png.name[:8])
        assert png.parent.name == store.label_of(cid)
        img = read_image(png)
        assert np.array_equal(img, read_image(man.iloc[cid]["path"]))
        bounds = read_world_file(png.with_suffix(".pgw"), img.shape[1], img.shape[0])
        assert np.allclose(bounds, man.iloc[cid][["west", "south", "east", "north"]].astype(float), atol=1e-9)
        assert png.with_suffix(".prj").read_text().strip() == WGS84_WKT


def test_hf_imagefolder_reads_without_curator(store, tmp_path):
    dest = export_labels(store, "hf", tmp_path / "hf")
    meta = pd.read_csv(dest / "train" / "metadata.csv")
    assert dict(zip(meta["chip_id"], meta["label"])) == store.current(include_unsure=False)
    for name, label in zip(meta["file_name"], meta["label"]):
        assert (dest / "train" / name).is_file() and name.split("/")[0] == label
    assert {"key", "layer", "date", "west", "north", "tile_matrix", "annotator"} <= set(meta.columns)


def test_fiftyone_layout_is_data_plus_labels_json(store, tmp_path):
    dest = export_labels(store, "fiftyone", tmp_path / "fo")
    data = json.loads((dest / "labels.json").read_text())
    assert data["classes"] == [*CLASSES, "unsure"]
    stems = {p.stem for p in (dest / "data").iterdir()}
    assert set(data["labels"]) == stems and len(stems) == 6
    assert {int(s[:8]): data["classes"][i] for s, i in data["labels"].items()} == store.current(include_unsure=False)


# ----------------------------------------------------------------------------- Label Studio
def test_labelstudio_export_has_tasks_config_and_queue(store, tmp_path):
    dest = export_labels(store, "labelstudio", tmp_path / "ls", ids=[7, 8, 0])
    tasks = json.loads((dest / "tasks.json").read_text())
    assert [t["data"]["chip_id"] for t in tasks] == [0, 1, 2, 3, 4, 5, 7, 8]
    assert all((dest / "images" / t["data"]["image"].split("images/")[1]).is_file() for t in tasks)
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=images/")
    assert "annotations" not in tasks[-1] and tasks[1]["annotations"][0]["created_username"] == "cho"
    config = (dest / "label_config.xml").read_text()
    assert '<Choices name="label" toName="image"' in config and all(f'"{c}"' in config for c in CLASSES)


def test_labelstudio_annotations_come_back_with_their_annotators(store, ws, tmp_path):
    """A Label Studio JSON export: several annotators per task, a cancelled one, a task made there."""
    def ann(choice, when, **who):
        return {"result": [{"from_name": "label", "to_name": "image", "type": "choices",
                            "value": {"choices": [choice]}}], "created_at": when, **who}
    tasks = [
        {"id": 1, "data": {"image": "/data/local-files/?d=images/00000002_img2.png", "chip_id": 2, "key": "gibs-2"},
         "annotations": [ann("river", "2026-11-30T10:05:00Z", created_username="dee@x.org, 4"),
                         ann("forest", "2026-11-30T10:01:00Z", completed_by={"id": 3, "email": "eve@x.org"})]},
        {"id": 2, "data": {"image": "/data/local-files/?d=images/00000009_img9.png"},
         "annotations": [ann("beach", "2026-11-30T10:02:00Z", completed_by=7),
                         {**ann("forest", "2026-11-30T10:09:00Z", completed_by=8), "was_cancelled": True}]},
        {"id": 3, "data": {"image": "/data/local-files/?d=images/00000010_img10.png", "chip_id": 10}}]
    f = tmp_path / "project-1.json"
    f.write_text(json.dumps(tasks))
    other = fresh(ws)
    assert import_labels(other, f) == 3
    assert other.current() == {2: "river", 9: "beach"}
    ev = other.events()
    assert list(zip(ev["chip_id"], ev["label"], ev["annotator"])) == \
        [(2, "forest", "eve@x.org"), (9, "beach", "labelstudio:7"), (2, "river", "dee@x.org")]


# ----------------------------------------------------------------------------- hostile input
HOSTILE = {  # what the file says -> what the one error must name
    "unknown chip id": ("csv", "id,label\n3,forest\n999,river\n", r"unknown chip id\(s\) \[999\]"),
    "not in the label set": ("csv", "id,label\n3,forest\n4,volcano\n", "'volcano' is not in the label set"),
    "different workspace": ("csv", "id,label,key\n3,forest,gibs-3\n4,river,other-4\n", "chip 4 is 'other-4' there"),
    "bad json": ("json", '[{"data": {"chip_id": 1}, "annotations": [}', "is not valid JSON"),
    "not a task list": ("json", '{"tasks": 1}', "not a Label Studio JSON export"),
    "index out of classes": ("fiftyone", None, "class index 9 but classes are"),
    "not a table": ("csv", "x;y\n1;2\n", "lacks an id"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_import_is_one_error_and_writes_nothing(store, ws, tmp_path, case):
    kind, text, message = HOSTILE[case]
    if kind == "fiftyone":
        path = export_labels(store, "fiftyone", tmp_path / "fo") / "labels.json"
        text = json.dumps({**json.loads(path.read_text()), "labels": {"00000001_img1": 0, "00000002_img2": 9}})
    else:
        path = tmp_path / f"bad.{kind}"
    path.write_text(text)
    other = fresh(ws)
    with pytest.raises(CuratorError, match=message):
        import_labels(other, path)
    assert len(other.events()) == 0 and other.current() == {}


def test_stac_import_refuses_links_out_of_its_folder(store, ws, tmp_path):
    dest = export_labels(store, "stac", tmp_path / "stac")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    item = dest / "chip-00000000" / "chip-00000000.json"
    d = json.loads(item.read_text())
    d["assets"]["labels"]["href"] = "../../secret.json"
    item.write_text(json.dumps(d))
    other = fresh(ws)
    with pytest.raises(CuratorError, match="outside its folder"):
        import_labels(other, dest)
    assert len(other.events()) == 0


# ----------------------------------------------------------------------------- trust model
def test_export_writes_only_inside_and_removes_only_its_own_files(store, tmp_path):
    foreign = tmp_path / "busy"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CuratorError, match="not empty and not an earlier curator export"):
        export_labels(store, "hf", foreign)
    assert os.listdir(foreign) == ["notes.txt"]

    dest = export_labels(store, "hf", tmp_path / "hf")
    (dest / "train" / "mine.txt").write_text("a file the user put there")
    store.undo(1, annotator="ben")  # chip 5 leaves the set
    export_labels(store, "hf", dest)
    assert not list(dest.glob("train/*/00000005_*")) and (dest / "train" / "mine.txt").read_text()
    assert len(pd.read_csv(dest / "train" / "metadata.csv")) == 5
    with pytest.raises(CuratorError, match="holds a hf export, not stac"):
        export_labels(store, "stac", dest)


def test_a_killed_export_resumes(store, ws, tmp_path, monkeypatch):
    """Killed mid-way (after some files, or while writing its record): the next export finishes it."""
    from curator_widgets.exports import dest as dest_mod

    real, calls = dest_mod.shutil.copyfile, []

    def dying_copy(src, dst):
        calls.append(src)
        if len(calls) == 4:
            raise KeyboardInterrupt  # what a kill looks like to the files written so far
        return real(src, dst)

    monkeypatch.setattr(dest_mod.shutil, "copyfile", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        export_labels(store, "fiftyone", tmp_path / "fo")
    monkeypatch.setattr(dest_mod.shutil, "copyfile", real)
    assert len(list((tmp_path / "fo" / "data").iterdir())) == 3
    assert json.loads((tmp_path / "fo" / dest_mod.RECORD).read_text())["complete"] is False
    (tmp_path / "fo" / "data" / ".00000004_img4.png.k1ll3d_x.png.tmp").write_bytes(b"half")
    export_labels(store, "fiftyone", tmp_path / "fo")
    assert sorted(p.name for p in (tmp_path / "fo" / "data").iterdir()) == \
        sorted(f"{i:08d}_img{i}.png" for i in range(6))
    assert import_labels(fresh(ws), tmp_path / "fo") == 6


@pytest.mark.parametrize("fmt", ["hf", "tree"])
def test_a_record_write_cut_by_a_kill_does_not_block_the_next_export(store, tmp_path, fmt):
    from curator_widgets.export_tree import EXPORT_RECORD
    from curator_widgets.exports.dest import RECORD

    dest = tmp_path / "out"
    dest.mkdir()
    leftover = dest / f".{EXPORT_RECORD if fmt == 'tree' else RECORD}.a1b2c3_d.tmp"  # atomic_path's temp name
    leftover.write_text('{"half": ')
    if fmt == "tree":
        store.export_tree(dest, mode="copy")
    else:
        export_labels(store, fmt, dest)
    assert not leftover.exists()


def test_export_refuses_a_label_folder_that_links_out(store, tmp_path):
    dest = export_labels(store, "geo", tmp_path / "geo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "river").rename(tmp_path / "river-old")
    (dest / "river").symlink_to(outside)
    with pytest.raises(CuratorError, match="link or a file"):
        export_labels(store, "geo", dest)
    assert list(outside.iterdir()) == []


def test_chips_without_bounds_are_refused_for_map_formats(tmp_path):
    ws = Workspace.create(tmp_path / "plain")
    img = tmp_path / "a.png"
    write_image(img, np.zeros((4, 4, 3), np.uint8))
    ws.add_chips([Chip(key="a", path=img, meta={"source": "folder"})], progress=False)
    st = LabelStore(ws)
    st.add(0, "positive")
    for fmt in ("stac", "geo"):
        with pytest.raises(CuratorError, match="no bounds"):
            export_labels(st, fmt, tmp_path / fmt)
        assert not (tmp_path / fmt).exists()
    assert import_labels(LabelStore(ws, task="t2"), export_labels(st, "fiftyone", tmp_path / "fo")) == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_set_exports_and_imports_nothing(ws, tmp_path, fmt):
    st = LabelStore(ws, label_set=CLASSES, task="empty")
    st.add(0, "unsure")  # left out by default
    dest = export_labels(st, fmt, tmp_path / fmt)
    assert {p.name for p in dest.rglob("*") if p.is_file()} >= {".curator-export-files.json"}
    if fmt == "geo":  # an empty geo export has no chip to tell its format by
        with pytest.raises(CuratorError, match="holds no"):
            import_labels(fresh(ws), dest, format="geo")
    else:
        assert import_labels(fresh(ws), dest) == 0


# ----------------------------------------------------------------------------- CLI
def test_cli_exports_and_imports(store, ws, tmp_path, labels_db):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if labels_db.url is not None:  # the CLI finds the team's database through CURATOR_LABELS_URL
        env["CURATOR_LABELS_URL"] = labels_db.url
    cli = [sys.executable, "-m", "curator_widgets.cli", "label", "-w", str(ws.root)]
    out = subprocess.run([*cli, "--task", "landcover", "--export", str(tmp_path / "stac"), "--format", "stac"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "wrote 6 labelled chips as stac" in out
    labels_db.open(ws, label_set=CLASSES, task="copy")
    out = subprocess.run([*cli, "--task", "copy", "--import", str(tmp_path / "stac")],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "imported 6 labels" in out
    assert labels_db.open(ws, task="copy").current() == store.current(include_unsure=False)


def test_cli_status_reads_the_team_database(store, ws, labels_db, capsys, monkeypatch):
    """`curator label --status` on a workspace with no labels.sqlite still finds a CURATOR_LABELS_URL store."""
    import json

    from curator_widgets.cli import main

    if labels_db.url is None:
        pytest.skip("the SQLite case is tests/test_security_cli.py's")
    monkeypatch.setenv("CURATOR_LABELS_URL", labels_db.url)
    assert not ws.labels_path.exists()  # the labels live in the database only
    assert main(["label", "-w", str(ws.root), "--task", "landcover", "--status"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["counts"] == {"forest": 2, "river": 1, "beach": 3, "unsure": 1}
