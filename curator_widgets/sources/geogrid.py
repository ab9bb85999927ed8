"""Lon/lat boxes <-> pixels on a global equirectangular grid anchored at (-180, 90).

GIBS EPSG:4326 tile matrices and the Blue Marble raster share this grid, so chips from
both carry identical bboxes for the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..bbox import BBox
from .tiling import Window

_EPS = 1e-9


@dataclass(frozen=True)
class PixelRegion:
    """Rows [row0, row1) and `width` columns from `col0` (wrapping at the antimeridian)."""

    row0: int
    row1: int
    col0: int
    width: int
    world_width: int
    world_height: int
    pixel_size: float

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    def columns(self) -> np.ndarray:
        """World column indices of the region, wrapped modulo the world width."""
        return (self.col0 + np.arange(self.width)) % self.world_width

    def window_bbox(self, win: Window) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a chip window inside this region."""
        ps = self.pixel_size
        west = -180.0 + ((self.col0 + win.col) % self.world_width) * ps
        east = west + win.width * ps
        if east > 180.0 + _EPS:
            east -= 360.0
        north = 90.0 - (self.row0 + win.row) * ps
        south = north - win.height * ps
        return (round(west, 9), round(south, 9), round(east, 9), round(north, 9))


def world_shape(pixel_size: float) -> tuple[int, int]:
    """(height, width) in pixels of the whole globe at `pixel_size` degrees per pixel."""
    return int(round(180.0 / pixel_size)), int(round(360.0 / pixel_size))


def region_pixels(region: BBox, pixel_size: float) -> PixelRegion:
    """The pixel rows/columns that cover `region`, snapped outward to whole pixels."""
    h, w = world_shape(pixel_size)
    row0 = max(0, math.floor((90.0 - region.north) / pixel_size + _EPS))
    row1 = min(h, math.ceil((90.0 - region.south) / pixel_size - _EPS))
    col0 = math.floor((region.west + 180.0) / pixel_size + _EPS) % w
    col1 = math.ceil((region.east + 180.0) / pixel_size - _EPS)
    if region.crosses_antimeridian:
        width = (w - col0) + col1
    else:
        width = col1 - col0
        if width <= 0:  # a full-globe box
            width = w
    return PixelRegion(row0, row1, col0, max(1, min(width, w)), w, h, pixel_size)


def region_mean(mask: np.ndarray, bbox: tuple[float, float, float, float]) -> float:
    """Mean of a global north-up raster `mask` over a lon/lat box (wrapping at the antimeridian)."""
    mh, mw = mask.shape[:2]
    ps = 360.0 / mw
    pr = region_pixels(BBox(*bbox), ps) if bbox[0] != bbox[2] else None
    if pr is None or pr.height <= 0:
        return float("nan")
    return float(mask[pr.row0:pr.row1][:, pr.columns()].mean())
