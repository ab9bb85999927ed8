"""EmbeddingView: a WebGL scatter of a 2-D projection with lasso selection synced to Python.

Works on plain numpy arrays (no workspace needed); give it a workspace to get chip thumbnails
on hover. Coordinates cross as float32, colors as uint8 codes, selections as uint32 indices:
binary buffers, chunked (see serializers.py for the websocket size limit).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import traitlets
from anywidget.experimental import command

from ..errors import CuratorError
from . import colors as _colors
from ._base import Choice, CuratorWidget, ThumbnailMixin, TraitValueError, thumb_traits
from .hover import point_info
from .serializers import ChunkAssembler, NDArray, array_serialization, array_to_json
from .similar import SimilarSearchMixin


def normalize_xy(xy: Any) -> np.ndarray:
    """[N, 2] coordinates scaled into [-1, 1] (aspect ratio kept), as float32 for the GPU."""
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise CuratorError(f"coordinates must be an [N, 2] array, got shape {arr.shape}",
                           "pass the 2-D projection, e.g. projection.project(ws, run) or umap output")
    if arr.shape[0] and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise CuratorError(f"{bad} of {arr.shape[0]} points have NaN or infinite coordinates",
                           "drop or fix those rows before plotting (np.isfinite(xy).all(axis=1))")
    if arr.shape[0] == 0:
        return np.zeros((0, 2), np.float32)
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    center = (lo + hi) / 2
    half = float((hi - lo).max()) / 2 or 1.0
    return ((arr - center) / half * 0.95).astype(np.float32)


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values; O(n) when already sorted (np.unique hashes, ~1 ms per 1k values)."""
    if a.size > 1 and not bool(np.all(a[1:] > a[:-1])):
        a = np.sort(a, kind="stable")
        keep = np.empty(a.size, dtype=bool)
        keep[0] = True
        np.not_equal(a[1:], a[:-1], out=keep[1:])
        a = a[keep]
    return a


GESTURES = ("auto", "live", "deferred")
MOUSE_MODES = ("panZoom", "lasso")


