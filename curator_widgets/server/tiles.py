"""Map tiles on GIBS's EPSG:4326 grid, rendered from the offline Blue Marble or fetched from live GIBS.

URLs follow GIBS's REST layout (`{layer}/{date}/{matrix}/{z}/{row}/{col}`), so the map widget
switches between offline and live imagery by changing one path segment. `wrap=True` renders
tiles past the antimeridian (any column, modulo the globe): GIBS's world is 640 * 2**z pixels
wide, not a whole number of 512 px tiles, so Leaflet cannot wrap tile indices itself.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CuratorError
from ..images import encode

TILE = 512
MAX_ZOOM = 8  # GIBS 500m has levels 0..7; beyond the data we upsample, up to here
_DATE = re.compile(r"^(default|\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}Z)?)$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_INDEX = re.compile(r"^-?[0-9]{1,40}$")  # ASCII digits, short enough that int() is cheap


@dataclass(frozen=True)
class TileRequest:
    """One validated tile request (everything in it is safe to use as a cache key or path part)."""

    source: str
    layer: str
    date: str
    matrix: str
    z: int
    row: int
    col: int
    wrap: bool = False
    fmt: str = "jpg"


def parse_request(source: str, layer: str, date: str, matrix: str, z: str, row: str, col: str,
                  wrap: bool = False, fmt: str = "jpg") -> TileRequest:
    """Validate the URL parts of a tile request; every bad part raises a CuratorError naming it."""
    for what, value in (("source", source), ("layer", layer), ("tile matrix set", matrix)):
        if not _NAME.fullmatch(value or "") or value in (".", ".."):
            raise CuratorError(f"bad {what} {value!r} in the tile URL", "use letters, digits, '_', '-' or '.'")
    if not _DATE.fullmatch(date or ""):
        raise CuratorError(f"bad date {date!r} in the tile URL", "use YYYY-MM-DD or 'default'")
    parts = (z, row, col)
    if not all(isinstance(v, str) and _INDEX.fullmatch(v) for v in parts):
        shown = "/".join(v[:24] if isinstance(v, str) else repr(v) for v in parts)
        raise CuratorError(f"tile indices must be integers, got {shown}", "request .../{z}/{row}/{col}.jpg")
    zi, ri, ci = int(z), int(row), int(col)
    if not (0 <= zi <= MAX_ZOOM):
        raise CuratorError(f"zoom {zi} is outside 0..{MAX_ZOOM}", f"request a level from 0 to {MAX_ZOOM}")
    h, w = world_tiles(zi)
    if not (0 <= ri < h):
        raise CuratorError(f"tile row {ri} is outside 0..{h - 1} at level {zi}", "request a row inside the grid")
    if not wrap and not (0 <= ci < w):
        raise CuratorError(f"tile column {ci} is outside 0..{w - 1} at level {zi}", "request a column inside the grid, or add ?wrap=1")
    if wrap and not (-w <= ci < 2 * w):
        ci %= wrap_period(zi)  # the same pixels, so any integer column is served without overflow
    if fmt not in ("jpg", "png"):
        raise CuratorError(f"tile format {fmt!r} is not served", "use .jpg or .png")
    return TileRequest(source, layer, date, matrix, zi, ri, ci, bool(wrap), fmt)


def world_pixels(z: int) -> tuple[int, int]:
    """(height, width) of the globe in pixels at level `z` of GIBS's geographic grid."""
    return 320 * 2 ** z, 640 * 2 ** z


def wrap_period(z: int) -> int:
    """Columns after which wrapped tiles repeat: col * 512 modulo the globe's width cycles with it."""
    w = world_pixels(z)[1]
    return w // math.gcd(w, TILE)


def world_tiles(z: int) -> tuple[int, int]:
    """(rows, cols) of 512 px tiles covering the globe at level `z` (the last ones partly empty)."""
    h, w = world_pixels(z)
    return math.ceil(h / TILE), math.ceil(w / TILE)


def cut_tile(world: np.ndarray, z: int, row: int, col: int, wrap: bool) -> np.ndarray:
    """The 512x512 window of a level-`z` globe raster at tile (row, col); empty past the edges."""
    h, w = world_pixels(z)
    scale = world.shape[1] / w  # < 1 when the raster is coarser than the level (upsampling)
    out = np.zeros((TILE, TILE, 3), dtype=np.uint8)
    y0, x0 = row * TILE, col * TILE
    rows = np.arange(y0, y0 + TILE)
    cols = np.arange(x0, x0 + TILE)
    row_ok = rows < h
    col_ok = np.ones(TILE, bool) if wrap else (cols >= 0) & (cols < w)
    cols = np.mod(cols, w)
    if scale == 1.0:
        src_r, src_c = rows[row_ok], cols[col_ok]
        out[np.ix_(row_ok, col_ok)] = world[np.ix_(src_r, src_c)]
        return out
    from PIL import Image

    # upsample: cut the covering source window, then resize it bilinearly to 512 px
    sr0, sr1 = int(math.floor(y0 * scale)), int(math.ceil(min(y0 + TILE, h) * scale))
    sc = np.mod(np.arange(int(math.floor(x0 * scale)), int(math.ceil((x0 + TILE) * scale))), world.shape[1])
    window = world[sr0:max(sr1, sr0 + 1)][:, sc]
    n_rows = int(row_ok.sum())
    img = Image.fromarray(np.ascontiguousarray(window)).resize((TILE, max(1, n_rows)), Image.Resampling.BILINEAR)
    block = np.asarray(img)
    out[:n_rows] = block[:n_rows]
    if not wrap:
        out[:, ~col_ok] = 0
    return out


