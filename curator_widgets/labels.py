"""The label store: append-only label events in SQLite (WAL), so no label is ever lost.

Every action (a label, an undo) is a new row in `events`; nothing is updated in place or
deleted. The current label of a chip is its latest label event that no undo event points
at; a small `current` table mirrors that inside the same transaction so `counts()` and
`current()` stay fast while labelling. A persistent queue holds what should be shown
next: showing a chip never removes it, only labelling does, so a crash loses nothing.
Several writers (two labelers, a kernel and the CLI) take turns through SQLite's write
lock (`BEGIN IMMEDIATE` + busy timeout); each `add` is one durable transaction.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sqlite3
import threading
import time as _time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_json
from .errors import CuratorError

if TYPE_CHECKING:
    from .workspace import Workspace

SCHEMA_VERSION = 1
UNSURE = "unsure"
BINARY = ("negative", "positive")
SOURCES = ("human", "model", "seed", "oracle", "import")
TRAIN_SOURCES = ("human", "seed", "oracle", "import")  # labels a classifier may learn from
EXPORT_RECORD = ".curator-export.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    name TEXT PRIMARY KEY, label_set TEXT NOT NULL, unsure INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    chip_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'undo')),
    label TEXT,
    undoes INTEGER REFERENCES events(seq),
    annotator TEXT,
    session TEXT,
    source TEXT NOT NULL,
    time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_task_seq ON events(task, kind, seq);
CREATE INDEX IF NOT EXISTS events_chip ON events(task, chip_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS events_undoes ON events(undoes) WHERE undoes IS NOT NULL;
CREATE TABLE IF NOT EXISTS current (
    task TEXT NOT NULL, chip_id INTEGER NOT NULL, label TEXT NOT NULL, seq INTEGER NOT NULL,
    source TEXT NOT NULL, PRIMARY KEY (task, chip_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
    task TEXT NOT NULL, chip_id INTEGER NOT NULL, position REAL NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 labelled, 2 dropped
    source TEXT, added REAL NOT NULL, shown REAL, PRIMARY KEY (task, chip_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_order ON queue(task, state, position);
"""

PENDING, DONE, DROPPED = 0, 1, 2


