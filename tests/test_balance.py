"""Balancing (issue 6): resampling invariants, reweighting factors, augmented copies on real UC Merced
images, probes, and the iterative SSL -> embed -> select loop (with stand-in training)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from curator_widgets.balance import (AUGMENTATIONS, add_augmented_chips, augment, augmented_oversample,
                                     class_counts, class_size_std, class_weights, iterative_balance,
                                     low_frequency_classes, oversample, plot_balance, probe_accuracy, reweight,
                                     stratified_holdout, undersample)
from curator_widgets.errors import CuratorError
from helpers import load_bench

# 8 classes, long-tailed: percentile 25 of [2, 3, 5, 5, 10, 20, 50, 100] is 4.5
SIZES = {"a": 100, "b": 50, "c": 20, "d": 10, "e": 5, "f": 5, "g": 3, "h": 2}


def long_tail(seed: int = 0) -> np.ndarray:
    labels = np.array([c for c, n in SIZES.items() for _ in range(n)], dtype=object)
    return labels[np.random.default_rng(seed).permutation(len(labels))]


# ----------------------------------------------------------------------------- class statistics
def test_class_counts_and_std_count_missing_classes_as_zero():
    assert class_counts(["x", "y", "x"]) == {"x": 2, "y": 1}
    assert class_counts(["x"], classes=["x", "z"]) == {"x": 1, "z": 0}
    assert class_size_std(["x", "x", "y", "y"]) == 0.0
    assert class_size_std(["x", "x"], classes=["x", "y"]) == pytest.approx(1.0)  # std of [2, 0]


def test_low_frequency_classes_are_at_or_below_the_25th_percentile():
    assert sorted(low_frequency_classes(long_tail())) == ["g", "h"]
    assert sorted(low_frequency_classes(long_tail(), percentile=50)) == ["e", "f", "g", "h"]  # median 7.5


# ----------------------------------------------------------------------------- resampling
def test_undersample_to_threshold():
    y = long_tail()
    idx = undersample(y, threshold=10, seed=1)
    counts = Counter(y[idx])
    assert counts == {"a": 10, "b": 10, "c": 10, "d": 10, "e": 5, "f": 5, "g": 3, "h": 2}
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    small = np.flatnonzero(np.isin(y, ["e", "f", "g", "h"]))
    assert set(small) <= set(idx)  # classes at or under the threshold are kept whole
    np.testing.assert_array_equal(idx, undersample(y, threshold=10, seed=1))
    assert not np.array_equal(idx, undersample(y, threshold=10, seed=2))
    assert set(Counter(y[undersample(y)]).values()) == {2}  # default: the smallest class size


def test_oversample_to_threshold_keeps_every_item():
    y = long_tail()
    idx = oversample(y, threshold=30, seed=0)
    counts = Counter(y[idx])
    assert counts == {"a": 100, "b": 50, "c": 30, "d": 30, "e": 30, "f": 30, "g": 30, "h": 30}
    assert set(idx) == set(range(len(y)))  # every item appears at least once
    reps = Counter(idx.tolist())
    for c in ("d", "g"):  # repeats spread evenly: they differ by at most one inside a class
        r = [reps[i] for i in np.flatnonzero(y == c)]
        assert max(r) - min(r) <= 1
    assert set(Counter(y[oversample(y)]).values()) == {100}  # default: the largest class size


def test_reweighting_factors():
    y = long_tail()
    for k in (1.5, 2, 2.5, 3, 5, 10):
        w = reweight(y, k)
        assert w.dtype == np.float32
        np.testing.assert_array_equal(w[np.isin(y, ["g", "h"])], k)
        np.testing.assert_array_equal(w[~np.isin(y, ["g", "h"])], 1.0)
    w = reweight(y, 3, low=["e"])
    assert set(w[y == "e"]) == {3.0} and set(w[y != "e"]) == {1.0}
    np.testing.assert_array_equal(class_weights(y, 2.0, classes=list("abcdefgh")), [1, 1, 1, 1, 1, 1, 2, 2])


@pytest.mark.parametrize("call, message", [
    (lambda y: undersample(list(y) + [None]), "1 items have no label"),
    (lambda y: undersample([]), "no labels to balance"),
    (lambda y: undersample(y, threshold=0), "undersampling threshold 0 must be a positive whole number"),
    (lambda y: oversample(y, threshold=2.5), "oversampling threshold 2.5"),
    (lambda y: reweight(y, 0), "reweighting factor k=0"),
    (lambda y: reweight(y, 2, low=["zebra"]), "do not occur in the labels"),
    (lambda y: augmented_oversample(y, ops=["rotate"]), "unknown augmentations ['rotate']"),
    (lambda y: augmented_oversample(y, mode="some"), "mode='some'"),
    (lambda y: augment(np.zeros((4, 4), np.uint8), "hflip"), "HxWx3 uint8"),
    (lambda y: augment(np.zeros((4, 4, 3), np.uint8), "rotate"), "unknown augmentation 'rotate'"),
    (lambda y: undersample(np.zeros((3, 2))), "one label per item"),
])
def test_errors_name_problem_and_fix(call, message):
    with pytest.raises(CuratorError) as e:
        call(long_tail())
    assert message in str(e.value)
    assert e.value.fix


# ----------------------------------------------------------------------------- augmented copies
@pytest.fixture(scope="module")
def ucm_files():
    from curator_widgets.paths import shared_data_dir

    root = shared_data_dir() / "ucmerced"
    sizes = {"agricultural": 12, "beach": 6, "forest": 4, "harbor": 2}
    return [(c, p) for c, n in sizes.items() for p in sorted((root / c).glob("*.jpg"))[:n]]


def _ucm_workspace(tmp_path: Path, files):
    from curator_widgets.sources.base import Chip
    from curator_widgets.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    ws.add_chips([Chip(key=f"ucm:{c}/{p.name}", path=p, meta={"source": "folder", "label": c})
                  for c, p in files], progress=False)
    return ws


def test_augmentations_on_a_real_image(ucm_files):
    from curator_widgets.images import read_image

    img = read_image(ucm_files[0][1])
    np.testing.assert_array_equal(augment(img, "hflip"), img[:, ::-1])
    np.testing.assert_array_equal(augment(img, "vflip"), img[::-1])
    for band, op in enumerate(("red", "green", "blue")):
        out = augment(img, op)
        assert out.shape == img.shape
        for ch in range(3):
            np.testing.assert_array_equal(out[:, :, ch], img[:, :, band])
    blur, sharp = augment(img, "blur"), augment(img, "unsharp")
    assert blur.shape == sharp.shape == img.shape and blur.dtype == np.uint8
    lap = lambda a: np.abs(np.diff(a.astype(float), axis=1)).mean()  # noqa: E731
    assert lap(blur) < lap(img) < lap(sharp)


def test_augmented_oversample_plan():
    y = long_tail()
    plan = augmented_oversample(y, threshold=10, seed=0)
    got = Counter(plan.labels)
    assert got == {"e": 5, "f": 5, "g": 7, "h": 8}  # rare classes filled up to 10
    assert plan.counts_after == {**SIZES, "e": 10, "f": 10, "g": 10, "h": 10}
    assert all(y[i] == lab for i, lab in zip(plan.source, plan.labels))
    pairs = list(zip(plan.source.tolist(), plan.ops))
    assert len(set(pairs)) == len(pairs) and set(plan.ops) <= set(AUGMENTATIONS)
    tiny = augmented_oversample(["x"] * 1 + ["y"] * 40, threshold=30, ops=["hflip", "blur"])
    assert len(tiny) == 2  # one image, two ops: cannot reach 30 without repeating a copy
    blog = augmented_oversample(y, threshold=10, mode="all", ops=["red", "green", "blue", "blur", "unsharp"])
    assert Counter(blog.labels) == {"e": 25, "f": 25, "g": 15, "h": 10}  # every op of every rare image


def test_add_augmented_chips_to_a_workspace(tmp_path, ucm_files):
    ws = _ucm_workspace(tmp_path, ucm_files)
    labels = ws.manifest["label"].tolist()
    plan = augmented_oversample(labels, threshold=5, seed=0)
    assert Counter(plan.labels) == {"forest": 1, "harbor": 3}
    imgs = list(plan.images(ws.load_chip))
    assert all(im.dtype == np.uint8 and im.ndim == 3 for im in imgs)
    new = add_augmented_chips(ws, plan)
    assert len(ws) == len(ucm_files) + 4 and len(new) == 4
    rows = ws.manifest.iloc[new]
    assert rows["label"].tolist() == plan.labels
    assert all(list(f) == ["augmented", op] for f, op in zip(rows["flags"], plan.ops))
    np.testing.assert_array_equal(ws.load_chip(int(new[0])), imgs[0])
    again = add_augmented_chips(ws, plan)  # idempotent: same keys, nothing added twice
    np.testing.assert_array_equal(again, new)
    assert len(ws) == len(ucm_files) + 4


# ----------------------------------------------------------------------------- probes
def test_probe_accuracy_and_holdout():
    rng = np.random.default_rng(0)
    y = np.repeat(["p", "q", "r"], 30)
    X = rng.normal(size=(90, 5)) + np.repeat(np.eye(3, 5) * 10, 30, axis=0)
    test = stratified_holdout(y, 0.2, seed=0)
    assert Counter(y[test]) == {"p": 6, "q": 6, "r": 6}
    train = np.setdiff1d(np.arange(90), test)
    acc = probe_accuracy(X[train], y[train], X[test], y[test])
    assert acc == {"knn_acc": 1.0, "linear_acc": 1.0}
    assert Counter(y[stratified_holdout(y, per_class=2, seed=1)]) == {"p": 2, "q": 2, "r": 2}
    with pytest.raises(CuratorError, match="labelled items in both"):
        probe_accuracy(X[:0], y[:0], X, y)


# ----------------------------------------------------------------------------- the iterative loop
@pytest.fixture
def fake_ssl(monkeypatch):
    """Stand-ins for train_ssl/embed with the agreed signatures: the "model" is colour statistics
    weighted by the training chips' colour spread, so the training ids matter."""
    import curator_widgets.embed as embed_mod
    import curator_widgets.train as train_mod

    calls = {"train": [], "embed": []}
    cache: dict = {}

    def stats(ws, i):
        key = ws.manifest["key"].iloc[int(i)]
        if key not in cache:
            cache[key] = _colour_stats(ws.load_chip(int(i)))
        return cache[key]

    def train_ssl(ws, run, ids=None, **kw):
        calls["train"].append((run, None if ids is None else list(ids), kw))
        ids = np.arange(len(ws)) if ids is None else np.asarray(ids)
        feats = np.stack([stats(ws, i) for i in ids])
        ws.model_dir(run).mkdir(parents=True, exist_ok=True)
        np.save(ws.model_dir(run) / "scale.npy", 1.0 / (feats.std(0) + 1e-3))
        return {"run": run}

    def embed(ws, run, **kw):
        calls["embed"].append(run)
        scale = np.load(ws.model_dir(run) / "scale.npy")
        X = np.stack([stats(ws, i) for i in range(len(ws))]) * scale
        path = ws.embeddings_path(run)
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=X.shape)
        mm[:] = X
        mm.flush()
        path.with_suffix(".json").write_text(json.dumps({"run": run, "dim": X.shape[1], "count": len(X)}))
        return path

    monkeypatch.setattr(train_mod, "train_ssl", train_ssl)
    monkeypatch.setattr(embed_mod, "embed", embed)
    return calls


