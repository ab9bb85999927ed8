"""`curator sample`: pick a diverse (or random) subset of a workspace's chips and save it."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ._cluster import add_scheduler, client_of

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="select a diverse subset of chips (farthest-point, clusters, random)",
                       description="Select n chips from the embeddings of RUN and save the ids to "
                                   "WS/samples/NAME.json (atomically).")
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--method", "-m", choices=["fps", "stratified", "clusters", "random"], default="fps",
                   help="fps: exact farthest-point; stratified: FPS over random candidate subsets; "
                        "clusters: k-means then equal picks per cluster; random: uniform (default fps)")
    p.add_argument("-n", type=int, default=500, help="how many chips to select (default 500)")
    p.add_argument("--run", help="embedding run to use (default: the only one in the workspace)")
    p.add_argument("--name", help="sample name (default METHOD-N[-RUN])")
    p.add_argument("--seed", type=int, default=0, help="seed for the start point / random draws (default 0)")
    p.add_argument("--metric", choices=["l2", "cosine"], default="l2")
    p.add_argument("--dtype", choices=["float32", "float16"], help="FPS storage precision (default: the embeddings')")
    p.add_argument("--device", help="torch device for FPS (default: cuda when available)")
    p.add_argument("--hold", choices=["memory", "disk"], default="memory",
                   help="with --scheduler: keep the rows in worker memory between FPS steps (fast), or read them "
                        "from the embeddings file in every step (worker memory bounded by one shard)")
    p.add_argument("--clusters", type=int, help="k-means clusters for --method clusters (default sqrt(N/2))")
    p.add_argument("--subset-size", type=int, help="candidate subset size m for --method stratified")
    add_scheduler(p, "--method fps or stratified (the same picks, the embeddings held as shards on the workers)")
    p.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> int:
    from ..sampling import default_run, embeddings_for, sample, save_sample
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    on_cluster = args.method in ("fps", "stratified")
    if args.scheduler and not on_cluster:
        print(f"note: --scheduler applies to --method fps and stratified; {args.method} runs in this process")
    client = client_of(args) if on_cluster else False  # connected now: a bad address fails first
    kw: dict = {}
    if args.method in ("fps",):
        kw.update(dtype=args.dtype, device=args.device)
    if args.method == "clusters" and args.clusters:
        kw["clusters"] = args.clusters
    if args.method == "stratified":
        kw["device"] = args.device
        if args.subset_size:
            kw["subset_size"] = args.subset_size
    if args.method == "random" and not args.run:
        from ..errors import CuratorError
        from ..sampling import random_sample

        if not len(ws):
            raise CuratorError(f"workspace {ws.root} has no chips to sample", "ingest chips first (`curator ingest`)")
        run = None
        ids = random_sample(len(ws), args.n, seed=args.seed)
    else:
        run = args.run or default_run(ws)
        X = embeddings_for(ws, run)
        ids = (_cluster_fps(X, args, client) if client else
               sample(X, args.n, method=args.method, seed=args.seed, metric=args.metric, **kw))
    name = args.name or f"{args.method}-{args.n}" + (f"-{run}" if run else "")
    path = save_sample(ws, name, ids, method=args.method, run=run,
                       params={"seed": args.seed, "metric": args.metric,
                               **{k: v for k, v in kw.items() if v is not None}})
    doc = json.loads(path.read_text())
    print(f"selected {len(ids)} of {len(ws)} chips with {args.method}" + (f" on run {run}" if run else ""))
    print(f"wrote {path}")
    print(json.dumps(doc["stats"], indent=2))
    return 0


def _cluster_fps(X: Any, args: argparse.Namespace, client: Any) -> np.ndarray:
    """What `sample(X, n, "fps" | "stratified", seed=)` picks (the same start, the same picks), the rows held
    by the workers."""
    from ..cluster_sampling import cluster_farthest_point_sample, cluster_stratified_farthest_point_sample
    from ..sampling import fps_start

    start = fps_start(len(X), args.seed)
    if args.method == "stratified":
        return cluster_stratified_farthest_point_sample(X, args.n, subset_size=args.subset_size, start=start,
                                                        metric=args.metric, seed=args.seed, client=client,
                                                        hold=args.hold)[0]
    return cluster_farthest_point_sample(X, args.n, start=start, metric=args.metric,
                                         client=client, dtype=args.dtype, hold=args.hold)[0]
