"""JPEG thumbnails of workspace chips, cached on disk beside the chips (`.cache/thumbs/<size>/`).

Used by the HTTP endpoint and by the widgets' comm fallback alike. The chip's path comes from
the manifest by integer id, so a request can never name a file; only the workspace folder is
taken from the URL (see `safepath.resolve_workspace`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes
from ..errors import CuratorError

SIZES = (64, 128, 256, 512)
QUALITY = 85
CACHE_DIR = Path(".cache") / "thumbs"


def snap_size(size: int | str | None) -> int:
    """The smallest served size >= `size` (bounds the number of cached variants)."""
    try:
        s = int(size) if size not in (None, "") else 128
    except (TypeError, ValueError):
        raise CuratorError(f"thumbnail size {size!r} is not a number", f"use one of {SIZES}") from None
    if s < 1 or s > 4096:
        raise CuratorError(f"thumbnail size {s} is out of range", f"use one of {SIZES}")
    return next((c for c in SIZES if c >= s), SIZES[-1])


class _PathIndex:
    """Chip paths of a workspace by id, re-read only when manifest.parquet changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int], list[str]]] = {}

    def paths(self, root: Path) -> list[str]:
        manifest = root / "manifest.parquet"
        try:
            st = manifest.stat()
        except FileNotFoundError:
            raise CuratorError(f"{root} has no manifest.parquet", "open a folder made by Workspace.create") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(root)
            if hit and hit[0] == stamp:
                return hit[1]
        import pyarrow.parquet as pq

        paths = pq.read_table(manifest, columns=["path"]).column("path").to_pylist()
        with self._lock:
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[root] = (stamp, paths)
        return paths


PATHS = _PathIndex()


def chip_source(root: Path, chip_id: int) -> Path:
    """Absolute path of chip `chip_id`'s image; an unknown id is a CuratorError."""
    paths = PATHS.paths(root)
    if not (0 <= chip_id < len(paths)):
        raise CuratorError(f"chip id {chip_id} is not in this workspace (ids are 0..{len(paths) - 1})",
                           "use an id from ws.manifest['id']")
    p = Path(paths[chip_id])
    return p if p.is_absolute() else root / p


def etag_for(src: Path, chip_id: int, size: int) -> str:
    """A validator that changes whenever the chip file changes."""
    st = src.stat()
    key = f"{src}|{st.st_mtime_ns}|{st.st_size}|{chip_id}|{size}|{QUALITY}"
    return '"' + hashlib.sha1(key.encode()).hexdigest()[:20] + '"'


def cache_file(root: Path, chip_id: int, size: int) -> Path:
    return root / CACHE_DIR / str(size) / f"{chip_id // 1000:05d}" / f"{chip_id:08d}.jpg"


def make_thumbnail(src: Path, size: int) -> bytes:
    """Decode, shrink to fit `size` (never enlarge), encode as JPEG."""
    from PIL import Image

    from ..images import encode, read_image

    img = Image.fromarray(read_image(src))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode(np.asarray(img), "JPEG", quality=QUALITY)


def thumbnail(root: Path, chip_id: int, size: int) -> tuple[bytes, str]:
    """(JPEG bytes, ETag) for one chip, from the disk cache when it is newer than the chip."""
    root = Path(root)
    size = snap_size(size)
    src = chip_source(root, int(chip_id))
    if not src.exists():
        raise CuratorError(f"chip {chip_id}'s image is missing: {src}", "restore the file or re-run the ingest")
    etag = etag_for(src, chip_id, size)
    cached = cache_file(root, chip_id, size)
    try:
        if cached.stat().st_mtime_ns >= src.stat().st_mtime_ns:
            return cached.read_bytes(), etag
    except FileNotFoundError:
        pass
    data = make_thumbnail(src, size)
    try:
        write_bytes(cached, data, fsync=False)
    except OSError:
        pass  # a read-only workspace still gets thumbnails, just not cached ones
    return data, etag


def thumbnail_bytes(ws: Any, chip_id: int, size: int = 128) -> bytes:
    """Thumbnail bytes for a Workspace (or its folder)."""
    from ..workspace import Workspace

    root = ws.root if isinstance(ws, Workspace) else Path(ws)  # (a Path's own .root is "/")
    return thumbnail(root, int(chip_id), size)[0]


def clear_cache(root: str | os.PathLike) -> int:
    """Delete the cached thumbnails of a workspace; returns how many files went."""
    import shutil

    d = Path(root) / CACHE_DIR
    n = sum(1 for _ in d.rglob("*.jpg")) if d.exists() else 0
    shutil.rmtree(d, ignore_errors=True)
    return n
