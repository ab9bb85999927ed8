"""Balancing data: with labels (under/oversampling, loss reweighting, augmented copies of rare classes)
and without them (`iterative_balance`: SSL -> embed -> diverse subset -> retrain).

The labelled methods follow "Comparing Importance Sampling Based Methods for Mitigating the Effect
of Class Imbalance" and the augmented-copies blog post; they return index lists and weights, never
models, so any trainer (torch, sklearn, the active loop) can use them. The unlabeled loop follows
"Scalable Data Balancing for Unlabeled Satellite Imagery".
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Sequence

import numpy as np

from .class_stats import class_counts, class_size_std  # noqa: F401  (public here too)
from .errors import CuratorError

if TYPE_CHECKING:
    from .workspace import Workspace

# PIL-based copies from the blog post, plus flips (overhead imagery has no up).
AUGMENTATIONS = ("hflip", "vflip", "red", "green", "blue", "blur", "unsharp")


# ----------------------------------------------------------------------------- class statistics
def _labels(labels: Iterable[Hashable]) -> np.ndarray:
    arr = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=object)
    if arr.ndim != 1:
        raise CuratorError(f"labels must be one label per item (1-D), got shape {list(arr.shape)}",
                           "pass a flat list such as ws.manifest['label']")
    missing = [i for i, v in enumerate(arr) if v is None or (isinstance(v, float) and np.isnan(v))]
    if missing:
        raise CuratorError(f"{len(missing)} items have no label (first at position {missing[0]})",
                           "balance only labelled items: drop the unlabelled ones or label them first")
    if not len(arr):
        raise CuratorError("there are no labels to balance", "pass at least one labelled item")
    return arr


def low_frequency_classes(labels: Iterable[Hashable], percentile: float = 25.0) -> list[Hashable]:
    """Classes whose frequency is at or below the `percentile`-th percentile of class frequencies."""
    counts = class_counts(_labels(labels))
    cut = np.percentile(np.array(list(counts.values()), dtype=float), percentile)
    return [c for c, v in counts.items() if v <= cut]


# ----------------------------------------------------------------------------- resampling
def _by_class(arr: np.ndarray) -> dict[Hashable, np.ndarray]:
    out: dict[Hashable, list[int]] = {}
    for i, v in enumerate(arr):
        out.setdefault(v, []).append(i)
    return {c: np.asarray(v, dtype=np.int64) for c, v in sorted(out.items(), key=lambda kv: str(kv[0]))}


def _threshold(value: int | None, default: int, what: str) -> int:
    t = default if value is None else value
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise CuratorError(f"{what} threshold {value!r} must be a positive whole number",
                           f"pass e.g. threshold={default} (the {'smallest' if what == 'undersampling' else 'largest'} class size)")
    return int(t)


def undersample(labels: Iterable[Hashable], threshold: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Indices where every class above `threshold` (default: the smallest class size) is cut to a
    random `threshold` of its items; smaller classes are kept whole. Sorted ascending."""
    arr = _labels(labels)
    groups = _by_class(arr)
    t = _threshold(threshold, min(len(v) for v in groups.values()), "undersampling")
    rng = np.random.default_rng(seed)
    keep = [v if len(v) <= t else rng.choice(v, size=t, replace=False) for v in groups.values()]
    return np.sort(np.concatenate(keep))


