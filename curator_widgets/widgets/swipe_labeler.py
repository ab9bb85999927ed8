"""SwipeLabeler: label chips one at a time with arrow keys, digits, buttons or swipes.

Every decision goes to the workspace's LabelStore (SQLite, one transaction per label) the
moment it arrives, and the queue lives in the same store, so a closed tab or a restarted
kernel loses nothing: the next SwipeLabeler on the same workspace resumes where this one was.
A background watcher re-reads the queue whenever another connection (the active loop, the CLI,
another labeler) commits, so the card never says "Queue empty" while work is waiting.
In team mode (a PostgreSQL store, or a task with several people per chip) the card shows only
chips this annotator has claimed, so two people never get the same chip, and who labels what.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import traitlets

from ..errors import CuratorError
from ._base import CuratorWidget, ThumbnailMixin, thumb_traits
from .store_watch import StoreWatcher, TokenWatcher

#: the source of the labeler's own label events: its undo removes only these unless asked
OWN_SOURCE = "human"


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
    #: what "positive" means, shown above the card (binary tasks: compare with the reference chips)
    question = traitlets.Unicode("").tag(sync=True)
    #: chips shown beside the card as the example to compare against (the seed's reference labels)
    reference_ids = traitlets.List(traitlets.Int()).tag(sync=True)
    #: one-line information for the person (e.g. why an undo did nothing); not an error
    notice = traitlets.Unicode("").tag(sync=True)
    image_size = traitlets.Int(512).tag(sync=True)
    prefetch = traitlets.Int(6).tag(sync=True)
    #: take keyboard focus when displayed; off by default so Run All never labels an unseen chip
    autofocus = traitlets.Bool(False).tag(sync=True)
    thumb_url = traitlets.Unicode("").tag(sync=True)
    workspace_path = traitlets.Unicode("").tag(sync=True)
    #: who labels in this widget (the label events' annotator)
    annotator = traitlets.Unicode("").tag(sync=True)
    #: team mode: {"annotators": {name: {"labels", "holding"}}, "labelled", "pending", "per_chip"}; {} alone
    team = traitlets.Dict().tag(sync=True)

    def __init__(self, workspace: Any, ids: Iterable[int] | None = None, label_set: Sequence[str] | None = None,
                 task: str = "default", store: Any = None, annotator: str | None = None, front: bool = True,
                 source: str = "widget", title: str = "", question: str = "",
                 reference: Iterable[int] | None = None, follow: bool = True, team: bool | None = None,
                 **kwargs: Any):
        """`team=None` turns team mode on for a PostgreSQL store or a task with per_chip > 1."""
        from ..labels import LabelStore
        from ..workspace import Workspace

        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self.workspace = ws
        self.store = store if store is not None else LabelStore(ws, label_set=label_set, task=task, annotator=annotator)
        self._callbacks: list[Callable[[dict], None]] = []
        self._lock = threading.RLock()
        self._team = bool(team) if team is not None else (self.store.backend == "PostgreSQL" or self.store.per_chip > 1)
        classes = list(self.store.classes)
        refs = [int(i) for i in reference] if reference is not None else sorted(self.store.current(sources=["seed"]))[:3]
        if ids is not None:
            self.store.queue_add(_id_list(ids), source=source, front=front)
        # the queue goes in the comm's opening state: an update right after the open can be lost
        super().__init__(classes=classes, unsure=bool(self.store.unsure), **thumb_traits(ws),
                         title=title or f"Label: {', '.join(classes)} (task {self.store.task})",
                         question=question or default_question(classes, bool(refs)), reference_ids=refs,
                         annotator=self.store.annotator,
                         **self._queue_state(int(kwargs.get("prefetch", 6))), **kwargs)
        self.on_msg(self._on_msg)
        self._watcher: StoreWatcher | TokenWatcher | None = None
        if follow:
            self._watcher = StoreWatcher(self.store.path, self.refresh) if self.store.backend == "SQLite" \
                else TokenWatcher(self.store.change_token, self.refresh)

    # ------------------------------------------------------------------ Python API
    def enqueue(self, ids: Iterable[int], front: bool = False, source: str = "widget") -> int:
        """Queue chips for labelling (already-labelled ones are skipped); returns how many were added."""
        added = self.store.queue_add(_id_list(ids), source=source, front=front)
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
        self.store.add(cid, label, source=OWN_SOURCE)
        self.done += 1
        name = label if isinstance(label, str) else self.store.classes[int(bool(label))]
        self.last = {"chip_id": cid, "label": name, "action": "label"}
        self.refresh()
        self._notify(self.last)
        return cid

    def undo(self, n: int = 1, all_sources: bool = False) -> list[int]:
        """Undo this annotator's latest `n` labels made with a labeler; the chips come back to the front.

        Seed (reference), oracle and model labels are left alone unless `all_sources=True`, so one
        Ctrl+Z too many cannot silently remove the reference chip's label.
        """
        undone = self.store.undo(n, annotator=self.store.annotator, source=None if all_sources else OWN_SOURCE)
        self.done = max(0, self.done - len(undone))
        self.last = {"chip_ids": undone, "action": "undo"}
        self.notice = "" if len(undone) == n else ("nothing more of yours to undo: seed and model labels stay "
                                                   "(labeler.undo(all_sources=True) removes those too)")
        self.refresh()
        self._notify(self.last)
        return undone

    def on_label(self, callback: Callable[[dict], None]) -> None:
        """Call `callback({'chip_id', 'label', 'action'})` after every decision or undo."""
        self._callbacks.append(callback)

    def refresh(self) -> None:
        """Re-read the queue and counts from the store (the watcher does this after every outside write)."""
        with self._lock, self.hold_sync():
            for k, v in self._queue_state(self.prefetch).items():
                setattr(self, k, v)

    def _queue_state(self, prefetch: int) -> dict[str, Any]:
        if not self._team:
            return {"upcoming": self.store.next_in_queue(prefetch + 2), "remaining": self.store.queue_pending(),
                    "counts": {k: int(v) for k, v in self.store.counts().items()}}
        upcoming = self.store.claim(prefetch + 2)  # the chips on this card are claimed: nobody else is shown them
        team = self.store.team_progress()
        return {"upcoming": upcoming, "remaining": team["pending"], "team": team,
                "counts": {k: int(v) for k, v in self.store.counts().items()}}

    def close(self) -> None:
        """Stop following the store, then close the widget."""
        if getattr(self, "_watcher", None) is not None:
            self._watcher.stop()
        if getattr(self, "_team", False):
            try:  # hand the chips this card held to the rest of the team
                self.store.release()
            except Exception:  # noqa: BLE001 - closing must not fail; unreleased claims expire
                pass
        super().close()

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
        with self._lock, self.hold_sync():
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


def _id_list(ids: Iterable[int]) -> list[int]:
    return [int(i) for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1)]


def default_question(classes: Sequence[str], has_reference: bool) -> str:
    """The line above the card that says what each key means for this task."""
    if len(classes) == 2:
        like = "like the reference chip" if has_reference else f"a {classes[1]} example"
        return f"Is this chip {like}? → {classes[1]} · ← {classes[0]}"
    return "Which class is this chip? " + " · ".join(f"{i + 1} {c}" for i, c in enumerate(classes))
