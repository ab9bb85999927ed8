"""Which chips to label next: informativeness scores, then (optionally) a diverse batch.

A strategy turns class probabilities into one score per chip (higher = ask sooner); a
diversity step then spreads the batch over the embedding space so 64 labels are not 64
near-copies. Both are combinable as "entropy+kmeans" etc.: the score pre-filters a pool of
`pool_factor * n` candidates, and the diversity step picks `n` from it. Everything is
vectorized over all chips, so a million candidates cost one pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import CuratorError
from .omp import one_omp_thread

STRATEGIES = ("least_confidence", "margin", "entropy", "random", "top_positive", "gaussian", "entropy_positive")
DIVERSITY = ("proximity", "kmeans", "coreset")
# A proximity batch larger than this is picked as consecutive groups of this size (the published batch), each
# from the best `pool_factor * group` chips not yet picked and kept away from every earlier pick: one greedy over
# a pool of 10 x 1,024 chips costs ~20 s of CPU a round at 33,600 chips, the groups a fraction of a second.
PROXIMITY_GROUP = 64


def parse_strategy(spec: str) -> tuple[str, str | None]:
    """'entropy' -> ('entropy', None); 'margin+coreset' -> ('margin', 'coreset')."""
    parts = [p.strip().replace("-", "_") for p in str(spec).split("+")]
    strategy, diversity = parts[0], (parts[1] if len(parts) > 1 else None)
    if strategy not in STRATEGIES or len(parts) > 2 or (diversity is not None and diversity not in DIVERSITY):
        raise CuratorError(f"acquisition {spec!r} is not a strategy optionally followed by '+diversity'",
                           f"use one of {list(STRATEGIES)}, optionally with '+' and one of {list(DIVERSITY)}, "
                           "e.g. 'entropy+kmeans'")
    return strategy, diversity


# ----------------------------------------------------------------------------- informativeness
def least_confidence(P: np.ndarray) -> np.ndarray:
    """1 - max_c p_c: high when even the best class is doubtful."""
    return 1.0 - P.max(axis=1)


def margin(P: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): high when the two likeliest classes are close."""
    if P.shape[1] == 2:
        return 1.0 - np.abs(P[:, 1] - P[:, 0])
    top2 = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(P: np.ndarray) -> np.ndarray:
    """-sum_c p_c log p_c (nats): high when probability is spread over classes. In float64: near its
    maximum entropy is flat (it moves with (p - 0.5)^2), below float32's resolution."""
    P = np.asarray(P, dtype=np.float64)
    return -(P * np.log(np.clip(P, 1e-300, 1.0))).sum(axis=1)


def top_positive(P: np.ndarray, positive: int = 1) -> np.ndarray:
    """p_positive: ask about the likeliest positives first (exploitation, fast recall)."""
    return P[:, positive].copy()


def entropy_positive(P: np.ndarray, positive: int = 1) -> np.ndarray:
    """Normalized entropy + p_positive: uncertainty mixed with proximity to the positives, so among
    equally doubtful chips the likelier positive is asked first (recall is what a curator needs)."""
    return entropy(P) / np.log(P.shape[1]) + np.asarray(P[:, positive], dtype=np.float64)


def gaussian_weights(P: np.ndarray, positive: int = 1, mean: float = 0.5, sigma: float = 0.2) -> np.ndarray:
    """exp(-(p - mean)^2 / 2 sigma^2): a sampling weight peaked at the decision boundary."""
    return np.exp(-0.5 * ((P[:, positive] - mean) / sigma) ** 2)