def oversample(labels: Iterable[Hashable], threshold: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Indices where every class below `threshold` (default: the largest class size) is repeated up to
    `threshold`: each item once first, then whole random permutations, so repeats differ by at most
    one between items of a class. Larger classes are kept whole. Sorted ascending."""
    arr = _labels(labels)
    groups = _by_class(arr)
    t = _threshold(threshold, max(len(v) for v in groups.values()), "oversampling")
    rng = np.random.default_rng(seed)
    out = []
    for v in groups.values():
        if len(v) >= t:
            out.append(v)
            continue
        full, rest = divmod(t, len(v))
        out.append(np.tile(v, full))
        out.append(rng.choice(v, size=rest, replace=False))
    return np.sort(np.concatenate(out))


def reweight(labels: Iterable[Hashable], k: float, low: Sequence[Hashable] | None = None,
             percentile: float = 25.0) -> np.ndarray:
    """Per-item loss weights: k for items of low-frequency classes (default: at or below the 25th
    percentile of class frequency), 1 otherwise. Multiply the per-item loss by these."""
    arr = _labels(labels)
    if not np.isfinite(k) or k <= 0:
        raise CuratorError(f"reweighting factor k={k} must be a positive number", "the paper uses k in 1.5 .. 10")
    low_set = set(low_frequency_classes(arr, percentile) if low is None else low)
    unknown = low_set - set(arr.tolist())
    if unknown:
        raise CuratorError(f"low-frequency classes {sorted(map(str, unknown))} do not occur in the labels",
                           "name classes that appear in the labels, or leave low=None")
    return np.where([v in low_set for v in arr], float(k), 1.0).astype(np.float32)


def class_weights(labels: Iterable[Hashable], k: float, classes: Sequence[Hashable] | None = None,
                  low: Sequence[Hashable] | None = None, percentile: float = 25.0) -> np.ndarray:
    """The same reweighting as a per-class vector in `classes` order, for CrossEntropyLoss(weight=...)."""
    arr = _labels(labels)
    classes = list(classes) if classes is not None else list(class_counts(arr))
    w = reweight(arr, k, low=low, percentile=percentile)
    table = {v: float(x) for v, x in zip(arr, w)}
    return np.array([table.get(c, 1.0) for c in classes], dtype=np.float32)


# ----------------------------------------------------------------------------- augmented copies
def augment(image: np.ndarray, op: str) -> np.ndarray:
    """One augmented copy (HxWx3 uint8): flips, a single band as grey RGB, Gaussian blur or unsharp mask."""
    from PIL import Image, ImageFilter

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise CuratorError(f"augment expects an HxWx3 uint8 image, got {img.dtype} {list(img.shape)}",
                           "load chips with ws.load_chip(id)")
    if op == "hflip":
        return np.ascontiguousarray(img[:, ::-1])
    if op == "vflip":
        return np.ascontiguousarray(img[::-1])
    if op in ("red", "green", "blue"):
        band = img[:, :, ("red", "green", "blue").index(op)]
        return np.repeat(band[:, :, None], 3, axis=2)
    if op == "blur":
        return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(2)))
    if op == "unsharp":
        return np.asarray(Image.fromarray(img).filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=3)))
    raise CuratorError(f"unknown augmentation {op!r}", f"use one of {', '.join(AUGMENTATIONS)}")


@dataclass
class AugmentPlan:
    """Extra copies to add: copy j is augmentation `ops[j]` of item `source[j]` (label `labels[j]`)."""

    source: np.ndarray
    ops: list[str]
    labels: list[Hashable]
    counts_after: dict[Hashable, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.source)

    def images(self, load: Callable[[int], np.ndarray]) -> Iterable[np.ndarray]:
        """The augmented images, loading each source image with `load(index)` (e.g. ws.load_chip)."""
        for i, op in zip(self.source.tolist(), self.ops):
            yield augment(load(int(i)), op)


def augmented_oversample(labels: Iterable[Hashable], threshold: int = 10, ops: Sequence[str] = AUGMENTATIONS,
                         mode: str = "fill", *, seed: int = 0) -> AugmentPlan:
    """Plan augmented copies for rare classes (fewer than `threshold` items).

    mode="fill": add (item, op) copies, items in random order, op by op, until the class reaches
    `threshold` (or every item has every op). mode="all": every op of every rare item, as in the blog.
    """
    arr = _labels(labels)
    bad = [o for o in ops if o not in AUGMENTATIONS]
    if bad or not ops:
        raise CuratorError(f"unknown augmentations {bad}" if bad else "no augmentations given",
                           f"use some of {', '.join(AUGMENTATIONS)}")
    if mode not in ("fill", "all"):
        raise CuratorError(f"mode={mode!r} is not a way to add copies", "use 'fill' or 'all'")
    t = _threshold(threshold, 10, "augmentation")
    rng = np.random.default_rng(seed)
    src: list[int] = []
    opl: list[str] = []
    lab: list[Hashable] = []
    after = {}
    for c, members in _by_class(arr).items():
        after[c] = len(members)
        if len(members) >= t:
            continue
        members = rng.permutation(members)
        pairs = [(int(i), o) for o in ops for i in members]
        need = len(pairs) if mode == "all" else min(len(pairs), t - len(members))
        for i, o in pairs[:need]:
            src.append(i)
            opl.append(o)
            lab.append(c)
        after[c] += need
    return AugmentPlan(np.asarray(src, dtype=np.int64), opl, lab, after)


def add_augmented_chips(ws: "Workspace", plan: AugmentPlan, ids: Sequence[int] | None = None) -> np.ndarray:
    """Write the planned copies into the workspace as new chips (label kept, flags ['augmented', op]).

    `ids` maps plan positions to chip ids when the plan was made from a subset's labels. Re-running
    adds nothing twice (chip keys are stable). Returns the ids of the copies."""
    from .sources.base import Chip

    table = ws.manifest
    ids_arr = None if ids is None else np.asarray(ids, dtype=np.int64)

    def chips():
        for i, op, lab in zip(plan.source.tolist(), plan.ops, plan.labels):
            cid = int(i if ids_arr is None else ids_arr[i])
            row = table.iloc[cid]
            meta = {k: row[k] for k in ("source", "layer", "date", "west", "south", "east", "north",
                                        "tile_matrix_set", "tile_matrix", "pixel_size", "land_fraction",
                                        "cloud_fraction") if k in row.index}
            meta = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in meta.items()}
            img = augment(ws.load_chip(cid), op)
            meta.update(label=lab, origin=f"chip:{cid}", flags=["augmented", op], width=img.shape[1],
                        height=img.shape[0], x0=0, y0=0)
            yield Chip(key=f"augment:{op}:{row['key']}", image=img, meta=meta)

    res = ws.add_chips(chips(), total=len(plan), progress="augmented copies")
    keys = [f"augment:{op}:{table.iloc[int(i if ids_arr is None else ids_arr[i])]['key']}"
            for i, op in zip(plan.source.tolist(), plan.ops)]
    by_key = dict(zip(ws.manifest["key"], ws.manifest["id"]))
    del res
    return np.asarray([by_key[k] for k in keys], dtype=np.int64)


# ----------------------------------------------------------------------------- probes
def probe_accuracy(train_x: np.ndarray, train_y: Sequence[Hashable], test_x: np.ndarray,
                   test_y: Sequence[Hashable], knn: int = 5, seed: int = 0) -> dict[str, float]:
    """kNN (cosine) and linear (logistic regression) probe accuracy of embeddings: train on the
    selection's labelled items, test on a held-out set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    train_x = np.asarray(train_x, dtype=np.float32)
    test_x = np.asarray(test_x, dtype=np.float32)
    train_y = np.asarray(train_y, dtype=object).astype(str)
    test_y = np.asarray(test_y, dtype=object).astype(str)
    out: dict[str, float] = {}
    if len(train_x) == 0 or len(test_x) == 0:
        raise CuratorError("the probe needs labelled items in both the selection and the held-out set",
                           "use a workspace with ground-truth labels (e.g. a FolderSource of class folders)")
    kn = KNeighborsClassifier(n_neighbors=min(knn, len(train_x)), metric="cosine")
    out["knn_acc"] = float((kn.fit(train_x, train_y).predict(test_x) == test_y).mean())
    if len(set(train_y)) > 1:
        sc = StandardScaler().fit(train_x)
        lr = LogisticRegression(max_iter=2000, random_state=seed)
        out["linear_acc"] = float((lr.fit(sc.transform(train_x), train_y).predict(sc.transform(test_x)) == test_y).mean())
    else:
        out["linear_acc"] = float((test_y == train_y[0]).mean())
    return out


def stratified_holdout(labels: Sequence[Hashable], fraction: float = 0.2, *, seed: int = 0,
                       per_class: int | None = None) -> np.ndarray:
    """Positions of a held-out test set: `per_class` items of every class, or `fraction` of each class
    (at least one when the class has two or more). Sorted ascending."""
    arr = np.asarray(labels, dtype=object)
    rng = np.random.default_rng(seed)
    out = []
    for c, members in _by_class(arr).items():
        if c is None or (isinstance(c, float) and np.isnan(c)):
            continue
        take = per_class if per_class is not None else (max(1, int(round(fraction * len(members))))
                                                         if len(members) > 1 else 0)
        out.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(out)) if out else np.empty(0, dtype=np.int64)


