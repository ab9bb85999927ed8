"""Turning labels, clusters or scores into uint8 color codes + a palette (what the scatter draws).

Codes travel as one byte per point; continuous values are quantized into 256 bins of a
colormap, so a million colored points cost 1 MB on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import CuratorError

MISSING = "(none)"
MISSING_COLOR = "#bdbdbd"


@dataclass
class Coloring:
    """uint8 code per point, the palette the codes index, and legend entries (label, color)."""

    codes: np.ndarray
    palette: list[str]
    legend: list[tuple[str, str]]
    kind: str


def _hex(rgba: Sequence[float]) -> str:
    r, g, b = (int(round(float(c) * 255)) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def categorical_palette(k: int) -> list[str]:
    """k distinct colors (tab10 / tab20, then a hue wheel) as hex strings."""
    from matplotlib import colormaps

    if k <= 10:
        cmap = colormaps["tab10"]
        return [_hex(cmap(i)) for i in range(k)]
    if k <= 20:
        cmap = colormaps["tab20"]
        return [_hex(cmap(i)) for i in range(k)]
    cmap = colormaps["hsv"]
    return [_hex(cmap((i * 0.618034) % 1.0)) for i in range(k)]


def continuous_palette(name: str = "viridis", n: int = 256) -> list[str]:
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        raise CuratorError(f"unknown colormap {name!r}", "use a matplotlib colormap name such as 'viridis' or 'magma'") from None
    return [_hex(cmap(i / (n - 1))) for i in range(n)]


def categorical(values: Sequence[Any], palette: Sequence[str] | None = None, missing_name: str = MISSING) -> Coloring:
    """One color per distinct value (natural order; missing values grey, listed last).

    pandas.factorize keeps this O(n) in C: a million labels take milliseconds.
    """
    import pandas as pd

    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    raw_codes, uniques = pd.factorize(arr.ravel(), sort=False, use_na_sentinel=True)
    names = [str(u) for u in uniques]
    if len(names) > 255:
        raise CuratorError(f"{len(names)} categories are too many to color (max 255)",
                           "color by a coarser grouping (e.g. clusters), or by a score with kind='continuous'")
    order = sorted(range(len(names)), key=lambda i: _natural(names[i]))
    remap = np.empty(len(names) + 1, dtype=np.uint8)
    remap[order] = np.arange(len(names), dtype=np.uint8)
    remap[len(names)] = len(names)  # the missing code, after the real categories
    missing = raw_codes < 0
    codes = remap[np.where(missing, len(names), raw_codes)]
    present = [names[i] for i in order]
    has_missing = bool(missing.any())
    pal = list(palette) if palette else categorical_palette(len(present))
    if len(pal) < len(present):
        raise CuratorError(f"palette has {len(pal)} colors for {len(present)} categories", "pass at least one color per category")
    pal = pal[:len(present)] + ([MISSING_COLOR] if has_missing else [])
    legend = [(name, pal[i]) for i, name in enumerate(present)] + ([(missing_name, MISSING_COLOR)] if has_missing else [])
    return Coloring(codes.astype(np.uint8), pal, legend, "category")


def continuous(values: Sequence[float], cmap: str = "viridis", vmin: float | None = None,
               vmax: float | None = None, missing: str = MISSING) -> Coloring:
    """Values binned into 255 colors of `cmap` (NaN -> grey code 255)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        raise CuratorError("every value to color by is NaN or infinite", "pass real scores, or color by category")
    lo = float(np.nanmin(v[finite])) if vmin is None else float(vmin)
    hi = float(np.nanmax(v[finite])) if vmax is None else float(vmax)
    span = hi - lo if hi > lo else 1.0
    codes = np.full(v.shape, 255, dtype=np.uint8)
    codes[finite] = np.clip(np.round((v[finite] - lo) / span * 254), 0, 254).astype(np.uint8)
    pal = continuous_palette(cmap, 255) + [MISSING_COLOR]
    stops = [0, 63, 127, 191, 254]
    legend = [(f"{lo + span * s / 254:.3g}", pal[s]) for s in stops]
    if not finite.all():
        legend.append((missing, MISSING_COLOR))
    return Coloring(codes, pal, legend, "value")


def coloring(values: Sequence[Any], kind: str = "auto", **kwargs: Any) -> Coloring:
    """Pick categorical or continuous coloring ('auto': floats with > 20 distinct values are continuous)."""
    if kind not in ("auto", "category", "value"):
        raise CuratorError(f"unknown color kind {kind!r}", "use 'auto', 'category' or 'value'")
    if kind == "auto":
        arr = np.asarray(values)
        if arr.dtype.kind == "f" and len(np.unique(arr[np.isfinite(arr)])) > 20:
            kind = "value"
        else:
            kind = "category"
    if kind == "value":
        return continuous(values, **{k: v for k, v in kwargs.items() if k in ("cmap", "vmin", "vmax", "missing")})
    return categorical(values, palette=kwargs.get("palette"), missing_name=kwargs.get("missing", MISSING))


def _natural(s: str) -> tuple:
    """Sort '2' before '10' when categories are numbers."""
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)
