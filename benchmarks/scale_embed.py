"""Embedding real chips through a Dask cluster against one process: images/s per worker.

Blue Marble chips (the offline default the demo ingests; 64 px at level 3 with half-chip overlap cover
the globe in ~12,600 chips), a small_cnn SimCLR model trained once for 1 epoch on 3,200 of them, then in
one run: single-process `embed` with 2 torch threads and with 1, and `cluster_embed` on a CLI-started
`dask scheduler` with 1 `dask worker` process, then with a second one joined (1 thread each, loopback). Every timing
decodes the chip files itself (the single-process decode cache is cleared first), as the workers do.
The cluster's zarr vectors are compared with the single-process ones (float16 tolerance, max |diff|
and share of identical values).

    .venv/bin/python benchmarks/scale_embed.py            # ~12,600 chips (overlap 0.5), ~5 min on 2 cores
    .venv/bin/python benchmarks/scale_embed.py --quick    # 200 chips (level 1), a smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402

MODEL = "m"
ATOL = 2e-3  # float16 spacing near 1 is ~1e-3: vectors rounded once each way still agree within this


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def workspace(root: Path, level: int, size: int, overlap: float) -> Any:
    """The Blue Marble globe at `level` cut into `size` px chips under root/ws (reused when it exists);
    `overlap` 0.5 gives ~4x the chips of the level's grid, enough for timings well above the fixed costs."""
    from curator_widgets import Workspace
    from curator_widgets.sources import BlueMarbleSource

    ws = Workspace.open_or_create(root / "ws")
    if len(ws) == 0:
        ws.ingest(BlueMarbleSource(level=level), size=size, overlap=overlap, progress=False)
    return ws


def train_once(ws: Any, size: int, seed: int, max_chips: int = 3200) -> dict:
    """small_cnn SimCLR for 1 epoch on at most `max_chips` evenly spaced chips (a no-op when the workspace
    has it): any encoder measures throughput; the equality check needs only the same one on both paths."""
    from curator_widgets.train import train_ssl

    ids = np.unique(np.linspace(0, len(ws) - 1, min(len(ws), max_chips)).astype(np.int64))
    info = train_ssl(ws, run=MODEL, method="simclr", backbone="small_cnn", image_size=size, epochs=1, batch_size=256,
                     ids=ids, seed=seed, knn=False, progress=False, workers=0)
    return {k: info.get(k) for k in ("epoch", "n_train", "images_per_s", "skipped")}


def single(ws: Any, threads: int, batch_size: int, repeats: int) -> tuple[np.ndarray, list[float]]:
    """`embed` in this process with `threads` torch threads, decoding every chip (cache cleared each time)."""
    import torch

    from curator_widgets import data
    from curator_widgets.embed import embed, load_embeddings

    torch.set_num_threads(threads)
    run, times = f"single{threads}", []
    for _ in range(repeats):
        data._CACHE.clear()
        times.append(timed(lambda: embed(ws, run, model_run=MODEL, batch_size=batch_size, resume=False, workers=0,
                                         progress=False))[1])
    return np.asarray(load_embeddings(ws, run), dtype=np.float32), times


def on_cluster(ws: Any, client: Any, shard_rows: int, batch_size: int, repeats: int) -> tuple[np.ndarray, list[float]]:
    """`cluster_embed` on the workers `client` has now, warmed first (imports, 1 torch thread); the model
    load on each worker's first task is in the first timing."""
    from curator_widgets.cluster import worker_count
    from curator_widgets.cluster_embed import cluster_embed
    from curator_widgets.embed import load_embeddings

    def warm() -> int:  # nested: pickled by value, since workers cannot import this script
        import torch
        import zarr  # noqa: F401

        import curator_widgets.cluster_embed  # noqa: F401
        import curator_widgets.data  # noqa: F401
        import curator_widgets.train  # noqa: F401

        torch.set_num_threads(1)  # --no-nanny workers do not get the nanny's OMP_NUM_THREADS=1
        return torch.get_num_threads()

    assert set(client.run(warm).values()) == {1}  # package imports: a worker's start-up, not embedding
    run, times = f"cluster{worker_count(client)}", []
    for _ in range(repeats):
        times.append(timed(lambda: cluster_embed(ws, run, model_run=MODEL, client=client, shard_rows=shard_rows,
                                                 batch_size=batch_size, resume=False, progress=False))[1])
    return np.asarray(load_embeddings(ws, run)[:], dtype=np.float32), times


