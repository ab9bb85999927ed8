"""The label store: append-only events, undo, queue, concurrent writers, crash safety, export."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
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
def store(labels_db) -> LabelStore:
    """A fresh store on each backend (SQLite file, PostgreSQL database): see conftest's labels_db."""
    return labels_db.open(n_items=1000, annotator="ann", session="s1")


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


def test_wal_mode_and_durable_settings(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite", n_items=1000)
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


def test_undo_only_touches_the_given_session(labels_db):
    a = labels_db.open(n_items=50, session="A")
    b = labels_db.open(n_items=50, session="B")
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


def test_multiclass_label_set_is_stored_and_can_grow(labels_db):
    s = labels_db.open(label_set=("forest", "river", "beach"), task="landcover", n_items=10)
    assert s.choices == ("forest", "river", "beach", "unsure") and not s.binary
    s.add(0, "river")
    again = labels_db.open(task="landcover", n_items=10)  # label set comes from the file
    assert again.classes == ("forest", "river", "beach") and again.current() == {0: "river"}
    grown = labels_db.open(label_set=("forest", "river", "beach", "desert"), task="landcover", n_items=10)
    assert grown.classes[-1] == "desert"
    with pytest.raises(CuratorError, match=r"\['beach'\] would be\s+dropped|would be dropped"):
        labels_db.open(label_set=("forest", "river"), task="landcover", n_items=10)
    binary = labels_db.open(n_items=10)  # another task in the same file is independent
    assert binary.classes == ("negative", "positive") and binary.current() == {}
    assert set(binary.tasks()) == {"default", "landcover"}
    nounsure = labels_db.open(label_set=("a", "b"), task="strict", unsure=False, n_items=10)
    with pytest.raises(CuratorError, match="label 'unsure' is not in the label set"):
        nounsure.add(1, "unsure")


def test_clear_errors(store, forest_ws, tmp_path, labels_db):
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
        labels_db.open(label_set=("only",))
    with pytest.raises(CuratorError, match="'unsure' is built in"):
        labels_db.open(label_set=("a", "unsure"))
    with pytest.raises(CuratorError, match="label_set must be a list"):
        labels_db.open(label_set="ab")
    with pytest.raises(CuratorError, match="label name 'a/b' is not a plain name"):
        labels_db.open(label_set=("a/b", "c"))
    ws_store = labels_db.open(forest_ws)
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


def test_queue_survives_reopen_and_is_never_consumed_by_reading(labels_db):
    s = labels_db.open(n_items=100)
    assert s.queue_add([5, 6, 7, 5], source="seed") == 3
    s.add(9, "negative")
    assert s.queue_add([9, 8]) == 1  # labelled chips are not queued again
    assert s.next_in_queue(2) == [5, 6] and s.next_in_queue(2) == [5, 6]
    s.queue_mark_shown(5)  # shown on screen, then the kernel dies before a label
    del s
    r = labels_db.open(n_items=100)
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


def test_model_labelled_chips_can_be_queued_and_shown(labels_db):
    """Accepted predictions (source 'model') are not what a person said: such a chip can be queued, is
    shown, and a human label takes it off the queue; chips with a training label are still skipped."""
    s = labels_db.open(n_items=100)
    s.add_many([3, 4], "positive", source="model")
    s.add(5, "negative")
    s.add(6, "negative", source="oracle")
    s.add(7, "positive", source="human")
    s.add(7, "negative", source="model")  # a model guess on top of a human label: still labelled
    assert s.queue_add([3, 4, 5, 6, 7]) == 2 and s.next_in_queue(10) == [3, 4]
    s.add(4, "negative", source="model")  # a newer model guess does not answer the queue either
    s.add(3, "negative")
    assert s.next_in_queue(10) == [4] and s.label_of(3) == "negative"
    assert s.queue_add([3, 4]) == 0  # 3 is human-labelled now, 4 is already pending


def test_undo_requeues_only_chips_left_without_a_label(labels_db):
    """Undoing a relabel restores the earlier label and leaves the chip off the queue (a loop would
    otherwise wait forever for a label it has); undoing the only label puts it back in front."""
    s = labels_db.open(n_items=100)
    s.queue_add([20, 21])
    s.add(20, "positive")
    s.add(20, "negative")  # relabel
    assert s.undo() == [20] and s.label_of(20) == "positive"
    assert s.next_in_queue(5) == [21] and s.queue_pending() == 1
    assert s.undo() == [20] and s.label_of(20) is None
    assert s.next_in_queue(5) == [20, 21] and s.queue_pending() == 2
    # a human label undone over an earlier model label: only the model guess is left, so it is asked again
    s.add(22, "positive", source="model")
    s.queue_add([22])
    s.add(22, "negative")
    assert s.undo() == [22] and s.label_of(22) == "positive" and s.next_in_queue(1) == [22]


# ----------------------------------------------------------------------------- concurrency and crashes
def _writer(where: dict, start: int, n: int, label: str, annotator: str) -> None:
    s = LabelStore(**where, n_items=10_000, annotator=annotator, timeout=120)  # generous: the CI box is shared
    for i in range(start, start + n):
        s.add(i, label)
        if i % 10 == 0:  # interleave undos (of this writer's own label) with the other writers' adds
            assert s.undo(1, session=s.session) == [i]
            s.add(i, label)


def test_two_processes_write_concurrently_without_loss(labels_db):
    path = labels_db.where()
    labels_db.open(n_items=10_000)  # create the schema once
    procs = [CTX.Process(target=_writer, args=(path, 0, 150, "positive", "alice")),
             CTX.Process(target=_writer, args=(path, 1000, 150, "negative", "bob"))]
    for p in procs:
        p.start()
    _writer(path, 5000, 60, "unsure", "kernel")  # the parent writes at the same time
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = labels_db.open(n_items=10_000)
    cur = s.current()
    assert len(cur) == 360
    assert all(cur[i] == "positive" for i in range(150)) and all(cur[1000 + i] == "negative" for i in range(150))
    ev = s.events()
    assert (ev["kind"] == "undo").sum() == 15 + 15 + 6 and len(ev) == 360 + 2 * 36
    assert ev.groupby("annotator").size().to_dict() == {"alice": 180, "bob": 180, "kernel": 72}


def _hold_open_transaction(where: dict, committed: int, ready) -> None:
    """Commit some labels, then die inside an add_many transaction that has written rows."""
    s = LabelStore(**where, n_items=1000)
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


def test_sigkill_mid_transaction_loses_nothing_committed(labels_db):
    path = labels_db.where()
    ready = CTX.Event()
    p = CTX.Process(target=_hold_open_transaction, args=(path, 25, ready))
    p.start()
    assert ready.wait(60)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    s = labels_db.open(n_items=1000, timeout=5)  # a short timeout: a stale lock would fail here
    assert s.current() == {i: "positive" for i in range(25)}  # committed: all there; uncommitted: none
    assert len(s.events()) == 25
    if labels_db.kind == "sqlite":
        assert s._connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.add(999, "negative")  # the dead writer's lock is gone
    assert s.label_of(999) == "negative"


def _ack_writer(where: dict, fd: int) -> None:
    s = LabelStore(**where, n_items=1000)
    i = 0
    while True:
        seq = s.add(i % 1000, "positive" if i % 3 else "negative")
        os.write(fd, f"{seq} {i % 1000}\n".encode())  # acknowledged only after COMMIT returned
        i += 1


def test_sigkill_at_a_random_moment_keeps_every_acknowledged_label(labels_db):
    path = labels_db.where()
    labels_db.open(n_items=1000)
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
    ev = labels_db.open(n_items=1000).events()
    stored = dict(zip(ev["seq"], ev["chip_id"]))
    assert all(stored.get(seq) == cid for seq, cid in acked)
    assert len(ev) in (len(acked), len(acked) + 1)  # at most the one in flight when killed


# ----------------------------------------------------------------------------- export
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_table_csv_parquet(forest_ws, tmp_path, labels_db):
    s = labels_db.open(forest_ws, task="export-table")
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
def test_export_tree_never_touches_sources(forest_ws, tmp_path, mode, labels_db):
    ids = [0, 1, 2, 3]
    if mode == "hardlink":  # shared data may sit on another file system: link to a workspace-local copy
        try:
            os.link(forest_ws.chip_path(0), tmp_path / "probe")
        except OSError:
            local = tmp_path / "images"
            local.mkdir()
            for i in ids:
                shutil.copy2(forest_ws.chip_path(i), local / forest_ws.chip_path(i).name)
            forest_ws = Workspace.create(tmp_path / "local-ws")
            forest_ws.ingest(FolderSource(local), size=None, progress=False)
    s = labels_db.open(forest_ws, task=f"tree-{mode}")
    sources = [forest_ws.chip_path(i) for i in ids]
    before = [(p.stat().st_mtime_ns, _digest(p)) for p in sources]
    s.add_many(ids, ["positive", "positive", "negative", "unsure"])
    dest = tmp_path / "tree"
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


def test_export_tree_errors(forest_ws, tmp_path, store, labels_db):
    s = labels_db.open(forest_ws, task="tree-errors")
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


@pytest.mark.parametrize("version, message", [
    ("99", "has schema version 99, newer than this curator_widgets"),
    ("1.5-beta", "schema version '1.5-beta', which this curator_widgets does not know")])
def test_newer_or_garbled_schema_is_refused(labels_db, version, message):
    labels_db.open(n_items=5).add(1, "positive")
    labels_db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    with pytest.raises(CuratorError, match=message):
        labels_db.open(n_items=5)


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


def test_postgres_writers_wait_for_the_writer_lock_and_readers_never_do(postgres_server):
    """PostgreSQL's twin of the test above: another session holds the advisory writer lock."""
    import psycopg

    from curator_widgets.labels.postgres_backend import WRITER_LOCK

    url = postgres_server.create_database()
    LabelStore(None, url=url, n_items=5).add(1, "positive")
    with psycopg.connect(url) as blocker:  # not autocommit: the lock lives until this transaction ends
        blocker.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
        t = time.perf_counter()
        s = LabelStore(None, url=url, n_items=5, timeout=1)
        assert s.current() == {1: "positive"} and time.perf_counter() - t < 1
        with pytest.raises(CuratorError, match="is busy .* for more than 1 s"):
            s.add(2, "negative")
        blocker.rollback()
    s.add(2, "negative")
    assert s.current() == {1: "positive", 2: "negative"}


def test_postgres_restart_the_store_reconnects_and_keeps_every_label(postgres_server):
    """A server restart closes every connection: a read is retried on a new one at once, a write that was
    cut off says so (not acknowledged) and the next call reconnects; nothing acknowledged is lost."""
    url = postgres_server.create_database()
    s = LabelStore(None, url=url, n_items=10)
    s.add(1, "positive")
    postgres_server.restart()
    assert s.current() == {1: "positive"}  # the read found the dead connection and asked again
    postgres_server.restart()
    with pytest.raises(CuratorError, match="lost the connection to the label database .* not acknowledged"):
        s.add(2, "negative")
    assert s.add(3, "negative") > 0  # the next call reconnects
    assert s.current() == {1: "positive", 3: "negative"} and "***" not in s.where


def test_database_urls_are_checked_and_never_shown_with_their_password(tmp_path, monkeypatch):
    from curator_widgets.labels.postgres_backend import redact

    assert redact("postgresql://ann:s3cret@db.example.org:5432/labels") == "postgresql://ann:***@db.example.org:5432/labels"
    with pytest.raises(CuratorError, match="'db/x' is not a postgresql:// URL"):
        LabelStore(None, url="mysql://ann:s3cret@db/x")
    with pytest.raises(CuratorError, match="needs a workspace, a .sqlite path or a database URL"):
        LabelStore(None)
    monkeypatch.setenv("CURATOR_LABELS_URL", "postgresql://ann:s3cret@127.0.0.1:1/none")
    with pytest.raises(CuratorError, match=r"cannot reach the label database postgresql://ann:\*\*\*@") as e:
        LabelStore(tmp_path / "l.sqlite", timeout=0.5)  # the variable wins over the file
    assert "s3cret" not in str(e.value) and not (tmp_path / "l.sqlite").exists()


def test_a_dropped_store_closes_its_connection_at_once(tmp_path):
    """sqlite3 connections sit in a reference cycle (3.11): left to the GC, a fork before it hands them on."""
    s = LabelStore(tmp_path / "l.sqlite", n_items=10)
    s.add(1, "positive")
    con = s._con
    del s
    with pytest.raises(sqlite3.ProgrammingError):
        con.execute("SELECT 1")


def _child_drops_inherited(store: LabelStore, con_id: int, out) -> None:
    import gc

    from curator_widgets import labels

    parked = [id(c) for c in labels._INHERITED]
    ok = store._con is None and con_id in parked
    del store
    gc.collect()
    labels._INHERITED[parked.index(con_id)].execute("SELECT 1")  # still open: the child never closed it
    store2 = LabelStore(out.get(), n_items=10)  # and a store opened in the child works on its own handle
    store2.add(2, "negative")
    out.put(ok)


def test_a_forked_child_never_closes_the_parents_connection(tmp_path):
    s = LabelStore(tmp_path / "l.sqlite", n_items=10)
    s.add(1, "positive")
    q = CTX.Queue()
    q.put(str(tmp_path / "l.sqlite"))
    p = CTX.Process(target=_child_drops_inherited, args=(s, id(s._con), q))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and q.get(timeout=5) is True
    s.add(3, "positive")  # the parent's handle still works, and nothing was lost
    assert s.current() == {1: "positive", 2: "negative", 3: "positive"}