def _colour_stats(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32) / 255
    return np.concatenate([x.mean((0, 1)), x.std((0, 1)), np.abs(np.diff(x, axis=1)).mean((0, 1))])


def test_iterative_balance_loop_logs_plots_and_resumes(tmp_path, ucm_files, fake_ssl):
    ws = _ucm_workspace(tmp_path, ucm_files)
    doc = iterative_balance(ws, rounds=2, n=8, selector="fps", train_kwargs={"epochs": 3}, progress=False)
    assert [r["round"] for r in doc["rounds"]] == [0, 1, 2]
    test_ids = set(doc["test_ids"])
    assert len(test_ids) == 2 + 1 + 1 + 1  # 20% per class, at least one where a class has two or more
    for r in doc["rounds"][1:]:
        assert r["train_size"] == 8 and "class_size_std" in r and 0 <= r["knn_acc"] <= 1 and "linear_acc" in r
        sel = json.loads((ws.root / "samples" / f"balance-fps-8-r{r['round']}.json").read_text())["ids"]
        assert not set(sel) & test_ids  # the held-out set is never selected
        assert sum(r["class_counts"].values()) == 8
    # round 1 is selected with round 0's embeddings, then trained on exactly its selection
    r1_sel = json.loads((ws.root / "samples" / "balance-fps-8-r1.json").read_text())
    assert r1_sel["run"] == "balance-fps-8-r0"
    trained = {run: ids for run, ids, _ in fake_ssl["train"]}
    assert sorted(trained["balance-fps-8-r1"]) == sorted(r1_sel["ids"])
    assert all(kw == {"epochs": 3, "progress": False} for _, _, kw in fake_ssl["train"])
    saved = json.loads((ws.root / "balance" / "fps-8.json").read_text())
    assert saved["rounds"] == doc["rounds"]
    assert (ws.root / "balance" / "fps-8.png").stat().st_size > 1000
    assert ws.meta["balance"]["fps-8"]["rounds"] == 2
    n_calls = len(fake_ssl["train"])
    again = iterative_balance(ws, rounds=2, n=8, selector="fps", train_kwargs={"epochs": 3}, progress=False)
    assert len(fake_ssl["train"]) == n_calls and again["rounds"] == doc["rounds"]  # finished rounds are skipped
    more = iterative_balance(ws, rounds=3, n=8, selector="fps", train_kwargs={"epochs": 3}, progress=False)
    assert len(more["rounds"]) == 4 and len(fake_ssl["train"]) == n_calls + 1  # one more round only


