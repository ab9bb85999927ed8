"""The pipeline on a real Dask cluster against one process: a CLI-started `dask scheduler` and
2 `dask worker` processes on loopback, float16 [N, 128] embeddings with cluster structure, and
real-imagery vectors (8x8 patches of the MODIS global mosaic in all 8 rotations/flips, PCA to 128,
as benchmarks/search.py's) tiled up to the same N for the index and the active-learning round.

Per size: exact FPS (picks, total and per-step latency), IVF index (trained on a sample in the
client, shards added on the workers, merged: recall@10, p50 query latency), one active-learning
round (fit + score all + pick 64), each also run in one process on the same data (same picks,
same recall?), cost per chip, and peak RSS per worker (psutil). The JSON carries the per-chip
costs that docs/scale.md projects to 100M and 1B chips.

    .venv/bin/python benchmarks/scale.py                 # N = 1M and 2M (takes many minutes on 2 cores)
    .venv/bin/python benchmarks/scale.py --sizes 200000 400000
    .venv/bin/python benchmarks/scale.py --quick         # N = 20k, 40k; a smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402
from sampling_speed import POOL_BLOCK, pool_block  # noqa: E402
from search import modis_mosaic, mosaic_patches  # noqa: E402

from curator_widgets import acquisition  # noqa: E402
from curator_widgets.cluster import LoopbackCluster, connect  # noqa: E402
from curator_widgets.cluster_active import cluster_score_and_pick  # noqa: E402
from curator_widgets.cluster_index import shard_adder, shard_writer  # noqa: E402
from curator_widgets.cluster_sampling import (cluster_farthest_point_sample,  # noqa: E402
                                              cluster_stratified_farthest_point_sample)
from curator_widgets.heads import make_head  # noqa: E402
from curator_widgets.index import CHUNK, make_index, prepare  # noqa: E402
from curator_widgets.sampling import farthest_point_sample, stratified_farthest_point_sample  # noqa: E402
from curator_widgets.shards import ShardedEmbeddings  # noqa: E402


STRATIFIED_K = 10_000  # picks of the stratified FPS row (the 10k)
DISK_K = 16  # FPS picks with hold="disk" (every step reads the file), compared with the first 16 held in memory


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def write_npy(path: Path, n: int, d: int, seed: int) -> np.memmap:
    """Float16 mixture embeddings written block by block, reopened as the memmap workers read."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
    for lo in range(0, n, POOL_BLOCK):
        block = pool_block(n, lo, d, seed)  # a mixture of its own per block
        arr[lo:lo + len(block)] = block
    arr.flush()
    del arr
    return np.load(path, mmap_mode="r")


def write_modis_npy(path: Path, n: int, d: int, seed: int, p: int = 8) -> np.memmap:
    """n MODIS-mosaic patch vectors, float16, block by block: the mosaic has ~8M patch positions, so
    positions are drawn with replacement and each patch is turned by one of the 8 rotations/flips
    (64M distinct patches); a PCA fitted once on 50,000 of them projects every block to d."""
    img = modis_mosaic()
    h, w, _ = img.shape
    rng = np.random.default_rng(seed)

    def block(m: int) -> np.ndarray:
        x = mosaic_patches(img, rng.integers(0, h - p, m), rng.integers(0, w - p, m), p).reshape(m, p, p, 3)
        turn = rng.integers(0, 8, m)
        for t in range(1, 8):
            sel = turn == t
            y = np.rot90(x[sel], t % 4, axes=(1, 2))
            x[sel] = y[:, :, ::-1] if t >= 4 else y
        return x.reshape(m, -1)

    fit = block(50_000)
    mean = fit.mean(0)
    basis = np.linalg.svd(fit - mean, full_matrices=False)[2][:d].T.astype(np.float32)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
    for lo in range(0, n, 1 << 18):
        hi = min(n, lo + (1 << 18))
        arr[lo:hi] = ((block(hi - lo) - mean) @ basis).astype(np.float16)
    arr.flush()
    del arr
    return np.load(path, mmap_mode="r")


