"""The embedded default: one SQLite file in WAL mode, each write an IMMEDIATE transaction.

Several writers (two labelers, a kernel and the CLI) take turns through SQLite's write lock
(`BEGIN IMMEDIATE` + busy timeout); each committed write survives power loss (synchronous=FULL).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import CuratorError
from .backend import Backend


class SQLiteBackend(Backend):
    name = "SQLite"
    a_name = "an SQLite"
    blanks = {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL", "norowid": "WITHOUT ROWID"}

    def __init__(self, path: Path, timeout: float, read_only: bool):
        super().__init__(str(path), timeout, read_only)
        self.path = path
        if read_only and not path.is_file():
            raise CuratorError(f"there is no label store at {path} to read",
                               "label some chips first (this opens it for reading only)")

    def _open(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                # in a read-only folder SQLite cannot make the -shm file a WAL read needs: read the
                # file as immutable, which is exact only when no committed WAL is left beside it
                wal = Path(f"{self.path}-wal")
                immutable = not os.access(self.path.parent, os.W_OK | os.X_OK) and \
                    not (wal.exists() and wal.stat().st_size > 0)
                uri = f"{self.path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
                con = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None,
                                      check_same_thread=False)
            else:
                con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            con.execute("PRAGMA synchronous=FULL")  # each committed label survives power loss too
        except sqlite3.DatabaseError as e:
            raise CuratorError(f"{self.path} is not a readable SQLite label store ({e})",
                               "check the file is a curator labels.sqlite and its folder is writable; "
                               "it was left untouched") from None
        return con

    @contextmanager
    def _transaction(self, con: sqlite3.Connection, serialise: "bool | tuple[str, int]") -> Iterator[None]:
        """IMMEDIATE takes the write lock up front, so concurrent writers queue, never fail mid-way."""
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise CuratorError(f"label store {self.path} is busy ({e}) for more than {self.timeout:.0f} s",
                               "another process holds the write lock; close it or open the store with a "
                               "larger timeout") from None
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def tables(self) -> set[str]:
        try:  # an existing store is only read on open: no write lock, so opening never waits on a writer
            return {r[0] for r in self.read("SELECT name FROM sqlite_master WHERE type='table'")
                    if not r[0].startswith("sqlite_")}
        except sqlite3.DatabaseError as e:
            raise CuratorError(f"{self.path} is not a readable SQLite label store ({e})",
                               "restore it from a backup or open a different file; it was left untouched") from None

    def migrate(self) -> None:
        """SQLite adds WAL mode (once, outside any transaction) to what every backend does."""
        value = self.stored_version()
        if not self.read_only:
            try:
                con = self.connection()
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as e:
                raise CuratorError(f"{self.path} is not a writable SQLite label store ({e})",
                                   "check the file and its folder are writable; it was left untouched") from None
        if value is None or not self.read_only:
            super().migrate()
        else:
            self.check_version(value)
