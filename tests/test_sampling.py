"""Diverse sampling (issue 6): FPS pinned to a brute-force reference, radii, float16, the GPU-style
loop on the CPU, stratified resampling invariants, cluster quotas, selections on disk, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curator_widgets.errors import CuratorError
from curator_widgets.sampling import (_choose_engine, _fps, _resolve_dtype, balanced_quotas, cluster_balanced_sample,
                                      covering_radius, farthest_point_sample, load_sample, nearest_pick_distances,
                                      random_sample, sample, save_sample, selection_stats,
                                      stratified_farthest_point_sample)
from helpers import load_bench


def brute_fps(X: np.ndarray, k: int, start, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """The textbook algorithm on a full float64 distance matrix."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    if metric == "cosine":
        D = D ** 2 / 2
    seeds = [start] if np.isscalar(start) else list(start)
    mind = np.full(len(X), np.inf)
    picks, radii = [], []
    for j in range(k):
        p = seeds[j] if j < len(seeds) else int(np.argmax(mind))
        picks.append(p)
        mind = np.minimum(mind, D[p])
        radii.append(mind.max())
    return np.array(picks), np.array(radii)


def blobs(n: int = 400, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6, size=(6, d))
    X = centers[rng.integers(6, size=n)] + rng.normal(size=(n, d)) * rng.uniform(0.3, 2.0, size=(n, 1))
    return (X + 20).astype(np.float32)  # off-centre on purpose: the sampler centres l2 data itself


# ----------------------------------------------------------------------------- exact FPS
@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fps_same_picks_as_brute_force(metric, seed):
    X = blobs(seed=seed)
    start = seed * 37
    want, want_r = brute_fps(X, 80, start, metric)
    got, got_r = farthest_point_sample(X, 80, start=start, metric=metric)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_r, want_r, rtol=1e-4, atol=1e-5)
    assert got.dtype == np.int64 and got_r.dtype == np.float32


def test_fps_several_start_points_come_first():
    X = blobs(seed=3)
    want, want_r = brute_fps(X, 40, [5, 17, 300])
    got, got_r = farthest_point_sample(X, 40, start=[5, 17, 300])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_r, want_r, rtol=1e-4, atol=1e-5)


def test_radii_never_grow_and_end_at_the_covering_radius():
    X = blobs(n=1500, d=16, seed=4)
    idx, radii = farthest_point_sample(X, 200, start=11)
    assert np.all(np.diff(radii) <= 1e-6)
    assert len(np.unique(idx)) == 200
    assert covering_radius(X, idx) == pytest.approx(float(radii[-1]), rel=1e-4)
    assert covering_radius(X, idx[:50]) == pytest.approx(float(radii[49]), rel=1e-4)


def test_nearest_pick_distances_match_brute_force():
    X = blobs(n=400, d=8, seed=9)
    ids = np.array([3, 50, 120, 399])
    want = np.sqrt(((X[:, None, :] - X[ids][None]) ** 2).sum(-1)).min(1)
    got = nearest_pick_distances(X, ids, chunk_size=64)  # several chunks
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert got[ids].max() == pytest.approx(0.0, abs=1e-3)
    assert covering_radius(X, ids) == pytest.approx(float(want.max()), rel=1e-4)


def test_deterministic_and_chunking_does_not_change_picks():
    X = blobs(n=1000, seed=5)
    a = farthest_point_sample(X, 100, start=3)
    b = farthest_point_sample(X, 100, start=3, chunk_size=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


def test_k_equal_n_is_a_permutation_and_duplicates_never_repeat_a_pick():
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(5, 3)), 4, axis=0).astype(np.float32)  # 5 distinct points, 4 copies each
    idx, radii = farthest_point_sample(X, 20, start=0)
    assert sorted(idx.tolist()) == list(range(20))
    assert len({tuple(X[i]) for i in idx[:5]}) == 5  # the first five picks are the five distinct points
    assert radii[4] < 1e-2 * radii[0]  # everything covered once each distinct point is picked
    assert np.all(np.diff(radii) <= 1e-6)


