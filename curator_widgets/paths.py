"""Where shared test/benchmark data lives: $CURATOR_SHARED_DATA or ../shared/data beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CuratorError


def shared_data_dir(required: bool = True) -> Path | None:
    """The shared real-imagery folder (UC Merced, GIBS files) used by tests and benchmarks."""
    env = os.environ.get("CURATOR_SHARED_DATA")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[1]
    candidates += [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path("/work/shared/data")]
    for c in candidates:
        if (c / "ucmerced").is_dir():
            return c
    if required:
        raise CuratorError("shared data folder not found (looked at " + ", ".join(map(str, candidates)) + ")",
                           "set CURATOR_SHARED_DATA to the folder that holds ucmerced/ and gibs/")
    return None