def row(setup: str, workers: int, threads: int, n: int, times: list[float], X: np.ndarray, ref: np.ndarray,
        base: float | None) -> dict:
    """One table row: throughput (median of the repeats) total and per worker, and how close X is to ref."""
    seconds = float(np.median(times))
    ips = n / seconds
    diff = np.abs(X - ref)
    return {"setup": setup, "workers": workers, "threads_each": threads, "chips": n, "seconds": round(seconds, 2),
            "seconds_each": [round(t, 2) for t in times],
            "images_per_s": round(ips, 1), "images_per_s_per_worker": round(ips / workers, 1),
            "ratio_vs_1_process_1_thread": round(ips / base, 2) if base else 1.0,
            "max_abs_diff": float(diff.max()), "identical_share": round(float((diff == 0).mean()), 4),
            "allclose": bool(np.allclose(X, ref, atol=ATOL, rtol=0))}


def measure(ws: Any, shard_rows: int, batch_size: int, repeats: int) -> list[dict]:
    """The four setups in one run, every vector set compared with single-process, 1-thread `embed`."""
    n = len(ws)
    ref, t1 = single(ws, 1, batch_size, repeats)
    base = n / float(np.median(t1))
    x2, t2 = single(ws, 2, batch_size, repeats)
    rows = [{**row("1 process", 1, 1, n, t1, ref, ref, None), "reference": True},
            row("1 process", 1, 2, n, t2, x2, ref, base)]
    from curator_widgets.cluster import LoopbackCluster, connect

    with LoopbackCluster(n_workers=1, threads=1) as lc:  # 1 worker, then a second `dask worker` joins
        client = connect(lc.address)
        for w in (1, 2):
            if w > 1:
                lc.start_worker()
                client.wait_for_workers(w, timeout=120)
            xc, tc = on_cluster(ws, client, shard_rows, batch_size, repeats)
            rows.append(row("cluster", w, 1, n, tc, xc, ref, base))
            print(rows[-1], flush=True)
    return rows


def doc_tables(doc: dict) -> dict[str, str]:
    """docs/scale.md's embed table and its provenance line (tools/gen_docs.py fills them from the JSON)."""
    table = markdown_table(
        ["setup", "threads", "seconds", "images/s", "images/s per worker", "vs 1 process, 1 thread",
         "same vectors (max abs diff, identical)"],
        ([f"{r['setup']}, {r['workers']} worker{'s' if r['workers'] > 1 else ''}" if r["setup"] == "cluster"
          else r["setup"], r["threads_each"], r["seconds"], r["images_per_s"], r["images_per_s_per_worker"],
          f"{r['ratio_vs_1_process_1_thread']:.2f}x",
          "reference" if r.get("reference") else
          f"{r['allclose']} ({r['max_abs_diff']:.1e}, {100 * r['identical_share']:.1f}%)"]
         for r in doc["rows"]))
    m, s = doc.get("machine") or {}, doc["settings"]
    load = m.get("load_avg")
    timings = f"{s['repeats']} timing{'s' if s['repeats'] > 1 else ''}"
    line = (f"{s['chips']:,} Blue Marble chips ({s['size']} px, level {s['level']}, overlap {s.get('overlap', 0)}), "
            f"small_cnn SimCLR after {s['epochs']} epoch; batches of {s['batch_size']}, shards of {s['shard_rows']:,} "
            f"chips; median of {timings} each; {m.get('cpus')} CPUs, load average {load[0] if load else '?'} at the "
            f"end; wall time {doc['wall_s'] / 60:.1f} min, commit `{(doc.get('commit') or '?')[:10]}`"
            f"{' (quick run)' if doc.get('quick') else ''}.")
    return {"embed": f"{table}\n\n{line}"}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", type=int, default=3, help="Blue Marble level: 3 = 3,200 chips of 64 px side by side")
    ap.add_argument("--overlap", type=float, default=0.5, help="chip overlap: 0.5 = half a chip's stride")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--shard-rows", type=int, default=1600)
    ap.add_argument("--repeats", type=int, default=3, help="timings per setup (the median is reported)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the workspace and model here (reused)")
    ap.add_argument("--quick", action="store_true", help="level 1 (200 chips), shards of 50")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale_embed.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.level, args.overlap, args.shard_rows, args.batch_size, args.repeats = 1, 0.0, 50, 32, 1
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        ws = workspace(root, args.level, args.size, args.overlap)
        train = train_once(ws, args.size, seed=0)
        rows = measure(ws, args.shard_rows, args.batch_size, args.repeats)
    settings = {"chips": rows[0]["chips"], "level": args.level, "size": args.size, "batch_size": args.batch_size,
                "overlap": args.overlap, "shard_rows": args.shard_rows, "repeats": args.repeats, "epochs": 1,
                "train_chips": train.get("n_train"), "backbone": "small_cnn", "method": "simclr", "atol": ATOL}
    doc = {"benchmark": "scale_embed", "settings": settings, "train": train, "rows": rows,
           "cluster_equals_single": all(r["allclose"] for r in rows), "quick": args.quick}
    doc = write_results(args.out, doc, seeds=[0], started=started)
    print(doc_tables(doc)["embed"])
    return doc


if __name__ == "__main__":
    main()
