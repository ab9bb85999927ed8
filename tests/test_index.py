"""Similarity index (issue 5): auto selection, save/load/add, filters inside the search, query
exclusion, several positives, the torch twin of the CUDA path, errors, CLI and the benchmark smoke runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered_vectors, synthetic_chips, write_embeddings
from curator_widgets import index as ix
from curator_widgets.errors import CuratorError
from helpers import load_bench


def exact_top(X: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Brute-force cosine top-k (numpy), the reference every index result is checked against."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q)
    sims = Xn @ qn
    if allowed is not None:
        sims = np.where(allowed, sims, -np.inf)
    return np.argsort(-sims, kind="stable")[:k]


def grow(ws, X_new: np.ndarray, run: str = "r") -> None:
    """Add chips to the manifest and append their rows to the run's embeddings (as `embed` does)."""
    n0 = len(ws)
    img = Path(ws.resolve(ws.manifest["path"].iloc[0]))
    ws.add_chips(synthetic_chips(len(X_new), img, start=n0), progress=False)
    old = np.load(ws.embeddings_path(run)).astype(np.float32)
    write_embeddings(ws, run, np.vstack([old, X_new]))


# ----------------------------------------------------------------------------- choosing
def test_auto_selection_follows_faiss_guidelines():
    gb = 2**30
    assert ix.choose_factory(1_000, 128)[0] == "Flat"
    assert ix.choose_factory(ix.FLAT_MAX, 128)[0] == "Flat"
    f, why = ix.choose_factory(1_000_000, 128, memory_budget=8 * gb)
    assert f == "IVF4000,Flat" and "4 sqrt N" in why
    # memory tight: float16 storage, then 8-bit, then product quantization
    assert ix.choose_factory(1_000_000, 128, memory_budget=300 * 2**20)[0] == "IVF4000,SQfp16"
    assert ix.choose_factory(1_000_000, 128, memory_budget=150 * 2**20)[0] == "IVF4000,SQ8"
    f, why = ix.choose_factory(1_000_000, 128, memory_budget=40 * 2**20)
    assert f.startswith("IVF4000,PQ32") and "product quantization" in why
    assert ix.choose_factory(5_000, 64, "hnsw")[0] == "HNSW32,Flat"
    assert ix.choose_factory(5_000, 64, "ivf")[0] == f"IVF{ix.auto_nlist(5_000)},Flat"
    assert ix.auto_nlist(1_000) == 1_000 // 39  # every list gets the ~39 training points k-means wants
    assert ix.choose_factory(5_000, 64, "IVF64,SQ8")[0] == "IVF64,SQ8"
    # auto keeps the exact coarse quantizer at any size: neither the graph nor the two-level IVF paid on the
    # scale benchmark's data (benchmarks/ivf_quantizer.py, benchmarks/scale.py)
    assert ix.choose_factory(40_000_000, 128, memory_budget=64 * gb)[0] == "IVF25298,Flat"
    with pytest.raises(CuratorError, match="unknown index kind 'fast'") as e:
        ix.choose_factory(10, 4, "fast")
    assert "ivf-sq8" in e.value.fix
    with pytest.raises(CuratorError, match="memory_budget_gb=0 must be positive"):
        ix.memory_budget_bytes(0)


