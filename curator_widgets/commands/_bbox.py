"""What the CLI says about a `--bbox` before using it."""

from __future__ import annotations

from typing import Sequence


def say_antimeridian(bbox: Sequence[float] | None) -> None:
    """West > east is a box across the antimeridian (STAC/GeoJSON): say so, so a swapped pair is noticed."""
    if not bbox:
        return
    from ..bbox import BBox

    box = BBox.coerce(bbox)
    if box.crosses_antimeridian:
        print(f"note: box crosses the antimeridian: {box.width:g}° wide (west {box.west:g} > east {box.east:g}); "
              "swap them if you meant the box between")
