"""An export folder written only inside itself, atomically, that removes only files it made.

The record `.curator-export-files.json` names every file an export plans (written before the
first file) and the inode of each file it made. A record may come from a shared or unpacked
folder, so it never makes us delete anything but a file whose inode we recorded, inside `dest`.
"""

from __future__ import annotations

import glob
import os
import shutil
import time as _time
from pathlib import Path
from typing import Callable, Sequence, Union

from ..atomic import atomic_path, write_json
from ..errors import CuratorError
from ..export_record import file_stamp, inode_stamps, read_export_record, same_stamp

RECORD = ".curator-export-files.json"
Payload = Union[bytes, Path, Callable[[], bytes]]  # file contents, a file to copy, or a late producer


def write_files(dest: str | os.PathLike, fmt: str, files: Sequence[tuple[str, Payload]]) -> Path:
    """Write (relative path, payload) files under `dest` for an export of format `fmt`; returns dest."""
    dest = Path(dest).expanduser().absolute()
    planned, made = _read_record(dest, fmt)
    rels = [_check_rel(rel) for rel, _ in files]
    if len(set(rels)) != len(rels):
        raise CuratorError(f"the {fmt} export would write the same file twice", "report this as a bug")
    dest.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(dest))
    write_json(root / RECORD, {"format": fmt, "complete": False, "time": _time.time(),
                               "planned": sorted(set(planned) | set(rels)), "made": made})
    for rel, payload in files:
        target = _target(root, rel)
        for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):  # a killed run's temp file
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
        if os.path.lexists(target) and not (rel in planned and _may_replace(target, made.get(rel))):
            raise CuratorError(f"{target} exists and was not made by an earlier {fmt} export",
                               "move it away or choose a new folder so nothing there is overwritten")
        with atomic_path(target, suffix=target.suffix) as tmp:
            if isinstance(payload, Path):
                shutil.copyfile(payload, tmp)
            else:
                tmp.write_bytes(payload if isinstance(payload, bytes) else payload())
        made[rel] = file_stamp(target)
    for rel in set(made) - set(rels):  # files of the earlier export that are no longer in the set
        old = _target(root, rel, create=False)
        if old is not None and same_stamp(old, made[rel]):
            old.unlink()
        made.pop(rel)
    write_json(root / RECORD, {"format": fmt, "complete": True, "time": _time.time(),
                               "planned": sorted(rels), "made": made})
    return dest


def _read_record(dest: Path, fmt: str) -> tuple[list[str], dict[str, list[int]]]:
    """(planned files, inode stamps) of an earlier export of `fmt`; refuses any other non-empty folder."""
    fix = "export into a new folder (the old one holds only exported copies)"
    data = read_export_record(dest, RECORD, fix)
    if data is None:
        return [], {}
    try:
        old_fmt = str(data["format"])
        planned = [str(r) for r in data.get("planned", [])]
        made = inode_stamps(data)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CuratorError(f"export record {dest / RECORD} is corrupt", fix) from None
    if old_fmt != fmt:
        raise CuratorError(f"{dest} holds a {old_fmt} export, not {fmt}", "export each format into its own folder")
    return planned, made


def _check_rel(rel: str) -> str:
    parts = rel.split("/")
    if not all(p and p not in (".", "..") and not p.startswith(".") and "\\" not in p and "\x00" not in p
               for p in parts):
        raise CuratorError(f"export file name {rel!r} is not a plain relative path",
                           "labels and chip names become file names: rename the offending one")
    return rel


def _target(root: Path, rel: str, create: bool = True) -> Path | None:
    """`root/rel` with every folder on the way a real folder inside `root` (never a link out of it)."""
    folder = root
    for part in rel.split("/")[:-1]:
        folder = folder / part
        if os.path.islink(folder) or (folder.exists() and not folder.is_dir()):
            if not create:
                return None
            raise CuratorError(f"{folder} is a link or a file, so the export would land outside {root}",
                               "remove it or choose a new folder")
        if create:
            folder.mkdir(exist_ok=True)
    return folder / rel.split("/")[-1]


def _may_replace(target: Path, stamp: list[int] | None) -> bool:
    """A planned file we made (its inode), or one a killed run left (planned, never stamped, a plain file)."""
    if stamp is not None:
        return same_stamp(target, stamp)
    return target.is_file() and not target.is_symlink()
