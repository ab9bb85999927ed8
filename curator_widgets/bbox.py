"""Regions as (west, south, east, north) degrees; west > east means the box crosses the antimeridian."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import CuratorError


@dataclass(frozen=True)
class BBox:
    """A lon/lat box in degrees (EPSG:4326). West > east crosses the antimeridian."""

    west: float
    south: float
    east: float
    north: float

    def __post_init__(self) -> None:
        w, s, e, n = self.west, self.south, self.east, self.north
        for name, v, lo, hi in (("west", w, -180, 180), ("east", e, -180, 180),
                                ("south", s, -90, 90), ("north", n, -90, 90)):
            if not (lo <= float(v) <= hi):
                raise CuratorError(
                    f"bbox {name}={v} is out of range [{lo}, {hi}]",
                    "give the box as (west, south, east, north) in degrees, longitudes in "
                    "[-180, 180] and latitudes in [-90, 90]",
                )
        if s >= n:
            raise CuratorError(
                f"bbox south={s} is not below north={n}",
                "order is (west, south, east, north): swap south and north",
            )
        if w == e:
            raise CuratorError(f"bbox has zero width (west == east == {w})",
                               "give a box with west != east; for the whole world use (-180, -90, 180, 90)")

    @classmethod
    def coerce(cls, value: "BBox | Sequence[float] | str") -> "BBox":
        """Accept a BBox, a 4-sequence or a 'W,S,E,N' string."""
        if isinstance(value, BBox):
            return value
        if isinstance(value, str):
            parts = value.replace(",", " ").split()
            try:
                value = [float(p) for p in parts]
            except ValueError:
                raise CuratorError(f"bbox {value!r} is not four numbers",
                                   "write it as 'W,S,E,N', e.g. '-20,10,40,35'") from None
        vals = list(value)
        if len(vals) != 4:
            raise CuratorError(f"bbox needs 4 numbers (west, south, east, north), got {len(vals)}",
                               "pass e.g. (-20, 10, 40, 35)")
        try:
            return cls(*(float(v) for v in vals))
        except (TypeError, ValueError) as e:
            if isinstance(e, CuratorError):
                raise
            raise CuratorError(f"bbox {vals!r} is not four numbers",
                               "pass e.g. (-20, 10, 40, 35) or 'W,S,E,N'") from None

    @property
    def crosses_antimeridian(self) -> bool:
        return self.west > self.east

    @property
    def width(self) -> float:
        """Longitude extent in degrees, across the antimeridian when needed."""
        return (self.east - self.west) % 360 or 360.0

    @property
    def height(self) -> float:
        return self.north - self.south

    def split(self) -> list["BBox"]:
        """The box as one or two boxes that do not cross the antimeridian."""
        if not self.crosses_antimeridian:
            return [self]
        return [BBox(self.west, self.south, 180.0, self.north), BBox(-180.0, self.south, self.east, self.north)]

    def contains(self, lon: float, lat: float) -> bool:
        if not (self.south <= lat <= self.north):
            return False
        if self.crosses_antimeridian:
            return lon >= self.west or lon <= self.east
        return self.west <= lon <= self.east

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    def __iter__(self) -> Iterable[float]:  # type: ignore[override]
        return iter(self.as_tuple())


WORLD = BBox(-180.0, -90.0, 180.0, 90.0)


def wrap_lon(lon: float) -> float:
    """Longitude folded into [-180, 180)."""
    return ((lon + 180.0) % 360.0) - 180.0
