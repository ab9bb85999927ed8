"""Farthest-point sampling over shards held in Dask worker memory: exact, and stratified.

Per step each shard updates its own min-distances with the new pick and returns its farthest
point (value, id, row); the client keeps the global argmax. The per-shard kernel is the
single-process one (`sampling._Store.sq_dists`), so the picks are those of
`farthest_point_sample` on the whole matrix. Min-distances lost with a worker are recomputed by
Dask from their lineage (the shard reloaded from its file, the step tasks run again: same values).
Shards held on disk (`ShardedEmbeddings(hold="disk")`) rebuild their store from the file in every
step: the same values, one shard in memory at a time, one read of the file per step.

Stratified FPS (the Curator paper's: the farthest point within a random candidate subset, redrawn
every k/10 picks) prepares each shard's share of a redraw's candidates on its worker, with their
distances to every pick so far; the client draws the subsets with the single-process generator
and runs the single-process pick loop on what comes back, so the picks are
`stratified_farthest_point_sample`'s.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from .sampling import _check_k, _check_metric, _choose_layout, _fill_exhausted, _resolve_dtype, _seed_list, _to_distance
from .shards import Shard, ShardedEmbeddings, rows_of


class _Meta:
    """Shape and dtype only: what `_resolve_dtype` reads to choose the storage precision."""

    def __init__(self, n: int, d: int, dtype: np.dtype):
        self.shape, self.dtype = (n, d), dtype


def _shard_sum(item: tuple[Any, np.ndarray]) -> np.ndarray:
    """float64 column sums of a shard, chunked as sampling._column_mean sums the whole matrix."""
    import torch

    from .sampling import DEFAULT_CHUNK, _rows

    rows = rows_of(item)
    acc = torch.zeros(rows.shape[1], dtype=torch.float64)
    for s in range(0, len(rows), DEFAULT_CHUNK):
        acc += _rows(rows, s, min(len(rows), s + DEFAULT_CHUNK)).double().sum(0)
    return acc.numpy()


def _shard_store(item: tuple[Any, np.ndarray], metric: str, mean: np.ndarray | None, dtype: str,
                 transposed: bool) -> tuple[int, Any]:
    """(first row id, the shard in the single-process storage layout, centred by the global mean)."""
    import torch

    from .sampling import DEFAULT_CHUNK, _Store

    shard, rows = item
    if rows is None:
        return shard.lo, _FileStore(shard, metric, mean, dtype, transposed)
    with torch.no_grad():
        store = _Store(rows, metric, getattr(torch, dtype), torch.device("cpu"), transposed, DEFAULT_CHUNK,
                       mean=None if mean is None else torch.from_numpy(mean))
    return shard.lo, store


class _FileStore:
    """A shard's `_Store` rebuilt from the file whenever it is used (hold="disk"): the held store's values,
    with only one shard's rows in memory during a step and none between steps."""

    def __init__(self, shard: Shard, metric: str, mean: np.ndarray | None, dtype: str, transposed: bool):
        self.shard, self.metric, self.mean, self.dtype, self.transposed = shard, metric, mean, dtype, transposed
        self.n = shard.hi - shard.lo

    def _store(self, rows: np.ndarray) -> Any:
        import torch

        from .sampling import DEFAULT_CHUNK, _Store

        with torch.no_grad():
            return _Store(rows, self.metric, getattr(torch, self.dtype), torch.device("cpu"), self.transposed,
                          DEFAULT_CHUNK, mean=None if self.mean is None else torch.from_numpy(self.mean))

    def sq_dists(self, c: Any, out: Any) -> Any:
        return self._store(self.shard.read()).sq_dists(c, out)

    def row(self, i: int) -> Any:
        return self._store(self.shard.read(int(i), int(i) + 1)).row(0)  # preparing a row depends on that row only


def _shard_step(state: tuple[int, Any], mind: Any, c: np.ndarray, cur: int) -> Any:
    """Min-distances after pick `cur` (row `c`), as the single-process loop computes them; a new
    array, the input untouched, so a retried task sees what the first try saw."""
    import torch

    lo, store = state
    with torch.no_grad():
        if mind is None:
            mind = torch.full((store.n,), math.inf, dtype=torch.float32)
        if lo <= cur < lo + store.n:
            mind = mind.clone()
            mind[cur - lo] = 0.0
        return torch.minimum(mind, store.sq_dists(torch.from_numpy(c), torch.empty_like(mind)))