def test_float16_storage_from_a_memmap(tmp_path):
    X = blobs(n=3000, d=32, seed=6)
    mm = np.lib.format.open_memmap(tmp_path / "emb.npy", mode="w+", dtype=np.float16, shape=X.shape)
    mm[:] = X
    mm.flush()
    emb = np.load(tmp_path / "emb.npy", mmap_mode="r")
    import torch

    cpu = torch.device("cpu")
    assert _resolve_dtype(emb, None, cpu, "compiled") == torch.float16  # storage follows the embeddings
    assert _resolve_dtype(emb, None, torch.device("cuda"), "eager") == torch.float16
    assert _resolve_dtype(emb, None, cpu, "eager") == torch.float32  # CPU eager streams float32 faster
    assert _resolve_dtype(X, None, cpu, "compiled") == torch.float32
    assert _choose_engine("auto", emb, None, 150, cpu) == "eager"  # small job: no compile
    assert _choose_engine("auto", emb, "float16", 10**7, cpu) == "compiled"  # float16 storage, big job
    assert _choose_engine("auto", emb, None, 10**7, torch.device("cuda")) == "eager"
    idx16, r16 = farthest_point_sample(emb, 150, start=0, dtype="float16")
    idx32, r32 = farthest_point_sample(emb.astype(np.float32), 150, start=0)
    assert len(np.unique(idx16)) == 150 and np.all(np.diff(r16) <= 1e-6)
    assert np.mean(idx16 == idx32) > 0.8  # same data, float16 vs float32 arithmetic: nearly the same picks
    assert r16[-1] == pytest.approx(r32[-1], rel=0.03)


def test_torch_tensor_input():
    import torch

    X = blobs(seed=7)
    a = farthest_point_sample(torch.from_numpy(X), 30, start=2)
    b = farthest_point_sample(X, 30, start=2)
    np.testing.assert_array_equal(a[0], b[0])


def test_compiled_engine_matches_eager():
    """The fused torch.compile step (exact ||x - c||^2) picks what the eager matrix-vector path picks;
    where no compiler exists it falls back to eager with a warning, and the picks still match."""
    X = blobs(n=700, seed=16)
    eager = farthest_point_sample(X, 50, start=3, engine="eager")
    comp = farthest_point_sample(X, 50, start=3, engine="compiled")
    np.testing.assert_array_equal(comp[0], eager[0])
    np.testing.assert_allclose(comp[1], eager[1], rtol=1e-4)
    fewer = farthest_point_sample(X[:400], 30, start=3, engine="compiled")  # a new N reuses the kernel
    np.testing.assert_array_equal(fewer[0], farthest_point_sample(X[:400], 30, start=3, engine="eager")[0])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gpu_style_loop_on_the_cpu_twin(dtype):
    """The GPU path (row-major storage, picks kept as device tensors, index_fill, float16 products
    widened to float32) run on the CPU: it must pick what the brute force picks."""
    import torch

    X = blobs(n=600, seed=8)
    got, got_r = _fps(X, 60, [9], "l2", getattr(torch, dtype), torch.device("cpu"), "eager", 128, False,
                      device_loop=True)
    if dtype == "float32":
        want, want_r = brute_fps(X, 60, 9)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got_r, want_r, rtol=1e-4, atol=1e-5)
    else:
        ref, ref_r = farthest_point_sample(X, 60, start=9, dtype="float16")
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_allclose(got_r, ref_r, rtol=1e-3)


# ----------------------------------------------------------------------------- stratified FPS
def test_stratified_with_the_whole_set_as_candidates_is_exact_fps():
    X = blobs(n=500, seed=9)
    want, want_r = brute_fps(X, 50, 4)
    got, got_r = stratified_farthest_point_sample(X, 50, subset_size=500, resample_every=7, start=4)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_r, want_r, rtol=1e-4, atol=1e-5)


