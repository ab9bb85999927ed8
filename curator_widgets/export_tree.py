"""Laying a curated set out as `dest/<label>/<id>_<name>` links or copies, resumably and safely.

The record `.curator-export.json` in `dest` says what an earlier export made. It may come from
anywhere (a shared or unpacked folder), so it is never trusted to delete: an entry is removed
only if it resolves inside `dest` and is the very file or link we made (same inode and inode change
time as recorded, or, for an interrupted export, a link to its source / a copy of it). The record is written
before any entry is placed, so a killed export resumes instead of refusing its own folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time as _time
import uuid
from pathlib import Path
from typing import Iterable

from .atomic import write_json
from .export_record import file_stamp, inode_stamps, read_export_record, same_stamp
from .errors import CuratorError

EXPORT_RECORD = ".curator-export.json"
MODES = ("symlink", "copy", "hardlink")
_TMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")  # what _place names its temp files


def write_tree(items: Iterable[tuple[int, str, str]], dest: str | os.PathLike, mode: str, task: str,
               workspace: str) -> dict[str, int]:
    """Place (chip id, label, source path) items under `dest`; returns counts per label."""
    if mode not in MODES:
        raise CuratorError(f"export mode {mode!r} is not symlink, copy or hardlink",
                           "use mode='symlink' (no extra space) or 'copy' (portable)")
    dest = Path(dest).expanduser().absolute()
    previous, made = _read_record(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(dest))
    _clean_temp_files(root)
    entries: dict[str, str] = {}
    counts: dict[str, int] = {}
    for cid, label, src in items:
        rel = f"{label}/{int(cid):08d}_{Path(src).name}"
        entries[rel] = src
        counts[label] = counts.get(label, 0) + 1
    # a crash from here on leaves a record naming everything this run may create
    write_json(dest / EXPORT_RECORD, {"task": task, "mode": mode, "workspace": workspace, "time": _time.time(),
                                      "complete": False, "entries": {**previous, **entries}, "made": made})
    for rel, src in entries.items():
        target = _inside(root, rel)
        if target is None:
            raise CuratorError(f"export entry {rel!r} would land outside {dest}",
                               "a label folder in the destination is a link out of it; remove it or choose a "
                               "new folder")
        exists = os.path.lexists(target)
        if exists and not _ours(target, previous.get(rel), made.get(rel)):
            raise CuratorError(f"{target} exists and was not made by an earlier export",
                               "move it away or choose a new folder so nothing there is overwritten")
        if exists and previous.get(rel) == src and _kind(target, src) == mode:
            made[rel] = file_stamp(target)
            continue
        if not Path(src).exists():
            raise CuratorError(f"image of chip {rel.split('/')[1].split('_')[0].lstrip('0') or 0} is missing: {src}",
                               "restore the file (chips must stay where the manifest says) and export again")
        target.parent.mkdir(exist_ok=True)
        _place(Path(src), target, mode)
        made[rel] = file_stamp(target)
    for rel, src in previous.items():  # entries of the earlier export that are no longer in the set
        if rel in entries:
            continue
        old = _inside(root, rel)
        if old is not None and os.path.lexists(old) and _ours(old, src, made.get(rel)):
            old.unlink()
        made.pop(rel, None)
    write_json(dest / EXPORT_RECORD, {"task": task, "mode": mode, "workspace": workspace, "time": _time.time(),
                                      "complete": True, "entries": entries,
                                      "made": {k: v for k, v in made.items() if k in entries}})
    return counts


def _read_record(dest: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """(entries, inode stamps) of an earlier export at `dest`; refuses a non-empty foreign folder."""
    fix = "delete the export folder (it holds only links or copies) and export again"
    data = read_export_record(dest, EXPORT_RECORD, fix)
    if data is None:
        return {}, {}
    try:
        entries = {str(k): str(v) for k, v in dict(data.get("entries", {})).items() if _plain(str(k))}
        return entries, inode_stamps(data)
    except (ValueError, TypeError, AttributeError):
        raise CuratorError(f"export record {dest / EXPORT_RECORD} is corrupt", fix) from None


def _plain(rel: str) -> bool:
    """`label/file`: two plain, visible names (a record may name '../victim' or '/etc/x')."""
    parts = rel.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") and "\\" not in p and "\x00" not in p for p in parts)


def _inside(root: Path, rel: str) -> Path | None:
    """`root/rel` if its folder is a real folder of `root` (not a link out of it), else None."""
    if not _plain(rel):
        return None
    folder = root / rel.split("/")[0]
    if os.path.islink(folder) or (folder.exists() and not folder.is_dir()):
        return None
    return folder / rel.split("/")[1]


def _kind(target: Path, src: str) -> str:
    if target.is_symlink():
        return "symlink"
    try:
        return "hardlink" if os.path.samefile(target, src) else "copy"
    except OSError:
        return "copy"


def _ours(target: Path, src: str | None, stamp: list[int] | None) -> bool:
    """Whether `target` is a link or copy an export made: its recorded inode, or (after a killed
    run) a link to its source or a copy of it; never the source itself."""
    try:
        st = os.lstat(target)
    except OSError:
        return False
    if same_stamp(target, stamp):
        return True
    if src is None:
        return False
    try:
        if target.is_symlink():
            return os.readlink(target) == os.path.realpath(src)
        s = os.stat(src)
        if not target.is_file() or os.path.realpath(target) == os.path.realpath(src):
            return False
        return (st.st_dev, st.st_ino) == (s.st_dev, s.st_ino) or \
            (st.st_size, st.st_mtime_ns) == (s.st_size, s.st_mtime_ns)  # copy2 keeps both
    except OSError:
        return False


def _clean_temp_files(root: Path) -> None:
    """Temp files a killed export left in its label folders (only our own naming pattern)."""
    for folder in root.iterdir():
        if folder.is_dir() and not folder.is_symlink() and not folder.name.startswith("."):
            for f in folder.iterdir():
                if _TMP.match(f.name) and (f.is_symlink() or f.is_file()):
                    f.unlink(missing_ok=True)


def _place(src: Path, target: Path, mode: str) -> None:
    """Create a link or copy at `target` atomically (temp name + rename); `src` is only read."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if mode == "symlink":
            os.symlink(os.path.realpath(src), tmp)
        elif mode == "hardlink":
            os.link(src, tmp)
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, target)
    except OSError as e:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        raise CuratorError(f"cannot {mode} {src} -> {target}: {e}",
                           "use mode='copy' across file systems, or check the destination is writable") from None
