"""Placing new points into a fitted UMAP: umap's own `transform` math on neighbours found by FAISS,
in one call (`place`) or split into per-row work and one shared SGD setting, so shards of points can
be placed apart (on Dask workers, `cluster_projection`) from the same inputs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

_KERNELS = (("umap.umap_", "smooth_knn_dist"), ("umap.umap_", "compute_membership_strengths"),
            ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
            ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch_parallel"))


def cache_umap_kernels() -> int:
    """Let numba keep umap's compiled kernels on disk (numba's public `Dispatcher.enable_caching`).

    umap-learn compiles these on every process start (no `cache=True`): ~10-30 s of CPU before the
    first projection, which would dominate the demo. Cached, later processes load them in ~1 s;
    numba invalidates the cache when umap's source changes. Returns how many kernels are cached."""
    import importlib

    done = 0
    for module, name in _KERNELS:
        try:
            fn = getattr(importlib.import_module(module), name)
            if getattr(fn, "_cache", None) is None or type(fn._cache).__name__ == "NullCache":
                fn.enable_caching()
            done += 1
        except (ImportError, AttributeError, RuntimeError, OSError):  # other umap/numba versions: just compile
            continue
    return done


def _knn(sim, q: np.ndarray, k: int, metric: str, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """kNN of rows `q` in the in-memory index `sim`: with self first at distance 0 when q is the indexed set."""
    ids = np.empty((len(q), k), np.int64)
    d2 = np.empty((len(q), k), np.float32)
    for lo in range(0, len(q), 8192):
        D, I = sim.search_prepared(q[lo: lo + 8192], k, None, None)
        if exclude_self:
            own = np.arange(lo, lo + len(D))[:, None]
            is_self = I == own
            order = np.argsort(~is_self, axis=1, kind="stable")  # the row itself first, others keep their order
            I, D = np.take_along_axis(I, order, 1), np.take_along_axis(D, order, 1)
            lost = ~is_self.any(1)  # duplicates can push a row out of its own top k: put it back
            I[lost] = np.hstack([own[lost], I[lost][:, : k - 1]])
            D[lost] = np.hstack([np.zeros((int(lost.sum()), 1), np.float32), D[lost][:, : k - 1]])
            D[:, 0] = 0.0
        ids[lo: lo + len(D)], d2[lo: lo + len(D)] = I, D
    dist = np.maximum(d2, 0) / 2 if metric == "cosine" else np.sqrt(np.maximum(d2, 0))
    return ids, np.where(ids >= 0, dist, np.inf).astype(np.float32)


def place(model: Any, y_fit: np.ndarray, ids: np.ndarray, dists: np.ndarray, n_epochs: int | None = None,
          seed: int | None = None) -> np.ndarray:
    """Place new points into a fitted UMAP from their kNN among the fitted points: UMAP's own
    `transform` math (membership strengths, weighted init, a short SGD against the fixed fit),
    with the initial placement vectorized (umap's loops over rows in Python, minutes at 1e5 rows)."""
    # Why umap's internals and not the public `UMAP.transform`: transform needs umap's own search
    # index (a model fitted on FAISS neighbours through precomputed_knn has none, and transform
    # raises NotImplementedError), and its weighted init loops over rows in Python. Measured on
    # benchmarks/projection.py --quick data (5k x 32, 1,200 fitted, 3,800 placed, 3 seeds):
    # UMAP.fit + UMAP.transform placed them in 35-49 s, this function in 0.3-0.7 s, at the same
    # trustworthiness@10 (0.94) and kNN preservation@10 (0.11). The internals used here (the
    # fitted model's `_a`/`_b`, `optimize_layout_euclidean`'s positional parameters,
    # smooth_knn_dist, compute_membership_strengths, make_epochs_per_sample) are pinned by
    # tests/test_projection.py::test_umap_internals_used_by_place, which names what changed.
    graph = placement_graph(model.local_connectivity, y_fit, ids, dists)
    vmax = float(graph[3].max()) if len(graph[3]) else 0.0
    return optimize_placement(UmapConstants.of(model), y_fit, graph, vmax, placement_epochs(n_epochs, len(ids)), seed)


def placement_epochs(n_epochs: int | None, n_placed: int) -> int:
    """SGD epochs for placing `n_placed` points (umap's transform schedule: a third of the fit's)."""
    return int(n_epochs // 3) if n_epochs else (100 if n_placed <= 10_000 else 30)


class UmapConstants(NamedTuple):
    """The numbers of a fitted umap.UMAP that placing needs (small: what a cluster sends its workers)."""

    a: float
    b: float
    repulsion_strength: float
    learning_rate: float
    negative_sample_rate: float
    local_connectivity: float

    @classmethod
    def of(cls, model: Any) -> "UmapConstants":
        # umap's own values and types (an int rate stays an int: the same numba specialization as before)
        return cls(model._a, model._b, model.repulsion_strength, model.learning_rate, model.negative_sample_rate,
                   model.local_connectivity)


def placement_graph(local_connectivity: float, y_fit: np.ndarray, ids: np.ndarray, dists: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(initial coordinates, edge rows, edge cols, edge weights) of new points, each row from its own
    neighbours only, so rows may be computed in any split (shards) with the same values."""
    from umap.umap_ import compute_membership_strengths, smooth_knn_dist

    nr, k = ids.shape
    if nr == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    ids32 = ids.astype(np.int32)
    d = np.where(ids >= 0, dists, np.inf).astype(np.float32)
    sigmas, rhos = smooth_knn_dist(np.where(np.isfinite(d), d, 0), float(k),
                                   local_connectivity=float(max(0.0, local_connectivity - 1.0)))
    rows, cols, vals, _ = compute_membership_strengths(ids32, d, sigmas, rhos, bipartite=True)
    w = np.where(ids >= 0, vals.reshape(nr, k), 0).astype(np.float64)
    w_sum = w.sum(1, keepdims=True)
    w = np.where(w_sum > 0, w / np.where(w_sum > 0, w_sum, 1), 1.0 / k)
    emb = (w[:, :, None] * y_fit[np.clip(ids, 0, None)]).sum(1).astype(np.float32)
    return emb, rows, cols, vals


def optimize_placement(c: UmapConstants, y_fit: np.ndarray, graph: tuple[np.ndarray, ...], vmax: float, epochs: int,
                       seed: int | None) -> np.ndarray:
    """The short SGD of new points against the fixed fit. `vmax` is the largest edge weight over ALL
    points being placed (it sets the pruning and the sampling rate), so a shard placed alone with the
    global `vmax` and `epochs` follows the same updates as in one call: umap seeds each point's random
    stream from its own initial coordinate, and the fitted points do not move."""
    import scipy.sparse
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import make_epochs_per_sample

    emb, rows, cols, vals = graph
    if len(emb) == 0:
        return emb
    coo = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(emb), len(y_fit)))
    coo.data[coo.data < vmax / float(epochs)] = 0.0
    coo.eliminate_zeros()
    if coo.nnz == 0:
        return emb
    eps = make_epochs_per_sample(np.append(coo.data, np.float32(vmax)), epochs)[:-1]  # rates against the global max
    rng_state = np.random.RandomState(seed).randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3)
    return np.asarray(optimize_layout_euclidean(
        emb, y_fit.astype(np.float32, copy=True), coo.row, coo.col, epochs, len(y_fit), eps,
        c.a, c.b, rng_state.astype(np.int64), c.repulsion_strength, c.learning_rate / 4.0,
        c.negative_sample_rate, seed is None, verbose=False, tqdm_kwds={"disable": True}), dtype=np.float32)