def blobs(n: int = 12_000, d: int = 32, centres: int = 40) -> np.ndarray:
    """Gaussian blobs around well-separated centres: IVF lists with real structure."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((centres, d)).astype(np.float32) * 4
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_hnsw_quantizer_is_deterministic_and_clusters_exactly():
    """The graph quantizer's build is the flat one's k-means plus a one-thread graph: two builds from one
    seed answer alike, the lists hold the flat build's centroids, and nprobe above the graph's efSearch
    is passed down to the graph so that nprobe = nlist is an exact search."""
    import faiss

    X = blobs()
    a = ix.make_index(X, "l2", "IVF256_HNSW32,Flat", seed=3)
    b = ix.make_index(X, "l2", "IVF256_HNSW32,Flat", seed=3)
    flat = ix.make_index(X, "l2", "IVF256,Flat", seed=3)
    qa, qf = (faiss.downcast_index(faiss.extract_index_ivf(s.index).quantizer) for s in (a, flat))
    assert isinstance(qa, faiss.IndexHNSWFlat) and qa.hnsw.efSearch == ix.QUANTIZER_EF
    np.testing.assert_array_equal(qa.storage.reconstruct_n(0, 256), qf.reconstruct_n(0, 256))
    q = X[:50] + 0.01
    for knob in (4, 200, 256):
        np.testing.assert_array_equal(a._faiss_search(q, 10, None, knob)[1], b._faiss_search(q, 10, None, knob)[1])
    assert ix.faiss_params(a.index, "nprobe", 200, None)._keep.efSearch == 200
    assert ix.faiss_params(a.index, "nprobe", 8, None).quantizer_params is None  # the graph's own 64 suffice
    exact = faiss.knn(q, X, 10)[1]
    np.testing.assert_array_equal(np.sort(a._faiss_search(q, 10, None, 256)[1], 1), np.sort(exact, 1))
    assert a.params["recall_at_10"] >= 0.95


def test_two_level_quantizer_is_deterministic_and_close_to_the_flat_one():
    """A two-level coarse quantizer (a factory string) puts the centroids in an IVF of their own: the lists are the flat
    build's k-means (trained exactly, then indexed), two builds from one seed answer alike, a search passes
    the coarse nprobe down, and nprobe = nlist with every coarse list scanned is an exact search."""
    import faiss

    X = blobs()
    a = ix.make_index(X, "l2", "IVF256(IVF32,Flat),Flat", seed=3)
    b = ix.make_index(X, "l2", "IVF256(IVF32,Flat),Flat", seed=3)
    flat = ix.make_index(X, "l2", "IVF256,Flat", seed=3)
    qa, qf = (faiss.downcast_index(faiss.extract_index_ivf(s.index).quantizer) for s in (a, flat))
    assert isinstance(qa, faiss.IndexIVFFlat) and qa.nlist == 32 and qa.nprobe == ix.QUANTIZER_NPROBE
    assert qa.ntotal == 256
    stored = np.concatenate([faiss.rev_swig_ptr(qa.invlists.get_codes(i), qa.invlists.list_size(i) * 32 * 4)
                             .view(np.float32).reshape(-1, 32) for i in range(32)])
    np.testing.assert_array_equal(np.unique(stored, axis=0), np.unique(qf.reconstruct_n(0, 256), axis=0))
    q = X[:50] + 0.01
    for knob in (4, 64, 256):
        np.testing.assert_array_equal(a._faiss_search(q, 10, None, knob)[1], b._faiss_search(q, 10, None, knob)[1])
    assert ix.faiss_params(a.index, "nprobe", 4, None)._keep.nprobe == ix.QUANTIZER_NPROBE
    assert ix.faiss_params(a.index, "nprobe", 256, None)._keep.nprobe == 32  # every coarse list
    assert ix.coarse_nprobe(64, 256, 32) == 32 and ix.coarse_nprobe(20, 256, 32) == 10
    exact = faiss.knn(q, X, 10)[1]
    np.testing.assert_array_equal(np.sort(a._faiss_search(q, 10, None, 256)[1], 1), np.sort(exact, 1))
    assert a.params["recall_at_10"] >= 0.95
    # the lists hold the same vectors as the flat quantizer's but for the few the coarse IVF sends next door
    la = faiss.extract_index_ivf(a.index).quantizer.assign(X, 1).ravel()
    lf = faiss.extract_index_ivf(flat.index).quantizer.assign(X, 1).ravel()
    assert np.mean(la == lf) > 0.97


def test_auto_quantizer_agrees_with_the_committed_benchmark():
    """auto keeps the exact coarse scan where the committed ivf_quantizer run found that neither the graph nor
    the two-level IVF pays; its auto factories are today's."""
    doc = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/ivf_quantizer.json").read_text())
    assert doc["smallest_nlist_pays"] == {"hnsw": None, "ivf": None}
    assert not doc["auto_picks_graph"] and not doc["auto_picks_two_level"]
    for n, factory in doc["auto_factories"].items():
        assert ix.choose_factory(int(n), doc["d"], memory_budget=2**40)[0] == factory
    assert doc["coarse_probe_share"] == ix.COARSE_PROBE_SHARE


def test_unstructured_data_falls_back_to_exact(monkeypatch):
    monkeypatch.setattr(ix, "FLAT_MAX", 5_000)  # so that auto tries IVF on a small set
    X = np.random.default_rng(0).standard_normal((8_000, 64)).astype(np.float32)  # no cluster structure at all
    sim = ix.make_index(X, "l2", "auto", target_recall=0.95)
    assert sim.params["factory"] == "Flat" and "no cluster structure" in sim.params["reason"]


