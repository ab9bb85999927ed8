"""GIBS tile matrix sets (EPSG:4326 and EPSG:3857) and the tile math over them.

The numbers below are derived from NASA OnEarth's tilematrixsets.xml (tests parse that file
and compare every value), because the package cannot read shared data at run time. A
capabilities document, when given, brings its own sets (`parse_tile_matrix_sets`).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..bbox import BBox
from ..errors import CuratorError
from .geogrid import PixelRegion, region_pixels
from .tiling import Window

OWS = "{http://www.opengis.net/ows/1.1}"
WMTS = "{http://www.opengis.net/wmts/1.0}"

# OGC WMTS 1.0 (Annex E): a scale denominator is pixel size / 0.28 mm; degrees convert to metres
# on the WGS84 semi-major axis.
STANDARD_PIXEL_M = 0.00028
METERS_PER_DEGREE = 6378137.0 * 2.0 * math.pi / 360.0
WEB_MERCATOR_HALF = 20037508.342789244  # pi * 6378137
WEB_MERCATOR_MAX_LAT = 85.0511287798066
# GIBS geographic sets: level 0 is two 512 px tiles spanning 288 degrees each, halving per level.
GEOGRAPHIC_LEVEL0_PIXEL_SIZE = 288.0 / 512.0

# Derived from tilematrixsets.xml: per set, one (scale denominator, matrix width, matrix height)
# per level. Top-left corners and tile sizes are shared within each CRS (see _CRS_GRID).
_GIBS_SETS: dict[str, dict[str, list[tuple[float, int, int]]]] = {
    "EPSG:4326": {
        "16km": [(223632905.6114871, 2, 1), (111816452.8057436, 3, 2), (55908226.40287178, 5, 3)],
        "2km": [(223632905.6114871, 2, 1), (111816452.8057436, 3, 2), (55908226.40287178, 5, 3),
                (27954113.20143589, 10, 5), (13977056.60071795, 20, 10), (6988528.300358973, 40, 20)],
        "1km": [(223632905.6114871, 2, 1), (111816452.8057436, 3, 2), (55908226.40287178, 5, 3),
                (27954113.20143589, 10, 5), (13977056.60071795, 20, 10), (6988528.300358973, 40, 20),
                (3494264.150179486, 80, 40)],
        "500m": [(223632905.6114871, 2, 1), (111816452.8057436, 3, 2), (55908226.40287178, 5, 3),
                 (27954113.20143589, 10, 5), (13977056.60071795, 20, 10), (6988528.300358973, 40, 20),
                 (3494264.150179486, 80, 40), (1747132.075089743, 160, 80)],
        "250m": [(223632905.6114871, 2, 1), (111816452.8057436, 3, 2), (55908226.40287178, 5, 3),
                 (27954113.20143589, 10, 5), (13977056.60071795, 20, 10), (6988528.300358973, 40, 20),
                 (3494264.150179486, 80, 40), (1747132.075089743, 160, 80), (873566.0375448716, 320, 160)],
        "31.25m": [(223632905.6114871, 2, 1), (111816452.8057436, 3, 2), (55908226.40287178, 5, 3),
                   (27954113.20143589, 10, 5), (13977056.60071795, 20, 10), (6988528.300358973, 40, 20),
                   (3494264.150179486, 80, 40), (1747132.075089743, 160, 80), (873566.0375448716, 320, 160),
                   (436783.0187724358, 640, 320), (218391.5093862179, 1280, 640),
                   (109195.75469310895, 2560, 1280)],
        "15.625m": [(223632905.6114871, 2, 1), (111816452.8057436, 3, 2), (55908226.40287178, 5, 3),
                    (27954113.20143589, 10, 5), (13977056.60071795, 20, 10), (6988528.300358973, 40, 20),
                    (3494264.150179486, 80, 40), (1747132.075089743, 160, 80), (873566.0375448716, 320, 160),
                    (436783.0187724358, 640, 320), (218391.5093862179, 1280, 640),
                    (109195.75469310895, 2560, 1280), (54597.877346554475, 5120, 2560)],
    },
    "EPSG:3857": {
        f"GoogleMapsCompatible_Level{n}": [
            (s, 2 ** z, 2 ** z) for z, s in enumerate(
                [559082264.0287178, 279541132.0143589, 139770566.0071794, 69885283.00358972,
                 34942641.50179486, 17471320.75089743, 8735660.375448715, 4367830.187724357,
                 2183915.093862179, 1091957.546931089, 545978.7734655447, 272989.3867327723,
                 136494.6933663862, 68247.3466831931][: n + 1])]
        for n in (3, 6, 7, 8, 9, 12, 13)
    },
}
_CRS_GRID = {"EPSG:4326": ((-180.0, 90.0), 512), "EPSG:3857": ((-20037508.34278925, 20037508.34278925), 256)}


@dataclass(frozen=True)
class TileMatrix:
    """One zoom level: its scale, top-left corner (CRS units), tile size and matrix size in tiles."""

    identifier: str
    scale_denominator: float
    top_left: tuple[float, float]
    tile_width: int
    tile_height: int
    matrix_width: int
    matrix_height: int


@dataclass(frozen=True)
class TileMatrixSet:
    """A named pyramid of tile matrices in one CRS (EPSG:4326 degrees or EPSG:3857 metres)."""

    identifier: str
    crs: str
    matrices: tuple[TileMatrix, ...]

    @property
    def geographic(self) -> bool:
        return self.crs == "EPSG:4326"

    @property
    def max_level(self) -> int:
        return len(self.matrices) - 1

    def level(self, z: int) -> TileMatrix:
        """The matrix at level `z`, or an error naming the valid levels."""
        if not (0 <= int(z) <= self.max_level):
            raise CuratorError(f"tile matrix set {self.identifier} has levels 0..{self.max_level}, not {z}",
                               f"pick a level between 0 and {self.max_level}")
        return self.matrices[int(z)]

    def pixel_size(self, z: int) -> float:
        """Pixel size at level `z` in CRS units (degrees for EPSG:4326, metres for EPSG:3857)."""
        m = self.level(z)
        raw = m.scale_denominator * STANDARD_PIXEL_M
        if not self.geographic:
            return raw
        return snap_geographic_pixel_size(raw / METERS_PER_DEGREE)

    def degrees_per_pixel(self, z: int) -> float:
        """Longitude degrees per pixel (exact for both CRSs; the manifest's pixel_size)."""
        if self.geographic:
            return self.pixel_size(z)
        return self.pixel_size(z) / WEB_MERCATOR_HALF * 180.0

    def world_shape(self, z: int) -> tuple[int, int]:
        """(height, width) in pixels of the whole world at level `z` (-180..180, -90..90 / +-85.05)."""
        if self.geographic:
            ps = self.pixel_size(z)
            return int(round(180.0 / ps)), int(round(360.0 / ps))
        m = self.level(z)
        return m.matrix_height * m.tile_height, m.matrix_width * m.tile_width

    def level_for_resolution(self, degrees_per_pixel: float) -> int:
        """The coarsest level at least as fine as `degrees_per_pixel` (or the finest level)."""
        for z in range(self.max_level + 1):
            if self.degrees_per_pixel(z) <= degrees_per_pixel * (1 + 1e-9):
                return z
        return self.max_level


def snap_geographic_pixel_size(ps: float) -> float:
    """Snap a pixel size derived from a scale denominator to GIBS's exact 288/512/2^k degrees.

    Capabilities documents compute scale denominators with different earth radii (the 2015
    document used a 6371007 m sphere), so the raw value is off by ~0.1%; tile math needs it exact.
    """
    k = round(math.log2(GEOGRAPHIC_LEVEL0_PIXEL_SIZE / ps))
    exact = GEOGRAPHIC_LEVEL0_PIXEL_SIZE / 2 ** k
    return exact if abs(ps / exact - 1.0) < 0.01 else ps


def _build(crs: str, name: str, rows: list[tuple[float, int, int]]) -> TileMatrixSet:
    top_left, tile = _CRS_GRID[crs]
    return TileMatrixSet(name, crs, tuple(TileMatrix(str(z), s, top_left, tile, tile, w, h)
                                          for z, (s, w, h) in enumerate(rows)))


GIBS_TILE_MATRIX_SETS: dict[tuple[str, str], TileMatrixSet] = {
    (crs, name): _build(crs, name, rows) for crs, sets in _GIBS_SETS.items() for name, rows in sets.items()}


def tile_matrix_set(name: str, crs: str | None = None) -> TileMatrixSet:
    """A packaged GIBS set by name (e.g. '500m', 'GoogleMapsCompatible_Level9'); old names like
    'EPSG4326_500m' are accepted too."""
    key = normalize_set_name(name)
    for (c, n), tms in GIBS_TILE_MATRIX_SETS.items():
        if n == key and (crs is None or c == crs):
            return tms
    known = sorted({n for _, n in GIBS_TILE_MATRIX_SETS})
    raise CuratorError(f"unknown GIBS tile matrix set {name!r}", f"use one of {', '.join(known)}")


def normalize_set_name(name: str) -> str:
    """Map the 2015-era names (EPSG4326_500m, EPSG4326_31m) onto today's (500m, 31.25m)."""
    if name.startswith("EPSG4326_"):
        name = name[len("EPSG4326_"):]
        return {"31m": "31.25m", "15m": "15.625m"}.get(name, name)
    return name


def _crs_of(text: str) -> str:
    t = text.upper().replace("::", ":")
    if "3857" in t or "900913" in t:
        return "EPSG:3857"
    if "4326" in t or "CRS84" in t:
        return "EPSG:4326"
    for code in ("3413", "3031", "3975", "3973"):
        if code in t:
            return f"EPSG:{code}"
    return text


def parse_tile_matrix_sets(root: ET.Element) -> dict[str, TileMatrixSet]:
    """Every TileMatrixSet element under `root` (a capabilities document or tilematrixsets.xml)."""
    out: dict[str, TileMatrixSet] = {}
    for el in root.iter():
        if not el.tag.endswith("TileMatrixSet") or el.find(f"{OWS}Identifier") is None:
            continue
        ident = el.findtext(f"{OWS}Identifier", "").strip()
        crs = _crs_of(el.findtext(f"{OWS}SupportedCRS", "").strip())
        mats = []
        for m in el:
            if not m.tag.endswith("TileMatrix"):
                continue
            x, y = (float(v) for v in _text(m, "TopLeftCorner").split())
            if crs == "EPSG:4326" and abs(x) <= 90 and abs(y) > 90:  # lat/lon axis order
                x, y = y, x
            mats.append(TileMatrix(_text(m, f"{OWS}Identifier"), float(_text(m, "ScaleDenominator")), (x, y),
                                   int(_text(m, "TileWidth")), int(_text(m, "TileHeight")),
                                   int(_text(m, "MatrixWidth")), int(_text(m, "MatrixHeight"))))
        if mats:
            out[ident] = TileMatrixSet(ident, crs, tuple(mats))
    return out


def _text(el: ET.Element, tag: str) -> str:
    for child in el:
        if child.tag == tag or child.tag.endswith("}" + tag) or child.tag == WMTS + tag:
            return (child.text or "").strip()
    raise CuratorError(f"tile matrix element lacks <{tag}>", "the capabilities document is malformed; use another copy")


# ------------------------------------------------------------------ coordinates <-> pixels
def lonlat_to_pixel(tms: TileMatrixSet, z: int, lon: float, lat: float) -> tuple[float, float]:
    """Fractional (x, y) pixel of a lon/lat point in level `z`'s global pixel space."""
    m = tms.level(z)
    ps = tms.pixel_size(z)
    if tms.geographic:
        return (lon - m.top_left[0]) / ps, (m.top_left[1] - lat) / ps
    mx, my = lonlat_to_mercator(lon, lat)
    return (mx - m.top_left[0]) / ps, (m.top_left[1] - my) / ps


def pixel_to_lonlat(tms: TileMatrixSet, z: int, x: float, y: float) -> tuple[float, float]:
    """Lon/lat of the (fractional) pixel corner (x, y) at level `z`."""
    m = tms.level(z)
    ps = tms.pixel_size(z)
    if tms.geographic:
        return m.top_left[0] + x * ps, m.top_left[1] - y * ps
    return mercator_to_lonlat(m.top_left[0] + x * ps, m.top_left[1] - y * ps)


def lonlat_to_mercator(lon: float, lat: float) -> tuple[float, float]:
    """EPSG:4326 degrees -> EPSG:3857 metres (latitude clamped to the Web Mercator limit)."""
    lat = max(-WEB_MERCATOR_MAX_LAT, min(WEB_MERCATOR_MAX_LAT, lat))
    x = lon / 180.0 * WEB_MERCATOR_HALF
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) / math.pi * WEB_MERCATOR_HALF
    return x, y


