"""`curator demo`: the main job on the offline Blue Marble default."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline offline on NASA Blue Marble")
    p.add_argument("--workspace", "-w", default="curator-demo", help="workspace folder (default: ./curator-demo)")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="region (default: the world)")
    p.add_argument("--size", type=int, help="chip size in px (default 64)")
    p.add_argument("--level", type=int, help="GIBS 500m tile-matrix level 0-3 (default 3, ~7.8 km/px)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ._bbox import say_antimeridian

    say_antimeridian(args.bbox)
    summary = run_demo(args.workspace, bbox=args.bbox, size=args.size, level=args.level)
    print(f"workspace: {summary['workspace']}")
    for step, out in summary.items():
        if step == "workspace":
            continue
        items = ", ".join(f"{k}={v}" for k, v in out.items())
        print(f"  {step}: {items}")
    return 0
