"""Searches at any scale: tile-grid bucket voting, and a model store that picks the run per resolution.

A query image larger than a chip (a zoomed-out context view) is cut into a grid of chip-scale
tiles; each tile is searched, and chips score by their votes (Borda: a rank-r hit among the
`per_tile` results of a tile adds `(per_tile - r + 1) / per_tile`), optionally per parent group.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import CuratorError
from .voting import tile_grid, vote  # noqa: F401 - the voting primitives, re-exported

Embedder = Callable[[list[np.ndarray]], np.ndarray]


def tile_vote_search(ws: Any, run: str, image: Any, grid: int = 2, k: int = 20, *, per_tile: int | None = None,
                     overlap: float = 0.0, filters: Mapping[str, Any] | None = None,
                     exclude: Sequence[int] | np.ndarray | None = None, group_by: str | None = None,
                     embed: Embedder | None = None) -> Any:
    """Search with a query larger than a chip: tile it `grid` x `grid`, search each tile
    (`per_tile` results, default 3k), and rank chips by their votes. `group_by` (a manifest
    column, e.g. 'origin') votes for parent images and returns each group's best chip.
    `embed` maps a list of tiles to vectors (default: the run's model)."""
    from .index import tile_search

    return tile_search(ws, run, image, grid, k, per_tile=per_tile, overlap=overlap, filters=filters,
                       exclude=exclude, group_by=group_by, embed=embed)


# ------------------------------------------------------------------------------ model store per resolution
STORE = "model_store"


def register_resolution(ws: Any, run: str, gsd: float, filters: Mapping[str, Any] | None = None) -> None:
    """Record that embedding run `run` was trained on chips of `gsd` (metres, or degrees, per pixel).
    `filters` (as in `search`, e.g. {'layer': ...}) name the chips at that resolution when one
    workspace holds several levels; a search with the picked run stays among them."""
    from .index import filter_mask, read_embeddings

    if not (isinstance(gsd, (int, float)) and math.isfinite(gsd) and gsd > 0):
        raise CuratorError(f"gsd={gsd!r} must be a positive number", "give the chips' ground size per pixel, e.g. 0.3")
    read_embeddings(ws, run)  # the run must exist
    entry: dict[str, Any] = {"gsd": float(gsd)}
    if filters:
        mask = filter_mask(ws, filters)  # unknown keys and bad values fail here, not at search time
        if mask is not None and not mask.any():
            raise CuratorError(f"the filters {dict(filters)} match no chip", "give the filters of the chips at this gsd")
        entry["filters"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in filters.items()}
    ws.record(STORE, run, entry)


def resolutions(ws: Any) -> dict[str, float]:
    """The model store: run -> ground sampling distance (read from disk: another process may have added one)."""
    from .workspace import _read_meta

    return {run: float(v["gsd"]) for run, v in (_read_meta(ws.root / "workspace.json").get(STORE) or {}).items()}


def pick_run(ws: Any, gsd: float) -> str:
    """The registered run whose GSD is nearest the query's (on a log scale: 2x off either way is equal)."""
    store = resolutions(ws)
    if not store:
        raise CuratorError("no run is registered in the model store",
                           "register runs with register_resolution(ws, run, gsd) or `curator multires register`")
    if not (isinstance(gsd, (int, float)) and gsd > 0):
        raise CuratorError(f"query gsd={gsd!r} must be a positive number", "give the query's ground size per pixel")
    return min(sorted(store), key=lambda r: abs(math.log(store[r] / gsd)))


def run_filters(ws: Any, run: str) -> dict[str, Any]:
    """The filters registered with `run` in the model store (empty: every chip)."""
    from .workspace import _read_meta

    entry = (_read_meta(ws.root / "workspace.json").get(STORE) or {}).get(run) or {}
    return dict(entry.get("filters") or {})


def resolution_search(ws: Any, image: Any, gsd: float, k: int = 20, *, filters: Mapping[str, Any] | None = None,
                      **kw: Any) -> Any:
    """Search with the run trained nearest the query's resolution (the paper's model store), among
    the chips registered with that run; `filters` narrow them further."""
    from .index import search

    run = pick_run(ws, gsd)
    merged = run_filters(ws, run)
    clash = sorted(set(merged) & set(filters or {}))
    if clash:
        raise CuratorError(f"filter(s) {clash} are already set by run {run!r} in the model store",
                           "filter on other keys, or register the run with the narrower filters")
    merged.update(filters or {})
    res = search(ws, run, image=image, k=k, filters=merged or None, **kw)
    res.params["picked_for_gsd"] = float(gsd)
    return res
