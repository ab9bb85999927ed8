"""Embeddings stored as a chunked zarr float16 array (written by `cluster_embed`), opened lazily:
rows are read from disk only when sliced, so [N, d] never has to fit in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CuratorError, require


def zarr_path(ws: Any, run: str) -> Path:
    """embeddings/<run>.zarr beside the single-process embeddings/<run>.npy."""
    return ws.embeddings_path(run).with_suffix(".zarr")


def open_zarr_embeddings(ws: Any, run: str) -> Any | None:
    """`run`'s zarr embeddings, opened lazily (read-only), when its sidecar names that format; else None."""
    path = zarr_path(ws, run)
    try:
        meta = json.loads(ws.embeddings_path(run).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != "zarr" or not path.exists():
        return None
    zarr = require("zarr", f"embeddings of run {run!r} are a zarr array but zarr is not installed",
                   "pip install 'curator-widgets[dask]'")
    try:
        arr = zarr.open_array(str(path), mode="r")
    except Exception as e:  # noqa: BLE001 - zarr raises many types for a damaged store
        raise CuratorError(f"embeddings store {path} is unreadable ({type(e).__name__}: {e})",
                           f"delete it and re-run cluster_embed(ws, {run!r}, resume=False)") from None
    if arr.ndim != 2 or arr.dtype != np.float16 or arr.shape[0] != meta.get("count"):
        raise CuratorError(f"embeddings store {path} is {arr.dtype} {arr.shape}, its sidecar says "
                           f"{meta.get('count')} x {meta.get('dim')} float16",
                           f"re-run cluster_embed(ws, {run!r}, resume=False)")
    return arr
