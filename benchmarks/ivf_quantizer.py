"""Which coarse quantizer pays: assigning vectors to IVF lists by an exact scan of the centroids, against an
HNSW graph over them and against a two-level IVF over them (the centroids in 2 sqrt(nlist) lists of their own),
per list count, in one run.

Adding N vectors to IVF{nlist} assigns each to its nearest centroid: the exact scan costs N x nlist
distances (BLAS), the graph about efSearch x M, the two-level IVF ~2 sqrt(nlist) + nprobe x sqrt(nlist) / 2.
The vectors are drawn from the pool benchmarks/scale.py builds for that N (a 64-component mixture per block
of 262,144 rows, so N / 262,144 mixtures), the centroids are a short k-means (KMEANS_ITERS iterations over
40 x nlist rows of the same pool, IVF's training sample size: where the lists really sit, at a fraction of a
full training's cost), and the assigned vectors are other rows of it; agreement is the share of vectors the
quantizer sends to the exact scan's list. A quantizer pays where it assigns SPEEDUP times faster or more and
agrees on AGREEMENT of the vectors; `index.choose_factory`'s auto uses neither while neither pays at the list
counts it would build (tests/test_index.py checks the committed JSON's auto factories against it).

    .venv/bin/python benchmarks/ivf_quantizer.py            # nlist 2,529 .. 25,298 (N = 400k .. 40M)
    .venv/bin/python benchmarks/ivf_quantizer.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402
from sampling_speed import POOL_BLOCK, pool_block  # noqa: E402

from curator_widgets.index import (COARSE_PROBE_SHARE, HNSW_M, QUANTIZER_EF,  # noqa: E402
                                   auto_nlist, choose_factory, coarse_default_nprobe, coarse_lists)
from curator_widgets.omp import one_omp_thread  # noqa: E402


KMEANS_ITERS = 4
SPEEDUP = 1.2  # "pays": the graph assigns at least this much faster than the scan
AGREEMENT = 0.99  # ... and sends at least this share of vectors to the scan's list


def pool_rows(n: int, count: int, d: int, seed: int) -> np.ndarray:
    """`count` distinct rows drawn uniformly from the pool scale.write_npy(n, d, seed=0) writes, in random order."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, count, replace=False))
    out = np.empty((count, d), np.float32)
    blocks = idx // POOL_BLOCK
    for b in np.unique(blocks):
        lo = int(b) * POOL_BLOCK
        sel = blocks == b
        out[sel] = pool_block(n, lo, d)[idx[sel] - lo]
    return out[rng.permutation(count)]


def one(n: int, nlist: int, vectors: int, d: int, seed: int, efs: tuple[int, ...]) -> list[dict]:
    import faiss

    pool = pool_rows(n, 40 * nlist + vectors, d, seed)
    sample, X = pool[:40 * nlist], pool[40 * nlist:]  # IVF's training sample size, then the vectors to assign
    km = faiss.Kmeans(d, nlist, niter=KMEANS_ITERS, seed=seed, max_points_per_centroid=40)
    km.train(sample)
    centroids = km.centroids
    flat = faiss.IndexFlatL2(d)
    flat.add(centroids)
    t0 = time.perf_counter()
    exact = flat.search(X, 1)[1][:, 0]
    t_flat = time.perf_counter() - t0
    n = len(X)
    rows = []

    def row(quantizer: str, setting: str, t: float, build: float, approx: np.ndarray, default: bool) -> None:
        rows.append({"nlist": nlist, "quantizer": quantizer, "setting": setting, "default": default, "vectors": n,
                     "flat_us_per_vector": round(1e6 * t_flat / n, 3), "quantizer_us_per_vector": round(1e6 * t / n, 3),
                     "build_s": round(build, 3), "speedup": round(t_flat / t, 2),
                     "agreement": round(float(np.mean(exact == approx)), 4)})

    graph = faiss.IndexHNSWFlat(d, HNSW_M)
    with one_omp_thread():  # as index._rebuild_quantizer builds it
        t0 = time.perf_counter()
        graph.add(centroids)
        t_build = time.perf_counter() - t0
    for ef in efs:
        graph.hnsw.efSearch = ef
        t0 = time.perf_counter()
        approx = graph.search(X, 1)[1][:, 0]
        row("hnsw", f"efSearch {ef}", time.perf_counter() - t0, t_build, approx, ef == QUANTIZER_EF)
    coarse = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, coarse_lists(nlist))  # as index._coarse_ivf trains it
    coarse.cp.seed, coarse.cp.min_points_per_centroid = seed, 16
    t0 = time.perf_counter()
    coarse.train(centroids)
    coarse.add(centroids)
    t_build = time.perf_counter() - t0
    base = coarse_default_nprobe(coarse.nlist)
    for nprobe in (base, 2 * base):
        coarse.nprobe = nprobe
        t0 = time.perf_counter()
        approx = coarse.search(X, 1)[1][:, 0]
        row(f"ivf{coarse_lists(nlist)}", f"nprobe {nprobe}", time.perf_counter() - t0, t_build, approx, nprobe == base)
    return rows


