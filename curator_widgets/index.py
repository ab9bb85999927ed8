"""Similarity index over a run's embeddings: FAISS (CPU or GPU) or exact torch on CUDA, with filters
applied inside the search so `k` results come back, and a recall knob calibrated when it is built.

Files: `index/<run>.faiss` (the FAISS index, rows = manifest ids 0..N-1) and `index/<run>.json`
(how it was built and checked). Scores are cosine similarity (higher is closer) for
`metric="cosine"` and Euclidean distance (lower is closer) for `metric="l2"`; internally both are
L2 searches (cosine vectors are L2-normalised), which every FAISS index type supports.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_json
from . import ondisk
from .errors import CuratorError
from .omp import one_omp_thread

if TYPE_CHECKING:  # pragma: no cover
    from .workspace import Workspace

FORMAT = "curator-index"
VERSION = 1
METRICS = ("cosine", "l2")
KINDS = ("auto", "flat", "hnsw", "ivf", "ivf-fp16", "ivf-sq8", "ivf-pq")
MODES = ("mean", "union")
FLAT_MAX = 50_000            # faiss guideline: exact search is fine below ~10k-50k vectors
EXACT_SUBSET_MAX = 20_000    # a filter that leaves fewer rows than this is searched exactly over them
HNSW_M = 32
# The efSearch of an HNSW coarse quantizer (a factory string such as "IVF65536_HNSW32,SQ8"): auto never picks one, since
# on this box, on the scale benchmark's vectors, the graph assigned vectors to lists slower than the exact scan at every
# list count measured up to 25k (0.3-0.8x; benchmarks/ivf_quantizer.py).
QUANTIZER_EF = 64
# A two-level coarse quantizer (a factory string such as "IVF12649(IVF225,Flat),Flat"): the centroids themselves in
# their own IVF, 1 / COARSE_PROBE_SHARE of its lists (at least QUANTIZER_NPROBE) scanned per vector. auto does not
# pick it: on the scale benchmark's 10M vectors (39 mixtures) the build was markedly slower than with the exact scan
# (docs/search.md).
COARSE_PROBE_SHARE = 16
QUANTIZER_NPROBE = 8
CHUNK = 65_536               # rows per block when streaming embeddings from the memmap
CALIBRATION_QUERIES = 400
CALIBRATION_MARGIN = 0.01    # aim a little above the target: held-out queries measured ~0.01 below it
RECALL_K = 10
MAX_EF_SEARCH = 4096
REFINE_PQ = 4                # compressed codes: fetch 4k (PQ) / 2k (SQ8) candidates, re-rank exactly from disk
REFINE_SQ = 2
SMALL_BATCH = 8              # query batches up to this size run faiss on one thread
GPU_MAX_K = 2048             # faiss GPU indexes return at most 2048 neighbours per query
FILTER_KEYS = ("date", "layer", "source", "bbox", "flags", "exclude_flags", "label", "max_cloud", "min_land", "ids")


# ============================================================================== results
class SearchResult:
    """Nearest chips, best first: `ids`, `scores` (cosine similarity, or L2 distance) and `rows`, the
    manifest rows with rank and score (built on first access: a search costs only the search)."""

    def __init__(self, ids: np.ndarray, scores: np.ndarray, rows: pd.DataFrame | None = None, metric: str = "cosine",
                 params: dict[str, Any] | None = None, rows_loader: Callable[[], pd.DataFrame] | None = None):
        self.ids = ids
        self.scores = scores
        self.metric = metric
        self.params = params or {}
        self._rows = rows
        self._loader = rows_loader

    @property
    def rows(self) -> pd.DataFrame:
        if self._rows is None:
            self._rows = self._loader() if self._loader is not None else pd.DataFrame(
                {"rank": np.arange(1, len(self.ids) + 1), "score": self.scores}, index=pd.Index(self.ids))
        return self._rows

    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def higher_is_better(self) -> bool:
        return self.metric in ("cosine", "votes")

    def __repr__(self) -> str:
        head = ", ".join(f"{i}:{s:.3f}" for i, s in zip(self.ids[:5].tolist(), self.scores[:5].tolist()))
        return f"SearchResult({len(self)} chips, {self.metric}; {head}{', ...' if len(self) > 5 else ''})"


# ============================================================================== embeddings access
def read_embeddings(ws: "Workspace", run: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The run's embeddings as a read-only float16 memmap [N, d] (or lazy zarr array) plus its sidecar."""
    from .zarr_embeddings import open_zarr_embeddings

    path = ws.embeddings_path(run)
    lazy = open_zarr_embeddings(ws, run)
    if lazy is not None:
        return lazy, json.loads(path.with_suffix(".json").read_text())
    if not path.exists():
        have = sorted(p.stem for p in (ws.root / "embeddings").glob("*.npy") if not p.name.startswith("."))
        raise CuratorError(f"run {run!r} has no embeddings in {ws.root} (runs with embeddings: {have or 'none'})",
                           f"embed the chips first (curator_widgets.embed / `curator embed -w {ws.root} --run {run}`)")
    try:
        emb = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise CuratorError(f"embeddings file {path} is unreadable ({e})", f"re-run the embedding of run {run!r}") from None
    if emb.ndim != 2 or emb.shape[1] < 1:
        raise CuratorError(f"embeddings {path} have shape {emb.shape}, not [N, d]", f"re-run the embedding of run {run!r}")
    side = path.with_suffix(".json")
    meta: dict[str, Any] = {}
    if side.exists():
        try:
            meta = json.loads(side.read_text())
        except json.JSONDecodeError as e:
            raise CuratorError(f"embeddings sidecar {side} is corrupt ({e})", f"re-run the embedding of run {run!r}") from None
        if meta.get("dim") not in (None, emb.shape[1]) or meta.get("count") not in (None, emb.shape[0]):
            raise CuratorError(f"embeddings {path} hold {emb.shape[0]} x {emb.shape[1]} but {side.name} says "
                               f"{meta.get('count')} x {meta.get('dim')}",
                               f"the embedding of run {run!r} was interrupted; re-run it")
    return emb, meta


def prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, L2-normalised for cosine: the form every index stores and is queried with."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x[None, :]
    if not np.isfinite(x).all():
        raise CuratorError("vectors contain NaN or infinite values", "re-run the embedding; the model may have diverged")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32)