def informativeness(P: np.ndarray, strategy: str, positive: int = 1, rng: np.random.Generator | None = None,
                    sigma: float = 0.2) -> np.ndarray:
    """One score per row of P for `strategy` (float64); 'gaussian' and 'random' are sampling keys
    (Gumbel-perturbed log-weights), so taking the top n samples without replacement."""
    P = np.asarray(P, dtype=np.float32)
    rng = rng or np.random.default_rng(0)
    if strategy == "least_confidence":
        s = least_confidence(P)
    elif strategy == "margin":
        s = margin(P)
    elif strategy == "entropy":
        s = entropy(P)
    elif strategy == "top_positive":
        s = top_positive(P, positive)
    elif strategy == "entropy_positive":
        s = entropy_positive(P, positive)
    elif strategy == "gaussian":  # top-n of log w + Gumbel noise == weighted sampling without replacement
        s = np.log(np.maximum(gaussian_weights(P, positive, sigma=sigma), 1e-30)) + rng.gumbel(size=len(P))
    elif strategy == "random":
        s = rng.random(len(P))
    else:
        parse_strategy(strategy)
        raise AssertionError(strategy)
    return np.asarray(s, dtype=np.float64)


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest scores, largest first (ties by index), in O(N) + O(n log n)."""
    n = min(int(n), len(scores))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    t = scores[part].min()
    if n < len(scores) and np.isfinite(t):  # argpartition keeps an arbitrary few of the rows tied at the cut
        above = np.flatnonzero(scores > t)
        part = np.concatenate([above, np.flatnonzero(scores == t)[: n - len(above)]])
    return part[np.lexsort((part, -scores[part]))].astype(np.int64)


# ----------------------------------------------------------------------------- diversity
def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def iterative_proximity(X: np.ndarray, scores: np.ndarray, n: int, weight: float = 1.0,
                        dmin: np.ndarray | None = None) -> np.ndarray:
    """Greedy: each pick maximizes minmax(score) + weight * (distance to the nearest pick / max distance).

    Active-Labeler used the distance to the *centroid* of the picks; the nearest pick is what
    keeps two picks from landing side by side, so that is what is used here. `dmin` (each row's
    distance to picks made before this call) makes the first pick keep away from those too.
    """
    Xu = _unit(X)
    s = np.asarray(scores, dtype=np.float64)
    s = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.zeros_like(s)
    n = min(int(n), len(s))
    taken = np.zeros(len(s), dtype=bool)
    picked: list[int] = []
    if dmin is None:
        picked = [int(np.argmax(s))]
        dmin = np.linalg.norm(Xu - Xu[picked[0]], axis=1)
        taken[picked[0]] = True
    else:
        dmin = np.asarray(dmin, dtype=np.float64).copy()
    while len(picked) < n:
        total = s + weight * dmin / max(float(dmin.max()), 1e-12)
        total[taken] = -np.inf
        j = int(np.argmax(total))
        picked.append(j)
        taken[j] = True
        np.minimum(dmin, np.linalg.norm(Xu - Xu[j], axis=1), out=dmin)
    return np.asarray(picked, dtype=np.int64)


def grouped_proximity(X: Any, rows: np.ndarray, scores: np.ndarray, n: int, pool_factor: int = 10,
                      weight: float = 1.0, group: int = PROXIMITY_GROUP) -> np.ndarray:
    """`iterative_proximity` for a large batch, `group` picks at a time: each group from the best
    `pool_factor * group` of the rows not yet picked, its distances starting from every earlier pick.
    Returns positions into `rows`/`scores`; a batch of at most `group` is exactly `iterative_proximity`."""
    n = min(int(n), len(scores))
    order = top_n(np.asarray(scores, dtype=np.float64), len(scores))
    free = np.ones(len(scores), dtype=bool)
    picks: list[np.ndarray] = []
    done = np.empty((0, X.shape[1]), dtype=np.float32)
    while sum(len(p) for p in picks) < n:
        size = min(int(group), n - sum(len(p) for p in picks))
        pool = order[free[order]][: max(size * int(pool_factor), size)]
        Xp = _unit(_read_rows(X, rows[pool]))
        dmin = None
        if len(done):
            dmin = np.sqrt(np.clip(2.0 - 2.0 * (Xp @ done.T).max(1), 0.0, None))  # unit vectors: |a-b|^2 = 2 - 2ab
        pick = pool[iterative_proximity(Xp, scores[pool], size, weight=weight, dmin=dmin)]
        free[pick] = False
        picks.append(pick)
        done = np.vstack([done, _unit(_read_rows(X, rows[pick]))])
    return np.concatenate(picks).astype(np.int64)


def _read_rows(X: Any, rows: np.ndarray) -> np.ndarray:
    """Rows of X (a memmap welcome: read in ascending order) as float32, in the order asked."""
    order = np.argsort(rows)
    out = np.empty((len(rows), X.shape[1]), dtype=np.float32)
    out[order] = np.asarray(X[rows[order]], dtype=np.float32)
    return out


def cluster_pick(X: np.ndarray, scores: np.ndarray, n: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """faiss k-means with k = n (one cluster per label we can afford), then the most informative
    member of each cluster; empty clusters are filled by the next-best scores. Order: by score."""
    import faiss

    n = min(int(n), len(scores))
    if n == len(scores):
        return top_n(scores, n)
    Xu = _unit(X)
    km = faiss.Kmeans(Xu.shape[1], n, niter=niter, nredo=5, seed=int(seed) + 1, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    with one_omp_thread():  # a pool of a few hundred points: OpenMP hand-offs would cost more than the math
        km.train(Xu)
        assign = km.index.search(Xu, 1)[1].ravel()
    order = top_n(np.asarray(scores, dtype=np.float64), len(scores))
    picked: list[int] = []
    seen: set[int] = set()
    for i in order:  # best-first, so the first member seen of each cluster is its most informative
        c = int(assign[i])
        if c not in seen:
            seen.add(c)
            picked.append(int(i))
    if len(picked) < n:
        chosen = set(picked)
        picked += [int(i) for i in order if int(i) not in chosen][: n - len(picked)]
    return np.asarray(sorted(picked, key=lambda i: -float(scores[i])), dtype=np.int64)


def coreset_pick(X: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Farthest-point (k-center) selection over the pool, started at its most informative point."""
    from .sampling import farthest_point_sample

    n = min(int(n), len(scores))
    idx, _ = farthest_point_sample(_unit(X), n, start=int(np.argmax(scores)), metric="l2", progress=False)
    return np.asarray(idx, dtype=np.int64)[:n]


