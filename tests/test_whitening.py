"""PCA whitening: the transform, stored whitened runs, image queries through them, and the whitened kNN graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curator_widgets import index as ix
from curator_widgets.embed import load_embeddings, save_embeddings
from curator_widgets.errors import CuratorError
from curator_widgets.propagation import LabelPropagation
from curator_widgets.whitening import Whitening, load_whitening, whiten, whiten_run


def nuisance_clusters(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes apart along low-variance directions, buried under a few high-variance nuisance ones:
    the shape SSL features have (brightness, overall texture dominate, the class sits in small directions)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int64)
    signal = np.where(y[:, None] == 1, 0.3, -0.3) * np.ones((n, 4)) + 0.1 * rng.normal(size=(n, 4))
    nuisance = 3.0 * rng.normal(size=(n, 3))
    return np.c_[signal, nuisance, np.full(n, 4.0)].astype(np.float32), y


def test_whitening_equalizes_the_spread_of_every_direction():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(4000, 6)) * np.array([10, 5, 2, 1, 0.5, 0.1])) @ np.linalg.qr(rng.normal(size=(6, 6)))[0]
    X = (X + 7.0).astype(np.float32)
    w = Whitening.fit(X, shrink=1e-6)
    Y = w.transform(X, normalize=False)
    np.testing.assert_allclose(Y.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(np.cov(Y.T, bias=True), np.eye(6), atol=2e-2)
    assert np.all(np.diff(w.variances) <= 0)  # directions by decreasing variance
    # shrinkage keeps small directions from being blown up: their variance stays below 1
    ws = Whitening.fit(X, shrink=1.0)
    lam = ws.variances
    np.testing.assert_allclose(ws.transform(X, normalize=False).var(0), lam / (lam + lam.mean()), rtol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(whiten(X), axis=1), 1, atol=1e-5)


def test_whitening_on_a_sample_is_close_to_the_full_fit():
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(20000, 5)) * np.array([4, 2, 1, 1, 0.5])).astype(np.float32)
    full, part = Whitening.fit(X), Whitening.fit(X, sample=5000)
    np.testing.assert_allclose(part.variances, full.variances, rtol=0.1)
    a, b = full.transform(X[:200]), part.transform(X[:200])  # unique up to a rotation: compare cosines between rows
    diff = np.abs(a @ a.T - b @ b.T)
    assert diff.mean() < 0.02 and diff.max() < 0.15  # measured 0.005 and 0.065


def test_whitening_rejects_bad_input():
    with pytest.raises(CuratorError, match="shrink"):
        Whitening.fit(np.ones((10, 3)), shrink=0)
    with pytest.raises(CuratorError, match="N >= 2"):
        Whitening.fit(np.ones((1, 3)))
    bad = np.ones((10, 3))
    bad[4, 1] = np.nan
    with pytest.raises(CuratorError, match="NaN"):
        Whitening.fit(bad)


def test_whitened_graph_finds_the_class_the_dominant_directions_hide():
    X, y = nuisance_clusters()
    labelled = np.array([0, 1, 2, 3])
    plain = LabelPropagation.from_embeddings(X, k=10).predict(labelled, y[labelled]).argmax(1)
    white = LabelPropagation.from_embeddings(X, k=10, whiten=0.1).predict(labelled, y[labelled]).argmax(1)
    assert np.mean(white == y) > 0.95  # measured 1.0
    assert np.mean(plain == y) < 0.8  # measured ~0.6: neighbours follow the nuisance directions


def test_graph_head_whitens_only_its_graph(embedded_ws):
    from curator_widgets.propagation import GraphHead

    X, y = nuisance_clusters(200)
    ids = np.arange(20)
    head = GraphHead(seed=0, device="cpu", whiten=0.1).fit(X, y[ids], ids=ids)
    P = head.predict_proba(X)
    assert P.shape == (200, 2) and np.mean(P.argmax(1) == y) > 0.9
    base = GraphHead(seed=0, device="cpu", whiten=0.1, head_weight=1.0).fit(X, y[ids], ids=ids)
    assert base.graph is None  # the logistic part alone builds no graph, whitened or not


def test_whiten_run_stores_a_run_that_search_uses(embedded_ws):
    ws, X = embedded_ws(n=500, d=16)
    out = whiten_run(ws, "r", progress=False)
    assert out == "r-w0.1"
    W = np.asarray(load_embeddings(ws, out), dtype=np.float32)
    want = Whitening.fit(np.asarray(load_embeddings(ws, "r"), dtype=np.float32)).transform(
        np.asarray(load_embeddings(ws, "r"), dtype=np.float32))
    np.testing.assert_allclose(W, want, atol=2e-3)
    side = json.loads(ws.embeddings_path(out).with_suffix(".json").read_text())
    assert side["whitened_from"] == "r" and side["whiten_shrink"] == 0.1 and side["count"] == 500
    w = load_whitening(ws, out)
    np.testing.assert_allclose(w.transform(np.asarray(load_embeddings(ws, "r"), dtype=np.float32)[:5]), W[:5], atol=2e-3)
    ix.build_index(ws, out)
    res = ix.search(ws, out, ids=[7], k=3)
    sims = W @ W[7]
    sims[7] = -np.inf
    assert set(res.ids.tolist()) == set(np.argsort(-sims)[:3].tolist())  # neighbours in the whitened space
    with pytest.raises(CuratorError, match="cannot replace its source"):
        whiten_run(ws, "r", out="r", progress=False)


def test_interrupted_whiten_run_keeps_the_earlier_run(embedded_ws, monkeypatch):
    ws, _ = embedded_ws(n=300, d=8)
    out = whiten_run(ws, "r", progress=False)
    before = np.asarray(load_embeddings(ws, out)).copy()

    def boom(self, X, normalize=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(Whitening, "transform", boom)
    with pytest.raises(KeyboardInterrupt):
        whiten_run(ws, "r", shrink=0.1, progress=False)
    np.testing.assert_array_equal(np.asarray(load_embeddings(ws, out)), before)
    assert not list(ws.embeddings_path(out).parent.glob(".*partial*"))


def test_search_by_image_through_a_concatenated_whitened_run(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from helpers import image_workspace

    from curator_widgets import embed

    ws, model, images, paths = image_workspace(tmp_path, monkeypatch, n=60)
    a = embed.embed_images(model, images)
    b = embed.embed_images(model, images, image_size=32)
    save_embeddings(ws, "m", a, model_run="m")
    save_embeddings(ws, "m-32px", b, model_run="m", image_size=32)
    both = np.hstack([a, b]) / np.sqrt(2)  # embed_images returns unit rows
    save_embeddings(ws, "m-cat", both, model_run="m", parts=["m", "m-32px"])
    out = whiten_run(ws, "m-cat", progress=False)
    q = ix.embed_query_images(ws, out, str(paths[11]))
    assert q.shape == (1, 64)
    np.testing.assert_allclose(q[0], np.asarray(load_embeddings(ws, out), dtype=np.float32)[11], atol=5e-3)
    ix.build_index(ws, out)
    res = ix.search(ws, out, image=str(paths[11]), k=3)
    assert res.ids[0] == 11
    side = ws.embeddings_path("m-cat").with_suffix(".json")
    doc = json.loads(side.read_text())
    side.write_text(json.dumps({**doc, "parts": ["m-cat"]}))  # a hostile sidecar that names itself
    with pytest.raises(CuratorError, match="made from itself"):
        ix.embed_query_images(ws, "m-cat", str(paths[11]))
