"""Retrieval quality on UC Merced: precision@k of same-class neighbours through the similarity index.

UC Merced (21 classes x 100 aerial scenes) is ingested in place; two embedding runs are written:
the SSL encoder (`train_ssl` on all chips, labels never used, then `embed`) and raw pixels
(16x16 area-downsampled RGB, standardised per channel: no learning at all). For each run,
`build_index` (auto: exact Flat at this size) and `knn_graph` give every chip's 10 nearest chips
(itself excluded); precision@k is the share of those with the query's class, averaged over all
2100 queries. The SSL recipe is fixed in benchmarks/common.py (DEFAULT_SSL: small CNN + SimCLR, 15
epochs), never chosen by a score on these images.

    .venv/bin/python benchmarks/retrieval_quality.py            # full run (SSL training ~5-15 min on 2 cores)
    .venv/bin/python benchmarks/retrieval_quality.py --quick    # 3 classes x 20 images, 1 epoch (~1 min)

Writes benchmarks/results/retrieval_quality[_quick].json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, ssl_config, markdown_table, raw_pixels, ucmerced_workspace,  # noqa: E402
                    write_embedding_run, write_results)


def precision(ws: Any, run: str, ks: tuple[int, ...]) -> dict[str, float]:
    """precision@k over all chips as queries, neighbours from the run's index (query excluded)."""
    from curator_widgets.index import build_index, knn_graph

    build_index(ws, run, progress=False)
    ids, _ = knn_graph(ws, run, max(ks), progress=False)
    labels = ws.manifest["label"].to_numpy()
    same = labels[ids] == labels[:, None]
    out = {f"precision@{k}": round(float(same[:, :k].mean()), 4) for k in ks}
    per_class = {c: float(same[labels == c, :10].mean()) for c in sorted(set(labels))}
    out["worst_class@10"] = min(per_class, key=per_class.get)
    out["worst_class_precision@10"] = round(per_class[out["worst_class@10"]], 4)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 classes x 20 images, 1 SSL epoch")
    ap.add_argument("--no-ssl", action="store_true", help="raw pixels only (no SSL training)")
    ap.add_argument("--epochs", type=int, help="SSL epochs (default: common.DEFAULT_SSL's 15)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON path (default benchmarks/results/retrieval_quality[_quick].json)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="curator-bench-retrieval-"))
    rows: list[dict[str, Any]] = []
    try:
        ws = ucmerced_workspace(tmp, 3 if args.quick else None, 20 if args.quick else None)
        ks = (1, 5, 10)
        t0 = time.perf_counter()
        x = raw_pixels(ws)
        write_embedding_run(ws, "raw-pixels", x)
        rows.append({"features": "raw pixels", "detail": "16x16 RGB of the 64 px chips, standardised", "dim": int(x.shape[1]),
                     "seconds": round(time.perf_counter() - t0, 1), **precision(ws, "raw-pixels", ks)})
        print(rows[-1], flush=True)
        cfg = None
        if not args.no_ssl:
            from curator_widgets.embed import embed
            from curator_widgets.train import train_ssl

            cfg = ssl_config(args.quick)
            if args.epochs:
                cfg = {**cfg, "epochs": int(args.epochs), "source": cfg["source"] + f"; epochs set to {args.epochs}"}
            t0 = time.perf_counter()
            run = f"ssl-{cfg['method']}-{cfg['backbone']}"
            kw = {"image_size": 32, "batch_size": 32} if args.quick else {"image_size": 64}
            train_ssl(ws, run=run, method=cfg["method"], backbone=cfg["backbone"], epochs=cfg["epochs"],
                      seed=args.seed, knn=False, progress=False, **kw)
            embed(ws, run, progress=False)
            dim = int(np.load(ws.embeddings_path(run), mmap_mode="r").shape[1])
            rows.append({"features": "SSL embedding", "detail": f"{cfg['backbone']} + {cfg['method']}, "
                         f"{cfg['epochs']} epochs ({cfg['source']})", "dim": dim,
                         "seconds": round(time.perf_counter() - t0, 1), **precision(ws, run, ks)})
            print(rows[-1], flush=True)
        n, classes = len(ws), int(ws.manifest["label"].nunique())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {"benchmark": "retrieval_quality", "quick": bool(args.quick), "dataset": "UC Merced", "chips": n,
           "classes": classes, "ssl": cfg, "metric": "cosine", "rows": rows}
    out = Path(args.out) if args.out else RESULTS / f"retrieval_quality{'_quick' if args.quick else ''}.json"
    write_results(out, doc, seeds=[args.seed], started=started)
    print(table(rows))
    print(f"wrote {out}")
    return doc


def doc_tables(doc: dict[str, Any]) -> dict[str, str]:
    """docs/search.md's retrieval table (tools/gen_docs.py fills it from the committed JSON)."""
    load = (doc.get("machine") or {}).get("load_avg")
    best = {k: max(r[k] for r in doc["rows"]) for k in ("precision@1", "precision@5", "precision@10")}

    def cell(r: dict[str, Any], k: str) -> str:
        return f"**{r[k]:.3f}**" if r[k] == best[k] and len(doc["rows"]) > 1 else f"{r[k]:.3f}"

    table = markdown_table(["features", "detail", "dim", "precision@1", "precision@5", "precision@10",
                            "worst class (precision@10)"],
                           ([r["features"], r["detail"], r["dim"], cell(r, "precision@1"), cell(r, "precision@5"),
                             cell(r, "precision@10"), f"{r['worst_class@10']} ({r['worst_class_precision@10']:.3f})"]
                            for r in doc["rows"]))
    return {"main": f"{doc['chips']:,} chips in {doc['classes']} classes (commit `{(doc.get('commit') or '?')[:10]}`"
                    + (f", load average {load[0]:.1f}" if load else "") + f"):\n\n{table}"}


def table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(["features", "detail", "dim", "precision@1", "precision@5", "precision@10", "worst_class@10",
                           "worst_class_precision@10"], rows)


if __name__ == "__main__":
    main()