# ----------------------------------------------------------------------------- build / search
def test_flat_search_by_id_matches_brute_force(embedded_ws):
    ws, X = embedded_ws(n=600, d=16)
    sim = ix.build_index(ws, "r")
    assert sim.params["factory"] == "Flat" and sim.params["recall_at_10"] == 1.0
    res = ix.search(ws, "r", ids=5, k=10)
    expect = [i for i in exact_top(X, X[5], 11) if i != 5][:10]
    assert res.ids.tolist() == expect
    assert 5 not in res.ids and len(res) == 10
    assert np.all(np.diff(res.scores) <= 1e-6) and res.higher_is_better
    assert res.rows.index.tolist() == res.ids.tolist() and res.rows["id"].tolist() == res.ids.tolist()
    assert res.rows["rank"].tolist() == list(range(1, 11))
    assert np.allclose(res.rows["score"], res.scores)
    assert (res.rows["label"] == "c5").all()  # chip 5 is in cluster c5 (row i -> cluster i % 8)


def test_l2_metric_returns_distances(embedded_ws):
    ws, X = embedded_ws(n=400, d=8)
    ix.build_index(ws, "r", metric="l2")
    res = ix.search(ws, "r", ids=3, k=5)
    d = np.sqrt(((X - X[3]) ** 2).sum(1))
    d[3] = np.inf
    assert res.ids.tolist() == np.argsort(d, kind="stable")[:5].tolist()
    assert np.allclose(res.scores, np.sort(d)[:5], atol=1e-3) and not res.higher_is_better


def test_ivf_knob_is_calibrated_and_tunable(embedded_ws):
    ws, X = embedded_ws(n=3000, d=32, clusters=30)
    sim = ix.build_index(ws, "r", kind="ivf", target_recall=0.95)
    p = sim.params
    assert p["factory"].startswith("IVF") and p["knob_name"] == "nprobe" and 1 <= p["knob"] <= p["nlist"]
    assert p["recall_at_10"] >= 0.95
    hits = 0
    for q in range(0, 3000, 60):
        res = ix.search(ws, "r", ids=q, k=10)
        hits += len(set(res.ids.tolist()) & set(i for i in exact_top(X, X[q], 11) if i != q))
    assert hits / (50 * 10) >= 0.9
    low = ix.search(ws, "r", ids=7, k=10, nprobe=1)
    full = ix.search(ws, "r", ids=7, k=10, nprobe=p["nlist"])
    assert low.params["knob"] == {"nprobe": 1} and len(low) == 10
    assert full.ids.tolist() == [i for i in exact_top(X, X[7], 11) if i != 7][:10]
    with pytest.raises(CuratorError, match="nprobe=0 must be a positive integer"):
        ix.search(ws, "r", ids=7, nprobe=0)


@pytest.mark.parametrize("kind,factory", [("hnsw", "HNSW32"), ("ivf-sq8", ",SQ8"), ("ivf-pq", ",PQ"),
                                          ("ivf-fp16", ",SQfp16")])
def test_other_kinds_build_and_search(embedded_ws, kind, factory):
    ws, X = embedded_ws(n=1500, d=16)
    sim = ix.build_index(ws, "r", kind=kind)
    assert factory in sim.params["factory"] and sim.params["recall_at_10"] >= 0.9
    if "PQ" in factory or "SQ8" in factory:
        assert sim.params["refine"] > 1  # compressed codes are re-ranked exactly from the embeddings
    res = ix.search(ws, "r", ids=11, k=8)
    truth = [i for i in exact_top(X, X[11], 9) if i != 11]
    assert len(res) == 8 and 11 not in res.ids
    assert len(set(res.ids.tolist()) & set(truth)) >= 6


