"""Cutting a raster into chips: one grid rule shared by every source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
