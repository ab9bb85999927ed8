"""Stopping a notebook cleanly when a person still has chips to label.

Run All by a person reaches the active-learning step before anyone labelled the seed set; the
step would fail with a traceback. Instead the cell stops with one line that says what to do, and
Run All stops there too (an exception is the only way a cell can stop it).
"""

from __future__ import annotations

from typing import Any


class LabelsPending(Exception):
    """Chips wait in the labeler: shown in the notebook as one line, not a traceback."""

    def __init__(self, n: int, where: str = "the labeler above"):
        self.n = int(n)
        super().__init__(f"label these {self.n} chips in {where}, then run the next cell "
                         "(Run All stops here until they are labelled)")

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [str(self)]


def stop_until_labelled(store: Any, where: str = "the labeler above") -> None:
    """Raise LabelsPending while the store's queue still holds chips nobody labelled."""
    n = int(store.queue_pending())
    if n:
        raise LabelsPending(n, where)
