"""What the label store needs from a database: a connection per process, serialised write
transactions, reads, and the schema's migrations. SQLite and PostgreSQL implement it.

Store code writes SQL once with `?` placeholders; a backend's `sql()` turns it into its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import pandas as pd

from ..errors import CuratorError
from .schema import SCHEMA_VERSION, migration_statements

# A forked child must never close (or speak on) its parent's database handle: for SQLite closing
# any descriptor of the file drops the child's POSIX locks on it and SQLite then loses committed WAL
# frames; for PostgreSQL a close sends "terminate" on the parent's socket. So live backends are
# tracked, and a child parks their inherited connections here, unused and never closed.
_BACKENDS: "weakref.WeakSet[Backend]" = weakref.WeakSet()
_INHERITED: list[Any] = []


def _park_inherited_connections() -> None:
    for backend in list(_BACKENDS):
        if backend._con is not None:
            _INHERITED.append(backend._con)
            backend._con = None


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork
    os.register_at_fork(after_in_child=_park_inherited_connections)


class Tx:
    """One open write transaction: `execute` and `executemany` take the store's `?` SQL."""

    def __init__(self, backend: "Backend", con: Any):
        self.backend, self.con = backend, con

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self.con.execute(self.backend.sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Runs `sql` for each row; returns how many rows it changed in all."""
        cur = self.backend.cursor(self.con)
        cur.executemany(self.backend.sql(sql), [tuple(r) for r in rows])
        return max(int(cur.rowcount), 0)


class Backend(ABC):
    """A database the label store lives in; subclasses fill the dialect and the connection."""

    name = ""
    a_name = ""  # for messages: "an SQLite", "a PostgreSQL"
    blanks: dict[str, str] = {}

    def __init__(self, where: str, timeout: float, read_only: bool):
        self.where, self.timeout, self.read_only = where, float(timeout), read_only
        self._lock = threading.RLock()
        self._con: Any = None
        self._pid = -1

    # --- what a dialect provides
    def sql(self, text: str) -> str:
        return text

    def cursor(self, con: Any) -> Any:
        return con.cursor()

    @abstractmethod
    def _open(self) -> Any:
        """A new connection to the database."""

    def _close(self, con: Any) -> None:
        con.close()

    @abstractmethod
    def tables(self) -> set[str]:
        """The names of the tables the database holds."""

    @abstractmethod
    def _transaction(self, con: Any, serialise: "bool | tuple[str, int]") -> Iterator[None]:
        """A context manager: one transaction, serialised with other writers as `serialise` asks."""

    # --- shared
    def connection(self) -> Any:
        if self._con is None or self._pid != os.getpid():  # a forked child never reuses the parent's handle
            self._con, self._pid = self._open(), os.getpid()
            _BACKENDS.add(self)
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._close(self._con)
            self._con = None

    def __del__(self) -> None:
        con = getattr(self, "_con", None)
        if con is not None and getattr(self, "_pid", -1) == os.getpid():
            try:
                self._close(con)
            except Exception:
                pass

    @contextmanager
    def write(self, serialise: "bool | tuple[str, int]" = True) -> Iterator[Tx]:
        """One write transaction; `serialise` takes the store-wide writer lock first (as SQLite
        always does), so writers queue and never interleave a read-modify-write. `(task, chip)`
        (one chip's label) lets backends that can run writes to different chips side by side."""
        if self.read_only:
            raise CuratorError(f"label store {self.where} is open read-only (it or its folder is not writable)",
                               "open a writable copy of the workspace, or make the file and folder writable")
        with self._lock:
            con = self.connection()
            with self._transaction(con, serialise):
                yield Tx(self, con)

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return list(self.connection().execute(self.sql(sql), tuple(args)).fetchall())

    def read_frame(self, sql: str, args: Sequence[Any] = ()) -> pd.DataFrame:
        """A query's rows as a DataFrame with the query's column names."""
        with self._lock:
            cur = self.connection().execute(self.sql(sql), tuple(args))
            cols = [d[0] for d in cur.description]
            return pd.DataFrame.from_records(cur.fetchall(), columns=cols)

    # --- schema
    def stored_version(self) -> str | None:
        """The schema version the database holds, None for an empty one; refuses someone else's database."""
        tables = self.tables()
        row = self.read("SELECT value FROM meta WHERE key='schema_version'") if "meta" in tables else []
        if tables and not row:  # someone else's database: adding tables to it would damage it
            raise CuratorError(f"{self.where} is {self.a_name} database but not a curator label store "
                               f"(tables: {', '.join(sorted(tables)[:5])})",
                               "open a workspace's labels.sqlite, or pass a new database; it was left untouched")
        return row[0][0] if row else None

    def check_version(self, value: str) -> int:
        try:
            version = int(value)
        except (TypeError, ValueError):
            raise CuratorError(f"label store {self.where} has schema version {value!r}, which this curator_widgets "
                               f"does not know (it writes version {SCHEMA_VERSION})",
                               "the file was edited or written by another tool; restore it from a backup") from None
        if version > SCHEMA_VERSION:
            raise CuratorError(f"label store {self.where} has schema version {value}, newer than this "
                               f"curator_widgets (supports {SCHEMA_VERSION})",
                               "upgrade: pip install -U curator-widgets")
        return version

    def migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION (creating it when empty); a no-op, and no write lock, when current."""
        value = self.stored_version()
        if value is not None and self.check_version(value) == SCHEMA_VERSION:
            return
        if self.read_only:
            if value is None:
                raise CuratorError(f"{self.where} is empty: no label store to read", "label some chips first")
            return
        with self.write() as tx:
            rows = tx.execute("SELECT value FROM meta WHERE key='schema_version'").fetchall() \
                if "meta" in self.tables() else []
            have = self.check_version(rows[0][0]) if rows else 0
            for step in range(have + 1, SCHEMA_VERSION + 1):
                for stmt in migration_statements(step, self.blanks):
                    tx.execute(stmt)
            if rows:
                tx.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            else:
                tx.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