def _shard_best(state: tuple[int, Any], mind: Any) -> tuple[float, int, np.ndarray]:
    """(largest min-distance, its global id, its stored row)."""
    import torch

    lo, store = state
    val, idx = torch.max(mind, 0)
    return float(val), lo + int(idx), store.row(int(idx)).numpy()


def _shard_row(state: tuple[int, Any], cur: int) -> np.ndarray | None:
    lo, store = state
    return store.row(cur - lo).numpy() if lo <= cur < lo + store.n else None


def cluster_farthest_point_sample(X: Any, k: int, start: int | Sequence[int] = 0, metric: str = "l2", *,
                                  client: Any = None, shard_rows: int | None = None, dtype: Any = None,
                                  layout: str = "auto", step_times: list | None = None, progress: bool = True,
                                  hold: str = "memory") -> tuple[np.ndarray, np.ndarray]:
    """`farthest_point_sample` with the data held as shards on a Dask cluster: (indices [k], radii [k]).

    X is an embedding matrix (a .npy memmap or a zarr array is read by the workers themselves) or
    a `ShardedEmbeddings` already loaded. `step_times`, if a list, receives each step's seconds; a
    bar counts the picks as each step's shards answer.
    """
    import torch

    from .progress import progress_bar

    metric = _check_metric(metric)
    sh = X if isinstance(X, ShardedEmbeddings) else ShardedEmbeddings(X, client=client, shard_rows=shard_rows,
                                                                      hold=hold)
    client = sh.client
    n, d = sh.n, sh.d
    try:
        k = _check_k(k, n)
        seeds = _seed_list(start, n, k)
        cpu = torch.device("cpu")
        sdtype = _resolve_dtype(_Meta(n, d, sh.dtype), dtype, cpu, "eager")
        transposed = _choose_layout(layout, n, d, k, sdtype, cpu, "eager")
        mean = None
        if metric == "l2":
            mean = torch.from_numpy(np.sum(sh.gather(sh.map(_shard_sum)), axis=0) / n).float().numpy()
        stores = sh.map(_shard_store, metric, mean, str(sdtype).replace("torch.", ""), transposed)

        def row_of(i: int) -> np.ndarray:
            return next(r for r in client.gather([client.submit(_shard_row, s, i, pure=False) for s in stores])
                        if r is not None)

        picks = np.empty(k, dtype=np.int64)
        radii = np.empty(k, dtype=np.float32)
        minds: list[Any] = [None] * len(stores)
        cur, c = seeds[0], row_of(seeds[0])
        with progress_bar(total=k, desc="farthest-point sampling (cluster)", unit="pick", disable=not progress,
                          leave=False) as bar:
            for j in range(k):
                t0 = time.perf_counter()
                picks[j] = cur
                minds = [client.submit(_shard_step, s, m, c, cur, pure=False) for s, m in zip(stores, minds)]
                best = client.gather([client.submit(_shard_best, s, m, pure=False) for s, m in zip(stores, minds)])
                val, idx, row = max(best, key=lambda b: (b[0], -b[1]))  # ties: the lowest id, as torch.max
                radii[j] = val
                cur, c = (seeds[j + 1], row_of(seeds[j + 1])) if j + 1 < len(seeds) else (int(idx), row)
                if step_times is not None:
                    step_times.append(time.perf_counter() - t0)
                bar.update(1)
    finally:
        if sh is not X:
            sh.close()
    return _fill_exhausted(picks, radii, n), _to_distance(radii, metric)