def test_stratified_resampling_invariants():
    X = blobs(n=2000, d=8, seed=10)
    trace: list = []
    k, m, r = 120, 150, 25
    idx, radii = stratified_farthest_point_sample(X, k, subset_size=m, resample_every=r, start=0, seed=3, trace=trace)
    assert len(np.unique(idx)) == k
    assert [t["step"] for t in trace] == [j + 1 for j in range(0, k, r)]  # a redraw every r picks
    for t in trace:
        cand = t["candidates"]
        assert len(cand) == m and len(np.unique(cand)) == m
        assert not set(cand.tolist()) & set(idx[: t["step"]].tolist())  # never a selected point
    for j in range(1, k):  # each pick comes from the candidate set drawn most recently before it
        last = [t for t in trace if t["step"] <= j][-1]
        assert idx[j] in set(last["candidates"].tolist())
    # the candidate-set radius is a lower bound of the true covering radius
    for j in (0, 40, k - 1):
        assert radii[j] <= covering_radius(X, idx[: j + 1]) * (1 + 1e-5)
    again = stratified_farthest_point_sample(X, k, subset_size=m, resample_every=r, start=0, seed=3)
    np.testing.assert_array_equal(again[0], idx)


def test_stratified_covers_almost_as_well_as_exact(tmp_path):
    X = blobs(n=4000, d=16, seed=11)
    path = tmp_path / "e.npy"
    np.save(path, X.astype(np.float16))
    emb = np.load(path, mmap_mode="r")  # read only at candidate rows
    exact = farthest_point_sample(emb, 100, start=0)[1][-1]
    idx, _ = stratified_farthest_point_sample(emb, 100, subset_size=2000, resample_every=10, start=0)
    best_random = min(covering_radius(emb, random_sample(emb, 100, seed=s)) for s in range(3))
    assert exact <= covering_radius(emb, idx) < best_random


def test_min_sq_to_rows_in_bounded_blocks_equals_the_whole_matrix():
    """Redraw distances are computed in blocks of rows x picks (memory bounded); the values do not change."""
    import torch

    from curator_widgets.sampling import min_sq_to_rows

    rng = np.random.default_rng(13)
    V = torch.from_numpy(rng.normal(size=(301, 8)).astype(np.float32))
    S = torch.from_numpy(rng.normal(size=(37, 8)).astype(np.float32))
    v2 = V.pow(2).sum(1)
    want = (v2[:, None] - 2 * V @ S.T + S.pow(2).sum(1)[None, :]).min(1).values
    for chunk, block in ((37, 1 << 24), (5, 12), (4, 1), (100, 50)):
        torch.testing.assert_close(min_sq_to_rows(V, v2, S, chunk_size=chunk, max_block=block), want)
    assert torch.isinf(min_sq_to_rows(V, v2, S[:0])).all()


def test_stratified_uses_up_candidates_then_redraws():
    X = blobs(n=300, seed=12)
    trace: list = []
    idx, radii = stratified_farthest_point_sample(X, 30, subset_size=4, resample_every=1000, trace=trace)
    assert len(np.unique(idx)) == 30
    assert len(trace) >= 30 // 4  # each draw of 4 candidates lasts at most 4 picks


# ----------------------------------------------------------------------------- clusters and random
def test_balanced_quotas():
    q = balanced_quotas([1, 5, 100, 3, 50], 40)
    assert q.sum() == 40 and np.all(q <= [1, 5, 100, 3, 50])
    np.testing.assert_array_equal(q, [1, 5, 16, 3, 15])  # small clusters give all; the rest split fairly
    np.testing.assert_array_equal(balanced_quotas([10, 10, 10], 30), [10, 10, 10])
    np.testing.assert_array_equal(balanced_quotas([10, 10, 10], 4), [2, 1, 1])
    np.testing.assert_array_equal(balanced_quotas([0, 7], 3), [0, 3])
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(0, 40, size=rng.integers(1, 12))
        n = int(rng.integers(0, sizes.sum() + 1))
        q = balanced_quotas(sizes, n)
        assert q.sum() == n and np.all(q <= sizes) and np.all(q >= 0)
        open_ = q < sizes  # clusters not exhausted all get the top share (within one)
        if open_.any():
            assert q[open_].max() - q[open_].min() <= 1 and q.max() <= q[open_].max()


