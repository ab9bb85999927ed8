"""Where an HNSW coarse quantizer starts to pay: assigning vectors to IVF lists by an exact scan of the
centroids against an HNSW graph over them, per list count, in one run.

Adding N vectors to IVF{nlist} assigns each to its nearest centroid: the exact scan costs N x nlist
distances (BLAS), the graph about efSearch x M. The centroids are data points (k-means would take
minutes at these list counts and does not change what an assignment costs); agreement is the share
of vectors the graph sends to the exact scan's list. `index.HNSW_QUANTIZER_NLIST` is the smallest
list count of the table where the graph is faster.

    .venv/bin/python benchmarks/ivf_quantizer.py            # nlist 2,528 .. 17,888 (N = 400k .. 20M)
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
from sampling_speed import mixture  # noqa: E402

from curator_widgets.index import HNSW_M, HNSW_QUANTIZER_NLIST, QUANTIZER_EF, auto_nlist  # noqa: E402


def one(nlist: int, X: np.ndarray, seed: int) -> dict:
    import faiss

    d = X.shape[1]
    centroids = mixture(nlist, d, seed=seed + 1).numpy().astype(np.float32)
    flat = faiss.IndexFlatL2(d)
    flat.add(centroids)
    t0 = time.perf_counter()
    exact = flat.search(X, 1)[1][:, 0]
    t_flat = time.perf_counter() - t0
    graph = faiss.IndexHNSWFlat(d, HNSW_M)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # as index._rebuild_quantizer builds it
    t0 = time.perf_counter()
    graph.add(centroids)
    t_build = time.perf_counter() - t0
    faiss.omp_set_num_threads(before)
    graph.hnsw.efSearch = QUANTIZER_EF
    t0 = time.perf_counter()
    approx = graph.search(X, 1)[1][:, 0]
    t_graph = time.perf_counter() - t0
    n = len(X)
    return {"nlist": nlist, "vectors": n, "flat_us_per_vector": round(1e6 * t_flat / n, 3),
            "hnsw_us_per_vector": round(1e6 * t_graph / n, 3), "graph_build_s": round(t_build, 3),
            "speedup": round(t_flat / t_graph, 2), "agreement": round(float(np.mean(exact == approx)), 4)}


COLUMNS = ["N", "nlist", "flat_us_per_vector", "hnsw_us_per_vector", "speedup", "agreement", "graph_build_s"]


def doc_tables(doc: dict) -> dict[str, str]:
    """The docs table (tools/gen_docs.py fills docs/search.md from the committed JSON with it)."""
    m = doc["machine"]
    note = (f"\n\n{doc['rows'][0]['vectors']:,} vectors of d={doc['d']} assigned per list count; HNSW{doc['M']}, "
            f"efSearch {doc['efSearch']}; {m.get('cpus')} CPUs; commit `{(doc.get('commit') or '?')[:10]}`. Smallest "
            f"list count where the graph is faster: {doc['smallest_nlist_graph_faster']}; "
            f"`index.HNSW_QUANTIZER_NLIST` = {doc['threshold_in_code']}.")
    return {"main": markdown_table(COLUMNS, doc["rows"]) + note}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400_000, 1_000_000, 4_200_000, 10_000_000, 20_000_000],
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
    X = mixture(args.vectors, args.d, seed=0).numpy().astype(np.float32)
    rows = []
    for n in args.sizes:
        rows.append({"N": n, **one(auto_nlist(n), X, seed=0)})
        print(rows[-1], flush=True)
    faster = [r["nlist"] for r in rows if r["speedup"] > 1]
    res = {"benchmark": "ivf_quantizer", "d": args.d, "M": HNSW_M, "efSearch": QUANTIZER_EF, "rows": rows,
           "threshold_in_code": HNSW_QUANTIZER_NLIST, "smallest_nlist_graph_faster": min(faster) if faster else None,
           "quick": args.quick}
    doc = write_results(args.out, res, seeds=[0], started=started)
    print(doc_tables(doc)["main"])
    return doc


if __name__ == "__main__":
    main()