# ----------------------------------------------------------------------------- stratified FPS over shards
def _shard_rows_at(item: tuple[Any, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """The raw rows of the global ids `ids` (sorted, all in this shard, at least one)."""
    shard, rows = item
    local = np.asarray(ids, dtype=np.int64) - shard.lo
    if rows is None:  # hold="disk": read the span the ids cover, not the whole shard
        lo = int(local[0])
        return np.array(shard.read(lo, int(local[-1]) + 1)[local - lo])
    return np.array(rows[local])


def _cand_draw(item: tuple[Any, np.ndarray], ids: np.ndarray, metric: str, mean: np.ndarray | None,
               picked: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This shard's share of a redraw: (its candidate ids, their prepared rows, |rows|^2, squared distance
    to the nearest pick so far), computed where the rows are."""
    import torch

    from .sampling import _prepare_chunk, _rows, min_sq_to_rows

    with torch.no_grad():
        V = _prepare_chunk(_rows(_shard_rows_at(item, ids), 0, len(ids)), metric,
                           None if mean is None else torch.from_numpy(mean))
        v2 = V.pow(2).sum(1)
        cmin = min_sq_to_rows(V, v2, torch.from_numpy(picked), chunk_size)
    return np.asarray(ids, dtype=np.int64), V.numpy(), v2.numpy(), cmin.numpy()


def cluster_stratified_farthest_point_sample(X: Any, k: int, subset_size: int | None = None,
                                             resample_every: int | None = None, start: int = 0,
                                             metric: str = "l2", *, seed: int = 0, client: Any = None,
                                             shard_rows: int | None = None, hold: str = "memory",
                                             chunk_size: int = 8192, trace: list | None = None,
                                             step_times: list | None = None, progress: bool = True
                                             ) -> tuple[np.ndarray, np.ndarray]:
    """`stratified_farthest_point_sample` with the rows on a Dask cluster: the same picks and radii.

    The client draws each candidate subset exactly as one process does; each shard reads and prepares
    its share of the candidates and measures their distances to every pick so far (a redraw's heavy
    part, k x m x d at the last one) where its rows are, and sends them back; the picks until the next
    redraw are the single-process loop's (`sampling.stratified_picks`), one matrix-vector product
    each over the m candidates, with no round trip. Only candidate rows travel, once per redraw.
    """
    import torch

    from .progress import progress_bar
    from .sampling import _prepare_chunk, _rows, draw_candidates, mean_sample_rows, stratified_defaults, stratified_picks

    metric = _check_metric(metric)
    sh = X if isinstance(X, ShardedEmbeddings) else ShardedEmbeddings(X, client=client, shard_rows=shard_rows,
                                                                      hold=hold)
    client = sh.client
    n = sh.n
    bounds = np.array([s.lo for s in sh.shards[1:]], dtype=np.int64)

    def by_shard(ids: np.ndarray) -> list[tuple[Any, np.ndarray]]:
        parts = np.split(np.asarray(ids, dtype=np.int64), np.searchsorted(ids, bounds))
        return [(f, p) for f, p in zip(sh.futures, parts) if len(p)]

    def raw_rows(ids: np.ndarray) -> np.ndarray:
        return np.concatenate(client.gather([client.submit(_shard_rows_at, f, p, pure=False) for f, p in by_shard(ids)]))

    try:
        k = _check_k(k, n)
        start = _seed_list(start, n, 1)[0]
        m, r = stratified_defaults(n, k, subset_size, resample_every)
        rng = np.random.default_rng(seed)
        mean = mean_t = None
        if metric == "l2":  # the same row sample and float64 mean as one process
            sample = raw_rows(mean_sample_rows(n, seed))
            mean_t = _rows(sample, 0, len(sample)).double().mean(0).float()
            mean = mean_t.numpy()

        def draw(selected: np.ndarray, picked: "torch.Tensor"):
            cand = draw_candidates(selected, m, rng)
            if trace is not None:
                trace.append({"step": len(picked), "candidates": cand.copy()})
            sent = picked.cpu().numpy()
            parts = client.gather([client.submit(_cand_draw, f, p, metric, mean, sent, chunk_size, pure=False)
                                   for f, p in by_shard(cand)])  # shard order: the ids stay sorted
            return (np.concatenate([p[0] for p in parts]),
                    *(torch.from_numpy(np.concatenate([p[i] for p in parts])) for i in (1, 2, 3)))

        with torch.no_grad():
            start_vec = _prepare_chunk(_rows(raw_rows(np.array([start])), 0, 1), metric, mean_t)[0]
        with progress_bar(total=k, desc="stratified farthest-point sampling (cluster)", unit="pick",
                          disable=not progress, leave=False) as bar:
            picks, radii = stratified_picks(n, k, r, start, start_vec, draw, bar, step_times)
    finally:
        if sh is not X:
            sh.close()
    return picks, _to_distance(radii, metric)
