"""`curator protocol`: the Curator active-learning protocol on a folder of class subfolders.

The same command as `benchmarks/active_protocol.py` (both call `add_arguments` and
`run_from_args`), thin over `curator_widgets.protocol.run_protocol`.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol", help="how much of each class one image finds at 5-10%% labelling effort",
                       description="Run the Curator protocol on DIR/<class>/<image> (folder names are the ground "
                                   "truth): SSL + embeddings with the fixed defaults, then (up to) 5 simulated labelling "
                                   "sessions per class; prints recall / F1 / FP share at 5.0, 6.0, 7.8 and 10.0%% "
                                   "effort for the dev and test halves of the classes and writes a JSON report.")
    add_arguments(p, default_folder=None)
    p.set_defaults(func=lambda args: 0 if run_from_args(args, results_dir=Path.cwd()) else 1)


def add_arguments(p: argparse.ArgumentParser, default_folder: str | None) -> None:
    """The command's options (shared with benchmarks/active_protocol.py)."""
    p.add_argument("--folder", required=default_folder is None, default=default_folder,
                   help="folder of class subfolders of images" + (f" (default {default_folder})" if default_folder
                                                                  else ""))
    p.add_argument("--quick", action="store_true", help="smoke run: 1-epoch SSL, 1 starter per class (checks the "
                                                        "pipeline, not quality)")
    p.add_argument("--out", help="JSON report path (default protocol_<folder>[_quick].json here; the benchmark: "
                                 "benchmarks/results/active_protocol[_<folder>][_quick].json)")
    p.add_argument("--workdir", help="keep the workspace (chips, model, embeddings) here and reuse it next time "
                                     "(default: a temporary folder, deleted at the end)")
    p.add_argument("--starters", type=int, help="starter images per class (default 5, fewer on pools so large "
                                                "that the sessions would exceed protocol.SESSION_ROUND_CHIPS; --quick 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starters, seed sets and acquisition (default 0)")
    p.add_argument("--ssl-seeds", type=int, default=1, metavar="N",
                   help="train N SSL models (seeds 0..N-1) and run every session on each; the tables are means over "
                        "them, the per-class table shows each model's recall (default 1; costs N x the SSL and "
                        "sessions)")
    p.add_argument("--threads", type=int, default=2, help="torch/faiss threads (default 2)")
    g = p.add_argument_group("overrides of the fixed defaults (for experiments; the report records them)")
    g.add_argument("--backbone", help="SSL backbone, e.g. resnet50 (the GPU recipe)")
    g.add_argument("--method", help="SSL method: simclr, simsiam or byol")
    g.add_argument("--image-size", type=int, help="SSL training and embedding size in px")
    g.add_argument("--views", type=int, help="SSL budget in image-views")
    g.add_argument("--tta", choices=["on", "off"], help="average embeddings over the 8 rotations/flips")
    g.add_argument("--head-weight", type=float, help="1 = logistic head, 0 = label propagation, between: blend")
    g.add_argument("--strategy", help="acquisition, e.g. entropy, entropy+kmeans, top_positive")


def recipes(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The SSL and loop recipes: the defaults with any override applied, and the overrides themselves."""
    from ..protocol import DEFAULT_LOOP, DEFAULT_SSL, QUICK_SSL

    ssl = QUICK_SSL if args.quick else DEFAULT_SSL
    overrides: dict[str, Any] = {}
    for key in ("backbone", "method", "image_size"):
        if getattr(args, key):
            overrides[key] = getattr(args, key)
    if args.views:
        overrides["views"] = args.views
    if args.tta:
        overrides["tta"] = args.tta == "on"
    ssl = replace(ssl, **overrides)
    loop_over: dict[str, Any] = {}
    if args.head_weight is not None:
        loop_over["head_weight"] = args.head_weight
    if args.strategy:
        loop_over["strategy"] = args.strategy
    return ssl, replace(DEFAULT_LOOP, **loop_over), {**overrides, **loop_over}


def run_from_args(args: argparse.Namespace, results_dir: Path) -> dict[str, Any]:
    """Run the protocol as the options say, print the tables, write the JSON (atomically); the result."""
    import faiss
    import torch

    from ..atomic import write_json
    from ..protocol import report, run_protocol

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    ssl, loop, overrides = recipes(args)
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="curator-protocol-")
    try:
        result = run_protocol(args.folder, args.workdir or tmp.name, quick=args.quick, ssl=ssl, loop=loop,
                              starters=args.starters, seed=args.seed, log=lambda m: print(m, flush=True),
                              ssl_seeds=args.ssl_seeds)
    finally:
        if tmp is not None:
            tmp.cleanup()
    result["overrides"] = overrides
    name = result["dataset"]
    if args.out:
        out = Path(args.out)
    elif results_dir.name == "results":  # the benchmark's folder: UC Merced keeps the historical name
        out = results_dir / ("active_protocol" + ("" if name == "ucmerced" else f"_{name}") +
                             ("_quick" if args.quick else "") + ".json")
    else:
        out = results_dir / f"protocol_{name}{'_quick' if args.quick else ''}.json"
    result["out"] = str(out)
    print()
    print(report(result))
    write_json(out, result)
    print(f"\nwrote {out} ({result['seconds']['total']:.0f} s)")
    return result
