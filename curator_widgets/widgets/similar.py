""""Similar to selection" for the EmbeddingView: the toolbar button and the S key search the run's
index with the selected chips and draw the results as the highlight.

A mixin, so the scatter module stays about drawing; the search itself is `index.search`
(`tiles=N`: one selected chip cut N x N, bucket votes, as `search(..., tiles=N)`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import traitlets
from anywidget.experimental import command

from ..errors import CuratorError
from ._base import TraitValueError


class SimilarSearchMixin(traitlets.HasTraits):
    """Adds `search_run` (synced: the button shows when set), `similar_k`, `similar_tiles`,
    `similar_to_selection()` and `on_similar(callback)` to a scatter of chips."""

    #: the embedding run whose index "similar to selection" searches ('' hides the button)
    search_run = traitlets.Unicode("").tag(sync=True)
    #: how many similar chips to find
    similar_k = traitlets.Int(20)
    #: 0: search with the selected chips' mean vector; N >= 1: cut the one selected chip N x N and vote
    similar_tiles = traitlets.Int(0)

    selection: np.ndarray
    selected_ids: np.ndarray
    ids: np.ndarray
    n: int
    error: str

    @traitlets.validate("similar_k")
    def _check_similar_k(self, proposal: dict) -> int:
        if proposal["value"] < 1:
            raise TraitValueError(f"similar_k must be at least 1, got {proposal['value']}", "e.g. 20")
        return proposal["value"]

    @traitlets.validate("similar_tiles")
    def _check_similar_tiles(self, proposal: dict) -> int:
        if proposal["value"] < 0:
            raise TraitValueError(f"similar_tiles must be 0 (no tiles) or a grid size, got {proposal['value']}",
                                  "e.g. 2 for 2 x 2 tiles")
        return proposal["value"]

    def on_similar(self, callback: Callable[[Any], None]) -> None:
        """Call `callback(search_result)` after each "similar to selection" (button, key or Python)."""
        self.__dict__.setdefault("_similar_callbacks", []).append(callback)

    def similar_to_selection(self, k: int | None = None, tiles: int | None = None) -> Any:
        """Search the index of `search_run` with the selected chips and highlight the results that
        are points of this view; returns the SearchResult."""
        from ..index import search

        ws = self._hover_workspace()  # type: ignore[attr-defined]
        if ws is None or not self.search_run:
            raise CuratorError("this view has no workspace and search run to find similar chips in",
                               "use EmbeddingView.from_workspace(ws, run), or set view.workspace and view.search_run")
        chips = self.selected_ids
        if not chips.size:
            raise CuratorError("nothing is selected", "lasso some points (Shift+drag) or click one, then ask again")
        grid = self.similar_tiles if tiles is None else int(tiles)
        if grid and chips.size != 1:
            raise CuratorError(f"tile voting searches with one chip, but {chips.size} are selected",
                               "select one point, or set similar_tiles = 0 to search with their mean")
        query = int(chips[0]) if grid else chips.tolist()
        res = search(ws, self.search_run, ids=query, k=int(k or self.similar_k), tiles=grid or None)
        self.highlight_points(self.points_of(res.ids))  # type: ignore[attr-defined]
        for cb in list(self.__dict__.get("_similar_callbacks", [])):
            cb(res)
        return res

    def points_of(self, chip_ids: Any) -> np.ndarray:
        """Point indices showing these chips (chips not in the view are left out)."""
        chips = np.asarray(chip_ids, np.int64).reshape(-1)
        if not self.ids.size:  # point i is chip i
            return chips[(chips >= 0) & (chips < self.n)]
        return np.flatnonzero(np.isin(self.ids.astype(np.int64), chips))

    @command
    def similar(self, msg: dict, buffers: list) -> tuple[dict, list]:
        """The toolbar's "Similar" (and the S key): search, highlight, report how many were found."""
        res = self._guard(self.similar_to_selection)  # type: ignore[attr-defined]
        if res is None:
            return {"ok": False, "error": self.error}, []
        return {"ok": True, "count": int(len(res)), "shown": int(self.highlight.size)}, []  # type: ignore[attr-defined]
