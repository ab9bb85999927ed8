"""NASA GIBS imagery behind the Source interface: pick a layer, a region and dates, get chips.

Flow per date: validate dates against the layer's time dimension, plan the tiles covering the
region (two ranges across the antimeridian), download them concurrently into the tile cache,
mosaic them band by band, cut chips with the shared tiling rule, and assess each chip
(blank / swath gap / clouds). Chips that touch a tile that failed are held back, so a re-run
completes them instead of keeping a damaged chip.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..bbox import WORLD, BBox
from ..errors import CuratorError
from ..images import read_image
from .base import Chip, Source
from .catalog import (GIBS_BASE_URLS, Catalog, Layer, base_url_of, capabilities_url, load_catalog)
from .download import DownloadReport, TileDownloader, TileRequest, offline_error
from .geogrid import PixelRegion
from .quality import FILL_METHODS, QualityOptions, assess, fill_swath_gaps, nodata_mask
from .tilematrix import TileMatrixSet, paste_tile, pixel_region_tiles, region_to_pixels
from .tiling import Boundary, Window, cut, grid_windows, snap_region

DEFAULT_LAYER = "MODIS_Terra_CorrectedReflectance_TrueColor"
BAND_BYTES = 256 * 2 ** 20  # mosaic memory per band; big regions are cut band by band


class GIBSSource(Source):
    """Chips from a GIBS layer (or any WMTS server with GIBS's REST layout, e.g. the loopback one).

    `capabilities` is a capabilities file or URL (default: `{base_url}/1.0.0/WMTSCapabilities.xml`);
    `level` defaults to the layer's finest level. `fill` ('nearest'/'inpaint') fills swath gaps;
    blank chips are dropped unless `keep_blank`.
    """

    name = "gibs"

    def __init__(self, layer: str = DEFAULT_LAYER, *, level: int | None = None, tile_matrix_set: str | None = None,
                 base_url: str | None = None, capabilities: str | os.PathLike | None = None,
                 catalog: Catalog | None = None, cache: str | os.PathLike | None = None, concurrency: int = 16,
                 retries: int = 3, timeout: float = 30.0, quality: QualityOptions | None = None,
                 fill: str | None = None, keep_blank: bool = False, max_tiles: int = 20000,
                 refresh_catalog: bool = False, progress: bool = True):
        super().__init__()
        if fill is not None and fill not in FILL_METHODS:
            raise CuratorError(f"unknown swath fill method {fill!r}", f"use one of {', '.join(FILL_METHODS)}, or None")
        cache_root = Path(cache).expanduser() if cache is not None else None
        if catalog is None:
            catalog = load_catalog(capabilities, base_url=base_url, cache=cache_root, refresh=refresh_catalog,
                                   timeout=timeout)
        self.catalog = catalog
        self.layer: Layer = catalog.get(layer)
        if self.layer.format not in ("image/jpeg", "image/png"):
            raise CuratorError(f"layer {self.layer.identifier} serves {self.layer.format}, not JPEG or PNG imagery",
                               "pick an imagery layer (`curator gibs layers --show ID` lists its formats)")
        self.tms: TileMatrixSet = catalog.tile_matrix_set_for(self.layer, tile_matrix_set)
        if self.tms.crs not in ("EPSG:4326", "EPSG:3857"):
            raise CuratorError(f"tile matrix set {self.tms.identifier} is in {self.tms.crs}; only EPSG:4326 and "
                               "EPSG:3857 are supported", "use the epsg4326 or epsg3857 GIBS endpoint")
        top = self.layer.max_level(self.tms)
        self.level = top if level is None else int(level)
        if not (0 <= self.level <= top):
            raise CuratorError(f"level {level} is not served for {self.layer.identifier} "
                               f"({self.tms.identifier} levels 0..{top})", f"pick a level between 0 and {top}")
        self.base_url = (base_url or base_url_of(catalog.source) or GIBS_BASE_URLS[self.tms.crs]).rstrip("/")
        self.template = self._template()
        self.quality = quality or QualityOptions()
        self.fill = fill
        self.keep_blank = keep_blank
        self.max_tiles = int(max_tiles)
        self.downloader = TileDownloader(self.template, cache_root / "tiles" if cache_root else None,
                                         concurrency=concurrency, retries=retries, timeout=timeout, progress=progress)
        self.reports: list[DownloadReport] = []
        self.stats: Counter = Counter()

    # -------------------------------------------------------------- description
    def _template(self) -> str:
        """The layer's RESTful template rebased on `base_url`; GIBS's layout when none is given."""
        lid = self.layer.identifier
        tpl = self.layer.templates.get(self.layer.format) or next(iter(self.layer.templates.values()), None)
        if tpl and f"/{lid}/" in tpl:
            return self.base_url + tpl[tpl.index(f"/{lid}/"):].replace(f"/{lid}/", "/{Layer}/", 1)
        return self.base_url + "/{Layer}/default/{Time}/{TileMatrixSet}/{TileMatrix}/{TileRow}/{TileCol}." + \
            self.layer.extension

    @property
    def ext(self) -> str:
        return self.template.rsplit(".", 1)[-1]

    @property
    def pixel_size(self) -> float:
        """Degrees of longitude per pixel at the chosen level (the manifest's pixel_size)."""
        return self.tms.degrees_per_pixel(self.level)

    def describe(self) -> dict:
        return {"source": self.name, "layer": self.layer.identifier, "tile_matrix_set": self.tms.identifier,
                "level": self.level, "base_url": self.base_url, "catalog": self.catalog.source,
                "template": self.template, "fill": self.fill, "keep_blank": self.keep_blank,
                "downloads": [r.summary() for r in self.reports]}

    # -------------------------------------------------------------- planning
    def plan(self, region: BBox | Sequence[float] | None = None, dates: Sequence[str] | str | None = None,
             size: int = 256, overlap: float = 0.0,
             boundary: Boundary = "shift") -> tuple[list[str], PixelRegion, list[Window], list[TileRequest]]:
        """Everything checked before a single request: dates, region pixels, chip windows, tiles."""
        if size is None:
            raise CuratorError("GIBS chips need a size", "pass size=256 (or 128, 512...)")
        region = WORLD if region is None else BBox.coerce(region)
        if not _overlaps(region, self.layer.bbox):
            raise CuratorError(f"region {region.as_tuple()} lies outside {self.layer.identifier}'s extent "
                               f"{self.layer.bbox}", "move the box inside the layer's extent")
        dates_list = self.layer.resolve_dates(dates)
        pr = region_to_pixels(self.tms, self.level, region)
        if pr.height > 0:
            pr = snap_region(pr, size, overlap)  # chips on the tile matrix's grid: same place, same chip id
        if pr.height <= 0:
            raise CuratorError(f"region {region.as_tuple()} has no pixels in {self.tms.identifier}",
                               "Web Mercator stops at +-85.05 degrees latitude; move the box")
        windows = grid_windows(pr.height, pr.width, size, overlap, boundary)
        m = self.tms.level(self.level)
        tiles = [TileRequest(self.layer.identifier, "", self.tms.identifier, self.level, r, c, self.ext)
                 for rng in pixel_region_tiles(self.tms, self.level, pr) for r, c in rng.tiles()]
        total = len(tiles) * len(dates_list)
        if total > self.max_tiles:
            coarser = max(0, self.level - max(1, int(np.ceil(np.log2(total / self.max_tiles) / 2))))
            raise CuratorError(f"{self.layer.identifier} at level {self.level} needs {total} tiles "
                               f"({len(tiles)} x {len(dates_list)} dates) of {m.tile_width} px, more than "
                               f"max_tiles={self.max_tiles}",
                               f"use a coarser level (e.g. level={coarser}), a smaller region or fewer dates, "
                               "or raise max_tiles")
        return dates_list, pr, windows, tiles

    def partitions(self, region: BBox | Sequence[float] | None = None,
                   dates: Sequence[str] | str | None = None) -> list[dict]:
        """One piece per date, in the order `chips` visits them (each date is fetched and cut on its own)."""
        return [{"region": region, "dates": None if t == "default" else t}  # a static layer: one piece, no date
                for t in self.layer.resolve_dates(dates)]

    # -------------------------------------------------------------- chips
    def chips(self, region: BBox | Sequence[float] | None = None, dates: Sequence[str] | str | None = None,
              size: int | None = 256, overlap: float = 0.0, boundary: Boundary = "shift") -> Iterator[Chip]:
        """Yield chips of `size` px over `region` for each valid date (default: the layer's default date)."""
        dates_list, pr, windows, tiles = self.plan(region, dates, size, overlap, boundary)  # type: ignore[arg-type]
        for t in dates_list:
            reqs = [replace(r, time=t) for r in tiles]
            report = self.downloader.download(reqs, desc=f"{self.layer.identifier} {t} tiles")
            self.reports.append(report)
            if report.offline:
                raise offline_error(self.base_url, report)
            failed = {f.request for f in report.failed}
            where = f"{self.layer.identifier} {t}"
            if len(failed) == len(reqs):
                self.report(where, f"no tiles could be fetched ({report.summary()}); no chips for this date")
                continue
            if failed:
                self.report(where, f"{report.summary()}; chips touching failed tiles are held back: "
                                   "re-run the same ingest to fetch the rest")
            yield from self._cut(t, pr, windows, reqs, failed, size)  # type: ignore[arg-type]

    def _cut(self, t: str, pr: PixelRegion, windows: list[Window], reqs: list[TileRequest],
             failed: set[TileRequest], size: int) -> Iterator[Chip]:
        from .bluemarble import land_fraction

        m = self.tms.level(self.level)
        date = None if t == "default" else t
        for b0, b1, band_windows in _bands(windows, size, pr.width):
            band = replace(pr, row0=pr.row0 + b0, row1=pr.row0 + b1)
            mosaic = np.zeros((b1 - b0, pr.width, 3), dtype=np.uint8)
            missing = np.zeros((b1 - b0, pr.width), dtype=bool)
            for req in reqs:
                if (req.row + 1) * m.tile_height <= band.row0 or req.row * m.tile_height >= band.row1:
                    continue
                tile = None
                if req not in failed:
                    try:
                        tile = read_image(self.downloader.path(req))
                    except CuratorError as e:  # a cached file that does not decode: drop it so a re-run refetches
                        self.downloader.path(req).unlink(missing_ok=True)
                        self.report(req.key, f"{e.problem}; removed from the cache")
                        failed.add(req)
                if tile is None:
                    paste_tile(mosaic, band, None, req.row, req.col, m.tile_width, m.tile_height, missing)
                else:
                    paste_tile(mosaic, band, tile, req.row, req.col, m.tile_width, m.tile_height)
            for win in band_windows:
                local = replace(win, row=win.row - b0)
                if missing[local.row:local.row + win.height, win.col:win.col + win.width].any():
                    self.stats["held_back"] += 1
                    continue
                image = cut(mosaic, local, size)
                q = assess(image, self.quality)
                if "blank" in q.flags and not self.keep_blank:
                    self.stats["blank_dropped"] += 1
                    continue
                flags = (["partial"] if (win.height < size or win.width < size) else []) + q.flags
                if self.fill and "swath_gap" in q.flags:
                    gap = nodata_mask(image, self.quality.nodata_threshold, self.quality.min_gap_pixels)
                    image = fill_swath_gaps(image, gap, method=self.fill)  # type: ignore[arg-type]
                    flags.append("swath_filled")
                bbox = pr.window_bbox(win)
                top, left = pr.row0 + win.row, (pr.col0 + win.col) % pr.world_width
                self.stats["chips"] += 1
                yield Chip(
                    key=f"{self.name}:{self.layer.identifier}:{date or 'static'}:{self.tms.identifier}:"
                        f"{self.level}:{size}:{top}:{left}" + (f":{self.fill}" if self.fill else ""),
                    image=image,
                    meta={"source": self.name, "layer": self.layer.identifier, "date": date,
                          "west": bbox[0], "south": bbox[1], "east": bbox[2], "north": bbox[3],
                          "tile_matrix_set": self.tms.identifier, "tile_matrix": self.level,
                          "pixel_size": self.pixel_size, "width": size, "height": size, "x0": left, "y0": top,
                          "land_fraction": land_fraction(bbox), "cloud_fraction": q.cloud_fraction,
                          "origin": self.base_url, "flags": flags},
                )


def _overlaps(region: BBox, extent: tuple[float, float, float, float]) -> bool:
    """True when the region meets the layer's WGS84 extent (either may cross the antimeridian)."""
    w, s, e, n = extent
    if region.north <= s or region.south >= n:
        return False
    if w <= -180 and e >= 180:
        return True

    def spans(a: float, b: float) -> list[tuple[float, float]]:
        return [(a, b)] if a <= b else [(a, 180.0), (-180.0, b)]

    return any(a0 < b1 and b0 < a1 for a0, a1 in spans(region.west, region.east) for b0, b1 in spans(w, e))


def _bands(windows: list[Window], size: int, width: int) -> Iterator[tuple[int, int, list[Window]]]:
    """Group chip windows into horizontal bands of at most ~BAND_BYTES of mosaic (at least one chip row)."""
    max_rows = max(size, BAND_BYTES // max(1, width * 3))
    rows = sorted({w.row for w in windows})
    by_row: dict[int, list[Window]] = {}
    for w in windows:
        by_row.setdefault(w.row, []).append(w)
    start, group = None, []
    for r in rows:
        end = r + max(w.height for w in by_row[r])
        if start is not None and end - start > max_rows:
            yield start, max(w.row + w.height for w in group), group
            start, group = None, []
        if start is None:
            start = r
        group.extend(by_row[r])
    if group:
        yield start, max(w.row + w.height for w in group), group  # type: ignore[misc]


def gibs_capabilities_url(crs: str = "EPSG:4326") -> str:
    """The live GIBS 'best' capabilities URL for a CRS."""
    if crs not in GIBS_BASE_URLS:
        raise CuratorError(f"GIBS has no {crs} endpoint here", f"use one of {', '.join(GIBS_BASE_URLS)}")
    return capabilities_url(GIBS_BASE_URLS[crs])
