"""The Curator protocol over any folder of class subfolders: how much of a class one image finds.

For every class and several starter images, the seed set is the starter's `k` nearest neighbours
plus `r` random chips, labelled from the class folders; then rounds of `batch` chips picked by
the acquisition are labelled. A round ends exactly at each effort point (5.0 / 6.0 / 7.8 / 10.0 %
of the pool: the last batch before a point is cut to reach it), where the curated set (labelled
positives + unlabelled chips scored >= threshold) is compared with the truth.

Honest by construction: the classes are split once into a dev half (sorted class names at even
positions) and a test half (odd positions). Defaults in this module were chosen on dev classes
only (benchmarks/protocol_levers.py); every report shows dev, test and all classes apart.
The rounds are simulated in memory with the same pieces `ActiveLoop` uses (the head
`propagation.GraphHead`, registered as head="propagation", and `acquisition.select`), so 100
sessions take a minute instead of sqlite round trips.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import CuratorError

POINTS = (5.0, 6.0, 7.8, 10.0)  # effort points (% of the pool labelled) every report is taken at
TARGET_RECALL = 0.9
PUBLISHED_POOL = 2100  # UC Merced's size, where the published seed-set and batch sizes apply unscaled


# ----------------------------------------------------------------------------- recipes (the defaults)
@dataclass(frozen=True)
class SSLRecipe:
    """How the embeddings are made. The budget is compute, not epochs: `views` image-views at 64 px
    (a 96 px view counts (96/64)^2 = 2.25), the same whatever the pool size, so a 30k-image folder
    fits the 60-min CPU budget (docs/active_learning.md); small pools get at most `max_epochs` passes."""

    method: str = "simclr"
    backbone: str = "small_cnn"
    image_size: int = 64
    views: int = 42_000  # the first budget (20 epochs of UC Merced at 64 px); DEFAULT_SSL uses SSL_VIEWS_CAP
    max_epochs: int = 100
    augment: tuple[tuple[str, Any], ...] = ()  # AugmentConfig overrides, as (name, value) pairs
    tta: bool = False
    scales: tuple[int, ...] = ()  # extra input sizes the same model also embeds at (no TTA), concatenated
    seed: int = 0

    def epochs(self, n: int) -> int:
        per_view = (self.image_size / 64) ** 2
        return int(min(self.max_epochs, max(1, round(self.views / per_view / max(n, 1)))))

    def model_run(self, n: int) -> str:
        tag = "" if not self.augment else "-aug" + hashlib.sha1(repr(self.augment).encode()).hexdigest()[:6]
        tag += f"-seed{self.seed}" if self.seed else ""  # another seed is another model, never the cached one
        return f"ssl-{self.method}-{self.backbone}-{self.image_size}px-{self.epochs(n)}ep{tag}"

    def embedding_run(self, n: int) -> str:
        return self.model_run(n) + ("-tta" if self.tta else "") + "".join(f"-x{s}px" for s in self.scales)


def effort_target(point: float, n: int) -> int:
    """Labels at effort point `point` (% of n chips): where a session's rounds end and are measured."""
    return int(math.floor(point / 100 * n + 1e-9))


@dataclass(frozen=True)
class LoopRecipe:
    """How each simulated labelling session runs (seed set, head, acquisition, curated-set threshold)."""

    k: int = 64
    r: int = 32
    batch: int = 64
    head_weight: float = 1.0  # 1 = logistic head only, 0 = label propagation only, between: their average
    graph_k: int = 20
    alpha: float = 0.99
    background: float = 0.0
    strategy: str = "entropy"
    threshold: float = 0.5
    pseudo: int = 0  # self-training: pseudo-labels per class added to the logistic part's second fit (GraphHead)
    whiten: float = 0.0  # > 0: the kNN graph is built on the PCA-whitened embedding with this shrinkage (GraphHead)
    points: tuple[float, ...] = POINTS

    def scaled(self, n: int) -> "LoopRecipe":
        """The sizes for a pool of n chips, given for UC Merced's 2,100: proportionally smaller below, so
        the seed set keeps its share of the pool. Above, the seed set keeps its size (it is one image's
        neighbours) and the batch grows with the pool (batch x n / 2,100): rounds, not chips, cost
        time, so a session has about as many rounds at any size (`rounds`)."""
        s = min(1.0, n / PUBLISHED_POOL)
        return replace(self, k=max(1, math.floor(self.k * s)), r=max(1, math.floor(self.r * s)),
                       batch=max(1, math.floor(self.batch * n / PUBLISHED_POOL)))

    def rounds(self, n: int) -> int:
        """How many rounds (head fits) one session over n chips runs: the seed set, then batches, each
        cut short at an effort point, to the last point; what a session costs is ~rounds x n."""
        rec = self.scaled(n)
        labelled = min(n, 1 + rec.k + rec.r)
        count = 1
        for target in sorted({effort_target(p, n) for p in rec.points}):
            while labelled < target:
                labelled = min(target, labelled + rec.batch)
                count += 1
        return count


