"""Diverse subsets of embeddings: exact and stratified farthest-point sampling, cluster-balanced and random picks.

Farthest-point sampling (greedy k-center, max-min) is what balances unlabeled data: each pick is
the point farthest from everything picked so far, so dense regions (70% ocean) stop being
over-represented once they are covered. The exact sampler streams the whole matrix once per pick,
so its speed is set by memory bandwidth; it is written so nothing else costs more than that
(see docs/sampling.md and benchmarks/sampling_speed.py).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .errors import CuratorError

if TYPE_CHECKING:  # torch is imported lazily so `import curator_widgets` stays light
    import torch

    from .workspace import Workspace

METHODS = ("fps", "stratified", "clusters", "random")
METRICS = ("l2", "cosine")
ENGINES = ("auto", "eager", "compiled")
LAYOUTS = ("auto", "features", "rows")
# Rows converted per chunk when staging the input (bounds temporaries to chunk x d).
DEFAULT_CHUNK = 32768
# Columns per block when the CPU eager path widens float16 storage to float32 (fits in L2/L3).
_HALF_BLOCK = 16384
# Bytes streamed (N*d*itemsize*k) above which engine="auto" pays a torch.compile on CPU
# (float32: ~30 s of eager work at 10 GB/s; float16 storage, which eager widens slowly: ~5 s).
_COMPILE_BYTES = 3e11
_COMPILE_HALF_BYTES = 2e10
# Bytes streamed above which layout="auto" on the CPU eager engine times both layouts first (~0.1 s).
_CALIBRATE_BYTES = 1e10
_LAYOUT_CACHE: dict[tuple, str] = {}


# ----------------------------------------------------------------------------- input handling
def _shape(X: Any) -> tuple[int, int]:
    shape = tuple(getattr(X, "shape", ()))
    if len(shape) != 2:
        raise CuratorError(f"expected a 2-D matrix of embeddings [N, d], got shape {list(shape)}",
                           "pass embeddings as an array shaped [items, dims], e.g. load_embeddings(ws, run)")
    if shape[0] == 0 or shape[1] == 0:
        raise CuratorError(f"the embedding matrix is empty (shape {list(shape)})",
                           "embed the workspace first (`curator embed`) so there are rows to sample from")
    return int(shape[0]), int(shape[1])


def _check_k(k: int, n: int, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise CuratorError(f"{what}={k!r} is not a whole number", f"pass {what} as an integer between 1 and {n}")
    if not 1 <= int(k) <= n:
        raise CuratorError(f"cannot select {what}={k} of {n} items",
                           f"choose {what} between 1 and {n} (the number of items)")
    return int(k)


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise CuratorError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
    return metric


def _resolve_device(device: Any) -> "torch.device":
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CuratorError(f"device {device!r} was asked for but CUDA is not available here",
                           "leave device=None (uses the GPU when present) or pass device='cpu'")
    return dev


def _is_half(X: Any) -> bool:
    src = getattr(X, "dtype", None)
    return str(src) in ("float16", "torch.float16")


def _available_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4.0 * (1 << 30)


def _resolve_dtype(X: Any, dtype: Any, device: "torch.device | None" = None, engine: str = "eager") -> "torch.dtype":
    """Storage precision. Default: float16 when the input is float16 (embeddings are), except on the
    CPU eager engine, which streams float32 faster and keeps float32 while that fits in a quarter of RAM."""
    import torch

    if dtype is None:
        if not _is_half(X):
            return torch.float32
        if device is None or device.type != "cpu" or engine == "compiled":
            return torch.float16
        n, d = _shape(X)
        return torch.float32 if n * d * 4 <= _available_memory() / 4 else torch.float16
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, torch.float32: torch.float32, torch.float16: torch.float16,
             np.float32: torch.float32, np.float16: torch.float16}
    try:
        return table[dtype]
    except (KeyError, TypeError):
        raise CuratorError(f"unsupported storage dtype {dtype!r}", "use dtype='float32' or dtype='float16'") from None


def _rows(X: Any, start: int, stop: int, idx: np.ndarray | None = None) -> "torch.Tensor":
    """Rows [start, stop) (or the rows `idx`) of any matrix as a float32 CPU/GPU tensor."""
    import torch

    if isinstance(X, torch.Tensor):
        part = X[start:stop] if idx is None else X[torch.as_tensor(idx, device=X.device)]
        return part.float()
    part = X[start:stop] if idx is None else X[np.asarray(idx)]
    part = np.asarray(part)
    if not np.issubdtype(part.dtype, np.floating):
        part = part.astype(np.float32)
    elif not part.flags.writeable:  # a read-only memmap: torch warns on sharing it, and a chunk copy is cheap
        part = np.array(part)
    t = torch.from_numpy(np.ascontiguousarray(part))
    return t.float()


def _column_mean(X: Any, n: int, d: int, chunk: int) -> "torch.Tensor":
    import torch

    acc = torch.zeros(d, dtype=torch.float64)
    for s in range(0, n, chunk):
        acc += _rows(X, s, min(n, s + chunk)).double().sum(0).cpu()
    return (acc / n).float()


def _prepare_chunk(part: "torch.Tensor", metric: str, mean: "torch.Tensor | None") -> "torch.Tensor":
    """Centre (l2: distances unchanged, fewer cancellation errors) or unit-normalize (cosine) a chunk."""
    import torch

    if not torch.isfinite(part).all():
        raise CuratorError("the embeddings contain NaN or infinite values",
                           "re-embed the workspace; a diverged model or a corrupt file produced them")
    if metric == "cosine":
        norms = part.norm(dim=1, keepdim=True)
        if (norms == 0).any():
            raise CuratorError("an embedding has zero length, so its cosine distance is undefined",
                               "use metric='l2', or drop the all-zero rows")
        return part / norms
    return part - mean.to(part.device)


def _to_distance(d2: np.ndarray, metric: str) -> np.ndarray:
    """Squared L2 of the stored (centred or unit) vectors -> the metric the caller asked for."""
    d2 = np.maximum(np.asarray(d2, dtype=np.float64), 0.0)
    out = d2 / 2.0 if metric == "cosine" else np.sqrt(d2)
    return out.astype(np.float32)


def _progress(total: int, enabled: bool | None, work: float, desc: str):
    from .progress import progress_bar as tqdm

    show = (work > 2e9) if enabled is None else bool(enabled)
    return tqdm(total=total, desc=desc, unit="pick", disable=not show, leave=False)


# ----------------------------------------------------------------------------- exact FPS
class _Store:
    """The data in the layout the engine streams fastest, plus squared norms; everything else is O(N)."""

    def __init__(self, X: Any, metric: str, dtype: "torch.dtype", device: "torch.device", transposed: bool,
                 chunk: int, mean: "torch.Tensor | None" = None):
        import torch

        n, d = _shape(X)
        self.n, self.d, self.metric, self.dtype, self.device = n, d, metric, dtype, device
        if metric == "l2" and mean is None:  # a shard of a larger matrix is given the whole matrix's mean
            mean = _column_mean(X, n, d, chunk)
        # CPU eager keeps features-major [d, N]: MKL's gemv streams that layout at memory speed, while the
        # row-major [N, d] product runs at a fraction of it on AVX2 machines (measured in the benchmark).
        self.transposed = transposed
        shape = (d, n) if self.transposed else (n, d)
        self.data = torch.empty(shape, dtype=dtype, device=device)
        self.sqn = torch.empty(n, dtype=torch.float32, device=device)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            part = _prepare_chunk(_rows(X, s, e).to(device), metric, mean).to(dtype)
            # norms of the values actually stored, so a point's distance to itself is ~0 in float16 too
            self.sqn[s:e] = part.float().pow(2).sum(1)
            if self.transposed:
                self.data[:, s:e] = part.T
            else:
                self.data[s:e] = part
        self._buf = None
        self._mm_dtype_ok: bool | None = None

    def row(self, i: "torch.Tensor | int") -> "torch.Tensor":
        """Point i as a float32 vector; `i` may be a device tensor (no host sync on GPU)."""
        import torch

        if self.transposed:
            return self.data[:, int(i)].float().contiguous()
        if isinstance(i, torch.Tensor):
            return self.data.index_select(0, i.reshape(1)).reshape(-1).float()
        return self.data[int(i)].to(torch.float32, copy=True)  # not a view: compiled guards would tie it to X

    def sq_dists(self, c: "torch.Tensor", out: "torch.Tensor") -> "torch.Tensor":
        """out = ||x_i - c||^2 for every stored point, via ||x||^2 - 2 x.c + ||c||^2 (one matrix-vector pass)."""
        import torch

        cc = torch.dot(c, c)
        if self.transposed and self.dtype == torch.float32:
            torch.addmv(self.sqn, self.data.T, c, beta=1, alpha=-2, out=out)
        elif self.transposed:  # float16 storage on CPU: widen one cache-sized block at a time
            if self._buf is None:
                self._buf = torch.empty((self.d, min(_HALF_BLOCK, self.n)), dtype=torch.float32)
            for s in range(0, self.n, _HALF_BLOCK):
                e = min(self.n, s + _HALF_BLOCK)
                blk = self._buf[:, : e - s]
                blk.copy_(self.data[:, s:e])
                torch.mv(blk.T, c, out=out[s:e])
            out.mul_(-2).add_(self.sqn)
        elif self.dtype == torch.float32:
            torch.addmv(self.sqn, self.data, c, beta=1, alpha=-2, out=out)
        else:  # float16 on the GPU: float32 products, so near points do not cancel to float16 noise
            out.copy_(self._half_dots(c)).mul_(-2).add_(self.sqn)
        return out.add_(cc)  # may dip below 0 for near-duplicates: harmless for min/argmax, clamped in the radii

    def _half_dots(self, c: "torch.Tensor") -> "torch.Tensor":
        import torch

        ch = c.to(self.dtype).reshape(-1, 1)
        if self._mm_dtype_ok is not False:
            try:
                r = torch.mm(self.data, ch, out_dtype=torch.float32).reshape(-1)
                self._mm_dtype_ok = True
                return r
            except (RuntimeError, TypeError, NotImplementedError):
                self._mm_dtype_ok = False
        out = torch.empty(self.n, dtype=torch.float32, device=self.device)
        step = _HALF_BLOCK if self.device.type == "cpu" else 1 << 20
        for s in range(0, self.n, step):  # widen a block at a time: float32 products without a float32 copy
            torch.mv(self.data[s:s + step].float(), c, out=out[s:s + step])
        return out


def _fused_step(X: "torch.Tensor", c: "torch.Tensor", mind: "torch.Tensor"):
    """One FPS step as a single pass (compiled): exact ||x - c||^2, running min, then the farthest point."""
    import torch

    d2 = (X.float() - c).pow(2).sum(1)
    mind = torch.minimum(mind, d2)
    val, idx = mind.max(0)
    return mind, val, idx


_COMPILED: dict[str, Any] = {}


def _compiled_step():
    import torch

    if "step" not in _COMPILED:  # d stays static (a vectorised inner loop); N is marked dynamic per call
        _COMPILED["step"] = torch.compile(_fused_step, dynamic=False)
    return _COMPILED["step"]


def _choose_engine(engine: str, X: Any, dtype: Any, k: int, device: "torch.device") -> str:
    """auto: eager, except on a CPU for big jobs, and for float16 storage, which eager must widen
    block by block while the compiled kernel reads it at half the bytes (compiling costs 5-40 s)."""
    import torch

    if engine not in ENGINES:
        raise CuratorError(f"unknown engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    if device.type != "cpu":
        return "eager"
    n, d = _shape(X)
    half = _resolve_dtype(X, dtype, device, "eager") == torch.float16
    streamed = float(n) * d * k * (2 if half else 4)
    return "compiled" if streamed >= (_COMPILE_HALF_BYTES if half else _COMPILE_BYTES) else "eager"


def _seed_list(start: int | Sequence[int], n: int, k: int) -> list[int]:
    seeds = [start] if isinstance(start, (int, np.integer)) else list(start)
    if not seeds:
        raise CuratorError("start is an empty list", "pass a start index (e.g. start=0) or a list of indices")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) < n:
            raise CuratorError(f"start index {s!r} is not a row of the matrix (0..{n - 1})",
                               "pass start as an integer row index, or a list of them")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise CuratorError("start contains the same index twice", "pass distinct start indices")
    if len(out) > k:
        raise CuratorError(f"{len(out)} start indices but only k={k} picks", "raise k or pass fewer start indices")
    return out


def calibrate_layout(d: int, dtype: Any = "float32", rows: int = 1 << 16, repeats: int = 3) -> str:
    """'features' ([d, N]) or 'rows' ([N, d]): whichever streams faster here, timed on random data.

    Which one wins depends on the CPU and its BLAS (MKL's gemv is at memory speed on one machine
    and at half of it on another), so it is measured once per process, dimension and dtype.
    """
    import time

    import torch

    sdtype = _resolve_dtype(np.zeros((1, 1), np.float32), dtype)
    key = (int(d), str(sdtype), torch.get_num_threads(), int(rows))
    if key not in _LAYOUT_CACHE:
        g = torch.Generator().manual_seed(0)
        data = torch.randn(rows, d, generator=g)
        best: dict[str, float] = {}
        with torch.no_grad():
            for layout in ("features", "rows"):
                store = _Store(data, "l2", sdtype, torch.device("cpu"), layout == "features", DEFAULT_CHUNK)
                out = torch.empty(rows, dtype=torch.float32)
                c = store.row(0)
                times = []
                for _ in range(repeats + 1):  # the first run warms caches and BLAS
                    t0 = time.perf_counter()
                    store.sq_dists(c, out)
                    times.append(time.perf_counter() - t0)
                best[layout] = min(times[1:])
                del store
        _LAYOUT_CACHE[key] = min(best, key=lambda k: (best[k], k != "features"))
    return _LAYOUT_CACHE[key]


def _choose_layout(layout: str, n: int, d: int, k: int, sdtype: "torch.dtype", dev: "torch.device", eng: str) -> bool:
    """True for features-major storage. The GPU and the compiled engine stream rows; CPU eager measures
    both layouts when the job is large enough for 0.1 s to be noise, else keeps features-major."""
    import torch

    if layout not in LAYOUTS:
        raise CuratorError(f"unknown layout {layout!r}", f"use one of {', '.join(LAYOUTS)}")
    if dev.type != "cpu" or eng == "compiled":
        return False
    if layout != "auto":
        return layout == "features"
    streamed = float(n) * d * k * (2 if sdtype == torch.float16 else 4)
    if streamed < _CALIBRATE_BYTES:
        return True
    return calibrate_layout(d, "float16" if sdtype == torch.float16 else "float32") == "features"


def farthest_point_sample(X: Any, k: int, start: int | Sequence[int] = 0, metric: str = "l2", *,
                          dtype: Any = None, device: Any = None, engine: str = "auto", layout: str = "auto",
                          chunk_size: int = DEFAULT_CHUNK, progress: bool | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Exact greedy k-center: returns (indices [k], covering radius after each pick [k]).

    Deterministic for a given `start` (an index, or several already-chosen indices that come
    first). `dtype="float16"` halves memory (and CPU time with `engine="compiled"`); on a GPU the
    picks never leave the device until the end. Radii are in `metric` units (cosine: 1 - cos).
    `layout` ('features' [d, N] or 'rows' [N, d]) is timed at run time on CPU when left 'auto'.
    """
    import torch

    metric = _check_metric(metric)
    n, d = _shape(X)
    k = _check_k(k, n)
    seeds = _seed_list(start, n, k)
    dev = _resolve_device(device)
    eng = _choose_engine(engine, X, dtype, k, dev)
    sdtype = _resolve_dtype(X, dtype, dev, eng)
    if chunk_size < 1:
        raise CuratorError(f"chunk_size={chunk_size} must be positive", "use the default or e.g. 32768")

    transposed = _choose_layout(layout, n, d, k, sdtype, dev, eng)
    return _fps(X, k, seeds, metric, sdtype, dev, eng, chunk_size, progress, device_loop=dev.type != "cpu",
                transposed=transposed)


