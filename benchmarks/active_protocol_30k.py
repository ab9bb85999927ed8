"""The CPU budget of the protocol (issue 14): train + embed + every session on a 33,600-image folder.

The folder is UC Merced cut into 64 px crops (benchmarks/ucmerced_crops.py, 16 per image, the
parent's class as label); the run is `protocol.run_protocol` with the command's defaults, stage by
stage, each stage timed: crops, ingest, SSL training, embedding, the kNN graph, the sessions. The
workspace is kept in --workdir, and each stage's time is saved there when it runs, so a rerun
that finds the model and embeddings cached reports the times they took when they were made
(`cached: true`) instead of zero. Writes benchmarks/results/active_protocol_30k.json with machine,
commit, seeds, wall time and the load average before and after, so a reader can scale the
shared-box times to an idle box.

    nice -n 10 python benchmarks/active_protocol_30k.py [--workdir DIR] [--stop-after embeddings]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402
from ucmerced_crops import make_crops  # noqa: E402

from curator_widgets.atomic import write_json  # noqa: E402
from curator_widgets.paths import shared_data_dir  # noqa: E402

STAGES = ("crops", "ingest", "train", "embed", "graph", "sessions")


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(RESULTS / "protocol-30k"), help="crops and workspace (kept; gitignored)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stop-after", choices=STAGES, help="end after this stage (its time is kept for the rerun)")
    ap.add_argument("--out", default=str(RESULTS / "active_protocol_30k.json"))
    ap.add_argument("--partial", action="store_true",
                    help="run nothing: report the stages an earlier (interrupted) run saved in --workdir")
    ap.add_argument("--synthetic-sessions", type=int, default=0,
                    help="with --partial: time this many sessions on a synthetic pool of the same size and dims "
                         "(kept in --workdir for the next --partial)")
    args = ap.parse_args(argv)
    if args.partial:
        t0 = time.perf_counter()
        saved = json.loads((Path(args.workdir) / "stage_seconds.json").read_text())
        metrics = sorted(Path(args.workdir).glob("ucmerced-crops64/ws/models/*/metrics.json"))
        if "train" not in saved and metrics:  # interrupted while embedding: train_ssl's own epoch timings
            hist = json.loads(metrics[-1].read_text())["history"]
            saved["train"] = {"seconds": round(sum(h["seconds"] for h in hist), 1), "cpu_seconds": None,
                              "load_average": [None], "epochs": len(hist),
                              "images_per_s": hist[-1].get("images_per_s"),
                              "note": "train_ssl's epoch timings (reading the chips not included)"}
        extra = {"dataset": "ucmerced-crops64", "chips": saved.get("ingest", {}).get("chips")}
        syn_path = Path(args.workdir) / "synthetic_sessions.json"
        if args.synthetic_sessions:
            write_json(syn_path, synthetic_sessions(args.synthetic_sessions, args.seed, args.threads))
        if syn_path.exists():
            extra["synthetic_sessions"] = json.loads(syn_path.read_text())
        write_report(args.out, {k: {**v, "cached": True} for k, v in saved.items()}, t0, args.seed, extra)
        return 0

    import faiss
    import torch

    from curator_widgets import protocol
    from curator_widgets.propagation import LabelPropagation

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    t_start = time.perf_counter()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    saved_path = work / "stage_seconds.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    stages: dict[str, dict] = {}

    def record(name: str, seconds: float, cached: bool, cpu: float | None = None, **extra) -> None:
        if cached and name in saved:
            stages[name] = {**saved[name], "cached": True}
        else:
            stages[name] = {"seconds": round(seconds, 1), "cpu_seconds": None if cpu is None else round(cpu, 1),
                            "cached": False, "load_average": load_average(), **extra}
            saved[name] = stages[name]
            write_json(saved_path, saved)
        print(f"{name}: {stages[name]['seconds']} s{' (cached run)' if stages[name]['cached'] else ''}", flush=True)

    folder = work / "crops" / "ucmerced-crops64"  # the workspace goes to work/ucmerced-crops64/ws, outside it
    t, c = time.perf_counter(), protocol.cpu_seconds()
    before = sum(1 for _ in folder.rglob("*.png")) if folder.exists() else 0
    n_crops = make_crops(shared_data_dir() / "ucmerced", folder)
    record("crops", time.perf_counter() - t, cached=before == n_crops, cpu=protocol.cpu_seconds() - c, images=n_crops)
    if args.stop_after == "crops":
        return 0

    t, c = time.perf_counter(), protocol.cpu_seconds()
    ws = protocol.folder_workspace(folder, work)
    record("ingest", time.perf_counter() - t, cpu=protocol.cpu_seconds() - c,
           cached="ingest" in saved and len(ws) == saved["ingest"].get("chips"), chips=len(ws))
    if args.stop_after == "ingest":
        return 0

    ssl = protocol.DEFAULT_SSL
    X, info = protocol.embeddings_for(ws, ssl, log=print)
    record("train", info["train_seconds"], cached=not info["trained_now"], cpu=info["train_cpu_seconds"],
           epochs=info["epochs"], images_per_s=info["images_per_s"])
    record("embed", info["embed_seconds"], cached=info["embed_seconds"] < 5, cpu=info["embed_cpu_seconds"],
           run=info["embedding_run"])
    if args.stop_after in ("train", "embed"):
        return 0

    labels = ws.manifest["label"].astype(str).to_numpy()
    classes = sorted(set(labels) - {"None", "nan"})
    loop = protocol.DEFAULT_LOOP
    scaled = loop.scaled(len(ws))
    starters = protocol.starters_per_class(len(ws), len(classes))
    t, c = time.perf_counter(), protocol.cpu_seconds()
    graph = LabelPropagation.from_embeddings(X, k=scaled.graph_k, alpha=scaled.alpha, background=scaled.background,
                                             whiten=scaled.whiten)
    record("graph", time.perf_counter() - t, cached=False, cpu=protocol.cpu_seconds() - c)
    if args.stop_after == "graph":
        return 0

    t, c = time.perf_counter(), protocol.cpu_seconds()
    rows = protocol.evaluate(X, labels, classes, loop, starters=starters, seed=args.seed, graph=graph,
                             log=lambda m: print(m, flush=True))
    record("sessions", time.perf_counter() - t, cached=False, cpu=protocol.cpu_seconds() - c, sessions=len(rows),
           rounds=sum(r["rounds"] for r in rows))
    summary = protocol.summarize(rows, scaled.points)
    print(protocol.summary_table(summary, scaled.points))
    write_report(args.out, stages, t_start, args.seed,
                 {"dataset": folder.name, "chips": len(ws), "classes": classes,
                  "split": protocol.split_classes(classes), "starters_per_class": starters, "ssl": info,
                  "loop": {**asdict(scaled), "points": list(scaled.points)}, "summary": summary})
    return 0


def synthetic_sessions(count: int, seed: int, threads: int, classes: int = 21, per: int = 1600,
                       dims: int = 512) -> dict:
    """Seconds (wall, CPU) of the graph and of `count` default sessions on Gaussian classes of the 30k folder's
    shape: a session's cost depends on the pool's size and dims and the rounds, not on the pixels."""
    import numpy as np
    import torch

    from curator_widgets import protocol
    from curator_widgets.propagation import LabelPropagation

    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims))
    X = np.concatenate([c + 2.5 * rng.normal(size=(per, dims)) for c in centres]).astype(np.float32)
    labels = np.repeat([f"c{i:02d}" for i in range(classes)], per)
    loop = protocol.DEFAULT_LOOP.scaled(len(X))
    t, c = time.perf_counter(), protocol.cpu_seconds()
    graph = LabelPropagation.from_embeddings(X, k=loop.graph_k, alpha=loop.alpha, background=loop.background,
                                             whiten=loop.whiten)
    out = {"chips": len(X), "dims": dims, "graph_seconds": round(time.perf_counter() - t, 1),
           "graph_cpu_seconds": round(protocol.cpu_seconds() - c, 1), "load_average": load_average()}
    t, c = time.perf_counter(), protocol.cpu_seconds()
    rows = protocol.evaluate(X, labels, sorted(set(labels))[:count], protocol.DEFAULT_LOOP, starters=1, seed=seed,
                             graph=graph)
    out.update(sessions=len(rows), rounds=sum(r["rounds"] for r in rows),
               wall_seconds_per_session=round((time.perf_counter() - t) / len(rows), 1),
               cpu_seconds_per_session=round((protocol.cpu_seconds() - c) / len(rows), 1),
               load_average_end=load_average())
    print(f"synthetic sessions: {out}", flush=True)
    return out


def write_report(out: str, stages: dict[str, dict], started: float, seed: int, extra: dict) -> None:
    """Print the stage table and write the results JSON; `complete` says whether every stage ran."""
    total = sum(s["seconds"] for s in stages.values())
    cpu = sum(s.get("cpu_seconds") or 0.0 for s in stages.values())
    table = [{"stage": k, "seconds": v["seconds"], "cpu_seconds": v.get("cpu_seconds"),
              "minutes": round(v["seconds"] / 60, 1), "load": v["load_average"][0], "cached": v["cached"]}
             for k, v in stages.items()]
    table.append({"stage": "total", "seconds": round(total, 1), "cpu_seconds": round(cpu, 1),
                  "minutes": round(total / 60, 1)})
    print(markdown_table(["stage", "seconds", "cpu_seconds", "minutes", "load", "cached"], table,
                         ["stage", "wall s", "CPU s", "wall min", "load average (1 min) at its end",
                          "from an earlier run"]))
    result = {"benchmark": "active_protocol_30k", **extra, "stages": stages, "stage_table": table,
              "complete": all(k in stages for k in STAGES), "total_seconds": round(total, 1),
              "total_cpu_seconds": round(cpu, 1), "budget_seconds": 3600, "load_average_end": load_average()}
    write_results(out, result, seeds=[seed], started=started)
    print(f"wrote {out} (total {total / 60:.1f} min of stages{'' if result['complete'] else ', incomplete'})")


if __name__ == "__main__":
    raise SystemExit(main())
