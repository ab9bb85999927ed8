"""A Workspace is one folder holding every artefact of a curation project (see docs/concepts.md)."""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from . import manifest as _manifest
from .atomic import write_json
from .bbox import BBox
from .errors import CuratorError
from .images import read_image, write_image
from .sources.base import Chip, IngestResult, Source

FORMAT = "curator-workspace"
VERSION = 1
CHIPS_PER_FOLDER = 1000
# a chip file 00000042.png, or the temp file of an interrupted atomic write of one
_CHIP_FILE = re.compile(r"(?:(\.)([0-9]{8})\.[a-z]+\..+\.tmp|()([0-9]{8})\.[a-z]+)")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Workspace:
    """One curation project on disk. Use `Workspace.create`, `Workspace.open` or `Workspace.open_or_create`."""

    def __init__(self, root: str | os.PathLike, _meta: dict[str, Any]):
        self.root = Path(root).resolve()
        self._meta = _meta
        self._table: pa.Table | None = None
        self._frame: pd.DataFrame | None = None

    # ---------------------------------------------------------------- life cycle
    @classmethod
    def create(cls, root: str | os.PathLike, description: str = "", exist_ok: bool = False) -> "Workspace":
        """Make a new workspace folder; an existing workspace is opened only with `exist_ok=True`."""
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise CuratorError(f"{root} is a file, not a folder", "choose a new folder path for the workspace")
        if (root / "workspace.json").exists():
            if not exist_ok:
                raise CuratorError(f"{root} is already a workspace",
                                   "use Workspace.open(path) to resume it, or choose a new folder")
            return cls.open(root)
        if root.exists() and not _only_a_killed_create(root):
            raise CuratorError(f"{root} exists and is not empty (and is not a workspace)",
                               "choose a new or empty folder so nothing there is overwritten")
        try:
            for sub in _SKELETON:
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CuratorError(f"cannot create a workspace at {root}: {e.strerror}",
                               "choose a folder you can write to") from None
        meta = {"format": FORMAT, "version": VERSION, "created": _now(), "description": description,
                "sources": [], "parameters": {}, "runs": {},
                "provenance": {"curator_widgets": _package_version(), "python": platform.python_version(),
                               "platform": platform.platform()}}
        _manifest.write(root / "manifest.parquet", _manifest.rows_to_table([]))
        write_json(root / "workspace.json", meta)  # last: its presence means the workspace is whole
        return cls(root, meta)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Workspace":
        """Open an existing workspace to resume work; never modifies anything on open."""
        root = Path(root).expanduser()
        path = root / "workspace.json"
        if not path.exists():
            raise CuratorError(f"{root} is not a workspace (no workspace.json)",
                               "create one with Workspace.create(path) or `curator demo --workspace PATH`")
        meta = _read_meta(path)
        return cls(root, meta)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike, description: str = "") -> "Workspace":
        """Resume the workspace at `root`, creating it if the folder is new or empty."""
        return cls.create(root, description=description, exist_ok=True)

    # ---------------------------------------------------------------- paths
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def labels_path(self) -> Path:
        return self.root / "labels.sqlite"

    def model_dir(self, run: str) -> Path:
        return self.root / "models" / _check_run(run)

    def embeddings_path(self, run: str) -> Path:
        return self.root / "embeddings" / f"{_check_run(run)}.npy"

    def index_path(self, run: str) -> Path:
        return self.root / "index" / f"{_check_run(run)}.faiss"

    def projection_path(self, run: str) -> Path:
        return self.root / "projections" / f"{_check_run(run)}.npy"

    def chip_file(self, chip_id: int, ext: str = "png") -> Path:
        """Where a chip cut by an ingest lives: chips/<id // 1000>/<id>.png."""
        return self.root / "chips" / f"{chip_id // CHIPS_PER_FOLDER:05d}" / f"{chip_id:08d}.{ext}"

    # ---------------------------------------------------------------- metadata
    @property
    def meta(self) -> dict[str, Any]:
        """The parsed workspace.json (read-only view; use `record` to change it)."""
        return json.loads(json.dumps(self._meta))

    def record(self, section: str, key: str, value: Any) -> None:
        """Set `workspace.json[section][key] = value` atomically, merging with concurrent writers."""
        with self._lock():
            meta = _read_meta(self.root / "workspace.json")
            meta.setdefault(section, {})[key] = value
            write_json(self.root / "workspace.json", meta)
            self._meta = meta

    def _append_source(self, entry: dict[str, Any]) -> None:
        with self._lock():
            meta = _read_meta(self.root / "workspace.json")
            meta.setdefault("sources", []).append(entry)
            write_json(self.root / "workspace.json", meta)
            self._meta = meta

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive advisory lock so two processes never interleave manifest writes."""
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- manifest
    def table(self) -> pa.Table:
        """The manifest as a pyarrow Table (cached until the next write)."""
        if self._table is None:
            self._table = _manifest.read(self.manifest_path)
        return self._table

    @property
    def manifest(self) -> pd.DataFrame:
        """The manifest as a pandas DataFrame indexed 0..N-1 by chip id."""
        if self._frame is None:
            self._frame = self.table().to_pandas()
        return self._frame

    def __len__(self) -> int:
        return self.table().num_rows

    def resolve(self, path: str) -> Path:
        """A manifest path as an absolute path (relative ones are inside the workspace)."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def chip_path(self, chip_id: int) -> Path:
        """Absolute path of chip `chip_id`'s image."""
        self._check_id(chip_id)
        return self.resolve(self.table().column("path")[int(chip_id)].as_py())

    def load_chip(self, chip_id: int) -> np.ndarray:
        """Chip pixels as HxWx3 uint8."""
        return read_image(self.chip_path(chip_id))

    def _check_id(self, chip_id: int) -> None:
        n = len(self)
        if not (0 <= int(chip_id) < n):
            raise CuratorError(f"chip id {chip_id} is not in this workspace (ids are 0..{n - 1})",
                               "use an id from ws.manifest['id']")

    def add_chips(self, chips: Iterable[Chip], flush_every: int = 2048, progress: bool | str = True,
                  total: int | None = None, flush_seconds: float = 2.0) -> IngestResult:
        """Append chips (writing their images) to the manifest; chips whose key exists are skipped.

        Images are written before their manifest rows, and rows are flushed atomically every
        `flush_every` chips or `flush_seconds` (more when a flush itself is slow: at most a fifth
        of the time goes to flushing), so a crash loses seconds of work and never earlier rows.
        Chip files a killed run wrote past the manifest are removed first (they are re-cut).
        """
        from .progress import progress_bar as tqdm

        result = IngestResult()
        with self._lock():
            self._table = self._frame = None
            table = self.table()
            known = set(table.column("key").to_pylist())
            next_id = table.num_rows
            self._remove_orphan_chips(next_id)
            pending: list[dict[str, Any]] = []
            bar = tqdm(chips, total=total, desc=progress if isinstance(progress, str) else "chips",
                       unit="chip", disable=not progress, leave=False)
            last_flush, flush_cost = time.monotonic(), 0.0

            def flush() -> None:
                nonlocal table, last_flush, flush_cost
                if pending:
                    t0 = time.monotonic()
                    table = pa.concat_tables([table, _manifest.rows_to_table(pending)], promote_options="default")
                    _manifest.write(self.manifest_path, table)
                    pending.clear()
                    last_flush = time.monotonic()
                    flush_cost = last_flush - t0

            for chip in bar:
                if chip.key in known:
                    result.existing += 1
                    continue
                cid = next_id
                if chip.path is not None:
                    path = Path(chip.path).resolve()
                    rel = str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)
                elif chip.image is not None:
                    path = self.chip_file(cid)
                    write_image(path, chip.image)
                    rel = str(path.relative_to(self.root))
                else:
                    raise CuratorError(f"chip {chip.key} has neither pixels nor a file", "a Source must set image or path")
                pending.append({**chip.meta, "id": cid, "key": chip.key, "path": rel})
                known.add(chip.key)
                result.ids.append(cid)
                result.added += 1
                next_id += 1
                if len(pending) >= flush_every or time.monotonic() - last_flush >= max(flush_seconds, 4 * flush_cost):
                    flush()
            flush()
            self._table, self._frame = table, None
        return result

    def _remove_orphan_chips(self, first_free: int) -> int:
        """Delete chip files (and temp files) with ids >= `first_free`: written by a killed ingest
        after its last manifest flush, so no row points at them and the resumed run re-cuts them."""
        removed = 0
        chips = self.root / "chips"
        if not chips.is_dir():
            return 0
        for folder in chips.iterdir():
            if not (folder.name.isdigit() and folder.is_dir() and not folder.is_symlink()
                    and int(folder.name) >= first_free // CHIPS_PER_FOLDER):
                continue
            for f in folder.iterdir():
                m = _CHIP_FILE.fullmatch(f.name)
                if m and (m.group(1) is not None or int(m.group(4)) >= first_free):
                    f.unlink(missing_ok=True)
                    removed += 1
        return removed

    def ingest(self, source: Source, region: BBox | Sequence[float] | None = None,
               dates: Sequence[str] | str | None = None, size: int | None | str = "auto", overlap: float = 0.0,
               boundary: str = "shift", progress: bool = True, client: Any = None) -> IngestResult:
        """Cut chips from `source` into this workspace; re-running adds only what is missing.

        `size="auto"` is the source's own default: a folder's images whole, at their own size
        (used in place); 256 px chips for map sources. An ingest that adds and finds nothing
        is an error that says why (e.g. every image smaller than the chip size). With a Dask
        cluster (`client=`, $CURATOR_DASK_SCHEDULER or the current Client) the source's pieces
        (GIBS dates, groups of folder images) are cut on its workers; the ids are the same.
        """
        from .cluster import get_client

        if size == "auto":
            size = getattr(source, "default_size", 256)
        if size is not None and (isinstance(size, (bool, str)) or int(size) != size or int(size) < 1):
            raise CuratorError(f"chip size {size!r} is not a positive number of pixels",
                               "pass e.g. size=64 or 256 (or size=None to use whole images)")
        region_t = None if region is None else BBox.coerce(region).as_tuple()
        cluster = get_client(client)
        if cluster is not None:
            from .cluster_ingest import cluster_ingest

            result = cluster_ingest(self, source, cluster, region_t, dates, size, overlap, boundary, progress)
        else:
            result = self.add_chips(source.chips(region=region_t, dates=dates, size=size, overlap=overlap,
                                                 boundary=boundary),
                                    progress=f"{source.name} chips" if progress else False)
        result.skipped = list(source.errors)
        if result.added == 0 and result.existing == 0:
            reasons = sorted({e.reason for e in result.skipped})
            why = (f"all {len(result.skipped)} inputs were skipped: " + "; ".join(reasons[:3])) if reasons \
                else "the source yielded no chips for this region, dates and size" + _stats(source)
            fix = ("use a smaller size, or size=None for whole images at their own size"
                   if any("larger than" in r for r in reasons) else
                   "check the inputs named above (corrupt or unreadable files are skipped)" if reasons else
                   "widen the region or dates, or choose a smaller chip size")
            raise CuratorError(f"nothing was ingested from {source.name}: {why}", fix)
        self._append_source({**source.describe(), "region": region_t, "dates": dates, "size": size,
                             "overlap": overlap, "boundary": boundary, "added": result.added,
                             "existing": result.existing, "skipped": len(result.skipped), "time": _now()})
        return result

    # ---------------------------------------------------------------- summary
    def describe(self) -> dict[str, Any]:
        """Counts and paths a person wants to see first."""
        df = self.manifest
        out: dict[str, Any] = {"path": str(self.root), "version": self._meta.get("version"), "chips": len(df),
                               "sources": sorted(df["source"].dropna().unique().tolist()) if len(df) else []}
        if len(df) and df["land_fraction"].notna().any():
            lf = df["land_fraction"].dropna()
            out["ocean_chips"] = int((lf < 0.5).sum())
            out["land_chips"] = int((lf >= 0.5).sum())
            out["ocean_share"] = round(float((lf < 0.5).mean()), 4)
            out["mean_land_fraction"] = round(float(lf.mean()), 4)
        if len(df) and df["label"].notna().any():
            out["labels"] = int(df["label"].nunique())
        out["runs"] = sorted(self._meta.get("runs", {}))
        return out

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r}, chips={len(self)})"


