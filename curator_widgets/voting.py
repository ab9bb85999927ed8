"""Tile-grid bucket voting: cut a query into chip-scale tiles and pool the tiles' result lists.

Pure numpy, no index: `index.search(..., tiles=N)` and `multires` both build on it.
"""

from __future__ import annotations

import numpy as np

from .errors import CuratorError


def tile_grid(image: np.ndarray, grid: int = 2, overlap: float = 0.0) -> list[np.ndarray]:
    """`grid` x `grid` tiles of an HxWx3 image, row by row; `overlap` widens each tile by that fraction."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] < 3:
        raise CuratorError(f"a tile-voting query must be an HxWx3 image, got shape {a.shape}",
                           "pass one image (file path or array), not a batch")
    if not isinstance(grid, (int, np.integer)) or grid < 1:
        raise CuratorError(f"grid={grid!r} must be a positive integer", "use e.g. grid=2 for 2 x 2 tiles")
    if not 0.0 <= overlap < 1.0:
        raise CuratorError(f"overlap={overlap} is outside [0, 1)", "use e.g. 0.25")
    h, w = a.shape[:2]
    th, tw = h / grid, w / grid
    if th < 8 or tw < 8:
        raise CuratorError(f"a {h}x{w} image cut {grid}x{grid} gives tiles under 8 px", "use a smaller grid")
    py, px = th * overlap / 2, tw * overlap / 2
    tiles = []
    for r in range(grid):
        for c in range(grid):
            y0, y1 = max(0, int(round(r * th - py))), min(h, int(round((r + 1) * th + py)))
            x0, x1 = max(0, int(round(c * tw - px))), min(w, int(round((c + 1) * tw + px)))
            tiles.append(np.ascontiguousarray(a[y0:y1, x0:x1, :3]))
    return tiles


def vote(ids: np.ndarray, k: int, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bucket voting over per-tile result lists `ids` [tiles, per_tile] (-1 = none): the `k` best
    chips (or best chip of each group) with their Borda scores and how many tiles found them."""
    ids = np.asarray(ids, np.int64)
    per = ids.shape[1]
    weight = np.broadcast_to((per - np.arange(per, dtype=np.float64)) / per, ids.shape)
    ok = ids >= 0
    flat, w = ids[ok], weight[ok]
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64)
    uniq, inv = np.unique(flat, return_inverse=True)
    score = np.bincount(inv, weights=w)
    hits = np.bincount(inv)
    if groups is not None:
        g = np.asarray(groups)[uniq]
        gu, ginv = np.unique(g, return_inverse=True)
        gscore = np.bincount(ginv, weights=score)
        best = np.full(len(gu), -1, np.int64)
        order = np.lexsort((-score, ginv))  # best chip first within each group
        first = np.r_[True, ginv[order][1:] != ginv[order][:-1]]
        best[ginv[order][first]] = order[first]
        uniq, score, hits = uniq[best], gscore, np.bincount(ginv, weights=hits).astype(np.int64)
    top = np.lexsort((uniq, -score))[:k]
    return uniq[top], score[top].astype(np.float32), hits[top]
