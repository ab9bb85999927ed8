"""The label store's core: append-only label events, the current label of each chip, undo.

Every action (a label, an undo) is a new row in `events`; nothing is updated in place or
deleted. The current label of a chip is its latest label event that no undo event points
at; a small `current` table mirrors that inside the same transaction so `counts()` and
`current()` stay fast while labelling. Each `add` is one durable transaction, on SQLite (the
embedded default) or PostgreSQL (`url="postgresql://..."`); see backend.py.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
import time as _time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import CuratorError
from .backend import Backend, Tx
from .export import ExportMixin
from .queue import QueueMixin
from .schema import BINARY, DONE, PENDING, SOURCES, TRAIN_SOURCES, UNSURE, latest_labels
from .team import TeamMixin

if TYPE_CHECKING:
    from ..workspace import Workspace

URL_ENV = "CURATOR_LABELS_URL"


class LabelStore(QueueMixin, TeamMixin, ExportMixin):
    """Labels for one task (label set) of a workspace, stored in `ws.labels_path` or a database.

    `LabelStore(ws)` is a binary store (negative / positive / unsure). A multi-class task:
    `LabelStore(ws, label_set=("forest", "river", "beach"), task="landcover")`. The label set
    is stored with the task, so later opens may omit it; passing a superset adds classes.
    `url="postgresql://..."` (or the CURATOR_LABELS_URL variable) keeps the labels in PostgreSQL;
    `per_chip=3` (stored with the task) hands each queued chip to three people (see team.py).
    """

    def __init__(self, ws_or_path: "Workspace | str | os.PathLike | None", label_set: Sequence[str] | None = None,
                 task: str = "default", unsure: bool = True, annotator: str | None = None,
                 session: str | None = None, n_items: int | None = None, timeout: float = 30.0,
                 read_only: bool | None = None, url: str | None = None, per_chip: int | None = None):
        """`read_only=True` only reads (status displays); None: read-only exactly when the store or
        its folder is not writable. A read-only open never creates a file, table or task."""
        from ..workspace import Workspace

        self.workspace: Workspace | None = None
        self.path: Path | None = None
        if isinstance(ws_or_path, Workspace):
            self.workspace = ws_or_path
            self.path = ws_or_path.labels_path
        elif ws_or_path is not None:
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
        self.url = url if url is not None else (os.environ.get(URL_ENV) or None)
        if self.url is None and self.path is None:
            raise CuratorError("a label store needs a workspace, a .sqlite path or a database URL",
                               "pass LabelStore(ws), LabelStore('labels.sqlite') or url='postgresql://...'")
        self.task = _check_name(task, "task")
        self.annotator = annotator or _default_annotator()
        self.session = session or uuid.uuid4().hex[:12]
        self.timeout = float(timeout)
        self._n_items = n_items
        self._lock = threading.RLock()
        self._backend = self._open_backend(read_only)
        self.read_only = self._backend.read_only
        self._backend.migrate()
        self.classes, self.unsure = self._init_task(label_set, unsure)
        self.per_chip = self._init_per_chip(per_chip)

    def _open_backend(self, read_only: bool | None) -> Backend:
        if self.url is not None:
            if not self.url.startswith(("postgresql://", "postgres://")):
                raise CuratorError(f"label store URL {self.url.split('@')[-1]!r} is not a postgresql:// URL",
                                   "pass url='postgresql://user@host/db', or no url for the workspace's SQLite file")
            from .postgres_backend import PostgresBackend

            return PostgresBackend(self.url, self.timeout, bool(read_only))
        from .sqlite_backend import SQLiteBackend

        assert self.path is not None
        return SQLiteBackend(self.path, self.timeout, self._must_read_only() if read_only is None else bool(read_only))

    def _must_read_only(self) -> bool:
        """SQLite in WAL mode writes beside the file: a store needs both it and its folder writable."""
        assert self.path is not None
        folder_ok = os.access(self.path.parent, os.W_OK | os.X_OK)
        if not self.path.exists():
            if not folder_ok:
                raise CuratorError(f"cannot create a label store in {self.path.parent}: the folder is read-only",
                                   "open a writable copy of the workspace, or make the folder writable")
            return False
        return not (folder_ok and os.access(self.path, os.W_OK))

    # ------------------------------------------------------------------ connection
    @property
    def backend(self) -> str:
        """Which database holds the labels: "SQLite" or "PostgreSQL"."""
        return self._backend.name

    @property
    def where(self) -> str:
        """The SQLite file or the database URL (without its password), for messages."""
        return self._backend.where

    @property
    def _con(self) -> Any:
        return self._backend._con

    def _connection(self) -> Any:
        return self._backend.connection()

    def close(self) -> None:
        """Close the database handle (reopened automatically on next use)."""
        self._backend.close()

    def __del__(self) -> None:
        # Python 3.11's sqlite3 connection sits in a reference cycle, so without this it stays open
        # until a garbage collection, and a fork in between hands it to the child (see backend._INHERITED)
        backend = getattr(self, "_backend", None)
        if backend is not None:
            backend.close()

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _write(self, serialise: "bool | tuple[str, int]" = True) -> Iterator[Tx]:
        with self._lock, self._backend.write(serialise) as tx:
            yield tx

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._backend.read(sql, args)

    def _frame(self, sql: str, args: Sequence[Any] = ()) -> pd.DataFrame:
        with self._lock:
            return self._backend.read_frame(sql, args)

    def _init_task(self, label_set: Sequence[str] | None, unsure: bool) -> tuple[tuple[str, ...], bool]:
        wanted = None if label_set is None else _check_label_set(label_set)
        row = self._read("SELECT label_set, unsure FROM tasks WHERE name=?", (self.task,))
        if row and (wanted is None or tuple(json.loads(row[0][0])) == wanted):
            return tuple(json.loads(row[0][0])), bool(row[0][1])  # known task: a read, no write lock
        if self.read_only:  # a status read of a task nobody labelled yet: nothing is created
            return (tuple(json.loads(row[0][0])) if row else wanted or BINARY), bool(row[0][1]) if row else unsure
        with self._write() as con:
            row = con.execute("SELECT label_set, unsure FROM tasks WHERE name=?", (self.task,)).fetchone()
            if row is None:
                classes = wanted or BINARY
                con.execute("INSERT INTO tasks (name, label_set, unsure, created) VALUES (?, ?, ?, ?)",
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

    def _init_per_chip(self, per_chip: int | None) -> int:
        """How many people label each queued chip: stored with the task, changed by passing it."""
        if per_chip is not None and (not isinstance(per_chip, (int, np.integer)) or per_chip < 1):
            raise CuratorError(f"per_chip must be a whole number >= 1, got {per_chip!r}",
                               "pass per_chip=1 (each chip once) or e.g. 3 (three people per chip)")
        try:
            row = self._read("SELECT per_chip FROM tasks WHERE name=?", (self.task,))
        except Exception:  # a read-only store of schema version 1 has no teams yet
            return 1
        stored = int(row[0][0]) if row else 1
        if per_chip is None or int(per_chip) == stored or self.read_only:
            return stored
        with self._write() as con:
            con.execute("UPDATE tasks SET per_chip=? WHERE name=?", (int(per_chip), self.task))
        return int(per_chip)

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
                from ..workspace import Workspace
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
        with self._write(serialise=(self.task, cid)) as con:
            return self._insert_label(con, cid, label, annotator, session, source, _time.time())

    def add_many(self, chip_ids: Iterable[int], labels: str | bool | Sequence[str | bool],
                 annotator: str | Sequence[str | None] | None = None, session: str | None = None,
                 source: str = "human") -> int:
        """Record many labels in one transaction (oracle answers, imports); all or nothing.

        `annotator` may be one name per label (imports keep who labelled each chip)."""
        ids = self._check_ids(list(chip_ids))
        labs = [labels] * len(ids) if isinstance(labels, (str, bool, np.bool_)) else list(labels)
        anns = [annotator] * len(ids) if annotator is None or isinstance(annotator, str) else list(annotator)
        if len(labs) != len(ids) or len(anns) != len(ids):
            raise CuratorError(f"{len(ids)} chip ids but {len(labs)} labels and {len(anns)} annotators",
                               "pass one label (and annotator) per id, or a single one for all")
        checked = [self._check_label(x) for x in labs]
        self._check_source(source)
        now = _time.time()
        with self._write() as con:
            for cid, lab, ann in zip(ids.tolist(), checked, anns):
                self._insert_label(con, cid, lab, ann, session, source, now)
        return len(ids)

    def _insert_label(self, con: Tx, cid: int, label: str, annotator: str | None,
                      session: str | None, source: str, now: float) -> int:
        seq = int(con.execute("INSERT INTO events (task, chip_id, kind, label, annotator, session, source, time) "
                              "VALUES (?, ?, 'label', ?, ?, ?, ?, ?) RETURNING seq",
                              (self.task, cid, label, annotator or self.annotator, session or self.session, source,
                               now)).fetchall()[0][0])
        _set_current(con, self.task, cid, label, seq, source)
        who = annotator or self.annotator
        if source == "human":  # the person's claim on the chip is answered (or a slot is taken for it)
            self._claim_answered(con, cid, who, now)
        # a model's guess answers nothing; one person per chip: a training label completes it
        if source in TRAIN_SOURCES and (self.per_chip <= 1 or self._complete(con, cid)):
            con.execute("UPDATE queue SET state=? WHERE task=? AND chip_id=? AND state=?",
                        (DONE, self.task, cid, PENDING))
        return seq

    def undo(self, n: int = 1, annotator: str | None = None, session: str | None = None,
             source: str | None = None) -> list[int]:
        """Undo the latest `n` label events (optionally only one annotator's / session's); returns their chip ids.

        An undo is itself an event, so the undone label stays in the history. A queued chip left
        without a training label goes back to the queue's front, so a labeler shows it again; one
        whose earlier label is restored (an undone relabel) stays labelled and off the queue.
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
            rows = con.execute(f"SELECT seq, chip_id, label, annotator, source FROM events e WHERE "
                               f"{' AND '.join(cond)} AND NOT EXISTS "
                               f"(SELECT 1 FROM events u WHERE u.undoes=e.seq) ORDER BY seq DESC LIMIT ?",
                               (*args, int(n))).fetchall()
            now = _time.time()
            front = self._front(con)
            for seq, cid, label, who, src in rows:
                con.execute("INSERT INTO events (task, chip_id, kind, label, undoes, annotator, session, source, time) "
                            "VALUES (?, ?, 'undo', ?, ?, ?, ?, 'human', ?)",
                            (self.task, cid, label, seq, annotator or self.annotator, session or self.session, now))
                self._refresh_current(con, cid)
                if src == "human":
                    self._claim_reopened(con, cid, who, now)
                if not self._complete(con, cid):
                    front -= 1.0
                    con.execute("UPDATE queue SET state=?, position=? WHERE task=? AND chip_id=?",
                                (PENDING, front, self.task, cid))
                undone.append(int(cid))
        return undone

    def _train_labelled(self, con: Tx, ids: Sequence[int], chunk: int = 500) -> set[int]:
        """Which of `ids` hold a live label from a training source (what a learner has seen); a chip
        whose only label is a model prediction is not among them, so it can still be asked."""
        marks = ",".join("?" * len(TRAIN_SOURCES))
        out: set[int] = set()
        for s in range(0, len(ids), chunk):
            part = [int(c) for c in ids[s:s + chunk]]
            rows = con.execute(
                f"SELECT DISTINCT chip_id FROM events e WHERE task=? AND kind='label' AND source IN ({marks}) "
                f"AND chip_id IN ({','.join('?' * len(part))}) "
                "AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes=e.seq)", (self.task, *TRAIN_SOURCES, *part))
            out.update(int(r[0]) for r in rows)
        return out

    def _refresh_current(self, con: Tx, cid: int) -> None:
        row = con.execute("SELECT seq, label, source FROM events e WHERE task=? AND chip_id=? AND kind='label' AND "
                          "NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes=e.seq) ORDER BY seq DESC LIMIT 1",
                          (self.task, cid)).fetchone()
        if row is None:
            con.execute("DELETE FROM current WHERE task=? AND chip_id=?", (self.task, cid))
        else:
            _set_current(con, self.task, cid, row[1], row[0], row[2])

    def rebuild_current(self) -> int:
        """Recompute the `current` mirror from the event log (it is derived data); returns labelled chips."""
        with self._write() as con:
            con.execute("DELETE FROM current WHERE task=?", (self.task,))
            con.execute("INSERT INTO current (task, chip_id, label, seq, source) " +
                        latest_labels("e.task, e.chip_id, e.label, e.seq, e.source"), (self.task,))
            return int(con.execute("SELECT COUNT(*) FROM current WHERE task=?", (self.task,)).fetchone()[0])

    # ------------------------------------------------------------------ reading
    def current(self, sources: Sequence[str] | None = None, include_unsure: bool = True) -> dict[int, str]:
        """chip id -> its current label. With `sources`, the latest label from those sources only
        (e.g. TRAIN_SOURCES, so model predictions never become training labels)."""
        ids, labels = self.current_arrays(sources=sources, include_unsure=include_unsure)
        return dict(zip(ids.tolist(), labels.tolist()))

    def current_arrays(self, sources: Sequence[str] | None = None,
                       include_unsure: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Current labels as (ids int64 sorted, labels object array), the form a classifier wants.
        A task with several people per chip (per_chip > 1) gives the team's consensus for human labels."""
        if sources is not None:
            for s in sources:
                self._check_source(s)
            team = self._team_training_labels(sources)
            if team is not None:
                ids, labels = team
                keep = labels != UNSURE if not include_unsure else np.ones(len(ids), bool)
                return ids[keep], labels[keep]
        ids, labels = self._latest_arrays(sources)
        if not include_unsure:
            keep = labels != UNSURE
            ids, labels = ids[keep], labels[keep]
        return ids, labels

    def _latest_arrays(self, sources: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        if sources is not None and not sources:
            return np.zeros(0, np.int64), np.array([], dtype=object)
        if sources is None:
            rows = self._read("SELECT chip_id, label FROM current WHERE task=? ORDER BY chip_id", (self.task,))
        else:
            marks = ",".join("?" * len(sources))
            rows = self._read(latest_labels("e.chip_id, e.label", f" AND e.source IN ({marks})") +
                              " ORDER BY e.chip_id", (self.task, *sources, *sources))
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
        df = self._frame(f"SELECT seq, task, chip_id, kind, label, undoes, annotator, session, source, time "
                         f"FROM events {where} ORDER BY seq", args)
        df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
        return df

    def tasks(self) -> dict[str, list[str]]:
        """Every task in this file and its label set."""
        return {name: json.loads(ls) for name, ls in self._read("SELECT name, label_set FROM tasks ORDER BY name")}


def has_labels(ws) -> bool:
    """Whether `ws` has a label store to read: its SQLite file, or a team database named by CURATOR_LABELS_URL
    (views check this before opening one, so a workspace with no labels yet creates nothing)."""
    return ws.labels_path.exists() or bool(os.environ.get(URL_ENV))


def _set_current(con: Tx, task: str, cid: int, label: str, seq: int, source: str) -> None:
    """Upsert one chip's row of the `current` mirror (one statement both dialects run)."""
    con.execute("INSERT INTO current (task, chip_id, label, seq, source) VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                "(task, chip_id) DO UPDATE SET label=excluded.label, seq=excluded.seq, source=excluded.source",
                (task, cid, label, seq, source))


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