class EmbeddingView(SimilarSearchMixin, ThumbnailMixin, CuratorWidget):
    """Scatter of a projection; lasso (Shift+drag or the Lasso tool) or click to select.

    >>> view = EmbeddingView(xy, color=labels)            # numpy only
    >>> view.on_select(lambda idx: print(len(idx)))
    >>> view.selection                                     # uint32 point indices
    >>> view.search_run = "simclr"; view.similar_to_selection()   # or the Similar button / S key
    """

    _bundle = "embedding_view"

    xy = NDArray("float32", 2).tag(sync=True, **array_serialization)
    color = NDArray("uint8", 1, allow_none=True, default_value=None).tag(sync=True, **array_serialization)
    palette = traitlets.List(traitlets.Unicode()).tag(sync=True)
    legend = traitlets.List().tag(sync=True)
    #: what the colours mean ("labels", "active score"...), and whether the legend is swatches or a colour bar
    legend_title = traitlets.Unicode("").tag(sync=True)
    color_kind = Choice(("category", "value"), default_value="category").tag(sync=True)
    selection = NDArray("uint32", 1).tag(sync=True, echo_update=False, **array_serialization)
    highlight = NDArray("uint32", 1).tag(sync=True, **array_serialization)
    ids = NDArray("uint32", 1).tag(sync=True, **array_serialization)
    point_size = traitlets.Float(0.0).tag(sync=True)
    mouse_mode = Choice(MOUSE_MODES, default_value="panZoom").tag(sync=True)
    # "live" redraws every frame of a pan/zoom; "deferred" moves the last frame with a CSS transform and
    # redraws once the gesture ends (maps do this); "auto" defers when one frame takes > slow_frame_ms.
    gestures = Choice(GESTURES, default_value="auto").tag(sync=True)
    slow_frame_ms = traitlets.Float(60.0).tag(sync=True)
    height = traitlets.Unicode("480px").tag(sync=True)
    thumb_url = traitlets.Unicode("").tag(sync=True)
    workspace_path = traitlets.Unicode("").tag(sync=True)

    def __init__(self, xy: Any, color: Sequence[Any] | np.ndarray | None = None, *, kind: str = "auto",
                 ids: Sequence[int] | np.ndarray | None = None, workspace: Any = None,
                 palette: Sequence[str] | None = None, **kwargs: Any):
        norm = normalize_xy(xy)
        n = norm.shape[0]
        extra: dict[str, Any] = thumb_traits(workspace)
        if ids is not None:
            ids_arr = np.asarray(ids)
            if ids_arr.shape != (n,):
                raise CuratorError(f"ids has shape {ids_arr.shape} but there are {n} points",
                                   "pass one chip id per point (or leave ids out: point i is chip i)")
            extra["ids"] = ids_arr
        self._assembler = ChunkAssembler()
        self._values: np.ndarray | None = None
        self.workspace = workspace
        #: the LabelStore the hover card reads labels from (default: the workspace's default task)
        self.label_store: Any = None
        self._select_callbacks: list[Callable[[np.ndarray], None]] = []
        if color is not None:  # in the opening state: an update right after the open can be lost
            extra.update(self._color_state(n, color, kind=kind, palette=palette))
        super().__init__(xy=norm, **extra, **kwargs)
        self.on_msg(self._on_msg)
        self.observe(self._fire_select, names="selection")

    @traitlets.validate("slow_frame_ms")
    def _check_slow_frame(self, proposal: dict) -> float:
        value = float(proposal["value"])
        if not value >= 0:
            raise TraitValueError(f"slow_frame_ms must be >= 0 ms, got {value}", "e.g. 60 (about 16 frames a second)")
        return value

    # ------------------------------------------------------------------ data
    @property
    def n(self) -> int:
        return int(self.xy.shape[0])

    def set_points(self, xy: Any, color: Sequence[Any] | None = None, kind: str = "auto") -> None:
        """Replace the points (and their colors); the selection is cleared."""
        norm = normalize_xy(xy)
        with self.hold_sync():
            self.selection = np.zeros(0, np.uint32)
            self.highlight = np.zeros(0, np.uint32)
            if self.ids.size and self.ids.size != norm.shape[0]:
                self.ids = np.zeros(0, np.uint32)
            if color is None and self.color is not None and self.color.shape[0] != norm.shape[0]:
                self.color, self.palette, self.legend = None, [], []
            self.xy = norm
            if color is not None:
                self.color_by(color, kind=kind)

    def color_by(self, values: Sequence[Any] | np.ndarray, kind: str = "auto", palette: Sequence[str] | None = None,
                 cmap: str = "viridis", title: str = "", missing: str = _colors.MISSING) -> None:
        """Color points by a label / cluster (categorical) or a score / rank (continuous).

        `title` heads the legend; `missing` names the grey points (e.g. "unlabelled: no label yet").
        """
        state = self._color_state(self.n, values, kind, palette, cmap, title, missing)
        with self.hold_sync():
            for k, v in state.items():
                setattr(self, k, v)

    def _color_state(self, n: int, values: Any, kind: str = "auto", palette: Sequence[str] | None = None,
                     cmap: str = "viridis", title: str = "", missing: str = _colors.MISSING) -> dict[str, Any]:
        values = values if isinstance(values, np.ndarray) else np.asarray(values)
        if values.shape[0] != n:
            raise CuratorError(f"{values.shape[0]} color values for {n} points", "pass one value per point")
        c = _colors.coloring(values, kind=kind, palette=palette, cmap=cmap, missing=missing)
        self._values = values  # the hover card reads a point's own value, not its colour bin
        return {"palette": c.palette, "legend": [list(x) for x in c.legend], "legend_title": title,
                "color_kind": c.kind, "color": c.codes}

    def color_by_rank(self, indices: Sequence[int] | np.ndarray, cmap: str = "magma") -> None:
        """Color a sample by the order it was picked (e.g. farthest-point rank); the rest grey."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise CuratorError(f"rank indices must be point indices 0..{self.n - 1}", "pass the sample's point indices in pick order")
        values = np.full(self.n, np.nan)
        values[idx[::-1]] = np.arange(idx.size, dtype=float)[::-1]  # a repeated index keeps its first rank
        self.color_by(values, kind="value", cmap=cmap, title="pick order", missing="not picked")

    # ------------------------------------------------------------------ selection
    def select(self, indices: Sequence[int] | np.ndarray) -> None:
        """Select points by index (the browser shows them selected)."""
        idx = self._check_indices(indices)
        self.selection = idx

    @property
    def selected_ids(self) -> np.ndarray:
        """Chip ids of the selected points (the point indices when no ids were given)."""
        sel = self.selection.astype(np.int64)
        return self.ids.astype(np.int64)[sel] if self.ids.size else sel

    def highlight_points(self, indices: Sequence[int] | np.ndarray) -> None:
        """Draw these points larger (e.g. search results), leaving the selection alone."""
        self.highlight = self._check_indices(indices)

    def zoom_to(self, indices: Sequence[int] | np.ndarray | None = None) -> None:
        """Pan and zoom the view to these points (None: show everything)."""
        idx = self._check_indices(indices if indices is not None else [])
        self.send({"type": "zoom", "indices": idx.tolist()})

    def on_select(self, callback: Callable[[np.ndarray], None]) -> None:
        """Call `callback(indices)` whenever the selection changes (lasso, click or Python)."""
        self._select_callbacks.append(callback)

    def _fire_select(self, change: dict) -> None:
        for cb in list(self._select_callbacks):
            cb(change["new"])

    def _check_indices(self, indices: Any) -> np.ndarray:
        idx = sorted_unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if idx.size and (idx[0] < 0 or idx[-1] >= self.n):
            raise CuratorError(f"point index {int(idx[0] if idx[0] < 0 else idx[-1])} is out of range 0..{self.n - 1}",
                               "pass point indices (row numbers of xy), not chip ids; map ids with np.searchsorted")
        return idx.astype(np.uint32)

    @command
    def info(self, msg: dict, buffers: list) -> tuple[dict, list]:
        """The hover card's text for one point (chip id, label, score, source)."""
        i = int(msg.get("index", -1))
        if not 0 <= i < self.n:
            return {"ok": False, "error": f"point {i} is out of range"}, []
        chip = int(self.ids[i]) if self.ids.size else i
        ws = self._hover_workspace()
        return {"ok": True, **point_info(i, chip, self._values, self.legend_title, ws, self._hover_store(ws))}, []

    def _hover_workspace(self) -> Any:
        from ..workspace import Workspace

        ws = self.workspace
        if ws is not None and not isinstance(ws, Workspace):
            ws = self.workspace = Workspace.open(ws)
        return ws

    def _hover_store(self, ws: Any) -> Any:
        from ..labels import LabelStore, has_labels

        if self.label_store is None and ws is not None and has_labels(ws):
            self.label_store = LabelStore(ws)
        return self.label_store

    def _on_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "selection":
            return
        arr = self._assembler.add(content, buffers)
        if arr is None:
            return
        arr = sorted_unique(arr.astype(np.uint32, copy=False))  # the browser sends it sorted: one O(n) check
        arr = arr[: np.searchsorted(arr, self.n)]
        # set without echoing the (possibly large) array back to the browser that sent it
        with self._lock_property(selection=array_to_json(arr, self)):
            self.selection = arr
        self.send({"type": "selection-ack", "seq": int(content["seq"]), "count": int(arr.size)})

    def _summary(self) -> str:
        return f"EmbeddingView({self.n:,} points, {self.selection.size:,} selected)"

    # ------------------------------------------------------------------ from a workspace
    @classmethod
    def from_workspace(cls, ws: Any, run: str, color: str | Sequence[Any] | None = "label", method: str = "umap",
                       **kwargs: Any) -> "EmbeddingView":
        """The projection of `run` (computed and cached by projection.project), colored by a manifest
        column ('label', 'land_fraction', ...), the label store ('labels') or given values."""
        from ..projection import project

        xy = project(ws, run, method=method)
        kwargs.setdefault("search_run", run)
        view = cls(xy, workspace=ws, **kwargs)
        if isinstance(color, str):
            view.color_by(workspace_colors(ws, color), title=color, missing=missing_name(color))
        elif color is not None:
            view.color_by(color)
        return view


def missing_name(column: str) -> str:
    """What the grey points are, said in the legend."""
    return "unlabelled (no label yet)" if column in ("labels", "label") else f"no {column}"


def workspace_colors(ws: Any, name: str) -> list[Any] | np.ndarray:
    """Per-chip values to color by: a manifest column, or 'labels' for the label store's current labels."""
    if name == "labels":
        from ..labels import LabelStore

        current = LabelStore(ws).current()
        return [current.get(i) for i in range(len(ws))]
    df = ws.manifest
    if name not in df.columns:
        raise CuratorError(f"the manifest has no column {name!r}", f"color by one of {', '.join(map(str, df.columns))} or 'labels'")
    col = df[name]
    return col.to_numpy(dtype=float) if col.dtype.kind in "fiu" else col.tolist()
