"""Curated sets out to the tools people use next (STAC, georeferenced PNG, Hugging Face, FiftyOne,
Label Studio) and labels back in from them as `import` events: one call per format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import CuratorError
from .fiftyone import export_fiftyone, import_fiftyone
from .geo import export_geo, import_geo
from .hf import export_hf, import_hf
from .labelstudio import export_labelstudio, import_labelstudio
from .stac import export_stac, import_stac
from .table import import_table

if TYPE_CHECKING:
    from ..labels import LabelStore

EXPORTERS: dict[str, Callable[..., Path]] = {"stac": export_stac, "geo": export_geo, "hf": export_hf,
                                             "fiftyone": export_fiftyone, "labelstudio": export_labelstudio}
IMPORTERS: dict[str, Callable[["LabelStore", Any], int]] = {
    "stac": import_stac, "geo": import_geo, "hf": import_hf, "fiftyone": import_fiftyone,
    "labelstudio": import_labelstudio, "csv": import_table, "parquet": import_table}
FORMATS = tuple(EXPORTERS)


def export_labels(store: "LabelStore", format: str, dest: str | os.PathLike, sources: Sequence[str] | None = None,
                  include_unsure: bool = False, **options: Any) -> Path:
    """Write the curated set of `store` to folder `dest` in `format` (one of FORMATS); returns dest."""
    if format not in EXPORTERS:
        raise CuratorError(f"export format {format!r} is not one of {list(FORMATS)}",
                           "for CSV / Parquet use store.export(path); for label folders store.export_tree(dest)")
    return EXPORTERS[format](store, dest, sources=sources, include_unsure=include_unsure, **options)


def detect_format(path: str | os.PathLike) -> str:
    """Which export `path` is, from what it holds (catalog.json, labels.json, metadata, .pgw, tasks)."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() in (".csv", ".parquet"):
            return p.suffix.lower()[1:]
        if p.name == "catalog.json":
            return "stac"
        if p.name == "labels.json":
            return "fiftyone"
        if p.suffix.lower() == ".json":
            return "labelstudio"
    elif p.is_dir():
        checks = [("stac", "catalog.json"), ("fiftyone", "labels.json"), ("labelstudio", "tasks.json"),
                  ("hf", "metadata.*"), ("hf", "*/metadata.*"), ("geo", "*/*.pgw")]
        for fmt, pattern in checks:
            if any(p.glob(pattern)):
                return fmt
    raise CuratorError(f"cannot tell which export {p} is", f"pass format= one of {list(IMPORTERS)}")


def import_labels(store: "LabelStore", path: str | os.PathLike, format: str | None = None) -> int:
    """Record the labels in `path` (an export of any FORMATS, or a CSV / Parquet table) as events with
    source `import`, all or nothing; returns how many. Bad input raises CuratorError, writing nothing."""
    fmt = format or detect_format(path)
    if fmt not in IMPORTERS:
        raise CuratorError(f"import format {fmt!r} is not one of {list(IMPORTERS)}", "pass one of those")
    return IMPORTERS[fmt](store, path)


__all__ = ["export_labels", "import_labels", "detect_format", "FORMATS", "export_stac", "import_stac", "export_geo",
           "import_geo", "export_hf", "import_hf", "export_fiftyone", "import_fiftyone", "export_labelstudio",
           "import_labelstudio", "import_table"]
