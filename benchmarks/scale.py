"""The pipeline on a real Dask cluster against one process: a CLI-started `dask scheduler` and
2 `dask worker` processes on loopback, float16 [N, 128] embeddings with cluster structure.

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
from sampling_speed import mixture  # noqa: E402

from curator_widgets import acquisition  # noqa: E402
from curator_widgets.cluster import LoopbackCluster, connect  # noqa: E402
from curator_widgets.cluster_active import cluster_score_and_pick  # noqa: E402
from curator_widgets.cluster_index import shard_adder, shard_writer  # noqa: E402
from curator_widgets.cluster_sampling import cluster_farthest_point_sample  # noqa: E402
from curator_widgets.heads import make_head  # noqa: E402
from curator_widgets.index import CHUNK, make_index, prepare  # noqa: E402
from curator_widgets.sampling import farthest_point_sample, stratified_farthest_point_sample  # noqa: E402
from curator_widgets.shards import ShardedEmbeddings  # noqa: E402


STRATIFIED_K = 10_000  # picks of the stratified FPS row (the 10k)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def write_npy(path: Path, n: int, d: int, seed: int) -> np.memmap:
    """Float16 mixture embeddings written block by block, reopened as the memmap workers read."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
    for lo in range(0, n, 1 << 18):
        hi = min(n, lo + (1 << 18))
        arr[lo:hi] = mixture(hi - lo, d, seed=seed + lo).numpy()  # same mixture centres: seed only moves noise
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