def bluemarble_tile(req: TileRequest) -> np.ndarray:
    """A tile of the embedded Blue Marble (static: any date is accepted and gives the same image)."""
    from ..sources.bluemarble import LAYER, MAX_LEVEL, TILE_MATRIX_SET, world_raster

    if req.layer != LAYER:
        raise CuratorError(f"the offline source serves only {LAYER}, not {req.layer!r}",
                           f"use layer {LAYER}, or source 'gibs' for live layers")
    if req.matrix != TILE_MATRIX_SET:
        raise CuratorError(f"Blue Marble is served on the {TILE_MATRIX_SET} grid, not {req.matrix!r}",
                           f"request .../{TILE_MATRIX_SET}/{{z}}/{{row}}/{{col}}")
    world = world_raster(min(req.z, MAX_LEVEL))
    return cut_tile(world, req.z, req.row, req.col, req.wrap)


def gibs_base_url() -> str:
    """Live GIBS (EPSG:4326 'best'), or $CURATOR_GIBS_BASE_URL (a mirror, or the loopback test server)."""
    from ..sources.catalog import GIBS_BASE_URL

    return os.environ.get("CURATOR_GIBS_BASE_URL", GIBS_BASE_URL).rstrip("/")


_DOWNLOADERS: dict[str, object] = {}
_DL_LOCK = threading.Lock()


def _downloader(template: str) -> Any:
    from ..sources.download import TileDownloader

    with _DL_LOCK:
        if template not in _DOWNLOADERS:
            _DOWNLOADERS[template] = TileDownloader(template, concurrency=4, retries=2, timeout=20.0, progress=False)
        return _DOWNLOADERS[template]


def fetch_gibs_tile(layer: str, date: str, matrix: str, z: int, row: int, col: int, ext: str = "jpg") -> bytes:
    """One GIBS tile through the GIBS downloader's on-disk cache (fetched at most once)."""
    from ..sources.download import TileRequest as GibsTile

    template = gibs_base_url() + "/{Layer}/default/{Time}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}." + ext
    dl = _downloader(template)
    tile = GibsTile(layer, date, matrix, z, row, col, ext)
    path = dl.path(tile)
    if not path.is_file():
        report = dl.download([tile], desc="map tile")
        if not path.is_file():
            raise CuratorError(f"GIBS tile {tile.key} could not be fetched: {report.summary()}",
                               "check the layer, date and network; offline, use source 'bluemarble'")
    return path.read_bytes()


def gibs_tile(req: TileRequest) -> bytes:
    """A live GIBS tile through the on-disk tile cache (and, with wrap, stitched across the edge)."""
    _, w_tiles = world_tiles(req.z)
    h, w = world_pixels(req.z)
    if not req.wrap or (0 <= req.col and (req.col + 1) * TILE <= w):
        if not (0 <= req.col < w_tiles):
            raise CuratorError(f"tile column {req.col} is outside 0..{w_tiles - 1}", "add ?wrap=1")
        return fetch_gibs_tile(req.layer, req.date, req.matrix, req.z, req.row, req.col, req.fmt)
    # a wrapped tile: the globe's pixel columns modulo its width, from up to two GIBS tiles
    out = np.zeros((TILE, TILE, 3), dtype=np.uint8)
    cols = np.mod(np.arange(req.col * TILE, (req.col + 1) * TILE), w)
    for src_col in np.unique(cols // TILE):
        tile = _decode(fetch_gibs_tile(req.layer, req.date, req.matrix, req.z, req.row, int(src_col), req.fmt))
        sel = (cols // TILE) == src_col
        out[: tile.shape[0], sel] = tile[:, cols[sel] - src_col * TILE]
    return encode(out, "JPEG" if req.fmt == "jpg" else "PNG", quality=90)


def _decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    from ..images import to_rgb

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size[0] * img.size[1] > 4 * TILE * TILE:
                raise CuratorError(f"the tile server sent a {img.size[0]} x {img.size[1]} px tile", "check the mirror")
            img.load()
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, CuratorError):
            raise
        raise CuratorError("the tile server sent an image that cannot be decoded", "check the layer and mirror") from None


class TileCache:
    """A small in-memory LRU of encoded tiles, shared by all requests of one server."""

    def __init__(self, max_items: int = 512):
        self.max_items = max_items
        self._items: OrderedDict[TileRequest, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, req: TileRequest) -> bytes:
        with self._lock:
            if req in self._items:
                self._items.move_to_end(req)
                return self._items[req]
        data = render_tile(req)
        with self._lock:
            self._items[req] = data
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return data


def render_tile(req: TileRequest) -> bytes:
    """Encoded bytes of one tile from its source."""
    if req.source == "bluemarble":
        img = bluemarble_tile(req)
        return encode(img, "JPEG" if req.fmt == "jpg" else "PNG", quality=90)
    if req.source == "gibs":
        return gibs_tile(req)
    raise CuratorError(f"unknown tile source {req.source!r}", "use 'bluemarble' (offline) or 'gibs' (live)")


TILES = TileCache()