def test_cluster_balanced_sample_quotas_on_unequal_blobs():
    rng = np.random.default_rng(1)
    sizes = [300, 150, 80, 40, 12]
    centers = np.eye(5, 8) * 50
    X = np.concatenate([c + rng.normal(size=(s, 8)) for c, s in zip(centers, sizes)]).astype(np.float32)
    truth = np.repeat(np.arange(5), sizes)
    ids, assign = cluster_balanced_sample(X, 70, clusters=5, return_clusters=True, seed=0, nredo=5)
    assert len(np.unique(ids)) == 70
    np.testing.assert_array_equal(np.bincount(assign[ids], minlength=5),
                                  balanced_quotas(np.bincount(assign, minlength=5), 70))  # the contract
    np.testing.assert_array_equal(np.bincount(truth[ids], minlength=5), [15, 15, 14, 14, 12])  # tiny blob gives all
    # nearest-to-centroid first: the chosen members of the big blob are its most central ones
    big = np.flatnonzero(truth == 0)
    d = np.linalg.norm(X[big] - X[big].mean(0), axis=1)
    chosen = ids[truth[ids] == 0]
    assert np.median(np.linalg.norm(X[chosen] - X[big].mean(0), axis=1)) < np.percentile(d, 15)
    rand_ids = cluster_balanced_sample(X, 70, clusters=5, within="random", seed=0, nredo=5)
    np.testing.assert_array_equal(np.bincount(truth[rand_ids], minlength=5), [15, 15, 14, 14, 12])
    assert np.median(np.linalg.norm(X[rand_ids[truth[rand_ids] == 0]] - X[big].mean(0), axis=1)) > np.percentile(d, 15)


def test_random_sample_and_dispatch():
    a = random_sample(100, 10, seed=1)
    assert len(np.unique(a)) == 10 and a.max() < 100
    np.testing.assert_array_equal(a, random_sample(np.zeros((100, 2)), 10, seed=1))
    X = blobs(n=300, seed=13)
    for method in ("fps", "stratified", "clusters", "random"):
        ids = sample(X, 25, method=method, seed=2)
        assert len(np.unique(ids)) == 25 and ids.max() < 300
    np.testing.assert_array_equal(sample(X, 25, "fps", seed=2), sample(X, 25, "fps", seed=2))


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, message", [
    (lambda X: farthest_point_sample(X[0], 3), "2-D matrix"),
    (lambda X: farthest_point_sample(X[:0], 3), "empty"),
    (lambda X: farthest_point_sample(X, 0), "cannot select k=0 of 50"),
    (lambda X: farthest_point_sample(X, 51), "cannot select k=51 of 50"),
    (lambda X: farthest_point_sample(X, 2.5), "not a whole number"),
    (lambda X: farthest_point_sample(X, 3, metric="manhattan"), "unknown metric 'manhattan'"),
    (lambda X: farthest_point_sample(X, 3, dtype="int8"), "unsupported storage dtype"),
    (lambda X: farthest_point_sample(X, 3, start=50), "start index 50 is not a row"),
    (lambda X: farthest_point_sample(X, 3, start=[1, 1]), "same index twice"),
    (lambda X: farthest_point_sample(X, 2, start=[1, 2, 3]), "3 start indices but only k=2"),
    (lambda X: farthest_point_sample(X, 3, engine="turbo"), "unknown engine"),
    (lambda X: farthest_point_sample(np.where(np.arange(50)[:, None] == 3, np.nan, X), 3), "NaN or infinite"),
    (lambda X: farthest_point_sample(np.where(np.arange(50)[:, None] == 3, 0, X), 3, metric="cosine"), "zero length"),
    (lambda X: stratified_farthest_point_sample(X, 3, subset_size=0), "must be positive"),
    (lambda X: cluster_balanced_sample(X, 5, within="edge"), "within='edge'"),
    (lambda X: cluster_balanced_sample(X, 5, clusters=0), "clusters=0"),
    (lambda X: sample(X, 5, method="kmedoids"), "unknown sampling method 'kmedoids'"),
    (lambda X: balanced_quotas([3, 4], 8), "cannot take 8 items from clusters holding 7"),
    (lambda X: covering_radius(X, [99]), "row indices"),
])
def test_errors_name_problem_and_fix(call, message):
    X = blobs(n=50, seed=14)
    with pytest.raises(CuratorError) as e:
        call(X)
    assert message in str(e.value)
    assert e.value.fix


