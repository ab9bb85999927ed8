"""The record an export keeps in its folder: read it safely, since the folder may be shared or hostile.

Both export kinds (the label tree and the tool formats) refuse a non-empty foreign folder, clear the
temp file a killed record write left, and treat a damaged record as one clear error.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import CuratorError


def read_export_record(dest: Path, record_name: str, corrupt_fix: str) -> dict[str, Any] | None:
    """The parsed record of an earlier export at `dest`, or None for a missing or empty folder."""
    if not dest.exists():
        return None
    if not dest.is_dir():
        raise CuratorError(f"export destination {dest} is a file", "pass a folder path")
    tmp_name = re.compile(r"^\." + re.escape(record_name) + r"\.[A-Za-z0-9_]+\.tmp$")  # atomic_path's temp
    for f in dest.iterdir():  # a record write that a kill interrupted
        if tmp_name.match(f.name) and f.is_file() and not f.is_symlink():
            f.unlink()
    record = dest / record_name
    if not record.is_file() or record.is_symlink():
        if any(dest.iterdir()):
            raise CuratorError(f"export destination {dest} is not empty and not an earlier curator export",
                               "choose a new or empty folder so nothing there is overwritten")
        return None
    try:
        data = json.loads(record.read_text())
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise CuratorError(f"export record {record} is corrupt", corrupt_fix)
    return data


def inode_stamps(data: dict[str, Any]) -> dict[str, list[int]]:
    """The record's `made` map (file -> [device, inode, ctime ns]; [device, inode] in records of older
    versions): what this project created and may replace."""
    made = data.get("made", {})
    if not isinstance(made, dict):
        raise TypeError("made is not a mapping")
    return {str(k): [int(x) for x in v] for k, v in made.items() if isinstance(v, list) and len(v) in (2, 3)}


def file_stamp(path: Path) -> list[int]:
    """[device, inode, inode change time in ns] of the entry itself (links not followed), taken after it
    is in place. The change time tells our entry from a later file that got the same inode number."""
    st = os.lstat(path)
    return [st.st_dev, st.st_ino, st.st_ctime_ns]


def same_stamp(path: Path, stamp: list[int] | None) -> bool:
    """Whether `path` is still the entry `stamp` was taken of (a freed inode number reused by another file
    does not match: its change time differs)."""
    if stamp is None:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return [st.st_dev, st.st_ino, st.st_ctime_ns][:len(stamp)] == stamp
