"""The one interface every imagery source implements: chips out, with metadata."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..bbox import BBox
from ..errors import warn_user


@dataclass
class Chip:
    """One chip: pixels (or an existing file used in place) plus its manifest metadata.

    `key` is stable across runs so a re-run of an ingest adds only what is missing.
    """

    key: str
    meta: dict[str, Any]
    image: np.ndarray | None = None
    path: Path | None = None


@dataclass
class SourceError:
    """A file or tile that could not be read, kept for the summary instead of aborting."""

    where: str
    reason: str


class Source(ABC):
    """An imagery source. `chips(...)` yields Chip objects; problems go to `self.errors`."""

    name: str = "source"

    def __init__(self) -> None:
        self.errors: list[SourceError] = []

    @abstractmethod
    def chips(self, region: BBox | Sequence[float] | None = None, dates: Sequence[str] | str | None = None,
              size: int | None = 256, overlap: float = 0.0, boundary: str = "shift") -> Iterator[Chip]:
        """Yield chips of `size` px over `region` for each date, with `overlap` as a fraction."""

    def partitions(self, region: BBox | Sequence[float] | None = None,
                   dates: Sequence[str] | str | None = None) -> list[dict[str, Any]]:
        """Independent pieces of an ingest, as keyword arguments for `chips` (with size, overlap and
        boundary added), whose chips in this order are exactly the chips of one call: the unit a Dask
        worker cuts. One piece unless a source knows better (GIBS: a date; folders: groups of files)."""
        return [{"region": region, "dates": dates}]

    def describe(self) -> dict[str, Any]:
        """Parameters recorded in workspace.json for provenance."""
        return {"source": self.name}

    def report(self, where: str, reason: str) -> None:
        """Record an unreadable input and warn once per item; the ingest goes on."""
        self.errors.append(SourceError(str(where), reason))
        warn_user(f"skipped {where}: {reason}")


@dataclass
class IngestResult:
    """What an ingest did: chips added, chips already present, inputs skipped."""

    added: int = 0
    existing: int = 0
    skipped: list[SourceError] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