def _fps(X: Any, k: int, seeds: list[int], metric: str, sdtype: "torch.dtype", dev: "torch.device", eng: str,
         chunk_size: int, progress: bool | None, device_loop: bool, transposed: bool = True
         ) -> tuple[np.ndarray, np.ndarray]:
    """The FPS loop. With `device_loop` (GPU) the pick stays a device tensor from argmax to the next
    gather, so the host never waits on the device; tests run that same loop on the CPU."""
    import torch

    n, d = _shape(X)
    with torch.no_grad():
        store = _Store(X, metric, sdtype, dev, transposed and not device_loop and eng == "eager", chunk_size)
        step = None
        mind = torch.full((n,), math.inf, dtype=torch.float32, device=dev)
        if eng == "compiled":
            step = _compiled_step()
            try:  # compile once up front; a machine without a C++ compiler falls back to the eager path
                torch._dynamo.maybe_mark_dynamic(store.data, 0)  # one compiled kernel for every N
                torch._dynamo.maybe_mark_dynamic(mind, 0)
                step(store.data, store.row(seeds[0]), mind.clone())
            except Exception as e:  # noqa: BLE001 - inductor raises many types
                warnings.warn(f"torch.compile is unavailable here ({type(e).__name__}: {e}); using the eager engine",
                              stacklevel=2)
                step = None
                store = _Store(X, metric, sdtype, dev, transposed and not device_loop, chunk_size)
        picks = torch.empty(k, dtype=torch.int64, device=dev)
        radii = torch.empty(k, dtype=torch.float32, device=dev)
        tmp = torch.empty(n, dtype=torch.float32, device=dev)
        picks[: len(seeds)] = torch.as_tensor(seeds, dtype=torch.int64)
        bar = _progress(k, progress, float(n) * d * k, "farthest-point sampling")
        idx: Any = None
        for j in range(k):
            cur = seeds[j] if j < len(seeds) else idx
            if j >= len(seeds):
                picks[j] = cur  # device tensor -> device tensor: no sync on GPU
            c = store.row(cur)
            if isinstance(cur, int):
                mind[cur] = 0.0  # exactly 0, whatever the rounding of ||x||^2 - 2x.x + ||x||^2
            else:
                mind.index_fill_(0, cur.reshape(1), 0.0)
            if step is not None:
                mind, val, idx = step(store.data, c, mind)
            else:
                torch.minimum(mind, store.sq_dists(c, tmp), out=mind)
                val, idx = torch.max(mind, 0)
            radii[j] = val
            if not device_loop:
                idx = int(idx)
            bar.update(1)
        bar.close()
        picks_np = picks.cpu().numpy()  # the one host-device sync
        radii_np = radii.cpu().numpy()
    picks_np = _fill_exhausted(picks_np, radii_np, n)
    return picks_np, _to_distance(radii_np, metric)


