"""Atomic writes (temp file + rename) so a crash never leaves a half-written artefact."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `target`; on success rename it over `target`, else remove it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Write `data` to `target` atomically; `fsync=False` for regenerable files (chips) saves time."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON atomically."""
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
