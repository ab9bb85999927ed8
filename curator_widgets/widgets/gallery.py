"""SampleGallery: a virtualized thumbnail grid of chips (diverse samples, search results, a lasso
selection, an active-learning batch) with id, label and score; click / shift-click selects."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import traitlets

from ..errors import CuratorError
from ._base import CuratorWidget, ThumbnailMixin, thumb_traits
from .serializers import NDArray, array_serialization


class SampleGallery(ThumbnailMixin, CuratorWidget):
    """A grid that loads only the thumbnails in view, so it scales to any number of ids.

    >>> gal = SampleGallery(ws, ids, scores=result.scores, title="nearest neighbours")
    >>> gal.selected            # chip ids the user clicked
    """

    _bundle = "gallery"

    ids = NDArray("uint32", 1).tag(sync=True, **array_serialization)
    scores = NDArray("float32", 1, allow_none=True, default_value=None).tag(sync=True, **array_serialization)
    captions = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selection = NDArray("uint32", 1).tag(sync=True, echo_update=False, **array_serialization)
    title = traitlets.Unicode("").tag(sync=True)
    thumb_size = traitlets.Int(128).tag(sync=True)
    height = traitlets.Unicode("420px").tag(sync=True)
    thumb_url = traitlets.Unicode("").tag(sync=True)
    workspace_path = traitlets.Unicode("").tag(sync=True)

    def __init__(self, workspace: Any, ids: Sequence[int] | np.ndarray = (), scores: Sequence[float] | None = None,
                 captions: Sequence[str] | str | None = "labels", title: str = "", **kwargs: Any):
        from ..workspace import Workspace

        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        self._callbacks: list[Callable[[np.ndarray], None]] = []
        # the chips go in the comm's opening state: a separate update right after the open can reach a
        # front end still loading the module, and the gallery would show "0 chips"
        super().__init__(**thumb_traits(self.workspace), title=title, **self._state(ids, scores, captions), **kwargs)
        self.observe(lambda ch: [cb(ch["new"]) for cb in list(self._callbacks)], names="selection")

    def show(self, ids: Sequence[int] | np.ndarray, scores: Sequence[float] | None = None,
             captions: Sequence[str] | str | None = "labels", title: str | None = None) -> None:
        """Replace the chips shown (the selection is cleared)."""
        state = self._state(ids, scores, captions)
        with self.hold_sync():
            self.selection = np.zeros(0, np.uint32)
            for k, v in state.items():
                setattr(self, k, v)
            if title is not None:
                self.title = title

    def _state(self, ids: Sequence[int] | np.ndarray, scores: Sequence[float] | None,
               captions: Sequence[str] | str | None) -> dict[str, Any]:
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = len(self.workspace)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            bad = int(arr[(arr < 0) | (arr >= n)][0])
            raise CuratorError(f"chip id {bad} is not in this workspace (ids are 0..{n - 1})",
                               "show ids from ws.manifest['id'] (search results, samples, selections)")
        sc = None
        if scores is not None:
            sc = np.asarray(scores, dtype=np.float32).reshape(-1)
            if sc.shape != arr.shape:
                raise CuratorError(f"{sc.size} scores for {arr.size} chips", "pass one score per chip, or none")
        return {"ids": arr.astype(np.uint32), "scores": sc, "captions": self._captions(arr, captions)}

    def show_search(self, result: Any, title: str | None = None) -> None:
        """Show an `index.search` result (ids and scores, best first)."""
        self.show(result.ids, scores=result.scores, title=title if title is not None else f"{len(result.ids)} similar chips")

    @property
    def selected(self) -> np.ndarray:
        """Chip ids the user selected, in grid order."""
        return self.selection.astype(np.int64)

    def select(self, ids: Sequence[int] | np.ndarray) -> None:
        """Select chips by id (ids not shown in the grid are ignored)."""
        want = np.asarray(ids, dtype=np.int64).reshape(-1)
        self.selection = self.ids[np.isin(self.ids, want)]

    def on_select(self, callback: Callable[[np.ndarray], None]) -> None:
        """Call `callback(chip_ids)` when the selection changes."""
        self._callbacks.append(callback)

    def _captions(self, ids: np.ndarray, captions: Sequence[str] | str | None) -> list[str]:
        if captions is None:
            return []
        if isinstance(captions, str):
            if captions != "labels":
                raise CuratorError(f"captions={captions!r} is not understood", "pass 'labels', None, or one string per chip")
            return self._label_captions(ids)
        caps = [str(c) for c in captions]
        if len(caps) != ids.size:
            raise CuratorError(f"{len(caps)} captions for {ids.size} chips", "pass one caption per chip")
        return caps

    def _label_captions(self, ids: np.ndarray) -> list[str]:
        """The label store's current label, else the manifest's ground-truth label, else ''."""
        current: dict[int, str] = {}
        from ..labels import LabelStore, has_labels

        if has_labels(self.workspace):
            try:
                current = LabelStore(self.workspace).current()
            except CuratorError:
                current = {}
        truth = self.workspace.manifest["label"] if "label" in self.workspace.manifest else None
        out = []
        for i in ids.tolist():
            lab = current.get(i)
            if lab is None and truth is not None:
                t = truth.iloc[i]
                lab = "" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t)
            out.append(lab or "")
        return out

    def _summary(self) -> str:
        return f"SampleGallery({self.ids.size:,} chips, {self.selection.size:,} selected, workspace={self.workspace.root})"
