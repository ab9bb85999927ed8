"""FAISS index building on a Dask cluster: trained once on a sample (in this process), each shard
added on the worker that holds it, the shard indexes merged in row order.

Merging IVF lists in shard order stores every vector in the list and position the single-process
chunked add gives it, so searches return the same ids and distances.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import CuratorError
from .shards import ShardedEmbeddings


def _shard_add(item: tuple[Any, np.ndarray], blob: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray],
               chunk: int) -> np.ndarray:
    """The trained empty index `blob` filled with this shard's prepared rows (local ids 0..m-1), serialized."""
    import faiss

    _, rows = item
    index = faiss.deserialize_index(blob)
    for lo in range(0, len(rows), chunk):
        index.add(prepare(rows[lo:lo + chunk]))
    return faiss.serialize_index(index)


def shard_adder(sh: ShardedEmbeddings, prepare: Callable[[np.ndarray], np.ndarray], chunk: int = 65536,
                progress: bool = True) -> Any:
    """An `add=` for `index.make_index`: fill the trained index from the shards on the workers, each
    row turned into the stored form by `prepare` (index.prepare with the metric bound); a bar counts shards."""

    def add(index: Any) -> Any:
        import faiss

        from .cluster import gather_with_bar

        if not hasattr(index, "merge_from") or isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
            raise CuratorError("an HNSW index cannot be assembled from shards",
                               "use kind='auto' or an IVF kind on a cluster, or build HNSW in one process")
        blob = faiss.serialize_index(index)
        parts = gather_with_bar(sh.client, sh.map(_shard_add, blob, prepare, chunk), "index: shard adds (cluster)",
                                progress)
        out = faiss.deserialize_index(parts[0])
        for shard, part in zip(sh.shards[1:], parts[1:]):
            out.merge_from(faiss.deserialize_index(part), shard.lo)
        return out

    return add

