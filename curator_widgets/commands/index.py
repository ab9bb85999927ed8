"""`curator index`, `curator search` and `curator project`: similarity index, queries and 2-D views."""

from __future__ import annotations

import argparse
import json

from ._cluster import add_scheduler, client_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build (or extend) the FAISS similarity index of an embedding run",
                       description="Build WS/index/RUN.faiss from WS/embeddings/RUN.npy. An up-to-date index is "
                                   "reused; chips embedded since are added without a rebuild.")
    _common(p)
    p.add_argument("--kind", default="auto",
                   help="auto (default), flat, hnsw, ivf, ivf-fp16, ivf-sq8, ivf-pq, or a faiss factory string")
    p.add_argument("--metric", choices=["cosine", "l2"], default="cosine")
    p.add_argument("--target-recall", type=float, default=0.95, help="recall@10 the search knob is tuned to (0.95)")
    p.add_argument("--memory-gb", type=float, help="memory the index may use (default: a quarter of RAM)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if an up-to-date index exists")
    p.add_argument("--add", action="store_true", help="only add chips embedded since the index was built")
    p.add_argument("--on-disk", action="store_true",
                   help="keep the IVF lists in a memory-mapped RUN.<token>.ivfdata file (runs whose codes exceed RAM)")
    add_scheduler(p, "the shard adds (IVF kinds; trained here, filled on the workers)")
    p.set_defaults(func=_index)

    s = sub.add_parser("search", help="find the chips most similar to chip ids, a vector file or an image",
                       description="Nearest chips by embedding similarity; the query chips never come back and "
                                   "filters apply inside the search, so -k results return when enough chips pass.")
    _common(s)
    s.add_argument("--id", dest="ids", type=int, action="append", help="query chip id (repeat for several positives)")
    s.add_argument("--image", action="append", help="query image file, embedded with the run's model (repeatable)")
    s.add_argument("--vector", help=".npy file of query vector(s) [d] or [n, d]")
    s.add_argument("-k", type=int, default=20, help="how many results (default 20)")
    s.add_argument("--mode", choices=["mean", "union"], default="mean", help="several positives: mean query or union")
    s.add_argument("--date", nargs=2, metavar=("START", "END"), help="keep chips dated START..END (YYYY-MM-DD)")
    s.add_argument("--layer", action="append", help="keep chips of this layer (repeatable)")
    s.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="keep chips centred in the box")
    s.add_argument("--exclude-flag", action="append", help="drop chips with this flag, e.g. cloudy (repeatable)")
    s.add_argument("--require-flag", action="append", help="keep only chips with this flag (repeatable)")
    s.add_argument("--max-cloud", type=float, help="drop chips with a larger cloud fraction")
    s.add_argument("--exclude", type=int, action="append", help="chip id never to return (repeatable)")
    s.add_argument("--nprobe", type=int, help="IVF lists to visit (default: calibrated at build time)")
    s.add_argument("--ef-search", type=int, help="HNSW search breadth (default: calibrated at build time)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=_search)

    j = sub.add_parser("project", help="2-D UMAP (or PCA) projection of an embedding run, cached, with a PNG",
                       description="Compute (or reuse) WS/projections/RUN.npy and save a scatter plot.")
    _common(j)
    j.add_argument("--method", choices=["umap", "pca"], default="umap")
    j.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors (default 15)")
    j.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist (default 0.1)")
    j.add_argument("--epochs", type=int, help="UMAP n_epochs (default: umap's choice)")
    j.add_argument("--seed", type=int, help="seed for a reproducible (single-threaded) UMAP")
    j.add_argument("--recompute", action="store_true", help="ignore the cached projection")
    j.add_argument("--color", default="label", help="manifest column to color the PNG by (default label; 'none')")
    j.add_argument("--png", help="PNG path (default WS/projections/RUN.png; 'none' to skip)")
    add_scheduler(j, "the placing of the chips outside the UMAP sample (above 50,000 chips)")
    j.set_defaults(func=_project)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--run", help="embedding run (default: the only one in the workspace)")


def _open(args: argparse.Namespace):
    from ..sampling import default_run
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    return ws, args.run or default_run(ws)


def _index(args: argparse.Namespace) -> int:
    from ..index import add_to_index, build_index, load_index

    ws, run = _open(args)
    if args.add:
        added = add_to_index(ws, run)
        sim = load_index(ws, run)
        print(f"added {added} chips; index {run} now holds {sim.ntotal}")
    else:
        sim = build_index(ws, run, kind=args.kind, metric=args.metric, rebuild=args.rebuild,
                          target_recall=args.target_recall, memory_budget_gb=args.memory_gb, client=client_of(args),
                          on_disk=args.on_disk)
    p = sim.params
    print(f"index {run}: {p['factory']} over {p['count']} chips x {p['dim']} ({p['metric']})")
    if p.get("knob_name"):
        print(f"  {p['knob_name']}={p['knob']} gives recall@10={p.get('recall_at_10')} (target {p['target_recall']})")
    print(f"  why: {p['reason']}")
    print(f"  built in {p.get('build_seconds')} s -> {ws.index_path(run)}"
          + (f" (lists on disk: {p['ivfdata']})" if p.get("ivfdata") else ""))
    return 0


def _search(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import CuratorError
    from ..index import search
    from ._bbox import say_antimeridian

    ws, run = _open(args)
    vectors = None
    if args.vector:
        try:
            vectors = np.load(args.vector)
        except (OSError, ValueError) as e:
            raise CuratorError(f"cannot read query vectors {args.vector} ({e})", "pass a .npy file of shape [d] or [n, d]") from None
    filters = {"date": tuple(args.date) if args.date else None, "layer": args.layer, "bbox": args.bbox,
               "exclude_flags": args.exclude_flag, "flags": args.require_flag, "max_cloud": args.max_cloud}
    filters = {k: v for k, v in filters.items() if v is not None}
    say_antimeridian(args.bbox)
    res = search(ws, run, ids=args.ids, vectors=vectors, image=args.image, k=args.k, mode=args.mode,
                 filters=filters or None, exclude=args.exclude, nprobe=args.nprobe, ef_search=args.ef_search)
    cols = [c for c in ("rank", "score", "id", "key", "layer", "date", "label", "path") if c in res.rows.columns]
    if "hits" in res.rows.columns:
        cols.append("hits")
    if args.json:
        out = res.rows[cols].to_dict(orient="records")
        print(json.dumps({"run": run, "metric": res.metric, "results": out, **res.params}, indent=2, default=str))
        return 0
    what = "similarity" if res.metric == "cosine" else "distance"
    print(f"{len(res)} nearest chips in run {run} ({what}; {res.params['factory']})")
    with _pandas_wide():
        print(res.rows[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _pandas_wide():
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_colwidth", 60)


def _project(args: argparse.Namespace) -> int:
    from ..errors import CuratorError
    from ..projection import cached_projection, project, save_projection_plot

    ws, run = _open(args)
    xy = project(ws, run, method=args.method, n_neighbors=args.neighbors, min_dist=args.min_dist,
                 n_epochs=args.epochs, seed=args.seed, recompute=args.recompute, client=client_of(args))
    meta = cached_projection(ws, run)[1]
    print(f"projection {run}: {meta['method']} of {len(xy)} chips in {meta['seconds']} s -> {ws.projection_path(run)}")
    if meta.get("placed"):
        print(f"  fit on {meta['fit']} sampled chips, {meta['placed']} placed into the fit")
    if (args.png or "").lower() != "none":
        color = None
        if args.color and args.color.lower() != "none":
            df = ws.manifest
            if args.color not in df.columns:
                raise CuratorError(f"the manifest has no column {args.color!r}",
                                   f"color by one of {', '.join(df.columns)} or 'none'")
            col = df[args.color].iloc[: len(xy)]
            color = col.to_numpy(dtype=float) if col.dtype.kind in "fiu" else col.tolist()
        png = args.png or str(ws.projection_path(run).with_suffix(".png"))
        save_projection_plot(xy, png, color=color, title=f"{run} ({meta['method']}, {len(xy)} chips)")
        print(f"  plot -> {png}")
    return 0
