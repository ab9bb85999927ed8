"""UMAP placement on a Dask cluster: the fit stays in this process (on the sample), every other chip
is placed on the workers, one task per shard of the embeddings, with the fitted reducer scattered once.

A chip's placement depends only on its own neighbours among the sample, its own random stream
(umap seeds it from the chip's initial coordinate) and two numbers shared by all chips (the largest
edge weight and the epoch count). Both are fixed over all shards before any chip moves, so each chip
gets the neighbours, weights and starting point the single-process `placement.place` gives it.
The SGD itself is umap's numba kernel (fastmath), whose rounding can depend on how the arrays lie in
memory: run as plain Python it places a chip the same alone or among others, compiled it can move
a rare chip slightly differently (tests: 2 of 2,400 chips, by < 0.02 on a layout ~20 wide).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .placement import UmapConstants, optimize_placement, placement_epochs, placement_graph
from .shards import Shard, plan_shards


class Reducer:
    """The fitted reducer a worker places chips with: the sample's FAISS index, the fitted
    coordinates and UMAP's constants. Pickles the index as FAISS bytes (SWIG objects do not pickle)."""

    def __init__(self, sim: Any, y_fit: np.ndarray, constants: UmapConstants, metric: str, k: int):
        self.sim, self.y_fit, self.constants, self.metric, self.k = sim, y_fit, constants, metric, int(k)

    def __getstate__(self) -> dict[str, Any]:
        import faiss

        sim = self.sim
        return {"index": faiss.serialize_index(sim.index), "params": sim.params, "emb": sim.emb, "y_fit": self.y_fit,
                "constants": tuple(self.constants), "metric": self.metric, "k": self.k}

    def __setstate__(self, state: dict[str, Any]) -> None:
        import faiss

        from .index import SimilarityIndex

        self.sim = SimilarityIndex(None, None, faiss.deserialize_index(state["index"]), state["params"], state["emb"])
        self.y_fit, self.constants = state["y_fit"], UmapConstants(*state["constants"])
        self.metric, self.k = state["metric"], state["k"]


def _shard_graph(shard: Shard, reducer: Reducer, fitted: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(global ids, placement graph) of the shard's chips that were not fitted: read, kNN, edge weights."""
    from .index import prepare
    from .placement import _knn, cache_umap_kernels

    cache_umap_kernels()  # this worker compiles umap's kernels once, or loads them from numba's disk cache
    ids = np.arange(shard.lo, shard.hi, dtype=np.int64)
    keep = ~np.isin(ids, fitted, assume_unique=True)
    q = prepare(shard.read()[keep], reducer.metric)
    nn, dist = _knn(reducer.sim, q, reducer.k, reducer.metric, exclude_self=False)
    return ids[keep], placement_graph(reducer.constants.local_connectivity, reducer.y_fit, nn, dist)


def _graph_max(part: tuple[np.ndarray, tuple[np.ndarray, ...]]) -> tuple[int, float]:
    """(chips to place, largest edge weight) of one shard."""
    ids, graph = part
    return len(ids), float(graph[3].max()) if len(graph[3]) else 0.0


def _shard_place(part: tuple[np.ndarray, tuple[np.ndarray, ...]], reducer: Reducer, vmax: float, epochs: int,
                 seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(global ids, placed coordinates) of one shard."""
    ids, graph = part
    return ids, optimize_placement(reducer.constants, reducer.y_fit, graph, vmax, epochs, seed)


def cluster_place(client: Any, emb: Any, fit_ids: np.ndarray, sim: Any, model: Any, y_fit: np.ndarray, metric: str,
                  k: int, n_epochs: int | None, seed: int | None, shard_rows: int | None = None,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ids, coordinates) of every chip not in `fit_ids`, placed on the workers of `client`."""
    from .cluster import gather_with_bar

    reducer = client.scatter(Reducer(sim, np.asarray(y_fit, np.float32), UmapConstants.of(model), metric, k),
                             broadcast=True)
    shards = plan_shards(emb, shard_rows)
    fitted = np.asarray(fit_ids, dtype=np.int64)
    parts = [client.submit(_shard_graph, s, reducer, fitted[(fitted >= s.lo) & (fitted < s.hi)], pure=False)
             for s in shards]
    sizes = gather_with_bar(client, [client.submit(_graph_max, p, pure=False) for p in parts],
                            "project: neighbours (cluster)", progress)
    vmax = max(v for _, v in sizes)
    epochs = placement_epochs(n_epochs, sum(m for m, _ in sizes))
    placed = gather_with_bar(client, [client.submit(_shard_place, p, reducer, vmax, epochs, seed, pure=False)
                                      for p in parts], "project: place (cluster)", progress)
    for f in parts:
        f.release()
    return np.concatenate([i for i, _ in placed]), np.concatenate([y for _, y in placed])
