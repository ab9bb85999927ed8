"""Swath-gap filling: from the same place on the nearest other dates, or from surrounding pixels.

MODIS orbits leave black no-data wedges near the equator; a model trained on them groups chips
by their wedges (the Curator paper's Fig. 3). The adjacent-day fill copies real pixels of the
nearest date that saw the place; what no date saw falls back to the nearest-pixel fill.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import CuratorError
from ..sources.quality import _max_min, _rgb, fill_swath_gaps, nodata_mask, widen_gap

SWATH_METHODS = ("nearest", "inpaint", "adjacent")
SYNTHESIZED = -1  # provenance of a pixel made up from its neighbours


def fill_gaps(image: np.ndarray, method: str = "adjacent", others: Sequence[np.ndarray] = (),
              gap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fill the no-data of `image`; return the filled copy and per-pixel provenance
    (0: the image itself, i >= 1: `others[i - 1]`, SYNTHESIZED: filled from neighbours).

    `others` are the same place on other dates, nearest date first (used by `adjacent`).
    """
    if method not in SWATH_METHODS:
        raise CuratorError(f"unknown swath fill method {method!r}", f"use one of {', '.join(SWATH_METHODS)}")
    a = _rgb(image)
    gap = widen_gap(a, nodata_mask(a) if gap is None else np.asarray(gap, bool))
    prov = np.zeros(a.shape[:2], np.int16)
    out = a.copy()
    if method == "adjacent":
        todo = gap.copy()
        for i, other in enumerate(others, start=1):
            o = _rgb(other)
            if o.shape != a.shape:
                raise CuratorError(f"the adjacent date's chip is {o.shape}, this chip {a.shape}: mismatched grids",
                                   "cut every date with the same level and chip size")
            ok = todo & ~nodata_mask(o, _mx=_max_min(o)[0])
            out[ok] = o[ok]
            prov[ok] = i
            todo &= ~ok
            if not todo.any():
                return out, prov
        gap = todo
        if not gap.any():
            return out, prov
    filled = fill_swath_gaps(out, gap, method="inpaint" if method == "inpaint" else "nearest", halo=0, grow=0)
    prov[gap] = SYNTHESIZED
    return filled, prov
