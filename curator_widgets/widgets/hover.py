"""What the EmbeddingView's hover card says about one point: chip id, label, score, source.

Looked up on demand (one comm request per rested hover), so a million points carry no
per-point strings to the browser.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: manifest columns the card shows as the chip's origin, in this order, when present
SOURCE_COLUMNS = ("source", "layer", "date")


def fmt(value: float) -> str:
    """A score as people read it: 3 decimals below 1, 2 above, no float noise."""
    v = float(value)
    if not np.isfinite(v):
        return "–"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:,.2f}"


def point_info(index: int, chip: int, values: np.ndarray | None, value_name: str, ws: Any,
               store: Any) -> dict[str, Any]:
    """The card's lines for point `index` (chip `chip`): plain strings, ready to show."""
    info: dict[str, Any] = {"index": int(index), "chip": int(chip)}
    if values is not None and 0 <= index < len(values):
        v = values[index]
        if isinstance(v, (float, np.floating)) and value_name:
            info["score"] = f"{value_name} {fmt(v)}"
        elif v is not None and not (isinstance(v, float) and np.isnan(v)):
            info["value"] = str(v)
    if store is not None:
        info["label"] = store.current().get(chip) or "unlabelled"
    if ws is not None and 0 <= chip < len(ws):
        row = ws.manifest.iloc[chip]
        parts = [str(row[c]) for c in SOURCE_COLUMNS if c in row.index and row[c] is not None and str(row[c]) not in ("", "nan", "None")]
        if parts:
            info["source"] = " · ".join(parts)
    return info
