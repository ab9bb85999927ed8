"""SwipeLabeler: label chips one at a time with arrow keys, digits, buttons or swipes.

Every decision goes to the workspace's LabelStore (SQLite, one transaction per label) the
moment it arrives, and the queue lives in the same store, so a closed tab or a restarted
kernel loses nothing: the next SwipeLabeler on the same workspace resumes where this one was.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np
import traitlets

from ..errors import CuratorError
from ._base import CuratorWidget, ThumbnailMixin, thumb_traits


class SwipeLabeler(ThumbnailMixin, CuratorWidget):
    """One big image card; ← negative, → positive, ↓ unsure, digits for classes, Backspace/Ctrl+Z undo.

    >>> lab = SwipeLabeler(ws, ids=seed_ids)          # binary task, queue = seed set
    >>> lab = SwipeLabeler(ws, ids=ids, label_set=("forest", "river", "beach"), task="landcover")
    """

    _bundle = "swipe_labeler"

    upcoming = traitlets.List(traitlets.Int()).tag(sync=True)
    classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    unsure = traitlets.Bool(True).tag(sync=True)
    counts = traitlets.Dict().tag(sync=True)
    remaining = traitlets.Int(0).tag(sync=True)
    done = traitlets.Int(0).tag(sync=True)
    last = traitlets.Dict().tag(sync=True)
    #: per browser view, the number of the last action processed (the view replays newer ones)
    acks = traitlets.Dict().tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    image_size = traitlets.Int(512).tag(sync=True)
    prefetch = traitlets.Int(6).tag(sync=True)
    autofocus = traitlets.Bool(True).tag(sync=True)
    thumb_url = traitlets.Unicode("").tag(sync=True)
    workspace_path = traitlets.Unicode("").tag(sync=True)

    def __init__(self, workspace: Any, ids: Iterable[int] | None = None, label_set: Sequence[str] | None = None,
                 task: str = "default", store: Any = None, annotator: str | None = None, front: bool = True,
                 source: str = "widget", title: str = "", **kwargs: Any):
        from ..labels import LabelStore
        from ..workspace import Workspace

        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self.workspace = ws
        self.store = store if store is not None else LabelStore(ws, label_set=label_set, task=task, annotator=annotator)
        self._callbacks: list[Callable[[dict], None]] = []
        super().__init__(classes=list(self.store.classes), unsure=bool(self.store.unsure), **thumb_traits(ws),
                         title=title or f"Label: {', '.join(self.store.classes)} (task {self.store.task})", **kwargs)
        if ids is not None:
            self.enqueue(ids, front=front, source=source)
        self.on_msg(self._on_msg)
        self.refresh()

    # ------------------------------------------------------------------ Python API
    def enqueue(self, ids: Iterable[int], front: bool = False, source: str = "widget") -> int:
        """Queue chips for labelling (already-labelled ones are skipped); returns how many were added."""
        ids = [int(i) for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1)]
        added = self.store.queue_add(ids, source=source, front=front)
        self.refresh()
        return added

    @property
    def current(self) -> int | None:
        """The chip on the card now (None when the queue is empty)."""
        return self.upcoming[0] if self.upcoming else None

    def label(self, label: str | bool, chip_id: int | None = None) -> int:
        """Label the current chip (or `chip_id`) exactly as a key press would; returns the chip id."""
        cid = self.current if chip_id is None else int(chip_id)
        if cid is None:
            raise CuratorError("the labelling queue is empty", "queue chips with labeler.enqueue(ids)")
        self.store.add(cid, label, source="human")
        self.done += 1
        name = label if isinstance(label, str) else self.store.classes[int(bool(label))]
        self.last = {"chip_id": cid, "label": name, "action": "label"}
        self.refresh()
        self._notify(self.last)
        return cid

    def undo(self, n: int = 1) -> list[int]:
        """Undo this annotator's latest `n` labels; the chips come back to the front of the queue."""
        undone = self.store.undo(n, annotator=self.store.annotator)
        self.done = max(0, self.done - len(undone))
        self.last = {"chip_ids": undone, "action": "undo"}
        self.refresh()
        self._notify(self.last)
        return undone

    def on_label(self, callback: Callable[[dict], None]) -> None:
        """Call `callback({'chip_id', 'label', 'action'})` after every decision or undo."""
        self._callbacks.append(callback)

    def refresh(self) -> None:
        """Re-read the queue and counts from the store (another labeler may have changed them)."""
        with self.hold_sync():
            self.upcoming = self.store.next_in_queue(self.prefetch + 2)
            self.remaining = self.store.queue_pending()
            self.counts = {k: int(v) for k, v in self.store.counts().items()}

    def _summary(self) -> str:
        return (f"SwipeLabeler(task={self.store.task!r}, classes={list(self.store.classes)}, "
                f"{self.remaining} queued, {self.done} labelled this session, workspace={self.workspace.root})")

    # ------------------------------------------------------------------ front end
    def _notify(self, event: dict) -> None:
        for cb in list(self._callbacks):
            cb(dict(event))

    def _on_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind not in ("label", "undo"):
            return
        with self.hold_sync():
            if kind == "label":
                self._guard(lambda: self.label(content["label"], chip_id=int(content["chip_id"])))
                if self.error:  # nothing was written: the kernel's queue still holds the chip
                    self.send({"type": "rejected", "chip_id": int(content["chip_id"])})
                    self.refresh()
            else:
                self._guard(lambda: self.undo(1))
            view = str(content.get("view", ""))
            if view and "seq" in content:
                acks = {k: v for k, v in self.acks.items() if k != view}
                self.acks = {**dict(list(acks.items())[-7:]), view: int(content["seq"])}
