"""Follow a label store from a background thread, so a labeler sees what the loop or CLI queued.

SQLite's `PRAGMA data_version` changes when another connection commits: one cheap query per
tick, and the widget re-reads the queue only when something really changed. A store in
PostgreSQL is followed through `LabelStore.change_token()` instead (`TokenWatcher`).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable


class StoreWatcher:
    """Calls `on_change()` (from its own thread) after any other connection commits to `path`."""

    def __init__(self, path: Path | str, on_change: Callable[[], None], interval: float = 0.5):
        self.path = Path(path)
        self.on_change = on_change
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"curator-watch-{self.path.name}", daemon=True)
        self._thread.start()

    def _version(self, con: sqlite3.Connection) -> int:
        return int(con.execute("PRAGMA data_version").fetchone()[0])

    def _run(self) -> None:
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
            last = self._version(con)
        except sqlite3.Error:
            return  # no store file yet or unreadable: the widget still works, it just does not follow
        try:
            while not self._stop.wait(self.interval):
                try:
                    now = self._version(con)
                except sqlite3.Error:
                    continue
                if now != last:
                    last = now
                    try:
                        self.on_change()
                    except Exception:  # noqa: BLE001 - a failed refresh must not kill the watcher
                        pass
        finally:
            con.close()

    def stop(self) -> None:
        """End the thread (the widget was closed)."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class TokenWatcher:
    """Calls `on_change()` (from its own thread) whenever `token()` returns something new."""

    def __init__(self, token: Callable[[], Any], on_change: Callable[[], None], interval: float = 0.5):
        self.token, self.on_change, self.interval = token, on_change, float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="curator-watch-db", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = None
        while not self._stop.wait(self.interval):
            try:
                now = self.token()
                if last is not None and now != last:
                    self.on_change()
                last = now
            except Exception:  # noqa: BLE001 - a database restart or a failed refresh must not kill the watcher
                continue

    def stop(self) -> None:
        """End the thread (the widget was closed)."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
