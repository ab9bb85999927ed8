"""Retrieval quality on UC Merced: precision@k of same-class neighbours through the similarity index.

UC Merced (21 classes x 100 aerial scenes) is ingested in place; two embedding runs are written:
the SSL encoder (`train_ssl` on all chips, labels never used, then `embed`) and raw pixels
(16x16 area-downsampled RGB, standardised per channel: no learning at all). For each run,
`build_index` (auto: exact Flat at this size) and `knn_graph` give every chip's 10 nearest chips
(itself excluded); precision@k is the share of those with the query's class, averaged over all
2100 queries. The SSL configuration is the best one in benchmarks/results/ssl_quality.json when
that exists, else small_cnn + SimCLR for 60 epochs.

    .venv/bin/python benchmarks/retrieval_quality.py            # full run (SSL training ~5-15 min on 2 cores)
    .venv/bin/python benchmarks/retrieval_quality.py --quick    # 3 classes x 20 images, 1 epoch (~1 min)

Writes benchmarks/results/retrieval_quality[_quick].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curator_widgets import FolderSource, Workspace  # noqa: E402
from curator_widgets.atomic import atomic_path, write_json  # noqa: E402
from curator_widgets.paths import shared_data_dir  # noqa: E402

DEFAULT_SSL = {"backbone": "small_cnn", "method": "simclr", "epochs": 60}


def make_workspace(root: Path, classes: int | None, per_class: int | None) -> Workspace:
    """UC Merced in place (class folders -> labels); quick runs link a small subset."""
    src = shared_data_dir() / "ucmerced"
    if classes is not None:
        sub = root / "ucm-subset"
        for cls in sorted(p for p in src.iterdir() if p.is_dir())[:classes]:
            (sub / cls.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:per_class]:
                (sub / cls.name / f.name).symlink_to(f)
        src = sub
    ws = Workspace.create(root / "ws")
    ws.ingest(FolderSource(src), size=None, progress=False)
    return ws


def write_run(ws: Workspace, run: str, x: np.ndarray) -> None:
    """Features in the agreed embeddings format (float16 .npy + sidecar)."""
    path = ws.embeddings_path(run)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, x.astype(np.float16))
    write_json(path.with_suffix(".json"), {"run": run, "dim": int(x.shape[1]), "count": int(x.shape[0]),
                                           "normalized": False, "model_run": None, "dtype": "float16"})


def raw_pixels(ws: Workspace, px: int = 16) -> np.ndarray:
    """px x px area-downsampled RGB, standardised per channel (as in the other UC Merced benchmarks)."""
    from PIL import Image

    imgs = np.stack([np.asarray(Image.fromarray(ws.load_chip(i)).resize((px, px), Image.BOX), dtype=np.float32) / 255
                     for i in range(len(ws))])
    imgs = (imgs - imgs.mean((0, 1, 2))) / imgs.std((0, 1, 2))
    return imgs.reshape(len(imgs), -1)


def ssl_config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"backbone": "small_cnn", "method": "simclr", "epochs": 1, "source": "quick"}
    path = ROOT / "benchmarks" / "results" / "ssl_quality.json"
    if path.exists():
        rows = json.loads(path.read_text()).get("rows", [])
        if rows:
            best = max(rows, key=lambda r: r["knn_top1_ssl"])
            return {"backbone": best["backbone"], "method": best["method"], "epochs": best["epochs"],
                    "source": f"ssl_quality.json (kNN top-1 {best['knn_top1_ssl']:.3f})"}
    return {**DEFAULT_SSL, "source": "default (no ssl_quality.json)"}


def precision(ws: Workspace, run: str, ks: tuple[int, ...]) -> dict[str, float]:
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
    ap.add_argument("--no-ssl", action="store_true", help="raw pixels only (no torch)")
    ap.add_argument("--epochs", type=int, help="SSL epochs (default: ssl_quality.json's best, else 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON path (default benchmarks/results/retrieval_quality[_quick].json)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="curator-bench-retrieval-"))
    rows: list[dict[str, Any]] = []
    try:
        ws = make_workspace(tmp, 3 if args.quick else None, 20 if args.quick else None)
        ks = (1, 5, 10)
        t0 = time.perf_counter()
        x = raw_pixels(ws)
        write_run(ws, "raw-pixels", x)
        rows.append({"features": "raw pixels", "detail": "16x16 RGB, standardised", "dim": int(x.shape[1]),
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
           "classes": classes, "ssl": cfg, "metric": "cosine", "rows": rows,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / \
        f"retrieval_quality{'_quick' if args.quick else ''}.json"
    write_json(out, doc)
    print(table(rows))
    print(f"wrote {out}")
    return doc


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["features", "detail", "dim", "precision@1", "precision@5", "precision@10", "worst_class@10",
            "worst_class_precision@10"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