def test_cuda_device_matches_cpu_or_is_refused_clearly():
    import torch

    X = blobs(n=300, seed=15)
    if torch.cuda.is_available():  # on a GPU machine: the device loop must pick what the CPU picks
        gpu = farthest_point_sample(X, 40, start=1, device="cuda", dtype="float32")
        cpu = farthest_point_sample(X, 40, start=1, device="cpu", dtype="float32")
        np.testing.assert_array_equal(gpu[0], cpu[0])
        np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-4)
        gpu = farthest_point_sample(X, 40, start=1, device="cuda", dtype="float16")  # other summation order
        cpu = farthest_point_sample(X, 40, start=1, device="cpu", dtype="float16")
        assert np.mean(gpu[0] == cpu[0]) >= 0.9
        np.testing.assert_allclose(gpu[1][-1], cpu[1][-1], rtol=1e-2)
    else:
        with pytest.raises(CuratorError, match="CUDA is not available"):
            farthest_point_sample(X, 3, device="cuda")


# ----------------------------------------------------------------------------- workspace and CLI
def _workspace(tmp_path: Path, n: int = 40):
    from curator_widgets.sources.base import Chip
    from curator_widgets.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    rng = np.random.default_rng(0)
    chips = [Chip(key=f"t:{i}", image=rng.integers(0, 255, (8, 8, 3), dtype=np.uint8),
                  meta={"source": "test", "land_fraction": 1.0 if i % 4 == 0 else 0.0,
                        "label": "land" if i % 4 == 0 else "ocean", "width": 8, "height": 8})
             for i in range(n)]
    ws.add_chips(chips, progress=False)
    return ws


def _write_embeddings(ws, run: str, X: np.ndarray) -> None:
    path = ws.embeddings_path(run)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=X.shape)
    mm[:] = X
    mm.flush()
    path.with_suffix(".json").write_text(json.dumps({"run": run, "dim": X.shape[1], "count": len(X),
                                                     "normalized": False, "model_run": run}))


def test_save_and_load_sample(tmp_path):
    ws = _workspace(tmp_path)
    path = save_sample(ws, "pick", [0, 1, 2, 4], method="fps", run="r")
    assert load_sample(ws, "pick").tolist() == [0, 1, 2, 4]
    doc = json.loads(path.read_text())
    assert doc["stats"]["ocean_share"] == 0.5 and doc["stats"]["ocean_share_all"] == 0.75
    assert doc["stats"]["class_counts"] == {"land": 2, "ocean": 2}
    assert ws.meta["samples"]["pick"]["n"] == 4
    assert not list((ws.root / "samples").glob(".*tmp"))  # written atomically, no temp left
    assert selection_stats(ws, [1, 2, 3])["class_size_std"] == 1.5
    with pytest.raises(CuratorError, match="no sample named 'nope'"):
        load_sample(ws, "nope")
    with pytest.raises(CuratorError, match="not a plain name"):
        save_sample(ws, "../x", [0], method="fps")
    with pytest.raises(CuratorError, match="ids outside"):
        save_sample(ws, "bad", [0, 40], method="fps")


def test_cli_sample_fps_and_random(tmp_path, capsys):
    from curator_widgets.cli import main

    ws = _workspace(tmp_path)
    # land chips (every 4th) spread out, ocean chips nearly identical: diversity should find the land
    rng = np.random.default_rng(0)
    X = np.where((np.arange(40) % 4 == 0)[:, None], rng.normal(scale=3, size=(40, 16)),
                 rng.normal(scale=0.01, size=(40, 16))).astype(np.float32)
    _write_embeddings(ws, "r1", X)
    assert main(["sample", "-w", str(ws.root), "--method", "fps", "-n", "10"]) == 0
    out = capsys.readouterr().out
    assert "selected 10 of 40 chips with fps on run r1" in out
    fps = json.loads((ws.root / "samples" / "fps-10-r1.json").read_text())
    assert fps["stats"]["ocean_share"] <= 0.2 < fps["stats"]["ocean_share_all"]
    assert main(["sample", "-w", str(ws.root), "--method", "random", "-n", "10", "--name", "rnd"]) == 0
    assert len(load_sample(ws, "rnd")) == 10
    assert main(["sample", "-w", str(ws.root), "-m", "clusters", "-n", "8", "--clusters", "2"]) == 0
    assert main(["sample", "-w", str(ws.root), "-m", "stratified", "-n", "8", "--subset-size", "10"]) == 0