def mercator_to_lonlat(x: float, y: float) -> tuple[float, float]:
    """EPSG:3857 metres -> EPSG:4326 degrees."""
    lon = x / WEB_MERCATOR_HALF * 180.0
    lat = math.degrees(2 * math.atan(math.exp(y / WEB_MERCATOR_HALF * math.pi)) - math.pi / 2)
    return lon, lat


# ------------------------------------------------------------------ regions -> pixels and tiles
@dataclass(frozen=True)
class MercatorPixelRegion(PixelRegion):
    """A PixelRegion on a Web Mercator level: rows map to latitude non-linearly."""

    tms: TileMatrixSet | None = None
    level: int = 0

    def window_bbox(self, win: Window) -> tuple[float, float, float, float]:
        assert self.tms is not None
        x0 = (self.col0 + win.col) % self.world_width
        west, north = pixel_to_lonlat(self.tms, self.level, x0, self.row0 + win.row)
        east, south = pixel_to_lonlat(self.tms, self.level, x0 + win.width, self.row0 + win.row + win.height)
        if east > 180.0 + 1e-9:
            east -= 360.0
        return (round(west, 9), round(south, 9), round(east, 9), round(north, 9))


def region_to_pixels(tms: TileMatrixSet, z: int, region: BBox) -> PixelRegion:
    """The pixels of level `z` covering `region`, snapped outward; wraps at the antimeridian.

    EPSG:4326 uses the same grid rule as BlueMarbleSource, so chips of both line up exactly.
    """
    if tms.geographic:
        return region_pixels(region, tms.pixel_size(z))
    h, w = tms.world_shape(z)
    x0, y0 = lonlat_to_pixel(tms, z, region.west, region.north)
    x1, y1 = lonlat_to_pixel(tms, z, region.east, region.south)
    eps = 1e-6  # metres -> pixels through the scale denominator loses ~1e-7 px
    row0 = max(0, math.floor(y0 + eps))
    row1 = min(h, math.ceil(y1 - eps))
    col0 = math.floor(x0 + eps) % w
    col1 = math.ceil(x1 - eps)
    width = (w - col0) + col1 if region.crosses_antimeridian else col1 - col0
    if width <= 0:
        width = w
    return MercatorPixelRegion(row0, row1, col0, max(1, min(width, w)), w, h, tms.degrees_per_pixel(z),
                               tms=tms, level=z)