def one_size(client, X, k: int, al_n: int, shard_rows: int, queries: int, seed: int, tmp: Path,
             strat_k: int = STRATIFIED_K) -> dict:
    n, d = X.shape
    row: dict = {"N": n, "d": d, "shard_rows": shard_rows, "shards": -(-n // shard_rows)}
    with ShardedEmbeddings(X, client=client, shard_rows=shard_rows) as sh:
        (_, t_load) = timed(lambda: client.gather(sh.futures))
        row["load_s"] = round(t_load, 2)
        steps: list[float] = []
        (cp, _), t = timed(lambda: cluster_farthest_point_sample(sh, k, start=0, step_times=steps))
        (sp, _), t1 = timed(lambda: farthest_point_sample(X, k, start=0, progress=False))
        row.update(fps_k=k, fps_cluster_s=round(t, 2), fps_single_s=round(t1, 2),
                   fps_step_p50_ms=round(1e3 * float(np.median(steps)), 1), fps_same_picks=bool(np.array_equal(cp, sp)))

        # the paper's stratified FPS reads only its candidate rows (m = max(10000, 10k)), so one process does
        # it at any N; it has no cluster twin
        (strat, _), t = timed(lambda: stratified_farthest_point_sample(X, strat_k, start=0, progress=False))
        row.update(stratified_fps_k=strat_k, stratified_fps_single_s=round(t, 2),
                   stratified_fps_unique=bool(len(np.unique(strat)) == strat_k))

        sim_c, t = timed(lambda: make_index(X, "l2", "ivf", seed=seed, add=shard_adder(
            sh, lambda x: prepare(x, "l2"), CHUNK)))
        sim_s, t1 = timed(lambda: make_index(X, "l2", "ivf", seed=seed))
        q = np.asarray(X[np.random.default_rng(seed).choice(n, queries, replace=False)], dtype=np.float32)
        same = bool(np.array_equal(sim_c.search_prepared(q, 10)[1], sim_s.search_prepared(q, 10)[1]))
        row.update(index=sim_c.params["factory"], nprobe=sim_c.params.get("knob"),
                   index_cluster_s=round(t, 2), index_single_s=round(t1, 2),
                   recall_at_10=sim_c.params.get("recall_at_10"), recall_single=sim_s.params.get("recall_at_10"),
                   query_p50_ms=round(p50_query_ms(sim_c, q[:200]), 3), index_same_results=same)
        # on-disk lists: the workers write block files, this process merges them into one memory-mapped file
        data = tmp / f"x{n}.ivfdata"
        sim_d, t = timed(lambda: make_index(X, "l2", "ivf", seed=seed, ivf_only=True, add=shard_writer(
            sh, lambda x: prepare(x, "l2"), data, CHUNK, progress=False)))
        row.update(index_ondisk_cluster_s=round(t, 2), ondisk_GB=round(data.stat().st_size / 1e9, 3),
                   index_ondisk_same_results=bool(np.array_equal(sim_d.search_prepared(q, 10)[1],
                                                                 sim_s.search_prepared(q, 10)[1])),
                   query_ondisk_p50_ms=round(p50_query_ms(sim_d, q[:200]), 3))
        del sim_d
        data.unlink()

        rng = np.random.default_rng(seed)
        labelled = np.sort(rng.choice(n, 512, replace=False))
        y = (np.asarray(X[labelled, 0], dtype=np.float32) > 0).astype(int)  # a rule on the data: a real task shape
        head = make_head("logistic", 2, seed=seed, device="cpu")
        _, t_fit = timed(lambda: head.fit(X, y, ids=labelled))
        cand = np.ones(n, bool)
        cand[labelled] = False
        cpk, t = timed(lambda: cluster_score_and_pick(sh, head, al_n, "entropy", candidates=cand))
        spk, t1 = timed(lambda: acquisition.select(head.predict_proba(X), al_n, "entropy", candidates=cand))
        row.update(al_fit_s=round(t_fit, 2), al_round_cluster_s=round(t_fit + t, 2),
                   al_round_single_s=round(t_fit + t1, 2), al_same_picks=bool(np.array_equal(cpk, spk)))
        row["worker_peak_rss_mib"] = worker_peak_rss(client)
    for key in ("fps_cluster_s", "index_cluster_s", "al_round_cluster_s", "index_ondisk_cluster_s",
                "stratified_fps_single_s"):
        row[key[:-2] + "_us_per_chip"] = round(1e6 * row[key] / n, 3)
    row["fps_step_ns_per_chip"] = round(1e6 * row["fps_step_p50_ms"] / n, 3)
    return row


def projection(rows: list[dict], workers: int) -> dict:
    """Wall time on a cluster of `workers` like these, for 100M and 1B chips, from the largest run's
    per-chip costs (everything here scales with N / workers except the client's merge and fit)."""
    big = rows[-1]
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
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.k, args.shard_rows, args.queries = [20_000, 40_000], 8, 8192, 50
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LoopbackCluster(n_workers=args.workers) as lc:
        client = connect(lc.address)
        client.run(lambda: __import__("torch").zeros(1))
        for n in args.sizes:
            X = write_npy(Path(tmp) / f"x{n}.npy", n, args.d, seed=0)
            rows.append(one_size(client, X, args.k, args.al_n, args.shard_rows, args.queries, seed=0, tmp=Path(tmp),
                                 strat_k=500 if args.quick else STRATIFIED_K))
            print(rows[-1], flush=True)
            del X
    first, last = rows[0], rows[-1]
    ratio = {k: round(last[k] / first[k], 2) if first[k] else None
             for k in ("fps_cluster_us_per_chip", "index_cluster_us_per_chip", "al_round_cluster_us_per_chip",
                       "fps_step_ns_per_chip", "index_ondisk_cluster_us_per_chip", "stratified_fps_single_us_per_chip")}
    res = {"benchmark": "scale", "workers": args.workers, "threads_per_worker": 1, "rows": rows,
           "cost_per_chip_ratio_largest_vs_smallest": ratio, "projection": projection(rows, args.workers),
           "quick": args.quick}
    print(markdown_table(["N", "shards", "fps_step_p50_ms", "fps_cluster_s", "fps_single_s", "fps_same_picks",
                          "index_cluster_s", "recall_at_10", "query_p50_ms", "index_same_results",
                          "index_ondisk_cluster_s", "query_ondisk_p50_ms", "index_ondisk_same_results",
                          "al_round_cluster_s", "al_same_picks"], rows))
    print("cost per chip, largest / smallest:", ratio)
    return write_results(args.out, res, seeds=[0], started=started)


if __name__ == "__main__":
    main()