def test_cli_sample_errors(tmp_path, capsys):
    from curator_widgets.cli import main

    ws = _workspace(tmp_path)
    assert main(["sample", "-w", str(ws.root), "-n", "5"]) == 2
    err = capsys.readouterr().err
    assert "has no embeddings yet" in err and "fix:" in err
    _write_embeddings(ws, "a", np.ones((40, 4), np.float32) + np.arange(40)[:, None])
    _write_embeddings(ws, "b", np.ones((40, 4), np.float32) + np.arange(40)[:, None])
    assert main(["sample", "-w", str(ws.root), "-n", "5"]) == 2
    assert "several embedding runs (a, b)" in capsys.readouterr().err
    assert main(["sample", "-w", str(ws.root), "-n", "500", "--run", "a"]) == 2
    assert "cannot select n=500 of 40" in capsys.readouterr().err


# ----------------------------------------------------------------------------- benchmarks stay runnable
def test_circles_benchmark_quick(tmp_path):
    out = tmp_path / "circles.json"
    res = load_bench("circles").main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["quick"] is True
    row = res["table"][0]
    assert row["n"] == 500 and 0 <= row["random_acc_mean"] <= 1 and 0 <= row["diverse_acc_mean"] <= 1
    assert row["diverse_class_std_mean"] < row["random_class_std_mean"]  # diversity balances the rings


def test_sampling_speed_benchmark_quick(tmp_path):
    out = tmp_path / "speed.json"
    res = load_bench("sampling_speed").main(["--quick", "--out", str(out)])
    names = {r["method"] for r in res["cpu"]}
    assert {"reference pure-Python loop (extrapolated)", "sklearn pairwise_distances k-center",
            "exact FPS float32 (eager)", "exact FPS float16 (eager)", "memory-bandwidth bound float32",
            "naive row-major torch loop float32", "exact FPS float32 (eager, layout rows)",
            "exact FPS float32 (eager, layout features)"} <= names
    assert res["reference_same_picks"] is True
    rows = {r["method"]: r for r in res["cpu"]}
    assert rows["naive row-major torch loop float32"]["x_naive_loop"] == 1.0
    assert rows["exact FPS float32 (eager, layout rows)"]["same_picks_as_float32_eager"] == 1.0
    assert set(res["calibrated_layout"].values()) <= {"features", "rows"}


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("layout", ["features", "rows"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_both_cpu_layouts_pick_what_brute_force_picks(layout, dtype):
    """The calibration may choose either layout, so both must be exact (float16: same as features-major)."""
    X = blobs(n=500, seed=11)
    got, got_r = farthest_point_sample(X, 50, start=7, engine="eager", layout=layout, dtype=dtype)
    want, want_r = brute_fps(X, 50, 7)
    if dtype == "float32":
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got_r, want_r, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, farthest_point_sample(X, 50, start=7, engine="eager", layout="features",
                                                                 dtype=dtype)[0])


def test_calibrated_layout_is_measured_once_and_used_by_auto(monkeypatch):
    import curator_widgets.sampling as S

    monkeypatch.setattr(S, "_LAYOUT_CACHE", {})
    pick = S.calibrate_layout(8, "float32", rows=4096, repeats=1)
    assert pick in ("features", "rows") and len(S._LAYOUT_CACHE) == 1
    monkeypatch.setattr(S, "_CALIBRATE_BYTES", 0)  # every job counts as large: auto asks the calibration
    S._LAYOUT_CACHE[(8, "torch.float32", __import__("torch").get_num_threads(), 1 << 16)] = "rows"
    import torch

    assert S._choose_layout("auto", 500, 8, 50, torch.float32, torch.device("cpu"), "eager") is False
    S._LAYOUT_CACHE[(8, "torch.float32", torch.get_num_threads(), 1 << 16)] = "features"
    assert S._choose_layout("auto", 500, 8, 50, torch.float32, torch.device("cpu"), "eager") is True
    X = blobs(n=500, seed=12)
    np.testing.assert_array_equal(farthest_point_sample(X, 20, start=1, engine="eager")[0], brute_fps(X, 20, 1)[0])
    with pytest.raises(CuratorError, match="layout"):
        farthest_point_sample(X, 5, layout="columns")