def p50_query_ms(sim, q: np.ndarray) -> float:
    times = []
    for row in q:
        t0 = time.perf_counter()
        sim.search_prepared(row[None, :], 10)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def worker_peak_rss(client) -> dict[str, float]:
    def peak() -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux

    return {addr: round(v, 1) for addr, v in client.run(peak).items()}


def _rss_start(dask_worker) -> None:
    """A thread on the worker that samples its RSS every 20 ms; `_rss_peak` reads and resets the peak."""
    import threading

    import psutil

    proc = psutil.Process()
    state = {"peak": proc.memory_info().rss}

    def loop() -> None:
        while True:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            time.sleep(0.02)

    threading.Thread(target=loop, daemon=True, name="rss-sampler").start()
    dask_worker._curator_rss = state


def _rss_peak(dask_worker) -> float:
    import psutil

    state = dask_worker._curator_rss
    now = psutil.Process().memory_info().rss
    peak, state["peak"] = max(state["peak"], now), now
    return peak / 2**20


def phase_peak_rss(client) -> dict[str, float]:
    """Each worker's peak RSS (MiB) since the last call."""
    return {addr: round(v, 1) for addr, v in client.run(_rss_peak).items()}


def index_part(sh: ShardedEmbeddings, X, queries: int, seed: int, tmp: Path | None) -> dict:
    """IVF built on the cluster and in one process (same results?), recall@10, p50 query latency; with
    `tmp`, also the on-disk build whose block files the workers write."""
    n = X.shape[0]
    sim_c, t = timed(lambda: make_index(X, "l2", "ivf", seed=seed, add=shard_adder(
        sh, lambda x: prepare(x, "l2"), CHUNK)))
    sim_s, t1 = timed(lambda: make_index(X, "l2", "ivf", seed=seed))
    q = np.asarray(X[np.random.default_rng(seed).choice(n, queries, replace=False)], dtype=np.float32)
    same = bool(np.array_equal(sim_c.search_prepared(q, 10)[1], sim_s.search_prepared(q, 10)[1]))
    row = dict(index=sim_c.params["factory"], nprobe=sim_c.params.get("knob"),
               index_cluster_s=round(t, 2), index_single_s=round(t1, 2),
               recall_at_10=sim_c.params.get("recall_at_10"), recall_single=sim_s.params.get("recall_at_10"),
               query_p50_ms=round(p50_query_ms(sim_c, q[:200]), 3), index_same_results=same)
    if tmp is not None:  # on-disk lists: the workers write block files, this process merges them into one file
        data = tmp / f"x{n}.ivfdata"
        sim_d, t = timed(lambda: make_index(X, "l2", "ivf", seed=seed, ivf_only=True, add=shard_writer(
            sh, lambda x: prepare(x, "l2"), data, CHUNK, progress=False)))
        row.update(index_ondisk_cluster_s=round(t, 2), ondisk_GB=round(data.stat().st_size / 1e9, 3),
                   index_ondisk_same_results=bool(np.array_equal(sim_d.search_prepared(q, 10)[1],
                                                                 sim_s.search_prepared(q, 10)[1])),
                   query_ondisk_p50_ms=round(p50_query_ms(sim_d, q[:200]), 3))
        del sim_d
        data.unlink()
    return row


