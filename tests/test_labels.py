"""The label store: append-only events, undo, queue, concurrent writers, crash safety, export."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from curator_widgets import CuratorError, FolderSource, LabelStore, Workspace
from curator_widgets.paths import shared_data_dir

CTX = mp.get_context("fork")


@pytest.fixture(scope="module")
def forest_ws(tmp_path_factory) -> Workspace:
    """100 real UC Merced forest images, referenced in place (never copied) by a workspace."""
    ws = Workspace.create(tmp_path_factory.mktemp("labels") / "ws")
    ws.ingest(FolderSource(shared_data_dir() / "ucmerced" / "forest"), size=None, progress=False)
    return ws


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels.sqlite", n_items=1000, annotator="ann", session="s1")


def test_add_current_counts_and_append_only_history(store):
    store.add(3, "positive")
    store.add(4, "negative")
    store.add(3, "negative")  # relabel: latest event wins
    store.add(5, "unsure")
    store.add(6, True)  # bools name the binary classes
    assert store.current() == {3: "negative", 4: "negative", 5: "unsure", 6: "positive"}
    assert store.counts() == {"negative": 2, "positive": 1, "unsure": 1}
    assert len(store) == 4
    assert store.current(include_unsure=False) == {3: "negative", 4: "negative", 6: "positive"}
    ev = store.events()
    assert list(ev["chip_id"]) == [3, 4, 3, 5, 6] and set(ev["kind"]) == {"label"}
    assert set(ev["annotator"]) == {"ann"} and set(ev["session"]) == {"s1"}
    assert str(ev["time"].dt.tz) == "UTC"
    assert list(store.events(chip_id=3)["label"]) == ["positive", "negative"]


def test_wal_mode_and_durable_settings(store):
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_multi_step_undo_is_an_event_and_requeues(store):
    store.queue_add([10, 11, 12, 13])
    for cid, lab in [(10, "positive"), (11, "negative"), (12, "positive")]:
        store.add(cid, lab)
    assert store.next_in_queue(5) == [13]
    assert store.undo(2) == [12, 11]  # most recent first
    assert store.current() == {10: "positive"}
    assert store.next_in_queue(5) == [11, 12, 13]  # undone chips come back first, in labelling order
    ev = store.events()
    assert len(ev) == 5 and list(ev["kind"]) == ["label"] * 3 + ["undo"] * 2  # nothing deleted
    assert list(ev["undoes"].dropna().astype(int)) == [3, 2]
    assert store.undo(1) == [10] and store.current() == {}
    assert store.undo(3) == []  # nothing left to undo is not an error
    # a relabel then undo restores the earlier label
    store.add(20, "positive")
    store.add(20, "negative")
    store.undo()
    assert store.label_of(20) == "positive"
    assert store.rebuild_current() == 1 and store.current() == {20: "positive"}


def test_undo_only_touches_the_given_session(tmp_path):
    a = LabelStore(tmp_path / "l.sqlite", n_items=50, session="A")
    b = LabelStore(tmp_path / "l.sqlite", n_items=50, session="B")
    a.add(1, "positive")
    b.add(2, "positive")
    assert a.undo(session="A") == [1]
    assert a.current() == {2: "positive"}
    with pytest.raises(CuratorError, match="undo needs n >= 1"):
        a.undo(0)


def test_current_by_source_keeps_model_guesses_out_of_training(store):
    store.add(1, "negative", source="human")
    store.add(1, "positive", source="model")
    store.add(2, "positive", source="seed")
    assert store.current() == {1: "positive", 2: "positive"}
    assert store.current(sources=("human", "seed")) == {1: "negative", 2: "positive"}
    ids, labels = store.current_arrays(sources=("human",))
    assert ids.tolist() == [1] and labels.tolist() == ["negative"]


def test_multiclass_label_set_is_stored_and_can_grow(tmp_path):
    path = tmp_path / "l.sqlite"
    s = LabelStore(path, label_set=("forest", "river", "beach"), task="landcover", n_items=10)
    assert s.choices == ("forest", "river", "beach", "unsure") and not s.binary
    s.add(0, "river")
    again = LabelStore(path, task="landcover", n_items=10)  # label set comes from the file
    assert again.classes == ("forest", "river", "beach") and again.current() == {0: "river"}
    grown = LabelStore(path, label_set=("forest", "river", "beach", "desert"), task="landcover", n_items=10)
    assert grown.classes[-1] == "desert"
    with pytest.raises(CuratorError, match=r"\['beach'\] would be\s+dropped|would be dropped"):
        LabelStore(path, label_set=("forest", "river"), task="landcover", n_items=10)
    binary = LabelStore(path, n_items=10)  # another task in the same file is independent
    assert binary.classes == ("negative", "positive") and binary.current() == {}
    assert set(binary.tasks()) == {"default", "landcover"}
    nounsure = LabelStore(path, label_set=("a", "b"), task="strict", unsure=False, n_items=10)
    with pytest.raises(CuratorError, match="label 'unsure' is not in the label set"):
        nounsure.add(1, "unsure")


def test_clear_errors(store, forest_ws, tmp_path):
    with pytest.raises(CuratorError,
                       match=r"label 'maybe' is not in the label set \['negative', 'positive', 'unsure'\]"):
        store.add(1, "maybe")
    with pytest.raises(CuratorError, match=r"unknown chip id\(s\) \[1000\] \(ids are 0..999\)"):
        store.add(1000, "positive")
    with pytest.raises(CuratorError, match=r"unknown chip id\(s\) \[-1\]"):
        store.add_many([1, -1], "positive")
    assert store.current() == {}  # add_many is all or nothing
    with pytest.raises(CuratorError, match="chip ids must be integers"):
        store.add("abc", "positive")
    with pytest.raises(CuratorError, match="label source 'robot' is not one of"):
        store.add(1, "positive", source="robot")
    with pytest.raises(CuratorError, match="2 chip ids but 3 labels"):
        store.add_many([1, 2], ["positive"] * 3)
    with pytest.raises(CuratorError, match="needs at least two distinct labels"):
        LabelStore(tmp_path / "x.sqlite", label_set=("only",))
    with pytest.raises(CuratorError, match="'unsure' is built in"):
        LabelStore(tmp_path / "x.sqlite", label_set=("a", "unsure"))
    with pytest.raises(CuratorError, match="label_set must be a list"):
        LabelStore(tmp_path / "x.sqlite", label_set="ab")
    with pytest.raises(CuratorError, match="label name 'a/b' is not a plain name"):
        LabelStore(tmp_path / "x.sqlite", label_set=("a/b", "c"))
    ws_store = LabelStore(forest_ws)
    with pytest.raises(CuratorError, match=r"unknown chip id\(s\) \[100\] \(ids are 0..99\)"):
        ws_store.add(100, "positive")
    with pytest.raises(CuratorError, match="folder for the label store does not exist"):
        LabelStore(tmp_path / "nope" / "l.sqlite")
    bad = tmp_path / "corrupt.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CuratorError, match="is not a readable SQLite label store"):
        LabelStore(bad)
    assert bad.read_bytes() == b"this is not a database" * 100  # left untouched
    with pytest.raises(CuratorError, match="not pending in the queue"):
        store.queue_skip(5)


def test_queue_survives_reopen_and_is_never_consumed_by_reading(tmp_path):
    path = tmp_path / "l.sqlite"
    s = LabelStore(path, n_items=100)
    assert s.queue_add([5, 6, 7, 5], source="seed") == 3
    s.add(9, "negative")
    assert s.queue_add([9, 8]) == 1  # labelled chips are not queued again
    assert s.next_in_queue(2) == [5, 6] and s.next_in_queue(2) == [5, 6]
    s.queue_mark_shown(5)  # shown on screen, then the kernel dies before a label
    del s
    r = LabelStore(path, n_items=100)
    assert r.next_in_queue(10) == [5, 6, 7, 8] and r.queue_pending() == 4
    q = r.queue()
    assert q.loc[q.chip_id == 5, "shown"].notna().all() and set(q["source"]) == {"seed", "manual"}
    r.add(5, "positive")
    r.queue_skip(6)
    assert r.next_in_queue(10) == [7, 8, 6]
    assert r.queue_add([1, 2], front=True) == 2 and r.next_in_queue(2) == [1, 2]
    assert r.queue_drop([7]) == 1 and r.next_in_queue(10) == [1, 2, 8, 6]
    assert r.queue_drop() == 4 and r.next_in_queue() == []
    assert r.current() == {5: "positive", 9: "negative"}  # dropping never touches labels
    assert dict(zip(r.queue()["chip_id"], r.queue()["state"]))[5] == "labelled"


# ----------------------------------------------------------------------------- concurrency and crashes
def _writer(path: str, start: int, n: int, label: str, annotator: str) -> None:
    s = LabelStore(path, n_items=10_000, annotator=annotator, timeout=120)  # generous: the CI box is shared
    for i in range(start, start + n):
        s.add(i, label)
        if i % 10 == 0:  # interleave undos (of this writer's own label) with the other writers' adds
            assert s.undo(1, session=s.session) == [i]
            s.add(i, label)


def test_two_processes_write_concurrently_without_loss(tmp_path):
    path = str(tmp_path / "l.sqlite")
    LabelStore(path, n_items=10_000)  # create the schema once
    procs = [CTX.Process(target=_writer, args=(path, 0, 150, "positive", "alice")),
             CTX.Process(target=_writer, args=(path, 1000, 150, "negative", "bob"))]
    for p in procs:
        p.start()
    _writer(path, 5000, 60, "unsure", "kernel")  # the parent writes at the same time
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = LabelStore(path, n_items=10_000)
    cur = s.current()
    assert len(cur) == 360
    assert all(cur[i] == "positive" for i in range(150)) and all(cur[1000 + i] == "negative" for i in range(150))
    ev = s.events()
    assert (ev["kind"] == "undo").sum() == 15 + 15 + 6 and len(ev) == 360 + 2 * 36
    assert ev.groupby("annotator").size().to_dict() == {"alice": 180, "bob": 180, "kernel": 72}


def _hold_open_transaction(path: str, committed: int, ready) -> None:
    """Commit some labels, then die inside an add_many transaction that has written rows."""
    s = LabelStore(path, n_items=1000)
    for i in range(committed):
        s.add(i, "positive")
    inner = s._insert_label
    calls = {"n": 0}

    def slow_insert(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 50:
            ready.set()
            time.sleep(120)  # SIGKILLed here, mid-transaction
        return inner(*args, **kwargs)

    s._insert_label = slow_insert
    s.add_many(range(500, 600), "negative")


def test_sigkill_mid_transaction_loses_nothing_committed(tmp_path):
    path = str(tmp_path / "l.sqlite")
    ready = CTX.Event()
    p = CTX.Process(target=_hold_open_transaction, args=(path, 25, ready))
    p.start()
    assert ready.wait(60)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    s = LabelStore(path, n_items=1000, timeout=5)  # a short timeout: a stale lock would fail here
    assert s.current() == {i: "positive" for i in range(25)}  # committed: all there; uncommitted: none
    assert len(s.events()) == 25
    assert s._connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.add(999, "negative")  # the dead writer's lock is gone
    assert s.label_of(999) == "negative"


def _ack_writer(path: str, fd: int) -> None:
    s = LabelStore(path, n_items=1000)
    i = 0
    while True:
        seq = s.add(i % 1000, "positive" if i % 3 else "negative")
        os.write(fd, f"{seq} {i % 1000}\n".encode())  # acknowledged only after COMMIT returned
        i += 1


def test_sigkill_at_a_random_moment_keeps_every_acknowledged_label(tmp_path):
    path = str(tmp_path / "l.sqlite")
    LabelStore(path, n_items=1000)
    r, w = os.pipe()
    p = CTX.Process(target=_ack_writer, args=(path, w))
    p.start()
    os.close(w)
    time.sleep(1.5)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    acked = [tuple(map(int, line.split())) for line in data.decode().splitlines() if line.count(" ") == 1]
    assert len(acked) > 5
    ev = LabelStore(path, n_items=1000).events()
    stored = dict(zip(ev["seq"], ev["chip_id"]))
    assert all(stored.get(seq) == cid for seq, cid in acked)
    assert len(ev) in (len(acked), len(acked) + 1)  # at most the one in flight when killed


# ----------------------------------------------------------------------------- export
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_table_csv_parquet(forest_ws, tmp_path):
    s = LabelStore(forest_ws, task="export-table")
    s.add_many([0, 1, 2], ["positive", "negative", "unsure"])
    df = s.table()
    assert df["id"].tolist() == [0, 1] and set(df.columns) >= {"id", "label", "task", "source", "annotator",
                                                              "time", "key", "path", "origin", "ground_truth"}
    assert df["ground_truth"].isna().all()  # images sit at the folder root: no class folder, no truth
    assert Path(df["path"][0]).exists() and df["origin"][0] == df["path"][0]
    csv = s.export(tmp_path / "out" / "labels.csv")
    assert pd.read_csv(csv)["label"].tolist() == ["positive", "negative"]
    pq = s.export(tmp_path / "labels.parquet", include_unsure=True)
    assert pd.read_parquet(pq)["label"].tolist() == ["positive", "negative", "unsure"]
    with pytest.raises(CuratorError, match="cannot tell the export format of 'labels.txt'"):
        s.export(tmp_path / "labels.txt")


@pytest.mark.parametrize("mode", ["symlink", "copy", "hardlink"])
def test_export_tree_never_touches_sources(forest_ws, tmp_path, mode):
    s = LabelStore(forest_ws, task=f"tree-{mode}")
    ids = [0, 1, 2, 3]
    sources = [forest_ws.chip_path(i) for i in ids]
    before = [(p.stat().st_mtime_ns, _digest(p)) for p in sources]
    s.add_many(ids, ["positive", "positive", "negative", "unsure"])
    dest = tmp_path / "tree"
    if mode == "hardlink":  # shared data may sit on another file system: link to a workspace-local copy
        try:
            os.link(sources[0], tmp_path / "probe")
        except OSError:
            pytest.skip("hard links across these file systems are not possible here")  # pragma: no cover
    assert s.export_tree(dest, mode=mode) == {"positive": 2, "negative": 1}
    pos = sorted((dest / "positive").iterdir())
    assert [p.name.split("_")[0] for p in pos] == ["00000000", "00000001"]
    assert all(p.is_symlink() == (mode == "symlink") for p in pos)
    assert _digest(pos[0]) == _digest(sources[0])
    assert (dest / ".curator-export.json").exists() and not (dest / "unsure").exists()
    # relabel and export again: the stale entry goes, the new one appears, sources stay put
    s.add(1, "negative")
    assert s.export_tree(dest, mode=mode) == {"positive": 1, "negative": 2}
    assert len(list((dest / "positive").iterdir())) == 1 and len(list((dest / "negative").iterdir())) == 2
    assert [(p.stat().st_mtime_ns, _digest(p)) for p in sources] == before
    assert all(p.exists() for p in sources)


def test_export_tree_errors(forest_ws, tmp_path, store):
    s = LabelStore(forest_ws, task="tree-errors")
    s.add(0, "positive")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    with pytest.raises(CuratorError, match="is not empty and not an earlier curator export"):
        s.export_tree(busy)
    assert (busy / "mine.txt").read_text() == "keep me"
    with pytest.raises(CuratorError, match="export mode 'move' is not symlink, copy or hardlink"):
        s.export_tree(tmp_path / "t", mode="move")
    with pytest.raises(CuratorError, match="export_tree needs the workspace"):
        store.export_tree(tmp_path / "t")


def test_store_opens_from_workspace_folder_or_file(forest_ws):
    a = LabelStore(forest_ws.root, task="open")
    b = LabelStore(forest_ws.labels_path, task="open")
    assert a.path == b.path == forest_ws.labels_path and b.workspace is not None and b.n_items() == 100


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "l.sqlite"
    LabelStore(path, n_items=5).add(1, "positive")
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(CuratorError, match="has schema version 99, newer than this curator_widgets"):
        LabelStore(path, n_items=5)


def test_opening_a_known_task_needs_no_write_lock(tmp_path):
    path = tmp_path / "l.sqlite"
    LabelStore(path, n_items=5).add(1, "positive")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process is in the middle of a write
    try:
        t = time.perf_counter()
        s = LabelStore(path, n_items=5, timeout=1)
        assert s.current() == {1: "positive"} and time.perf_counter() - t < 1
        with pytest.raises(CuratorError, match="is busy .* for more than 1 s"):
            s.add(2, "negative")  # a writer that never finishes: a clear error after the timeout
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
