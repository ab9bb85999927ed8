"""Embeddings split into row shards that live in Dask worker memory between steps.

A shard is read on a worker from the file the embeddings are in (a .npy memmap or a zarr array,
chunk = shard), so a worker that dies takes nothing with it: Dask reloads its shards elsewhere.
Arrays with no file behind them travel inside the task, which keeps them recomputable too.
With hold="disk" the workers keep only each shard's place in the file and read its rows in every
task: a worker's memory is then one shard's rows (plus O(1) bytes per row of step state, e.g. FPS
min-distances), whatever N is, and each step costs one read of the file (the page cache, or the
object store, serves it).
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .cluster import get_client, worker_count
from .errors import CuratorError

DEFAULT_SHARD_ROWS = 1 << 18
HOLDS = ("memory", "disk")


@dataclass(frozen=True)
class Shard:
    """Rows [lo, hi) of an embedding matrix, and how a worker reads them."""

    lo: int
    hi: int
    kind: str  # "npy", "zarr" or "inline"
    path: str | None = None
    data: np.ndarray | None = None

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The shard's rows [start, stop) (shard-local) as a numpy array, on whichever process runs this."""
        stop = self.hi - self.lo if stop is None else stop
        if self.kind == "inline":
            return np.asarray(self.data[start:stop])
        lo, hi = self.lo + start, self.lo + stop
        if self.kind == "npy":
            return np.array(np.load(self.path, mmap_mode="r")[lo:hi])
        import zarr

        return np.asarray(zarr.open_array(self.path, mode="r")[lo:hi])


def source_of(X: Any) -> tuple[str, str | None]:
    """('npy', path) for a .npy memmap, ('zarr', path) for a zarr array on disk, else ('inline', None)."""
    name = getattr(X, "filename", None)
    if isinstance(X, np.memmap) and name and str(name).endswith(".npy"):
        return "npy", str(name)
    if type(X).__module__.startswith("zarr"):
        root = getattr(getattr(X, "store", None), "root", None)
        if root is not None:
            return "zarr", str(Path(str(root)) / X.path) if getattr(X, "path", "") else str(root)
    return "inline", None


def plan_shards(X: Any, shard_rows: int | None = None) -> list[Shard]:
    """Row shards of X: zarr chunks when X is zarr (one task per chunk), else `shard_rows` rows."""
    n = int(X.shape[0])
    kind, path = source_of(X)
    if shard_rows is None:
        shard_rows = int(X.chunks[0]) if kind == "zarr" else DEFAULT_SHARD_ROWS
    if int(shard_rows) < 1:
        raise CuratorError(f"shard_rows={shard_rows} must be positive", "use e.g. 262144 rows per shard")
    out = []
    for lo in range(0, n, int(shard_rows)):
        hi = min(n, lo + int(shard_rows))
        out.append(Shard(lo, hi, kind, path, np.ascontiguousarray(X[lo:hi]) if kind == "inline" else None))
    return out


def _load(shard: Shard) -> tuple[Shard, np.ndarray]:
    return Shard(shard.lo, shard.hi, shard.kind, shard.path), shard.read()


def _place(shard: Shard) -> tuple[Shard, None]:
    return shard, None


def _held_rows(item: tuple[Shard, np.ndarray | None]) -> int:
    """Rows a shard keeps in worker memory (0 with hold="disk"): a small answer that says it is ready."""
    return 0 if item[1] is None else len(item[1])


def one_pass_hold(X: Any) -> str:
    """The hold for a step that reads every row once (scoring, index adds): "disk" when a file is behind X,
    since holding the rows would cost the same read plus N / workers rows of worker memory; else "memory"."""
    return "memory" if source_of(X)[0] == "inline" else "disk"


def rows_of(item: tuple[Shard, np.ndarray | None]) -> np.ndarray:
    """A held shard's rows: from worker memory, or read from the file now (hold="disk")."""
    shard, rows = item
    return shard.read() if rows is None else rows


class ShardedEmbeddings:
    """An [N, d] embedding matrix persisted in the workers' memory as row shards, loaded once.

    Every cluster step (FPS, scoring, index adds) maps a per-shard kernel over `futures`; the
    results are the same as the single-process function's on the whole matrix. hold="disk" keeps
    only where each shard is in the file (a .npy or zarr store every worker can read), so worker
    memory is bounded by one shard instead of growing with N; every step then reads the file.
    """

    def __init__(self, X: Any, client: Any = None, shard_rows: int | None = None, hold: str = "memory"):
        self.client = get_client(client)
        if self.client is None:
            raise CuratorError("no Dask cluster to put the shards on",
                               "pass client= (a distributed.Client or a scheduler address) or set "
                               "CURATOR_DASK_SCHEDULER")
        shape = tuple(getattr(X, "shape", ()))
        if len(shape) != 2 or shape[0] == 0:
            raise CuratorError(f"expected a non-empty [N, d] embedding matrix, got shape {list(shape)}",
                               "pass load_embeddings(ws, run)")
        if hold not in HOLDS:
            raise CuratorError(f"unknown hold {hold!r}", f"use one of {', '.join(HOLDS)}")
        if hold == "disk" and source_of(X)[0] == "inline":
            raise CuratorError("hold='disk' needs embeddings in a file the workers can read, but these are in memory",
                               "pass load_embeddings(ws, run) (a .npy memmap or a zarr array), or hold='memory'")
        self.X = X
        self.hold = hold
        self.n, self.d = int(shape[0]), int(shape[1])
        self.dtype = np.dtype(X.dtype)
        self.shards = plan_shards(X, shard_rows)
        # a fresh key per load, so two ShardedEmbeddings never share (and release) each other's futures
        tag = uuid.uuid4().hex[:12]
        fn = _place if hold == "disk" else _load
        self.futures = [self.client.submit(fn, s, key=f"curator-shard-{tag}-{i}") for i, s in enumerate(self.shards)]

    def __len__(self) -> int:
        return self.n

    def map(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """fn((shard, rows), *args) on every shard, on the worker that holds it; the futures, in shard order."""
        return [self.client.submit(fn, f, *args, pure=False, **kwargs) for f in self.futures]

    def imap(self, fn: Callable[..., Any], *args: Any, window: int | None = None, **kwargs: Any
             ) -> Iterator[tuple[Shard, Any]]:
        """(shard, future of fn((shard, rows), *args)) in shard order, with at most `window` tasks (default
        two per worker) running ahead of the one handed out: a consumer that fetches results one at a time
        keeps the workers busy without the results of every shard piling up in their memory."""
        window = int(window or max(2, 2 * self.workers()))
        ahead: deque[Any] = deque()
        nxt = 0
        for i, shard in enumerate(self.shards):
            while nxt < len(self.futures) and nxt < i + window:
                ahead.append(self.client.submit(fn, self.futures[nxt], *args, pure=False, **kwargs))
                nxt += 1
            yield shard, ahead.popleft()

    def wait(self) -> None:
        """Block until every shard is loaded (or placed) on its worker, without moving its rows here."""
        self.client.gather(self.map(_held_rows))

    def gather(self, futures: list[Any]) -> list[Any]:
        return self.client.gather(futures)

    def workers(self) -> int:
        return worker_count(self.client)

    def close(self) -> None:
        """Let the workers drop the shards."""
        for f in self.futures:
            f.release()
        self.futures = []

    def __enter__(self) -> "ShardedEmbeddings":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