def min_sq_to_rows(V: "torch.Tensor", v2: "torch.Tensor", S: "torch.Tensor", chunk_size: int = DEFAULT_CHUNK,
                   max_block: int = 1 << 24) -> "torch.Tensor":
    """Each row of V's squared distance to its nearest row of S (v2 = |V|^2): the candidates' distances to
    every pick so far when stratified FPS redraws them. Blocks of rows x `chunk_size` picks hold at most
    `max_block` distances (64 MB), so 100k candidates x 10k picks never need the 4 GB matrix at once."""
    import torch

    best = torch.full((len(V),), math.inf, device=V.device)
    if len(S) == 0:
        return best
    rows = max(1, int(max_block) // min(int(chunk_size), len(S)))
    for a in range(0, len(V), rows):
        Va, v2a = V[a:a + rows], v2[a:a + rows]
        block = best[a:a + rows]
        for s in range(0, len(S), chunk_size):
            part = S[s:s + chunk_size]
            d2 = v2a[:, None] - 2 * Va @ part.T + part.pow(2).sum(1)[None, :]
            block = torch.minimum(block, d2.min(1).values)
        best[a:a + rows] = block
    return best


def _fill_exhausted(picks: np.ndarray, radii_sq: np.ndarray, n: int) -> np.ndarray:
    """Once every point is covered (radius 0: duplicates in the data) argmax can repeat a pick; replace
    each repeat by the next not-yet-picked row in index order: all of them are equally far (0)."""
    if len(np.unique(picks)) == len(picks):
        return picks
    out = picks.copy()
    seen: set[int] = set()
    taken = set(out.tolist())
    rest = (i for i in range(n) if i not in taken)
    for j, p in enumerate(out.tolist()):
        if p in seen:
            out[j] = next(rest)
        seen.add(int(out[j]))
    return out


def nearest_pick_distances(X: Any, ids: Sequence[int] | np.ndarray, metric: str = "l2", *, device: Any = None,
                           chunk_size: int = 8192) -> np.ndarray:
    """float32 [N]: each point's distance to its nearest selected point (exact, chunked). Its max is the
    covering radius; its mean says how well the bulk is covered, which one outlier cannot move."""
    import torch

    metric = _check_metric(metric)
    n, d = _shape(X)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or not len(ids) or ids.min() < 0 or ids.max() >= n:
        raise CuratorError("ids must be a non-empty list of row indices of X", f"pass indices in 0..{n - 1}")
    dev = _resolve_device(device)
    out = np.empty(n, dtype=np.float32)
    with torch.no_grad():
        mean = _column_mean(X, n, d, DEFAULT_CHUNK) if metric == "l2" else None
        S = _prepare_chunk(_rows(X, 0, 0, idx=ids).to(dev), metric, mean)
        s2 = S.pow(2).sum(1)
        for s in range(0, n, chunk_size):
            P = _prepare_chunk(_rows(X, s, min(n, s + chunk_size)).to(dev), metric, mean)
            d2 = (P.pow(2).sum(1, keepdim=True) - 2 * P @ S.T + s2).clamp_min_(0)
            out[s:s + len(P)] = d2.min(1).values.cpu().numpy()
    return _to_distance(out, metric)


def covering_radius(X: Any, ids: Sequence[int] | np.ndarray, metric: str = "l2", *, device: Any = None,
                    chunk_size: int = 8192) -> float:
    """max over all points of the distance to the nearest selected point (exact, chunked)."""
    return float(nearest_pick_distances(X, ids, metric, device=device, chunk_size=chunk_size).max())


# ----------------------------------------------------------------------------- stratified FPS
def mean_sample_rows(n: int, seed: int) -> np.ndarray:
    """The sorted rows stratified FPS centres its vectors by (l2): 20,000 of them, fixed by the seed."""
    return np.sort(np.random.default_rng([seed, 1]).choice(n, size=min(n, 20_000), replace=False))


def stratified_defaults(n: int, k: int, subset_size: int | None, resample_every: int | None) -> tuple[int, int]:
    """(candidate subset size m, picks between redraws r), checked: m = max(10000, 10k), r = k/10 unless given."""
    m = min(n, max(10_000, 10 * k)) if subset_size is None else int(subset_size)
    r = max(1, k // 10) if resample_every is None else int(resample_every)
    if m < 1 or r < 1:
        raise CuratorError(f"subset_size={subset_size} and resample_every={resample_every} must be positive",
                           "leave them unset for the defaults (m = max(10000, 10k), redraw every k/10 picks)")
    return m, r


def draw_candidates(selected: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified FPS redraw: m unselected rows at random (all of them when fewer are left), sorted."""
    pool = np.flatnonzero(~selected)
    return pool if len(pool) <= m else np.sort(rng.choice(pool, size=m, replace=False))


def stratified_picks(n: int, k: int, r: int, start: int, start_vec: "torch.Tensor", draw: Callable[..., Any],
                     bar: Any = None, step_times: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pick loop of stratified FPS: (indices [k], squared radii [k]). `draw(selected, picked)` returns a
    fresh candidate subset as (sorted ids, prepared rows V, |V|^2, squared distance to the nearest pick);
    between draws each pick costs one matrix-vector product over the candidates, wherever they came from."""
    import torch

    selected = np.zeros(n, dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    radii = np.empty(k, dtype=np.float64)
    sel_vecs = torch.empty((k, len(start_vec)), dtype=torch.float32, device=start_vec.device)
    cur, cur_vec = int(start), start_vec
    cand: np.ndarray = np.empty(0, dtype=np.int64)
    V = v2 = cmin = None
    alive = pos = 0
    with torch.no_grad():
        for j in range(k):
            t0 = time.perf_counter()
            picks[j] = cur
            selected[cur] = True
            sel_vecs[j] = cur_vec
            if j % r == 0 or cmin is None:
                cand, V, v2, cmin = draw(selected, sel_vecs[:j + 1])  # distances to all j+1 picks, this one too
                alive = len(cand)
            else:  # one matrix-vector product over the m candidates
                cmin = torch.minimum(cmin, torch.addmv(v2, V, cur_vec, alpha=-2).add_(torch.dot(cur_vec, cur_vec)))
                cmin[pos] = -math.inf  # the pick leaves the candidate set
                alive -= 1
            if alive == 0 and j + 1 < k:
                cand, V, v2, cmin = draw(selected, sel_vecs[:j + 1])  # used up before the next scheduled redraw
                alive = len(cand)
            if alive:
                val, i = torch.max(cmin, 0)
                pos = int(i)
                radii[j] = float(val)
                cur, cur_vec = int(cand[pos]), V[pos].clone()
            else:  # everything is selected
                radii[j] = 0.0
            if step_times is not None:
                step_times.append(time.perf_counter() - t0)
            if bar is not None:
                bar.update(1)
    return picks, radii


def stratified_farthest_point_sample(X: Any, k: int, subset_size: int | None = None,
                                     resample_every: int | None = None, start: int = 0, metric: str = "l2", *,
                                     seed: int = 0, device: Any = None, chunk_size: int = 8192,
                                     trace: list | None = None, progress: bool | None = None
                                     ) -> tuple[np.ndarray, np.ndarray]:
    """The Curator paper's scalable FPS: take the farthest point within a random candidate subset of
    size m, redrawing the subset every `resample_every` picks, so cost is ~k*k*m instead of k*N and X
    (e.g. a float16 memmap) is only ever read at the candidate rows.

    Returns (indices [k], covering radius of the current candidate subset after each pick [k]), an
    estimate of the true radius; `covering_radius(X, ids)` gives the exact one. `trace`, if a list,
    receives {"step", "candidates"} for every (re)draw. `subset_size >= N` makes it exact FPS.
    """
    import torch

    metric = _check_metric(metric)
    n, d = _shape(X)
    k = _check_k(k, n)
    start = _seed_list(start, n, 1)[0]
    m, r = stratified_defaults(n, k, subset_size, resample_every)
    dev = _resolve_device(device)
    rng = np.random.default_rng(seed)
    mean = None
    if metric == "l2":  # centring only limits rounding: a mean from a row sample is enough, and reads little
        mean = _rows(X, 0, 0, idx=mean_sample_rows(n, seed)).double().mean(0).float().cpu()

    def vectors(idx: np.ndarray) -> "torch.Tensor":
        order = np.argsort(idx)  # sorted reads are sequential on a memmap
        rows = _prepare_chunk(_rows(X, 0, 0, idx=idx[order]).to(dev), metric, mean)
        out = torch.empty_like(rows)
        out[torch.as_tensor(order, device=dev)] = rows
        return out

    def draw(selected: np.ndarray, picked: "torch.Tensor"):
        cand = draw_candidates(selected, m, rng)
        if trace is not None:
            trace.append({"step": len(picked), "candidates": cand.copy()})
        V = vectors(cand)
        v2 = V.pow(2).sum(1)
        return cand, V, v2, min_sq_to_rows(V, v2, picked, chunk_size)

    bar = _progress(k, progress, float(m) * d * k, "stratified farthest-point sampling")
    with torch.no_grad():
        start_vec = vectors(np.array([start]))[0]
    picks, radii = stratified_picks(n, k, r, start, start_vec, draw, bar)
    bar.close()
    return picks, _to_distance(radii, metric)


# ----------------------------------------------------------------------------- clusters and random
def balanced_quotas(sizes: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Max-min fair split of n picks over clusters of the given sizes: equal shares, a small cluster
    gives all it has, and what it cannot give goes to the larger ones (ties: larger cluster, then id)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or (sizes < 0).any():
        raise CuratorError("cluster sizes must be a list of non-negative counts", "pass e.g. np.bincount(assignment)")
    total = int(sizes.sum())
    if n < 0 or n > total:
        raise CuratorError(f"cannot take {n} items from clusters holding {total}", f"choose n between 0 and {total}")
    lo, hi = 0, int(sizes.max()) if len(sizes) else 0
    while lo < hi:  # the water level: the largest equal share t with sum(min(size, t)) <= n
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if int(np.minimum(sizes, mid).sum()) <= n else (lo, mid - 1)
    q = np.minimum(sizes, lo)
    remaining = int(n - q.sum())  # fewer than the clusters still above the level: one more each
    spare = np.flatnonzero(sizes > lo)
    spare = spare[np.lexsort((spare, -sizes[spare]))]
    q[spare[:remaining]] += 1
    return q


def cluster_balanced_sample(X: Any, n: int, clusters: int | None = None, within: str = "centroid",
                            metric: str = "l2", *, seed: int = 0, niter: int = 20, nredo: int = 1,
                            return_clusters: bool = False, max_train_points: int = 256
                            ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """k-means (faiss) on the embeddings, then an equal number of points from every cluster.

    A cluster smaller than its share gives all its points and the rest is redistributed
    (`balanced_quotas`). Within a cluster the points nearest the centroid come first
    (`within="centroid"`) or a random draw (`within="random"`). Returns ids grouped by cluster;
    with `return_clusters=True` also the cluster of every row.
    """
    import faiss

    metric = _check_metric(metric)
    N, d = _shape(X)
    n = _check_k(n, N, "n")
    if within not in ("centroid", "random"):
        raise CuratorError(f"within={within!r} is not a way to choose inside a cluster", "use 'centroid' or 'random'")
    C = max(2, min(n, int(math.sqrt(N / 2)))) if clusters is None else int(clusters)
    if not 1 <= C <= N:
        raise CuratorError(f"clusters={clusters} must be between 1 and the number of items ({N})",
                           "leave clusters unset for sqrt(N/2), or pass a smaller number")
    rng = np.random.default_rng(seed)
    mean = _mean_np(X, N, d) if metric == "l2" else None

    def block(idx: np.ndarray | None, s: int = 0, e: int = 0) -> np.ndarray:
        part = _rows(X, s, e, idx=idx).cpu().numpy().astype(np.float32, copy=False)
        part = part - mean if metric == "l2" else part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(part, dtype=np.float32)

    train_n = min(N, C * max_train_points)
    train_idx = None if train_n == N else np.sort(rng.choice(N, size=train_n, replace=False))
    train = block(train_idx, 0, N)
    km = faiss.Kmeans(d, C, niter=niter, nredo=nredo, seed=int(seed) % (2**31), spherical=(metric == "cosine"),
                      gpu=bool(faiss.get_num_gpus()), max_points_per_centroid=max_train_points, verbose=False)
    km.train(train)
    assign = np.empty(N, dtype=np.int64)
    dist = np.empty(N, dtype=np.float32)
    for s in range(0, N, DEFAULT_CHUNK):
        e = min(N, s + DEFAULT_CHUNK)
        D, I = km.index.search(block(None, s, e), 1)
        assign[s:e], dist[s:e] = I[:, 0], D[:, 0]
    sizes = np.bincount(assign, minlength=C)
    quotas = balanced_quotas(sizes, n)
    out = []
    for c in range(C):
        if not quotas[c]:
            continue
        members = np.flatnonzero(assign == c)
        if within == "centroid":
            members = members[np.lexsort((members, dist[members]))]  # nearest first, ties by id
        else:
            members = rng.permutation(members)
        out.append(members[: quotas[c]])
    ids = np.concatenate(out).astype(np.int64)
    return (ids, assign) if return_clusters else ids


def _mean_np(X: Any, n: int, d: int) -> np.ndarray:
    return _column_mean(X, n, d, DEFAULT_CHUNK).numpy()


def random_sample(X: Any, n: int, *, seed: int = 0) -> np.ndarray:
    """n distinct row indices uniformly at random (X may be a matrix or the number of rows)."""
    N = int(X) if isinstance(X, (int, np.integer)) else _shape(X)[0]
    n = _check_k(n, N, "n")
    return np.random.default_rng(seed).choice(N, size=n, replace=False).astype(np.int64)


def sample(X: Any, n: int, method: str = "fps", *, seed: int = 0, metric: str = "l2", **kwargs: Any) -> np.ndarray:
    """One entry point for every selector (used by the CLI, the demo and `iterative_balance`)."""
    if method not in METHODS:
        raise CuratorError(f"unknown sampling method {method!r}", f"use one of {', '.join(METHODS)}")
    _check_k(n, int(X) if isinstance(X, (int, np.integer)) else _shape(X)[0], "n")
    if method == "fps":
        start = kwargs.pop("start", fps_start(_shape(X)[0], seed))
        return farthest_point_sample(X, n, start=start, metric=metric, **kwargs)[0]
    if method == "stratified":
        start = kwargs.pop("start", fps_start(_shape(X)[0], seed))
        return stratified_farthest_point_sample(X, n, start=start, metric=metric, seed=seed, **kwargs)[0]
    if method == "clusters":
        return cluster_balanced_sample(X, n, metric=metric, seed=seed, **kwargs)
    if method == "random":
        return random_sample(X, n, seed=seed)
    raise CuratorError(f"unknown sampling method {method!r}", f"use one of {', '.join(METHODS)}")


def fps_start(n_rows: int, seed: int) -> int:
    """The first pick `sample` gives (farthest-point) sampling for a seed, so other callers start alike."""
    return int(np.random.default_rng(seed).integers(n_rows))


# ----------------------------------------------------------------------------- selections on disk
def samples_dir(ws: "Workspace") -> Path:
    return ws.root / "samples"


def _check_name(name: str) -> str:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise CuratorError(f"sample name {name!r} is not a plain name", "use letters, digits, '-' or '_', e.g. 'fps-500'")
    return name


def default_run(ws: "Workspace") -> str:
    """The workspace's embedding run when there is exactly one (so `--run` can be left out)."""
    folder = ws.root / "embeddings"
    runs = sorted(p.stem for p in folder.glob("*.npy")) if folder.exists() else []
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise CuratorError(f"workspace {ws.root} has no embeddings yet",
                           "train and embed a model first (`curator train`, `curator embed`), or use --method random")
    raise CuratorError(f"workspace {ws.root} has several embedding runs ({', '.join(runs)})", "choose one with --run RUN")


def embeddings_for(ws: "Workspace", run: str) -> np.ndarray:
    """The run's embeddings (float16 memmap), checked to have one row per chip."""
    from .embed import load_embeddings

    X = load_embeddings(ws, run)
    if len(X) != len(ws):
        raise CuratorError(f"embeddings of run {run!r} have {len(X)} rows but the workspace has {len(ws)} chips",
                           f"re-embed the workspace with run {run!r} so every chip has a row")
    return X


def selection_stats(ws: "Workspace", ids: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """What a person checks first about a selection: its ocean share and, with labels, its class balance."""
    from .class_stats import class_counts, class_size_std

    ids = np.asarray(ids, dtype=np.int64)
    df = ws.manifest
    out: dict[str, Any] = {"n": int(len(ids))}
    lf = df["land_fraction"].to_numpy(dtype=float, na_value=np.nan)
    if len(df) and np.isfinite(lf).any():
        sel = lf[ids]
        sel = sel[np.isfinite(sel)]
        out["ocean_share"] = round(float((sel < 0.5).mean()), 4) if len(sel) else None
        whole = lf[np.isfinite(lf)]
        out["ocean_share_all"] = round(float((whole < 0.5).mean()), 4)
    labels = df["label"]
    if labels.notna().any():
        classes = sorted(labels.dropna().unique().tolist())
        chosen = labels.iloc[ids].dropna().tolist()
        out["class_counts"] = {str(k): int(v) for k, v in class_counts(chosen, classes=classes).items()}
        out["class_size_std"] = round(class_size_std(chosen, classes=classes), 4)
    return out


def save_sample(ws: "Workspace", name: str, ids: Sequence[int] | np.ndarray, method: str,
                run: str | None = None, params: dict[str, Any] | None = None,
                radii: np.ndarray | None = None) -> Path:
    """Write samples/<name>.json atomically (ids in selection order, parameters, stats) and note it in workspace.json."""
    from .atomic import write_json

    ids = np.asarray(ids, dtype=np.int64)
    n = len(ws)
    if len(ids) and (ids.min() < 0 or ids.max() >= n):
        raise CuratorError(f"selection has ids outside 0..{n - 1}", "select from this workspace's embeddings")
    stats = selection_stats(ws, ids)
    doc = {"name": _check_name(name), "method": method, "run": run, "n": int(len(ids)), "ids": ids.tolist(),
           "params": params or {}, "stats": stats,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if radii is not None:
        doc["final_radius"] = float(np.asarray(radii)[-1])
    path = samples_dir(ws) / f"{name}.json"
    write_json(path, doc)
    ws.record("samples", name, {"method": method, "run": run, "n": int(len(ids)), "path": str(path.relative_to(ws.root)),
                                **{k: v for k, v in stats.items() if k in ("ocean_share", "class_size_std")}})
    return path


def load_sample(ws: "Workspace", name: str) -> np.ndarray:
    """The ids of a saved selection, in selection order."""
    import json

    path = samples_dir(ws) / f"{_check_name(name)}.json"
    if not path.exists():
        have = sorted(p.stem for p in samples_dir(ws).glob("*.json")) if samples_dir(ws).exists() else []
        raise CuratorError(f"no sample named {name!r} in {ws.root}",
                           f"use one of {have}" if have else "make one with `curator sample -n 500 -w WS`")
    return np.asarray(json.loads(path.read_text())["ids"], dtype=np.int64)


def diverse_vs_random(ws: "Workspace", n: int = 500, run: str | None = None, seed: int = 0,
                      prefix: str = "demo") -> dict[str, Any]:
    """The headline check: the ocean share (land_fraction < 0.5) of a random vs a farthest-point
    sample of the embedded chips. Saves both selections; a re-run with the same settings reuses them."""
    import json

    folder = ws.root / "embeddings"
    runs = sorted(folder.glob("*.npy"), key=lambda p: p.stat().st_mtime) if folder.exists() else []
    runs = [p for p in runs if not p.name.startswith(".")]
    if run is None:
        if not runs:
            return {"skipped": "no embeddings in the workspace yet (train and embed first)"}
        run = runs[-1].stem  # the newest embedding run
    n = min(int(n), len(ws))
    out: dict[str, Any] = {"run": run, "n": n}
    for method in ("random", "fps"):
        name = f"{prefix}-{method}-{n}"
        path = samples_dir(ws) / f"{name}.json"
        doc = json.loads(path.read_text()) if path.exists() else None
        if not (doc and doc.get("run") == run and doc.get("params", {}).get("seed") == seed and doc["n"] == n):
            ids = sample(embeddings_for(ws, run), n, method=method, seed=seed)
            path = save_sample(ws, name, ids, method=method, run=run, params={"seed": seed})
            doc = json.loads(path.read_text())
        out[f"ocean_share_{'diverse' if method == 'fps' else method}"] = doc["stats"].get("ocean_share")
        out["ocean_share_all"] = doc["stats"].get("ocean_share_all")
        out[f"sample_{method}"] = str(path.relative_to(ws.root))
    return out
