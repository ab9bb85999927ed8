"""The manifest table: one row per chip, the spine every artefact (embeddings, labels) aligns to."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path
from .errors import CuratorError

SCHEMA = pa.schema([
    ("id", pa.int64()),            # row i of every embedding/projection file
    ("key", pa.string()),          # stable identity of the chip across re-runs
    ("path", pa.string()),         # relative to the workspace, or absolute for in-place files
    ("source", pa.string()),
    ("layer", pa.string()),
    ("date", pa.string()),         # YYYY-MM-DD, null for static layers
    ("west", pa.float64()), ("south", pa.float64()), ("east", pa.float64()), ("north", pa.float64()),
    ("tile_matrix_set", pa.string()),
    ("tile_matrix", pa.int16()),
    ("pixel_size", pa.float64()),  # degrees per pixel
    ("width", pa.int32()), ("height", pa.int32()),
    ("x0", pa.int32()), ("y0", pa.int32()),  # chip origin in its source raster/image
    ("land_fraction", pa.float32()),
    ("cloud_fraction", pa.float32()),
    ("label", pa.string()),        # optional ground truth (e.g. a class folder)
    ("origin", pa.string()),       # the user's original file, never moved
    ("flags", pa.list_(pa.string())),  # e.g. partial, blank, swath_gap, cloudy
])
COLUMNS = SCHEMA.names


def empty() -> pd.DataFrame:
    """An empty manifest with the right columns and dtypes."""
    return SCHEMA.empty_table().to_pandas()


def rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts) -> a table in the manifest schema; unknown keys are kept as extra columns."""
    rows = list(rows)
    cols: dict[str, list] = {name: [r.get(name) for r in rows] for name in COLUMNS}
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    for k in extra:
        cols[k] = [r.get(k) for r in rows]
    cols["flags"] = [list(f) if f is not None else [] for f in cols["flags"]]
    arrays = [pa.array(cols[f.name], type=f.type) for f in SCHEMA]
    fields = list(SCHEMA)
    for k in extra:
        arr = pa.array(cols[k])
        arrays.append(arr)
        fields.append(pa.field(k, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def read(path: Path) -> pa.Table:
    """Read and validate a manifest file; a corrupt one gives a clear error, never a silent reset."""
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for damaged files
        raise CuratorError(f"manifest {path} is unreadable ({e})",
                           "restore it from a backup or re-run the ingest into a new workspace") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise CuratorError(f"manifest {path} lacks columns {missing}",
                           "it was written by another tool or an older format; re-ingest into a new workspace")
    ids = table.column("id").to_numpy()
    if len(ids) and not (ids == range(len(ids))).all():
        raise CuratorError(f"manifest {path} ids are not 0..N-1 in order", "the file was edited by hand; restore it")
    return table


def write(path: Path, table: pa.Table) -> None:
    """Write atomically so a crash leaves the previous manifest intact."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