COLUMNS = ["N", "nlist", "quantizer", "setting", "default", "flat_us_per_vector", "quantizer_us_per_vector", "speedup", "agreement",
           "build_s"]


def doc_tables(doc: dict) -> dict[str, str]:
    """The docs table (tools/gen_docs.py fills docs/search.md from the committed JSON with it)."""
    m = doc["machine"]
    pays = doc["smallest_nlist_pays"]

    def where(kind: str) -> str:
        return f"from {pays[kind]:,} lists" if pays.get(kind) else "at no list count measured"

    note = (f"\n\n{doc['rows'][0]['vectors']:,} vectors of d={doc['d']} from the scale benchmark's pool for each N "
            f"assigned per list count (centroids: a {KMEANS_ITERS}-iteration k-means over other rows of it); HNSW{doc['M']}; the two-level IVF puts the centroids in "
            f"2 sqrt(nlist) lists and scans 1/{doc['coarse_probe_share']} of them (at least 8; the rows marked default, then twice as many); {m.get('cpus')} CPUs; "
            f"commit `{(doc.get('commit') or '?')[:10]}`. A quantizer pays at {doc['speedup_rule']}x faster or more "
            f"with {doc['agreement_rule']:.0%} of vectors or more sent to the exact list: the graph {where('hnsw')}, "
            f"the two-level IVF (default rows) {where('ivf')}; auto "
            + ("uses the two-level IVF" if doc["auto_picks_two_level"] else "keeps the exact scan")
            + " and never picks the graph.")
    return {"main": markdown_table(COLUMNS, doc["rows"]) + note}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400_000, 1_000_000, 4_200_000, 10_000_000, 20_000_000, 40_000_000],
                    help="pool sizes whose auto list count (4 sqrt N) is measured")
    ap.add_argument("--vectors", type=int, default=100_000, help="vectors assigned per list count")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "ivf_quantizer.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.vectors = [40_000, 160_000], 5_000
    import faiss

    faiss.omp_set_num_threads(2)
    started = time.perf_counter()
    rows = []
    for n in args.sizes:
        rows += [{"N": n, **r} for r in one(n, auto_nlist(n), args.vectors, args.d, 0, (QUANTIZER_EF, 2 * QUANTIZER_EF))]
        print(rows[-4:], flush=True)

    def pays(r: dict) -> bool:
        return r["speedup"] >= SPEEDUP and r["agreement"] >= AGREEMENT

    def paying(kind: str) -> int | None:
        ok = [r["nlist"] for r in rows if r["quantizer"].startswith(kind) and r["default"] and pays(r)]
        return min(ok) if ok else None

    factories = [choose_factory(n, args.d, memory_budget=2**40)[0] for n in args.sizes]
    res = {"benchmark": "ivf_quantizer", "d": args.d, "M": HNSW_M, "efSearch": QUANTIZER_EF,
           "coarse_probe_share": COARSE_PROBE_SHARE, "speedup_rule": SPEEDUP, "agreement_rule": AGREEMENT, "rows": rows,
           "smallest_nlist_pays": {"hnsw": paying("hnsw"), "ivf": paying("ivf")},
           "auto_picks_graph": any("_HNSW" in f for f in factories),
           "auto_picks_two_level": any("(IVF" in f for f in factories),
           "auto_factories": dict(zip(map(str, args.sizes), factories)), "quick": args.quick}
    doc = write_results(args.out, res, seeds=[0], started=started)
    print(doc_tables(doc)["main"])
    return doc


if __name__ == "__main__":
    main()
