"""One active-learning round on a Dask cluster: the head scores every shard where it lives, and each
shard sends back only its best candidates, so a round is one pass over the shards.

The per-shard work is `Head.predict_proba` and `acquisition.informativeness` + `top_n` on rows
the single-process round would score, so the picks are the ones `acquisition.select` makes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .acquisition import parse_strategy
from .cluster import gather_with_bar
from .errors import CuratorError
from .shards import ShardedEmbeddings, one_pass_hold, rows_of

# strategies whose score of a chip depends on that chip alone (random and gaussian draw one
# random number per candidate in a global order, which shards cannot reproduce)
SHARDABLE = ("least_confidence", "margin", "entropy", "top_positive", "entropy_positive")


def _shard_proba(item: tuple[Any, np.ndarray], head: Any) -> np.ndarray:
    return np.asarray(head.predict_proba(rows_of(item)), dtype=np.float32)


def _shard_top(item: tuple[Any, np.ndarray], P: np.ndarray, n: int, strategy: str, positive: int,
               candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, global ids) of the shard's n best candidates, best first."""
    from .acquisition import informativeness, top_n

    shard, _ = item
    cand = np.arange(shard.lo, shard.hi, dtype=np.int64)
    if candidates is not None:
        cand = cand[candidates[shard.lo:shard.hi]]
    if cand.size == 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    scores = informativeness(P[cand - shard.lo], strategy, positive=positive)
    keep = top_n(scores, n)
    return scores[keep], cand[keep]


def _sharded(X: Any, client: Any, shard_rows: int | None, hold: str | None) -> ShardedEmbeddings:
    """X itself when already sharded; else its shards, read from the file in the task when it has one (one pass)."""
    if isinstance(X, ShardedEmbeddings):
        return X
    return ShardedEmbeddings(X, client=client, shard_rows=shard_rows, hold=hold or one_pass_hold(X))


def cluster_predict_proba(X: Any, head: Any, *, client: Any = None, shard_rows: int | None = None,
                          progress: bool = True, hold: str | None = None) -> np.ndarray:
    """`head.predict_proba(X)` computed shard by shard on the workers: float32 [N, classes]. A matrix
    with a file behind it is read by the workers in the tasks (hold="disk"); pass hold="memory" to load first."""
    sh = _sharded(X, client, shard_rows, hold)
    try:
        return np.concatenate(gather_with_bar(sh.client, sh.map(_shard_proba, head), "score (cluster)", progress))
    finally:
        if sh is not X:
            sh.close()


def cluster_score_and_pick(X: Any, head: Any, n: int, strategy: str = "entropy", *, candidates: np.ndarray | None = None,
                           positive: int = 1, client: Any = None, shard_rows: int | None = None,
                           progress: bool = True, hold: str | None = None) -> np.ndarray:
    """Score every row with the fitted `head` on the workers and pick the `n` most informative
    (restricted to the boolean `candidates`): the ids `acquisition.select(P, n, strategy)` returns."""
    name, diversity = parse_strategy(strategy)
    if diversity is not None or name not in SHARDABLE:
        raise CuratorError(f"strategy {strategy!r} cannot be split over shards",
                           f"use one of {', '.join(SHARDABLE)} on a cluster, or run the round in one process")
    if int(n) < 1:
        raise CuratorError(f"batch size must be at least 1, got {n}", "pass n >= 1")
    sh = _sharded(X, client, shard_rows, hold)
    try:
        if candidates is not None:
            candidates = np.asarray(candidates, dtype=bool)
            if candidates.shape != (sh.n,):
                raise CuratorError(f"candidates has shape {candidates.shape}, expected ({sh.n},)",
                                   "pass a boolean mask with one entry per chip")
        probs = sh.map(_shard_proba, head)  # stays on the workers: only the top rows travel
        tops = gather_with_bar(sh.client, [sh.client.submit(_shard_top, f, p, int(n), name, int(positive), candidates,
                                                            pure=False) for f, p in zip(sh.futures, probs)],
                               "score and pick (cluster)", progress)
    finally:
        if sh is not X:
            sh.close()
    scores = np.concatenate([t[0] for t in tops])
    ids = np.concatenate([t[1] for t in tops]).astype(np.int64)
    order = np.lexsort((ids, -scores))[: int(n)]  # largest first, ties by id: acquisition.top_n's order
    return ids[order]
