"""The preprocessing steps over a workspace: composites, cloud masks and swath fills.

Each step is resumable (work already on disk is skipped), shows a progress bar, and never
changes a chip image: composites and filled chips are new chips (flags `composite` and
`swath_filled`), cloud masks are sidecar files plus the manifest's `cloud_fraction` and
`cloudy` flag, so `filters={"max_cloud": 0.2}` works in search, sampling and active learning.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import CuratorError
from ..images import read_image, write_image
from ..sources.base import Chip
from ..sources.quality import QualityOptions, assess
from .composite import COMPOSITE_METHODS, composite
from .clouds import MASK_METHODS, detect_clouds
from .swaths import SWATH_METHODS, fill_gaps

GRID = ("layer", "tile_matrix_set", "tile_matrix", "width", "height", "x0", "y0")  # one place on one grid
DERIVED = ("composite", "swath_filled")  # flags of chips this module made (never inputs to a composite)


@dataclass
class StepResult:
    """What a step did: chips (or masks) written, found already done, and inputs it passed over."""

    added: int = 0
    existing: int = 0
    ids: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass
class Provenance:
    """Where each pixel of a derived chip came from: `index[y, x]` points into `dates` / `chip_ids`
    (-1: no date had data, or synthesized from neighbouring pixels)."""

    index: np.ndarray
    dates: list[str]
    chip_ids: list[int]
    method: str


def preprocess_dir(ws: Any) -> Path:
    return ws.root / "preprocess"


def provenance_path(ws: Any, key: str) -> Path:
    """Sidecar of a derived chip, named by a hash of its stable key (known before its id is)."""
    return preprocess_dir(ws) / "provenance" / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"


def cloud_mask_path(ws: Any, chip_id: int) -> Path:
    return preprocess_dir(ws) / "clouds" / f"{int(chip_id) // 1000:05d}" / f"{int(chip_id):08d}.png"


def load_provenance(ws: Any, chip_id: int) -> Provenance:
    """The per-pixel date provenance of a composite or filled chip."""
    ws._check_id(chip_id)
    key = ws.table().column("key")[int(chip_id)].as_py()
    path = provenance_path(ws, key)
    if not path.exists():
        raise CuratorError(f"chip {chip_id} has no provenance (it is not a composite or a filled chip)",
                           "make one with composite_chips(ws) or fill_swaths(ws)")
    with np.load(path) as z:
        return Provenance(z["index"], [str(d) for d in z["dates"]], [int(i) for i in z["chip_ids"]], str(z["method"]))


def load_cloud_mask(ws: Any, chip_id: int) -> np.ndarray:
    """The stored cloud mask of a chip (HxW bool)."""
    ws._check_id(chip_id)
    path = cloud_mask_path(ws, chip_id)
    if not path.exists():
        raise CuratorError(f"chip {chip_id} has no cloud mask yet", "run cloud_masks(ws) or `curator preprocess clouds`")
    return read_image(path)[..., 0] > 127


def _save_provenance(ws: Any, key: str, index: np.ndarray, dates: Sequence[str], ids: Sequence[int], method: str) -> None:
    from ..atomic import atomic_path

    with atomic_path(provenance_path(ws, key), suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, index=index.astype(np.int16), dates=np.array(list(dates)),
                                chip_ids=np.array(list(ids), np.int64), method=np.array(method))


def _rows(ws: Any, ids: Sequence[int] | None) -> list[dict[str, Any]]:
    ws._table = ws._frame = None  # another process (or Workspace object) may have added chips since
    table = ws.table()
    rows = table.to_pylist()
    if ids is None:
        return rows
    n = len(rows)
    bad = [int(i) for i in ids if not 0 <= int(i) < n]
    if bad:
        raise CuratorError(f"chip id(s) {bad[:5]} are not in this workspace (ids are 0..{n - 1})",
                           "use ids from ws.manifest['id']")
    return [rows[int(i)] for i in ids]


def _place(row: dict[str, Any]) -> tuple | None:
    key = tuple(row.get(c) for c in GRID)
    return None if any(v is None for v in key) else key


def _derived_meta(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    meta = {k: v for k, v in row.items() if k not in ("id", "key", "path")}
    meta.update(changes)
    return meta


def _dated_views(rows: list[dict[str, Any]], dates: tuple[str, str] | None, layer: str | None) -> list[dict[str, Any]]:
    out = [r for r in rows if not set(r.get("flags") or ()) & {*DERIVED, "blank"}]
    if layer is not None:
        out = [r for r in out if r.get("layer") == layer]
    return [r for r in out if r.get("date") and (dates is None or dates[0] <= str(r["date"])[:10] <= dates[1])]


def composite_chips(ws: Any, dates: Sequence[str] | str | None = None, method: str = "median", *,
                    layer: str | None = None, ids: Sequence[int] | None = None, cloud_method: str = "hysteresis",
                    progress: bool = True) -> StepResult:
    """One cloud-free chip per place seen on two or more dates (within `dates`=(start, end) when given).

    Adds chips flagged `composite` (date = the last date) and stores per-pixel provenance
    (`load_provenance`). Re-running skips places already composited with the same dates.
    """
    if method not in COMPOSITE_METHODS:
        raise CuratorError(f"unknown composite method {method!r}", f"use one of {', '.join(COMPOSITE_METHODS)}")
    span = _date_span(dates)
    rows = _rows(ws, ids)
    views = _dated_views(rows, span, layer)
    if not views:
        where = f" between {span[0]} and {span[1]}" if span else ""
        known = sorted({str(r["date"])[:10] for r in rows if r.get("date")})
        have = f"the workspace has dates {known[0]}..{known[-1]}" if known else "no chip in it has a date"
        raise CuratorError(f"no dated chips{where}{f' of layer {layer}' if layer else ''} to composite ({have})",
                           "download the region for several dates first, or widen --dates")
    places: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in views:
        p = _place(r)
        if p is not None:
            places[p].setdefault(str(r["date"])[:10], r)
    all_dates = sorted({str(r["date"])[:10] for r in views})
    multi = {p: v for p, v in places.items() if len(v) >= 2}
    if len(all_dates) < 2:
        raise CuratorError(f"only one date ({all_dates[0]}) to composite", "composites need two or more dates of the "
                           "same region: download more dates (`curator gibs download --dates START END`)")
    if not multi:
        raise CuratorError(f"the {len(all_dates)} dates ({all_dates[0]}..{all_dates[-1]}) were cut on mismatched grids: "
                           "no chip window appears on two dates", "download every date with the same layer, level, "
                           "chip size and region so the chips line up")
    result = StepResult(skipped=[f"{p}: one date only" for p, v in places.items() if len(v) < 2])
    known = set(ws.table().column("key").to_pylist())
    todo = []
    for p, by_date in sorted(multi.items(), key=lambda kv: (str(kv[0][0]), kv[0][5], kv[0][6])):
        ds = sorted(by_date)
        key = f"composite:{method}:{p[0]}:{p[1]}:{p[2]}:{p[3]}x{p[4]}:{p[6]}:{p[5]}:{ds[0]}/{ds[-1]}:{len(ds)}"
        if key in known:
            result.existing += 1
        else:
            todo.append((key, [by_date[d] for d in ds], ds))

    def make() -> Iterator[Chip]:
        for key, group, ds in todo:
            comp = composite([ws.load_chip(r["id"]) for r in group], method, cloud_method=cloud_method)
            _save_provenance(ws, key, comp.provenance, ds, [r["id"] for r in group], method)
            q = assess(comp.image)
            yield Chip(key, _derived_meta(group[-1], source="composite", date=ds[-1], cloud_fraction=q.cloud_fraction,
                                          origin=f"composite:{method}:{ds[0]}/{ds[-1]}", flags=["composite", *q.flags]),
                       image=comp.image)

    added = ws.add_chips(make(), total=len(todo), progress="composite chips" if progress else False)
    result.added, result.ids = added.added, added.ids
    return result


def fill_swaths(ws: Any, method: str = "adjacent", *, ids: Sequence[int] | None = None,
                progress: bool = True) -> StepResult:
    """A filled copy of every chip flagged `swath_gap` (flag `swath_filled`), with provenance.

    `adjacent` takes the gap's pixels from the same place on the nearest other dates and fills
    what none saw from neighbouring pixels; `nearest` / `inpaint` use neighbouring pixels only.
    """
    if method not in SWATH_METHODS:
        raise CuratorError(f"unknown swath fill method {method!r}", f"use one of {', '.join(SWATH_METHODS)}")
    rows = _rows(ws, None)
    chosen = _rows(ws, ids) if ids is not None else rows
    gaps = [r for r in chosen if "swath_gap" in (r.get("flags") or ()) and "blank" not in (r.get("flags") or ())]
    result = StepResult()
    if not gaps:
        result.skipped.append("no chip is flagged swath_gap")
        return result
    by_place: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in _dated_views(rows, None, None):
        p = _place(r)
        if p is not None:
            by_place[p].append(r)
    known = set(ws.table().column("key").to_pylist())
    todo = [r for r in gaps if f"{r['key']}:fill:{method}" not in known]
    result.existing = len(gaps) - len(todo)

    def neighbours(r: dict[str, Any]) -> list[dict[str, Any]]:
        p = _place(r)
        if method != "adjacent" or p is None or not r.get("date"):
            return []
        day = np.datetime64(str(r["date"])[:10])
        others = [o for o in by_place.get(p, []) if o["id"] != r["id"]]
        return sorted(others, key=lambda o: (abs(int((np.datetime64(str(o["date"])[:10]) - day).astype(int))), o["id"]))

    def make() -> Iterator[Chip]:
        for r in todo:
            near = neighbours(r)
            image, prov = fill_gaps(ws.load_chip(r["id"]), method, [ws.load_chip(o["id"]) for o in near])
            key = f"{r['key']}:fill:{method}"
            _save_provenance(ws, key, prov, [str(x.get("date") or "") for x in [r, *near]],
                             [x["id"] for x in [r, *near]], method)
            flags = [f for f in (r.get("flags") or []) if f != "swath_gap"] + ["swath_filled"]
            yield Chip(key, _derived_meta(r, flags=flags), image=image)

    added = ws.add_chips(make(), total=len(todo), progress="swath fills" if progress else False)
    result.added, result.ids = added.added, added.ids
    return result


def cloud_masks(ws: Any, method: str = "hysteresis", *, ids: Sequence[int] | None = None,
                cloudy_fraction: float | None = None, progress: bool = True) -> StepResult:
    """Write a cloud mask per chip and set the manifest's `cloud_fraction` and `cloudy` flag from it.

    Masks already on disk are reused, so an interrupted run resumes; `cloudy_fraction` defaults
    to QualityOptions().cloudy_fraction.
    """
    from ..progress import progress_bar as tqdm

    if method not in MASK_METHODS:
        raise CuratorError(f"unknown cloud mask method {method!r}", f"use one of {', '.join(MASK_METHODS)}")
    limit = QualityOptions().cloudy_fraction if cloudy_fraction is None else float(cloudy_fraction)
    if not 0.0 <= limit <= 1.0:
        raise CuratorError(f"cloudy_fraction={limit} is outside [0, 1]", "give it as a fraction, e.g. 0.5")
    rows = [r for r in _rows(ws, ids) if "blank" not in (r.get("flags") or ())]
    result = StepResult()
    fractions: dict[int, float | None] = {}
    for r in tqdm(rows, desc=f"cloud masks ({method})", unit="chip", disable=not progress, leave=False):
        path = cloud_mask_path(ws, r["id"])
        image = ws.load_chip(r["id"])
        if path.exists():
            mask = read_image(path)[..., 0] > 127
            result.existing += 1
        else:
            mask = detect_clouds(image, method)
            write_image(path, np.where(mask, 255, 0).astype(np.uint8))
            result.added += 1
        q = assess(image)
        valid = mask.size * (1.0 - q.nodata_fraction)
        fractions[r["id"]] = None if valid < 1 else float(min(1.0, mask.sum() / valid))
        result.ids.append(int(r["id"]))
    _update_cloud_columns(ws, fractions, limit)
    return result


def _update_cloud_columns(ws: Any, fractions: dict[int, float | None], limit: float) -> None:
    """Set cloud_fraction and the cloudy flag of these chips in one atomic manifest write."""
    import pyarrow as pa

    from .. import manifest as _manifest

    with ws._lock():
        ws._table = ws._frame = None
        table = ws.table()
        cf = table.column("cloud_fraction").to_pylist()
        flags = table.column("flags").to_pylist()
        for i, f in fractions.items():
            cf[i] = f
            rest = [x for x in (flags[i] or []) if x != "cloudy"]
            flags[i] = rest + (["cloudy"] if f is not None and f >= limit else [])
        schema = table.schema
        table = table.set_column(schema.get_field_index("cloud_fraction"), schema.field("cloud_fraction"),
                                 pa.array(cf, type=schema.field("cloud_fraction").type))
        table = table.set_column(schema.get_field_index("flags"), schema.field("flags"),
                                 pa.array(flags, type=schema.field("flags").type))
        _manifest.write(ws.manifest_path, table)
        ws._table, ws._frame = table, None


def _date_span(dates: Sequence[str] | str | None) -> tuple[str, str] | None:
    from ..index import _date

    if dates is None:
        return None
    ds = [dates] if isinstance(dates, str) else list(dates)
    if not 1 <= len(ds) <= 2:
        raise CuratorError(f"dates={dates!r} must be one date or (start, end)", "pass e.g. ('2020-09-01', '2020-09-10')")
    lo, hi = _date(ds[0]), _date(ds[-1])
    if lo > hi:
        raise CuratorError(f"date range {lo}..{hi} is reversed", f"pass ({hi}, {lo})")
    return lo, hi