# The SSL budget's ceiling, set by cost, never by a score: the 30k-image protocol must fit 60 min of this 2-core
# box. It was set from a run on a loaded box (~8.9 ms of CPU per 64-px view, ~19 CPU min for the rest), where
# 168,000 views come to about half the budget; on an idle box the whole 30k protocol at this ceiling took 14.3 min
# (benchmarks/results/active_protocol_30k.json: 2.9 ms of CPU per view). protocol_levers.py measures what 1x, 2x and
# 4x the first budget (42,000 views) gain on dev classes; UC Merced's 100-epoch cap stops it at 210,000 views.
SSL_VIEWS_CAP = 168_000

# The defaults: the lever winners on UC Merced's dev classes (benchmarks/protocol_levers.py; the
# dataclass defaults above are the baseline each lever is compared with).
DEFAULT_SSL = SSLRecipe(tta=True, scales=(128, 256), views=SSL_VIEWS_CAP)
DEFAULT_LOOP = LoopRecipe(k=8, r=4, batch=8, head_weight=0.5, graph_k=10, whiten=0.1, strategy="entropy+kmeans",
                          pseudo=16)


STARTERS = 5  # starter images per class, the published protocol's count
# A class needs its starter and at least one more image for a session to measure anything (with one image, the
# starter alone is "the whole class": recall 1 by construction); smaller classes get no sessions.
MIN_CLASS_IMAGES = 2
# Each round of a session fits the head and scores, propagates over and selects from the whole pool, so a session
# costs ~rounds x n: 1.1 s of CPU per round at 33,600 chips x 512 dims on this 2-core box (609 rounds took 667 CPU s
# in benchmarks/results/active_protocol_30k.json), ~33 us per chip and round. Sessions x rounds x chips is held to
# this budget, ~9 min of CPU (the rest of the 60-min budget is SSL + embedding); UC Merced's 21 classes x 5
# sessions x ~27 rounds x 2,100 chips (6 M) is below it and keeps all 5 starters.
SESSION_ROUND_CHIPS = 16_000_000