def _chunks(emb: np.ndarray, metric: str, start: int = 0, stop: int | None = None,
            size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    stop = emb.shape[0] if stop is None else stop
    for lo in range(start, stop, size):
        yield lo, prepare(emb[lo:min(lo + size, stop)], metric)


def _rows(emb: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")  # sorted gathers are sequential on the memmap
    out = np.empty((ids.size, emb.shape[1]), dtype=np.float32)
    out[order] = prepare(emb[ids[order]], metric) if ids.size else out[order]
    return out


def fingerprint(emb: np.ndarray) -> str:
    """Identity of an embedding run that survives appending rows (new chips) but not re-embedding."""
    head = np.ascontiguousarray(emb[: min(64, emb.shape[0])])
    return hashlib.sha1(head.tobytes() + str(emb.shape[1]).encode()).hexdigest()[:16]


# ============================================================================== choosing the index
def memory_budget_bytes(gb: float | None = None) -> int:
    """Bytes an index may take: `gb` if given, else a quarter of physical memory."""
    if gb is not None:
        if gb <= 0:
            raise CuratorError(f"memory_budget_gb={gb} must be positive", "give the memory the index may use, e.g. 4")
        return int(gb * 2**30)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def auto_nlist(n: int) -> int:
    """IVF list count: 4*sqrt(N) (faiss guideline 4..16 sqrt(N), the low end keeps k-means cheap on CPU),
    capped so every list gets the ~39 training points k-means wants."""
    return int(max(1, min(int(4 * math.sqrt(n)), n // 39)))


def coarse_lists(nlist: int) -> int:
    """Lists of a two-level coarse quantizer over `nlist` centroids: 2 sqrt(nlist)."""
    return max(1, int(round(2 * math.sqrt(nlist))))


def coarse_default_nprobe(coarse: int) -> int:
    """Coarse lists a vector is assigned through: 1 / COARSE_PROBE_SHARE of them, at least QUANTIZER_NPROBE."""
    return int(min(coarse, max(QUANTIZER_NPROBE, math.ceil(coarse / COARSE_PROBE_SHARE))))


def choose_factory(n: int, d: int, kind: str = "auto", memory_budget: int | None = None,
                   ivf_only: bool = False) -> tuple[str, str]:
    """(faiss factory string, why) for `n` vectors of dimension `d`, following faiss's index guidelines.

    auto: Flat up to FLAT_MAX vectors (exact and fast enough); above, IVF{4 sqrt N} with the
    storage that fits the memory budget: Flat (4 B/dim), SQfp16 (2 B/dim, lossless for the
    float16 embeddings), SQ8 (1 B/dim), then PQ. HNSW is offered as `kind="hnsw"` but not picked
    by auto on CPU: its build is ~5x slower than IVF's here for the same recall and latency. The coarse
    quantizer is the exact scan of the centroids (benchmarks/ivf_quantizer.py: neither a graph nor a two-level IVF
    over them paid on the scale benchmark's vectors).
    `ivf_only` (on-disk lists): auto never picks exact Flat, and a kind without inverted lists is an error.
    """
    if ivf_only and (kind in ("flat", "hnsw") or (kind not in KINDS and not kind.startswith("IVF"))):
        raise CuratorError(f"on_disk=True needs an IVF index, but kind {kind!r} has no inverted lists",
                           "use kind='auto' or an IVF kind ('ivf', 'ivf-sq8', 'IVF4096,SQ8', ...), or on_disk=False")
    if kind not in KINDS:
        if "," in kind or kind.startswith(("IVF", "HNSW", "Flat", "PQ", "OPQ", "PCA", "SQ", "LSH")):
            return kind, "faiss factory string given"
        raise CuratorError(f"unknown index kind {kind!r}",
                           f"use one of {', '.join(KINDS)}, or a faiss index_factory string such as 'IVF1024,SQ8'")
    budget = memory_budget_bytes() if memory_budget is None else int(memory_budget)
    nlist = auto_nlist(n)
    if kind == "flat":
        return "Flat", "asked for exact search"
    if kind == "hnsw":
        return f"HNSW{HNSW_M},Flat", "asked for HNSW"
    if kind == "ivf":
        return f"IVF{nlist},Flat", "asked for IVF"
    if kind == "ivf-fp16":
        return f"IVF{nlist},SQfp16", "asked for IVF with float16 storage"
    if kind == "ivf-sq8":
        return f"IVF{nlist},SQ8", "asked for IVF with 8-bit scalar quantization"
    if kind == "ivf-pq":
        return f"IVF{nlist},{_pq_spec(n, d, max(1, d // 4))}", "asked for IVF with product quantization"
    # auto
    if n <= FLAT_MAX and not ivf_only:
        if n * d * 4 <= budget:
            return "Flat", f"{n} <= {FLAT_MAX} vectors: exact search is fast enough"
    for spec, nbytes, why in (("Flat", 4, "fits in memory as float32"), ("SQfp16", 2, "float16 storage fits the budget"),
                              ("SQ8", 1, "8-bit storage fits the budget")):
        if n * d * nbytes <= budget:
            return f"IVF{nlist},{spec}", f"{n} vectors: IVF{nlist} (4 sqrt N lists), {why}"
    m = max(1, int(budget // max(n, 1)))
    m = max([c for c in range(1, d + 1) if d % c == 0 and c <= m] or [1])
    return f"IVF{nlist},{_pq_spec(n, d, m)}", f"{n} vectors do not fit {budget / 2**30:.1f} GiB even at 8 bits: product quantization"


def _coarse_ivf(ivf: Any, seed: int) -> Any:
    """The two-level quantizer (an IndexIVF over the centroids) of `ivf`, set to be trained after the exact
    k-means (faiss's quantizer_trains_alone=2), or None."""
    import faiss

    if ivf is None:
        return None
    q = faiss.downcast_index(ivf.quantizer)
    if not isinstance(q, faiss.IndexIVF):
        return None
    ivf.quantizer_trains_alone = 2
    q.cp.seed = int(seed)
    q.cp.min_points_per_centroid = 16  # nlist centroids in 2 sqrt(nlist) lists: ~sqrt(nlist)/2 points per list
    return q


def _exact_clustering(ivf: Any) -> Any:
    """k-means with exact assignments when the quantizer is an HNSW graph: the same centroids as the
    flat quantizer's (faiss would otherwise cluster through a graph rebuilt every iteration, in a
    thread-dependent order). Returns the flat index, which must outlive the training call."""
    import faiss

    if ivf is None or not isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        return None
    flat = faiss.IndexFlatL2(ivf.d)
    ivf.clustering_index = flat
    return flat


def _rebuild_quantizer(ivf: Any) -> None:
    """Rebuild the HNSW graph over the trained centroids on one thread: faiss's parallel insertion
    depends on thread timing, and two builds from one seed must assign every vector alike."""
    import faiss

    ivf.clustering_index = None
    q = faiss.downcast_index(ivf.quantizer)
    centroids = q.storage.reconstruct_n(0, q.ntotal)
    with one_omp_thread():
        q.reset()
        q.add(centroids)
    q.hnsw.efSearch = QUANTIZER_EF
    q.is_trained = True


def _no_polysemous(index: Any) -> None:
    """index_factory turns on polysemous training for PQ, which takes seconds even on tiny data; we never
    use polysemous filtering, and re-rank compressed candidates exactly instead."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    for idx in (faiss.downcast_index(index), faiss.downcast_index(ivf) if ivf is not None else None):
        if idx is not None and hasattr(idx, "do_polysemous_training"):
            idx.do_polysemous_training = False


def _pq_spec(n: int, d: int, m: int) -> str:
    m = max([c for c in range(1, d + 1) if d % c == 0 and c <= m] or [1])
    nbits = int(min(8, max(4, math.floor(math.log2(max(n, 16) / 39)))))
    return f"PQ{m}x{nbits}"


# ============================================================================== the index object
class SimilarityIndex:
    """A loaded index plus what it needs to answer filtered searches (the run's embeddings)."""

    def __init__(self, ws: "Workspace | None", run: str | None, index: Any, params: dict[str, Any], emb: np.ndarray,
                 backend: str = "faiss-cpu"):
        self.ws, self.run, self.index, self.params, self.emb = ws, run, index, params, emb
        self.metric: str = params["metric"]
        self.backend = backend
        self._device_index: Any = None
        self._torch: Any = None
        if backend == "faiss-gpu":
            self._device_index = _to_gpu(index)
            if self._device_index is None:
                self.backend = "faiss-cpu"
        elif backend.startswith("torch"):
            self._torch = _TorchExact(emb, self.metric, "cuda" if backend == "torch-cuda" else "cpu", self.ntotal)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def knob(self) -> str | None:
        """'nprobe' (IVF), 'efSearch' (HNSW) or None (exact)."""
        return self.params.get("knob_name")

    def __repr__(self) -> str:
        kb = f", {self.knob}={self.params.get('knob')}" if self.knob else ""
        return f"SimilarityIndex({self.run!r}, {self.params['factory']}, {self.ntotal} x {self.dim}, {self.metric}{kb}, {self.backend})"

    # ---------------------------------------------------------------- raw search on prepared vectors
    def search_prepared(self, q: np.ndarray, k: int, mask: np.ndarray | None = None,
                        knob: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Squared-L2 distances and ids [nq, k] (id -1 where fewer exist) of prepared queries,
        restricted to rows where `mask` is True (inside the search, so k come back)."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        k = int(k)
        n = self.ntotal
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (n,):
                raise ValueError(f"mask has shape {mask.shape}, index has {n} rows")
            if mask.all():
                mask = None
        allowed = n if mask is None else int(mask.sum())
        if allowed == 0 or n == 0:
            return np.full((len(q), k), np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if self._torch is not None:
            return self._torch.search(q, k, mask)
        if mask is not None and allowed <= EXACT_SUBSET_MAX:
            return self._exact_subset(q, k, np.flatnonzero(mask))
        if mask is None:
            return self._faiss_search(q, k, None, knob)
        return self._filtered(q, k, mask, knob)

    def _faiss_search(self, q: np.ndarray, k: int, sel: Any, knob: int | None) -> tuple[np.ndarray, np.ndarray]:
        value = knob or self.params.get("knob")
        refine = int(self.params.get("refine") or 1)
        kk = min(self.ntotal, k * refine) if refine > 1 else k
        if self._device_index is not None and kk <= GPU_MAX_K:
            _gpu_set_knob(self._device_index, self.knob, value)
            params = faiss_params(self._device_index, None, None, sel) if sel is not None else None
            D, I = self._device_index.search(q, kk, params=params)
        else:
            with _threads_for(len(q)):
                D, I = self.index.search(q, kk, params=faiss_params(self.index, self.knob, value, sel))
        if refine > 1:
            D, I = self._rerank(q, I, k)
        return D, I

    def _rerank(self, q: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances for compressed-index candidates, read from the embeddings on disk (no RAM copy)."""
        nq, kk = I.shape
        x = _rows(self.emb, np.where(I >= 0, I, 0).ravel(), self.metric).reshape(nq, kk, -1)
        d2 = ((x - q[:, None, :]) ** 2).sum(-1).astype(np.float32)
        d2[I < 0] = np.inf
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        D, I = np.take_along_axis(d2, order, 1), np.take_along_axis(I, order, 1)
        pad = k - D.shape[1]
        if pad > 0:
            D = np.hstack([D, np.full((nq, pad), np.inf, np.float32)])
            I = np.hstack([I, np.full((nq, pad), -1, np.int64)])
        return D, np.where(np.isfinite(D), I, -1)

    def _filtered(self, q: np.ndarray, k: int, mask: np.ndarray, knob: int | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        bitmap = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(bitmap)
        want = min(k, int(mask.sum()))
        if self._device_index is not None:
            try:
                D, I = self._faiss_search(q, k, sel, knob)
                if ((I >= 0) & ~mask[np.clip(I, 0, None)]).any():
                    raise RuntimeError("selector ignored")  # never trust a GPU index to honour it silently
            except RuntimeError:  # GPU indexes without selector support: fetch more, filter, then go exact
                D, I = self._overfetch(q, k, mask, knob)
            short = (I >= 0).sum(1) < want
            if short.any():
                D[short], I[short] = self._exact_subset(q[short], k, np.flatnonzero(mask))
            return D, I
        value = knob or self.params.get("knob")
        D, I = self._faiss_search(q, k, sel, value)
        short = (I >= 0).sum(1) < want
        limit = self._knob_limit()
        # a selective filter can leave fewer than k hits in the probed lists / graph: widen the search
        while short.any() and self.knob and value is not None and value < limit:
            value = min(limit, value * 4)
            D2, I2 = self._faiss_search(q[short], k, sel, value)
            D[short], I[short] = D2, I2
            short = (I >= 0).sum(1) < want
        if short.any():
            D[short], I[short] = self._exact_subset(q[short], k, np.flatnonzero(mask))
        del bitmap
        return D, I

    def _overfetch(self, q: np.ndarray, k: int, mask: np.ndarray, knob: int | None) -> tuple[np.ndarray, np.ndarray]:
        frac = max(mask.mean(), 1e-9)
        kk = min(self.ntotal, GPU_MAX_K, int(math.ceil(2 * k / frac)) + k)
        D, I = self._faiss_search(q, kk, None, knob)
        keep = (I >= 0) & mask[np.clip(I, 0, None)]
        outD = np.full((len(q), k), np.inf, np.float32)
        outI = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            ii, dd = I[r][keep[r]][:k], D[r][keep[r]][:k]
            outI[r, : ii.size], outD[r, : dd.size] = ii, dd
        return outD, outI

    def _knob_limit(self) -> int:
        if self.knob == "nprobe":
            return int(self.params.get("nlist") or 1)
        return MAX_EF_SEARCH

    def _exact_subset(self, q: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the rows `ids` only, streamed from the embeddings memmap."""
        import faiss

        heap = faiss.ResultHeap(len(q), k)
        for lo in range(0, ids.size, CHUNK):
            sub = ids[lo: lo + CHUNK]
            xb = prepare(self.emb[sub], self.metric)
            kk = min(k, sub.size)
            with _threads_for(len(q)):
                D, I = faiss.knn(q, xb, kk)
            heap.add_result(D, np.where(I >= 0, sub[np.clip(I, 0, None)], -1).astype(np.int64))
        return _finalized(heap)

    # ---------------------------------------------------------------- persistence
    def save(self) -> None:
        """Write the index and its params atomically (index first, params naming its size last)."""
        import faiss

        if self.ws is None or self.run is None:
            raise CuratorError("this index was built in memory (make_index) and belongs to no workspace run",
                               "use build_index(ws, run) to build and save a workspace index")
        path = self.ws.index_path(self.run)
        with atomic_path(path, suffix=".faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        self.params["count"] = self.ntotal
        self.params["index_bytes"] = path.stat().st_size
        data = ondisk.data_file(self.index)
        self.params["ivfdata"] = data.name if data is not None else None
        write_json(params_path(self.ws, self.run), self.params)
        ondisk.remove_stale(path, self.params["ivfdata"])  # only after the params naming the new file are written
        _CACHE.pop((str(path), self.backend), None)


class _TorchExact:
    """Exact search by matmul + topk on a torch device: the fallback when faiss has no GPU but CUDA exists."""

    def __init__(self, emb: np.ndarray, metric: str, device: str, n: int):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        blocks = [torch.from_numpy(x) for _, x in _chunks(emb, metric, 0, n)]
        x = torch.cat(blocks) if blocks else torch.zeros((0, emb.shape[1]))
        self.x = x.to(self.device)
        self.sq = (self.x * self.x).sum(1)

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        n = self.x.shape[0]
        qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).to(self.device)
        m = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=bool)).to(self.device)
        rows = max(1, int(2**26 // max(1, len(q))))  # ~256 MB of distances per block
        bestD = torch.full((len(q), k), float("inf"), device=self.device)
        bestI = torch.full((len(q), k), -1, dtype=torch.int64, device=self.device)
        qsq = (qt * qt).sum(1, keepdim=True)
        for lo in range(0, n, rows):
            hi = min(n, lo + rows)
            d2 = (qsq + self.sq[lo:hi][None, :] - 2.0 * qt @ self.x[lo:hi].T).clamp_min_(0.0)
            if m is not None:
                d2 = d2.masked_fill(~m[lo:hi][None, :], float("inf"))
            kk = min(k, hi - lo)
            d, i = torch.topk(d2, kk, dim=1, largest=False)
            i = torch.where(torch.isfinite(d), i + lo, torch.full_like(i, -1))
            allD, allI = torch.cat([bestD, d], 1), torch.cat([bestI, i], 1)
            order = torch.argsort(allD, dim=1, stable=True)[:, :k]
            bestD, bestI = torch.gather(allD, 1, order), torch.gather(allI, 1, order)
        bestI = torch.where(torch.isfinite(bestD), bestI, torch.full_like(bestI, -1))
        return bestD.cpu().numpy().astype(np.float32), bestI.cpu().numpy().astype(np.int64)


def _finalized(heap: Any) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of a streamed exact search, merged by faiss's own ResultHeap (public since faiss 1.7; what
    contrib.exhaustive_search.knn_ground_truth uses); empty slots read +inf / -1, as every caller expects."""
    heap.finalize()
    D, I = np.ascontiguousarray(heap.D, np.float32), np.ascontiguousarray(heap.I, np.int64)
    D[I < 0] = np.inf  # the heap fills empty slots with FLT_MAX
    return D, I


@contextmanager
def _threads_for(nq: int) -> Iterator[None]:
    """One OpenMP thread for a handful of queries: faiss parallelises over queries, so a single query
    gains nothing from more threads and pays their wake-up; on a busy machine that costs 10-100x."""
    if nq > SMALL_BATCH:
        yield
        return
    with one_omp_thread():
        yield


def coarse_nprobe(nprobe: int, nlist: int, coarse: int) -> int:
    """Coarse lists to scan so the two-level quantizer sees ~4x the `nprobe` centroids a search asks for."""
    return int(min(coarse, max(coarse_default_nprobe(coarse), math.ceil(4 * nprobe * coarse / max(nlist, 1)))))


def faiss_params(index: Any, knob_name: str | None, knob: int | None, sel: Any) -> Any:
    """Per-call SearchParameters (thread-safe, unlike setting nprobe on the index) with an optional selector."""
    import faiss

    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexPreTransform):
        inner = faiss_params(idx.index, knob_name, knob, sel)
        p = faiss.SearchParametersPreTransform()
        p.index_params = inner
        p._keep = inner  # the SWIG object does not own `inner`
        return p
    kw: dict[str, Any] = {}
    if sel is not None:
        kw["sel"] = sel
    if isinstance(idx, faiss.IndexIVF) or (hasattr(faiss, "GpuIndexIVF") and isinstance(idx, faiss.GpuIndexIVF)):
        if knob is not None and knob_name == "nprobe":
            kw["nprobe"] = int(knob)
        quantizer = faiss.downcast_index(idx.quantizer) if isinstance(idx, faiss.IndexIVF) else None
        inner = None
        if knob is not None and isinstance(quantizer, faiss.IndexHNSW) and int(knob) > quantizer.hnsw.efSearch:
            inner = faiss.SearchParametersHNSW(efSearch=int(knob))  # the graph must return nprobe lists
        elif knob is not None and isinstance(quantizer, faiss.IndexIVF):
            inner = faiss.SearchParametersIVF(nprobe=coarse_nprobe(int(knob), idx.nlist, quantizer.nlist))
        if inner is not None:
            p = faiss.SearchParametersIVF(quantizer_params=inner, **kw)
            p._keep = inner  # the SWIG object does not own `inner`
            return p
        return faiss.SearchParametersIVF(**kw) if kw else None
    if isinstance(idx, faiss.IndexHNSW):
        if knob is not None and knob_name == "efSearch":
            kw["efSearch"] = int(knob)
        return faiss.SearchParametersHNSW(**kw) if kw else None
    return faiss.SearchParameters(**kw) if kw else None


def _to_gpu(index: Any) -> Any:
    """The index on all faiss GPUs, or None when this index type has no GPU version (HNSW)."""
    import faiss

    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError):
        return None


def _gpu_set_knob(index: Any, name: str | None, value: Any) -> None:
    import faiss

    if name == "nprobe" and value is not None:
        faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", int(value))


# ============================================================================== device choice
def _cuda_possible() -> bool:
    """Whether CUDA may exist, without paying torch's import unless a driver is there or torch is loaded."""
    if "torch" not in sys.modules and not Path("/proc/driver/nvidia/version").exists():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_backend(device: str = "auto") -> str:
    """'faiss-gpu' when faiss sees GPUs, else 'torch-cuda' when torch does, else 'faiss-cpu'.

    `device="torch-cpu"` runs the exact torch search on the CPU: the tested twin of the CUDA path."""
    import faiss

    if device not in ("auto", "cpu", "cuda", "torch-cpu"):
        raise CuratorError(f"device {device!r} is not one of auto, cpu, cuda, torch-cpu", "use device='auto'")
    if device == "cpu":
        return "faiss-cpu"
    if device == "torch-cpu":
        return "torch-cpu"
    if faiss.get_num_gpus() > 0:
        return "faiss-gpu"
    if _cuda_possible():
        return "torch-cuda"
    if device == "cuda":
        raise CuratorError("device='cuda' but neither faiss nor torch sees a GPU",
                           "use device='auto' or 'cpu', or install faiss-gpu-cu12 / a CUDA build of torch")
    return "faiss-cpu"


# ============================================================================== build / load / add
def params_path(ws: "Workspace", run: str) -> Path:
    return ws.index_path(run).with_suffix(".json")


def build_index(ws: "Workspace", run: str, kind: str = "auto", metric: str = "cosine", *, rebuild: bool = False,
                target_recall: float = 0.95, memory_budget_gb: float | None = None, device: str = "auto",
                seed: int = 0, progress: bool = True, client: Any = None, shard_rows: int | None = None,
                on_disk: bool = False) -> SimilarityIndex:
    """Build (or reuse, or extend) the similarity index of `run`'s embeddings and save it.

    An existing index with the same kind and metric over the same embeddings is reused; if chips
    were embedded since, they are added without a rebuild. IVF/HNSW search knobs are calibrated
    to reach `target_recall` recall@10 on sampled chips against exact search. With a Dask cluster
    (`client=`, $CURATOR_DASK_SCHEDULER or the current Client) the shards are added on its workers.
    `on_disk=True` keeps the IVF lists in a memory-mapped `.ivfdata` file beside the index (built in
    blocks of `shard_rows`, on the workers when there is a cluster), for runs whose codes exceed RAM.
    """
    import faiss

    from .cluster import get_client

    if metric not in METRICS:
        raise CuratorError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
    if not 0 < target_recall <= 1:
        raise CuratorError(f"target_recall={target_recall} is not in (0, 1]", "use e.g. 0.95")
    emb, emeta = read_embeddings(ws, run)
    n, d = emb.shape
    if n == 0:
        raise CuratorError(f"run {run!r} has no embedded chips", "ingest and embed chips first")
    if not rebuild and ws.index_path(run).exists() and params_path(ws, run).exists():
        try:
            old = json.loads(params_path(ws, run).read_text())
        except json.JSONDecodeError:
            old = {}
        same = (old.get("kind") == kind and old.get("metric") == metric and old.get("dim") == d
                and bool(old.get("ivfdata")) == bool(on_disk)
                and old.get("embeddings", {}).get("fingerprint") == fingerprint(emb)
                and old.get("target_recall") == target_recall and (old.get("count") or 0) <= n)
        if same:
            if old["count"] < n:
                add_to_index(ws, run, progress=progress)
            return load_index(ws, run, device=device)
    backend = resolve_backend(device)
    cluster = get_client(client)
    data_path = ondisk.new_data_path(ws.index_path(run)) if on_disk else None
    if data_path is not None:
        data_path.parent.mkdir(parents=True, exist_ok=True)
    if cluster is not None and (backend == "faiss-cpu" or on_disk):
        import functools

        from .cluster_index import shard_adder, shard_writer
        from .shards import ShardedEmbeddings, one_pass_hold

        prep = functools.partial(prepare, metric=metric)
        # one pass over the rows: the workers read each shard in its add task, so none holds more than one
        with ShardedEmbeddings(emb, client=cluster, shard_rows=shard_rows, hold=one_pass_hold(emb)) as sh:
            add = (shard_writer(sh, prep, data_path, CHUNK, progress) if on_disk
                   else shard_adder(sh, prep, CHUNK, progress))
            sim = make_index(emb, metric, kind, target_recall=target_recall, memory_budget_gb=memory_budget_gb,
                             seed=seed, progress=progress, add=add, ivf_only=on_disk)
    elif on_disk:
        sim = make_index(emb, metric, kind, target_recall=target_recall, memory_budget_gb=memory_budget_gb, seed=seed,
                         progress=progress, ivf_only=True,
                         add=_block_adder(emb, metric, data_path, shard_rows, progress, f"index {run} (on disk)"))
    else:
        sim = make_index(emb, metric, kind, target_recall=target_recall, memory_budget_gb=memory_budget_gb, seed=seed,
                         gpu=backend == "faiss-gpu", progress=progress, desc=f"index {run}")
    sim.ws, sim.run = ws, run
    sim.params.update(run=run, embeddings={"fingerprint": fingerprint(emb), "model_run": emeta.get("model_run"),
                                           "normalized": emeta.get("normalized")})
    sim.save()
    p = sim.params
    ws.record("index", run, {"factory": p["factory"], "metric": metric, "count": p["count"], "knob": p.get("knob"),
                             "recall_at_10": p.get("recall_at_10"), "created": p["created"]})
    if backend != "faiss-cpu":
        return load_index(ws, run, device=device)
    _CACHE[(str(ws.index_path(run)), "faiss-cpu")] = (_stamp(ws, run), sim)
    return sim


def make_index(x: np.ndarray, metric: str = "cosine", kind: str = "auto", *, target_recall: float = 0.95,
               memory_budget_gb: float | None = None, seed: int = 0, gpu: bool = False, progress: bool = False,
               desc: str = "index", add: Callable[[Any], Any] | None = None, ivf_only: bool = False
               ) -> SimilarityIndex:
    """Build an in-memory index over rows of `x` (an array or the embeddings memmap), train it on a
    sample, and calibrate its knob; `build_index` saves one of these into the workspace.
    `add(trained_empty_index) -> filled index` replaces the chunked add (the cluster path's shards,
    on-disk blocks); `ivf_only` keeps the index IVF (on-disk lists need one)."""
    import faiss

    if metric not in METRICS:
        raise CuratorError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
    n, d = x.shape
    budget = memory_budget_bytes(memory_budget_gb)
    factory, why = choose_factory(n, d, kind, budget, ivf_only=ivf_only)
    t0 = time.perf_counter()
    try:
        index = faiss.index_factory(d, factory, faiss.METRIC_L2)
    except RuntimeError as e:
        raise CuratorError(f"faiss cannot build {factory!r}: {str(e).splitlines()[0][:200]}",
                           f"use one of the kinds {', '.join(KINDS)}") from None
    _no_polysemous(index)
    train_n = 0
    dev = _to_gpu(index) if gpu else None
    work = dev if dev is not None else index
    if not index.is_trained:
        ivf = faiss.try_extract_index_ivf(index)
        nlist = ivf.nlist if ivf is not None else 256
        train_n = int(min(n, max(40 * nlist, 256 * 40 if "PQ" in factory else 0, 10_000)))
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n, train_n, replace=False)) if train_n < n else np.arange(n)
        if ivf is not None:
            ivf.cp.seed = int(seed)
        exact = _exact_clustering(ivf) if dev is None else None
        coarse = _coarse_ivf(ivf, seed)
        work.train(_rows(x, pick, metric))
        if exact is not None:
            _rebuild_quantizer(ivf)
        if coarse is not None:
            coarse.nprobe = coarse_default_nprobe(coarse.nlist)
            coarse.make_direct_map()  # centroids by list number: merging shard indexes compares the quantizers
    from .progress import progress_bar as tqdm

    if add is not None and dev is None:
        index = work = add(index)
    else:
        with tqdm(total=n, desc=desc, unit="vec", disable=not progress or n < 200_000, leave=False) as bar:
            for _, xb in _chunks(x, metric, 0, n):
                work.add(xb)
                bar.update(len(xb))
    if dev is not None:
        index = faiss.index_gpu_to_cpu(dev)
    params: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "run": None, "kind": kind, "factory": factory, "reason": why,
        "metric": metric, "dim": int(d), "count": int(index.ntotal), "train_size": int(train_n),
        "target_recall": float(target_recall), "built_on": "faiss-gpu" if dev is not None else "faiss-cpu",
        "created": _now(), "added": [],
    }
    if "PQ" in factory or "SQ8" in factory or "SQ4" in factory:
        params["refine"] = REFINE_PQ if "PQ" in factory else REFINE_SQ
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        params.update(knob_name="nprobe", nlist=int(ivf.nlist))
    elif isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        params.update(knob_name="efSearch")
    sim = SimilarityIndex(None, None, index, params, x, "faiss-cpu")
    if params.get("knob_name"):
        value, recall = calibrate(sim, target_recall, seed=seed)
        params.update(knob=int(value), recall_at_10=round(recall, 4))
        if (kind == "auto" and params["knob_name"] == "nprobe" and value > params["nlist"] // 4 and n * d * 4 <= budget
                and not ivf_only):
            # no cluster structure (e.g. random vectors): IVF would scan >25% of its lists, exact Flat is as fast
            index = faiss.IndexFlatL2(d)
            for _, xb in _chunks(x, metric, 0, n):
                index.add(xb)
            params = {k: v for k, v in params.items() if k not in ("knob_name", "nlist", "knob", "refine")}
            params.update(factory="Flat", recall_at_10=1.0, train_size=0,
                          reason=f"{why}; but IVF needed nprobe={value} of {sim.params['nlist']} for recall@10 "
                                 f"{target_recall} (no cluster structure), so exact Flat is used")
            sim = SimilarityIndex(None, None, index, params, x, "faiss-cpu")
    else:
        params["recall_at_10"] = 1.0 if factory == "Flat" else None
    params["build_seconds"] = round(time.perf_counter() - t0, 3)
    return sim


def _block_adder(emb: np.ndarray, metric: str, data_path: Path, block_rows: int | None, progress: bool,
                 desc: str) -> Callable[[Any], Any]:
    """An `add=` for make_index that fills on-disk lists one block of rows at a time (one block in memory)."""
    from .progress import progress_bar as tqdm
    from .shards import DEFAULT_SHARD_ROWS

    rows = int(block_rows or DEFAULT_SHARD_ROWS)
    if rows < 1:
        raise CuratorError(f"shard_rows={block_rows} must be positive", "use e.g. 262144 rows per block")

    def add(index: Any) -> Any:
        n = emb.shape[0]
        blocks = ((lo, prepare(emb[lo:min(n, lo + rows)], metric)) for lo in range(0, n, rows))
        with tqdm(total=n, desc=desc, unit="vec", disable=not progress or n < 200_000, leave=False) as bar:
            return ondisk.build_blocks(index, blocks, data_path, on_block=bar.update)

    return add


def calibrate(sim: SimilarityIndex, target: float = 0.95, k: int = RECALL_K, queries: int = CALIBRATION_QUERIES,
              seed: int = 0) -> tuple[int, float]:
    """Smallest nprobe / efSearch reaching `target` (+ a small margin) recall@k, ties counted, on chips
    searched by id (themselves excluded); returns (knob, recall measured at it)."""
    n = sim.ntotal
    goal = min(1.0, target + CALIBRATION_MARGIN)
    rng = np.random.default_rng(seed + 1)
    qids = np.sort(rng.choice(n, min(queries, n), replace=False))
    q = _rows(sim.emb, qids, sim.metric)
    kk = min(k, n - 1)
    if kk < 1:
        return 1, 1.0
    gtD = exact_knn(sim.emb, q, kk + 1, sim.metric, n)[0]
    thresh = _kth_excluding_self(gtD, kk)
    if sim.knob == "nprobe":
        values = [v for v in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
                  if v < sim.params["nlist"]] + [sim.params["nlist"]]
    else:
        values = [16, 32, 64, 128, 256, 512, 1024, 2048, MAX_EF_SEARCH]
    best = (values[-1], 0.0)
    for v in values:
        D, I = sim._faiss_search(q, kk + 1, None, v)
        rec = _recall(sim, q, qids, I, thresh, kk)
        best = (v, rec)
        if rec >= goal:
            break
    return best


def _kth_excluding_self(gtD: np.ndarray, k: int) -> np.ndarray:
    # the query is in the database at distance 0, so the k-th neighbour excluding it is column k
    return gtD[:, k] * (1 + 1e-4) + 1e-6


def _recall(sim: SimilarityIndex, q: np.ndarray, qids: np.ndarray, I: np.ndarray, thresh: np.ndarray, k: int) -> float:
    """Tie-aware recall: a returned chip counts if its exact distance is within the true k-th distance."""
    hits = 0
    for r in range(len(q)):
        ids = I[r][(I[r] >= 0) & (I[r] != qids[r])][:k]
        if ids.size:
            x = _rows(sim.emb, ids, sim.metric)
            d = ((x - q[r]) ** 2).sum(1)
            hits += int((d <= thresh[r]).sum())
    return hits / (len(q) * k)


def exact_knn(emb: np.ndarray, q: np.ndarray, k: int, metric: str, n: int | None = None,
              progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared-L2 top-k of prepared queries over the first `n` embedding rows, streamed in blocks."""
    import faiss

    n = emb.shape[0] if n is None else n
    heap = faiss.ResultHeap(len(q), k)
    for lo, x in _chunks(emb, metric, 0, n):
        D, I = faiss.knn(q, x, min(k, len(x)))
        heap.add_result(D, np.where(I >= 0, I + lo, -1).astype(np.int64))
    return _finalized(heap)


_CACHE: dict[tuple[str, str], tuple[tuple, SimilarityIndex]] = {}


def _stamp(ws: "Workspace", run: str) -> tuple:
    stamps = []
    for p in (ws.index_path(run), params_path(ws, run), ws.embeddings_path(run)):
        st = p.stat()
        stamps.append((st.st_mtime_ns, st.st_size))
    return tuple(stamps)


def load_index(ws: "Workspace", run: str, device: str = "auto", check: bool = True) -> SimilarityIndex:
    """Load `run`'s index (cached in-process until its files change), checking it against the embeddings."""
    import faiss

    path = ws.index_path(run)
    if not path.exists() or not params_path(ws, run).exists():
        raise CuratorError(f"run {run!r} has no similarity index in {ws.root}",
                           f"build it: build_index(ws, {run!r}) or `curator index -w {ws.root} --run {run}`")
    backend = resolve_backend(device)
    key = (str(path), backend)
    stamp = _stamp(ws, run)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:  # same files: skip re-reading (and re-checking) them
        if check and len(ws) < hit[1].ntotal:
            _check(ws, run, hit[1].index, hit[1].params, hit[1].emb)
        return hit[1]
    emb, _ = read_embeddings(ws, run)
    try:
        params = json.loads(params_path(ws, run).read_text())
    except json.JSONDecodeError as e:
        raise CuratorError(f"index parameters {params_path(ws, run)} are corrupt ({e})",
                           f"rebuild: build_index(ws, {run!r}, rebuild=True)") from None
    if params.get("format") != FORMAT:
        raise CuratorError(f"{params_path(ws, run)} is not a curator index file", f"rebuild: build_index(ws, {run!r}, rebuild=True)")
    if params.get("index_bytes") not in (None, path.stat().st_size):
        raise CuratorError(f"index file {path} ({path.stat().st_size} bytes) does not match its parameters "
                           f"({params.get('index_bytes')} bytes): a write was interrupted",
                           f"rebuild: build_index(ws, {run!r}, rebuild=True)")
    data = params.get("ivfdata")
    if data and not (path.parent / data).exists():
        raise CuratorError(f"index of run {run!r} keeps its lists in {path.parent / data}, which is missing",
                           f"rebuild: build_index(ws, {run!r}, rebuild=True, on_disk=True)")
    try:
        index = ondisk.read(path) if data else faiss.read_index(str(path))
    except RuntimeError as e:
        raise CuratorError(f"index file {path} is unreadable ({str(e).splitlines()[0][:160]})",
                           f"rebuild: build_index(ws, {run!r}, rebuild=True)") from None
    if check:
        _check(ws, run, index, params, emb)
    sim = SimilarityIndex(ws, run, index, params, emb, backend)
    if check:
        _CACHE[key] = (stamp, sim)
    return sim


def _check(ws: "Workspace", run: str, index: Any, params: dict[str, Any], emb: np.ndarray,
           growth_ok: bool = False) -> None:
    """Index and embeddings must describe the same chips: same run, dimension, vectors and count."""
    fix_rebuild = f"rebuild it: build_index(ws, {run!r}, rebuild=True) or `curator index -w {ws.root} --run {run} --rebuild`"
    if params.get("run") != run:
        raise CuratorError(f"index file for run {run!r} was built for run {params.get('run')!r}", fix_rebuild)
    if index.d != emb.shape[1] or params.get("dim") != emb.shape[1]:
        raise CuratorError(f"index of run {run!r} has dimension {index.d} but its embeddings have {emb.shape[1]}",
                           fix_rebuild)
    if params.get("embeddings", {}).get("fingerprint") != fingerprint(emb):
        raise CuratorError(f"the embeddings of run {run!r} changed since its index was built (re-embedded?)", fix_rebuild)
    if index.ntotal != params.get("count"):
        raise CuratorError(f"index of run {run!r} holds {index.ntotal} vectors but its parameters say {params.get('count')}",
                           fix_rebuild)
    if emb.shape[0] > index.ntotal and not growth_ok:
        raise CuratorError(f"index of run {run!r} holds {index.ntotal} chips but {emb.shape[0]} are embedded",
                           f"add the new chips: add_to_index(ws, {run!r}) or `curator index -w {ws.root} --run {run} --add`")
    if emb.shape[0] < index.ntotal:
        raise CuratorError(f"index of run {run!r} holds {index.ntotal} chips but only {emb.shape[0]} are embedded",
                           fix_rebuild)
    if len(ws) < max(index.ntotal, emb.shape[0] if growth_ok else 0):
        raise CuratorError(f"index of run {run!r} holds {index.ntotal} chips but the manifest has {len(ws)}",
                           "the workspace was restored from an older copy; re-embed and rebuild")


def add_to_index(ws: "Workspace", run: str, progress: bool = True) -> int:
    """Add chips embedded after the index was built (rows ntotal..N-1), without retraining; returns how many."""
    sim = load_index(ws, run, device="cpu", check=False)
    emb = sim.emb
    p = sim.params
    _check(ws, run, sim.index, p, emb, growth_ok=True)
    new = emb.shape[0] - sim.ntotal
    if new == 0:
        return 0
    from .progress import progress_bar as tqdm

    start = sim.ntotal
    if ondisk.is_on_disk(sim.index):  # never written in place: old lists + the new block merged into a fresh file
        sim.index = ondisk.build_blocks(ondisk.empty_like(sim.index), [(start, prepare(emb[start:], sim.metric))],
                                        ondisk.new_data_path(ws.index_path(run)), before=[sim.index])
    else:
        with tqdm(total=new, desc=f"add to {run}", unit="vec", disable=not progress or new < 200_000,
                  leave=False) as bar:
            for _, x in _chunks(emb, sim.metric, start, emb.shape[0]):
                sim.index.add(x)
                bar.update(len(x))
    p.setdefault("added", []).append({"from": start, "count": new, "time": _now()})
    sim.save()
    ws.record("index", run, {"factory": p["factory"], "metric": p["metric"], "count": p["count"],
                             "knob": p.get("knob"), "recall_at_10": p.get("recall_at_10"), "created": p["created"]})
    return new


add = add_to_index


# ============================================================================== filters
def filter_mask(ws: "Workspace", filters: Mapping[str, Any] | None, n: int | None = None) -> np.ndarray | None:
    """Boolean mask over chips 0..n-1 from metadata filters (None when there are none).

    Keys: date=(start, end) or "YYYY-MM-DD" (inclusive; undated chips fail), layer, source, label
    (a value or a list), bbox=(W, S, E, N) (chip centre inside), flags=[all required],
    exclude_flags=[none allowed] (e.g. ["cloudy", "swath_gap"]), max_cloud, min_land, ids=[allowed].
    """
    if not filters:
        return None
    if not isinstance(filters, Mapping):
        raise CuratorError(f"filters must be a dict, got {type(filters).__name__}",
                           "pass e.g. filters={'date': ('2020-01-01', '2020-12-31'), 'exclude_flags': ['cloudy']}")
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise CuratorError(f"unknown filter(s) {unknown}", f"use {', '.join(FILTER_KEYS)}")
    import pyarrow.compute as pc

    table = ws.table()
    n = table.num_rows if n is None else int(n)
    table = table.slice(0, n)
    mask = np.ones(n, dtype=bool)

    def col(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    def values(v: Any) -> list:
        return [v] if isinstance(v, (str, int, float)) else list(v)

    for key, v in filters.items():
        if v is None:
            continue
        if key == "date":
            lo, hi = (v, v) if isinstance(v, str) else tuple(v)
            if lo is not None and hi is not None and _date(lo) > _date(hi):
                raise CuratorError(f"date range {lo} .. {hi} is reversed: it ends before it starts",
                                   f"pass the earlier date first: {hi} {lo}")
            dates = pd.Series(table.column("date").to_pandas(), dtype=object)
            ok = dates.notna().to_numpy().copy()
            text = dates.fillna("").astype(str).str.slice(0, 10)
            if lo is not None:
                ok &= (text >= _date(lo)).to_numpy()
            if hi is not None:
                ok &= (text <= _date(hi)).to_numpy()
            mask &= ok
        elif key in ("layer", "source", "label"):
            mask &= np.isin(col(key).astype(object), values(v))
        elif key == "bbox":
            from .bbox import BBox

            box = BBox.coerce(v)
            west, east, south, north = col("west"), col("east"), col("south"), col("north")
            if np.isnan(west).any():
                mask &= ~np.isnan(west)
            lon = np.where(west <= east, (west + east) / 2, ((west + east + 360) / 2 + 180) % 360 - 180)
            lat = (south + north) / 2
            inside = (lat >= box.south) & (lat <= box.north)
            inside &= ((lon >= box.west) | (lon <= box.east)) if box.crosses_antimeridian else \
                ((lon >= box.west) & (lon <= box.east))
            mask &= np.nan_to_num(inside, nan=0).astype(bool)
        elif key in ("flags", "exclude_flags"):
            flags = table.column("flags")
            flat = pc.list_flatten(flags).to_numpy(zero_copy_only=False).astype(object)
            parent = pc.list_parent_indices(flags).to_numpy()
            for f in values(v):
                has = np.zeros(n, dtype=bool)
                has[parent[flat == f]] = True
                mask &= has if key == "flags" else ~has
        elif key == "max_cloud":
            c = col("cloud_fraction").astype(np.float64)
            mask &= ~(c > float(v))  # unknown cloud fraction passes
        elif key == "min_land":
            lf = col("land_fraction").astype(np.float64)
            mask &= ~(lf < float(v))
        elif key == "ids":
            ids = np.asarray(values(v), dtype=np.int64)
            allowed = np.zeros(n, dtype=bool)
            allowed[ids[(ids >= 0) & (ids < n)]] = True
            mask &= allowed
    return mask


def _date(value: Any) -> str:
    s = str(value)
    try:
        return _dt.date.fromisoformat(s[:10]).isoformat()
    except ValueError:
        raise CuratorError(f"date {value!r} is not YYYY-MM-DD", "write dates like '2020-09-27'") from None


# ============================================================================== search
def search(ws: "Workspace", run: str, ids: int | Sequence[int] | np.ndarray | None = None,
           vectors: np.ndarray | None = None, image: Any = None, k: int = 20, mode: str = "mean",
           filters: Mapping[str, Any] | None = None, exclude: Sequence[int] | np.ndarray | None = None,
           nprobe: int | None = None, ef_search: int | None = None, device: str = "auto",
           tiles: int | None = None) -> SearchResult:
    """The `k` chips nearest to the query: chip ids, vectors, and/or image files (embedded by the
    run's model). Several positives are averaged (`mode="mean"`) or searched one by one and merged
    (`mode="union"`, best score per chip). Query chips and `exclude` never come back; `filters`
    (see `filter_mask`) apply inside the search. `nprobe` / `ef_search` override the calibrated knob.
    `tiles=N` cuts one query image (or chip) N x N and ranks chips by bucket votes (`multires`).
    """
    if tiles is not None:
        return _tile_search(ws, run, ids, vectors, image, k, filters, exclude, tiles)
    if mode not in MODES:
        raise CuratorError(f"unknown search mode {mode!r}", "use mode='mean' (average the positives) or 'union'")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise CuratorError(f"k={k!r} must be a positive integer", "ask for e.g. k=20 results")
    for name, v in (("nprobe", nprobe), ("ef_search", ef_search)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise CuratorError(f"{name}={v!r} must be a positive integer", f"leave {name}=None for the calibrated default")
    sim = load_index(ws, run, device=device)
    n, d = sim.ntotal, sim.dim
    query_ids = np.zeros(0, np.int64)
    parts: list[np.ndarray] = []
    if ids is not None:
        query_ids = np.atleast_1d(np.asarray(ids)).astype(np.int64).ravel()
        bad = query_ids[(query_ids < 0) | (query_ids >= n)]
        if bad.size:
            raise CuratorError(f"chip id(s) {bad[:5].tolist()} are not in index {run!r} (ids are 0..{n - 1})",
                               "search by ids from ws.manifest['id']")
        parts.append(_rows(sim.emb, query_ids, sim.metric))
    if vectors is not None:
        v = np.asarray(vectors, dtype=np.float32)
        v = v[None, :] if v.ndim == 1 else v
        if v.ndim != 2 or v.shape[1] != d:
            raise CuratorError(f"query vectors have shape {tuple(np.shape(vectors))} but index {run!r} has dimension {d}",
                               f"pass vectors of shape [n, {d}] from the same embedding run")
        parts.append(prepare(v, sim.metric))
    if image is not None:
        parts.append(prepare(embed_query_images(ws, run, image), sim.metric))
    if not parts:
        raise CuratorError("search needs a query", "pass ids=chip id(s), vectors=array, or image=path to an image file")
    q = np.concatenate(parts, 0)
    if len(q) == 0:
        raise CuratorError("the query is empty", "pass at least one chip id, vector or image")
    mask = filter_mask(ws, filters, n)
    extra = np.asarray(list(exclude) if exclude is not None else [], dtype=np.int64).ravel()
    excl = np.concatenate([query_ids, extra])
    excl = excl[(excl >= 0) & (excl < n)]
    if excl.size:
        mask = np.ones(n, dtype=bool) if mask is None else mask.copy()
        mask[excl] = False
    knob = nprobe if sim.knob == "nprobe" else ef_search if sim.knob == "efSearch" else None
    hits: np.ndarray | None = None
    if mode == "mean" or len(q) == 1:
        center = q.mean(0, keepdims=True)
        center = prepare(center, sim.metric) if sim.metric == "cosine" and np.linalg.norm(center) > 0 else center
        D, I = sim.search_prepared(np.ascontiguousarray(center, np.float32), int(k), mask, knob)
        D, I = D[0], I[0]
    else:
        D, I = sim.search_prepared(q, int(k), mask, knob)
        D, I, hits = _union(D, I, int(k))
    keep = I >= 0
    I, D = I[keep].astype(np.int64), D[keep].astype(np.float32)
    scores = _scores(D, sim.metric)
    extra = {"rank": np.arange(1, len(I) + 1), "score": scores}
    if hits is not None:
        extra["hits"] = hits[keep]
    info = {"run": run, "k": int(k), "mode": mode, "backend": sim.backend, "factory": sim.params["factory"],
            "knob": {sim.knob: knob or sim.params.get("knob")} if sim.knob else {}, "queries": int(len(q))}
    return SearchResult(ids=I, scores=scores, metric=sim.metric, params=info,
                        rows_loader=lambda: _manifest_rows(ws, I, extra))


def _tile_search(ws: "Workspace", run: str, ids: Any, vectors: Any, image: Any, k: int,
                 filters: Mapping[str, Any] | None, exclude: Any, tiles: int) -> SearchResult:
    if vectors is not None:
        raise CuratorError("tile voting needs a query image or chip, not vectors", "pass image=... or ids=one chip id")
    qids = [] if ids is None else np.atleast_1d(np.asarray(ids)).astype(np.int64).tolist()
    images = [ws.load_chip(i) for i in qids] + ([] if image is None else list(image) if isinstance(image, list) else [image])
    if len(images) != 1:
        raise CuratorError(f"tile voting takes one query image, got {len(images)}", "search one image or chip at a time")
    skip = list(qids) + (list(exclude) if exclude is not None else [])
    return tile_search(ws, run, images[0], tiles, k, filters=filters, exclude=skip or None)


def tile_search(ws: "Workspace", run: str, image: Any, grid: int = 2, k: int = 20, *, per_tile: int | None = None,
                overlap: float = 0.0, filters: Mapping[str, Any] | None = None,
                exclude: Sequence[int] | np.ndarray | None = None, group_by: str | None = None,
                embed: Callable[[list[np.ndarray]], np.ndarray] | None = None) -> SearchResult:
    """Search with a query larger than a chip: tile it `grid` x `grid`, search each tile
    (`per_tile` results, default 3k), and rank chips by their votes. `group_by` (a manifest
    column, e.g. 'origin') votes for parent images and returns each group's best chip.
    `embed` maps a list of tiles to vectors (default: the run's model). See `multires`."""
    from .images import read_image
    from .voting import tile_grid, vote

    if not isinstance(k, (int, np.integer)) or k < 1:
        raise CuratorError(f"k={k!r} must be a positive integer", "ask for e.g. k=20 results")
    img = read_image(image) if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__") else np.asarray(image)
    tiles = tile_grid(img, grid, overlap)
    sim = load_index(ws, run)
    q = np.asarray(embed(tiles) if embed is not None else embed_query_images(ws, run, tiles), np.float32)
    if q.shape != (len(tiles), sim.dim):
        raise CuratorError(f"tile vectors have shape {q.shape}, index {run!r} has dimension {sim.dim}",
                           "embed the tiles with the model of the same run")
    n = sim.ntotal
    mask = filter_mask(ws, filters, n)
    excl = np.asarray(list(exclude) if exclude is not None else [], np.int64)
    if excl.size:
        mask = np.ones(n, bool) if mask is None else mask.copy()
        mask[excl[(excl >= 0) & (excl < n)]] = False
    per = int(per_tile or 3 * k)
    _, I = sim.search_prepared(prepare(q, sim.metric), per, mask, None)
    groups = None
    if group_by is not None:
        table = ws.table()
        if group_by not in table.column_names:
            raise CuratorError(f"the manifest has no column {group_by!r} to vote by", "use e.g. group_by='origin'")
        groups = np.asarray(table.column(group_by).to_pandas().astype(str).to_numpy()[:n])
    ids, scores, hits = vote(I, int(k), groups)
    info = {"run": run, "k": int(k), "mode": f"tiles{grid}x{grid}", "grid": int(grid), "per_tile": per,
            "queries": len(tiles), "backend": sim.backend, "factory": sim.params["factory"], "group_by": group_by}
    extra = {"rank": np.arange(1, len(ids) + 1), "score": scores, "hits": hits}
    return SearchResult(ids=ids, scores=scores, metric="votes", params=info,
                        rows_loader=lambda: _manifest_rows(ws, ids, extra))


def _union(D: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids, dist = I.ravel(), D.ravel()
    ok = ids >= 0
    ids, dist = ids[ok], dist[ok]
    order = np.lexsort((dist, ids))
    ids, dist = ids[order], dist[order]
    first = np.r_[True, ids[1:] != ids[:-1]]
    uniq, best = ids[first], dist[first]
    counts = np.diff(np.r_[np.flatnonzero(first), ids.size])
    top = np.argsort(best, kind="stable")[:k]
    return best[top], uniq[top], counts[top]


def _scores(d2: np.ndarray, metric: str) -> np.ndarray:
    d2 = np.maximum(d2, 0)
    return (np.clip(1 - d2 / 2, -1, 1) if metric == "cosine" else np.sqrt(d2)).astype(np.float32)


def _manifest_rows(ws: "Workspace", ids: np.ndarray, extra: dict[str, Any] | None = None) -> pd.DataFrame:
    """Manifest rows of `ids` (index = chip id) from the Arrow table: one zero-copy slice per row, so the
    cost follows len(ids), not the manifest size (Table.take on a 1M-row table costs ~50 ms)."""
    import pyarrow as pa

    table = ws.table()
    parts = [table.slice(int(i), 1) for i in ids]
    cols = (pa.concat_tables(parts) if parts else table.slice(0, 0)).to_pydict()
    rank = {k: v for k, v in (extra or {}).items() if k in ("rank", "score")}
    tail = {k: v for k, v in (extra or {}).items() if k not in rank}
    return pd.DataFrame({**rank, **cols, **tail}, index=pd.Index(ids))


_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}


def embed_query_images(ws: "Workspace", run: str, image: Any, _via: tuple[str, ...] = ()) -> np.ndarray:
    """Embed image file(s) or HxWx3 arrays with the model that produced `run`'s embeddings, the way
    the run was made: a whitened run whitens the source run's vector, a concatenated one joins its parts."""
    if run in _via or len(_via) > 8:
        raise CuratorError(f"embedding run {run!r} is made from itself ({' -> '.join((*_via, run))})",
                           "fix the 'whitened_from' / 'parts' entries of its sidecar, or re-create the run")
    _, meta = read_embeddings(ws, run)
    via = (*_via, run)
    if meta.get("whitened_from"):
        from .whitening import load_whitening

        return load_whitening(ws, run).transform(embed_query_images(ws, str(meta["whitened_from"]), image, via))
    if meta.get("parts"):
        from .embed import concat_embeddings

        return concat_embeddings([embed_query_images(ws, str(part), image, via) for part in meta["parts"]])
    model_run = meta.get("model_run") or run
    try:
        from .embed import embed_images
        from .train import load_model
    except ImportError as e:
        raise CuratorError(f"searching by image needs the training/embedding modules ({e})",
                           "install curator-widgets with torch, or search by chip id / vector") from None
    key = (str(ws.root), model_run)
    mdir = ws.model_dir(model_run)
    stamp = mdir.stat().st_mtime_ns if mdir.exists() else None
    hit = _MODELS.get(key)
    if hit is None or hit[0] != stamp:
        hit = (stamp, load_model(ws, model_run))
        _MODELS[key] = hit
    items = list(image) if isinstance(image, tuple) else image
    return np.asarray(embed_images(hit[1], items, tta=bool(meta.get("tta")), image_size=meta.get("image_size")),
                      dtype=np.float32)


# ============================================================================== kNN graph
def knn_graph(ws: "Workspace", run: str, k: int, include_self: bool = False, device: str = "auto",
              progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each chip's k nearest chips through the index: ids int64 [N, k] and distances float32 [N, k]
    (cosine distance 1 - cos, or Euclidean). Cached beside the index until the index changes."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise CuratorError(f"k={k!r} must be a positive integer", "use e.g. k=15")
    sim = load_index(ws, run, device=device)
    n = sim.ntotal
    cache = ws.index_path(run).with_suffix(".knn.npz")
    stamp = f"{sim.params.get('created')}:{n}:{sim.params.get('knob')}"
    if cache.exists():
        try:
            with np.load(cache) as z:
                if str(z["stamp"]) == stamp and z["ids"].shape[1] >= k:
                    ids, dists = z["ids"][:, :k], z["dists"][:, :k]
                    return _with_self(ids, dists, include_self)
        except (OSError, KeyError, ValueError):
            pass
    kk = min(k, max(n - 1, 0))
    from .progress import progress_bar as tqdm

    ids = np.full((n, k), -1, np.int64)
    d2 = np.full((n, k), np.inf, np.float32)
    batch = 4096
    with tqdm(total=n, desc=f"kNN graph {run}", unit="chip", disable=not progress or n < 100_000, leave=False) as bar:
        for lo, x in _chunks(sim.emb, sim.metric, 0, n, batch):
            D, I = sim.search_prepared(x, kk + 1, None, None)
            own = np.arange(lo, lo + len(x))[:, None]
            is_self = I == own
            # drop the chip itself (wherever ties put it), else the farthest result
            drop = np.where(is_self.any(1), is_self.argmax(1), kk)
            keep = np.ones_like(I, dtype=bool)
            keep[np.arange(len(x)), drop] = False
            ids[lo: lo + len(x), :kk] = I[keep].reshape(len(x), kk)
            d2[lo: lo + len(x), :kk] = D[keep].reshape(len(x), kk)
            bar.update(len(x))
    d2 = np.where(ids >= 0, d2, np.inf)
    dists = (np.maximum(d2, 0) / 2 if sim.metric == "cosine" else np.sqrt(np.maximum(d2, 0))).astype(np.float32)
    with atomic_path(cache, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=ids, dists=dists, stamp=np.array(stamp))
    return _with_self(ids, dists, include_self)


def _with_self(ids: np.ndarray, dists: np.ndarray, include_self: bool) -> tuple[np.ndarray, np.ndarray]:
    if not include_self:
        return ids, dists
    own = np.arange(len(ids), dtype=np.int64)[:, None]
    return np.hstack([own, ids]), np.hstack([np.zeros((len(ids), 1), np.float32), dists])


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
