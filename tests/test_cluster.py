"""The pipeline on a real Dask cluster (issue 17): a LocalCluster of 2 worker processes and a
CLI-started `dask scheduler` + 2 `dask worker` pair on loopback. Every cluster result is compared
with the single-process function on the same data; a worker killed mid-FPS changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from curator_widgets import acquisition
from curator_widgets.cluster import SCHEDULER_ENV, LoopbackCluster, connect, get_client
from curator_widgets.cluster_active import cluster_predict_proba, cluster_score_and_pick
from curator_widgets.cluster_sampling import cluster_farthest_point_sample, cluster_stratified_farthest_point_sample
from curator_widgets.embed import load_embeddings
from curator_widgets.errors import CuratorError
from curator_widgets.heads import make_head
from curator_widgets.index import build_index, make_index
from curator_widgets.sampling import farthest_point_sample, stratified_farthest_point_sample
from curator_widgets.shards import ShardedEmbeddings

distributed = pytest.importorskip("distributed")
# worker processes each import torch once: ~10 s on an idle 2-core box, minutes when it is loaded
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_client():
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  memory_limit=0) as lc, distributed.Client(lc, set_as_default=False) as client:
        client.run(lambda: __import__("torch").zeros(1))  # the first torch import, once per worker
        yield client


@pytest.fixture(scope="module")
def cli_cluster():
    with LoopbackCluster(n_workers=2) as lc:
        connect(lc.address).run(lambda: __import__("torch").zeros(1))
        yield lc


def record_bars(monkeypatch) -> dict:
    """Every progress bar the package opens, drawn into a StringIO: {desc: [(count, total, disabled), ...]},
    read when the bars are done."""
    import io

    from tqdm.std import tqdm

    from curator_widgets import progress

    opened: list = []

    def bar(*args, **kwargs):
        drawn = tqdm(*args, **{**kwargs, "file": io.StringIO()})
        opened.append((kwargs.get("desc"), bool(kwargs.get("disable")), drawn))
        return drawn

    class Bars(dict):
        def __missing__(self, desc):  # tqdm sets .disable when it closes: keep what the caller asked for
            return [(b.n, b.total, off) for d, off, b in opened if d == desc]

    monkeypatch.setattr(progress, "progress_bar", bar)
    return Bars()


def fitted_head(X: np.ndarray, labelled: np.ndarray):
    y = (np.arange(len(X)) % 8 < 3).astype(int)  # clusters 0-2 are the positives
    head = make_head("logistic", 2, device="cpu")
    head.fit(X, y[labelled], ids=labelled)
    return head


def test_without_a_cluster_nothing_imports_dask_and_bad_addresses_fail_clearly(monkeypatch):
    code = ("import sys; from curator_widgets.cluster import get_client; import numpy as np;"
            "from curator_widgets.sampling import farthest_point_sample;"
            "assert get_client() is None; farthest_point_sample(np.eye(5, dtype=np.float32), 3);"
            "assert not {'dask', 'distributed', 'zarr'} & set(sys.modules), sorted(sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != SCHEDULER_ENV}
    subprocess.run([sys.executable, "-c", code], check=True, env={**env, "PYTHONPATH": os.getcwd()}, timeout=120)
    assert get_client(False) is None
    with pytest.raises(CuratorError, match="not a Dask client"):
        get_client(object())
    port = __import__("helpers").free_port()
    monkeypatch.setattr("curator_widgets.cluster.CONNECT_TIMEOUT", 1.0)  # refused connections are retried until then
    monkeypatch.setenv(SCHEDULER_ENV, f"tcp://127.0.0.1:{port}")
    with pytest.raises(CuratorError, match="cannot reach the Dask scheduler"):
        get_client()


def test_stratified_fps_on_a_local_cluster_equals_one_process(local_client, tmp_path, monkeypatch):
    """The client draws the candidate subsets as one process does; shards keep their share of them."""
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(3000, 12)) + 4 * rng.normal(size=(8, 12))[np.arange(3000) % 8]).astype(np.float16)
    np.save(tmp_path / "e.npy", X)
    emb = np.load(tmp_path / "e.npy", mmap_mode="r")
    bars = record_bars(monkeypatch)
    for kw in ({"subset_size": 400, "resample_every": 9}, {"subset_size": 5, "resample_every": 1000}, {}):
        want_trace: list = []
        want, want_r = stratified_farthest_point_sample(emb, 60, start=17, seed=4, trace=want_trace, **kw)
        for hold in ("memory", "disk"):
            trace: list = []
            steps: list = []
            got, got_r = cluster_stratified_farthest_point_sample(emb, 60, start=17, seed=4, client=local_client,
                                                                  shard_rows=700, hold=hold, trace=trace,
                                                                  step_times=steps, **kw)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_allclose(got_r, want_r, rtol=1e-5)
            assert [t["step"] for t in trace] == [t["step"] for t in want_trace] and len(steps) == 60
            assert all(np.array_equal(a["candidates"], b["candidates"]) for a, b in zip(trace, want_trace))
    # cosine, and every row a candidate: exact FPS
    got = cluster_stratified_farthest_point_sample(emb, 30, subset_size=3000, metric="cosine", client=local_client,
                                                   shard_rows=1000, progress=False)[0]
    np.testing.assert_array_equal(got, stratified_farthest_point_sample(emb, 30, subset_size=3000, metric="cosine")[0])
    assert bars["stratified farthest-point sampling (cluster)"][0] == (60, 60, False)
    with pytest.raises(CuratorError, match="must be positive"):
        cluster_stratified_farthest_point_sample(emb, 3, subset_size=0, client=local_client)


def test_index_al_round_and_fps_on_a_local_cluster_equal_one_process(local_client, embedded_ws, monkeypatch):
    ws, _ = embedded_ws(n=3000, d=16)
    bars = record_bars(monkeypatch)
    X = load_embeddings(ws, "r")  # a .npy memmap: the workers read their shards from the file
    with ShardedEmbeddings(X, client=local_client, shard_rows=700) as sh:
        assert [s.kind for s in sh.shards] == ["npy"] * 5 and sh.shards[-1].hi == 3000
        # imap: shard order, at most `window` tasks ahead of the one handed out
        sh.wait()  # every shard loaded on its worker, no rows moved here
        assert all(f.status == "finished" for f in sh.futures)
        seen = [(s.lo, f.result()) for s, f in sh.imap(lambda it: int(it[0].lo), window=2)]
        assert seen == [(s.lo, s.lo) for s in sh.shards]
        picks, radii = cluster_farthest_point_sample(sh, 40, start=[11, 2000])
        want, want_r = farthest_point_sample(X, 40, start=[11, 2000])
        np.testing.assert_array_equal(picks, want)
        np.testing.assert_allclose(radii, want_r, rtol=1e-5)
        assert bars["farthest-point sampling (cluster)"] == [(40, 40, False)]  # one count per step

        labelled = np.arange(0, 3000, 41)
        head = fitted_head(X, labelled)
        P = head.predict_proba(X)
        np.testing.assert_array_equal(cluster_predict_proba(sh, head), P)
        np.testing.assert_array_equal(cluster_predict_proba(sh, head, progress=False), P)
        assert bars["score (cluster)"] == [(5, 5, False), (0, 5, True)]  # one count per shard; progress=False: off
        cand = np.ones(3000, bool)
        cand[labelled] = False
        for strategy in ("entropy", "top_positive"):  # top_positive: hundreds of ties at p = 1
            np.testing.assert_array_equal(cluster_score_and_pick(sh, head, 64, strategy, candidates=cand),
                                          acquisition.select(P, 64, strategy, candidates=cand))
        assert bars["score and pick (cluster)"] == [(5, 5, False)] * 2
        with pytest.raises(CuratorError, match="cannot be split over shards"):
            cluster_score_and_pick(sh, head, 8, "random")
    # hold="disk": the workers keep only where each shard is in the file and read it in every step (memory
    # bounded by one shard): the same picks and the same batch
    with ShardedEmbeddings(X, client=local_client, shard_rows=700, hold="disk") as on_disk:
        assert all(rows is None for _, rows in local_client.gather(on_disk.futures))
        picks, radii = cluster_farthest_point_sample(on_disk, 40, start=[11, 2000])
        np.testing.assert_array_equal(picks, want)
        np.testing.assert_allclose(radii, want_r, rtol=1e-5)
        np.testing.assert_array_equal(cluster_score_and_pick(on_disk, head, 64, "entropy", candidates=cand),
                                      acquisition.select(P, 64, "entropy", candidates=cand))
    np.testing.assert_array_equal(cluster_predict_proba(X, head, client=local_client, shard_rows=700), P)
    with pytest.raises(CuratorError, match="hold='disk' needs embeddings in a file") as e:
        ShardedEmbeddings(np.asarray(X), client=local_client, hold="disk")
    assert "load_embeddings" in e.value.fix
    with pytest.raises(CuratorError, match="unknown hold 'ram'"):
        ShardedEmbeddings(X, client=local_client, hold="ram")

    sim = build_index(ws, "r", kind="ivf", metric="l2", client=local_client, shard_rows=700, progress=True)
    assert bars["index: shard adds (cluster)"] == [(5, 5, False)]
    ref = make_index(np.asarray(X), "l2", "ivf")
    assert sim.params["factory"] == ref.params["factory"] and sim.params["knob"] == ref.params["knob"]
    assert sim.params["recall_at_10"] == ref.params["recall_at_10"]
    q = np.asarray(X[:50], dtype=np.float32)
    D1, I1 = sim.search_prepared(q, 10)
    D2, I2 = ref.search_prepared(q, 10)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_array_equal(D1, D2)
    # on-disk lists: each worker writes its shard's block file, this process merges them into one .ivfdata
    disk = build_index(ws, "r", kind="ivf", metric="l2", client=local_client, shard_rows=700, progress=True,
                       on_disk=True)
    assert bars["index: shard blocks (cluster)"] == [(5, 5, False)] and disk.params["ivfdata"]
    assert [p.name for p in ws.index_path("r").parent.glob("*.ivfdata")] == [disk.params["ivfdata"]]
    assert not list(ws.index_path("r").parent.glob(".shards-*"))
    D3, I3 = disk.search_prepared(q, 10)
    np.testing.assert_array_equal(I3, I2)
    np.testing.assert_array_equal(D3, D2)
    # an HNSW or two-level IVF coarse quantizer travels to the workers with the index: the same answers
    for factory in ("IVF32_HNSW32,Flat", "IVF32(IVF8,Flat),Flat"):
        ref = make_index(np.asarray(X), "l2", factory)
        for on_disk in (False, True):
            graph = build_index(ws, "r", kind=factory, metric="l2", client=local_client, shard_rows=700,
                                progress=False, on_disk=on_disk, rebuild=True)
            assert graph.params["factory"] == factory
            D4, I4 = graph.search_prepared(q, 10)
            np.testing.assert_array_equal(I4, ref.search_prepared(q, 10)[1])
            np.testing.assert_array_equal(D4, ref.search_prepared(q, 10)[0])

    # an active-learning round of ActiveLoop(client=): scored on the workers, the same batch and scores
    from curator_widgets.active import ActiveLoop, Oracle

    rounds = {}
    for name, client in (("one", False), ("cluster", local_client)):
        loop = ActiveLoop(ws, "r", name=name, batch_size=16, client=client)
        loop.seed(0, k=16, r=16)
        rounds[name] = loop.step(Oracle(ws, positive="c0")).batch, loop.score()
    assert rounds["one"][0] == rounds["cluster"][0] and len(rounds["one"][0]) == 16
    np.testing.assert_array_equal(rounds["one"][1], rounds["cluster"][1])


def test_embed_on_workers_writes_zarr_that_loads_lazily(local_client, tmp_path):
    zarr = pytest.importorskip("zarr")
    from curator_widgets import FolderSource, Workspace
    from curator_widgets.cluster_embed import cluster_embed
    from curator_widgets.zarr_embeddings import zarr_path
    from curator_widgets.embed import embed
    from curator_widgets.train import train_ssl
    from test_train import SIZE, ucm_subset

    ws = Workspace.create(tmp_path / "ws")
    ws.ingest(FolderSource(ucm_subset(tmp_path / "ucm", classes=3, per_class=6)), size=None, progress=False)
    train_ssl(ws, run="m", epochs=1, image_size=SIZE, batch_size=9, knn=False, progress=False, workers=0)
    embed(ws, "m", batch_size=4, progress=False)
    path = cluster_embed(ws, "mz", model_run="m", client=local_client, shard_rows=8, batch_size=4, progress=False)
    assert path == zarr_path(ws, "mz") and not ws.embeddings_path("mz").exists()
    Z = load_embeddings(ws, "mz")
    assert isinstance(Z, zarr.Array) and Z.chunks == (8, Z.shape[1]) and Z.dtype == np.float16
    np.testing.assert_allclose(np.asarray(Z[:], np.float32), np.asarray(load_embeddings(ws, "m"), np.float32),
                               atol=2e-3)
    assert ws.meta["embeddings"]["mz"]["format"] == "zarr"
    # the finished run is reused, and FPS over the zarr shards (read by the workers) equals one process
    assert cluster_embed(ws, "mz", model_run="m", client=local_client, shard_rows=8, batch_size=4, progress=False) == path
    np.testing.assert_array_equal(cluster_farthest_point_sample(Z, 6, client=local_client)[0],
                                  farthest_point_sample(np.asarray(Z[:]), 6)[0])
    # an interrupted run (shard 0 recorded as finished, no sidecar yet) resumes: shard 0 is not redone
    import json

    meta = json.loads(ws.embeddings_path("mz").with_suffix(".json").read_text())
    ws.embeddings_path("mz").with_suffix(".json").unlink()
    zarr.open_array(str(path), mode="r+")[:8] = 7.0  # a marker a recomputation would overwrite
    (path.parent / ".mz.zarr-progress.json").write_text(json.dumps({**meta, "done": [0]}))
    cluster_embed(ws, "mz", model_run="m", client=local_client, shard_rows=8, batch_size=4, progress=False)
    Z = load_embeddings(ws, "mz")
    assert (np.asarray(Z[:8]) == 7.0).all()
    np.testing.assert_allclose(np.asarray(Z[8:], np.float32), np.asarray(load_embeddings(ws, "m")[8:], np.float32),
                               atol=2e-3)
    assert not (path.parent / ".mz.zarr-progress.json").exists()


def test_cli_cluster_found_by_env_and_a_killed_worker_changes_nothing(cli_cluster, embedded_ws, monkeypatch):
    ws, _ = embedded_ws(n=3000, d=16)
    X = load_embeddings(ws, "r")
    monkeypatch.setenv(SCHEDULER_ENV, cli_cluster.address)
    client = get_client()
    assert client.scheduler.address == cli_cluster.address
    want, want_r = farthest_point_sample(X, 30, start=7)
    steps: list[float] = []
    out: dict = {}
    run = threading.Thread(target=lambda: out.update(r=cluster_farthest_point_sample(X, 30, start=7, shard_rows=500,
                                                                                    step_times=steps)))
    run.start()
    while len(steps) < 5 and run.is_alive():
        time.sleep(0.01)
    victim = cli_cluster.workers[0]
    os.kill(victim.pid, signal.SIGKILL)  # mid-run: its shards and min-distances are gone
    run.join(240)
    assert not run.is_alive() and len(steps) == 30
    picks, radii = out["r"]
    np.testing.assert_array_equal(picks, want)  # nothing lost, nothing picked twice
    np.testing.assert_allclose(radii, want_r, rtol=1e-5)
    assert victim.wait(10) == -signal.SIGKILL
    cli_cluster.workers.remove(victim)
    cli_cluster.start_worker()
    labelled = np.arange(0, 3000, 29)
    head = fitted_head(X, labelled)
    cand = np.ones(3000, bool)
    cand[labelled] = False
    np.testing.assert_array_equal(cluster_score_and_pick(X, head, 32, "margin", candidates=cand, shard_rows=800),
                                  acquisition.select(head.predict_proba(X), 32, "margin", candidates=cand))
    # the CLI's --scheduler alone (no environment variable) runs `curator sample` there: the same picks
    from curator_widgets.cli import main
    from curator_widgets.sampling import load_sample, sample

    monkeypatch.delenv(SCHEDULER_ENV)
    argv = ["sample", "-w", str(ws.root), "--run", "r", "-n", "12", "--seed", "3", "--scheduler", cli_cluster.address]
    assert main(argv) == 0
    np.testing.assert_array_equal(load_sample(ws, "fps-12-r"), sample(X, 12, "fps", seed=3))
    assert main(argv + ["--hold", "disk", "--name", "fps-disk"]) == 0  # rows read from the file in every step
    np.testing.assert_array_equal(load_sample(ws, "fps-disk"), sample(X, 12, "fps", seed=3))
    assert main(argv + ["--method", "stratified", "--subset-size", "300"]) == 0  # the paper's FPS, there too
    np.testing.assert_array_equal(load_sample(ws, "stratified-12-r"),
                                  sample(X, 12, "stratified", seed=3, subset_size=300))


def test_projection_places_the_rest_on_workers_where_one_process_does(local_client, embedded_ws, monkeypatch):
    from curator_widgets import projection as pj

    ws, _ = embedded_ws(n=3000, d=16)
    kw = dict(n_epochs=30, sample_threshold=1000, sample_size=600, seed=0, recompute=True)
    want = pj.project(ws, "r", client=False, progress=False, **kw)
    bars = record_bars(monkeypatch)
    got = pj.project(ws, "r", client=local_client, shard_rows=700, progress=True, **kw)
    assert bars["project: neighbours (cluster)"] == bars["project: place (cluster)"] == [(5, 5, False)]
    meta = pj.cached_projection(ws, "r")[1]
    assert meta["cluster"] and meta["fit"] == 600 and meta["placed"] == 2400
    rng = np.random.default_rng(0)
    fitted = np.sort(rng.choice(3000, 600, replace=False))  # project's own sample draw
    np.testing.assert_array_equal(got[fitted], want[fitted])  # the fit ran here, on the same rows
    # same neighbours, weights, start and random stream per chip; umap's compiled SGD (numba fastmath)
    # may still round a rare chip differently by memory layout, and its 30 SGD epochs carry that chip a
    # different way through its neighbourhood (measured: 2 of 2,400, 0.02 apart on an idle box, 0.64 on a
    # layout 16 wide on a loaded one): nearly all chips identical, none leaves its neighbourhood
    same = (got == want).all(1)
    assert same.mean() > 0.99 and np.abs(got - want).max() < 0.1 * np.ptp(want), (np.flatnonzero(~same),
                                                                                 np.abs(got - want).max())


# ----------------------------------------------------------------------------- benchmark stays runnable
def test_scale_embed_benchmark_quick(tmp_path):
    """benchmarks/scale_embed.py --quick: 200 Blue Marble chips embedded in one process and on 1 and 2
    loopback workers; the cluster's vectors equal one process's, and the docs table renders."""
    import json

    from helpers import load_bench

    bench = load_bench("scale_embed")
    out = tmp_path / "scale_embed.json"
    doc = bench.main(["--quick", "--out", str(out), "--workdir", str(tmp_path)])
    on_disk = json.loads(out.read_text())
    assert on_disk["quick"] is True and on_disk["seeds"] == [0] and on_disk["commit"]
    rows = on_disk["rows"]
    assert [(r["setup"], r["workers"], r["threads_each"]) for r in rows] == [
        ("1 process", 1, 1), ("1 process", 1, 2), ("cluster", 1, 1), ("cluster", 2, 1)]
    assert all(r["chips"] == 200 and r["images_per_s"] > 0 for r in rows)
    assert rows[3]["images_per_s_per_worker"] == pytest.approx(rows[3]["images_per_s"] / 2, abs=0.1)
    assert on_disk["cluster_equals_single"] is True and all(r["max_abs_diff"] <= bench.ATOL for r in rows)
    table = bench.doc_tables(doc)["embed"]
    assert table.count("\n| ") == 4 and "cluster, 2 workers" in table and "commit `" in table


# ----------------------------------------------------------------------------- ingest on the workers
MODIS = "MODIS_Terra_CorrectedReflectance_TrueColor"


def same_manifests(a, b) -> None:
    """Same chips under the same ids, same metadata, same pixels (paths differ: chips/ vs chips/parts/)."""
    from curator_widgets.images import read_image

    ma, mb = a.manifest, b.manifest
    assert ma["key"].tolist() == mb["key"].tolist() and ma["id"].tolist() == mb["id"].tolist()
    cols = [c for c in ma.columns if c not in ("path", "flags")]
    assert ma[cols].equals(mb[cols])
    assert [list(f) for f in ma["flags"]] == [list(f) for f in mb["flags"]]
    for i in range(0, len(ma), max(1, len(ma) // 7)):
        np.testing.assert_array_equal(read_image(a.chip_path(i)), read_image(b.chip_path(i)))


def test_gibs_ingest_cut_by_date_on_the_workers_gives_the_single_process_ids(local_client, gibs_server, tmp_path,
                                                                            monkeypatch):
    import pyarrow.parquet as pq

    from curator_widgets.cluster_ingest import PARTS, parts_dataset
    from curator_widgets.sources.gibs import GIBSSource
    from curator_widgets.workspace import Workspace

    bars = record_bars(monkeypatch)
    region, dates = (-20, -10, 40, 35), ("2020-09-26", "2020-09-27")  # 09-26 has no imagery: 404, reported

    def src(name):
        return GIBSSource(MODIS, base_url=gibs_server.base_url, progress=False, retries=1, level=2,
                          cache=tmp_path / name)

    one, many = Workspace.create(tmp_path / "one"), Workspace.create(tmp_path / "many")
    with pytest.warns(UserWarning, match="2020-09-26: no tiles"):
        r1 = one.ingest(src("c1"), region=region, dates=dates, size=64, progress=False)
    s2 = src("c2")
    with pytest.warns(UserWarning, match="2020-09-26: no tiles"):  # the workers' problems are warned here too
        r2 = many.ingest(s2, region=region, dates=dates, size=64, client=local_client)
    assert r2.added == r1.added > 0 and r2.ids == r1.ids
    assert [e.where for e in r2.skipped] == [e.where for e in r1.skipped] and "2020-09-26" in r2.skipped[0].where
    assert s2.stats["chips"] == r1.added and len(s2.reports) == 2  # the workers' counters reach the caller
    assert bars["gibs pieces (cluster)"] == [(2, 2, False)]
    same_manifests(one, many)
    assert all(p.startswith("chips/parts/gibs-") for p in many.manifest["path"])
    parts = sorted((many.root / PARTS).glob("*.parquet"))
    assert len(parts) == 2 and parts_dataset(many).count_rows() == r2.added
    complete = {p.name: pq.read_schema(p).metadata[b"curator_complete"] for p in parts}
    assert sorted(complete.values()) == [b"0", b"1"]  # the 404 date is not done: a re-run tries it again

    # a re-run cuts only the unfinished piece and adds nothing; ids unchanged
    before = gibs_server.tile_requests()
    with pytest.warns(UserWarning, match="2020-09-26: no tiles"):
        r3 = many.ingest(src("c3"), region=region, dates=dates, size=64, client=local_client, progress=False)
    again = gibs_server.tile_requests()[len(before):]
    assert r3.added == 0 and r3.existing == r1.added and again and all("2020-09-26" in p for p in again)
    assert many.manifest["key"].tolist() == one.manifest["key"].tolist()


def test_a_piece_with_failed_tiles_is_cut_again_and_earlier_chips_keep_their_files(local_client, gibs_server, tmp_path):
    from curator_widgets.images import read_image
    from curator_widgets.sources.gibs import GIBSSource
    from curator_widgets.workspace import Workspace

    region, kw = (-20, -10, 40, 35), dict(dates="2020-09-27", size=64, overlap=0.25)

    def src(name):
        return GIBSSource(MODIS, base_url=gibs_server.base_url, progress=False, retries=1, level=3,
                          cache=tmp_path / name)

    ws = Workspace.create(tmp_path / "ws")
    gibs_server.inject("500", times=-1, match="/250m/3/1/4.jpg")  # one of the six tiles keeps failing
    with pytest.warns(UserWarning, match="re-run the same ingest"):
        first = ws.ingest(src("c1"), region=region, client=local_client, progress=False, **kw)
    before = ws.manifest.copy()
    assert first.added > 0 and any("HTTP 500" in e.reason for e in first.skipped)
    pixels = {i: read_image(ws.chip_path(i)) for i in range(0, first.added, 7)}
    gibs_server.reset()  # the server recovers: the unfinished piece is cut again, whole
    second = ws.ingest(src("c2"), region=region, client=local_client, progress=False, **kw)
    assert second.added > 0 and second.existing == first.added
    df = ws.manifest
    assert df["key"].is_unique and df.iloc[:first.added]["key"].tolist() == before["key"].tolist()
    for i, img in pixels.items():  # the first run's rows still show their own chips
        np.testing.assert_array_equal(read_image(ws.chip_path(i)), img)
    one = Workspace.create(tmp_path / "one")  # and the whole set is what one process cuts
    r = one.ingest(src("c3"), region=region, progress=False, **kw)
    assert r.added == len(df) and sorted(one.manifest["key"]) == sorted(df["key"])


def test_folder_ingest_on_a_cli_cluster_survives_a_killed_worker(cli_cluster, tmp_path, monkeypatch):
    from PIL import Image

    from curator_widgets.sources import folder as folder_mod
    from curator_widgets.sources.folder import FolderSource
    from curator_widgets.workspace import Workspace

    rng = np.random.default_rng(0)
    for c in ("forest", "river", "beach"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "imgs" / "river" / "broken.png").write_bytes(b"not a png")
    monkeypatch.setattr(folder_mod, "PIECE_FILES", 1)  # 25 pieces: a worker dies with some of them in flight

    with pytest.warns(UserWarning, match="broken.png"):
        one = Workspace.create(tmp_path / "one")
        r1 = one.ingest(FolderSource(tmp_path / "imgs"), size=16, progress=False)
    many = Workspace.create(tmp_path / "many")
    client = connect(cli_cluster.address)
    out: dict = {}
    run = threading.Thread(target=lambda: out.update(r=many.ingest(FolderSource(tmp_path / "imgs"), size=16,
                                                                     client=client, progress=False)))
    run.start()
    parts = many.root / "manifest.parts"
    while run.is_alive() and len(list(parts.glob("*.parquet"))) < 3:
        time.sleep(0.005)
    victim = cli_cluster.workers[0]
    os.kill(victim.pid, signal.SIGKILL)
    done_at_kill = len(list(parts.glob("*.parquet")))
    run.join(240)
    assert not run.is_alive()
    r2 = out["r"]
    assert victim.wait(10) == -signal.SIGKILL
    cli_cluster.workers.remove(victim)
    cli_cluster.start_worker()
    assert r2.added == r1.added == 24 * 9 and r2.ids == r1.ids  # 40x48 images: 3 x 3 chips of 16 px (shifted)
    assert done_at_kill < 25  # the worker died with pieces still to cut
    assert [e.where for e in r2.skipped] == [e.where for e in r1.skipped]
    same_manifests(one, many)
    # nothing duplicated: one chip file per manifest row, in the pieces' folders
    files = sorted((many.root / "chips" / "parts").rglob("*.png"))
    assert len(files) == len(many) and {str(f.relative_to(many.root)) for f in files} == set(many.manifest["path"])
    # in-place chips (size=None) travel as absolute paths and are never copied
    whole = Workspace.create(tmp_path / "whole")
    with pytest.warns(UserWarning, match="broken.png"):
        r3 = whole.ingest(FolderSource(tmp_path / "imgs"), client=client, progress=False)
    assert r3.added == 24 and not (whole.root / "chips" / "parts").exists()
    assert all(p.startswith(str(tmp_path / "imgs")) for p in whole.manifest["path"])
    with pytest.raises(CuratorError, match="is not inside the image folder"):
        list(FolderSource(tmp_path / "imgs").chips(files=["../one/workspace.json"]))
    # the CLI twin: `curator ingest --scheduler ADDRESS`
    from curator_widgets.cli import main

    with pytest.warns(UserWarning, match="broken.png"):
        assert main(["ingest", "-w", str(tmp_path / "cli"), "--source", "folder", "--folder", str(tmp_path / "imgs"),
                     "--size", "16", "--scheduler", cli_cluster.address]) == 0
    same_manifests(one, Workspace.open(tmp_path / "cli"))


def test_scale_benchmark_quick(tmp_path):
    """benchmarks/scale.py --quick: every phase (held in memory, held on disk, index, MODIS patches) gives the
    single-process answers, each worker's peak memory is recorded per phase, and the docs tables render."""
    from helpers import load_bench

    bench = load_bench("scale")
    doc = bench.main(["--quick", "--out", str(tmp_path / "scale.json")])
    for r in doc["rows"]:
        assert r["fps_same_picks"] and r["disk_fps_same_picks"] and r["al_same_picks"] and r["disk_al_same_picks"]
        assert r["stratified_fps_same_picks"] and r["stratified_fps_unique"] and r["stratified_fps_cluster_s"] > 0
        assert r["index_same_results"] and r["index_ondisk_same_results"] and r["recall_at_10"] >= 0.95
        assert len(r["worker_peak_rss_disk_mib"]) == 2 and min(r["worker_peak_rss_memory_mib"].values()) > 0
    assert [r["data"] for r in doc["modis_rows"]] == ["modis-patches"] * 2
    assert all(r["index_same_results"] and r["al_same_picks"] and r["fps_same_picks"] for r in doc["modis_rows"])
    assert "worker_disk_peak_rss_mib" in doc["cost_per_chip_ratio_largest_vs_smallest"]
