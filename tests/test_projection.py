"""2-D projection (issue 5): UMAP on the FAISS kNN graph, the sampled path, the parameter-keyed
cache, the PCA fallback, the plot helper, the CLI, the demo steps and the benchmark smoke run.

The first UMAP call in the process compiles numba kernels (~20-40 s on 2 busy cores); the
tests keep data and epochs small, and all use `seed=None` (umap's parallel kernels, the variant
the benchmark and plain UMAP use too) so the kernels are compiled once."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered_vectors, write_embeddings
from curator_widgets import projection as pj
from curator_widgets.errors import CuratorError
from helpers import load_bench


def label_purity(xy: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of each point's k nearest 2-D neighbours with its cluster label (1.0 = clusters kept apart)."""
    import faiss

    xy = np.ascontiguousarray(xy, dtype=np.float32)
    _, nn = faiss.knn(xy, xy, k + 1)
    return float((labels[nn[:, 1:]] == labels[:, None]).mean())


def test_umap_on_the_index_knn_graph(embedded_ws):
    ws, _ = embedded_ws(n=800, d=16, clusters=6)
    xy = pj.project(ws, "r", n_epochs=30, progress=False)
    assert xy.shape == (800, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    meta = pj.cached_projection(ws, "r")[1]
    assert meta["method"] == "umap" and meta["fit"] == 800 and meta["placed"] == 0
    assert meta["knn"] == "workspace index (Flat)"  # neighbours came from FAISS, once
    assert ws.index_path("r").exists() and ws.index_path("r").with_suffix(".knn.npz").exists()
    assert label_purity(xy, ws.manifest["label"].to_numpy()) > 0.95


def test_sampled_fit_places_the_rest(embedded_ws):
    ws, _ = embedded_ws(n=1500, d=16, clusters=5)
    xy = pj.project(ws, "r", n_epochs=30, sample_threshold=800, sample_size=400, progress=False)
    meta = pj.cached_projection(ws, "r")[1]
    assert meta["fit"] == 400 and meta["placed"] == 1100 and meta["knn"].startswith("sample index")
    assert xy.shape == (1500, 2) and np.isfinite(xy).all()
    labels = ws.manifest["label"].to_numpy()
    assert label_purity(xy, labels) > 0.9
    # a placed chip lands with its own cluster, not at the origin or between clusters
    centers = {c: np.median(xy[labels == c], axis=0) for c in set(labels)}
    spread = max(np.linalg.norm(a - b) for a in centers.values() for b in centers.values())
    placed_far = [np.linalg.norm(xy[i] - centers[labels[i]]) for i in range(1500)]
    assert np.median(placed_far) < 0.2 * spread


def test_umap_internals_used_by_place(embedded_ws):
    """place() calls umap-learn's internals (see the comment in it): fail with what changed, not deep in numba."""
    import inspect
    from importlib.metadata import version

    from umap import layouts, umap_

    fix = (f"umap-learn {version('umap-learn')} changed an internal that curator_widgets.projection.place uses: "
           "update place() to the new internals (compare with umap.UMAP.transform) or pin umap-learn")
    expected = {
        (layouts, "optimize_layout_euclidean"): ["head_embedding", "tail_embedding", "head", "tail", "n_epochs",
                                                 "n_vertices", "epochs_per_sample", "a", "b", "rng_state", "gamma",
                                                 "initial_alpha", "negative_sample_rate", "parallel", "verbose"],
        (umap_, "smooth_knn_dist"): ["distances", "k"],
        (umap_, "compute_membership_strengths"): ["knn_indices", "knn_dists", "sigmas", "rhos"],
        (umap_, "make_epochs_per_sample"): ["weights", "n_epochs"],
    }
    for (module, name), params in expected.items():
        fn = getattr(module, name, None)
        assert fn is not None, f"{module.__name__}.{name} is gone. {fix}"
        sig = inspect.signature(getattr(fn, "py_func", fn))
        assert list(sig.parameters)[:len(params)] == params, f"{module.__name__}.{name}{sig} moved its parameters. {fix}"
    for name, kw in (("optimize_layout_euclidean", "tqdm_kwds"), ("smooth_knn_dist", "local_connectivity"),
                     ("compute_membership_strengths", "bipartite")):
        fn = getattr(layouts if name.startswith("optimize") else umap_, name)
        assert kw in inspect.signature(getattr(fn, "py_func", fn)).parameters, f"{name} lost `{kw}`. {fix}"
    _, x = embedded_ws(n=300)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    ids = np.argsort(d, 1)[:, :10]
    pj.cache_umap_kernels()  # as project() does: compiled kernels come from the disk cache
    model, _ = pj._fit(x, ids, np.take_along_axis(d, ids, 1).astype(np.float32), "l2", 10, 0.1, 10, 0)
    for attr in ("_a", "_b", "learning_rate", "repulsion_strength", "negative_sample_rate", "local_connectivity"):
        assert isinstance(getattr(model, attr, None), (int, float)), f"a fitted umap.UMAP has no numeric `{attr}`. {fix}"


def test_cache_is_keyed_by_parameters(embedded_ws, monkeypatch):
    ws, X = embedded_ws(n=600, d=8)
    first = pj.project(ws, "r", n_epochs=20, progress=False)
    calls = []
    real = pj._umap
    monkeypatch.setattr(pj, "_umap", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = pj.project(ws, "r", n_epochs=20, progress=False)
    assert calls == [] and np.array_equal(first, again)  # cache hit: nothing recomputed
    pj.project(ws, "r", n_epochs=20, min_dist=0.5, progress=False)
    assert len(calls) == 1  # another parameter: recomputed, and the new key stored
    assert pj.cached_projection(ws, "r")[1]["key"]["min_dist"] == 0.5
    pj.project(ws, "r", n_epochs=20, min_dist=0.5, progress=False)
    assert len(calls) == 1
    pj.project(ws, "r", n_epochs=20, min_dist=0.5, recompute=True, progress=False)
    assert len(calls) == 2
    write_embeddings(ws, "r", X[::-1].copy())  # re-embedded: the cache no longer applies
    from curator_widgets.index import build_index

    build_index(ws, "r", rebuild=True, progress=False)
    pj.project(ws, "r", n_epochs=20, min_dist=0.5, progress=False)
    assert len(calls) == 3


def test_pca_fallback_when_umap_is_not_importable(embedded_ws, monkeypatch):
    ws, _ = embedded_ws(n=300, d=8)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    with pytest.warns(UserWarning, match="umap-learn is not importable; the projection falls back to PCA"):
        xy = pj.project(ws, "r", progress=False)
    meta = pj.cached_projection(ws, "r")[1]
    assert meta["method"] == "pca" and xy.shape == (300, 2)
    assert np.allclose(xy, pj.project(ws, "r", method="pca"))
    assert label_purity(xy, ws.manifest["label"].to_numpy()) > 0.5


def test_too_few_chips_and_argument_errors(embedded_ws):
    ws, _ = embedded_ws(n=6, d=4)
    xy = pj.project(ws, "r", progress=False)
    meta = pj.cached_projection(ws, "r")[1]
    assert xy.shape == (6, 2) and meta["method"] == "pca" and "too few for UMAP" in meta["note"]
    cases = [(dict(method="tsne"), "unknown projection method 'tsne'"),
             (dict(n_neighbors=1), "n_neighbors=1 must be an integer >= 2"),
             (dict(min_dist=2.0), r"min_dist=2.0 must be in \[0, 1\]"),
             (dict(sample_size=100, sample_threshold=50), "sample_size=100 / sample_threshold=50 do not fit")]
    for kwargs, msg in cases:
        with pytest.raises(CuratorError, match=msg):
            pj.project(ws, "r", **kwargs)
    with pytest.raises(CuratorError, match="run 'nope' has no embeddings"):
        pj.project(ws, "nope")


def test_plot_helper(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2)).astype(np.float32)
    labels = [None if i % 7 == 0 else f"class{i % 3}" for i in range(300)]
    path = pj.save_projection_plot(xy, tmp_path / "labels.png", color=labels, title="labels")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.figure import Figure

    ax = Figure().add_subplot(111)
    pj.plot_projection(xy, color=labels, ax=ax)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "unlabelled" in legend and {"class0", "class1", "class2"} <= set(legend)
    ax = Figure().add_subplot(111)
    pj.plot_projection(xy, color=rng.random(300), ax=ax, colorbar_label="score")  # scores: a colorbar
    assert len(ax.figure.axes) == 2 and ax.get_legend() is None
    ax = Figure().add_subplot(111)
    pj.plot_projection(xy, color=np.arange(300) % 25, ax=ax, max_categories=10)  # clusters: capped legend
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 11 and "15 more" in legend
    with pytest.raises(CuratorError, match="299 colors for 300 points"):
        pj.plot_projection(xy, color=labels[:-1], ax=ax)
    with pytest.raises(CuratorError, match=r"projection has shape \(300,\), not \[N, 2\]"):
        pj.plot_projection(xy[:, 0], ax=ax)


def test_cli_project(embedded_ws, capsys):
    from curator_widgets.cli import main

    ws, _ = embedded_ws(n=400, d=8)
    assert main(["project", "-w", str(ws.root), "--method", "pca"]) == 0
    out = capsys.readouterr().out
    png = ws.projection_path("r").with_suffix(".png")
    assert "pca of 400 chips" in out and png.exists() and str(png) in out
    assert main(["project", "-w", str(ws.root), "--method", "pca", "--color", "bogus"]) == 2
    assert "the manifest has no column 'bogus'" in capsys.readouterr().err


def test_demo_index_and_project_steps(embedded_ws):
    from curator_widgets import demo

    names = [n for n, _ in demo.STEPS]
    assert names.index("embed") < names.index("index") < names.index("project")
    ws, _ = embedded_ws(n=800, d=16)
    out = demo.step_index(ws, {"run": "r"})
    assert out["index"] == "Flat" and out["chips"] == 800 and 0 <= out["neighbours_land_share"] <= 1
    out = demo.step_project(ws, {"run": "r", "seed": None})
    assert out["method"] == "umap" and out["points"] == 800
    assert Path(out["png"]).exists() and Path(out["png"]).parent.name == "projections"
    mtime = Path(out["png"]).stat().st_mtime_ns
    again = demo.step_project(ws, {"run": "r", "seed": None})  # resumable: cached, PNG kept
    assert again["computed_in_s"] == out["computed_in_s"] and Path(out["png"]).stat().st_mtime_ns == mtime


def test_projection_benchmark_quick(tmp_path):
    mod = load_bench("projection")
    out = tmp_path / "projection.json"
    # --no-plain: a cold plain umap.UMAP compiles pynndescent (~100 s of CPU); the full run times it
    doc = mod.main(["--quick", "--no-plain", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    methods = [r["method"] for r in doc["rows"]]
    assert methods[0].startswith("project()") and methods[-1].startswith("PCA")
    assert doc["rows"][0]["seconds"] > 0 and "placed 3800" in doc["rows"][0]["detail"]
    for r in doc["rows"]:
        assert 0 < r["trustworthiness@10"] <= 1 and 0 <= r["knn_preservation@10"] <= 1
