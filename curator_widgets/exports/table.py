"""Labels from a CSV or Parquet table (ours from `LabelStore.export`, or anyone's with id and label)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import CuratorError
from .common import add_imported

if TYPE_CHECKING:
    from ..labels import LabelStore


def import_table(store: "LabelStore", path: str | os.PathLike) -> int:
    """Columns `id` (or `chip_id`) and `label`; optional `annotator` and `key` (checked against the manifest)."""
    path = Path(path).expanduser()
    try:
        df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except FileNotFoundError:
        raise CuratorError(f"{path} does not exist", "check the path of the table to import") from None
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise CuratorError(f"{path} is not a readable table ({e})", "pass a CSV or Parquet file; nothing was written") from None
    id_col = "id" if "id" in df.columns else "chip_id"
    if id_col not in df.columns or "label" not in df.columns:
        raise CuratorError(f"{path} lacks an id (or chip_id) and a label column (it has {list(df.columns)[:8]})",
                           "import a table with one row per chip: id,label[,annotator]; nothing was written")
    return add_imported(store, df[id_col].tolist(), df["label"].tolist(),
                        df["annotator"].tolist() if "annotator" in df.columns else None,
                        keys=df["key"].tolist() if "key" in df.columns else None, origin=str(path))