class LabelStore:
    """Labels for one task (label set) of a workspace, stored in `ws.labels_path`.

    `LabelStore(ws)` is a binary store (negative / positive / unsure). A multi-class task:
    `LabelStore(ws, label_set=("forest", "river", "beach"), task="landcover")`. The label set
    is stored with the task, so later opens may omit it; passing a superset adds classes.
    """

    def __init__(self, ws_or_path: "Workspace | str | os.PathLike", label_set: Sequence[str] | None = None,
                 task: str = "default", unsure: bool = True, annotator: str | None = None,
                 session: str | None = None, n_items: int | None = None, timeout: float = 30.0):
        from .workspace import Workspace

        self.workspace: Workspace | None = None
        if isinstance(ws_or_path, Workspace):
            self.workspace = ws_or_path
            self.path = ws_or_path.labels_path
        else:
            p = Path(ws_or_path).expanduser()
            if p.is_dir():
                self.workspace = Workspace.open(p)
                self.path = self.workspace.labels_path
            else:
                self.path = p
                if (p.parent / "workspace.json").exists():
                    self.workspace = Workspace.open(p.parent)
                elif not p.parent.is_dir():
                    raise CuratorError(f"folder for the label store does not exist: {p.parent}",
                                       "pass a workspace (or its folder), or a .sqlite path in an existing folder")
        self.task = _check_name(task, "task")
        self.annotator = annotator or _default_annotator()
        self.session = session or uuid.uuid4().hex[:12]
        self.timeout = float(timeout)
        self._n_items = n_items
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._pid = -1
        self._init_db()
        self.classes, self.unsure = self._init_task(label_set, unsure)

    # ------------------------------------------------------------------ connection
    def _connection(self) -> sqlite3.Connection:
        if self._con is None or self._pid != os.getpid():  # a forked child never reuses the parent's handle
            try:
                con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
                con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
                con.execute("PRAGMA synchronous=FULL")  # each committed label survives power loss too
            except sqlite3.DatabaseError as e:
                raise CuratorError(f"{self.path} is not a readable SQLite label store ({e})",
                                   "check the file is a curator labels.sqlite and its folder is writable; "
                                   "it was left untouched") from None
            self._con, self._pid = con, os.getpid()
        return self._con

    def close(self) -> None:
        """Close the database handle (reopened automatically on next use)."""
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front so concurrent writers queue, never fail mid-way."""
        with self._lock:
            con = self._connection()
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise CuratorError(f"label store {self.path} is busy ({e}) for more than {self.timeout:.0f} s",
                                   "another process holds the write lock; close it or open the store with a "
                                   "larger timeout") from None
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def _init_db(self) -> None:
        with self._lock:
            con = self._connection()
            try:
                mode = con.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() != "wal":
                    con.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as e:
                raise CuratorError(f"{self.path} is not a readable SQLite label store ({e})",
                                   "restore it from a backup or open a different file; it was left untouched") from None
            try:  # an existing store is only read on open: no write lock, so opening never waits on a writer
                row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            except sqlite3.OperationalError:
                row = None
        if row is not None:
            self._check_version(row[0])
            return
        with self._write() as con:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                con.execute(stmt)
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            else:
                self._check_version(row[0])

    def _check_version(self, value: str) -> None:
        if int(value) > SCHEMA_VERSION:
            raise CuratorError(f"label store {self.path} has schema version {value}, newer than this "
                               f"curator_widgets (supports {SCHEMA_VERSION})",
                               "upgrade: pip install -U curator-widgets")

    def _init_task(self, label_set: Sequence[str] | None, unsure: bool) -> tuple[tuple[str, ...], bool]:
        wanted = None if label_set is None else _check_label_set(label_set)
        row = self._read("SELECT label_set, unsure FROM tasks WHERE name=?", (self.task,))
        if row and (wanted is None or tuple(json.loads(row[0][0])) == wanted):
            return tuple(json.loads(row[0][0])), bool(row[0][1])  # known task: a read, no write lock
        with self._write() as con:
            row = con.execute("SELECT label_set, unsure FROM tasks WHERE name=?", (self.task,)).fetchone()
            if row is None:
                classes = wanted or BINARY
                con.execute("INSERT INTO tasks VALUES (?, ?, ?, ?)",
                            (self.task, json.dumps(list(classes)), int(unsure), _time.time()))
                return tuple(classes), bool(unsure)
            stored = tuple(json.loads(row[0]))
            if wanted is None or wanted == stored:
                return stored, bool(row[1])
            missing = [c for c in stored if c not in wanted]
            if missing:
                raise CuratorError(f"task {self.task!r} already has label set {list(stored)}; {missing} would be "
                                   f"dropped by label_set={list(wanted)}",
                                   "omit label_set to use the stored one, pass a superset to add classes, "
                                   "or use a new task name")
            merged = stored + tuple(c for c in wanted if c not in stored)
            con.execute("UPDATE tasks SET label_set=? WHERE name=?", (json.dumps(list(merged)), self.task))
            return merged, bool(row[1])

    # ------------------------------------------------------------------ validation
    @property
    def choices(self) -> tuple[str, ...]:
        """Every label `add` accepts: the classes, then "unsure" when enabled."""
        return self.classes + ((UNSURE,) if self.unsure else ())

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    def _check_label(self, label: Any) -> str:
        if isinstance(label, (bool, np.bool_)) and self.binary:
            return self.classes[int(label)]
        if isinstance(label, str) and label in self.choices:
            return label
        raise CuratorError(f"label {label!r} is not in the label set {list(self.choices)} of task {self.task!r}",
                           f"use one of {list(self.choices)}, or open the store with a label_set that includes it")

    def n_items(self, refresh: bool = False) -> int | None:
        """How many chips labels may refer to (the workspace size), or None when unknown."""
        if self.workspace is not None:
            if refresh:
                from .workspace import Workspace
                self.workspace = Workspace.open(self.workspace.root)
            return len(self.workspace)
        return self._n_items

    def _check_ids(self, ids: Any) -> np.ndarray:
        arr = np.asarray(ids).reshape(-1)
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        if arr.size and arr.dtype.kind not in "iu":
            raise CuratorError(f"chip ids must be integers, got {arr[:3].tolist()}",
                               "pass manifest ids (ws.manifest['id']), e.g. store.add(12, 'positive')")
        arr = arr.astype(np.int64)
        n = self.n_items()
        bad = arr[(arr < 0) | ((arr >= n) if n is not None else False)]
        if bad.size and n is not None:
            n = self.n_items(refresh=True)  # the workspace may have grown since we opened it
            bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            where = f"ids are 0..{n - 1}" if n is not None else "ids are non-negative"
            raise CuratorError(f"unknown chip id(s) {bad[:5].tolist()} ({where})",
                               "label only chips in this workspace: use ids from ws.manifest['id']")
        return arr

    @staticmethod
    def _check_source(source: str) -> str:
        if source not in SOURCES:
            raise CuratorError(f"label source {source!r} is not one of {list(SOURCES)}",
                               "use 'human' for people, 'oracle' for simulated labels, 'model' for predictions")
        return source

    # ------------------------------------------------------------------ writing
    def add(self, chip_id: int, label: str | bool, annotator: str | None = None, session: str | None = None,
            source: str = "human") -> int:
        """Record one label (one durable transaction); returns the event's sequence number."""
        cid = int(self._check_ids([chip_id])[0])
        label = self._check_label(label)
        self._check_source(source)
        with self._write() as con:
            return self._insert_label(con, cid, label, annotator, session, source, _time.time())

    def add_many(self, chip_ids: Iterable[int], labels: str | bool | Sequence[str | bool],
                 annotator: str | None = None, session: str | None = None, source: str = "human") -> int:
        """Record many labels in one transaction (oracle answers, imports); all or nothing."""
        ids = self._check_ids(list(chip_ids))
        labs = [labels] * len(ids) if isinstance(labels, (str, bool, np.bool_)) else list(labels)
        if len(labs) != len(ids):
            raise CuratorError(f"{len(ids)} chip ids but {len(labs)} labels",
                               "pass one label per id, or a single label for all")
        checked = [self._check_label(x) for x in labs]
        self._check_source(source)
        now = _time.time()
        with self._write() as con:
            for cid, lab in zip(ids.tolist(), checked):
                self._insert_label(con, cid, lab, annotator, session, source, now)
        return len(ids)

    def _insert_label(self, con: sqlite3.Connection, cid: int, label: str, annotator: str | None,
                      session: str | None, source: str, now: float) -> int:
        cur = con.execute("INSERT INTO events (task, chip_id, kind, label, annotator, session, source, time) "
                          "VALUES (?, ?, 'label', ?, ?, ?, ?, ?)",
                          (self.task, cid, label, annotator or self.annotator, session or self.session, source, now))
        seq = int(cur.lastrowid)
        con.execute("INSERT OR REPLACE INTO current VALUES (?, ?, ?, ?, ?)", (self.task, cid, label, seq, source))
        con.execute("UPDATE queue SET state=? WHERE task=? AND chip_id=? AND state=?", (DONE, self.task, cid, PENDING))
        return seq

    def undo(self, n: int = 1, annotator: str | None = None, session: str | None = None,
             source: str | None = None) -> list[int]:
        """Undo the latest `n` label events (optionally only one annotator's / session's); returns their chip ids.

        An undo is itself an event, so the undone label stays in the history. A chip that
        came from the queue goes back to its front, so a labeler shows it again.
        """
        if int(n) < 1:
            raise CuratorError(f"undo needs n >= 1, got {n}", "pass how many of the latest labels to undo")
        cond, args = ["e.task=?", "e.kind='label'"], [self.task]
        for col, val in (("annotator", annotator), ("session", session), ("source", source)):
            if val is not None:
                cond.append(f"e.{col}=?")
                args.append(val)
        undone: list[int] = []
        with self._write() as con:
            rows = con.execute(f"SELECT seq, chip_id, label FROM events e WHERE {' AND '.join(cond)} AND NOT EXISTS "
                               f"(SELECT 1 FROM events u WHERE u.undoes=e.seq) ORDER BY seq DESC LIMIT ?",
                               (*args, int(n))).fetchall()
            now = _time.time()
            front = self._front(con)
            for seq, cid, label in rows:
                con.execute("INSERT INTO events (task, chip_id, kind, label, undoes, annotator, session, source, time) "
                            "VALUES (?, ?, 'undo', ?, ?, ?, ?, 'human', ?)",
                            (self.task, cid, label, seq, annotator or self.annotator, session or self.session, now))
                self._refresh_current(con, cid)
                front -= 1.0
                con.execute("UPDATE queue SET state=?, position=? WHERE task=? AND chip_id=?",
                            (PENDING, front, self.task, cid))
                undone.append(int(cid))
        return undone

    def _refresh_current(self, con: sqlite3.Connection, cid: int) -> None:
        row = con.execute("SELECT seq, label, source FROM events e WHERE task=? AND chip_id=? AND kind='label' AND "
                          "NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes=e.seq) ORDER BY seq DESC LIMIT 1",
                          (self.task, cid)).fetchone()
        if row is None:
            con.execute("DELETE FROM current WHERE task=? AND chip_id=?", (self.task, cid))
        else:
            con.execute("INSERT OR REPLACE INTO current VALUES (?, ?, ?, ?, ?)",
                        (self.task, cid, row[1], row[0], row[2]))

    def rebuild_current(self) -> int:
        """Recompute the `current` mirror from the event log (it is derived data); returns labelled chips."""
        with self._write() as con:
            con.execute("DELETE FROM current WHERE task=?", (self.task,))
            con.execute("INSERT INTO current SELECT task, chip_id, label, seq, source FROM events e WHERE task=? AND "
                        "kind='label' AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes=e.seq) AND seq = "
                        "(SELECT MAX(f.seq) FROM events f WHERE f.task=e.task AND f.chip_id=e.chip_id AND "
                        "f.kind='label' AND NOT EXISTS (SELECT 1 FROM events v WHERE v.undoes=f.seq))", (self.task,))
            return int(con.execute("SELECT COUNT(*) FROM current WHERE task=?", (self.task,)).fetchone()[0])

    # ------------------------------------------------------------------ reading
    def current(self, sources: Sequence[str] | None = None, include_unsure: bool = True) -> dict[int, str]:
        """chip id -> its current label. With `sources`, the latest label from those sources only
        (e.g. TRAIN_SOURCES, so model predictions never become training labels)."""
        ids, labels = self.current_arrays(sources=sources, include_unsure=include_unsure)
        return dict(zip(ids.tolist(), labels.tolist()))

    def current_arrays(self, sources: Sequence[str] | None = None,
                       include_unsure: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Current labels as (ids int64 sorted, labels object array), the form a classifier wants."""
        if sources is None:
            rows = self._read("SELECT chip_id, label FROM current WHERE task=? ORDER BY chip_id", (self.task,))
        else:
            for s in sources:
                self._check_source(s)
            marks = ",".join("?" * len(sources))
            rows = self._read(
                f"SELECT chip_id, label, MAX(seq) FROM events e WHERE task=? AND kind='label' AND source IN ({marks}) "
                f"AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes=e.seq) GROUP BY chip_id ORDER BY chip_id",
                (self.task, *sources))
        if not include_unsure:
            rows = [r for r in rows if r[1] != UNSURE]
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        labels = np.array([r[1] for r in rows], dtype=object)
        return ids, labels

    def label_of(self, chip_id: int) -> str | None:
        """The current label of one chip, or None."""
        row = self._read("SELECT label FROM current WHERE task=? AND chip_id=?", (self.task, int(chip_id)))
        return row[0][0] if row else None

    def counts(self) -> dict[str, int]:
        """Labelled chips per label (every choice present, zeros included)."""
        out = {c: 0 for c in self.choices}
        for label, n in self._read("SELECT label, COUNT(*) FROM current WHERE task=? GROUP BY label", (self.task,)):
            out[label] = int(n)
        return out

    def __len__(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM current WHERE task=?", (self.task,))[0][0])

    def events(self, chip_id: int | None = None, all_tasks: bool = False) -> pd.DataFrame:
        """The full, append-only history (labels and undos), oldest first; times as UTC datetimes."""
        cond, args = ([], []) if all_tasks else (["task=?"], [self.task])
        if chip_id is not None:
            cond.append("chip_id=?")
            args.append(int(chip_id))
        where = f"WHERE {' AND '.join(cond)}" if cond else ""
        with self._lock:
            df = pd.read_sql_query(f"SELECT * FROM events {where} ORDER BY seq", self._connection(), params=args)
        df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
        return df

    def tasks(self) -> dict[str, list[str]]:
        """Every task in this file and its label set."""
        return {name: json.loads(ls) for name, ls in self._read("SELECT name, label_set FROM tasks ORDER BY name")}

    # ------------------------------------------------------------------ queue
    def _front(self, con: sqlite3.Connection) -> float:
        row = con.execute("SELECT MIN(position) FROM queue WHERE task=?", (self.task,)).fetchone()
        return float(row[0]) if row[0] is not None else 0.0

    def queue_add(self, chip_ids: Iterable[int], source: str = "manual", front: bool = False,
                  skip_labelled: bool = True) -> int:
        """Append chips to the labelling queue (or put them at its front); returns how many became pending.

        Chips already pending keep their place; labelled chips are skipped unless
        `skip_labelled=False` (to review them again).
        """
        ids = list(dict.fromkeys(self._check_ids(list(chip_ids)).tolist()))
        added = 0
        with self._write() as con:
            labelled = {r[0] for r in con.execute("SELECT chip_id FROM current WHERE task=?", (self.task,))} \
                if skip_labelled else set()
            state = dict(con.execute("SELECT chip_id, state FROM queue WHERE task=?", (self.task,)).fetchall())
            todo = [c for c in ids if c not in labelled and state.get(c) != PENDING]
            if not todo:
                return 0
            if front:
                start = self._front(con) - len(todo)
            else:
                row = con.execute("SELECT MAX(position) FROM queue WHERE task=?", (self.task,)).fetchone()
                start = (float(row[0]) + 1.0) if row[0] is not None else 0.0
            now = _time.time()
            con.executemany("INSERT OR REPLACE INTO queue (task, chip_id, position, state, source, added, shown) "
                            "VALUES (?, ?, ?, 0, ?, ?, NULL)",
                            [(self.task, c, start + i, source, now) for i, c in enumerate(todo)])
            added = len(todo)
        return added

    def next_in_queue(self, n: int = 1) -> list[int]:
        """The next `n` pending chips, in order. Reading never consumes: only a label does."""
        rows = self._read("SELECT chip_id FROM queue WHERE task=? AND state=0 ORDER BY position LIMIT ?",
                          (self.task, int(n)))
        return [int(r[0]) for r in rows]

    def queue_pending(self) -> int:
        """How many queued chips still wait for a label."""
        return int(self._read("SELECT COUNT(*) FROM queue WHERE task=? AND state=0", (self.task,))[0][0])

    def queue_mark_shown(self, chip_id: int) -> None:
        """Note that a chip was put on screen (it stays pending until labelled)."""
        with self._write() as con:
            con.execute("UPDATE queue SET shown=? WHERE task=? AND chip_id=?", (_time.time(), self.task, int(chip_id)))

    def queue_skip(self, chip_id: int) -> None:
        """Move a pending chip to the back of the queue without labelling it."""
        with self._write() as con:
            row = con.execute("SELECT MAX(position) FROM queue WHERE task=?", (self.task,)).fetchone()
            cur = con.execute("UPDATE queue SET position=? WHERE task=? AND chip_id=? AND state=0",
                              ((row[0] or 0.0) + 1.0, self.task, int(chip_id)))
            if cur.rowcount == 0:
                raise CuratorError(f"chip {chip_id} is not pending in the queue of task {self.task!r}",
                                   "skip only chips returned by next_in_queue()")

    def queue_drop(self, chip_ids: Iterable[int] | None = None) -> int:
        """Take pending chips (all when None) off the queue; labels are untouched. Returns how many."""
        with self._write() as con:
            if chip_ids is None:
                cur = con.execute("UPDATE queue SET state=? WHERE task=? AND state=0", (DROPPED, self.task))
                return int(cur.rowcount)
            ids = [(DROPPED, self.task, int(c)) for c in self._check_ids(list(chip_ids))]
            before = con.total_changes
            con.executemany("UPDATE queue SET state=? WHERE task=? AND chip_id=? AND state=0", ids)
            return int(con.total_changes - before)

    def queue(self) -> pd.DataFrame:
        """The queue (pending, labelled and dropped entries) in order."""
        with self._lock:
            df = pd.read_sql_query("SELECT chip_id, position, state, source, added, shown FROM queue WHERE task=? "
                                   "ORDER BY position", self._connection(), params=(self.task,))
        df["state"] = df["state"].map({PENDING: "pending", DONE: "labelled", DROPPED: "dropped"})
        for col in ("added", "shown"):
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
        return df

    # ------------------------------------------------------------------ export
    def table(self, sources: Sequence[str] | None = None, include_unsure: bool = False) -> pd.DataFrame:
        """The curated set: one row per labelled chip with its label, who/when/how, and manifest paths."""
        cond = "" if sources is None else f" AND e.source IN ({','.join('?' * len(sources))})"
        with self._lock:
            df = pd.read_sql_query(
                "SELECT e.chip_id AS id, e.label, e.source, e.annotator, e.session, e.time FROM events e WHERE "
                f"e.task=? AND e.kind='label'{cond} AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes=e.seq) "
                "AND e.seq = (SELECT MAX(f.seq) FROM events f WHERE f.task=e.task AND f.chip_id=e.chip_id AND "
                f"f.kind='label'{cond.replace('e.source', 'f.source')} AND NOT EXISTS (SELECT 1 FROM events v "
                "WHERE v.undoes=f.seq)) ORDER BY e.chip_id",
                self._connection(), params=(self.task, *(sources or ()), *(sources or ())))
        if not include_unsure:
            df = df[df["label"] != UNSURE].reset_index(drop=True)
        df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
        df.insert(2, "task", self.task)
        if self.workspace is not None and len(df):
            man = self.workspace.manifest
            rows = man.iloc[df["id"].to_numpy()]
            df["key"] = rows["key"].to_numpy()
            df["path"] = [str(self.workspace.resolve(p)) for p in rows["path"]]
            df["origin"] = rows["origin"].to_numpy()
            df["ground_truth"] = rows["label"].to_numpy()
        return df

    def export(self, path: str | os.PathLike, format: str | None = None, sources: Sequence[str] | None = None,
               include_unsure: bool = False) -> Path:
        """Write the curated set to CSV or Parquet (by suffix or `format`), atomically."""
        path = Path(path).expanduser()
        fmt = (format or path.suffix.lstrip(".")).lower()
        if fmt not in ("csv", "parquet"):
            raise CuratorError(f"cannot tell the export format of {path.name!r}",
                               "use a .csv or .parquet file name, or pass format='csv' / 'parquet'")
        df = self.table(sources=sources, include_unsure=include_unsure)
        with atomic_path(path, suffix="." + fmt) as tmp:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False)
        return path

    def export_tree(self, dest: str | os.PathLike, mode: str = "symlink", labels: Sequence[str] | None = None,
                    sources: Sequence[str] | None = None, include_unsure: bool = False) -> dict[str, int]:
        """Lay the curated set out as dest/<label>/<id>_<name> links or copies; sources are never touched.

        `dest` must be new, empty, or an earlier export (it holds `.curator-export.json`);
        re-exporting updates it in place, removing only entries the earlier export made.
        """
        if self.workspace is None:
            raise CuratorError("export_tree needs the workspace to find each chip's image",
                               "open the store with LabelStore(ws) or LabelStore('path/to/workspace')")
        if mode not in ("symlink", "copy", "hardlink"):
            raise CuratorError(f"export mode {mode!r} is not symlink, copy or hardlink",
                               "use mode='symlink' (no extra space) or 'copy' (portable)")
        dest = Path(dest).expanduser().absolute()
        record_path = dest / EXPORT_RECORD
        previous: dict[str, str] = {}
        if dest.exists():
            if not dest.is_dir():
                raise CuratorError(f"export destination {dest} is a file", "pass a folder path")
            if record_path.exists():
                previous = json.loads(record_path.read_text()).get("entries", {})
            elif any(dest.iterdir()):
                raise CuratorError(f"export destination {dest} is not empty and not an earlier curator export",
                                   "choose a new or empty folder so nothing there is overwritten")
        df = self.table(sources=sources, include_unsure=include_unsure)
        if labels is not None:
            for lab in labels:
                self._check_label(lab)
            df = df[df["label"].isin(list(labels))]
        entries: dict[str, str] = {}
        counts: dict[str, int] = {}
        for cid, label, src in zip(df["id"].tolist(), df["label"].tolist(), df["path"].tolist()):
            rel = f"{label}/{int(cid):08d}_{Path(src).name}"
            entries[rel] = src
            counts[label] = counts.get(label, 0) + 1
            target = dest / rel
            if previous.get(rel) == src and (target.is_symlink() or target.exists()):
                continue
            if not Path(src).exists():
                raise CuratorError(f"image of chip {cid} is missing: {src}",
                                   "restore the file (chips must stay where the manifest says) and export again")
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(Path(src), target, mode)
        for rel, src in previous.items():  # entries of the earlier export that are no longer in the set
            if rel in entries:
                continue
            old = dest / rel
            if old.is_symlink() or (old.is_file() and os.path.realpath(old) != os.path.realpath(src)):
                old.unlink()  # our own link or copy; a path that is the source itself is never removed
        write_json(record_path, {"task": self.task, "mode": mode, "workspace": str(self.workspace.root),
                                 "time": _time.time(), "entries": entries})
        return counts


def _place(src: Path, target: Path, mode: str) -> None:
    """Create a link or copy at `target` atomically (temp name + rename); `src` is only read."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if mode == "symlink":
            os.symlink(os.path.realpath(src), tmp)
        elif mode == "hardlink":
            os.link(src, tmp)
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, target)
    except OSError as e:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        raise CuratorError(f"cannot {mode} {src} -> {target}: {e}",
                           "use mode='copy' across file systems, or check the destination is writable") from None


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\\n\r\t") or name.startswith("."):
        raise CuratorError(f"{what} name {name!r} is not a plain name",
                           "use letters, digits, spaces, '-' or '_' (it becomes a folder name on export)")
    return name


def _check_label_set(label_set: Sequence[str]) -> tuple[str, ...]:
    if isinstance(label_set, str):
        raise CuratorError(f"label_set must be a list of labels, got the string {label_set!r}",
                           "pass e.g. label_set=('negative', 'positive')")
    labels = tuple(label_set)
    for lab in labels:
        _check_name(lab, "label")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise CuratorError(f"label set {list(labels)} needs at least two distinct labels",
                           "pass e.g. ('negative', 'positive') or ('forest', 'river', 'beach')")
    if UNSURE in labels:
        raise CuratorError(f"{UNSURE!r} is built in and cannot be a class",
                           "leave it out; pass unsure=False to disable it")
    return labels


def _default_annotator() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