@dataclass(frozen=True)
class TileRange:
    """Tiles rows [row0, row1) x cols [col0, col1) of one level; never crosses the antimeridian."""

    level: int
    row0: int
    row1: int
    col0: int
    col1: int

    def tiles(self) -> Iterable[tuple[int, int]]:
        """(row, col) of every tile in the range, row-major."""
        for r in range(self.row0, self.row1):
            for c in range(self.col0, self.col1):
                yield r, c

    def __len__(self) -> int:
        return max(0, self.row1 - self.row0) * max(0, self.col1 - self.col0)


def pixel_region_tiles(tms: TileMatrixSet, z: int, pr: PixelRegion) -> list[TileRange]:
    """Tile ranges covering a pixel region: two ranges when it wraps past the antimeridian."""
    m = tms.level(z)
    r0, r1 = pr.row0 // m.tile_height, min(m.matrix_height, -(-pr.row1 // m.tile_height))
    spans = [(pr.col0, min(pr.col0 + pr.width, pr.world_width))]
    if pr.col0 + pr.width > pr.world_width:
        spans.append((0, pr.col0 + pr.width - pr.world_width))
    out = []
    for a, b in spans:
        c0, c1 = a // m.tile_width, min(m.matrix_width, -(-b // m.tile_width))
        out.append(TileRange(z, r0, r1, c0, c1))
    return out


