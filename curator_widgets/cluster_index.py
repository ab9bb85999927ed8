"""FAISS index building on a Dask cluster: trained once on a sample (in this process), each shard
added on the worker that holds it, the shard indexes merged in row order: in memory, or (on_disk)
written by the workers as block files and merged list by list into one `.ivfdata` file.

Merging IVF lists in shard order stores every vector in the list and position the single-process
chunked add gives it, so searches return the same ids and distances.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import CuratorError
from .shards import Shard, ShardedEmbeddings, rows_of


def _shard_add(item: tuple[Any, np.ndarray], blob: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray],
               chunk: int) -> np.ndarray:
    """The trained empty index `blob` filled with this shard's prepared rows (local ids 0..m-1), serialized."""
    import faiss

    rows = rows_of(item)
    index = faiss.deserialize_index(blob)
    for lo in range(0, len(rows), chunk):
        index.add(prepare(rows[lo:lo + chunk]))
    return faiss.serialize_index(index)


def shard_adder(sh: ShardedEmbeddings, prepare: Callable[[np.ndarray], np.ndarray], chunk: int = 65536,
                progress: bool = True) -> Any:
    """An `add=` for `index.make_index`: fill the trained index from the shards on the workers, each
    row turned into the stored form by `prepare` (index.prepare with the metric bound); a bar counts shards.
    Shard indexes are fetched and merged one at a time in row order, so this process holds the merged
    index plus one shard's, and a worker holds at most the few finished ones the merge has not reached."""

    def add(index: Any) -> Any:
        import faiss

        from .progress import progress_bar

        if not hasattr(index, "merge_from") or isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
            raise CuratorError("an HNSW index cannot be assembled from shards",
                               "use kind='auto' or an IVF kind on a cluster, or build HNSW in one process")
        blob = faiss.serialize_index(index)
        with progress_bar(total=len(sh.shards), desc="index: shard adds (cluster)", unit="shard",
                          disable=not progress, leave=False) as bar:
            # a window of tasks ahead of the merge: a finished shard index waits on its worker until merged
            for shard, fut in sh.imap(_shard_add, blob, prepare, chunk):
                part = faiss.deserialize_index(fut.result())
                fut.release()
                index.merge_from(part, shard.lo)  # ids local to the shard, shifted to global ones
                del part
                bar.update(1)
        return index

    return add


def _shard_write(item: tuple[Shard, np.ndarray], blob: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray],
                 folder: str, chunk: int) -> str:
    """This shard's prepared rows, under their global ids, in a copy of the trained index written to `folder`."""
    from .ondisk import fill_block

    shard, rows = item[0], rows_of(item)
    path = f"{folder}/shard{shard.lo:012d}.faiss"
    fill_block(blob, prepare(rows), shard.lo, path, chunk)
    return path


def shard_writer(sh: ShardedEmbeddings, prepare: Callable[[np.ndarray], np.ndarray], data_path: Any,
                 chunk: int = 65536, progress: bool = True) -> Any:
    """An `add=` for `index.make_index` that builds an on-disk index: each worker writes its shard's
    block file beside `data_path` (the workspace must be on a file system the workers share), and this
    process merges the blocks' lists into `data_path` without loading them (memory-mapped)."""

    def add(index: Any) -> Any:
        import shutil
        import tempfile
        from pathlib import Path

        import faiss

        from .cluster import gather_with_bar
        from .ondisk import check_ivf, merge

        check_ivf(index, type(index).__name__)
        blob = faiss.serialize_index(index)
        folder = Path(tempfile.mkdtemp(prefix=".shards-", dir=Path(data_path).parent))
        try:
            files = gather_with_bar(sh.client, sh.map(_shard_write, blob, prepare, str(folder), chunk),
                                    "index: shard blocks (cluster)", progress)
            missing = [f for f in files if not Path(f).exists()]
            if missing:
                raise CuratorError(f"the workers wrote {missing[0]} but this process cannot see it",
                                   "put the workspace on a file system every worker shares, or build with on_disk=False")
            return merge(faiss.deserialize_index(blob), files, Path(data_path))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return add