def _stats(source: Source) -> str:
    """A source's own counters (e.g. GIBS's blank chips dropped), when it keeps any."""
    stats = {k: v for k, v in (getattr(source, "stats", None) or {}).items() if v}
    return f" ({', '.join(f'{k}: {v}' for k, v in stats.items())})" if stats else ""


_SKELETON = ("chips", "models", "embeddings", "index", "projections")


def _only_a_killed_create(root: Path) -> bool:
    """Whether `root` holds nothing but what an interrupted `create` makes (empty folders, an empty
    manifest, temp files), so a re-run may finish it; anything else is someone's data."""
    for p in root.iterdir():
        if p.name in _SKELETON and p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
            continue
        if p.name.startswith((".manifest.parquet.", ".workspace.json.")) and p.name.endswith(".tmp"):
            continue
        if p.name == "manifest.parquet" and _empty_manifest(p):
            continue
        return False
    return True


def _empty_manifest(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows == 0
    except Exception:  # pyarrow raises several types for damaged files
        return False


def _check_run(run: str) -> str:
    if not run or any(c in run for c in "/\\") or run.startswith("."):
        raise CuratorError(f"run name {run!r} is not a plain name", "use letters, digits, '-' or '_', e.g. 'simclr-small'")
    return run


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CuratorError(f"{path} is corrupt ({e})",
                           "restore workspace.json from a backup; chips and manifest are untouched") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CuratorError(f"{path} is not a curator workspace file", "open the folder that `curator demo` or Workspace.create made")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CuratorError(f"workspace {path.parent} has format version {version}, newer than this curator_widgets "
                           f"(supports up to {VERSION})", "upgrade: pip install -U curator-widgets")
    return meta


def _package_version() -> str:
    try:
        from importlib.metadata import version
        return version("curator-widgets")
    except Exception:
        return "unknown"
