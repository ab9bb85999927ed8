"""Georeferenced chips: PNG + world file (.pgw) + .prj (EPSG:4326), which QGIS / GDAL place on the
map. No GeoTIFF writer (rasterio, tifffile) is a dependency, and a world file needs none."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from ..errors import CuratorError
from ..images import encode, read_image
from .common import add_imported, curated, file_name, split_name
from .dest import Payload, write_files

if TYPE_CHECKING:
    from ..labels import LabelStore

WGS84_WKT = ('GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
             'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]')


def world_file(west: float, south: float, east: float, north: float, width: int, height: int) -> str:
    """The six lines of an ESRI world file: pixel size, rotation, centre of the upper-left pixel."""
    dx, dy = (east - west) / width, -(north - south) / height
    return "\n".join(f"{v:.12f}" for v in (dx, 0.0, 0.0, dy, west + dx / 2, north + dy / 2)) + "\n"


def export_geo(store: "LabelStore", dest: str | os.PathLike, sources: Sequence[str] | None = None,
               include_unsure: bool = False) -> Path:
    """Write dest/<label>/<id>_<name>.png with .pgw and .prj beside each."""
    df = curated(store, sources, include_unsure)
    files: list[tuple[str, Payload]] = []
    for row in df.itertuples(index=False):
        if pd.isna(row.west):
            raise CuratorError(f"chip {row.id} has no bounds, so it cannot be georeferenced",
                               "export chips with bounds (GIBS / georeferenced sources), or use another format")
        img = read_image(row.path)
        stem = f"{row.label}/{Path(file_name(row.id, row.path)).stem}"
        files.append((f"{stem}.png", encode(img, "PNG")))
        files.append((f"{stem}.pgw", world_file(row.west, row.south, row.east, row.north,
                                                img.shape[1], img.shape[0]).encode()))
        files.append((f"{stem}.prj", (WGS84_WKT + "\n").encode()))
    return write_files(dest, "geo", files)


def read_world_file(path: str | os.PathLike, width: int, height: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of an image of `width` x `height` px from its world file."""
    try:
        a, _, _, e, c, f = (float(x) for x in Path(path).read_text().split())
    except (ValueError, OSError) as err:
        raise CuratorError(f"{path} is not a world file ({err})", "it must hold six numbers") from None
    west, north = c - a / 2, f - e / 2
    return west, north + e * height, west + a * width, north


def import_geo(store: "LabelStore", path: str | os.PathLike) -> int:
    """Labels of a georeferenced export: the folder names each chip's label, the file name its id."""
    root = Path(path).expanduser()
    pngs = sorted(p for p in root.glob("*/*.png") if not p.parent.name.startswith("."))
    if not pngs:
        raise CuratorError(f"{root} holds no <label>/<id>_<name>.png chips", "pass a geo export folder")
    ids, names = zip(*(split_name(p.stem) for p in pngs))
    originals = [Path(store.workspace.manifest.iloc[c]["path"]).stem if store.workspace is not None
                 and 0 <= c < len(store.workspace) else None for c in ids]
    for p, name, orig in zip(pngs, names, originals):
        if orig is not None and name != orig:
            raise CuratorError(f"{p}: chip {split_name(p.stem)[0]} is {orig!r} in this workspace, not {name!r}",
                               "import into the workspace the set was exported from; nothing was written")
    return add_imported(store, list(ids), [p.parent.name for p in pngs], origin=str(root))
