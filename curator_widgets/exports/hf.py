"""A curated set in the Hugging Face `datasets` imagefolder layout, loadable with
`load_dataset("imagefolder", data_dir=dest)` and no curator installed."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from ..errors import CuratorError
from .common import GEO_COLUMNS, add_imported, curated, file_name
from .dest import Payload, write_files

if TYPE_CHECKING:
    from ..labels import LabelStore

METADATA_COLUMNS = ["file_name", "label", "chip_id", "key", "annotator", "source", *GEO_COLUMNS]


def export_hf(store: "LabelStore", dest: str | os.PathLike, sources: Sequence[str] | None = None,
              include_unsure: bool = False, split: str = "train") -> Path:
    """Write dest/<split>/<label>/<id>_<name> copies and dest/<split>/metadata.csv (file_name, label, ...)."""
    df = curated(store, sources, include_unsure)
    names = [f"{lab}/{file_name(cid, p)}" for cid, lab, p in zip(df["id"], df["label"], df["path"])]
    meta = df.rename(columns={"id": "chip_id"}).assign(file_name=names).reindex(columns=METADATA_COLUMNS)
    buf = io.StringIO()
    meta.to_csv(buf, index=False)
    files: list[tuple[str, Payload]] = [(f"{split}/{n}", Path(p)) for n, p in zip(names, df["path"])]
    files.append((f"{split}/metadata.csv", buf.getvalue().encode()))
    return write_files(dest, "hf", files)


def import_hf(store: "LabelStore", path: str | os.PathLike) -> int:
    """Labels from an imagefolder's metadata.csv / metadata.jsonl (every split under `path`)."""
    root = Path(path).expanduser()
    found = sorted(root.glob("metadata.*")) + sorted(root.glob("*/metadata.*")) if root.is_dir() else [root]
    frames = []
    for f in found:
        try:
            frames.append(pd.read_csv(f) if f.suffix == ".csv" else pd.read_json(f, lines=True))
        except (ValueError, OSError, pd.errors.ParserError) as e:
            raise CuratorError(f"{f} is not a readable metadata file ({e})", "nothing was written") from None
    if not frames:
        raise CuratorError(f"{root} holds no metadata.csv or metadata.jsonl", "pass an hf export folder")
    df = pd.concat(frames, ignore_index=True)
    missing = {"chip_id", "label"} - set(df.columns)
    if missing:
        raise CuratorError(f"{root}: metadata lacks columns {sorted(missing)}",
                           "import a dataset a curator export wrote (it has chip_id and label); nothing was written")
    return add_imported(store, df["chip_id"].tolist(), df["label"].tolist(),
                        df["annotator"].tolist() if "annotator" in df else None,
                        keys=df["key"].tolist() if "key" in df else None, origin=str(root))
