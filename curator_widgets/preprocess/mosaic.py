"""A cloud-free composite of a whole region as one mosaic, with the date each pixel came from.

The dated chips of one layer and grid are pasted by their pixel origin (x0, y0) into one canvas
per date and composited band by band: each band is saved as it is done, so an interrupted run
resumes at the next band, and no band needs more than ~BAND_BYTES of stacked dates in memory.
Stored under `preprocess/mosaics/<name>/`: mosaic.png, provenance.npz, mosaic.json.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import CuratorError
from ..images import read_image, write_image
from .composite import COMPOSITE_METHODS, NO_DATE, composite

BAND_BYTES = 256 * 2 ** 20  # stacked dates of one band (uint8 RGB), at most


@dataclass
class RegionMosaic:
    """A stored region mosaic: `image` (HxWx3), `provenance` (HxW index into `dates`, -1: no date had
    data), where it sits on the layer's pixel grid (`x0`, `y0`), and the chips each date used."""

    name: str
    image: np.ndarray
    provenance: np.ndarray
    dates: list[str]
    chip_ids: dict[str, list[int]]
    meta: dict[str, Any]
    existing: bool = False

    def share(self) -> dict[str, float]:
        """Fraction of the mosaic's pixels taken from each date."""
        counts = np.bincount(self.provenance[self.provenance >= 0].ravel(), minlength=len(self.dates))
        return {d: float(c) / max(1, self.provenance.size) for d, c in zip(self.dates, counts)}


def mosaic_dir(ws: Any, name: str) -> Path:
    from .steps import preprocess_dir

    return preprocess_dir(ws) / "mosaics" / name


