"""Active learning from one reference image: seed set -> rounds of fit, score, pick, label.

The Curator protocol: nearest neighbours of a reference chip plus random chips form a seed
set; a classifier head on frozen embeddings is refitted each round (warm-started) on every
label so far, scores every chip in one pass, and picks the next batch to label. Labels come
from the label store (written by the SwipeLabeler widget, `curator label`, or an `Oracle`),
so a loop can stop at any point and resume after a kernel restart: its state lives in
`<workspace>/active/<name>/` and the labels in `labels.sqlite`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import acquisition
from .atomic import atomic_path, write_json
from .errors import CuratorError
from .labels import TRAIN_SOURCES, UNSURE, LabelStore

if TYPE_CHECKING:
    from .heads import ClassifierHead
    from .workspace import Workspace

STATE_VERSION = 1
SCALER_SAMPLE = 65_536  # rows used to fix the feature standardization once per loop


# ----------------------------------------------------------------------------- the seed set
@dataclass
class SeedSet:
    """What `seed_set` queued: the reference chips, their neighbours (rank order), random chips."""

    reference: list[int]
    neighbours: list[int]
    random: list[int]
    queued: int = 0
    reference_image: str | None = None
    by_class: dict[str, list[int]] | None = None  # multi-class seeds: label -> its reference and neighbours

    @property
    def ids(self) -> list[int]:
        """Every chip of the seed set, deduplicated: references, neighbours, then random ones."""
        return list(dict.fromkeys([*self.reference, *self.neighbours, *self.random]))


def _parse_reference(ws: "Workspace", reference: Any) -> tuple[list[int], Any]:
    """Chip id(s) -> (ids, None); an image file or HxWx3 array -> ([], image)."""
    if isinstance(reference, (str, os.PathLike)):
        p = Path(reference).expanduser()
        if p.is_file():
            return [], str(p)
        if str(reference).strip().lstrip("-").isdigit():
            reference = int(str(reference).strip())
        else:
            raise CuratorError(f"reference {str(reference)!r} is neither a chip id nor an existing image file",
                               "pass a chip id from ws.manifest['id'] or the path of an image")
    if isinstance(reference, np.ndarray) and reference.ndim == 3:
        return [], reference
    ids = np.atleast_1d(np.asarray(reference))
    if ids.size == 0 or ids.dtype.kind not in "iu":
        raise CuratorError(f"reference {reference!r} is not a chip id, a list of chip ids, or an image",
                           "pass e.g. reference=123, reference=[1, 2, 3] or reference='query.png'")
    n = len(ws)
    bad = [int(i) for i in ids if not 0 <= int(i) < n]
    if bad:
        raise CuratorError(f"reference chip id(s) {bad[:5]} are not in this workspace (ids are 0..{n - 1})",
                           "pick reference chips from ws.manifest['id']")
    return list(dict.fromkeys(int(i) for i in ids)), None


def seed_set(ws: "Workspace", run: str, reference: Any, k: int = 64, r: int = 32, store: LabelStore | None = None,
             task: str = "default", seed: int = 0, filters: dict[str, Any] | None = None,
             label_reference: bool = True, queue: bool = True, source: str = "seed",
             pool: Sequence[int] | np.ndarray | None = None) -> SeedSet:
    """The published seed set: the `k` nearest neighbours of the reference chip(s) or image plus `r`
    random chips (so the first labels hold negatives too), deduplicated and queued for labelling.

    Reference chips are known examples, so with `label_reference` they are labelled with the
    positive class (source "seed") in a binary store. With `pool` (chip ids), neighbours and
    random chips come from the pool only. Several phenomena at once: `reference={label: ref}`
    (one reference, or list of chip ids, per class of the store's label set) gathers `k`
    neighbours per class and labels each reference with its class.
    """
    from .index import build_index, search

    if int(k) < 0 or int(r) < 0 or int(k) + int(r) == 0:
        raise CuratorError(f"seed set sizes k={k}, r={r} must be non-negative and not both zero",
                           "use the published k=64 neighbours and r=32 random chips")
    if isinstance(reference, dict):
        return _multi_seed_set(ws, run, reference, k, r, store, task, seed, filters, label_reference, queue,
                               source, pool)
    ref_ids, image = _parse_reference(ws, reference)
    n = len(ws)
    pool_ids = None if pool is None else np.unique(np.asarray(pool, dtype=np.int64))
    neighbours: list[int] = []
    if int(k) > 0:
        if not ws.index_path(run).exists():  # first search of this run: build its index once
            build_index(ws, run, progress=False)
        if pool_ids is not None:
            given = (filters or {}).get("ids")
            allowed = pool_ids if given is None else np.intersect1d(pool_ids, np.asarray(given, dtype=np.int64))
            filters = {**(filters or {}), "ids": allowed}
        res = search(ws, run, ids=ref_ids or None, image=image, k=int(k), mode="mean", filters=filters,
                     exclude=ref_ids or None)
        neighbours = [int(i) for i in np.asarray(res.ids).tolist() if int(i) >= 0 and int(i) not in ref_ids]
    random_ids = _random_chips(n, pool_ids, set(ref_ids) | set(neighbours), int(r), seed)
    result = SeedSet(reference=ref_ids, neighbours=neighbours, random=random_ids,
                     reference_image=image if isinstance(image, str) else None)
    store = store if store is not None else LabelStore(ws, task=task)
    if label_reference and ref_ids and store.binary:
        store.add_many(ref_ids, store.classes[1], source="seed")
    if queue:
        result.queued = store.queue_add([*neighbours, *random_ids], source=source)
    return result


def _random_chips(n: int, pool_ids: np.ndarray | None, taken: set[int], r: int, seed: int) -> list[int]:
    """`r` random chips of the workspace (or pool) outside `taken`, by rejection sampling: O(r), never O(N)."""
    rng = np.random.default_rng(seed)
    space = n if pool_ids is None else len(pool_ids)
    taken = set(taken)
    want = min(r, space - len(taken if pool_ids is None else taken.intersection(pool_ids.tolist())))
    out: list[int] = []
    while len(out) < want:
        draws = rng.integers(0, space, size=2 * (want - len(out)) + 8)
        for c in (draws if pool_ids is None else pool_ids[draws]).tolist():
            if c not in taken:
                taken.add(c)
                out.append(int(c))
                if len(out) == want:
                    break
    return out


def _multi_seed_set(ws: "Workspace", run: str, references: dict[str, Any], k: int, r: int,
                    store: LabelStore | None, task: str, seed: int, filters: dict[str, Any] | None,
                    label_reference: bool, queue: bool, source: str, pool: Any) -> SeedSet:
    """One seed set for several classes: each class's reference and its k neighbours, then r random chips."""
    store = store if store is not None else LabelStore(ws, label_set=list(references), task=task)
    unknown = [c for c in references if c not in store.classes]
    if unknown or len(references) < 2:
        raise CuratorError(f"references for {unknown or list(references)} do not name two or more classes of the "
                           f"label set {list(store.classes)} of task {store.task!r}",
                           "pass reference={label: chip_id, ...} with labels of the store, e.g. "
                           "ActiveLoop(ws, run, label_set=('forest', 'river', 'beach'))")
    parts: dict[str, SeedSet] = {}
    for label, ref in references.items():
        if int(k) > 0:
            parts[label] = seed_set(ws, run, ref, k=k, r=0, store=store, filters=filters, label_reference=False,
                                    queue=False, pool=pool)
        else:
            parts[label] = SeedSet(reference=_parse_reference(ws, ref)[0], neighbours=[], random=[])
    refs = list(dict.fromkeys(c for p in parts.values() for c in p.reference))
    neighbours = list(dict.fromkeys(c for p in parts.values() for c in p.neighbours if c not in refs))
    pool_ids = None if pool is None else np.unique(np.asarray(pool, dtype=np.int64))
    result = SeedSet(reference=refs, neighbours=neighbours,
                     random=_random_chips(len(ws), pool_ids, set(refs) | set(neighbours), int(r), seed),
                     by_class={label: [*p.reference, *p.neighbours] for label, p in parts.items()})
    if label_reference:
        for label, p in parts.items():
            if p.reference:
                store.add_many(p.reference, label, source="seed")
    if queue:
        result.queued = store.queue_add([*result.neighbours, *result.random], source=source)
    return result


# ----------------------------------------------------------------------------- the oracle
class Oracle:
    """Answers label requests from a ground-truth manifest column (benchmarks, tests, demos).

    Binary: `Oracle(ws, positive="forest")` (column value equal to it) or
    `Oracle(ws, column="land_fraction", positive=lambda v: v >= 0.5)`; the answer is the
    store's positive or negative class. Multi-class: the column values are the labels
    (or pass `mapping={value: label}`).
    """

    def __init__(self, ws: "Workspace", column: str = "label", positive: Any = None,
                 mapping: dict[Any, str] | None = None, annotator: str = "oracle"):
        if column not in ws.manifest.columns:
            raise CuratorError(f"the manifest has no column {column!r} to answer from",
                               f"use one of {sorted(ws.manifest.columns)}")
        self.ws, self.column, self.positive, self.mapping, self.annotator = ws, column, positive, mapping, annotator
        self._values = ws.manifest[column].to_numpy()
        self._positive: np.ndarray | None = None

    def is_positive(self) -> np.ndarray:
        """Boolean ground truth for every chip (binary tasks); computed once per oracle."""
        if self.positive is None:
            raise CuratorError("this oracle has no positive class", "construct it with positive=VALUE or a function")
        if self._positive is None:
            if callable(self.positive):
                self._positive = np.fromiter((bool(self.positive(v)) if v is not None and v == v else False
                                              for v in self._values), dtype=bool, count=len(self._values))
            else:
                self._positive = np.asarray(self._values == self.positive, dtype=bool)
        return self._positive

    def truth(self, store: LabelStore) -> np.ndarray:
        """The label every chip should get in `store`'s label set (object array)."""
        if self.positive is not None:
            if not store.binary:
                raise CuratorError("a positive=... oracle answers binary tasks only",
                                   "for multi-class tasks pass mapping= or use a column of label names")
            return np.where(self.is_positive(), store.classes[1], store.classes[0]).astype(object)
        values = [self.mapping.get(v) if self.mapping else v for v in self._values]
        bad = sorted({str(v) for v in values if v not in store.classes})
        if bad:
            raise CuratorError(f"column {self.column!r} holds values {bad[:5]} outside the label set "
                               f"{list(store.classes)}", "pass mapping={value: label} or a positive=... rule")
        return np.asarray(values, dtype=object)

    def answer(self, store: LabelStore, ids: Sequence[int]) -> int:
        """Label `ids` in `store` (source 'oracle') in one transaction; returns how many."""
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        truth = self.truth(store)
        return store.add_many(ids, [truth[i] for i in ids], annotator=self.annotator, source="oracle")


# ----------------------------------------------------------------------------- metrics helpers
def binary_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of boolean predictions against boolean truth."""
    tp = float(np.count_nonzero(pred & truth))
    fp = float(np.count_nonzero(pred & ~truth))
    fn = float(np.count_nonzero(~pred & truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def macro_f1(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    return float(np.mean([binary_scores(pred == c, truth == c)["f1"] for c in range(n_classes)]))


def shift_prior(p: np.ndarray, to_prior: float, from_prior: float = 0.5) -> np.ndarray:
    """Positive-class probabilities re-expressed for another class prior (Bayes' rule on the odds).

    A class-weighted head answers as if both classes were equally common (from_prior=0.5);
    shifting to the labelled share undoes the weighting, giving the probabilities an unweighted
    head would report. Their sum over the unlabelled chips estimates the positives left: on the
    UC Merced protocol this was the best of the estimators tried (mean absolute error ~35% of
    the true count with SSL features, where the EM prior estimate of Saerens et al. was off by
    ~80%: the labelled chips are picked, not sampled, so the pool-level EM is misled).
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    to_prior = min(max(float(to_prior), 1e-6), 1 - 1e-6)
    ratio = (to_prior / (1 - to_prior)) / (from_prior / (1 - from_prior))
    return p * ratio / (p * ratio + (1 - p))


def _holdout_mask(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stable pseudo-random split by chip id (splitmix64), so a chip stays on its side forever."""
    if fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(1_000_000)).astype(np.float64) / 1e6 < fraction


# ----------------------------------------------------------------------------- the loop
DEFAULTS: dict[str, Any] = {
    "head": "logistic", "strategy": "entropy", "diversity": None, "batch_size": 64, "budget": 0.05,
    "max_rounds": None, "stability": 0.002, "patience": 2, "holdout": 0.0, "pool_factor": 10,
    "threshold": 0.5, "seed": 0, "head_options": {},
}


@dataclass
class Round:
    """One round's outcome: the batch queued for labelling and the metrics after the fit."""

    round: int
    batch: list[int]
    metrics: dict[str, Any]
    stopped: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class RoundData:
    """The labels one round learns from, read once from the store.

    `seen` (every chip of the pool with a training label, unsure too) is never asked again;
    `ids`/`y` are the labelled chips with a class (sorted ids, class indices), `held` marks the
    stable held-out share of them. Training uses every label of the task, in the pool or not.
    """

    round: int
    seen: np.ndarray
    ids: np.ndarray
    y: np.ndarray
    held: np.ndarray
    unsure: int

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids[~self.held], self.y[~self.held]

    @property
    def holdout(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids[self.held], self.y[self.held]


class ActiveLoop:
    """Human-in-the-loop (or oracle-in-the-loop) active learning over one embedding run.

    `loop = ActiveLoop(ws, "simclr")`; `loop.seed(reference=123)`; label the queue; then
    `loop.step()` once per round. State (config, per-round metrics, the head, the last
    scores) is saved in `<workspace>/active/<name>/` after every round; constructing the
    loop again with the same name resumes it. Options left as None keep their stored
    value (or the default for a new loop).

    `pool=ids` runs the loop on a sub-pool: selection, scoring, metrics, the budget and the
    curated set cover those chips only. `head` is a built-in kind ('logistic', 'mlp'), a kind
    registered with `heads.register_head`, or any object with `fit(X, y, ids=)` and
    `predict_proba(X, ids=)` (`heads.ClassifierHead`). `client=` (a distributed.Client, a scheduler
    address or "local") scores every chip on a Dask cluster's workers (whole-workspace loops only).
    """

    def __init__(self, ws: "Workspace", run: str, name: str = "default", task: str | None = None,
                 store: LabelStore | None = None, *, head: "str | ClassifierHead | None" = None,
                 strategy: str | None = None, diversity: str | None = None, batch_size: int | None = None,
                 budget: float | None = None, max_rounds: int | None = None, stability: float | None = None,
                 patience: int | None = None, holdout: float | None = None, pool_factor: int | None = None,
                 threshold: float | None = None, seed: int | None = None, head_options: dict[str, Any] | None = None,
                 device: str | None = "auto", label_set: Sequence[str] | None = None,
                 pool: Sequence[int] | np.ndarray | None = None, client: Any = None):
        from .heads import ClassifierHead
        from .workspace import _check_run

        self.ws, self.run_name, self.name = ws, _check_run(run), _check_run(name)
        self.dir = ws.root / "active" / self.name
        self.device = device
        self.client = client  # a Dask cluster to score on (see `score`); None: $CURATOR_DASK_SCHEDULER / current Client
        state = self._read_state()
        if state is not None and state["run"] != run:
            raise CuratorError(f"active loop {name!r} was built on embedding run {state['run']!r}, not {run!r}",
                               f"use ActiveLoop(ws, {state['run']!r}, name={name!r}) or a new name")
        task = task or (state["task"] if state else self.name)
        if state is not None and state["task"] != task:
            raise CuratorError(f"active loop {name!r} labels task {state['task']!r}, not {task!r}",
                               "omit task= to resume it, or use a new loop name")
        self.store = store if store is not None else LabelStore(ws, label_set=label_set, task=task)
        if self.store.task != task:
            raise CuratorError(f"the label store is for task {self.store.task!r} but the loop uses {task!r}",
                               "pass LabelStore(ws, task=...) with the loop's task")
        self._head: Any = None
        if head is not None and not isinstance(head, str):
            if not isinstance(head, ClassifierHead):
                raise CuratorError(f"head={type(head).__name__} has no fit(X, y, ids=...) and predict_proba(X, ids=...)",
                                   "pass a head kind ('logistic', 'mlp', or one registered with register_head) "
                                   "or an object with those two methods")
            self._head, head = head, str(getattr(head, "kind", None) or type(head).__name__)
        given = {"head": head, "strategy": strategy, "diversity": diversity, "batch_size": batch_size,
                 "budget": budget, "max_rounds": max_rounds, "stability": stability, "patience": patience,
                 "holdout": holdout, "pool_factor": pool_factor, "threshold": threshold, "seed": seed,
                 "head_options": head_options}
        config = dict(DEFAULTS) if state is None else {**DEFAULTS, **state["config"]}
        config.update({k: v for k, v in given.items() if v is not None})
        self.config = _check_config(config, self.store, task)
        self.state: dict[str, Any] = state or {"version": STATE_VERSION, "run": run, "task": task, "round": 0,
                                               "history": [], "stopped": None, "seed_set": None,
                                               "created": time.time()}
        self.state["config"] = config
        self.pool = self._init_pool(pool)
        self._X: Any = None

    # ------------------------------------------------------------------ persistence
    def _read_state(self) -> dict[str, Any] | None:
        path = self.dir / "state.json"
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CuratorError(f"active-learning state {path} is corrupt ({e})",
                               "restore it, or start a new loop name; labels are safe in labels.sqlite") from None
        if state.get("version", 0) > STATE_VERSION:
            raise CuratorError(f"{path} was written by a newer curator_widgets",
                               "upgrade: pip install -U curator-widgets")
        return state

    def _save_state(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.dir / "state.json", self.state)  # the commit point of a round: written last

    def _save_array(self, name: str, arr: np.ndarray) -> None:
        with atomic_path(self.dir / name) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.save would otherwise append ".npy" to the name
                np.save(f, arr)

    def _load_array(self, name: str) -> np.ndarray | None:
        path = self.dir / name
        return np.load(path) if path.exists() else None

    def _init_pool(self, pool: Sequence[int] | np.ndarray | None) -> np.ndarray | None:
        """The sub-pool (sorted unique ids, kept in pool.npy so a resumed loop keeps it), or None for all chips."""
        stored = self._load_array("pool.npy")
        if pool is None:
            return stored
        ids = np.unique(np.asarray(pool).reshape(-1))
        if ids.dtype.kind not in "iu" or ids.size == 0:
            raise CuratorError(f"pool= must be a non-empty list of chip ids, got {np.asarray(pool)[:3].tolist()}",
                               "pass manifest ids, e.g. pool=ws.manifest['id'][mask]")
        n = len(self.ws)
        if ids[0] < 0 or ids[-1] >= n:
            raise CuratorError(f"pool ids {ids[(ids < 0) | (ids >= n)][:5].tolist()} are not in this workspace "
                               f"(ids are 0..{n - 1})", "pass ids from ws.manifest['id']")
        ids = ids.astype(np.int64)
        if stored is not None and not np.array_equal(stored, ids):
            raise CuratorError(f"active loop {self.name!r} runs on another pool ({len(stored)} chips)",
                               "omit pool= to resume it, or use a new loop name")
        if stored is None and self.state["round"] > 0:
            raise CuratorError(f"active loop {self.name!r} already ran {self.state['round']} round(s) on every chip",
                               "use a new loop name for a sub-pool")
        if stored is None:
            self._save_array("pool.npy", ids)
        return ids

    # ------------------------------------------------------------------ data
    @property
    def embeddings(self) -> Any:
        """The run's embeddings (float16 memmap, row i = chip id i)."""
        if self._X is None:
            from .embed import load_embeddings

            self._X = load_embeddings(self.ws, self.run_name)  # checks dtype, shape and row count
        return self._X

    @property
    def classes(self) -> tuple[str, ...]:
        return self.store.classes

    @property
    def positive(self) -> int:
        """Index of the positive class (binary tasks: the second label, e.g. 'positive')."""
        return 1 if self.store.binary else -1

    def pool_mask(self) -> np.ndarray:
        """Boolean [N]: the chips this loop selects from, scores and measures (all of them without a pool)."""
        n = len(self.ws)
        if self.pool is None:
            return np.ones(n, dtype=bool)
        mask = np.zeros(n, dtype=bool)
        mask[self.pool] = True
        return mask

    def _scaler(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        path = self.dir / "scaler.npz"
        if path.exists():
            z = np.load(path)
            if z["mean"].shape[0] == X.shape[1]:
                return z["mean"], z["std"]
        m = X.shape[0] if self.pool is None else len(self.pool)
        rows = np.random.default_rng(self.config["seed"]).choice(m, min(m, SCALER_SAMPLE), replace=False)
        rows = np.sort(rows if self.pool is None else self.pool[rows])
        sample = np.asarray(X[rows], dtype=np.float32)
        mean, std = sample.mean(0), sample.std(0)
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mean=mean, std=std)
        return mean, std

    def head(self) -> "ClassifierHead":
        """The classifier head: the object passed as head=, else one of the configured kind (a built-in
        head is loaded from the last round, so fitting continues from it)."""
        from .heads import KINDS, Head, make_head

        if self._head is None:
            kind, n_classes = self.config["head"], len(self.classes)
            path = self.dir / "head.pt"
            if kind in KINDS and path.exists():
                self._head = Head.load(path, device=self.device)
                if self._head.kind != kind or self._head.n_classes != n_classes:
                    self._head = None
            if self._head is None:
                self._head = make_head(kind, n_classes, seed=int(self.config["seed"]), device=self.device,
                                       options=self.config.get("head_options"))
        return self._head

    # ------------------------------------------------------------------ seed
    def seed(self, reference: Any, k: int = 64, r: int = 32, filters: dict[str, Any] | None = None,
             force: bool = False) -> SeedSet:
        """Build and queue the seed set once per loop (again only with force=True); within the pool.
        `reference={label: chip}` seeds a multi-class task, one reference per class."""
        if self.state.get("seed_set") and not force:
            s = self.state["seed_set"]
            return SeedSet(reference=s["reference"], neighbours=s["neighbours"], random=s["random"],
                           queued=0, reference_image=s.get("reference_image"), by_class=s.get("by_class"))
        result = seed_set(self.ws, self.run_name, reference, k=k, r=r, store=self.store, seed=int(self.config["seed"]),
                          filters=filters, pool=self.pool)
        self.state["seed_set"] = {**asdict(result), "k": k, "r": r, "time": time.time()}
        self._save_state()
        return result

    # ------------------------------------------------------------------ a round
    def step(self, oracle: Oracle | None = None, force: bool = False) -> Round:
        """One round: fit the head on every label so far and score the pool, measure, check the stopping
        rules, select the next batch and persist it (labelled at once by `oracle` when given)."""
        if self.state.get("stopped") and not force:
            last = self.state["history"][-1] if self.state["history"] else {}
            return Round(round=self.state["round"], batch=[], metrics=last, stopped=self.state["stopped"])
        self._collect(oracle, force)
        t = [time.perf_counter()]
        data = self.labels()
        t.append(time.perf_counter())
        fitted = self.fit(data)
        t.append(time.perf_counter())
        P = self.score() if fitted else None
        t.append(time.perf_counter())
        metrics = self.measure(data, P, oracle)
        t.append(time.perf_counter())
        stopped = self._stop_reason(metrics, data.round)
        batch = self.select(data, P) if stopped is None else []
        if stopped is None and not batch:
            stopped = "exhausted"
        t.append(time.perf_counter())
        timings = {name: t[i + 1] - t[i] for i, name in enumerate(("data", "fit", "score", "metrics", "select"))}
        timings = self.persist(data.round, P, metrics, batch, stopped, timings)
        if oracle is not None and batch:
            oracle.answer(self.store, self.store.next_in_queue(1 << 30))  # exactly what a person is shown
        return Round(round=data.round, batch=batch, metrics=metrics, stopped=stopped, timings=timings)

    def _collect(self, oracle: Oracle | None, force: bool) -> None:
        """Labels in before a round: the oracle answers the queue; a person's unfinished queue stops us."""
        if oracle is not None:
            oracle.answer(self.store, self.store.next_in_queue(1 << 30))
        pending = self.store.queue_pending()
        if pending and not force:
            raise CuratorError(f"{pending} queued chips are not labelled yet",
                               "label them (SwipeLabeler or `curator label`), or call step(force=True) to fit on "
                               "the labels there are")

    def labels(self) -> RoundData:
        """The training labels of the next round (human, seed, oracle, import: never the model's own)."""
        ids_all, labels_all = self.store.current_arrays(sources=TRAIN_SOURCES)
        seen = ids_all if self.pool is None else ids_all[self.pool_mask()[ids_all]]
        keep = labels_all != UNSURE
        ids, labs = ids_all[keep], labels_all[keep]
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([index[x] for x in labs], dtype=np.int64)
        held = _holdout_mask(ids, float(self.config["holdout"]), int(self.config["seed"]))
        return RoundData(round=int(self.state["round"]) + 1, seen=seen, ids=ids, y=y, held=held,
                         unsure=int(np.count_nonzero(~keep)))

    def fit(self, data: RoundData) -> bool:
        """Fit the head on the training split (the held-out share calibrates a built-in head); False, and
        no fit, while the labels hold fewer than two classes."""
        from .heads import Head

        tr_ids, tr_y = data.train
        if len(np.unique(tr_y)) < 2:
            return False
        X = self.embeddings
        head = self.head()
        if isinstance(head, Head):
            if head.mean is None or head.mean.shape[0] != X.shape[1]:
                head.set_scaler(*self._scaler(X))
            va_ids, va_y = data.holdout
            Xva = np.asarray(X[va_ids], dtype=np.float32) if len(va_ids) else None
            head.fit(X, tr_y, Xva, va_y if len(va_ids) else None, ids=tr_ids)
        else:
            head.fit(X, tr_y, ids=tr_ids)
        return True

    def score(self) -> np.ndarray:
        """The fitted head's probabilities for the pool in one pass: float32 [N, classes], NaN outside it;
        shard by shard on the workers when the loop has a Dask cluster (the same probabilities)."""
        from .cluster import get_client

        X, head = self.embeddings, self.head()
        cluster = get_client(self.client) if self.pool is None else None
        if cluster is not None:
            from .cluster_active import cluster_predict_proba

            return cluster_predict_proba(X, head, client=cluster)
        if self.pool is None:
            return np.asarray(head.predict_proba(X), dtype=np.float32)
        P = np.full((X.shape[0], len(self.classes)), np.nan, dtype=np.float32)
        P[self.pool] = head.predict_proba(X, ids=self.pool)
        return P

    def measure(self, data: RoundData, P: np.ndarray | None, oracle: Oracle | None = None) -> dict[str, Any]:
        """The round's metrics over the pool: effort, class counts, held-out and (with an oracle) true
        quality, positives left, stability."""
        in_pool = self.pool_mask()
        n = int(in_pool.sum())
        tr_ids, _ = data.train
        va_ids, va_y = data.holdout
        pool_y = data.y[in_pool[data.ids]]
        m: dict[str, Any] = {"round": data.round, "labelled": int(len(data.seen)),
                             "labelled_pct": 100.0 * len(data.seen) / n, "train": int(len(tr_ids)),
                             "holdout": int(len(va_ids)),
                             "counts": {c: int(np.count_nonzero(pool_y == i)) for i, c in enumerate(self.classes)},
                             "unsure": data.unsure}
        if self.store.binary:
            m["positives_found"] = int(np.count_nonzero(pool_y == 1))
        if P is None:
            m["note"] = (f"no fit: labels of only {len(np.unique(data.train[1]))} class(es) so far; "
                         "batch drawn at random to find the other class")
        else:
            head = self.head()
            m["temperature"] = getattr(head, "temperature", None)
            m["calibration"] = (getattr(head, "calibration", None) or {}).get("method")
            unlabelled = in_pool.copy()
            unlabelled[data.seen] = False
            if len(va_ids):
                vp = P[va_ids].argmax(1)
                if self.store.binary:
                    m.update({f"holdout_{k}": v for k, v in binary_scores(vp == 1, va_y == 1).items()})
                else:
                    m["holdout_macro_f1"] = macro_f1(vp, va_y, len(self.classes))
            if self.store.binary:
                self._binary_metrics(m, P, data, unlabelled, in_pool, oracle)
            elif oracle is not None:
                self._multiclass_metrics(m, P, data, in_pool, oracle)
        m["stability"] = self._stability(P, in_pool)
        return m

    def _binary_metrics(self, m: dict[str, Any], P: np.ndarray, data: RoundData, unlabelled: np.ndarray,
                        in_pool: np.ndarray, oracle: Oracle | None) -> None:
        thr = float(self.config["threshold"])
        p_unl = P[unlabelled, 1]
        m["predicted_positive_unlabelled"] = int(np.count_nonzero(p_unl >= thr))
        balanced = getattr(self.head(), "class_weight", None) == "balanced"
        train_prior = 0.5 if balanced else float(np.mean(data.y == 1))
        m["estimated_positives_left"] = round(float(shift_prior(p_unl, np.mean(data.y == 1), train_prior).sum()), 1)
        if oracle is not None:
            truth = oracle.is_positive() & in_pool
            curated = self._curated_mask(P[:, 1], data.ids, data.y == 1, thr) & in_pool
            m.update({f"true_{k}": v for k, v in binary_scores(curated, truth).items()})
            m["true_positives_total"] = int(truth.sum())
            m["true_positives_left"] = int(np.count_nonzero(truth & unlabelled))

    def _multiclass_metrics(self, m: dict[str, Any], P: np.ndarray, data: RoundData, in_pool: np.ndarray,
                            oracle: Oracle) -> None:
        """Per-class recall and precision of the curated sets (labelled chips by their label, the rest by the
        head's likeliest class) against the oracle's truth, plus their macro means."""
        index = {c: i for i, c in enumerate(self.classes)}
        truth = np.array([index[t] for t in oracle.truth(self.store)], dtype=np.int64)
        pred = np.where(np.isnan(P[:, 0]), -1, np.nan_to_num(P).argmax(1))
        pred[data.ids] = data.y
        pool = np.flatnonzero(in_pool)
        recalls, precisions = [], []
        for i, c in enumerate(self.classes):
            s = binary_scores(pred[pool] == i, truth[pool] == i)
            m[f"true_recall_{c}"], m[f"true_precision_{c}"] = s["recall"], s["precision"]
            recalls.append(s["recall"])
            precisions.append(s["precision"])
        m["true_macro_recall"] = float(np.mean(recalls))
        m["true_macro_f1"] = macro_f1(pred[pool], truth[pool], len(self.classes))

    def select(self, data: RoundData, P: np.ndarray | None) -> list[int]:
        """The next batch: the pool's chips without a training label (a model-only label does not count,
        as in the store's queue) and not already queued, ranked by the strategy; random without a fit."""
        X = self.embeddings
        n = X.shape[0]
        cand = self.pool_mask()
        cand[data.seen] = False
        cand[self.store.next_in_queue(1 << 30)] = False
        strategy = self.config["strategy"] if P is not None else "random"
        probs = P if P is not None else np.full((n, len(self.classes)), 1.0 / len(self.classes), np.float32)
        picked = acquisition.select(probs, int(self.config["batch_size"]), strategy,
                                    self.config["diversity"] if P is not None else None, X=X,
                                    candidates=cand, positive=max(self.positive, 0),
                                    pool_factor=int(self.config["pool_factor"]), seed=int(self.config["seed"]) + data.round)
        return [int(i) for i in picked]

    def persist(self, rnd: int, P: np.ndarray | None, metrics: dict[str, Any], batch: list[int],
                stopped: str | None, timings: dict[str, float] | None = None) -> dict[str, float]:
        """Queue the batch, save the head and scores, then state.json last (the round's commit point);
        returns the round's timings with this stage and the total added."""
        from .heads import Head

        start = time.perf_counter()
        if batch:
            queued = self.store.queue_add(batch, source=f"{self.name}:round{rnd}")
            if queued != len(batch):  # select() and the queue disagree on what may be asked: never silently
                raise CuratorError(f"round {rnd} picked {len(batch)} chips but only {queued} could be queued",
                                   "report this as a bug; the labels are safe and step() can be called again")
        if P is not None:
            head = self.head()
            if isinstance(head, Head):
                head.save(self.dir / "head.pt")
            self._save_array("scores.npy", P.astype(np.float16))
            self._save_array("pred.npy", np.nan_to_num(P).argmax(1).astype(np.uint8))
        timings = {**(timings or {}), "persist": time.perf_counter() - start}
        timings["total"] = sum(timings.values())
        metrics["seconds"] = {k: round(v, 4) for k, v in timings.items()}
        metrics["batch"] = len(batch)
        metrics["time"] = time.time()
        self.state["round"] = rnd
        self.state["history"].append(metrics)
        self.state["stopped"] = stopped
        self.state["last_batch"] = batch
        self._save_state()
        return timings

    def _curated_mask(self, p: np.ndarray, ids: np.ndarray, positive: np.ndarray, thr: float) -> np.ndarray:
        """The final set a curator reviews: labelled positives plus unlabelled chips predicted positive."""
        mask = p >= thr
        mask[ids] = positive
        return mask

    def _stability(self, P: np.ndarray | None, in_pool: np.ndarray) -> float | None:
        """Share of the pool whose predicted class changed since the last round."""
        prev = self._load_array("pred.npy")
        if P is None or prev is None or prev.shape[0] != P.shape[0]:
            return None
        changed = prev[in_pool] != np.nan_to_num(P[in_pool]).argmax(1)
        return float(np.count_nonzero(changed)) / max(int(in_pool.sum()), 1)

    def _stop_reason(self, m: dict[str, Any], rnd: int) -> str | None:
        if m["labelled_pct"] >= 100.0 * float(self.config["budget"]) - 1e-9:
            return "budget"
        if self.config["max_rounds"] is not None and rnd >= int(self.config["max_rounds"]):
            return "max_rounds"
        patience, limit = int(self.config["patience"]), float(self.config["stability"] or 0.0)
        if limit <= 0:  # 0 switches the stability rule off
            return None
        recent = [h.get("stability") for h in self.state["history"][-(patience - 1):]] if patience > 1 else []
        window = recent + [m.get("stability")]
        if len(window) >= patience and all(s is not None and s <= limit for s in window):
            return "stable"
        return None

    def run(self, oracle: Oracle | None = None, rounds: int | None = None,
            callback: Callable[[Round], None] | None = None) -> pd.DataFrame:
        """Step until a stopping rule fires (or `rounds` rounds); needs an oracle to label in between."""
        done = 0
        while rounds is None or done < rounds:
            res = self.step(oracle=oracle)
            done += 1
            if callback is not None:
                callback(res)
            if res.stopped:
                break
            if oracle is None:
                break
        return self.history()

    # ------------------------------------------------------------------ results
    @property
    def stopped(self) -> str | None:
        return self.state.get("stopped")

    @property
    def round(self) -> int:
        return int(self.state["round"])

    def history(self) -> pd.DataFrame:
        """Per-round metrics as a table (one row per round)."""
        rows = [{k: v for k, v in h.items() if k not in ("counts", "seconds")} |
                {f"n_{c}": n for c, n in h.get("counts", {}).items()} |
                {f"seconds_{k}": v for k, v in h.get("seconds", {}).items()} for h in self.state["history"]]
        return pd.DataFrame(rows)

    def scores(self) -> np.ndarray:
        """The last round's class probabilities for every chip (float16 [N, classes]; NaN outside the pool)."""
        P = self._load_array("scores.npy")
        if P is None:
            raise CuratorError("no round has been fitted yet", "call loop.step() after labelling the seed set")
        return P

    def predicted_positives(self, threshold: float | None = None, include_labelled: bool = True) -> pd.DataFrame:
        """The curated set, ranked for review: pool chips predicted positive (p >= threshold) plus labelled
        positives; labelled negatives never appear. Columns: id, p, label (human/oracle), path."""
        if not self.store.binary:
            raise CuratorError("predicted_positives is for binary tasks",
                               "for multi-class tasks use loop.scores().argmax(1)")
        thr = float(self.config["threshold"] if threshold is None else threshold)
        p = self.scores()[:, 1].astype(np.float32)
        ids, labs = self.store.current_arrays(sources=TRAIN_SOURCES)
        labelled = dict(zip(ids.tolist(), labs.tolist()))
        mask = p >= thr
        pos, neg = self.classes[1], self.classes[0]
        for cid, lab in labelled.items():
            mask[cid] = (lab == pos and include_labelled) or (lab == UNSURE and bool(mask[cid]))
            if lab == neg:
                mask[cid] = False
        mask &= self.pool_mask()
        sel = np.flatnonzero(mask)
        order = sel[np.lexsort((sel, -p[sel]))]
        man = self.ws.manifest
        return pd.DataFrame({"id": order, "p": p[order], "label": [labelled.get(int(i)) for i in order],
                             "path": [str(self.ws.resolve(x)) for x in man["path"].to_numpy()[order]]})

    def accept_predictions(self, threshold: float | None = None) -> int:
        """Write the unlabelled predicted positives to the store as source 'model' (kept apart from
        training labels), so an export holds the whole curated set. Returns how many."""
        df = self.predicted_positives(threshold)
        todo = df.loc[df["label"].isna(), "id"].tolist()
        if not todo:
            return 0
        return self.store.add_many(todo, self.classes[1], source="model", annotator=f"active:{self.name}")

    def plot(self, path: str | os.PathLike | None = None, ax: Any = None) -> Any:
        """Learning curve: quality (held-out or true F1 / recall) and positives found / left vs labelled %."""
        from .plots import learning_curve

        title = f"{self.name}: {self.config['strategy']}" + (f"+{self.config['diversity']}"
                                                             if self.config["diversity"] else "")
        return learning_curve(self.history(), title=title, path=path, ax=ax)

    def summary(self) -> dict[str, Any]:
        """Where the loop stands: round, stop reason, last metrics, config."""
        return {"name": self.name, "run": self.run_name, "task": self.store.task, "round": self.round,
                "stopped": self.stopped, "config": self.config, "pool": None if self.pool is None else len(self.pool),
                "last": self.state["history"][-1] if self.state["history"] else None}


def _check_config(config: dict[str, Any], store: LabelStore, task: str) -> dict[str, Any]:
    """Validate a loop's settings once, at construction, with one clear error each."""
    if "+" in str(config["strategy"]):
        config["strategy"], config["diversity"] = acquisition.parse_strategy(config["strategy"])
    else:
        acquisition.parse_strategy(config["strategy"] if not config["diversity"]
                                   else f"{config['strategy']}+{config['diversity']}")
    if config["strategy"] in ("top_positive", "gaussian") and not store.binary:
        raise CuratorError(f"strategy {config['strategy']!r} needs a binary task, task {task!r} has "
                           f"{len(store.classes)} classes", "use entropy, margin or least_confidence")
    if int(config["batch_size"]) < 1:
        raise CuratorError(f"batch_size={config['batch_size']} must be at least 1", "use e.g. 64 (published)")
    if not 0 < float(config["budget"]) <= 1:
        raise CuratorError(f"budget={config['budget']} is a fraction of the data in (0, 1]",
                           "use e.g. 0.05 to stop once 5% of the chips are labelled")
    if not 0 <= float(config["holdout"]) < 0.9:
        raise CuratorError(f"holdout={config['holdout']} must be a fraction in [0, 0.9)",
                           "use 0 (train on every label) or e.g. 0.2 to hold out a fifth for F1")
    return config