def test_iterative_balance_random_and_callable_selectors(tmp_path, ucm_files, fake_ssl):
    ws = _ucm_workspace(tmp_path, ucm_files)
    rnd = iterative_balance(ws, rounds=1, n=6, selector="random", initial_run=None, plot=False, progress=False)
    picked = []

    def first_rows(X, n, seed=0):
        picked.append(len(X))
        return np.arange(n)

    cb = iterative_balance(ws, rounds=1, n=6, selector=first_rows, name="firsts", progress=False,
                           initial_run=rnd["rounds"][0]["run"])
    assert picked == [len(ws) - len(cb["test_ids"])]  # the selector sees the pool only
    assert cb["rounds"][0]["run"] == rnd["rounds"][0]["run"]  # the bootstrap model is shared
    fig = plot_balance([rnd, cb], labels=["random", "firsts"])
    assert len(fig.axes) == 2


def test_iterative_balance_errors(tmp_path, ucm_files, fake_ssl):
    from curator_widgets.workspace import Workspace

    ws = _ucm_workspace(tmp_path, ucm_files)
    with pytest.raises(CuratorError, match="rounds=0 must be a positive whole number"):
        iterative_balance(ws, rounds=0)
    with pytest.raises(CuratorError, match="cannot select n=500 from a pool of 19"):
        iterative_balance(ws, rounds=1, n=500)
    iterative_balance(ws, rounds=1, n=5, selector="random", plot=False, progress=False)
    with pytest.raises(CuratorError, match="exists in .* with a different n"):
        iterative_balance(ws, rounds=1, n=6, selector="random", name="random-5", progress=False)
    with pytest.raises(CuratorError, match="no chips to balance"):
        iterative_balance(Workspace.create(tmp_path / "empty"), rounds=1, n=5)


