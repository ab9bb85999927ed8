"""Active learning: acquisition against hand computations, heads, seed sets, the loop, CLI, benchmark."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from curator_widgets import CuratorError, FolderSource, LabelStore, Workspace
from curator_widgets import acquisition as acq
from curator_widgets.active import ActiveLoop, Oracle, seed_set, shift_prior
from curator_widgets.atomic import write_json
from curator_widgets.heads import Head, fit_temperature, softmax
from curator_widgets.labels import TRAIN_SOURCES
from curator_widgets.manifest import rows_to_table, write
from curator_widgets.paths import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]


def _write_embeddings(ws: Workspace, run: str, X: np.ndarray) -> None:
    np.save(ws.embeddings_path(run), X.astype(np.float16))
    write_json(ws.embeddings_path(run).with_suffix(".json"),
               {"run": run, "dim": int(X.shape[1]), "count": int(X.shape[0]), "normalized": False, "model_run": None})


@pytest.fixture(scope="module")
def ucm(tmp_path_factory) -> Workspace:
    """4 UC Merced classes x 30 real images (in place) with 8x8 raw-pixel features as run 'raw8'."""
    from PIL import Image

    root = tmp_path_factory.mktemp("active")
    sub = root / "ucm"
    src = shared_data_dir() / "ucmerced"
    for cls in ("agricultural", "beach", "forest", "runway"):
        (sub / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:30]:
            (sub / cls / f.name).symlink_to(f)
    ws = Workspace.create(root / "ws")
    ws.ingest(FolderSource(sub), size=None, progress=False)
    feats = []
    for i in range(len(ws)):
        with Image.open(ws.chip_path(i)) as im:
            feats.append(np.asarray(im.convert("RGB").resize((8, 8), Image.BOX), dtype=np.float32).ravel() / 255)
    X = np.stack(feats)
    _write_embeddings(ws, "raw8", (X - X.mean(0)) / X.std(0))
    return ws


@pytest.fixture(scope="module")
def easy(tmp_path_factory) -> Workspace:
    """2000 chips, 16-d: a compact positive cluster (8%) well apart from the negatives."""
    rng = np.random.default_rng(0)
    n, d = 2000, 16
    pos = rng.random(n) < 0.08
    X = rng.normal(size=(n, d)) + np.where(pos[:, None], 4.0, 0.0) * (np.arange(d) < 4)
    ws = Workspace.create(tmp_path_factory.mktemp("easy") / "ws")
    write(ws.manifest_path, rows_to_table([{"id": i, "key": f"k{i}", "path": f"chips/{i}.png",
                                            "label": "pos" if p else "neg", "land_fraction": float(p)}
                                           for i, p in enumerate(pos)]))
    ws = Workspace.open(ws.root)
    _write_embeddings(ws, "emb", X)
    return ws


# ----------------------------------------------------------------------------- acquisition
P = np.array([[0.9, 0.1], [0.5, 0.5], [0.3, 0.7], [0.05, 0.95], [0.6, 0.4]], dtype=np.float32)


def test_uncertainty_scores_match_hand_computation():
    assert np.allclose(acq.least_confidence(P), [0.1, 0.5, 0.3, 0.05, 0.4])
    assert np.allclose(acq.margin(P), [0.2, 1.0, 0.6, 0.1, 0.8])
    ent = [-(a * np.log(a) + b * np.log(b)) for a, b in P.tolist()]
    assert np.allclose(acq.entropy(P), ent, atol=1e-6)
    assert np.allclose(acq.top_positive(P), [0.1, 0.5, 0.7, 0.95, 0.4])
    assert np.allclose(acq.gaussian_weights(P, sigma=0.2), np.exp(-0.5 * ((P[:, 1] - 0.5) / 0.2) ** 2))
    three = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.8, 0.1, 0.1]], dtype=np.float32)
    assert np.allclose(acq.margin(three), [0.8, 1.0, 0.3])
    assert np.allclose(acq.least_confidence(three), [0.5, 0.6, 0.2])
    for strategy, first in [("least_confidence", [1, 4]), ("margin", [1, 4]), ("entropy", [1, 4]),
                            ("top_positive", [3, 2])]:
        assert acq.select(P, 2, strategy).tolist() == first
    assert acq.top_n(np.array([1.0, 3.0, 3.0, 2.0]), 3).tolist() == [1, 2, 3]  # ties broken by index


def test_gaussian_and_random_sampling_are_weighted_and_seeded():
    p = np.linspace(0, 1, 101, dtype=np.float32)
    probs = np.stack([1 - p, p], 1)
    picks = np.concatenate([acq.select(probs, 5, "gaussian", seed=s) for s in range(300)])
    dist = np.abs(p[picks] - 0.5)
    assert dist.mean() < 0.2 and (dist < 0.1).mean() > 0.3  # concentrated at the boundary, not only there
    assert len(set(acq.select(probs, 20, "gaussian", seed=1).tolist())) == 20  # without replacement
    assert acq.select(probs, 7, "random", seed=3).tolist() == acq.select(probs, 7, "random", seed=3).tolist()
    assert acq.select(probs, 7, "random", seed=3).tolist() != acq.select(probs, 7, "random", seed=4).tolist()


def _three_blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three tight blobs of 10 points; blob 0 is slightly the most uncertain."""
    rng = np.random.default_rng(0)
    centers = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=np.float32)
    X = np.concatenate([c + 0.05 * rng.normal(size=(10, 3)) for c in centers]).astype(np.float32)
    p = np.concatenate([np.full(10, 0.5), np.full(10, 0.45), np.full(10, 0.4)]) + 0.001 * rng.random(30)
    return X, np.stack([1 - p, p], 1).astype(np.float32)


