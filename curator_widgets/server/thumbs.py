"""JPEG thumbnails of workspace chips, cached on disk beside the chips (`.cache/thumbs/<size>/`).

Used by the HTTP endpoint and by the widgets' comm fallback alike. The chip's path comes from
the manifest by integer id, so a request can never name a file; only the workspace folder is
taken from the URL (see `safepath.resolve_workspace`). The server passes its root as `jail`:
the manifest, the chip and the cache must then resolve inside it (a shared workspace's
manifest is untrusted), and errors name chip ids, never server paths.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes
from ..errors import CuratorError
from .safepath import Missing, contained

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
        except OSError:
            raise Missing("the workspace has no manifest.parquet", "open a folder made by Workspace.create") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(root)
            if hit and hit[0] == stamp:
                return hit[1]
        import pyarrow.parquet as pq

        try:
            paths = pq.read_table(manifest, columns=["path"]).column("path").to_pylist()
        except Exception:  # pyarrow raises several types for damaged files
            raise CuratorError("the workspace's manifest.parquet is unreadable",
                               "restore it from a backup or re-run the ingest") from None
        with self._lock:
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[root] = (stamp, paths)
        return paths


PATHS = _PathIndex()


def chip_source(root: Path, chip_id: int, jail: Path | None = None, allow_hidden: bool = True) -> Path:
    """Absolute path of chip `chip_id`'s image; an unknown id is Missing, one outside `jail` NotServed."""
    if jail is not None:
        contained(jail, Path(root) / "manifest.parquet", allow_hidden=allow_hidden, what="the manifest")
    paths = PATHS.paths(root)
    if not (0 <= chip_id < len(paths)):
        raise Missing(f"chip id {chip_id} is not in this workspace (ids are 0..{len(paths) - 1})",
                      "use an id from ws.manifest['id']")
    p = Path(paths[chip_id] or "")
    if jail is not None:
        return contained(jail, p if p.is_absolute() else Path(root) / p, allow_hidden=allow_hidden,
                         what=f"chip {chip_id}'s image")
    return p if p.is_absolute() else root / p


def etag_for(src: Path, chip_id: int, size: int) -> str:
    """A validator that changes whenever the chip file changes."""
    st = src.stat()
    key = f"{src}|{st.st_mtime_ns}|{st.st_size}|{chip_id}|{size}|{QUALITY}"
    return '"' + hashlib.sha1(key.encode()).hexdigest()[:20] + '"'


def cache_file(root: Path, chip_id: int, size: int) -> Path:
    return root / CACHE_DIR / str(size) / f"{chip_id // 1000:05d}" / f"{chip_id:08d}.jpg"


def make_thumbnail(src: Path, size: int, chip_id: int | None = None) -> bytes:
    """Decode, shrink to fit `size` (never enlarge), encode as JPEG; errors name the chip, not the path."""
    from PIL import Image

    from ..images import THUMB_MAX_PIXELS, ImageTooLarge, encode, read_image

    try:
        img = Image.fromarray(read_image(src, fit=size, max_pixels=THUMB_MAX_PIXELS))
    except ImageTooLarge:
        raise CuratorError(f"chip {chip_id}'s image is too large to thumbnail (the server decodes at most "
                           f"{THUMB_MAX_PIXELS:,} pixels)", "cut it into chips with an ingest (size=256)") from None
    except CuratorError:
        raise CuratorError(f"chip {chip_id}'s image cannot be decoded",
                           "the file is corrupt or not an image; replace it or re-run the ingest") from None
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode(np.asarray(img), "JPEG", quality=QUALITY)


def _inside(root: Path, path: Path) -> bool:
    """Whether the deepest existing ancestor of `path` (symlinks followed) lies inside `root`."""
    try:
        q = path
        while not os.path.lexists(q):
            q = q.parent
        return Path(os.path.realpath(q)).is_relative_to(root)
    except (OSError, ValueError):
        return False


def _read_cache(root: Path, cached: Path, newer_than: int) -> bytes | None:
    """The cached thumbnail if it is a plain file of ours inside the workspace and still fresh."""
    try:
        st = os.lstat(cached)
        if not stat.S_ISREG(st.st_mode) or not _inside(root, cached) or st.st_mtime_ns < newer_than:
            return None  # a planted symlink is never followed: re-rendered and replaced
        return cached.read_bytes()
    except OSError:
        return None


def thumbnail(root: Path, chip_id: int, size: int, jail: Path | None = None,
              allow_hidden: bool = True) -> tuple[bytes, str]:
    """(JPEG bytes, ETag) for one chip, from the disk cache when it is newer than the chip."""
    root = Path(os.path.realpath(root))
    size = snap_size(size)
    src = chip_source(root, int(chip_id), jail=jail, allow_hidden=allow_hidden)
    try:
        etag = etag_for(src, chip_id, size)
        mtime = src.stat().st_mtime_ns
    except OSError:
        raise Missing(f"chip {chip_id}'s image is missing", "restore the file or re-run the ingest") from None
    cached = cache_file(root, chip_id, size)
    data = _read_cache(root, cached, mtime)
    if data is not None:
        return data, etag
    data = make_thumbnail(src, size, chip_id)
    if _inside(root, cached):  # a .cache that links out of the workspace is never written through
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