# ----------------------------------------------------------------------------- persistence
def test_save_load_roundtrip_and_in_process_cache(embedded_ws):
    ws, _ = embedded_ws(n=3000, d=16)
    built = ix.build_index(ws, "r", kind="ivf")
    before = ix.search(ws, "r", ids=1, k=10)
    params = json.loads(ix.params_path(ws, "r").read_text())
    for key in ("factory", "metric", "dim", "count", "knob", "nlist", "recall_at_10", "embeddings", "index_bytes"):
        assert key in params
    assert params["count"] == 3000 and params["run"] == "r"
    assert ws.meta["index"]["r"]["factory"] == params["factory"]
    ix._CACHE.clear()
    loaded = ix.load_index(ws, "r")
    assert loaded is not built and loaded.params == built.params and loaded.ntotal == 3000
    assert ix.load_index(ws, "r") is loaded  # no re-read until the files change
    after = ix.search(ws, "r", ids=1, k=10)
    assert after.ids.tolist() == before.ids.tolist()
    # build_index on an up-to-date index reuses it
    again = ix.build_index(ws, "r", kind="ivf")
    assert again.params["created"] == params["created"]


def test_add_new_chips_without_rebuild(embedded_ws):
    ws, X = embedded_ws(n=2000, d=16)
    sim = ix.build_index(ws, "r", kind="ivf")
    created, nlist = sim.params["created"], sim.params["nlist"]
    rng = np.random.default_rng(5)
    new = (X[:50] + 0.01 * rng.standard_normal((50, 16))).astype(np.float32)
    grow(ws, new)
    with pytest.raises(CuratorError, match="holds 2000 chips but 2050 are embedded") as e:
        ix.search(ws, "r", ids=0, k=5)
    assert "add_to_index" in e.value.fix and "--add" in e.value.fix
    assert ix.add_to_index(ws, "r", progress=False) == 50
    assert ix.add_to_index(ws, "r", progress=False) == 0
    p = json.loads(ix.params_path(ws, "r").read_text())
    assert p["count"] == 2050 and p["created"] == created and p["nlist"] == nlist
    assert p["added"][0] == {"from": 2000, "count": 50, "time": p["added"][0]["time"]}
    res = ix.search(ws, "r", ids=3, k=3)
    assert 2003 in res.ids  # the new near-copy of chip 3 is found
    # build_index (default) extends instead of rebuilding as well
    grow(ws, new[:5] + 0.001)
    again = ix.build_index(ws, "r", kind="ivf", progress=False)
    assert again.ntotal == 2055 and again.params["created"] == created


def test_on_disk_lists_search_like_memory_survive_a_move_and_grow_without_writing_in_place(embedded_ws, tmp_path):
    ws, X = embedded_ws(n=3000, d=16)
    mem = ix.make_index(np.asarray(X, np.float32), "cosine", "ivf")
    sim = ix.build_index(ws, "r", kind="ivf", on_disk=True, shard_rows=700, progress=False)  # 5 blocks, merged
    data = ix.params_path(ws, "r").parent / sim.params["ivfdata"]
    assert data.exists() and data.name.startswith("r.") and data.suffix == ".ivfdata"
    assert ix.ondisk.is_on_disk(sim.index) and sim.params["factory"] == mem.params["factory"]
    assert not list(data.parent.glob(".blocks-*"))  # block files are gone after the merge
    q = np.asarray(X[:40], np.float32)
    D1, I1 = sim.search_prepared(ix.prepare(q, "cosine"), 10)
    D2, I2 = mem.search_prepared(ix.prepare(q, "cosine"), 10)
    np.testing.assert_array_equal(I1, I2)  # global ids, same list order as one in-memory add
    np.testing.assert_array_equal(D1, D2)
    before = ix.search(ws, "r", ids=1, k=10).ids.tolist()

    # the workspace moves: the lists are found beside the index, not at the path they were written to
    moved = tmp_path / "moved"
    shutil.move(str(ws.root), moved)
    from curator_widgets.workspace import Workspace

    ws = Workspace.open(moved)
    ix._CACHE.clear()
    loaded = ix.load_index(ws, "r")
    assert ix.ondisk.data_file(loaded.index).parent == (moved / "index").resolve() or \
        ix.ondisk.data_file(loaded.index).parent == moved / "index"
    assert ix.search(ws, "r", ids=1, k=10).ids.tolist() == before

    # growing: old lists + the new block are merged into a fresh file; the old one is removed after
    old_data = moved / "index" / sim.params["ivfdata"]
    old_bytes = old_data.read_bytes()
    grow(ws, (X[:30] + 0.01).astype(np.float32))
    assert ix.add_to_index(ws, "r", progress=False) == 30
    p = json.loads(ix.params_path(ws, "r").read_text())
    assert p["count"] == 3030 and p["ivfdata"] != sim.params["ivfdata"]
    assert not old_data.exists() and [f.name for f in (moved / "index").glob("*.ivfdata")] == [p["ivfdata"]]
    assert len(old_bytes) > 0
    ix._CACHE.clear()
    assert 3003 in ix.search(ws, "r", ids=3, k=3).ids  # the near-copy of chip 3 is found

    # a rebuild in memory drops the data file; its loss is a clear error, never a crash
    ix.build_index(ws, "r", kind="ivf", on_disk=True, rebuild=True, progress=False)
    name = json.loads(ix.params_path(ws, "r").read_text())["ivfdata"]
    (moved / "index" / name).unlink()
    ix._CACHE.clear()
    with pytest.raises(CuratorError, match="which is missing") as e:
        ix.load_index(ws, "r")
    assert "on_disk=True" in e.value.fix
    ix.build_index(ws, "r", kind="ivf", rebuild=True, progress=False)
    assert not list((moved / "index").glob("*.ivfdata")) and json.loads(ix.params_path(ws, "r").read_text())["ivfdata"] is None
    with pytest.raises(CuratorError, match="needs an IVF index"):
        ix.build_index(ws, "r", kind="flat", on_disk=True, rebuild=True)
    auto = ix.build_index(ws, "r", on_disk=True, rebuild=True, progress=False)  # 3,030 chips: auto still takes IVF
    assert auto.params["factory"].startswith("IVF") and auto.params["ivfdata"]