@pytest.mark.parametrize("diversity", ["proximity", "kmeans", "coreset"])
def test_diversity_spreads_the_batch_over_blobs(diversity):
    X, probs = _three_blobs()
    plain = acq.select(probs, 3, "margin")
    assert set((plain // 10).tolist()) == {0}  # uncertainty alone: three near-copies
    picked = acq.select(probs, 3, "margin", diversity=diversity, X=X, pool_factor=10, proximity_weight=2.0)
    assert sorted((picked // 10).tolist()) == [0, 1, 2]  # one per blob
    assert picked[0] // 10 == 0  # the most informative comes first
    assert acq.select(probs, 3, f"margin+{diversity}", X=X, proximity_weight=2.0).tolist() == picked.tolist()


def test_a_proximity_batch_larger_than_a_group_is_picked_group_by_group():
    """grouped_proximity equals iterative_proximity for one group, and a later group keeps away from earlier picks."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    s = rng.random(300)
    rows = np.arange(300)
    one = acq.grouped_proximity(X, rows, s, 20, pool_factor=5, group=20)
    pool = acq.top_n(s, 100)
    assert one.tolist() == pool[acq.iterative_proximity(X[pool], s[pool], 20)].tolist()
    many = acq.grouped_proximity(X, rows, s, 50, pool_factor=5, group=20)
    assert len(set(many.tolist())) == 50 and many[:20].tolist() == one.tolist()
    # two tight pairs: A (best scores) and B; with groups of one, the second pick leaves A for B
    X2 = np.array([[1, 0], [1, 0.01], [0, 1], [0, 1.01]], dtype=np.float32)
    s2 = np.array([1.0, 0.99, 0.5, 0.49])
    assert acq.grouped_proximity(X2, np.arange(4), s2, 2, pool_factor=4, group=1, weight=2.0).tolist() == [0, 2]
    P = np.stack([1 - s, s], 1)
    big = acq.select(P, acq.PROXIMITY_GROUP + 6, "entropy+proximity", X=X)
    assert len(set(big.tolist())) == acq.PROXIMITY_GROUP + 6


def test_iterative_proximity_by_hand():
    X = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype=np.float32)
    s = np.array([1.0, 0.9, 0.0])
    # first pick 0 (score 1). Then totals: point1 0.9 + 0.5*d(1)/dmax, point2 0 + 0.5*1 -> d measured on unit vectors
    u = X / np.linalg.norm(X, axis=1, keepdims=True)
    d = np.linalg.norm(u - u[0], axis=1)
    total = s / s.max() + 0.5 * d / d.max()
    assert acq.iterative_proximity(X, s, 2, weight=0.5).tolist() == [0, int(np.argmax(np.where([0, 1, 1], total, -9)))]
    assert acq.iterative_proximity(X, s, 2, weight=5.0).tolist() == [0, 2]  # strong diversity jumps away


def test_select_candidates_and_errors():
    X, probs = _three_blobs()
    mask = np.zeros(30, dtype=bool)
    mask[20:] = True
    assert set(acq.select(probs, 4, "margin", candidates=mask).tolist()) <= set(range(20, 30))
    assert acq.select(probs, 4, "entropy", candidates=np.array([3, 25])).tolist() == [3, 25]
    assert acq.select(probs, 4, "entropy", candidates=np.array([], dtype=np.int64)).size == 0
    with pytest.raises(CuratorError, match=re.escape("acquisition 'entropy+magic' is not a strategy")):
        acq.select(probs, 2, "entropy+magic")
    with pytest.raises(CuratorError, match="acquisition 'confidence' is not a strategy"):
        acq.parse_strategy("confidence")
    with pytest.raises(CuratorError, match="diversity given twice"):
        acq.select(probs, 2, "entropy+kmeans", diversity="coreset", X=X)
    with pytest.raises(CuratorError, match="diversity 'kmeans' needs the embeddings"):
        acq.select(probs, 2, "entropy+kmeans")
    with pytest.raises(CuratorError, match="batch size must be at least 1"):
        acq.select(probs, 0, "entropy")
    with pytest.raises(CuratorError, match="probabilities must be"):
        acq.select(probs[:, :1], 2, "entropy")


def test_million_scores_in_one_pass():
    rng = np.random.default_rng(0)
    p = rng.random(1_000_000).astype(np.float32)
    probs = np.stack([1 - p, p], 1)
    picked = acq.select(probs, 64, "margin")
    assert len(picked) == 64 and np.all(np.abs(p[picked] - 0.5) <= np.sort(np.abs(p - 0.5))[63] + 1e-7)
    # entropy is flat at its maximum; float32 probabilities (1 - p rounded) limit it to ~1e-4 here
    assert np.all(np.abs(p[acq.select(probs, 64, "entropy")] - 0.5) < 1e-4)


# ----------------------------------------------------------------------------- heads
def _blobs(n: int = 400, d: int = 8, frac: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < frac).astype(np.int64)
    X = rng.normal(size=(n, d)).astype(np.float32) + 1.5 * y[:, None] * (np.arange(d) < 2)
    return X, y


def test_fit_temperature_matches_brute_force():
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(200, 2)) * 6).astype(np.float32)
    y = (rng.random(200) < softmax(logits / 3.0)[:, 1]).astype(np.int64)  # true temperature 3
    t = fit_temperature(logits, y)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
    nll = [-np.log(softmax(logits / g)[np.arange(200), y]).mean() for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nll))], rel=1e-5)
    assert 1.5 < t < 6


def test_logistic_head_fits_warm_starts_calibrates_and_round_trips(tmp_path):
    X, y = _blobs()
    head = Head("logistic", device="cpu")
    head.fit(X[:200], y[:200])
    assert head.rounds == 1 and head.calibration["method"] == "cv3" and head.temperature > 0
    p = head.predict_proba(X[200:])
    assert p.shape == (200, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert ((p[:, 1] > 0.5) == y[200:]).mean() > 0.85
    w1 = head.params["W"].clone()
    head.fit(X[:300], y[:300])  # warm start: continues from round 1's weights
    assert head.rounds == 2 and not np.allclose(head.params["W"].numpy(), w1.numpy())
    head.save(tmp_path / "head.pt")
    again = Head.load(tmp_path / "head.pt", device="cpu")
    assert again.rounds == 2 and np.allclose(again.predict_proba(X), head.predict_proba(X), atol=1e-6)
    # float16 input takes the folded fp16 path and agrees with float32
    X16 = X.astype(np.float16)
    assert np.allclose(head.predict_logits(X16), head.predict_logits(X16.astype(np.float32)), atol=0.05)
    # held-out calibration when a split is given
    head.fit(X[:300], y[:300], X[300:], y[300:])
    assert head.calibration["method"] == "holdout"


@pytest.mark.parametrize("n, d", [(60, 100), (400, 8)])  # Woodbury (labels < dims) and primal Newton systems
def test_newton_solution_matches_lbfgs(monkeypatch, n, d):
    import curator_widgets.heads as heads

    X, y = _blobs(n=n, d=d, seed=7)
    newton = Head("logistic", device="cpu", calibrate=None).fit(X, y)
    monkeypatch.setattr(heads, "NEWTON_MAX", 0)  # force the general L-BFGS path
    lbfgs = Head("logistic", device="cpu", calibrate=None, steps=1000).fit(X, y)
    assert np.allclose(newton.predict_proba(X), lbfgs.predict_proba(X), atol=5e-3)


def test_newton_cg_path_matches_the_exact_stacked_newton(monkeypatch):
    """Above NEWTON_CG_DIM dims the head solves its main head by float32-Hessian Newton steps and the fold heads
    by preconditioned conjugate gradients: same weights, calibration and probabilities as the exact solver."""
    import curator_widgets.heads as heads

    X, y = _blobs(n=500, d=60, frac=0.3, seed=4)
    fits = {}
    for name, limit in (("cg", 16), ("exact", 1 << 30)):
        monkeypatch.setattr(heads, "NEWTON_CG_DIM", limit)
        head = Head("logistic", device="cpu")
        head.fit(X[:440], y[:440])
        head.fit(X, y)  # warm-started, as in a loop's next round
        fits[name] = head
    cg, exact = fits["cg"], fits["exact"]
    assert cg.calibration["method"] == exact.calibration["method"] == "cv3"
    assert cg.temperature == pytest.approx(exact.temperature, rel=1e-6)
    assert np.allclose(cg.params["W"].numpy(), exact.params["W"].numpy(), atol=1e-4)
    assert np.allclose(cg.predict_proba(X), exact.predict_proba(X), atol=1e-5)


def test_heads_speed_benchmark_quick(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("heads_speed", ROOT / "benchmarks" / "heads_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "hs.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {r["solver"] for r in res["table"]} == {"newton-pcg (now)", "stacked exact newton (before)"}
    assert res["max_probability_difference"] < 1e-4 and all(r["wall_s"] > 0 for r in res["table"])
    assert res["machine"]["cpus"] and res["seeds"] == [0]


def test_class_weights_balance_a_rare_class():
    X, y = _blobs(n=600, frac=0.05, seed=2)
    head = Head("logistic", device="cpu", calibrate=None)
    w = head._class_weights(y).numpy()
    n1 = y.sum()
    assert np.allclose(w, [len(y) / (2 * (len(y) - n1)), len(y) / (2 * n1)])
    recall_w = (head.fit(X, y).predict_proba(X)[y == 1, 1] > 0.5).mean()
    plain = Head("logistic", device="cpu", calibrate=None, class_weight=None).fit(X, y)
    recall_plain = (plain.predict_proba(X)[y == 1, 1] > 0.5).mean()
    assert recall_w > recall_plain


def test_mlp_head_multiclass():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 450)
    X = (rng.normal(size=(450, 6)) + 3 * np.eye(3, 6)[y]).astype(np.float32)
    head = Head("mlp", n_classes=3, hidden=32, device="cpu")
    head.fit(X[:300], y[:300])
    assert (head.predict_proba(X[300:]).argmax(1) == y[300:]).mean() > 0.9
    assert head.calibration["method"] == "cv3"


def test_head_errors(tmp_path):
    X, y = _blobs()
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CuratorError, match="cannot load classifier head .*bad.pt"):
        Head.load(tmp_path / "bad.pt")
    with pytest.raises(CuratorError, match="head kind 'svm' is not one of"):
        Head("svm")
    with pytest.raises(CuratorError, match="need labels of at least two classes"):
        Head(device="cpu").fit(X[:10], np.zeros(10, dtype=int))
    with pytest.raises(CuratorError, match="this head is not trained yet"):
        Head(device="cpu").predict_proba(X)
    head = Head(device="cpu").fit(X, y)
    with pytest.raises(CuratorError, match="the head was trained on 8 dims"):
        head.predict_proba(X[:, :4])
    with pytest.raises(CuratorError, match="class indices must be 0..1"):
        Head(device="cpu").fit(X[:4], [0, 1, 2, 0])
    with pytest.raises(CuratorError, match="calibrate='holdout' but no held-out split"):
        Head(device="cpu", calibrate="holdout").fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(CuratorError, match="asked for, but torch sees no CUDA GPU"):
            Head(device="cuda")
    else:  # the GPU path of the head: same classifier as on the CPU
        p_gpu, p_cpu = Head(device="cuda").fit(X, y).predict_proba(X), head.predict_proba(X)
        assert np.abs(p_gpu - p_cpu).max() < 0.05 and (p_gpu.argmax(1) == p_cpu.argmax(1)).mean() > 0.99


def test_prior_shift_is_bayes_rule():
    # x ~ N(+1, 1) for positives, N(-1, 1) for negatives: with equal priors p = sigmoid(2x); with
    # a 10% prior Bayes gives 0.1 f1 / (0.1 f1 + 0.9 f0) = sigmoid(2x + log(1/9))
    x = np.linspace(-3, 3, 61)
    p = 1 / (1 + np.exp(-2 * x))
    assert np.allclose(shift_prior(p, 0.1), 1 / (1 + np.exp(-(2 * x + np.log(1 / 9)))))
    assert np.allclose(shift_prior(p, 0.5), p) and np.allclose(shift_prior(shift_prior(p, 0.2), 0.5, 0.2), p)


# ----------------------------------------------------------------------------- seed set
def test_seed_set_composition(ucm):
    X = np.asarray(np.load(ucm.embeddings_path("raw8")), dtype=np.float32)
    store = LabelStore(ucm, task="seed-test")
    ref = 35  # a beach
    s = seed_set(ucm, "raw8", reference=ref, k=10, r=5, store=store, seed=1)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = Xn @ Xn[ref]
    sims[ref] = -np.inf
    brute = np.argsort(-sims)[:10]
    assert s.reference == [ref] and len(s.neighbours) == 10
    assert len(set(s.neighbours) & set(brute.tolist())) >= 9  # the index is exact at this size
    assert len(s.random) == 5 and not (set(s.random) & (set(s.neighbours) | {ref}))
    assert s.ids == [ref, *s.neighbours, *s.random] and len(set(s.ids)) == 16
    assert store.current() == {ref: "positive"} and store.events()["source"].tolist() == ["seed"]
    assert store.next_in_queue(100) == [*s.neighbours, *s.random] and s.queued == 15
    assert ucm.index_path("raw8").exists()  # built on first use
    # several references: mean query, all of them labelled, none of them returned as neighbours
    store2 = LabelStore(ucm, task="seed-multi")
    s2 = seed_set(ucm, "raw8", reference=[35, 36, 37], k=8, r=0, store=store2)
    assert not set(s2.neighbours) & {35, 36, 37} and len(s2.neighbours) == 8 and s2.random == []
    assert set(store2.current()) == {35, 36, 37}


def test_seed_set_errors(ucm):
    with pytest.raises(CuratorError, match=r"reference chip id\(s\) \[500\] are not in this workspace"):
        seed_set(ucm, "raw8", reference=500)
    with pytest.raises(CuratorError, match="is neither a chip id nor an existing image file"):
        seed_set(ucm, "raw8", reference="no/such/file.png")
    with pytest.raises(CuratorError, match="must be non-negative and not both zero"):
        seed_set(ucm, "raw8", reference=1, k=0, r=0)
    with pytest.raises(CuratorError, match="no embeddings for run 'nope'|has no embeddings"):
        seed_set(ucm, "nope", reference=1)


def test_seed_set_from_an_image_file_uses_the_trained_model(ucm):
    from curator_widgets.embed import embed
    from curator_widgets.train import train_ssl

    train_ssl(ucm, run="tiny", backbone="small_cnn", image_size=32, epochs=1, batch_size=64, knn=False,
              progress=False, seed=0)
    embed(ucm, "tiny", progress=False)
    path = ucm.chip_path(50)  # the user's own file: the same pixels as chip 50
    s = seed_set(ucm, "tiny", reference=str(path), k=5, r=3, store=LabelStore(ucm, task="seed-image"))
    assert s.reference == [] and s.reference_image == str(path)
    assert s.neighbours[0] == 50 and len(s.neighbours) == 5 and len(s.random) == 3


# ----------------------------------------------------------------------------- the loop
def test_oracle_loop_converges_on_an_easy_set(easy):
    loop = ActiveLoop(easy, "emb", name="converge", strategy="entropy+kmeans", batch_size=32, budget=0.12,
                      stability=0.0)
    oracle = Oracle(easy, positive="pos")
    ref = int(np.flatnonzero(easy.manifest["label"] == "pos")[0])
    loop.seed(ref, k=32, r=32)
    hist = loop.run(oracle)
    assert loop.stopped == "budget" and hist["labelled_pct"].iloc[-1] >= 12
    last = hist.iloc[-1]
    assert last["true_f1"] >= 0.95 and last["true_recall"] >= 0.95
    total = int((easy.manifest["label"] == "pos").sum())
    assert abs(last["estimated_positives_left"] - last["true_positives_left"]) <= max(5, 0.2 * total)
    assert hist["positives_found"].is_monotonic_increasing
    ranked = loop.predicted_positives()
    assert ranked["p"].is_monotonic_decreasing and len(ranked) >= 0.95 * total
    negatives = {i for i, lab in loop.store.current().items() if lab == "negative"}
    assert not negatives & set(ranked["id"])


def test_loop_resumes_after_a_restart(easy):
    oracle = Oracle(easy, positive="pos")
    loop = ActiveLoop(easy, "emb", name="resume", strategy="margin+coreset", batch_size=16, budget=0.5,
                      stability=0.0)
    loop.seed(int(np.flatnonzero(easy.manifest["label"] == "pos")[0]), k=16, r=16)
    first = loop.step(oracle)
    assert first.round == 1 and len(first.batch) == 16
    del loop  # the kernel restarts
    again = ActiveLoop(easy, "emb", name="resume")
    assert again.round == 1 and again.config["strategy"] == "margin" and again.config["diversity"] == "coreset"
    assert again.head().rounds == 1  # the head is reloaded, so round 2 warm-starts from it
    assert again.seed(0).neighbours == first_seed_neighbours(again)  # the seed set is not rebuilt
    second = again.step(oracle)
    assert second.round == 2 and again.head().rounds == 2 and len(again.history()) == 2
    assert not set(second.batch) & set(first.batch)
    assert again.scores().shape == (len(easy), 2)


def first_seed_neighbours(loop: ActiveLoop) -> list[int]:
    return loop.state["seed_set"]["neighbours"]


def test_stopping_rules(easy):
    oracle = Oracle(easy, positive="pos")
    ref = int(np.flatnonzero(easy.manifest["label"] == "pos")[0])
    rounds = ActiveLoop(easy, "emb", name="stop-rounds", batch_size=8, max_rounds=2, stability=0.0)
    rounds.seed(ref, k=8, r=8)
    rounds.run(oracle)
    assert rounds.stopped == "max_rounds" and rounds.round == 2
    stable = ActiveLoop(easy, "emb", name="stop-stable", batch_size=8, stability=1.0, patience=2)
    stable.seed(ref, k=8, r=8)
    stable.run(oracle)
    # round 1 has no earlier prediction to compare with; rounds 2 and 3 are the two stable ones
    assert stable.stopped == "stable" and stable.round == 3
    res = stable.step(oracle)  # a stopped loop does nothing more
    assert res.batch == [] and res.stopped == "stable" and stable.round == 3


def test_human_labels_drive_the_loop_and_model_labels_never_train(easy):
    loop = ActiveLoop(easy, "emb", name="human", batch_size=10, budget=0.5, stability=0.0)
    ref = int(np.flatnonzero(easy.manifest["label"] == "pos")[0])
    loop.seed(ref, k=10, r=10)
    with pytest.raises(CuratorError, match="20 queued chips are not labelled yet"):
        loop.step()
    truth = Oracle(easy, positive="pos").truth(loop.store)
    for cid in loop.store.next_in_queue(100):  # a person labels the seed set in the widget
        loop.store.add(cid, truth[cid], annotator="alice")
    res = loop.step()
    assert loop.store.next_in_queue(100) == res.batch and len(res.batch) == 10
    assert "true_f1" not in res.metrics  # no oracle: no ground truth
    before = loop.store.current(sources=TRAIN_SOURCES)
    added = loop.accept_predictions()
    assert added > 0 and loop.store.current(sources=TRAIN_SOURCES) == before
    assert (loop.store.events()["source"] == "model").sum() == added


def _label_queue_as_a_person(loop: ActiveLoop, truth: np.ndarray) -> list[int]:
    """What a person does in the SwipeLabeler: label every chip the queue shows, nothing else."""
    shown = loop.store.next_in_queue(1 << 30)
    for cid in shown:
        loop.store.add(cid, truth[cid], annotator="alice")
    return shown


def test_human_and_oracle_paths_queue_the_same_chips_after_accepting_predictions(easy):
    """Model labels (accept_predictions) never hide a chip from a person: the human path and the oracle
    path pick, queue and label the same chips, round after round."""
    ref = int(np.flatnonzero(easy.manifest["label"] == "pos")[0])
    oracle = Oracle(easy, positive="pos")
    opts = dict(strategy="top_positive", batch_size=12, budget=0.5, stability=0.0)
    human = ActiveLoop(easy, "emb", name="paths-human", **opts)
    robot = ActiveLoop(easy, "emb", name="paths-oracle", **opts)
    truth = oracle.truth(human.store)
    for loop in (human, robot):
        loop.seed(ref, k=12, r=12)
    _label_queue_as_a_person(human, truth)
    h1, o1 = human.step(), robot.step(oracle)
    assert h1.batch == o1.batch and human.store.next_in_queue(100) == h1.batch
    assert human.accept_predictions() > 0 and robot.accept_predictions() > 0
    # the queued batch was among the predicted positives: a model label must not take it off the queue
    assert set(h1.batch) <= set(human.store.current()) and human.store.next_in_queue(100) == h1.batch
    for _ in range(2):
        shown = _label_queue_as_a_person(human, truth)
        h, o = human.step(), robot.step(oracle)
        assert h.batch == o.batch and len(h.batch) == 12
        model_only = set(human.store.current()) - set(human.store.current(sources=TRAIN_SOURCES))
        assert shown and set(shown) <= set(human.store.current(sources=TRAIN_SOURCES))
        assert human.store.next_in_queue(100) == h.batch and set(h.batch) & model_only  # picked and queued
    _label_queue_as_a_person(human, truth)
    assert human.store.current(sources=TRAIN_SOURCES) == robot.store.current(sources=TRAIN_SOURCES)


def test_undo_of_a_relabel_does_not_block_the_next_round(easy):
    loop = ActiveLoop(easy, "emb", name="undo-relabel", batch_size=8, budget=0.5, stability=0.0)
    loop.seed(int(np.flatnonzero(easy.manifest["label"] == "pos")[0]), k=8, r=8)
    truth = Oracle(easy, positive="pos").truth(loop.store)
    shown = _label_queue_as_a_person(loop, truth)
    loop.store.add(shown[0], "unsure")  # second thoughts
    assert loop.store.undo() == [shown[0]] and loop.store.queue_pending() == 0
    assert loop.step().round == 1  # was: "1 queued chips are not labelled yet"
    loop.store.undo(1, source="human")  # undoing a chip's only label does put it back
    assert loop.store.next_in_queue(1) == [shown[-1]]


def test_step_is_labels_fit_score_measure_select_persist(easy):
    """step() is its public stages in order: running them by hand gives the same round."""
    ref = int(np.flatnonzero(easy.manifest["label"] == "pos")[0])
    oracle = Oracle(easy, positive="pos")
    a = ActiveLoop(easy, "emb", name="stages-a", strategy="entropy+kmeans", batch_size=10, stability=0.0)
    b = ActiveLoop(easy, "emb", name="stages-b", strategy="entropy+kmeans", batch_size=10, stability=0.0)
    for loop in (a, b):
        loop.seed(ref, k=10, r=10)
        oracle.answer(loop.store, loop.store.next_in_queue(100))
    res = a.step()
    data = b.labels()
    assert data.round == 1 and len(data.ids) == 21 and data.unsure == 0
    assert b.fit(data)
    P = b.score()
    metrics = b.measure(data, P, None)
    batch = b.select(data, P)
    assert b.round == 0 and b.store.queue_pending() == 0  # nothing written before persist
    b.persist(data.round, P, metrics, batch, None, {})
    assert batch == res.batch and b.store.next_in_queue(100) == batch and b.round == 1
    assert np.array_equal(a.scores(), b.scores())
    assert {k: v for k, v in metrics.items() if k not in ("seconds", "time")} == \
        {k: v for k, v in res.metrics.items() if k not in ("seconds", "time")}


def test_loop_on_a_sub_pool(easy):
    """pool=: the seed set, the batches, the scores, the metrics and the curated set stay inside it."""
    labels = easy.manifest["label"].to_numpy()
    pool = np.arange(0, len(easy), 2)  # the even chips
    pos = np.flatnonzero(labels == "pos")
    ref = int(pos[pos % 2 == 0][0])
    oracle = Oracle(easy, positive="pos")
    loop = ActiveLoop(easy, "emb", name="sub-pool", pool=pool, batch_size=16, budget=0.2, stability=0.0)
    seeds = loop.seed(ref, k=16, r=16)
    assert set(seeds.neighbours + seeds.random) <= set(pool.tolist()) and len(seeds.random) == 16
    hist = loop.run(oracle, rounds=3)
    assert all(c % 2 == 0 for c in loop.store.current()) and len(hist) == 3
    P = loop.scores()
    assert np.isnan(P[1::2]).all() and not np.isnan(P[::2]).any()
    last = hist.iloc[-1]
    assert last["labelled_pct"] == pytest.approx(100 * last["labelled"] / len(pool))
    assert last["true_positives_total"] == int((labels[pool] == "pos").sum())
    assert last["true_recall"] > 0.9
    ranked = loop.predicted_positives()
    assert len(ranked) and (ranked["id"] % 2 == 0).all()
    again = ActiveLoop(easy, "emb", name="sub-pool")  # resumes on its pool
    assert np.array_equal(again.pool, pool) and again.summary()["pool"] == len(pool)
    with pytest.raises(CuratorError, match="runs on another pool"):
        ActiveLoop(easy, "emb", name="sub-pool", pool=[1, 3])
    with pytest.raises(CuratorError, match=r"pool ids \[5000\] are not in this workspace"):
        ActiveLoop(easy, "emb", name="sub-pool-bad", pool=[1, 5000])


class CentroidHead:
    """A plugged-in head: nearest class centroid over the full matrix, softmax of negative distances."""

    kind = "centroid"

    def __init__(self, n_classes: int = 2, seed: int = 0, device: str | None = None, scale: float = 1.0):
        self.n_classes, self.scale, self.fits = n_classes, scale, []

    def fit(self, X, y, *, ids):
        rows = np.asarray(X[ids], dtype=np.float32)
        self.fits.append((len(X), np.asarray(ids).copy()))
        self.centroids = np.stack([rows[y == c].mean(0) for c in range(self.n_classes)])
        return self

    def predict_proba(self, X, ids=None):
        rows = np.asarray(X if ids is None else X[ids], dtype=np.float32)
        d = ((rows[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        return softmax(-self.scale * d).astype(np.float32)


def test_a_plugged_in_head_object_and_a_registered_kind(easy):
    from curator_widgets.heads import ClassifierHead, head_kinds, register_head

    ref = int(np.flatnonzero(easy.manifest["label"] == "pos")[0])
    oracle = Oracle(easy, positive="pos")
    head = CentroidHead()
    assert isinstance(head, ClassifierHead)
    loop = ActiveLoop(easy, "emb", name="plug-object", head=head, batch_size=16, max_rounds=2, stability=0.0)
    loop.seed(ref, k=16, r=16)
    loop.run(oracle)
    assert loop.config["head"] == "centroid" and len(head.fits) == 2
    n_rows, ids = head.fits[-1]
    assert n_rows == len(easy) and set(ids.tolist()) == set(loop.store.current(TRAIN_SOURCES))  # full matrix + ids
    assert loop.history().iloc[-1]["true_recall"] > 0.9 and not (loop.dir / "head.pt").exists()
    with pytest.raises(CuratorError, match="head kind 'centroid' is not one of"):
        ActiveLoop(easy, "emb", name="plug-object").head()  # resumed without the object, kind unknown
    register_head("centroid", CentroidHead)
    assert "centroid" in head_kinds()
    resumed = ActiveLoop(easy, "emb", name="plug-object")
    assert isinstance(resumed.head(), CentroidHead)
    by_kind = ActiveLoop(easy, "emb", name="plug-kind", head="centroid", head_options={"scale": 2.0}, max_rounds=1)
    assert by_kind.head().scale == 2.0
    with pytest.raises(CuratorError, match="has no fit"):
        ActiveLoop(easy, "emb", name="plug-bad", head=object())
    with pytest.raises(CuratorError, match="cannot be registered"):
        register_head("logistic", CentroidHead)


def test_loop_plot_and_errors(easy, tmp_path):
    loop = ActiveLoop(easy, "emb", name="plot", batch_size=8, max_rounds=2)
    with pytest.raises(CuratorError, match="no rounds yet"):
        loop.plot(tmp_path / "lc.png")
    with pytest.raises(CuratorError, match="no round has been fitted yet"):
        loop.scores()
    loop.seed(int(np.flatnonzero(easy.manifest["label"] == "pos")[0]), k=8, r=8)
    loop.run(Oracle(easy, positive="pos"))
    loop.plot(tmp_path / "lc.png")
    assert (tmp_path / "lc.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(CuratorError, match="active loop 'plot' was built on embedding run 'emb', not 'other'"):
        ActiveLoop(easy, "other", name="plot")
    with pytest.raises(CuratorError, match="budget=2.0 is a fraction"):
        ActiveLoop(easy, "emb", name="bad1", budget=2.0)
    with pytest.raises(CuratorError, match="batch_size=0 must be at least 1"):
        ActiveLoop(easy, "emb", name="bad2", batch_size=0)
    with pytest.raises(CuratorError, match="acquisition 'guess' is not a strategy"):
        ActiveLoop(easy, "emb", name="bad3", strategy="guess")
    (easy.root / "active" / "corrupt").mkdir(parents=True)
    (easy.root / "active" / "corrupt" / "state.json").write_text("{not json")
    with pytest.raises(CuratorError, match="state .* is corrupt"):
        ActiveLoop(easy, "emb", name="corrupt")
    with pytest.raises(CuratorError, match="the manifest has no column 'nope'"):
        Oracle(easy, column="nope")
    with pytest.raises(CuratorError, match=r"holds values \['neg', 'pos'\] outside the label set"):
        Oracle(easy).truth(LabelStore(easy, task="x"))


def test_oracle_rules(easy):
    store = LabelStore(easy, task="oracle")
    by_value = Oracle(easy, positive="pos").truth(store)
    by_rule = Oracle(easy, column="land_fraction", positive=lambda v: v >= 0.5).truth(store)
    assert (by_value == by_rule).all() and set(by_value) == {"positive", "negative"}
    multi = LabelStore(easy, label_set=("neg", "pos"), task="oracle-multi")
    assert Oracle(easy).answer(multi, [0, 1, 2]) == 3
    assert set(multi.current().values()) <= {"neg", "pos"}


# ----------------------------------------------------------------------------- CLI
def test_cli_label_reads_keys_and_writes_at_once(easy, monkeypatch, capsys):
    from curator_widgets.cli import main

    store = LabelStore(easy, task="cli-label")
    store.queue_add([5, 6, 7, 8])
    answers = iter(["y", "n", "maybe", "undo", "u", "s", "y", "q"])
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt="": (prompts.append(prompt), next(answers))[1])
    assert main(["label", "-w", str(easy.root), "--task", "cli-label"]) == 0
    out = capsys.readouterr().out
    assert "'maybe' is not a choice" in out and "undid chip 6" in out
    assert prompts[0] == f"[4 left] chip 5  {easy.chip_path(5)}\n> "  # the path is shown for every chip
    # 5=positive, 6=negative then undone, relabelled unsure, 7 skipped, 8=positive
    assert store.current() == {5: "positive", 6: "unsure", 8: "positive"} and store.next_in_queue(5) == [7]
    monkeypatch.setattr("builtins.input", lambda prompt="": (_ for _ in ()).throw(EOFError()))
    assert main(["label", "-w", str(easy.root), "--task", "cli-label", "--ids", "9"]) == 0
    capsys.readouterr()
    assert main(["label", "-w", str(easy.root), "--task", "cli-label", "--status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["queued"] == 2 and status["counts"] == {"negative": 0, "positive": 2, "unsure": 1}
    assert store.next_in_queue(5) == [9, 7]  # --ids go to the front
    assert main(["label", "-w", str(easy.root), "--task", "cli-label", "--export", str(easy.root / "o.csv")]) == 0
    assert (easy.root / "o.csv").read_text().count("\n") == 3  # header + 2 (unsure is left out)


def test_cli_active_with_oracle(easy, tmp_path, capsys):
    from curator_widgets.cli import main

    ref = str(int(np.flatnonzero(easy.manifest["label"] == "pos")[0]))
    args = ["active", "-w", str(easy.root), "--run", "emb", "--name", "cli", "-k", "16", "-r", "16",
            "--batch-size", "16", "--budget", "0.05"]
    assert main(args) == 2  # no seed set yet and nothing labelled
    assert "start it with --reference" in capsys.readouterr().err
    rc = main([*args, "--reference", ref, "--oracle-column", "label", "--oracle-positive", "pos",
               "--plot", str(tmp_path / "lc.png"), "--export", str(tmp_path / "ranked.csv")])
    out = capsys.readouterr().out
    assert rc == 0 and "seed set: 1 reference, 16 neighbours, 16 random" in out and "stopped: " in out
    assert (tmp_path / "lc.png").exists() and (tmp_path / "ranked.csv").read_text().startswith("id,p,label,path")
    assert main([*args, "--status"]) == 0
    assert json.loads(capsys.readouterr().out)["stopped"] in ("budget", "stable")
    # without an oracle: the seed set waits in the queue for a person
    assert main(["active", "-w", str(easy.root), "--run", "emb", "--name", "cli-human", "--reference", ref,
                 "-k", "4", "-r", "4"]) == 0
    assert "chips wait for labels: run `curator label" in capsys.readouterr().out


def test_demo_active_step_on_blue_marble(tmp_path):
    """The demo's active step: reference land chip, oracle from land_fraction, two rounds, exports."""
    from PIL import Image

    from curator_widgets import BlueMarbleSource
    from curator_widgets.demo import step_active

    ws = Workspace.create(tmp_path / "demo")
    ws.ingest(BlueMarbleSource(level=3), region=(-20, -10, 25, 30), size=64, progress=False)
    assert step_active(ws, {"seed": 0}) == {"skipped": "no embeddings in the workspace yet (the embed step makes them)"}
    feats = []
    for i in range(len(ws)):
        with Image.open(ws.chip_path(i)) as im:
            feats.append(np.asarray(im.convert("RGB").resize((4, 4), Image.BOX), dtype=np.float32).ravel())
    X = np.stack(feats)
    _write_embeddings(ws, "pixels", (X - X.mean(0)) / (X.std(0) + 1e-6))
    out = step_active(ws, {"seed": 0})
    assert out["run"] == "pixels" and out["rounds"] == 2 and out["true_f1"] > 0.8
    land = ws.manifest["land_fraction"].to_numpy()
    assert land[out["reference"]] >= 0.5
    assert Path(out["labels_csv"]).exists() and (ws.root / "exports" / "demo-land-predicted.csv").exists()
    assert (ws.root / "active" / "demo-land" / "learning_curve.png").exists()
    again = step_active(ws, {"seed": 0})  # resumable: a finished loop is not run again
    assert again["rounds"] == 2 and again["labelled_pct"] == out["labelled_pct"]


def test_multiclass_loop(easy):
    rng = np.random.default_rng(5)
    store = LabelStore(easy, label_set=("a", "b", "c"), task="three")
    with pytest.raises(CuratorError, match="strategy 'top_positive' needs a binary task"):
        ActiveLoop(easy, "emb", name="three", store=store, strategy="top_positive")
    loop = ActiveLoop(easy, "emb", name="three", store=store, head="mlp", strategy="margin+kmeans", batch_size=8,
                      holdout=0.3, max_rounds=1)
    X = np.asarray(np.load(easy.embeddings_path("emb")), dtype=np.float32)
    cls = np.where(X[:, 0] > 2, "a", np.where(X[:, 1] > 0, "b", "c"))
    ids = rng.choice(len(easy), 90, replace=False)
    store.add_many(ids, cls[ids].tolist())
    res = loop.step()
    assert res.stopped == "max_rounds" and "holdout_macro_f1" in res.metrics and res.metrics["holdout"] > 0
    assert loop.scores().shape == (len(easy), 3) and "positives_found" not in res.metrics
    assert res.metrics["holdout_macro_f1"] > 0.6


def test_multiclass_from_one_reference_per_class(tmp_path):
    """Three phenomena seeded at once (one reference each): one task with those labels, a multi-class head, and
    per-class recall of the curated sets reported every round."""
    rng = np.random.default_rng(2)
    n, names = 900, np.array(["field", "lake", "town"])
    cls = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 12)) + 4.0 * np.eye(3, 12)[cls]
    ws = Workspace.create(tmp_path / "ws")
    write(ws.manifest_path, rows_to_table([{"id": i, "key": f"k{i}", "path": f"chips/{i}.png", "label": names[c]}
                                           for i, c in enumerate(cls)]))
    ws = Workspace.open(ws.root)
    _write_embeddings(ws, "emb", X)
    loop = ActiveLoop(ws, "emb", name="scenes", label_set=tuple(names), batch_size=16, max_rounds=2, stability=0.0)
    refs = {str(c): int(np.flatnonzero(cls == i)[0]) for i, c in enumerate(names)}
    seeds = loop.seed(refs, k=10, r=10)
    assert sorted(seeds.by_class) == sorted(names) and all(len(v) == 11 for v in seeds.by_class.values())
    assert loop.store.current() == {v: k for k, v in refs.items()}  # each reference labelled with its class
    assert loop.store.queue_pending() == len(seeds.neighbours) + len(seeds.random) == 40
    assert sum(cls[seeds.by_class["lake"]] == 1) >= 10  # the neighbours are of the reference's class
    hist = loop.run(Oracle(ws))
    last = hist.iloc[-1]
    assert loop.scores().shape == (n, 3) and len(hist) == 2
    assert all(last[f"true_recall_{c}"] > 0.9 for c in names) and last["true_macro_recall"] > 0.9
    assert ActiveLoop(ws, "emb", name="scenes").seed({}).by_class == seeds.by_class  # kept with the loop
    loop.plot(tmp_path / "curve.png")
    with pytest.raises(CuratorError, match=r"references for \['river'\] do not name"):
        seed_set(ws, "emb", {"field": 1, "river": 2}, store=loop.store)


def test_top_n_breaks_ties_at_the_cut_by_lowest_id():
    """Saturated probabilities tie by the hundred: the cut must keep the lowest ids (as a shard merge
    does), not whichever rows argpartition happened to leave in front."""
    from curator_widgets.acquisition import top_n

    rng = np.random.default_rng(0)
    scores = np.where(rng.random(5000) < 0.3, 1.0, rng.random(5000) * 0.9)
    tied = np.flatnonzero(scores == 1.0)
    np.testing.assert_array_equal(top_n(scores, 40), tied[:40])
    best = np.argsort(-scores, kind="stable")[:len(tied) + 7]
    np.testing.assert_array_equal(top_n(scores, len(tied) + 7), best)
