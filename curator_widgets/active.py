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
    from .heads import Head
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
             label_reference: bool = True, queue: bool = True, source: str = "seed") -> SeedSet:
    """The published seed set: the `k` nearest neighbours of the reference chip(s) or image plus `r`
    random chips (so the first labels hold negatives too), deduplicated and queued for labelling.

    Reference chips are known examples, so with `label_reference` they are labelled with the
    positive class (source "seed") in a binary store.
    """
    from .index import build_index, search

    if int(k) < 0 or int(r) < 0 or int(k) + int(r) == 0:
        raise CuratorError(f"seed set sizes k={k}, r={r} must be non-negative and not both zero",
                           "use the published k=64 neighbours and r=32 random chips")
    ref_ids, image = _parse_reference(ws, reference)
    n = len(ws)
    neighbours: list[int] = []
    if int(k) > 0:
        if not ws.index_path(run).exists():  # first search of this run: build its index once
            build_index(ws, run, progress=False)
        res = search(ws, run, ids=ref_ids or None, image=image, k=int(k), mode="mean", filters=filters,
                     exclude=ref_ids or None)
        neighbours = [int(i) for i in np.asarray(res.ids).tolist() if int(i) >= 0 and int(i) not in ref_ids]
    taken = set(ref_ids) | set(neighbours)
    rng = np.random.default_rng(seed)
    want = min(int(r), n - len(taken))
    random_ids: list[int] = []
    while len(random_ids) < want:  # rejection sampling: O(r), never an O(N) permutation
        for c in rng.integers(0, n, size=2 * (want - len(random_ids)) + 8).tolist():
            if c not in taken:
                taken.add(c)
                random_ids.append(int(c))
                if len(random_ids) == want:
                    break
    result = SeedSet(reference=ref_ids, neighbours=neighbours, random=random_ids,
                     reference_image=image if isinstance(image, str) else None)
    store = store if store is not None else LabelStore(ws, task=task)
    if label_reference and ref_ids and store.binary:
        store.add_many(ref_ids, store.classes[1], source="seed")
    if queue:
        result.queued = store.queue_add([*neighbours, *random_ids], source=source)
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


