"""Ingest on a Dask cluster: a source's independent pieces (one GIBS date, one group of folder
images) are cut on the workers, each into its own chip folder and Parquet file (the partitioned
manifest, `manifest.parts/<piece>.parquet`, readable as one `pyarrow.dataset`); this process then
appends the pieces to the workspace manifest in the source's own order, so every chip gets the id a
single-process ingest gives it, and ids stay stable. A piece that finished without problems is
never cut again (a re-run, or a retry after a worker died, skips it); one with problems (failed
tiles, unreadable files) is cut again by the next run, as a single-process re-run would.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import CuratorError, warn_user
from .sources.base import Chip, IngestResult, Source, SourceError

PARTS = "manifest.parts"  # one Parquet file per finished piece
CHIP_PARTS = Path("chips") / "parts"  # the chips a piece wrote, one folder per piece


def piece_key(source: Source, i: int, kwargs: dict[str, Any], size: Any, overlap: float, boundary: str) -> str:
    """A file-safe name for piece `i`, different whenever the source, piece, chip size or grid differs."""
    ident = {k: v for k, v in source.describe().items() if k not in ("downloads",)}
    digest = hashlib.sha1(json.dumps([ident, kwargs, size, overlap, boundary], sort_keys=True,
                                     default=str).encode()).hexdigest()[:12]
    return f"{source.name}-{i:06d}-{digest}"


def _cut_piece(source: Source, kwargs: dict[str, Any], size: Any, overlap: float, boundary: str, root: str,
               key: str) -> dict[str, Any]:
    """Cut one piece on a worker: chips into chips/parts/<key>/, rows into manifest.parts/<key>.parquet
    (written last and atomically; marked complete when the piece had no problems). Nothing is deleted."""
    import pyarrow.parquet as pq

    import copy

    from . import manifest as _manifest
    from .atomic import atomic_path
    from .images import write_image

    source = copy.deepcopy(source)  # this piece's own problems and counters, even on a threaded worker
    base = Path(root)
    out = base / PARTS / f"{key}.parquet"
    if out.exists():
        meta = pq.read_schema(out).metadata or {}
        if meta.get(b"curator_complete") == b"1":
            return {"key": key, "skipped": True, "errors": [], "stats": {}, "reports": []}
    folder = base / CHIP_PARTS / key
    source.errors = []
    rows: list[dict[str, Any]] = []
    for chip in source.chips(**kwargs, size=size, overlap=overlap, boundary=boundary):
        if chip.image is not None:
            # named by its key: a retry or a re-cut of an unfinished piece rewrites the same chip's own file
            # (atomically), so rows an earlier run already put in the manifest keep pointing at their chips
            path = folder / f"{hashlib.sha1(chip.key.encode()).hexdigest()[:24]}.png"
            write_image(path, chip.image)
            rel = str(path.relative_to(base))
        elif chip.path is not None:
            rel = str(Path(chip.path).resolve())
        else:
            raise CuratorError(f"chip {chip.key} has neither pixels nor a file", "a Source must set image or path")
        rows.append({**chip.meta, "id": -1, "key": chip.key, "path": rel})
    errors = [(e.where, e.reason) for e in source.errors]
    table = _manifest.rows_to_table(rows)
    table = table.replace_schema_metadata({b"curator_complete": b"0" if errors else b"1",
                                           b"curator_errors": json.dumps(errors).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    stats = dict(getattr(source, "stats", {}) or {})
    return {"key": key, "skipped": False, "errors": errors, "stats": stats,
            "reports": list(getattr(source, "reports", []) or [])}


def _chips_of(root: Path, keys: Sequence[str]) -> Iterator[Chip]:
    """The pieces' rows as Chips (files in place), in piece order: what add_chips appends."""
    import pyarrow.parquet as pq

    for key in keys:
        for row in pq.read_table(root / PARTS / f"{key}.parquet").to_pylist():
            meta = {k: v for k, v in row.items() if k not in ("id", "key", "path")}
            path = Path(row["path"])
            yield Chip(key=row["key"], meta=meta, path=path if path.is_absolute() else root / path)


def cluster_ingest(ws: Any, source: Source, client: Any, region: Any, dates: Any, size: Any, overlap: float,
                   boundary: str, progress: bool = True) -> IngestResult:
    """Cut `source`'s pieces on the cluster's workers, then append them to `ws`'s manifest in order."""
    from .cluster import gather_with_bar

    pieces = source.partitions(region=region, dates=dates)
    keys = [piece_key(source, i, kw, size, overlap, boundary) for i, kw in enumerate(pieces)]
    token = hashlib.sha1(("|".join(keys) + str(ws.root)).encode()).hexdigest()[:10]
    futures = [client.submit(_cut_piece, source, kw, size, overlap, boundary, str(ws.root), key,
                             key=f"curator-ingest-{token}-{i}", pure=False, retries=3)
               for i, (kw, key) in enumerate(zip(pieces, keys))]
    try:
        done = gather_with_bar(client, futures, f"{source.name} pieces (cluster)", progress, unit="piece")
    finally:
        for f in futures:
            f.release()
    for d in done:  # what each worker's copy of the source saw, for the caller's summary and warnings
        for where, reason in d["errors"]:
            source.errors.append(SourceError(where, reason))
            warn_user(f"skipped {where}: {reason}")
        if d["stats"] and hasattr(source, "stats"):
            source.stats.update(d["stats"])
        if d["reports"] and hasattr(source, "reports"):
            source.reports.extend(d["reports"])
    total = sum(_rows_in(ws.root, k) for k in keys)
    return ws.add_chips(_chips_of(ws.root, keys), total=total,
                        progress=f"{source.name} chips" if progress else False)


def _rows_in(root: Path, key: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(root / PARTS / f"{key}.parquet").num_rows)


def parts_dataset(ws: Any) -> Any:
    """The partitioned manifest the workers wrote, as one pyarrow dataset (ids are in manifest.parquet)."""
    import pyarrow.dataset as ds

    folder = ws.root / PARTS
    if not folder.is_dir():
        raise CuratorError(f"{ws.root} has no {PARTS}/ folder", "ingest with a Dask cluster (client=) first")
    return ds.dataset(str(folder), format="parquet")
