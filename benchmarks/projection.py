"""2-D projection at 100k chips: `project()` (UMAP on the FAISS kNN graph, fit on a sample, the rest
placed into it) vs plain `umap.UMAP().fit_transform`, in the same run, with quality for both.

Data: 100k x 128 real-imagery vectors (8x8 RGB patches of the real MODIS 2020-09-27 global
mosaic, PCA to 128; see benchmarks/search.py), stored as a workspace run with an L2 index so
both methods work in the same (Euclidean) space. Quality: trustworthiness (sklearn, k=10, on a
4000-point subsample) and kNN preservation (share of each point's 10 nearest neighbours in
128-d that are among its 10 nearest in 2-d, 1000 query points, neighbours over all N). Numba
compiles umap's kernels on first use: a small warm-up of both paths runs first and its time is
reported as the cold start, so the timed runs compare the algorithms, not the compiler (--quick
skips the warm-up: its timings include compilation and only show that the script runs).

    .venv/bin/python benchmarks/projection.py            # N = 100k, d = 128 (~5 min on 2 busy cores)
    .venv/bin/python benchmarks/projection.py --quick    # N = 5k, d = 32 smoke run

Writes benchmarks/results/projection[_quick].json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402
from search import make_workspace, modis_vectors  # noqa: E402


def quality(x: np.ndarray, y: np.ndarray, seed: int = 1) -> dict[str, float]:
    import faiss
    from sklearn.manifold import trustworthiness

    rng = np.random.default_rng(seed)
    sub = rng.choice(len(x), min(len(x), 4000), replace=False)
    tw = trustworthiness(x[sub], y[sub], n_neighbors=10)
    q = rng.choice(len(x), min(len(x), 1000), replace=False)
    _, hi = faiss.knn(np.ascontiguousarray(x[q]), np.ascontiguousarray(x), 11)
    y = np.ascontiguousarray(y, dtype=np.float32)
    _, lo = faiss.knn(np.ascontiguousarray(y[q]), y, 11)
    keep = [len(set(a[a != i][:10]) & set(b[b != i][:10])) / 10 for i, a, b in zip(q, hi, lo)]
    return {"trustworthiness@10": round(float(tw), 4), "knn_preservation@10": round(float(np.mean(keep)), 4)}


def plain_umap(x: np.ndarray, n_epochs: int | None) -> np.ndarray:
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return umap.UMAP(n_epochs=n_epochs).fit_transform(x)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 5k, d = 32 smoke run (sampled path forced)")
    ap.add_argument("-n", type=int, help="chips (default 100000)")
    ap.add_argument("--dim", type=int, help="dimension (default 128)")
    ap.add_argument("--no-plain", action="store_true", help="skip plain UMAP (only the fast path)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/projection[_quick].json)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    from curator_widgets.index import build_index
    from curator_widgets.projection import cached_projection, project

    # below 4096 points umap computes all pairwise distances through a Python callable (minutes):
    # the quick run stays above that, on umap's pynndescent path like the full run
    n = args.n or (5_000 if args.quick else 100_000)
    d = args.dim or (32 if args.quick else 128)
    kw = dict(sample_threshold=2_500, sample_size=1_200, n_epochs=50) if args.quick else {}
    warm_n = 5_000
    tmp = Path(tempfile.mkdtemp(prefix="curator-bench-projection-"))
    rows: list[dict[str, Any]] = []
    try:
        x, _ = modis_vectors(n, d, seed=0)
        cold_fast = cold_plain = None
        if not args.quick:  # cold start: numba compiles umap's kernels (both paths) on a small set
            warm = make_workspace(tmp / "warm", x[:warm_n])
            build_index(warm, "bench", metric="l2", progress=False)
            t0 = time.perf_counter()
            project(warm, "bench", sample_threshold=warm_n // 2, sample_size=warm_n // 4, n_epochs=20, progress=False)
            cold_fast = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            plain_umap(x[:warm_n], 20) if not args.no_plain else None
            cold_plain = round(time.perf_counter() - t0, 1)
            print(f"cold start (numba compile, {warm_n} points): fast path {cold_fast} s, plain umap {cold_plain} s",
                  flush=True)
        ws = make_workspace(tmp / "ws", x)
        t0 = time.perf_counter()
        build_index(ws, "bench", metric="l2", progress=False)
        index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        y = project(ws, "bench", recompute=True, progress=False, **kw)
        fast_s = time.perf_counter() - t0
        meta = cached_projection(ws, "bench")[1]
        t0 = time.perf_counter()
        project(ws, "bench", progress=False, **kw)
        cached_s = time.perf_counter() - t0
        rows.append({"method": "project() fast path", "seconds": round(fast_s, 1),
                     "detail": f"fit {meta.get('fit')} + placed {meta.get('placed')}; kNN: {meta.get('knn')}",
                     "cached_s": round(cached_s, 4), **quality(x, y)})
        print(rows[-1], flush=True)
        if not args.quick:  # the same FAISS kNN graph, every point fitted (no sample + transform)
            t0 = time.perf_counter()
            yf = project(ws, "bench", recompute=True, progress=False, sample_threshold=n + 1, sample_size=n)
            full_meta = cached_projection(ws, "bench")[1]
            rows.append({"method": "project(), every point fitted", "seconds": round(time.perf_counter() - t0, 1),
                         "detail": f"fit {full_meta.get('fit')}; kNN: {full_meta.get('knn')}", **quality(x, yf)})
            print(rows[-1], flush=True)
        if not args.no_plain:
            t0 = time.perf_counter()
            yp = plain_umap(x, kw.get("n_epochs"))
            plain_s = time.perf_counter() - t0
            rows.append({"method": "umap.UMAP().fit_transform", "seconds": round(plain_s, 1),
                         "detail": "umap's own kNN (pynndescent), all points", **quality(x, yp)})
            print(rows[-1], flush=True)
        t0 = time.perf_counter()
        yc = project(ws, "bench", method="pca", progress=False)
        rows.append({"method": "PCA (fallback)", "seconds": round(time.perf_counter() - t0, 2), "detail": "2 components",
                     **quality(x, yc)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plain = next((r for r in rows if r["method"].startswith("umap")), None)
    doc = {"benchmark": "projection", "quick": bool(args.quick), "n": n, "d": d, "index_build_s": round(index_s, 2),
           "cold_start_s": {"fast_path": cold_fast, "plain_umap": cold_plain},
           "speedup": round(plain["seconds"] / rows[0]["seconds"], 2) if plain else None,
           "target": {"fast_path_s": 60}, "rows": rows}
    out = Path(args.out) if args.out else RESULTS / f"projection{'_quick' if args.quick else ''}.json"
    write_results(out, doc, seeds=[0, 1], started=started)  # 0: data and UMAP's sample; 1: the quality subsample
    print(table(rows))
    if doc["speedup"]:
        print(f"plain / fast = {doc['speedup']}x")
    print(f"wrote {out}")
    return doc


def table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(["method", "seconds", "trustworthiness@10", "knn_preservation@10", "detail"], rows)


def doc_tables(doc: dict[str, Any]) -> dict[str, str]:
    """docs/search.md's projection table and its summary (tools/gen_docs.py fills them from the JSON)."""
    load = (doc.get("machine") or {}).get("load_avg")
    cold = doc.get("cold_start_s") or {}
    rows = markdown_table(["method", "seconds", "trustworthiness@10", "kNN preservation@10", "detail"],
                          ([r["method"], f"{r['seconds']:g}", f"{r['trustworthiness@10']:.3f}",
                            f"{r['knn_preservation@10']:.3f}", r["detail"]] for r in doc["rows"]))
    paid = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in cold.items() if v is not None)
    head = (f"N = {doc['n']:,}, d = {doc['d']} (commit `{(doc.get('commit') or '?')[:10]}`"
            + (f", load average {load[0]:.1f}" if load else "")
            + (f"; numba's compile paid in a warm-up first, not counted: {paid}" if paid else "") + "):")
    out = {"main": f"{head}\n\n{rows}"}
    fast = doc["rows"][0]
    if doc.get("speedup"):
        t = doc["target"]["fast_path_s"]
        out["summary"] = (f"The default path is **{doc['speedup']:.1f}x faster than plain UMAP** ({fast['seconds']:g} s; "
                          f"target: <= {t} s at 100k on 2 cores: {'met' if fast['seconds'] <= t else 'NOT met'}).")
        by = {r["method"]: r for r in doc["rows"]}
        full, plain = by.get("project(), every point fitted"), by.get("umap.UMAP().fit_transform")
        if full and plain:
            out["summary"] += (
                f" Trustworthiness: {fast['trustworthiness@10']:.3f} (default) / {full['trustworthiness@10']:.3f} "
                f"(every point fitted) / {plain['trustworthiness@10']:.3f} (plain UMAP); kNN preservation "
                f"{fast['knn_preservation@10']:.3f} / {full['knn_preservation@10']:.3f} / "
                f"{plain['knn_preservation@10']:.3f}. Fitting every point on the FAISS kNN graph takes "
                f"{full['seconds']:g} s, {plain['seconds'] / full['seconds']:.1f}x faster than plain UMAP.")
    return out


if __name__ == "__main__":
    main()