def composite_region(ws: Any, dates: Sequence[str] | str | None = None, method: str = "median", *,
                     layer: str | None = None, bbox: Sequence[float] | None = None, name: str | None = None,
                     cloud_method: str = "hysteresis", band_rows: int | None = None,
                     device: str | None = None, progress: bool = True) -> RegionMosaic:
    """Composite every dated chip of `layer` (within `dates` and `bbox`) into one mosaic of the region.

    Re-running with the same inputs returns the stored mosaic; an interrupted run resumes at the
    band it stopped in. `band_rows` caps the rows composited at once (default: by BAND_BYTES).
    `device` ("auto", "cuda", "cpu") picks each pixel's date with torch there; None: numpy.
    """
    from ..progress import progress_bar as tqdm
    from .steps import _date_span, _dated_views, _rows

    if method not in COMPOSITE_METHODS:
        raise CuratorError(f"unknown composite method {method!r}", f"use one of {', '.join(COMPOSITE_METHODS)}")
    span = _date_span(dates)
    rows = _rows(ws, _bbox_ids(ws, bbox))
    views = _dated_views(rows, span, layer)
    layers = sorted({str(r.get("layer")) for r in views})
    if not views:
        where = f" between {span[0]} and {span[1]}" if span else ""
        raise CuratorError(f"no dated chips{where}{f' of layer {layer}' if layer else ''}{' in that bbox' if bbox else ''}"
                           " to mosaic", "download the region for several dates first, or widen --dates / --bbox")
    if len(layers) > 1:
        raise CuratorError(f"the dated chips come from {len(layers)} layers ({', '.join(layers)})",
                           "choose one with layer=... (--layer)")
    grids = sorted({(str(r.get("tile_matrix_set")), r.get("tile_matrix")) for r in views})
    if len(grids) > 1 or any(r.get("x0") is None or r.get("y0") is None for r in views):
        raise CuratorError(f"the chips of {layers[0]} were cut on mismatched grids {grids}: their pixels do not line up",
                           "download every date at the same level (tile matrix), or pick the dates of one level")
    by_date: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(views, key=lambda r: r["id"]):
        by_date.setdefault(str(r["date"])[:10], []).append(r)
    ds = sorted(by_date)
    if len(ds) < 2:
        raise CuratorError(f"only one date ({ds[0]}) to composite", "composites need two or more dates of the "
                           "same region: download more dates (`curator gibs download --dates START END`)")
    x0 = min(int(r["x0"]) for r in views)
    y0 = min(int(r["y0"]) for r in views)
    w = max(int(r["x0"]) + int(r["width"]) for r in views) - x0
    h = max(int(r["y0"]) + int(r["height"]) for r in views) - y0
    name = name or f"{layers[0]}_{ds[0]}_{ds[-1]}_{method}"
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise CuratorError(f"mosaic name {name!r} has characters other than letters, digits, '-', '_' and '.'",
                           "name it e.g. 'coast-2020-09'")
    chip_ids = {d: [int(r["id"]) for r in by_date[d]] for d in ds}
    meta = {"name": name, "layer": layers[0], "tile_matrix_set": grids[0][0], "tile_matrix": grids[0][1],
            "x0": x0, "y0": y0, "width": w, "height": h, "dates": ds, "method": method, "cloud_method": cloud_method,
            "west": min(float(r["west"]) for r in views), "south": min(float(r["south"]) for r in views),
            "east": max(float(r["east"]) for r in views), "north": max(float(r["north"]) for r in views)}
    meta["inputs"] = hashlib.sha1(json.dumps([meta, chip_ids], sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = mosaic_dir(ws, name)
    done = _read_meta(out)
    if done is not None and done.get("inputs") == meta["inputs"]:
        return load_mosaic(ws, name, existing=True)
    if done is not None:
        raise CuratorError(f"a mosaic named {name!r} exists with other inputs (dates, chips or method)",
                           f"give this one another name, or delete {out} to replace it")
    rows_per_band = band_rows or max(1, BAND_BYTES // max(1, len(ds) * w * 3))
    bands = out / "bands"
    if bands.exists() and _read_json(bands / "inputs.json") != meta["inputs"]:
        shutil.rmtree(bands)  # parts of another run's inputs: start over
    bands.mkdir(parents=True, exist_ok=True)
    write_json(bands / "inputs.json", meta["inputs"])
    starts = list(range(0, h, rows_per_band))
    for b in tqdm(starts, desc=f"mosaic {name}", unit="band", disable=not progress, leave=False):
        part = bands / f"{b:08d}.npz"
        if part.exists():
            continue
        b1 = min(h, b + rows_per_band)
        stack = np.zeros((len(ds), b1 - b, w, 3), np.uint8)
        for t, d in enumerate(ds):
            for r in by_date[d]:
                ry, rx = int(r["y0"]) - y0, int(r["x0"]) - x0
                top, bottom = max(ry, b), min(ry + int(r["height"]), b1)
                if top < bottom:
                    chip = ws.load_chip(r["id"])[..., :3]
                    stack[t, top - b:bottom - b, rx:rx + chip.shape[1]] = chip[top - ry:bottom - ry]
        comp = composite(stack, method, cloud_method=cloud_method, device=device)
        with atomic_path(part, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, image=comp.image, provenance=comp.provenance)
    image = np.zeros((h, w, 3), np.uint8)
    prov = np.full((h, w), NO_DATE, np.int16)
    for b in starts:
        with np.load(bands / f"{b:08d}.npz") as z:
            image[b:b + len(z["image"])], prov[b:b + len(z["image"])] = z["image"], z["provenance"]
    if not (prov >= 0).any():
        raise CuratorError(f"no date had data anywhere in the {w}x{h} px region", "check the dates: every chip is no-data")
    write_image(out / "mosaic.png", image)
    with atomic_path(out / "provenance.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, index=prov, dates=np.array(ds), chip_ids=np.array(json.dumps(chip_ids)))
    write_json(out / "mosaic.json", meta)  # last: its presence means the mosaic is complete
    shutil.rmtree(bands, ignore_errors=True)
    ws.record("mosaics", name, {k: meta[k] for k in ("layer", "dates", "method", "width", "height")})
    return RegionMosaic(name, image, prov, ds, chip_ids, meta)


def load_mosaic(ws: Any, name: str, existing: bool = False) -> RegionMosaic:
    """A stored region mosaic with its per-pixel date provenance."""
    out = mosaic_dir(ws, name)
    meta = _read_meta(out)
    if meta is None:
        have = sorted(p.name for p in out.parent.iterdir() if (p / "mosaic.json").exists()) if out.parent.exists() else []
        raise CuratorError(f"no mosaic named {name!r} in this workspace" + (f" (it has {', '.join(have)})" if have else ""),
                           "make one with composite_region(ws) or `curator preprocess mosaic`")
    with np.load(out / "provenance.npz") as z:
        prov, ds, ids = z["index"], [str(d) for d in z["dates"]], json.loads(str(z["chip_ids"]))
    return RegionMosaic(name, read_image(out / "mosaic.png")[..., :3], prov, ds, ids, meta, existing=existing)


def _bbox_ids(ws: Any, bbox: Sequence[float] | None) -> list[int] | None:
    if bbox is None:
        return None
    from ..index import filter_mask

    return np.flatnonzero(filter_mask(ws, {"bbox": tuple(bbox)})).tolist()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_meta(out: Path) -> dict[str, Any] | None:
    meta = _read_json(out / "mosaic.json")
    return meta if isinstance(meta, dict) and (out / "mosaic.png").exists() and (out / "provenance.npz").exists() else None
