"""A label store on PostgreSQL (psycopg 3), for teams: many people, servers and hubs, one database.

Writes take a transaction-level advisory lock, the same one-writer-at-a-time rule SQLite's
write lock gives, so both backends run the same store code; a single label takes that lock
shared plus a lock on its chip, so people labelling different chips write side by side, and
claiming a queued chip takes no advisory lock but row locks (`FOR UPDATE SKIP LOCKED`). A dropped connection (a database
restart) is reopened on the next call, retrying for up to the store's timeout.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from ..errors import CuratorError, require
from .backend import Backend

WRITER_LOCK = 0x43555241  # "CURA": the advisory lock key every serialised writer takes


def _psycopg() -> Any:
    return require("psycopg", "a postgresql:// label store needs the psycopg driver, which is not installed",
                   "pip install 'curator-widgets[postgres]' (or psycopg[binary])")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresBackend(Backend):
    name = "PostgreSQL"
    a_name = "a PostgreSQL"
    blanks = {"serial": "BIGSERIAL PRIMARY KEY", "float": "DOUBLE PRECISION", "norowid": ""}

    def __init__(self, url: str, timeout: float, read_only: bool = False):
        super().__init__(redact(url), timeout, read_only)
        self.url = url
        self.pg = _psycopg()

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")  # the store's SQL holds no literal '?' or '%'

    def _open(self) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                con = self.pg.connect(self.url, autocommit=True, connect_timeout=max(1, int(min(self.timeout, 10))))
                con.execute(f"SET lock_timeout = {int(self.timeout * 1000)}")
                return con
            except self.pg.OperationalError as e:
                if time.monotonic() > deadline:
                    raise CuratorError(f"cannot reach the label database {self.where} ({str(e).strip()})",
                                       "check the URL, that the server runs and accepts this user; "
                                       "labels already written are safe in it") from None
                time.sleep(0.2)  # a restarting server: try again until the timeout

    def _close(self, con: Any) -> None:
        con.close()

    def connection(self) -> Any:
        if self._con is not None and (self._con.closed or self._con.broken):  # the server went away: reconnect
            self._con = None
        return super().connection()

    def _lost(self, con: Any) -> bool:
        """Whether `con` died (server restart, network): then it is dropped and the next call reconnects."""
        if con.broken or con.closed:
            if self._con is con:
                self._con = None
            return True
        return False

    @contextmanager
    def _transaction(self, con: Any, serialise: "bool | tuple[str, int]") -> Iterator[None]:
        try:
            with con.transaction():
                if isinstance(serialise, tuple):  # one chip: shared store lock + that chip's own lock
                    con.execute("SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(hashtext(%s), %s)",
                                (WRITER_LOCK, serialise[0], int(serialise[1])))
                elif serialise:
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
                yield
        except self.pg.errors.LockNotAvailable as e:
            raise CuratorError(f"label store {self.where} is busy ({str(e).strip()}) for more than "
                               f"{self.timeout:.0f} s", "another session holds the writer lock; close it or "
                               "open the store with a larger timeout") from None
        except self.pg.OperationalError as e:
            if not self._lost(con):
                raise
            raise CuratorError(f"lost the connection to the label database {self.where} during a write "
                               f"({str(e).strip()}); that write was not acknowledged",
                               "call again: the store reconnects (a restarting server is waited for up to the "
                               "store's timeout); acknowledged labels are safe") from None

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self._retry_read(super().read, sql, args)

    def read_frame(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._retry_read(super().read_frame, sql, args)

    def _retry_read(self, fn: Any, sql: str, args: Sequence[Any]) -> Any:
        """A read on a connection that died is asked once more on a new one (reads change nothing)."""
        try:
            return fn(sql, args)
        except self.pg.OperationalError:
            con = self._con
            if con is None or not self._lost(con):
                raise
            return fn(sql, args)

    def tables(self) -> set[str]:
        return {r[0] for r in self.read("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