def al_part(sh: ShardedEmbeddings, X, al_n: int, seed: int) -> dict:
    """One active-learning round (fit on 512 labels + score every chip + pick al_n) on the cluster and in one process."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    labelled = np.sort(rng.choice(n, 512, replace=False))
    y = (np.asarray(X[labelled, 0], dtype=np.float32) > 0).astype(int)  # a rule on the data: a real task shape
    head = make_head("logistic", 2, seed=seed, device="cpu")
    _, t_fit = timed(lambda: head.fit(X, y, ids=labelled))
    cand = np.ones(n, bool)
    cand[labelled] = False
    cpk, t = timed(lambda: cluster_score_and_pick(sh, head, al_n, "entropy", candidates=cand))
    spk, t1 = timed(lambda: acquisition.select(head.predict_proba(X), al_n, "entropy", candidates=cand))
    return dict(al_fit_s=round(t_fit, 2), al_round_cluster_s=round(t_fit + t, 2),
                al_round_single_s=round(t_fit + t1, 2), al_same_picks=bool(np.array_equal(cpk, spk)))


def fps_part(sh: ShardedEmbeddings, k: int, single_picks: np.ndarray, single_s: float, progress: bool) -> dict:
    """Exact FPS over the held shards (k picks, per-step latency) against the single-process picks."""
    steps: list[float] = []
    (cp, _), t = timed(lambda: cluster_farthest_point_sample(sh, k, start=0, step_times=steps, progress=progress))
    return dict(fps_k=k, fps_cluster_s=round(t, 2), fps_single_s=round(single_s, 2),
                fps_step_p50_ms=round(1e3 * float(np.median(steps)), 1),
                fps_same_picks=bool(np.array_equal(cp, single_picks)))


def per_chip(row: dict, keys: tuple[str, ...]) -> None:
    """Add `<key>_us_per_chip` (microseconds per chip) beside each `<key>_s` of a row."""
    for key in keys:
        row[key[:-2] + "_us_per_chip"] = round(1e6 * row[key] / row["N"], 3)


def disk_part(client, X, k: int, al_n: int, shard_rows: int, seed: int, single_picks: np.ndarray) -> dict:
    """hold="disk": the workers keep no rows between steps and read their shards in every one. FPS (its first k
    picks, against the single-process `single_picks`) and one AL round against one process, and each worker's
    peak RSS while they ran."""
    phase_peak_rss(client)  # resets each worker's peak to its RSS now, so the next read is where the phase starts
    before = phase_peak_rss(client)
    with ShardedEmbeddings(X, client=client, shard_rows=shard_rows, hold="disk") as sh:
        steps: list[float] = []
        (cp, _), t = timed(lambda: cluster_farthest_point_sample(sh, k, start=0, step_times=steps, progress=False))
        row = dict(disk_fps_k=k, disk_fps_cluster_s=round(t, 2), disk_fps_step_p50_ms=round(1e3 * float(np.median(steps)), 1),
                   disk_fps_same_picks=bool(np.array_equal(cp, single_picks[:k])))
        al = al_part(sh, X, al_n, seed)
        row.update(disk_al_round_cluster_s=al["al_round_cluster_s"], disk_al_same_picks=al["al_same_picks"])
    row.update(worker_rss_before_mib=before, worker_peak_rss_disk_mib=phase_peak_rss(client))
    return row


def one_size(client, X, k: int, al_n: int, shard_rows: int, queries: int, seed: int, tmp: Path,
             strat_k: int = STRATIFIED_K) -> dict:
    n, d = X.shape
    row: dict = {"data": "synthetic", "N": n, "d": d, "shard_rows": shard_rows, "shards": -(-n // shard_rows)}
    (sp, _), t1 = timed(lambda: farthest_point_sample(X, k, start=0, progress=False))
    row.update(disk_part(client, X, min(DISK_K, k), al_n, shard_rows, seed, single_picks=sp))
    # the index is one pass over the rows: build_index's cluster path reads each shard in its add task
    with ShardedEmbeddings(X, client=client, shard_rows=shard_rows, hold="disk") as sh:
        row.update(index_part(sh, X, queries, seed, tmp))
    row["worker_peak_rss_index_mib"] = phase_peak_rss(client)
    with ShardedEmbeddings(X, client=client, shard_rows=shard_rows) as sh:
        t_load = timed(lambda: len(client.gather(sh.futures)))[1]  # timed as before, the rows not kept here
        row["load_s"] = round(t_load, 2)
        row.update(fps_part(sh, k, sp, t1, progress=True))

        # the paper's stratified FPS reads only its candidate rows (m = max(10000, 10k)): one process, and its
        # cluster twin, where the shards prepare each redraw's candidates and the client runs the picks
        (strat, _), t = timed(lambda: stratified_farthest_point_sample(X, strat_k, start=0, progress=False))
        steps: list[float] = []
        (cstrat, _), tc = timed(lambda: cluster_stratified_farthest_point_sample(sh, strat_k, start=0,
                                                                               step_times=steps, progress=False))
        row.update(stratified_fps_k=strat_k, stratified_fps_single_s=round(t, 2),
                   stratified_fps_cluster_s=round(tc, 2),
                   stratified_fps_step_p50_ms=round(1e3 * float(np.median(steps)), 2),
                   stratified_fps_same_picks=bool(np.array_equal(cstrat, strat)),
                   stratified_fps_unique=bool(len(np.unique(strat)) == strat_k))
        row.update(al_part(sh, X, al_n, seed))
        row["worker_peak_rss_memory_mib"] = phase_peak_rss(client)
        row["worker_peak_rss_mib"] = worker_peak_rss(client)
    row["rows_per_worker"] = n // max(len(row["worker_peak_rss_mib"]), 1)
    per_chip(row, ("fps_cluster_s", "index_cluster_s", "al_round_cluster_s", "index_ondisk_cluster_s",
                   "stratified_fps_single_s", "stratified_fps_cluster_s", "disk_fps_cluster_s"))
    row["fps_step_ns_per_chip"] = round(1e6 * row["fps_step_p50_ms"] / n, 3)
    return row


def modis_size(client, X, k: int, al_n: int, shard_rows: int, queries: int, seed: int) -> dict:
    """Exact FPS, the index and the active-learning round on real-imagery vectors, each against one process
    (FPS's cost does not depend on the data, its picks do: near-duplicate patches and ties are real here)."""
    n, d = X.shape
    row: dict = {"data": "modis-patches", "N": n, "d": d, "shard_rows": shard_rows, "shards": -(-n // shard_rows)}
    (sp, _), t1 = timed(lambda: farthest_point_sample(X, k, start=0, progress=False))
    with ShardedEmbeddings(X, client=client, shard_rows=shard_rows) as sh:
        sh.wait()
        row.update(fps_part(sh, k, sp, t1, progress=False))
        row.update(index_part(sh, X, queries, seed, None))
        row.update(al_part(sh, X, al_n, seed))
    per_chip(row, ("fps_cluster_s", "index_cluster_s", "al_round_cluster_s"))
    return row


def projection(rows: list[dict], workers: int) -> dict:
    """Wall time on a cluster of `workers` like these, for 100M and 1B chips, from the largest run's
    per-chip costs (everything here scales with N / workers except the client's merge and fit)."""
    big = [r for r in rows if r["data"] == "synthetic"][-1]
    out = {}
    for n in (100_000_000, 1_000_000_000):
        scale = n / big["N"]
        out[str(n)] = {
            "embeddings_disk_GB": round(n * big["d"] * 2 / 1e9, 1),
            "worker_memory_GB_per_worker_2": round(n * big["d"] * 4 / workers / 1e9, 1),
            "fps_step_s": round(big["fps_step_p50_ms"] * scale / 1e3, 2),
            "fps_10k_picks_h": round(big["fps_step_p50_ms"] * scale * 10_000 / 3.6e6, 1),
            "al_round_min": round(big["al_round_cluster_s"] * scale / 60, 1),
            "index_build_h": round(big["index_cluster_s"] * scale / 3600, 2),
        }
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=64, help="FPS picks per size")
    ap.add_argument("--al-n", type=int, default=64)
    ap.add_argument("--shard-rows", type=int, default=1 << 18)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-modis", action="store_true", help="leave out the MODIS-patch rows")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.k, args.shard_rows, args.queries = [20_000, 40_000], 8, 8192, 50
    if __name__ != "__main__":  # imported (tests load it as a module the workers cannot import): ship its
        import cloudpickle  # functions to the workers by value, as they are when it runs as a script

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = time.perf_counter()
    rows, modis = [], []
    with tempfile.TemporaryDirectory() as tmp, LoopbackCluster(n_workers=args.workers) as lc:
        client = connect(lc.address)
        client.run(lambda: __import__("torch").zeros(1))
        client.run(_rss_start)
        for n in args.sizes:
            X = write_npy(Path(tmp) / f"x{n}.npy", n, args.d, seed=0)
            rows.append(one_size(client, X, args.k, args.al_n, args.shard_rows, args.queries, seed=0, tmp=Path(tmp),
                                 strat_k=500 if args.quick else STRATIFIED_K))
            print(rows[-1], flush=True)
            del X
            (Path(tmp) / f"x{n}.npy").unlink()
            if not args.no_modis:
                X = write_modis_npy(Path(tmp) / f"m{n}.npy", n, args.d, seed=0)
                modis.append(modis_size(client, X, args.k, args.al_n, args.shard_rows, args.queries, seed=0))
                print(modis[-1], flush=True)
                del X
                (Path(tmp) / f"m{n}.npy").unlink()
    first, last = rows[0], rows[-1]
    ratio = {k: round(last[k] / first[k], 2) if first[k] else None
             for k in ("fps_cluster_us_per_chip", "index_cluster_us_per_chip", "al_round_cluster_us_per_chip",
                       "fps_step_ns_per_chip", "index_ondisk_cluster_us_per_chip", "stratified_fps_single_us_per_chip",
                       "stratified_fps_cluster_us_per_chip", "disk_fps_cluster_us_per_chip")}
    peak = {f"{phase}_peak_rss_mib": round(max(last[f"worker_peak_rss_{phase}_mib"].values())
                                           / max(first[f"worker_peak_rss_{phase}_mib"].values()), 2)
            for phase in ("disk", "index", "memory")}
    ratio.update({f"worker_{k}": v for k, v in peak.items()})
    if modis:
        ratio.update({f"modis_{k}": round(modis[-1][k] / modis[0][k], 2) if modis[0][k] else None
                      for k in ("fps_cluster_us_per_chip", "index_cluster_us_per_chip", "al_round_cluster_us_per_chip")})
    res = {"benchmark": "scale", "workers": args.workers, "threads_per_worker": 1, "rows": rows, "modis_rows": modis,
           "cost_per_chip_ratio_largest_vs_smallest": ratio, "projection": projection(rows, args.workers),
           "quick": args.quick}
    print(markdown_table(["N", "shards", "fps_step_p50_ms", "fps_cluster_s", "fps_single_s", "fps_same_picks",
                          "index", "index_cluster_s", "recall_at_10", "query_p50_ms", "index_same_results",
                          "index_ondisk_cluster_s", "query_ondisk_p50_ms", "index_ondisk_same_results",
                          "al_round_cluster_s", "al_same_picks"], rows))
    print(markdown_table(["N", "rows_per_worker", "worker_rss_before_mib", "worker_peak_rss_disk_mib",
                          "worker_peak_rss_index_mib", "worker_peak_rss_memory_mib", "disk_fps_step_p50_ms",
                          "disk_fps_same_picks", "disk_al_round_cluster_s", "disk_al_same_picks"], rows))
    if modis:
        print(markdown_table(["N", "fps_cluster_s", "fps_single_s", "fps_same_picks", "index", "index_cluster_s",
                              "index_single_s", "recall_at_10", "query_p50_ms", "index_same_results",
                              "al_round_cluster_s", "al_same_picks"], modis))
    print("cost per chip, largest / smallest:", ratio)
    return write_results(args.out, res, seeds=[0], started=started)


if __name__ == "__main__":
    main()