class ActiveLoop:
    """Human-in-the-loop (or oracle-in-the-loop) active learning over one embedding run.

    `loop = ActiveLoop(ws, "simclr")`; `loop.seed(reference=123)`; label the queue; then
    `loop.step()` once per round. State (config, per-round metrics, the head, the last
    scores) is saved in `<workspace>/active/<name>/` after every round; constructing the
    loop again with the same name resumes it. Options left as None keep their stored
    value (or the default for a new loop).
    """

    def __init__(self, ws: "Workspace", run: str, name: str = "default", task: str | None = None,
                 store: LabelStore | None = None, *, head: str | None = None, strategy: str | None = None,
                 diversity: str | None = None, batch_size: int | None = None, budget: float | None = None,
                 max_rounds: int | None = None, stability: float | None = None, patience: int | None = None,
                 holdout: float | None = None, pool_factor: int | None = None, threshold: float | None = None,
                 seed: int | None = None, head_options: dict[str, Any] | None = None, device: str | None = "auto",
                 label_set: Sequence[str] | None = None):
        from .workspace import _check_run

        self.ws, self.run_name, self.name = ws, _check_run(run), _check_run(name)
        self.dir = ws.root / "active" / self.name
        self.device = device
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
        given = {"head": head, "strategy": strategy, "diversity": diversity, "batch_size": batch_size,
                 "budget": budget, "max_rounds": max_rounds, "stability": stability, "patience": patience,
                 "holdout": holdout, "pool_factor": pool_factor, "threshold": threshold, "seed": seed,
                 "head_options": head_options}
        config = dict(DEFAULTS) if state is None else {**DEFAULTS, **state["config"]}
        config.update({k: v for k, v in given.items() if v is not None})
        if "+" in str(config["strategy"]):
            config["strategy"], config["diversity"] = acquisition.parse_strategy(config["strategy"])
        else:
            acquisition.parse_strategy(config["strategy"] if not config["diversity"]
                                       else f"{config['strategy']}+{config['diversity']}")
        if config["strategy"] in ("top_positive", "gaussian") and not self.store.binary:
            raise CuratorError(f"strategy {config['strategy']!r} needs a binary task, task {task!r} has "
                               f"{len(self.store.classes)} classes", "use entropy, margin or least_confidence")
        if int(config["batch_size"]) < 1:
            raise CuratorError(f"batch_size={config['batch_size']} must be at least 1", "use e.g. 64 (published)")
        if not 0 < float(config["budget"]) <= 1:
            raise CuratorError(f"budget={config['budget']} is a fraction of the data in (0, 1]",
                               "use e.g. 0.05 to stop once 5% of the chips are labelled")
        if not 0 <= float(config["holdout"]) < 0.9:
            raise CuratorError(f"holdout={config['holdout']} must be a fraction in [0, 0.9)",
                               "use 0 (train on every label) or e.g. 0.2 to hold out a fifth for F1")
        self.config = config
        self.state: dict[str, Any] = state or {"version": STATE_VERSION, "run": run, "task": task, "round": 0,
                                               "history": [], "stopped": None, "seed_set": None,
                                               "created": time.time()}
        self.state["config"] = config
        self._head: "Head | None" = None
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

    def _scaler(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        path = self.dir / "scaler.npz"
        if path.exists():
            z = np.load(path)
            if z["mean"].shape[0] == X.shape[1]:
                return z["mean"], z["std"]
        n = X.shape[0]
        rows = np.sort(np.random.default_rng(self.config["seed"]).choice(n, min(n, SCALER_SAMPLE), replace=False))
        sample = np.asarray(X[rows], dtype=np.float32)
        mean, std = sample.mean(0), sample.std(0)
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mean=mean, std=std)
        return mean, std

    def head(self) -> "Head":
        """The classifier head (loaded from the last round, so fitting continues from it)."""
        from .heads import Head

        if self._head is None:
            path = self.dir / "head.pt"
            opts = dict(self.config.get("head_options") or {})
            if path.exists():
                self._head = Head.load(path, device=self.device)
                if self._head.kind != self.config["head"] or self._head.n_classes != len(self.classes):
                    self._head = None
            if self._head is None:
                self._head = Head(self.config["head"], n_classes=len(self.classes), device=self.device,
                                  seed=int(self.config["seed"]), **opts)
        return self._head

    # ------------------------------------------------------------------ seed
    def seed(self, reference: Any, k: int = 64, r: int = 32, filters: dict[str, Any] | None = None,
             force: bool = False) -> SeedSet:
        """Build and queue the seed set once per loop (again only with force=True)."""
        if self.state.get("seed_set") and not force:
            s = self.state["seed_set"]
            return SeedSet(reference=s["reference"], neighbours=s["neighbours"], random=s["random"],
                           queued=0, reference_image=s.get("reference_image"))
        result = seed_set(self.ws, self.run_name, reference, k=k, r=r, store=self.store, seed=int(self.config["seed"]),
                          filters=filters)
        self.state["seed_set"] = {**asdict(result), "k": k, "r": r, "time": time.time()}
        self._save_state()
        return result

    # ------------------------------------------------------------------ a round
    def step(self, oracle: Oracle | None = None, force: bool = False) -> Round:
        """One round: fit the head on every label so far, score all chips, record metrics, check the
        stopping rules, and queue the next batch (labelled at once by `oracle` when given)."""
        if self.state.get("stopped") and not force:
            last = self.state["history"][-1] if self.state["history"] else {}
            return Round(round=self.state["round"], batch=[], metrics=last, stopped=self.state["stopped"])
        if oracle is not None:
            oracle.answer(self.store, self.store.next_in_queue(1 << 30))
        pending = self.store.queue_pending()
        if pending and not force:
            raise CuratorError(f"{pending} queued chips are not labelled yet",
                               "label them (SwipeLabeler or `curator label`), or call step(force=True) to fit on "
                               "the labels there are")
        t = {"start": time.perf_counter()}
        X = self.embeddings
        n = X.shape[0]
        ids_all, labels_all = self.store.current_arrays(sources=TRAIN_SOURCES)
        seen = ids_all  # every chip with a label (unsure too) is never asked again
        keep = labels_all != UNSURE
        ids, labs = ids_all[keep], labels_all[keep]
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([index[x] for x in labs], dtype=np.int64)
        held = _holdout_mask(ids, float(self.config["holdout"]), int(self.config["seed"]))
        tr_ids, tr_y, va_ids, va_y = ids[~held], y[~held], ids[held], y[held]
        rnd = int(self.state["round"]) + 1
        metrics: dict[str, Any] = {"round": rnd, "labelled": int(len(seen)), "labelled_pct": 100.0 * len(seen) / n,
                                   "train": int(len(tr_ids)), "holdout": int(len(va_ids)),
                                   "counts": {c: int(np.count_nonzero(labs == c)) for c in self.classes},
                                   "unsure": int(np.count_nonzero(~keep))}
        if self.store.binary:
            metrics["positives_found"] = int(np.count_nonzero(y == 1))
        t["data"] = time.perf_counter()

        P = None
        if len(np.unique(tr_y)) >= 2:
            head = self.head()
            if head.mean is None or head.mean.shape[0] != X.shape[1]:
                head.set_scaler(*self._scaler(X))
            Xtr = np.asarray(X[np.sort(tr_ids)], dtype=np.float32)
            ytr = tr_y[np.argsort(tr_ids)]
            Xva = np.asarray(X[va_ids], dtype=np.float32) if len(va_ids) else None
            head.fit(Xtr, ytr, Xva, va_y if len(va_ids) else None)
            metrics["temperature"] = head.temperature
            metrics["calibration"] = head.calibration.get("method")
            t["fit"] = time.perf_counter()
            P = head.predict_proba(X)
            t["score"] = time.perf_counter()
        else:
            metrics["note"] = (f"no fit: labels of only {len(np.unique(tr_y))} class(es) so far; "
                               "batch drawn at random to find the other class")
            t["fit"] = t["score"] = time.perf_counter()

        labelled_mask = np.zeros(n, dtype=bool)
        labelled_mask[seen] = True
        if P is not None:
            self._round_metrics(metrics, P, labelled_mask, ids, y, va_ids, va_y, oracle)
        metrics["stability"] = self._stability(P)
        t["metrics"] = time.perf_counter()

        stopped = self._stop_reason(metrics, rnd)
        batch: list[int] = []
        if stopped is None:
            cand = ~labelled_mask
            cand[self.store.next_in_queue(1 << 30)] = False
            strategy = self.config["strategy"] if P is not None else "random"
            probs = P if P is not None else np.full((n, len(self.classes)), 1.0 / len(self.classes), np.float32)
            picked = acquisition.select(probs, int(self.config["batch_size"]), strategy,
                                        self.config["diversity"] if P is not None else None, X=X,
                                        candidates=cand, positive=max(self.positive, 0),
                                        pool_factor=int(self.config["pool_factor"]),
                                        seed=int(self.config["seed"]) + rnd)
            batch = [int(i) for i in picked]
            self.store.queue_add(batch, source=f"{self.name}:round{rnd}")
            if not batch:
                stopped = "exhausted"
        t["select"] = time.perf_counter()

        if P is not None:
            self.head().save(self.dir / "head.pt")
            self._save_array("scores.npy", P.astype(np.float16))
            self._save_array("pred.npy", P.argmax(1).astype(np.uint8))
        timings = {"fit": t["fit"] - t["data"], "score": t["score"] - t["fit"], "metrics": t["metrics"] - t["score"],
                   "select": t["select"] - t["metrics"], "total": time.perf_counter() - t["start"]}
        metrics["seconds"] = {k: round(v, 4) for k, v in timings.items()}
        metrics["batch"] = len(batch)
        metrics["time"] = time.time()
        self.state["round"] = rnd
        self.state["history"].append(metrics)
        self.state["stopped"] = stopped
        self.state["last_batch"] = batch
        self._save_state()
        if oracle is not None and batch:
            oracle.answer(self.store, batch)
        return Round(round=rnd, batch=batch, metrics=metrics, stopped=stopped, timings=timings)

    def _round_metrics(self, m: dict[str, Any], P: np.ndarray, labelled: np.ndarray, ids: np.ndarray, y: np.ndarray,
                       va_ids: np.ndarray, va_y: np.ndarray, oracle: Oracle | None) -> None:
        pred = P.argmax(1)
        if len(va_ids):
            vp = pred[va_ids]
            if self.store.binary:
                m.update({f"holdout_{k}": v for k, v in binary_scores(vp == 1, va_y == 1).items()})
            else:
                m["holdout_macro_f1"] = macro_f1(vp, va_y, len(self.classes))
        if not self.store.binary:
            return
        thr = float(self.config["threshold"])
        unl = ~labelled
        p_unl = P[unl, 1]
        m["predicted_positive_unlabelled"] = int(np.count_nonzero(p_unl >= thr))
        train_prior = 0.5 if self.head().class_weight == "balanced" else float(np.mean(y == 1))
        m["estimated_positives_left"] = round(float(shift_prior(p_unl, np.mean(y == 1), train_prior).sum()), 1)
        if oracle is not None:
            truth = oracle.is_positive()
            curated = self._curated_mask(P[:, 1], ids, y, thr)
            m.update({f"true_{k}": v for k, v in binary_scores(curated, truth).items()})
            m["true_positives_total"] = int(truth.sum())
            m["true_positives_left"] = int(np.count_nonzero(truth & unl))

    def _curated_mask(self, p: np.ndarray, ids: np.ndarray, y: np.ndarray, thr: float) -> np.ndarray:
        """The final set a curator reviews: labelled positives plus unlabelled chips predicted positive."""
        mask = p >= thr
        mask[ids] = y == 1
        return mask

    def _stability(self, P: np.ndarray | None) -> float | None:
        prev = self._load_array("pred.npy")
        if P is None or prev is None or prev.shape[0] != P.shape[0]:
            return None
        return float(np.count_nonzero(prev != P.argmax(1))) / P.shape[0]

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
        """The last round's class probabilities for every chip (float16 [N, classes])."""
        P = self._load_array("scores.npy")
        if P is None:
            raise CuratorError("no round has been fitted yet", "call loop.step() after labelling the seed set")
        return P

    def predicted_positives(self, threshold: float | None = None, include_labelled: bool = True) -> pd.DataFrame:
        """The curated set, ranked for review: chips predicted positive (p >= threshold) plus labelled
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
        import matplotlib.pyplot as plt

        h = self.history()
        if h.empty:
            raise CuratorError("no rounds yet, nothing to plot", "call loop.step() first")
        if ax is None:
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        else:
            axes = np.atleast_1d(ax)
            fig = axes[0].figure
        x = h["labelled_pct"]
        left = axes[0]
        for col, style in (("true_f1", "-o"), ("true_recall", "-s"), ("true_precision", "-^"),
                           ("holdout_f1", "--o"), ("holdout_macro_f1", "--o")):
            if col in h and h[col].notna().any():
                left.plot(x, h[col], style, label=col.replace("_", " "))
        left.set_xlabel("labelled (% of chips)")
        left.set_ylim(0, 1.02)
        left.set_title(f"{self.name}: {self.config['strategy']}" + (f"+{self.config['diversity']}"
                                                                    if self.config["diversity"] else ""))
        if left.lines:
            left.legend(loc="lower right", fontsize=8)
        if len(axes) > 1 and "positives_found" in h:
            right = axes[1]
            right.plot(x, h["positives_found"], "-o", label="positives found (labelled)")
            if "estimated_positives_left" in h:
                right.plot(x, h["estimated_positives_left"], "--", label="estimated positives left")
            if "true_positives_left" in h:
                right.plot(x, h["true_positives_left"], ":", label="true positives left")
            right.set_xlabel("labelled (% of chips)")
            right.legend(fontsize=8)
        fig.tight_layout()
        if path is not None:
            path = Path(path)
            with atomic_path(path, suffix=path.suffix) as tmp:
                fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
            plt.close(fig)
        return fig

    def summary(self) -> dict[str, Any]:
        """Where the loop stands: round, stop reason, last metrics, config."""
        return {"name": self.name, "run": self.run_name, "task": self.store.task, "round": self.round,
                "stopped": self.stopped, "config": self.config,
                "last": self.state["history"][-1] if self.state["history"] else None}
