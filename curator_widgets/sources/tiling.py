"""Cutting a raster into chips: one grid rule shared by every source."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import CuratorError

Boundary = Literal["shift", "partial", "discard"]
BOUNDARIES = ("shift", "partial", "discard")


@dataclass(frozen=True)
class Window:
    """A chip window in raster pixels: top row, left column, size, and grid position."""

    row: int
    col: int
    height: int
    width: int
    grid_row: int
    grid_col: int


def _starts(length: int, size: int, stride: int, boundary: Boundary) -> list[int]:
    starts = list(range(0, max(length - size, 0) + 1, stride))
    last_end = starts[-1] + size
    if last_end < length:
        if boundary == "shift":
            starts.append(length - size)
        elif boundary == "partial":
            s = starts[-1] + stride
            while s < length:
                starts.append(s)
                s += stride
    return starts


def check_tiling(size: int, overlap: float, boundary: str) -> int:
    """Validate tiling parameters and return the stride in pixels."""
    if int(size) != size or size < 8:
        raise CuratorError(f"chip size {size} is too small or not an integer", "use a chip size of at least 8 pixels, e.g. 64 or 256")
    if not (0.0 <= overlap < 1.0):
        raise CuratorError(f"overlap {overlap} is outside [0, 1)", "give overlap as a fraction of the chip, e.g. 0.25")
    if boundary not in BOUNDARIES:
        raise CuratorError(f"unknown boundary handling {boundary!r}", f"use one of {', '.join(BOUNDARIES)}")
    return max(1, int(round(size * (1.0 - overlap))))


def grid_windows(height: int, width: int, size: int, overlap: float = 0.0,
                 boundary: Boundary = "shift") -> list[Window]:
    """Chip windows over a `height` x `width` raster.

    `shift` moves the last row/column of chips back inside the raster, `partial` keeps
    chips that run past the edge (the caller pads them), `discard` drops them.
    """
    stride = check_tiling(size, overlap, boundary)
    if size > height or size > width:
        raise CuratorError(
            f"chip size {size} px is larger than the region ({width} x {height} px)",
            "choose a smaller chip size, a larger region, or a finer zoom level",
        )
    rows = _starts(height, size, stride, boundary)
    cols = _starts(width, size, stride, boundary)
    return [Window(r, c, min(size, height - r), min(size, width - c), i, j)
            for i, r in enumerate(rows) for j, c in enumerate(cols)]


def cut(raster: np.ndarray, win: Window, size: int, fill: int = 0) -> np.ndarray:
    """The window's pixels as a `size` x `size` chip, padded with `fill` past the edge."""
    chip = raster[win.row:win.row + win.height, win.col:win.col + win.width]
    if chip.shape[0] == size and chip.shape[1] == size:
        return np.ascontiguousarray(chip)
    out = np.full((size, size) + raster.shape[2:], fill, dtype=raster.dtype)
    out[:chip.shape[0], :chip.shape[1]] = chip
    return out


def snap_span(start: int, length: int, size: int, stride: int, limit: int) -> tuple[int, int]:
    """Grow pixels [start, start + length) outward so chip windows start on multiples of `stride`
    counted from the tile matrix's origin; returns (start, length), never past `limit`."""
    s = (start // stride) * stride
    steps = max(0, math.ceil((start + length - s - size) / stride))
    end = min(s + steps * stride + size, max(limit, s + size))
    return s, end - s


def snap_region(pr: Any, size: int, overlap: float = 0.0) -> Any:
    """The pixel region grown to the global chip grid, so the same place is always the same chip.

    Without it a box drawn inside an existing region cuts chips offset by a few pixels from the
    ones already downloaded: overlapping images under new ids ("0 already there").
    """
    stride = check_tiling(size, overlap, "shift")
    if pr.row1 - pr.row0 < size or pr.width < size:
        return pr  # smaller than one chip: grid_windows says so, rather than silently growing the box
    row0, height = snap_span(pr.row0, pr.row1 - pr.row0, size, stride, pr.world_height)
    if pr.width >= pr.world_width:
        return dataclasses.replace(pr, row0=row0, row1=row0 + height)
    col0, width = snap_span(pr.col0, pr.width, size, stride, pr.col0 + pr.world_width)
    return dataclasses.replace(pr, row0=row0, row1=row0 + height, col0=col0 % pr.world_width,
                               width=min(width, pr.world_width))