# ----------------------------------------------------------------------------- the batch
def select(P: np.ndarray, n: int, strategy: str = "entropy", diversity: str | None = None, X: Any = None,
           candidates: np.ndarray | None = None, positive: int = 1, pool_factor: int = 10, seed: int = 0,
           sigma: float = 0.2, proximity_weight: float = 1.0) -> np.ndarray:
    """Pick `n` row indices of P (restricted to `candidates`) to label next, most useful first.

    `strategy` may carry its diversity step ('margin+coreset'). With a diversity step, the
    top `pool_factor * n` candidates by score form the pool, and `X` (the embeddings,
    memmap welcome) supplies the geometry; only the pool's rows are read.
    """
    if "+" in strategy:
        if diversity is not None:
            raise CuratorError(f"diversity given twice ({strategy!r} and diversity={diversity!r})",
                               "use either 'entropy+kmeans' or strategy='entropy', diversity='kmeans'")
        strategy, diversity = parse_strategy(strategy)
    else:
        parse_strategy(strategy if diversity is None else f"{strategy}+{diversity}")
    P = np.asarray(P)
    if candidates is None:
        cand = np.arange(len(P), dtype=np.int64)
    else:
        cand = np.asarray(candidates)
        cand = np.flatnonzero(cand) if cand.dtype == bool else cand.astype(np.int64)
    if int(n) < 1:
        raise CuratorError(f"batch size must be at least 1, got {n}", "pass n >= 1")
    if cand.size == 0:
        return np.empty(0, dtype=np.int64)
    if P.ndim != 2 or P.shape[1] < 2 or (strategy in ("top_positive", "gaussian", "entropy_positive")
                                         and positive >= P.shape[1]):
        raise CuratorError(f"probabilities must be (N, classes>=2) with the positive class {positive} in range, "
                           f"got shape {P.shape}", "pass head.predict_proba(X)")
    rng = np.random.default_rng(seed)
    scores = informativeness(P[cand], strategy, positive=positive, rng=rng, sigma=sigma)
    if diversity is None:
        return cand[top_n(scores, n)]
    if X is None:
        raise CuratorError(f"diversity {diversity!r} needs the embeddings", "pass X=embeddings (the memmap is fine)")
    if diversity == "proximity" and int(n) > PROXIMITY_GROUP:
        return cand[grouped_proximity(X, cand, scores, n, pool_factor, weight=proximity_weight)]
    pool = top_n(scores, max(int(n) * int(pool_factor), int(n)))
    rows = cand[pool]
    Xp = _read_rows(X, rows)
    sp = scores[pool]
    if diversity == "proximity":
        pick = iterative_proximity(Xp, sp, n, weight=proximity_weight)
    elif diversity == "kmeans":
        pick = cluster_pick(Xp, sp, n, seed=seed)
    else:
        pick = coreset_pick(Xp, sp, n)
    return rows[pick]
