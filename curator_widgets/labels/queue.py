"""The labelling queue: what to show next. Showing a chip never removes it, only labelling
does, so a crash loses nothing; a mixin of LabelStore over the same backend."""

from __future__ import annotations

import time as _time
from typing import Iterable

import pandas as pd

from ..errors import CuratorError
from .backend import Tx
from .schema import DONE, DROPPED, PENDING


class QueueMixin:
    """Queue methods of LabelStore (they use its task, id checks and write transactions)."""

    def _front(self, con: Tx) -> float:
        row = con.execute("SELECT MIN(position) FROM queue WHERE task=?", (self.task,)).fetchone()
        return float(row[0]) if row[0] is not None else 0.0

    def queue_add(self, chip_ids: Iterable[int], source: str = "manual", front: bool = False,
                  skip_labelled: bool = True) -> int:
        """Append chips to the labelling queue (or put them at its front); returns how many became pending.

        Chips already pending keep their place; chips with a training label (human, seed,
        oracle, import: TRAIN_SOURCES) are skipped unless `skip_labelled=False` (to review
        them again). A chip labelled only by the model (accepted predictions) is queued: an
        active loop selects it like any unlabelled chip, so a person must see it too.
        """
        ids = list(dict.fromkeys(self._check_ids(list(chip_ids)).tolist()))
        added = 0
        with self._write() as con:
            labelled = self._train_labelled(con, ids) if skip_labelled else set()
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
            con.executemany("INSERT INTO queue (task, chip_id, position, state, source, added, shown) "
                            "VALUES (?, ?, ?, 0, ?, ?, NULL) ON CONFLICT (task, chip_id) DO UPDATE SET "
                            "position=excluded.position, state=0, source=excluded.source, added=excluded.added, "
                            "shown=NULL",
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
            return con.executemany("UPDATE queue SET state=? WHERE task=? AND chip_id=? AND state=0", ids)

    def queue(self) -> pd.DataFrame:
        """The queue (pending, labelled and dropped entries) in order."""
        df = self._frame("SELECT chip_id, position, state, source, added, shown FROM queue WHERE task=? "
                         "ORDER BY position", (self.task,))
        df["state"] = df["state"].map({PENDING: "pending", DONE: "labelled", DROPPED: "dropped"})
        for col in ("added", "shown"):
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
        return df