# ----------------------------------------------------------------------------- benchmarks stay runnable
@pytest.fixture(scope="module")
def bench_workdir(tmp_path_factory):
    """One workspace for both UC Merced benchmarks, as in a real run: importance sampling reuses round 0."""
    return tmp_path_factory.mktemp("bucm")


def test_biased_ucmerced_benchmark_quick(tmp_path, bench_workdir):
    out = tmp_path / "bucm.json"
    res = load_bench("biased_ucmerced").main(["--quick", "--out", str(out), "--workdir", str(bench_workdir)])
    assert set(res["arms"]) == {"diverse", "random"}
    for arm in res["arms"].values():
        assert [r["round"] for r in arm["rounds"]] == [0, 1]
        assert "class_size_std" in arm["rounds"][1] and "knn_acc" in arm["rounds"][1]


def test_importance_sampling_benchmark_quick(tmp_path, bench_workdir):
    out = tmp_path / "imp.json"
    res = load_bench("importance_sampling").main(["--quick", "--out", str(out), "--workdir", str(bench_workdir)])
    methods = {r["method"] for r in res["table"]}
    assert {"baseline", "undersample", "oversample", "reweight k=2", "oversample augmented"} <= methods
    assert all(0 <= r["low_acc_mean"] <= 1 and 0 <= r["other_acc_mean"] <= 1 for r in res["table"])
    assert json.loads(out.read_text())["quick"] is True