def starters_per_class(n: int, classes: int, recipe: LoopRecipe | None = None) -> int:
    """STARTERS, fewer (at least 1) when classes x starters sessions of `recipe` (default: the protocol's)
    over n chips would exceed SESSION_ROUND_CHIPS."""
    per_starter = int(n) * int(classes) * (recipe or DEFAULT_LOOP).rounds(int(n))
    return int(min(STARTERS, max(1, SESSION_ROUND_CHIPS // max(per_starter, 1))))


# ----------------------------------------------------------------------------- classes and splits
def split_classes(classes: Sequence[str]) -> dict[str, list[str]]:
    """The fixed dev/test split: sorted class names at even positions are dev, odd ones test."""
    names = sorted(set(str(c) for c in classes))
    return {"dev": names[0::2], "test": names[1::2]}


def starters_for(labels: np.ndarray, cls: str, count: int, seed: int) -> list[int]:
    """`count` starter chips of class `cls`, fixed by (seed, class name) so every recipe gets the same ones."""
    members = np.flatnonzero(labels == cls)
    digest = int(hashlib.sha1(f"{seed}:{cls}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(digest)
    return sorted(rng.choice(members, size=min(count, len(members)), replace=False).tolist())


# ----------------------------------------------------------------------------- one labelling session
def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def seed_ids(Xu: np.ndarray, start: int, k: int, r: int, rng: np.random.Generator) -> list[int]:
    """The published seed set: the starter, its k nearest chips (cosine) and r random others."""
    sims = Xu @ Xu[start]
    sims[start] = -np.inf
    near = np.argpartition(-sims, k)[:k] if k < len(sims) - 1 else np.argsort(-sims)[:k]
    near = near[np.argsort(-sims[near], kind="stable")]
    taken = {int(start), *map(int, near)}
    rest = np.setdiff1d(np.arange(len(Xu)), np.fromiter(taken, np.int64))
    extra = rng.choice(rest, size=min(r, len(rest)), replace=False)
    return [int(start), *map(int, near), *map(int, extra)]


def session(X: np.ndarray, truth: np.ndarray, start: int, recipe: LoopRecipe, graph: Any = None, seed: int = 0,
            Xu: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One simulated labelling session from `start`: per-round metrics of the curated set, with rounds
    ending exactly at each effort point. The head is `propagation.GraphHead`, the one
    `ActiveLoop(head="propagation")` uses; `graph` (built from X when None) is shared between sessions."""
    from . import acquisition
    from .propagation import GraphHead

    n = len(X)
    truth = np.asarray(truth, dtype=bool)
    Xu = _unit(X) if Xu is None else Xu
    rng = np.random.default_rng(seed)
    labelled = seed_ids(Xu, int(start), recipe.k, recipe.r, rng)
    targets = sorted({effort_target(p, n) for p in recipe.points})
    head = GraphHead(2, seed=seed, device="cpu", head_weight=recipe.head_weight, k=recipe.graph_k,
                     alpha=recipe.alpha, background=recipe.background, graph=graph, pseudo=recipe.pseudo,
                     whiten=recipe.whiten)
    history: list[dict[str, Any]] = []
    while True:
        ids = np.asarray(labelled, dtype=np.int64)
        y = truth[ids].astype(np.int64)
        t0 = time.perf_counter()
        P = None
        if len(np.unique(y)) == 2:
            P = head.fit(X, y, ids=ids).predict_proba(X)
        curated = np.zeros(n, dtype=bool) if P is None else P[:, 1] >= recipe.threshold
        curated[ids] = y == 1
        tp = int(np.count_nonzero(curated & truth))
        precision = tp / max(int(curated.sum()), 1)
        recall = tp / max(int(truth.sum()), 1)
        history.append({"labelled": len(ids), "effort": 100.0 * len(ids) / n, "recall": recall,
                        "precision": precision, "f1": 2 * precision * recall / max(precision + recall, 1e-12),
                        "found": int(y.sum()) / max(int(truth.sum()), 1), "seconds": time.perf_counter() - t0})
        nxt = [t for t in targets if t > len(ids)]
        if not nxt:
            return history
        size = min(recipe.batch, nxt[0] - len(ids))
        cand = np.ones(n, dtype=bool)
        cand[ids] = False
        if P is None:  # one class so far: random chips, as ActiveLoop does
            pick = rng.choice(np.flatnonzero(cand), size=size, replace=False)
        else:
            pick = acquisition.select(P, size, recipe.strategy, X=Xu, candidates=cand, seed=seed + len(history))
        if len(pick) == 0:
            return history
        labelled += [int(i) for i in pick]


def at_points(history: list[dict[str, Any]], points: Sequence[float], n: int) -> dict[str, dict[str, float] | None]:
    """The round that ends at each effort point (None when the seed set alone is already past it)."""
    out: dict[str, dict[str, float] | None] = {}
    for p in points:
        target = effort_target(p, n)
        hit = [h for h in history if h["labelled"] == target]
        out[f"{p:.1f}"] = None if not hit else {k: hit[0][k] for k in ("recall", "precision", "f1", "effort")}
    return out


def effort_to_recall(history: list[dict[str, Any]], target: float = TARGET_RECALL) -> float | None:
    """Effort (%) at which recall first reaches `target`, linear between the rounds around it; None if never."""
    prev = None
    for h in history:
        if h["recall"] >= target:
            if prev is None or h["recall"] == prev["recall"]:
                return h["effort"]
            f = (target - prev["recall"]) / (h["recall"] - prev["recall"])
            return prev["effort"] + f * (h["effort"] - prev["effort"])
        prev = h
    return None


# ----------------------------------------------------------------------------- many sessions
def evaluate(X: np.ndarray, labels: np.ndarray, classes: Sequence[str], recipe: LoopRecipe = DEFAULT_LOOP,
             starters: int = 5, seed: int = 0, graph: Any = None, log: Callable[[str], None] | None = None
             ) -> list[dict[str, Any]]:
    """Run sessions for every class in `classes` x `starters` starters; one row per session."""
    from .propagation import LabelPropagation

    X = np.asarray(X, dtype=np.float32)
    labels = np.asarray(labels).astype(str)
    n = len(X)
    recipe = recipe.scaled(n)
    Xu = _unit(X)
    if graph is None and recipe.head_weight < 1:
        graph = LabelPropagation.from_embeddings(X, k=recipe.graph_k, alpha=recipe.alpha,
                                                 background=recipe.background, whiten=recipe.whiten)
    split = split_classes(labels)
    rows = []
    t0 = time.perf_counter()
    for cls in classes:
        truth = labels == cls
        for i, start in enumerate(starters_for(labels, cls, starters, seed)):
            t = time.perf_counter()
            hist = session(X, truth, start, recipe, graph=graph, seed=seed + i, Xu=Xu)
            rows.append({"class": cls, "split": "dev" if cls in split["dev"] else "test", "starter": int(start),
                         "positives": int(truth.sum()), "rounds": len(hist), "points": at_points(hist, recipe.points, n),
                         "effort_to_target": effort_to_recall(hist), "final_effort": hist[-1]["effort"],
                         "seconds": round(time.perf_counter() - t, 3),
                         "curve": [{k: round(v, 4) for k, v in h.items() if k != "seconds"} for h in hist]})
        if log:
            log(f"  {cls}: {starters} sessions ({time.perf_counter() - t0:.0f} s)")
    return rows


def summarize_models(rows: list[dict[str, Any]], points: Sequence[float] = POINTS) -> dict[str, Any]:
    """`summarize` over every session; when the sessions ran on several SSL models, also each model's split
    means (`by_ssl_seed`) and, per class, each model's recall at 7.8% (`recall@7.8_by_ssl_seed`): one model's
    recall per class is noisy, so the models are shown side by side."""
    res = summarize(rows, points)
    models = sorted({r.get("ssl_seed", 0) for r in rows})
    if len(models) > 1:
        each = {str(m): summarize([r for r in rows if r.get("ssl_seed", 0) == m], points) for m in models}
        res["by_ssl_seed"] = {m: {k: v for k, v in s.items() if k != "per_class"} for m, s in each.items()}
        for row in res["per_class"]:
            row["recall@7.8_by_ssl_seed"] = {m: next((c.get("recall@7.8") for c in s["per_class"]
                                                      if c["class"] == row["class"]), None) for m, s in each.items()}
    return res


def _median_effort(values: list[float | None]) -> float | None:
    """Median with 'never reached' (None) counted as +inf; None again when the median itself is never."""
    if not values:
        return None
    m = float(np.median([math.inf if v is None else v for v in values]))
    return round(m, 3) if math.isfinite(m) else None


def summarize(rows: list[dict[str, Any]], points: Sequence[float] = POINTS) -> dict[str, Any]:
    """Means over sessions at each effort point, per split and overall, plus a per-class table."""
    def block(sel: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"sessions": len(sel), "classes": len({r["class"] for r in sel})}
        for p in points:
            key = f"{p:.1f}"
            got = [r["points"][key] for r in sel if r["points"].get(key)]
            out[key] = None if not got else {
                "recall": round(float(np.mean([g["recall"] for g in got])), 4),
                "f1": round(float(np.mean([g["f1"] for g in got])), 4),
                "fp_share": round(float(np.mean([1 - g["precision"] for g in got])), 4),
                "effort": round(float(np.mean([g["effort"] for g in got])), 3)}
        per_class = {}
        for cls in sorted({r["class"] for r in sel}):
            cr = [r for r in sel if r["class"] == cls]
            per_class[cls] = _median_effort([r["effort_to_target"] for r in cr])
        out["median_effort_to_target"] = _median_effort(list(per_class.values()))
        out["classes_reaching_target"] = sum(v is not None for v in per_class.values())
        return out

    res: dict[str, Any] = {}
    for name in ("dev", "test"):
        sel = [r for r in rows if r["split"] == name]
        if sel:
            res[name] = block(sel)
    res["all"] = block(rows)
    table = []
    for cls in sorted({r["class"] for r in rows}):
        cr = [r for r in rows if r["class"] == cls]
        row: dict[str, Any] = {"class": cls, "split": cr[0]["split"], "sessions": len(cr)}
        for p in points:
            got = [r["points"][f"{p:.1f}"] for r in cr if r["points"].get(f"{p:.1f}")]
            row[f"recall@{p:.1f}"] = round(float(np.mean([g["recall"] for g in got])), 4) if got else None
            row[f"f1@{p:.1f}"] = round(float(np.mean([g["f1"] for g in got])), 4) if got else None
        row["median_effort_to_target"] = _median_effort([r["effort_to_target"] for r in cr])
        table.append(row)
    res["per_class"] = table
    return res


# ----------------------------------------------------------------------------- embeddings
def embedding_quality(X: np.ndarray, labels: np.ndarray, classes: Sequence[str], k: int = 10,
                      seed: int = 0) -> dict[str, float]:
    """kNN top-1 (among `classes` only) and retrieval precision P@k (queries of `classes` against the
    whole pool): the two embedding numbers the lever table reports."""
    from .evaluation import holdout_split, knn_top1, retrieval_precision

    labels = np.asarray(labels).astype(str)
    mask = np.isin(labels, list(classes))
    sub = np.flatnonzero(mask)
    split = holdout_split(labels[sub], seed=seed)
    top1 = math.nan
    if split is not None:
        ref, qry, y, _ = split
        top1 = knn_top1(X[sub[ref]], y[ref], X[sub[qry]], y[qry])
    return {"knn_top1": round(float(top1), 4), f"p_at_{k}": round(retrieval_precision(X, labels, k, queries=sub), 4)}


def folder_workspace(folder: str | os.PathLike, workdir: str | os.PathLike, progress: bool = False):
    """A workspace over `folder` (every image one chip, read in place; class = parent folder), kept in
    `workdir/<folder name>/ws` so a second run reuses chips, models and embeddings."""
    from .sources import FolderSource
    from .workspace import Workspace

    src = FolderSource(folder)
    root = Path(workdir).expanduser().resolve() / src.root.name / "ws"
    if root.is_relative_to(src.root):  # its plots and chips would become images of the folder's next read
        raise CuratorError(f"the workspace {root} would lie inside the image folder {src.root}",
                           "pass a --workdir outside the image folder")
    ws = Workspace.open_or_create(root)
    roots = {s.get("root") for s in ws._meta.get("sources", [])}
    if roots and roots != {str(src.root)}:
        raise CuratorError(f"{root} holds chips of {sorted(r for r in roots if r)}, not {src.root}",
                           "use another --workdir for this folder")
    if len(ws) == 0:
        res = ws.ingest(src, size=None, progress=progress)
        if res.added == 0:
            raise CuratorError(f"no image of {src.root} could be read ({len(res.skipped)} skipped)",
                               "check the files are RGB images (see the warnings above)")
    labels = ws.manifest["label"].to_numpy()
    known = {str(v) for v in labels if v is not None and v == v}
    if len(known) < 2:
        raise CuratorError(f"{src.root} has {len(known)} class subfolder(s) with images; the protocol needs >= 2",
                           "arrange the images as DIR/<class>/<image> (the folder names are the ground truth)")
    return ws


def embeddings_for(ws, recipe: SSLRecipe = DEFAULT_SSL, progress: bool = False,
                   log: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Train the SSL model (labels never used) and embed every chip; cached in the workspace."""
    from .embed import concat_embeddings, embed, load_embeddings, save_embeddings
    from .train import train_ssl

    n = len(ws)
    model_run, run = recipe.model_run(n), recipe.embedding_run(n)
    base = model_run + ("-tta" if recipe.tta else "")
    t0, c0 = time.perf_counter(), cpu_seconds()
    info = {"model_run": model_run, "embedding_run": run, "epochs": recipe.epochs(n), **asdict(recipe)}
    info["augment"] = dict(recipe.augment)
    summary = train_ssl(ws, run=model_run, method=recipe.method, backbone=recipe.backbone,
                        image_size=recipe.image_size, epochs=recipe.epochs(n), seed=recipe.seed, knn=False,
                        augment=dict(recipe.augment) or None, progress=progress)
    t1, c1 = time.perf_counter(), cpu_seconds()
    embed(ws, base, model_run=model_run, tta=recipe.tta, progress=progress)
    if recipe.scales:  # one vector per scale, each unit length, side by side: cosine = mean of the scales'
        names = [base]
        for size in recipe.scales:
            embed(ws, f"{model_run}-{size}px", model_run=model_run, image_size=size, progress=progress)
            names.append(f"{model_run}-{size}px")
        X = concat_embeddings([load_embeddings(ws, r) for r in names])
        save_embeddings(ws, run, X, model_run=model_run, scales=[recipe.image_size, *recipe.scales], tta=recipe.tta,
                        parts=names)
    t2, c2 = time.perf_counter(), cpu_seconds()
    info.update(train_seconds=round(t1 - t0, 1), embed_seconds=round(t2 - t1, 1),
                train_cpu_seconds=round(c1 - c0, 1), embed_cpu_seconds=round(c2 - c1, 1),
                trained_now=not summary.get("skipped"), images_per_s=summary.get("images_per_s"))
    if log:
        log(f"embeddings {run}: train {t1 - t0:.0f} s, embed {t2 - t1:.0f} s")
    return np.asarray(load_embeddings(ws, run), dtype=np.float32), info


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (data-loader workers), user + system: on a shared
    machine the wall time measures the other processes, this scales to an idle one."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ----------------------------------------------------------------------------- the command's kernel
def machine(threads: int | None = None) -> dict[str, Any]:
    """Where a result was measured (it goes in every results JSON)."""
    import faiss
    import torch

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
            "faiss": faiss.__version__, "cuda": torch.cuda.is_available(), "commit": commit, "dirty": dirty}


QUICK_SSL = replace(DEFAULT_SSL, views=1, max_epochs=1)


def run_protocol(folder: str | os.PathLike, workdir: str | os.PathLike, quick: bool = False,
                 ssl: SSLRecipe | None = None, loop: LoopRecipe | None = None, starters: int | None = None,
                 seed: int = 0, log: Callable[[str], None] | None = None, progress: bool = False,
                 ssl_seeds: int = 1) -> dict[str, Any]:
    """The whole protocol on a folder of class subfolders: ingest, SSL, embed, sessions; the results dict.

    `quick` is a smoke run (1-epoch SSL, 1 starter per class): it checks the pipeline, not quality.
    `ssl_seeds` > 1 trains that many SSL models (the recipe's seed, + 1, ...) and runs every session on
    each: one model's per-class recall moves with its training draw, the mean over models does less.
    """
    if int(ssl_seeds) != ssl_seeds or ssl_seeds < 1:
        raise CuratorError(f"ssl_seeds={ssl_seeds!r} must be an integer >= 1", "pass 1 (one SSL model) or e.g. 3")
    t0 = time.perf_counter()
    ssl = ssl or (QUICK_SSL if quick else DEFAULT_SSL)
    loop = loop or DEFAULT_LOOP
    ws = folder_workspace(folder, workdir, progress=progress)
    labels = ws.manifest["label"].astype(str).to_numpy()
    every = sorted(set(labels) - {"None", "nan"})
    split = split_classes(every)  # over every class folder, so a skipped one never moves the others' split
    counts = {c: int(np.count_nonzero(labels == c)) for c in every}
    small = {c: k for c, k in counts.items() if k < MIN_CLASS_IMAGES}
    classes = [c for c in every if c not in small]
    if not classes:
        raise CuratorError(f"no class of {folder} has {MIN_CLASS_IMAGES} images or more "
                           f"({', '.join(f'{c}: {k}' for c, k in counts.items())})",
                           f"put at least {MIN_CLASS_IMAGES} images in each class subfolder")
    if small and log:
        log(f"no sessions for {len(small)} class(es) with fewer than {MIN_CLASS_IMAGES} images (their images stay in "
            f"the pool as negatives): " + ", ".join(f"{c} ({k})" for c, k in small.items()))
    starters = starters or (1 if quick else starters_per_class(len(ws), len(classes), loop))
    if log:
        log(f"{Path(folder).name}: {len(ws)} chips, {len(every)} classes "
            f"({len(split['dev'])} dev, {len(split['test'])} test)")
    rows, infos, quality = [], [], []
    t_emb = t_ses = 0.0
    for m in range(int(ssl_seeds)):
        ta = time.perf_counter()
        X, info = embeddings_for(ws, replace(ssl, seed=ssl.seed + m), progress=progress, log=log)
        tb = time.perf_counter()
        for r in evaluate(X, labels, classes, loop, starters=starters, seed=seed, log=log):
            rows.append({**r, "ssl_seed": ssl.seed + m})
        t_emb, t_ses = t_emb + tb - ta, t_ses + time.perf_counter() - tb
        infos.append(info)
        quality.append({s: embedding_quality(X, labels, split[s], seed=seed) for s in ("dev", "test") if split[s]})
    scaled = loop.scaled(len(ws))
    return {"benchmark": "active_protocol", "dataset": Path(folder).resolve().name, "folder": str(Path(folder).resolve()),
            "quick": quick, "chips": len(ws), "classes": classes, "split": split, "starters_per_class": starters,
            "classes_without_sessions": small,
            "seed": seed, "ssl": infos[0], "ssl_seeds": [i["seed"] for i in infos], "ssl_runs": infos,
            "loop": {**asdict(scaled), "points": list(scaled.points)},
            "embedding_quality": quality[0], "embedding_quality_by_ssl_seed": quality,
            "summary": summarize_models(rows, scaled.points), "sessions": rows,
            "seconds": {"embeddings": round(t_emb, 1), "sessions": round(t_ses, 1),
                        "total": round(time.perf_counter() - t0, 1)},
            "machine": machine()}


def report(result: dict[str, Any]) -> str:
    """The result as the markdown tables the command prints (and the docs generator reuses)."""
    points = result["loop"]["points"]
    lines = [summary_table(result["summary"], points), "",
             per_class_table(result["summary"]["per_class"], points)]
    return "\n".join(lines)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "never" if pct else "-"
    return f"{v:.1f}%" if pct else f"{v:.3f}"


def summary_table(summary: dict[str, Any], points: Sequence[float]) -> str:
    """One row per split (dev, test, all): recall / F1 / FP share at each effort point, median effort
    to 0.90 recall over classes, and the worst class's recall at 7.8%."""
    head = ["classes", "sessions"]
    for p in points:
        head += [f"recall at {p:.1f}%", f"F1 at {p:.1f}%", f"FP share at {p:.1f}%"]
    head += [f"median effort to recall {TARGET_RECALL:.2f}", "classes reaching it"]
    out = ["| split | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name in ("dev", "test", "all"):
        b = summary.get(name)
        if not b:
            continue
        cells = [str(b["classes"]), str(b["sessions"])]
        for p in points:
            m = b.get(f"{p:.1f}") or {}
            cells += [_fmt(m.get("recall")), _fmt(m.get("f1")), _fmt(m.get("fp_share"))]
        cells += [_fmt(b["median_effort_to_target"], pct=True), f"{b['classes_reaching_target']}/{b['classes']}"]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def per_class_table(rows: list[dict[str, Any]], points: Sequence[float]) -> str:
    """One row per class, worst recall at 7.8% (or the middle effort point) first."""
    key = "7.8" if any(abs(p - 7.8) < 1e-9 for p in points) else f"{points[len(points) // 2]:.1f}"
    ordered = sorted(rows, key=lambda r: (r.get(f"recall@{key}") is None, r.get(f"recall@{key}") or 0.0))
    head = ["class", "split"] + [f"recall at {p:.1f}%" for p in points] + [f"F1 at {key}%",
                                                                           f"median effort to recall {TARGET_RECALL:.2f}"]
    models = [sorted(r["recall@7.8_by_ssl_seed"], key=int) for r in rows if r.get("recall@7.8_by_ssl_seed")]
    if models:
        head.append("recall at 7.8% by SSL model (seed " + " / ".join(models[0]) + ")")
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in ordered:
        cells = [r["class"], r["split"]] + [_fmt(r.get(f"recall@{p:.1f}")) for p in points]
        cells += [_fmt(r.get(f"f1@{key}")), _fmt(r.get("median_effort_to_target"), pct=True)]
        if models:
            by = r.get("recall@7.8_by_ssl_seed") or {}
            cells.append(" / ".join(_fmt(by.get(m)) for m in models[0]))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
