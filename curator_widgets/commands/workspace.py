"""`curator ingest` and `curator info`: fill a workspace from a source and describe it."""

from __future__ import annotations

import argparse
import json

from ._cluster import add_scheduler, client_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="cut chips from a source into a workspace")
    p.add_argument("--workspace", "-w", required=True, help="workspace folder (created if new)")
    p.add_argument("--source", choices=["bluemarble", "folder"], default="bluemarble")
    p.add_argument("--folder", help="image folder for --source folder")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="region in degrees")
    p.add_argument("--size", type=int, default=None, help="chip size in px (default: 64 for bluemarble, whole images for folder)")
    p.add_argument("--overlap", type=float, default=0.0)
    p.add_argument("--boundary", choices=["shift", "partial", "discard"], default="shift")
    p.add_argument("--level", type=int, default=3, help="GIBS 500m tile-matrix level for bluemarble (0-3)")
    add_scheduler(p, "the cutting (folder images in groups of 512; one piece for bluemarble)")
    p.set_defaults(func=_ingest)

    q = sub.add_parser("info", help="describe a workspace")
    q.add_argument("workspace")
    q.set_defaults(func=_info)


def _ingest(args: argparse.Namespace) -> int:
    from ..errors import CuratorError
    from ..sources import BlueMarbleSource, FolderSource
    from ._bbox import say_antimeridian
    from ..workspace import Workspace

    if args.source == "folder":
        if not args.folder:
            raise CuratorError("--source folder needs --folder PATH", "add --folder /path/to/images")
        source = FolderSource(args.folder)
        size = args.size
    else:
        source = BlueMarbleSource(level=args.level)
        size = 64 if args.size is None else args.size
    if size is not None and size < 1:
        raise CuratorError(f"--size {size} is not a chip size", "pass a positive number of pixels, e.g. --size 64")
    say_antimeridian(args.bbox)
    ws = Workspace.open_or_create(args.workspace)
    res = ws.ingest(source, region=args.bbox, size=size, overlap=args.overlap, boundary=args.boundary,
                    client=client_of(args))
    print(f"added {res.added} chips, {res.existing} already present, {len(res.skipped)} skipped")
    for s in res.skipped[:20]:
        print(f"  skipped {s.where}: {s.reason}")
    print(json.dumps(ws.describe(), indent=2))
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..workspace import Workspace

    print(json.dumps(Workspace.open(args.workspace).describe(), indent=2))
    return 0
