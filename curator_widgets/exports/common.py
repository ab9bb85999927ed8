"""What every export and import shares: the curated table with geometry, chip file names, and
turning foreign records into `import` label events after checking they name this workspace's chips."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from ..errors import CuratorError

if TYPE_CHECKING:
    from ..labels import LabelStore

GEO_COLUMNS = ["layer", "date", "west", "south", "east", "north", "tile_matrix_set", "tile_matrix", "width", "height"]
_NAME = re.compile(r"^(\d{8})_(.+)$")


def curated(store: "LabelStore", sources: Sequence[str] | None = None, include_unsure: bool = False) -> pd.DataFrame:
    """`store.table()` plus each chip's layer, date, bounds and tile matrix from the manifest."""
    if store.workspace is None:
        raise CuratorError("exports need the workspace to find each chip's image and place",
                           "open the store with LabelStore(ws) or LabelStore('path/to/workspace')")
    df = store.table(sources=sources, include_unsure=include_unsure)
    if not len(df):  # table() adds the manifest columns only when there are rows
        return df.reindex(columns=[*df.columns, "key", "path", "origin", "ground_truth", *GEO_COLUMNS])
    man = store.workspace.manifest.iloc[df["id"].to_numpy()]
    for col in GEO_COLUMNS:
        df[col] = man[col].to_numpy()
    return df


def file_name(chip_id: int, path: str) -> str:
    """`00000012_name.ext`: the chip id first (imports read it back), then the original name."""
    return f"{int(chip_id):08d}_{Path(path).name}"


def split_name(name: str) -> tuple[int, str]:
    """(chip id, original name) from a `file_name`, with or without a folder or extension change."""
    m = _NAME.match(Path(name).name)
    if m is None:
        raise CuratorError(f"{name!r} does not start with an 8-digit chip id (00000012_name.png)",
                           "import only files a curator export wrote, or a CSV with id and label columns")
    return int(m.group(1)), m.group(2)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing or malformed one is one CuratorError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CuratorError(f"{path} does not exist", "check the path of the export to import") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CuratorError(f"{path} is not valid JSON ({e})",
                           "import the file the tool exported, unedited; nothing was written") from None


def add_imported(store: "LabelStore", ids: Sequence[Any], labels: Sequence[Any],
                 annotators: Sequence[str | None] | None = None, keys: Sequence[str | None] | None = None,
                 names: Sequence[str | None] | None = None, origin: str = "import") -> int:
    """Record labels as events with source `import`, all or nothing, after checking each id names the
    same chip here (its manifest key, or its file name) so labels never land on other chips."""
    try:
        arr = np.asarray([int(i) for i in ids], dtype=np.int64)
    except (TypeError, ValueError):
        raise CuratorError(f"{origin}: chip ids must be integers, got {list(ids)[:3]}",
                           "import a file exported by curator (it carries chip ids); nothing was written") from None
    arr = store._check_ids(arr)
    if store.workspace is not None and len(arr):
        man = store.workspace.manifest
        for cid, key, name in zip(arr.tolist(), keys or [None] * len(arr), names or [None] * len(arr)):
            row = man.iloc[cid]
            if key is not None and key == key and str(key) != row["key"]:
                raise CuratorError(f"{origin}: chip {cid} is {key!r} there but {row['key']!r} in this workspace",
                                   "import into the workspace the set was exported from; nothing was written")
            if name is not None and name != Path(row["path"]).name:
                raise CuratorError(f"{origin}: chip {cid} is the file {name!r} there but "
                                   f"{Path(row['path']).name!r} in this workspace",
                                   "import into the workspace the set was exported from; nothing was written")
    bad = [lab for lab in labels if not isinstance(lab, str)]
    if bad:
        raise CuratorError(f"{origin}: labels must be text, got {bad[:3]}", "fix the file; nothing was written")
    return store.add_many(arr, list(labels), annotator=list(annotators) if annotators is not None else None,
                          source="import")