# ----------------------------------------------------------------------------- the unlabeled loop
def balance_dir(ws: "Workspace") -> Path:
    return ws.root / "balance"


def _select(selector: str | Callable, X: np.ndarray, n: int, seed: int, kwargs: dict[str, Any]) -> np.ndarray:
    from .sampling import sample

    if callable(selector):
        return np.asarray(selector(X, n, seed=seed, **kwargs), dtype=np.int64)
    return sample(X, n, method=selector, seed=seed, **kwargs)


def iterative_balance(ws: "Workspace", rounds: int = 5, n: int = 500, selector: str | Callable = "fps", *,
                      name: str | None = None, initial: str | Sequence[int] = "all",
                      initial_run: str | None = None, test_ids: Sequence[int] | None = None,
                      test_fraction: float = 0.2, train_kwargs: dict[str, Any] | None = None,
                      embed_kwargs: dict[str, Any] | None = None, selector_kwargs: dict[str, Any] | None = None,
                      seed: int = 0, plot: bool = True, progress: bool = True) -> dict[str, Any]:
    """The data-balancing loop of "Scalable Data Balancing for Unlabeled Satellite Imagery".

    Round 0 trains SSL on `initial` ("all" of the pool, or given ids; or reuses `initial_run`) and
    embeds everything. Each round r = 1..rounds then selects n items from the pool with `selector`
    ("fps", "stratified", "clusters", "random" or a callable(X, n, seed=...)) on the previous
    round's embeddings, trains a new model on that selection only and embeds everything with it.
    Per round it logs the selection's class-size std and ocean share, and (with ground-truth labels)
    kNN/linear probe accuracy of the new embeddings trained on the selection and tested on a held-out
    set that is never selected. Results go to balance/<name>.json (+ .png); finished rounds are
    skipped on a re-run.
    """
    from .atomic import write_json
    from .embed import embed, load_embeddings
    from .sampling import save_sample
    from .train import train_ssl

    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise CuratorError(f"rounds={rounds!r} must be a positive whole number", "the paper uses rounds=5")
    sel_name = selector if isinstance(selector, str) else getattr(selector, "__name__", "custom")
    name = name or f"{sel_name}-{n}"
    N = len(ws)
    if N == 0:
        raise CuratorError("the workspace has no chips to balance", "ingest chips first (`curator ingest`)")
    df = ws.manifest
    labels = df["label"].to_numpy(dtype=object)
    has_labels = df["label"].notna().any()
    if test_ids is None:
        test_ids = stratified_holdout(labels, test_fraction, seed=seed) if has_labels else np.empty(0, np.int64)
    test_ids = np.asarray(test_ids, dtype=np.int64)
    pool = np.setdiff1d(np.arange(N), test_ids)
    if not 1 <= n <= len(pool):
        raise CuratorError(f"cannot select n={n} from a pool of {len(pool)} chips (after holding out {len(test_ids)})",
                           f"choose n between 1 and {len(pool)}")
    classes = sorted({str(v) for v in labels[pool] if v is not None}) if has_labels else None
    train_kwargs = dict(train_kwargs or {})
    embed_kwargs = dict(embed_kwargs or {})
    selector_kwargs = dict(selector_kwargs or {})

    path = balance_dir(ws) / f"{name}.json"
    doc = _load_doc(path) or {}
    if doc:
        changed = [k for k, v in (("n", int(n)), ("selector", sel_name), ("test_ids", test_ids.tolist()))
                   if doc.get(k) != v]
        if changed:
            raise CuratorError(f"balancing run {name!r} exists in {path.parent} with a different {', '.join(changed)}",
                               "pass name=... for a new run, or delete the old balance/<name>.json to start over")
    done = {r["round"]: r for r in doc.get("rounds", [])}
    doc.update({"name": name, "selector": sel_name, "n": int(n), "pool_size": int(len(pool)),
                "test_ids": test_ids.tolist(), "seed": seed, "train_kwargs": train_kwargs,
                "classes": classes, "rounds": [done[r] for r in sorted(done)]})

    def save() -> None:
        doc["rounds"] = [done[r] for r in sorted(done)]
        doc["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_json(path, doc)

    def probe(run: str, sel: np.ndarray) -> dict[str, float]:
        if not has_labels or not len(test_ids):
            return {}
        X = np.asarray(load_embeddings(ws, run), dtype=np.float32)
        tr = sel[[labels[i] is not None for i in sel]]
        return probe_accuracy(X[tr], labels[tr], X[test_ids], labels[test_ids], seed=seed)

    def stats(sel: np.ndarray) -> dict[str, Any]:
        from .sampling import selection_stats

        s = selection_stats(ws, sel)
        return {k: v for k, v in s.items() if k in ("ocean_share", "class_size_std", "class_counts")}

    def ensure_run(run: str, ids: np.ndarray | None) -> None:
        # both skip work already done: a finished run returns at once, an up-to-date embedding too
        train_ssl(ws, run=run, ids=None if ids is None else ids.tolist(), progress=progress, **train_kwargs)
        embed(ws, run, progress=progress, **embed_kwargs)

    # round 0: the bootstrap model
    run0 = initial_run or f"balance-{name}-r0"
    if 0 not in done:
        t0 = time.perf_counter()
        init_ids = pool if (isinstance(initial, str) and initial == "all") else np.asarray(initial, dtype=np.int64)
        ensure_run(run0, None if len(init_ids) == N else init_ids)
        done[0] = {"round": 0, "run": run0, "train_size": int(len(init_ids)), **stats(init_ids),
                   **probe(run0, init_ids), "seconds": round(time.perf_counter() - t0, 2)}
        save()
    prev = done[0]["run"]
    for r in range(1, rounds + 1):
        if r in done:
            prev = done[r]["run"]
            continue
        t0 = time.perf_counter()
        X = load_embeddings(ws, prev)
        local = _select(selector, X[pool] if len(pool) < N else X, n, seed + r, selector_kwargs)
        sel = pool[local] if len(pool) < N else local
        run = f"balance-{name}-r{r}"
        save_sample(ws, f"balance-{name}-r{r}", sel, method=sel_name, run=prev,
                    params={"round": r, "selector_kwargs": selector_kwargs})
        ensure_run(run, np.sort(sel))
        done[r] = {"round": r, "run": run, "selected_with": prev, "train_size": int(len(sel)), **stats(sel),
                   **probe(run, sel), "seconds": round(time.perf_counter() - t0, 2)}
        save()
        prev = run
    if plot:
        doc["plot"] = str(plot_balance([doc], balance_dir(ws) / f"{name}.png").relative_to(ws.root))
        save()
    ws.record("balance", name, {"path": str(path.relative_to(ws.root)), "selector": sel_name, "n": int(n),
                                "rounds": rounds,
                                "final": {k: v for k, v in done[rounds].items() if k != "class_counts"}})
    return doc


def _load_doc(path: Path) -> dict[str, Any] | None:
    import json

    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise CuratorError(f"{path} is corrupt", "delete it to start this balancing run over") from None


def plot_balance(docs: Sequence[dict[str, Any]], path: str | Path | None = None, labels: Sequence[str] | None = None):
    """Class-size std and probe accuracy per round, one line per balancing run; saved when `path` is given."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for j, doc in enumerate(docs):
        lab = labels[j] if labels else doc.get("selector", doc.get("name", str(j)))
        rs = [r for r in doc["rounds"] if r["round"] > 0]
        x = [r["round"] for r in rs]
        color = f"C{j % 10}"  # one colour per run in both panels
        if any("class_size_std" in r for r in rs):
            axes[0].plot(x, [r.get("class_size_std", np.nan) for r in rs], marker="o", color=color, label=lab)
        elif any("ocean_share" in r for r in rs):
            axes[0].plot(x, [r.get("ocean_share", np.nan) for r in rs], marker="o", color=color, label=lab)
            axes[0].set_ylabel("ocean share of the selection")
        for key, style in (("knn_acc", "-"), ("linear_acc", "--")):
            if any(key in r for r in rs):
                axes[1].plot(x, [r.get(key, np.nan) for r in rs], style, marker="o", color=color,
                             label=f"{lab} ({key[:-4]})")
    axes[0].set_title("balance of the selected training set")
    axes[0].set_xlabel("round")
    if not axes[0].get_ylabel():
        axes[0].set_ylabel("class-size std (lower = more balanced)")
    axes[1].set_title("probe accuracy of the round's model")
    axes[1].set_xlabel("round")
    axes[1].set_ylabel("accuracy")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    if path is not None:
        from .atomic import atomic_path

        path = Path(path)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        return path
    return fig