def test_mismatch_errors(embedded_ws):
    ws, X = embedded_ws(n=500, d=16)
    with pytest.raises(CuratorError, match="run 'r' has no similarity index") as e:
        ix.search(ws, "r", ids=0)
    assert "curator index" in e.value.fix
    with pytest.raises(CuratorError, match="run 'zz' has no embeddings"):
        ix.build_index(ws, "zz")
    ix.build_index(ws, "r")
    # same shape, different vectors: the run was re-embedded
    write_embeddings(ws, "r", X[::-1].copy())
    with pytest.raises(CuratorError, match="changed since its index was built") as e:
        ix.search(ws, "r", ids=0)
    assert "rebuild=True" in e.value.fix
    # another dimension
    write_embeddings(ws, "r", X[:, :8].copy())
    with pytest.raises(CuratorError, match="has dimension 16 but its embeddings have 8"):
        ix.load_index(ws, "r")
    # fewer rows than the index
    write_embeddings(ws, "r", X[:400].copy())
    with pytest.raises(CuratorError, match="holds 500 chips but only 400 are embedded"):
        ix.load_index(ws, "r")
    write_embeddings(ws, "r", X)
    ix.load_index(ws, "r")
    # an index copied under another run's name
    write_embeddings(ws, "s", X)
    shutil.copy(ws.index_path("r"), ws.index_path("s"))
    shutil.copy(ix.params_path(ws, "r"), ix.params_path(ws, "s"))
    with pytest.raises(CuratorError, match="index file for run 's' was built for run 'r'"):
        ix.load_index(ws, "s")
    # an interrupted write: the index file no longer matches its parameters
    with open(ws.index_path("s"), "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(CuratorError, match="a write was interrupted"):
        ix.load_index(ws, "s")
    ix.params_path(ws, "s").write_text("{not json")
    with pytest.raises(CuratorError, match="are corrupt"):
        ix.load_index(ws, "s")
    with pytest.raises(CuratorError, match="unknown metric 'dot'"):
        ix.build_index(ws, "r", metric="dot")


# ----------------------------------------------------------------------------- filters and exclusion
FILTERS = {"layer": "B", "exclude_flags": ["cloudy", "swath_gap"], "date": ("2020-03-01", "2020-06-30")}


def allowed_by(ws, filters) -> np.ndarray:
    """The reference filter, written row by row from the manifest (independent of filter_mask)."""
    df = ws.manifest
    ok = []
    for _, r in df.iterrows():
        good = r["layer"] == filters["layer"] and not ({"cloudy", "swath_gap"} & set(r["flags"]))
        good = good and filters["date"][0] <= r["date"] <= filters["date"][1]
        ok.append(good)
    return np.array(ok)


@pytest.mark.parametrize("path", ["exact-subset", "selector"])
def test_filters_apply_inside_the_search_so_k_come_back(embedded_ws, monkeypatch, path):
    ws, X = embedded_ws(n=3000, d=16, clusters=30)
    ix.build_index(ws, "r", kind="ivf")
    if path == "selector":  # force the IDSelector route (+ nprobe widening) instead of the exact subset
        monkeypatch.setattr(ix, "EXACT_SUBSET_MAX", 0)
    allowed = allowed_by(ws, FILTERS)
    assert 100 < allowed.sum() < 400  # selective: ~8% of chips pass
    res = ix.search(ws, "r", ids=4, k=25, filters=FILTERS, nprobe=1)
    assert len(res) == 25  # post-filtering 25 results of one IVF list would leave almost none
    assert allowed[res.ids].all() and 4 not in res.ids
    rows = res.rows
    assert (rows["layer"] == "B").all() and rows["date"].between("2020-03-01", "2020-06-30").all()
    assert not any({"cloudy", "swath_gap"} & set(f) for f in rows["flags"])
    allowed[4] = False
    truth = exact_top(X, X[4], 25, allowed)
    assert len(set(res.ids.tolist()) & set(truth.tolist())) >= 22


def test_filter_keys_and_errors(embedded_ws):
    ws, _ = embedded_ws(n=300, d=8)
    df = ws.manifest
    m = ix.filter_mask(ws, {"bbox": (-10, -80, 40, 80)})
    lon = (df["west"] + df["east"]) / 2
    assert (m == ((lon >= -10) & (lon <= 40)).to_numpy()).all()
    m = ix.filter_mask(ws, {"bbox": (170, -90, -170, 90)})  # across the antimeridian
    assert (m == ((lon >= 170) | (lon <= -170)).to_numpy()).all()
    m = ix.filter_mask(ws, {"flags": ["cloudy"]})
    assert (m == df["flags"].map(lambda f: "cloudy" in f).to_numpy()).all()
    m = ix.filter_mask(ws, {"max_cloud": 0.5, "min_land": 0.2, "label": ["c1", "c2"], "ids": range(0, 150)})
    want = (df["cloud_fraction"] <= 0.5) & (df["land_fraction"] >= 0.2) & df["label"].isin(["c1", "c2"]) & (df["id"] < 150)
    assert (m == want.to_numpy()).all()
    assert ix.filter_mask(ws, {"date": "2020-02-02"}).sum() == (df["date"] == "2020-02-02").sum()
    assert ix.filter_mask(ws, None) is None
    with pytest.raises(CuratorError, match=r"unknown filter\(s\) \['cloudless'\]") as e:
        ix.filter_mask(ws, {"cloudless": True})
    assert "exclude_flags" in e.value.fix
    with pytest.raises(CuratorError, match="date '2020-13-45' is not YYYY-MM-DD"):
        ix.filter_mask(ws, {"date": ("2020-13-45", None)})
    with pytest.raises(CuratorError, match="bbox south=10.0 is not below north=5.0"):
        ix.filter_mask(ws, {"bbox": (0, 10, 5, 5)})
    ix.build_index(ws, "r")
    res = ix.search(ws, "r", ids=0, k=10, filters={"ids": [1, 2, 3]})
    assert sorted(res.ids.tolist()) == [1, 2, 3]  # fewer than k pass: all of them, no padding


def test_query_and_exclusions_never_come_back(embedded_ws):
    ws, X = embedded_ws(n=400, d=16)
    X2 = X.copy()
    X2[7] = X2[5]  # chip 7 is an exact duplicate of chip 5
    write_embeddings(ws, "r", X2)
    ix.build_index(ws, "r")
    res = ix.search(ws, "r", ids=5, k=5)
    assert res.ids[0] == 7 and res.scores[0] == pytest.approx(1.0, abs=1e-4) and 5 not in res.ids
    res2 = ix.search(ws, "r", ids=5, k=5, exclude=[7, int(res.ids[1])])
    assert 7 not in res2.ids and res.ids[1] not in res2.ids and 5 not in res2.ids and len(res2) == 5


def test_several_positives_mean_and_union(embedded_ws):
    ws, X = embedded_ws(n=800, d=16)
    ix.build_index(ws, "r")
    pos = [1, 2]  # clusters c1 and c2
    mean = ix.search(ws, "r", ids=pos, k=10, mode="mean")
    assert not set(pos) & set(mean.ids.tolist()) and len(mean) == 10
    assert mean.ids.tolist() == [i for i in exact_top(X, (X[1] / np.linalg.norm(X[1]) + X[2] / np.linalg.norm(X[2])), 12)
                                 if i not in pos][:10]
    union = ix.search(ws, "r", ids=pos, k=10, mode="union")
    assert set(union.rows["label"]) <= {"c1", "c2"} and not set(pos) & set(union.ids.tolist())
    one = ix.search(ws, "r", ids=1, k=10, exclude=[2])
    two = ix.search(ws, "r", ids=2, k=10, exclude=[1])
    best: dict[int, float] = {}
    for r in (one, two):
        for i, sc in zip(r.ids.tolist(), r.scores.tolist()):
            best[i] = max(best.get(i, -2.0), sc)
    expect = sorted(best, key=lambda i: -best[i])[:10]
    assert union.ids.tolist() == expect
    assert union.rows["hits"].tolist() == [int(i in one.ids) + int(i in two.ids) for i in expect]
    vec = ix.search(ws, "r", vectors=X[[1, 2]], k=10, mode="mean", exclude=pos)
    assert vec.ids.tolist() == mean.ids.tolist()


def test_search_argument_errors(embedded_ws):
    ws, _ = embedded_ws(n=100, d=8)
    ix.build_index(ws, "r")
    cases = [(dict(), "search needs a query"), (dict(ids=[3, 100]), r"chip id\(s\) \[100\] are not in index 'r'"),
             (dict(ids=1, k=0), "k=0 must be a positive integer"), (dict(ids=1, mode="max"), "unknown search mode 'max'"),
             (dict(vectors=np.zeros((2, 5))), r"shape \(2, 5\) but index 'r' has dimension 8"),
             (dict(ids=1, device="tpu"), "device 'tpu' is not one of"),
             (dict(vectors=np.full(8, np.nan)), "vectors contain NaN or infinite values")]
    for kwargs, msg in cases:
        with pytest.raises(CuratorError, match=msg):
            ix.search(ws, "r", **kwargs)


# ----------------------------------------------------------------------------- devices and graphs
def _gpu_backend():
    """The backend a GPU machine must pick ('faiss-gpu' or 'torch-cuda'), or None without a GPU."""
    import faiss
    import torch

    return "faiss-gpu" if faiss.get_num_gpus() > 0 else "torch-cuda" if torch.cuda.is_available() else None


@pytest.mark.parametrize("device", ["torch-cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    _gpu_backend() is None, reason="the GPU path needs a GPU (benchmarks/gpu_checks.sh runs it)"))])
def test_torch_twin_of_the_cuda_path_matches_faiss(embedded_ws, device):
    ws, _ = embedded_ws(n=700, d=16)
    ix.build_index(ws, "r")
    backend = "torch-cpu" if device == "torch-cpu" else _gpu_backend()
    for kwargs in (dict(ids=9, k=15), dict(ids=[3, 4], k=12, mode="union"), dict(ids=9, k=20, filters=FILTERS)):
        cpu = ix.search(ws, "r", device="cpu", **kwargs)
        other = ix.search(ws, "r", device=device, **kwargs)
        assert other.params["backend"] == backend and cpu.params["backend"] == "faiss-cpu"
        assert other.ids.tolist() == cpu.ids.tolist()
        assert np.allclose(other.scores, cpu.scores, atol=1e-5 if device == "torch-cpu" else 1e-3)


def test_device_resolution_with_or_without_a_gpu():
    gpu = _gpu_backend()
    assert ix.resolve_backend("auto") == (gpu or "faiss-cpu")  # CI has no GPU: faiss on the CPU
    if gpu is None:
        with pytest.raises(CuratorError, match="neither faiss nor torch sees a GPU"):
            ix.resolve_backend("cuda")
    else:
        assert ix.resolve_backend("cuda") == gpu


def test_knn_graph_excludes_self_and_is_cached(embedded_ws):
    ws, X = embedded_ws(n=500, d=16)
    ix.build_index(ws, "r")
    ids, d = ix.knn_graph(ws, "r", 6, progress=False)
    assert ids.shape == (500, 6) and d.dtype == np.float32
    assert not (ids == np.arange(500)[:, None]).any()
    assert ids[5].tolist() == [i for i in exact_top(X, X[5], 7) if i != 5][:6]
    assert np.all(np.diff(d, axis=1) >= -1e-6)
    cache = ws.index_path("r").with_suffix(".knn.npz")
    assert cache.exists()
    mtime = cache.stat().st_mtime_ns
    ids4, _ = ix.knn_graph(ws, "r", 4, include_self=True)
    assert cache.stat().st_mtime_ns == mtime  # served from the cached 6-NN graph
    assert ids4.shape == (500, 5) and (ids4[:, 0] == np.arange(500)).all() and (ids4[:, 1:] == ids[:, :4]).all()


def test_search_by_image_through_the_trained_model(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from helpers import image_workspace

    from curator_widgets import embed

    ws, model, images, paths = image_workspace(tmp_path, monkeypatch)
    write_embeddings(ws, "m", embed.embed_images(model, images), model_run="m")
    ix.build_index(ws, "m")
    res = ix.search(ws, "m", image=str(paths[7]), k=3)
    assert res.ids[0] == 7 and res.scores[0] == pytest.approx(1.0, abs=2e-3)
    res = ix.search(ws, "m", image=[images[3], images[9]], k=4, mode="union")
    assert {3, 9} <= set(res.ids.tolist())


# ----------------------------------------------------------------------------- CLI and benchmarks
def test_cli_index_search(embedded_ws, capsys, tmp_path):
    from curator_widgets.cli import main

    ws, X = embedded_ws(n=600, d=16)
    assert main(["index", "-w", str(ws.root), "--kind", "ivf"]) == 0
    out = capsys.readouterr().out
    assert "IVF" in out and "nprobe=" in out and "recall@10=" in out
    assert main(["search", "-w", str(ws.root), "--id", "3", "-k", "4", "--exclude-flag", "cloudy", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["results"]) == 4 and all(r["id"] != 3 for r in doc["results"])
    np.save(tmp_path / "q.npy", X[3])
    assert main(["search", "-w", str(ws.root), "--vector", str(tmp_path / "q.npy"), "-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"] == 3  # a vector query excludes nothing
    assert main(["search", "-w", str(ws.root), "--id", "9999"]) == 2
    err = capsys.readouterr().err
    assert "error: chip id(s) [9999] are not in index" in err and "fix:" in err
    grow(ws, X[:3])
    assert main(["index", "-w", str(ws.root), "--add"]) == 0
    assert "added 3 chips" in capsys.readouterr().out
    assert main(["index", "-w", str(ws.root), "--kind", "ivf", "--on-disk"]) == 0  # not up to date: rebuilt
    out = capsys.readouterr().out
    assert "lists on disk: r." in out and ".ivfdata" in out and "603 chips" in out


def test_search_benchmark_quick(tmp_path):
    out = tmp_path / "search.json"
    doc = load_bench("search").main(["--quick", "--out", str(out)])
    assert out.exists() and json.loads(out.read_text())["rows"] == doc["rows"]
    kinds = {r["index"] for r in doc["rows"]}
    assert {"flat", "auto"} <= kinds
    for r in doc["rows"]:
        assert 0 <= r["recall@10"] <= 1 and r["p50_ms"] > 0 and r["qps"] > 0


def test_retrieval_quality_benchmark_quick(tmp_path):
    out = tmp_path / "rq.json"
    doc = load_bench("retrieval_quality").main(["--quick", "--out", str(out)])
    names = {r["features"] for r in doc["rows"]}
    assert "raw pixels" in names and out.exists()
    for r in doc["rows"]:
        assert 0 <= r["precision@10"] <= 1


def test_ivf_quantizer_benchmark_quick(tmp_path):
    """benchmarks/ivf_quantizer.py --quick runs, measures both assignments and renders its docs table."""
    from helpers import load_bench

    bench = load_bench("ivf_quantizer")
    doc = bench.main(["--quick", "--out", str(tmp_path / "q.json")])
    assert [(r["nlist"], r["quantizer"], r["setting"]) for r in doc["rows"]] == [
        (n, q, s) for n, c in ((800, 57), (1600, 80)) for q, s in
        (("hnsw", "efSearch 64"), ("hnsw", "efSearch 128"), (f"ivf{c}", "nprobe 8"), (f"ivf{c}", "nprobe 16"))]
    assert doc["auto_picks_graph"] is False and doc["auto_picks_two_level"] is False
    for r in doc["rows"]:
        assert r["flat_us_per_vector"] > 0 and r["quantizer_us_per_vector"] > 0 and 0.8 <= r["agreement"] <= 1
    assert "| 1600 |" in bench.doc_tables(doc)["main"]