def region_tiles(tms: TileMatrixSet, z: int, region: BBox | tuple[float, float, float, float]) -> list[TileRange]:
    """Region -> tile rows/cols at level `z`; an antimeridian-crossing region gives two ranges."""
    region = BBox.coerce(region)
    return pixel_region_tiles(tms, z, region_to_pixels(tms, z, region))


def tile_bbox(tms: TileMatrixSet, z: int, row: int, col: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of one tile (may extend past 180/-90 on GIBS's 4326 grid)."""
    m = tms.level(z)
    west, north = pixel_to_lonlat(tms, z, col * m.tile_width, row * m.tile_height)
    east, south = pixel_to_lonlat(tms, z, (col + 1) * m.tile_width, (row + 1) * m.tile_height)
    return west, south, east, north


def paste_tile(mosaic: np.ndarray, pr: PixelRegion, tile: np.ndarray | None, row: int, col: int,
               tile_width: int, tile_height: int, mask: np.ndarray | None = None) -> int:
    """Copy the part of tile (row, col) inside `pr` into `mosaic` (tile None: only mark `mask`);
    sets `mask` True where the tile lands, so failed tiles can be tracked. Returns pixels covered."""
    ty0, tx0 = row * tile_height, col * tile_width
    y0, y1 = max(ty0, pr.row0), min(ty0 + tile_height, pr.row1)
    covered = 0
    if y1 <= y0:
        return 0
    # the region's columns, as world columns, in one or two contiguous spans
    for offset, (a, b) in _col_spans(pr):
        x0, x1 = max(tx0, a), min(tx0 + tile_width, b)
        if x1 <= x0:
            continue
        dy, dx = y0 - pr.row0, offset + (x0 - a)
        if tile is not None:
            th, tw = tile.shape[:2]
            src = tile[y0 - ty0:min(y1 - ty0, th), x0 - tx0:min(x1 - tx0, tw)]
            mosaic[dy:dy + src.shape[0], dx:dx + src.shape[1]] = src
        if mask is not None:
            mask[dy:dy + (y1 - y0), dx:dx + (x1 - x0)] = True
        covered += (y1 - y0) * (x1 - x0)
    return covered


def _col_spans(pr: PixelRegion) -> list[tuple[int, tuple[int, int]]]:
    """[(offset in the mosaic, (world col start, world col end))] for the region's columns."""
    end = pr.col0 + pr.width
    if end <= pr.world_width:
        return [(0, (pr.col0, end))]
    first = pr.world_width - pr.col0
    return [(0, (pr.col0, pr.world_width)), (first, (0, end - pr.world_width))]
