"""kNN accuracy of embeddings against ground-truth labels: the SSL quality monitor and benchmark metric."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def knn_predict(reference: torch.Tensor | np.ndarray, reference_labels: Sequence[int] | np.ndarray,
                queries: torch.Tensor | np.ndarray, k: int = 20, temperature: float = 0.07,
                num_classes: int | None = None, chunk: int = 1024) -> np.ndarray:
    """Cosine kNN with similarity-weighted votes (Wu et al. 2018), the usual SSL evaluation."""
    ref = torch.nn.functional.normalize(torch.as_tensor(np.asarray(reference, dtype=np.float32)), dim=1)
    q_all = torch.nn.functional.normalize(torch.as_tensor(np.asarray(queries, dtype=np.float32)), dim=1)
    y = torch.as_tensor(np.asarray(reference_labels, dtype=np.int64))
    c = int(num_classes if num_classes is not None else int(y.max()) + 1)
    k = min(int(k), len(ref))
    out = []
    for start in range(0, len(q_all), chunk):
        sim = q_all[start:start + chunk] @ ref.T
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), c)
        votes.scatter_add_(1, y[idx], torch.exp(top / temperature))
        out.append(votes.argmax(1))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def knn_top1(reference, reference_labels, queries, query_labels, k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy of `knn_predict` on labelled queries."""
    ql = np.asarray(query_labels, dtype=np.int64)
    rl = np.asarray(reference_labels, dtype=np.int64)
    pred = knn_predict(reference, rl, queries, k=k, temperature=temperature,
                       num_classes=int(max(rl.max(), ql.max())) + 1)
    return float((pred == ql).mean())


def holdout_split(labels: Sequence[str | None], fraction: float = 0.2, seed: int = 0,
                  max_reference: int = 4000, max_queries: int = 1000):
    """Stratified reference/query positions over labelled items, or None without >= 2 usable classes.

    Returns (reference_positions, query_positions, integer_labels_for_all, class_names).
    """
    lab = np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in labels],
                   dtype=object)
    have = np.flatnonzero(lab != None)  # noqa: E711 (object array comparison)
    classes, counts = np.unique(lab[have].astype(str), return_counts=True) if len(have) else (np.array([]), [])
    usable = classes[np.asarray(counts) >= 2]
    if len(usable) < 2:
        return None
    code = {c: i for i, c in enumerate(usable)}
    y = np.array([code.get(v, -1) if v is not None else -1 for v in lab], dtype=np.int64)
    rng = np.random.default_rng(seed)
    ref, qry = [], []
    for ci in range(len(usable)):
        pos = rng.permutation(np.flatnonzero(y == ci))
        nq = max(1, int(round(len(pos) * fraction)))
        qry.append(pos[:nq])
        ref.append(pos[nq:])
    ref_pos, q_pos = rng.permutation(np.concatenate(ref)), rng.permutation(np.concatenate(qry))
    return np.sort(ref_pos[:max_reference]), np.sort(q_pos[:max_queries]), y, [str(c) for c in usable]


def retrieval_precision(X: np.ndarray, labels: Sequence[str] | np.ndarray, k: int = 10,
                        queries: Sequence[int] | np.ndarray | None = None) -> float:
    """Mean share of each query's k nearest other chips (cosine, whole pool) that carry the query's label:
    what a seed set of neighbours holds, the retrieval number the protocol starts from."""
    import faiss

    X = np.asarray(X, dtype=np.float32)
    X = np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12))
    lab = np.asarray(labels)
    q = np.arange(len(X)) if queries is None else np.asarray(queries, dtype=np.int64)
    if len(q) == 0 or len(X) < 2:
        return float("nan")
    kk = min(int(k), len(X) - 1)
    _, idx = faiss.knn(X[q], X, kk + 1, metric=faiss.METRIC_INNER_PRODUCT)
    hits = []
    for row, qi in zip(idx, q):
        nb = [j for j in row if j != qi and j >= 0][:kk]  # drop the query itself wherever ties put it
        hits.append(np.mean(lab[nb] == lab[qi]))
    return float(np.mean(hits))
