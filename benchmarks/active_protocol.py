"""The Curator active-learning protocol on UC Merced, plus one round's wall time at N = 1M.

Protocol (Curator paper, RESISC45 there, UC Merced here): for every class and several starter
images per class, the seed set is the 64 nearest neighbours of the starter plus 32 random
chips (labelled by an oracle from the class folders); then rounds of 64 chips picked by each
strategy are labelled, until 5% and then 10% of the data is labelled. Reported per strategy,
averaged over classes and starters, at the round where 5% (10%) is first reached: recall of
the final predicted set (labelled positives + chips the head predicts positive), its F1 and
false-positive share, and the labelling effort in % of the data. Run with the best SSL
embeddings (from `curator_widgets.train`, chosen by benchmarks/results/ssl_quality.json) and
with raw-pixel features. The last part times one full `ActiveLoop.step()` (fit the head,
score every chip, pick 64 with diversity, save) on N = 1M synthetic 128-d embeddings.

    .venv/bin/python benchmarks/active_protocol.py            # full run (~30-40 min on 2 cores)
    .venv/bin/python benchmarks/active_protocol.py --quick    # smoke run (~1 min)

Writes benchmarks/results/active_protocol[_quick].json.
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
from curator_widgets.active import ActiveLoop, Oracle  # noqa: E402
from curator_widgets.atomic import write_json  # noqa: E402
from curator_widgets.paths import shared_data_dir  # noqa: E402

STRATEGIES = ["random", "least_confidence", "margin", "entropy", "top_positive", "gaussian",
              "entropy+kmeans", "margin+coreset", "entropy+proximity"]
QUICK_STRATEGIES = ["random", "entropy+kmeans", "margin+coreset"]
DEFAULT_SSL = {"backbone": "small_cnn", "method": "simclr", "epochs": 60}


# ----------------------------------------------------------------------------- data
def make_workspace(root: Path, classes: int | None, per_class: int | None) -> Workspace:
    """UC Merced in place (class folders -> ground-truth labels); a subset is linked for quick runs."""
    src = shared_data_dir() / "ucmerced"
    if classes is not None:
        sub = root / "ucm-subset"
        for cls in sorted(p for p in src.iterdir() if p.is_dir())[:classes]:
            (sub / cls.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:per_class]:
                if not (sub / cls.name / f.name).exists():
                    (sub / cls.name / f.name).symlink_to(f)
        src = sub
    ws = Workspace.open_or_create(root / "ws")
    if len(ws) == 0:
        ws.ingest(FolderSource(src), size=None, progress=False)
    return ws


def write_embeddings(ws: Workspace, run: str, X: np.ndarray, normalized: bool, model_run: str | None) -> None:
    """Store features in the agreed embeddings format (float16 .npy + sidecar) so index/active use them."""
    from curator_widgets.atomic import atomic_path

    path = ws.embeddings_path(run)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, X.astype(np.float16))
    write_json(path.with_suffix(".json"), {"run": run, "dim": int(X.shape[1]), "count": int(X.shape[0]),
                                           "normalized": normalized, "model_run": model_run, "dtype": "float16"})


def raw_pixel_run(ws: Workspace, px: int = 16) -> str:
    """Area-downsampled pixels (px x px x 3), standardized per channel: features with no learning."""
    import torch

    from curator_widgets.data import load_chips

    run = f"raw{px}"
    if not ws.embeddings_path(run).exists():
        images = load_chips(ws, size=64, progress=False)
        x = torch.nn.functional.interpolate(images.float() / 255, size=(px, px), mode="area")
        x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
        write_embeddings(ws, run, x.flatten(1).numpy(), normalized=False, model_run=None)
    return run


def best_ssl_config(quick: bool) -> dict[str, Any]:
    """The best backbone/method/epochs measured by benchmarks/ssl_quality.py, if it has been run."""
    if quick:
        return {"backbone": "small_cnn", "method": "simclr", "epochs": 1, "source": "quick"}
    path = ROOT / "benchmarks" / "results" / "ssl_quality.json"
    if path.exists():
        rows = json.loads(path.read_text()).get("rows", [])
        if rows:
            best = max(rows, key=lambda r: r["knn_top1_ssl"])
            return {"backbone": best["backbone"], "method": best["method"], "epochs": best["epochs"],
                    "source": f"ssl_quality.json (kNN top-1 {best['knn_top1_ssl']:.3f})"}
    return {**DEFAULT_SSL, "source": "default (no ssl_quality.json yet)"}


def ssl_run(ws: Workspace, cfg: dict[str, Any], seed: int) -> str:
    """Train the SSL model on every chip (labels never used: the pool is unlabelled data) and embed."""
    from curator_widgets.embed import embed
    from curator_widgets.train import train_ssl

    run = f"ssl-{cfg['method']}-{cfg['backbone']}-{cfg['epochs']}"
    if not ws.embeddings_path(run).exists():
        train_ssl(ws, run=run, method=cfg["method"], backbone=cfg["backbone"], image_size=64, epochs=cfg["epochs"],
                  seed=seed, knn=False, progress=False)
        embed(ws, run, progress=False)
    return run


# ----------------------------------------------------------------------------- the protocol
def checkpoint(history: list[dict[str, Any]], pct: float) -> dict[str, Any] | None:
    """Metrics of the first round fitted with at least `pct`% of the chips labelled."""
    for h in history:
        if h["labelled_pct"] >= pct - 1e-9 and "true_recall" in h:
            return h
    return None


def run_protocol(ws: Workspace, run: str, strategies: list[str], starters: int, k: int, r: int, batch: int,
                 budgets: tuple[float, float], seed: int, log: Any) -> list[dict[str, Any]]:
    from curator_widgets.index import build_index

    build_index(ws, run, progress=False)
    labels = ws.manifest["label"].to_numpy()
    classes = sorted(set(labels))
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    stamp = time.strftime("%Y%m%d%H%M%S")
    for ci, cls in enumerate(classes):
        members = np.flatnonzero(labels == cls)
        oracle = Oracle(ws, positive=cls)
        for s_i, start in enumerate(rng.choice(members, size=min(starters, len(members)), replace=False).tolist()):
            for strategy in strategies:
                # a fresh loop and label task per run (stamped, so a reused --workdir never mixes runs)
                name = f"{run}-{cls}-{s_i}-{strategy.replace('+', '-')}-{stamp}"
                loop = ActiveLoop(ws, run, name=name, strategy=strategy, batch_size=batch, budget=max(budgets),
                                  stability=0.0, seed=seed + s_i)
                loop.seed(start, k=k, r=r)
                hist = loop.run(oracle).to_dict("records")
                row = {"features": run, "class": cls, "starter": int(start), "strategy": strategy,
                       "positives": int(len(members)), "rounds": len(hist)}
                for pct in budgets:
                    h = checkpoint(hist, 100 * pct)
                    if h is not None:
                        key = f"{int(round(100 * pct))}"
                        row.update({f"recall@{key}": h["true_recall"], f"f1@{key}": h["true_f1"],
                                    f"precision@{key}": h["true_precision"], f"effort@{key}": h["labelled_pct"],
                                    f"found@{key}": h["positives_found"] / len(members),
                                    f"est_left@{key}": h["estimated_positives_left"],
                                    f"true_left@{key}": h["true_positives_left"]})
                row["round_seconds"] = float(np.mean([x["seconds_total"] for x in hist]))
                rows.append(row)
                shutil.rmtree(loop.dir, ignore_errors=True)  # its head and scores are not needed any more
        log(f"  {run}: class {ci + 1}/{len(classes)} {cls} done ({time.perf_counter() - t0:.0f} s)")
    return rows


def summarize(rows: list[dict[str, Any]], budgets: tuple[float, float]) -> list[dict[str, Any]]:
    import pandas as pd

    df = pd.DataFrame(rows)
    out: list[dict[str, Any]] = []
    if df.empty:
        return out
    for (feat, strat), g in df.groupby(["features", "strategy"], sort=False):
        rec: dict[str, Any] = {"features": feat, "strategy": strat, "runs": len(g)}
        for pct in budgets:
            key = f"{int(round(100 * pct))}"
            for m in ("recall", "f1", "precision", "effort", "found"):
                col = f"{m}@{key}"
                rec[col] = round(float(g[col].mean()), 4) if col in g else None
            if f"est_left@{key}" in g:
                err = (g[f"est_left@{key}"] - g[f"true_left@{key}"]).abs().mean()
                rec[f"est_left_error@{key}"] = round(float(err), 2)  # mean absolute error, in chips
                rec[f"true_left@{key}"] = round(float(g[f"true_left@{key}"].mean()), 2)
        rec["round_seconds"] = round(float(g["round_seconds"].mean()), 4)
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- 1M synthetic
def synthetic_workspace(root: Path, n: int, d: int, seed: int) -> tuple[Workspace, np.ndarray]:
    """N chips (manifest rows only) with 128-d float16 embeddings from 100 Gaussian clusters;
    cluster 0 (~1%) is the phenomenon."""
    import pyarrow as pa

    from curator_widgets import manifest as mf

    ws = Workspace.create(root / "synthetic")
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(100, d)).astype(np.float32)
    cluster = rng.integers(0, 100, size=n)
    X = np.lib.format.open_memmap(ws.embeddings_path("synthetic"), mode="w+", dtype=np.float16, shape=(n, d))
    for s in range(0, n, 262_144):
        c = cluster[s:s + 262_144]
        block = centers[c] + 0.9 * rng.standard_normal((len(c), d), dtype=np.float32)
        X[s:s + len(c)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    X.flush()
    del X
    write_json(ws.embeddings_path("synthetic").with_suffix(".json"),
               {"run": "synthetic", "dim": d, "count": n, "normalized": True, "model_run": None, "dtype": "float16"})
    ids = np.arange(n, dtype=np.int64)
    cols = {f.name: pa.nulls(n, f.type) for f in mf.SCHEMA}
    cols["id"] = pa.array(ids)
    cols["key"] = pa.array([f"syn:{i}" for i in range(n)])
    cols["path"] = pa.array([f"chips/{i // 1000:05d}/{i:08d}.png" for i in range(n)])
    cols["label"] = pa.array(np.where(cluster == 0, "phenomenon", "other").tolist())
    cols["flags"] = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))
    mf.write(ws.manifest_path, pa.Table.from_arrays([cols[f.name] for f in mf.SCHEMA], schema=mf.SCHEMA))
    return Workspace.open(ws.root), cluster


def time_million(root: Path, n: int, seed: int, strategy: str, rounds: int, log: Any) -> dict[str, Any]:
    import torch

    t = time.perf_counter()
    ws, cluster = synthetic_workspace(root, n, 128, seed)
    log(f"  synthetic workspace: {n} chips in {time.perf_counter() - t:.1f} s")
    oracle = Oracle(ws, positive="phenomenon")
    loop = ActiveLoop(ws, "synthetic", name="timing", strategy=strategy, batch_size=64, budget=0.5, stability=0.0,
                      seed=seed)
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(cluster == 0)
    # the seed set as the protocol builds it (64 neighbours + 32 random), straight into the queue
    loop.store.queue_add([*rng.choice(pos, 64, replace=False).tolist(), *rng.integers(0, n, 32).tolist()],
                         source="seed")
    steps = []
    for i in range(rounds):
        oracle.answer(loop.store, loop.store.next_in_queue(1 << 30))  # labels arrive between rounds
        res = loop.step()
        steps.append({"round": res.round, "labelled": res.metrics["labelled"], **res.timings})
        log(f"  round {res.round}: labelled {res.metrics['labelled']}, " +
            ", ".join(f"{k} {v:.3f} s" for k, v in res.timings.items()))
    warm = steps[1:] or steps
    return {"n": n, "d": 128, "strategy": strategy, "batch": 64, "torch_threads": torch.get_num_threads(),
            "rounds": steps, "round_seconds_median": round(float(np.median([s["total"] for s in warm])), 3),
            "round_seconds_first": round(steps[0]["total"], 3)}


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 classes x 60, 1 starter, 3 strategies, "
                                                         "1-epoch SSL, N = 20k for the timing")
    ap.add_argument("--starters", type=int, help="starter images per class (default 5)")
    ap.add_argument("--strategies", nargs="*", help=f"default: {' '.join(STRATEGIES)}")
    ap.add_argument("--features", nargs="*", choices=["ssl", "raw"], default=["ssl", "raw"])
    ap.add_argument("--million", type=int, help="N for the timing part (default 1,000,000; 0 skips it)")
    ap.add_argument("--threads", type=int, default=2, help="torch/faiss threads (the target is for 2 cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep workspaces here (reused: SSL training and embeddings are cached)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/active_protocol[_quick].json)")
    args = ap.parse_args(argv)

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    quick = args.quick
    starters = args.starters or (1 if quick else 5)
    strategies = args.strategies or (QUICK_STRATEGIES if quick else STRATEGIES)
    k, r, batch = (8, 4, 8) if quick else (64, 32, 64)
    budgets = (0.05, 0.10)
    n_million = args.million if args.million is not None else (20_000 if quick else 1_000_000)
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="active-protocol-")
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.perf_counter()
    ws = make_workspace(workdir, 3 if quick else None, 60 if quick else None)
    log(f"UC Merced: {len(ws)} chips, {ws.manifest['label'].nunique()} classes; seed set {k} NN + {r} random, "
        f"batches of {batch}, budgets {budgets}; {len(strategies)} strategies x {starters} starters per class")
    runs: dict[str, str] = {}
    ssl_cfg = None
    if "ssl" in args.features:
        ssl_cfg = best_ssl_config(quick)
        t = time.perf_counter()
        runs["ssl"] = ssl_run(ws, ssl_cfg, args.seed)
        log(f"SSL features {runs['ssl']} ({ssl_cfg['source']}) ready in {time.perf_counter() - t:.0f} s")
    if "raw" in args.features:
        runs["raw"] = raw_pixel_run(ws)
    rows: list[dict[str, Any]] = []
    for feat, run in runs.items():
        rows += run_protocol(ws, run, strategies, starters, k, r, batch, budgets, args.seed, log)
    table = summarize(rows, budgets)

    timing = None
    if n_million:
        log(f"one round at N = {n_million:,} (synthetic, 128-d, entropy+kmeans, {args.threads} threads):")
        with tempfile.TemporaryDirectory(prefix="active-1m-", dir=workdir) as big:
            timing = time_million(Path(big), n_million, args.seed, "entropy+kmeans", 4 if not quick else 2, log)
        timing["load_average"] = [round(x, 2) for x in os.getloadavg()]  # the box is shared: say how busy it was

    print("\n| features | strategy | runs | recall@5% | F1@5% | FP share@5% | effort@5% | recall@10% | F1@10% | "
          "effort@10% | est. left error@10% | s/round |")
    print("|" + "---|" * 12)
    for t in table:
        def f(key: str) -> str:
            v = t.get(key)
            return "-" if v is None else f"{v:.3f}"
        fp = "-" if t.get("precision@5") is None else f"{1 - t['precision@5']:.3f}"
        eff5 = "-" if t.get("effort@5") is None else f"{t['effort@5']:.1f}%"
        eff10 = "-" if t.get("effort@10") is None else f"{t['effort@10']:.1f}%"
        err = t.get("est_left_error@10")
        print(f"| {t['features']} | {t['strategy']} | {t['runs']} | {f('recall@5')} | {f('f1@5')} | {fp} | {eff5} | "
              f"{f('recall@10')} | {f('f1@10')} | {eff10} | {'-' if err is None else f'{err:.1f}'} | "
              f"{t['round_seconds']:.3f} |")
    if timing:
        print(f"\none round at N = {timing['n']:,}: median {timing['round_seconds_median']:.3f} s "
              f"(first {timing['round_seconds_first']:.3f} s; target <= 2 s on 2 cores)")
    result = {"benchmark": "active_protocol", "quick": quick, "dataset": "UC Merced", "chips": len(ws),
              "classes": int(ws.manifest["label"].nunique()), "starters_per_class": starters, "seed_k": k,
              "seed_r": r, "batch": batch, "budgets": budgets, "strategies": strategies, "features": runs,
              "ssl": ssl_cfg, "table": table, "runs": rows, "million": timing,
              "seconds": round(time.perf_counter() - t0, 1),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                          "torch": torch.__version__, "faiss": faiss.__version__, "cuda": torch.cuda.is_available()}}
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"active_protocol{'_quick' if quick else ''}.json")
    write_json(out, result)
    print(f"wrote {out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
