"""`curator multires vote|register|search`: search with images at other scales than the chips."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("multires", help="multi-resolution search: tile-grid bucket voting and a model store per "
                                        "ground sampling distance")
    psub = p.add_subparsers(dest="multires_command", metavar="ACTION")
    psub.required = True

    v = psub.add_parser("vote", help="cut a query image (or chip) into a grid of tiles, search each, rank chips "
                                     "by votes")
    v.add_argument("--workspace", "-w", required=True)
    v.add_argument("--run", required=True, help="embedding run with an index (`curator index`)")
    q = v.add_mutually_exclusive_group(required=True)
    q.add_argument("--image", help="query image file")
    q.add_argument("--id", type=int, help="query chip id")
    v.add_argument("--grid", type=int, default=2, help="tiles per side (default 2: a 2x zoomed-out query)")
    v.add_argument("-k", type=int, default=20)
    v.add_argument("--group-by", help="manifest column to vote per parent image, e.g. origin")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_vote)

    r = psub.add_parser("register", help="record the ground sampling distance a run's chips have")
    r.add_argument("--workspace", "-w", required=True)
    r.add_argument("--run", required=True)
    r.add_argument("--gsd", type=float, required=True, help="ground size of a chip pixel (e.g. metres)")
    r.add_argument("--layer", help="the run's chips are this layer's (when the workspace holds several levels)")
    r.add_argument("--source", help="the run's chips come from this source")
    r.set_defaults(func=_register)

    s = psub.add_parser("search", help="search with the registered run nearest the query's resolution")
    s.add_argument("--workspace", "-w", required=True)
    s.add_argument("--image", required=True)
    s.add_argument("--gsd", type=float, required=True, help="the query image's ground size per pixel")
    s.add_argument("-k", type=int, default=20)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_search)


def _print(res, as_json: bool) -> int:
    cols = [c for c in ("rank", "score", "hits", "id", "label", "date", "path") if c in res.rows.columns]
    if as_json:
        print(json.dumps({"params": res.params, "results": res.rows[cols].to_dict(orient="records")}, default=str))
    else:
        print(f"{len(res)} chips ({', '.join(f'{k}={v}' for k, v in res.params.items() if v is not None)})")
        print(res.rows[cols].to_string(index=False))
    return 0


def _vote(args: argparse.Namespace) -> int:
    from ..index import search
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    if args.group_by:
        from ..multires import tile_vote_search

        image = args.image if args.image else ws.load_chip(args.id)
        res = tile_vote_search(ws, args.run, image, grid=args.grid, k=args.k, group_by=args.group_by,
                               exclude=[args.id] if args.id is not None else None)
    else:
        res = search(ws, args.run, ids=args.id, image=args.image, k=args.k, tiles=args.grid)
    return _print(res, args.json)


def _register(args: argparse.Namespace) -> int:
    from ..multires import register_resolution, resolutions
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    filters = {k: v for k, v in (("layer", args.layer), ("source", args.source)) if v is not None}
    register_resolution(ws, args.run, args.gsd, filters=filters or None)
    print("model store: " + ", ".join(f"{r} @ {g:g}" for r, g in sorted(resolutions(ws).items(), key=lambda t: t[1])))
    return 0


def _search(args: argparse.Namespace) -> int:
    from ..multires import resolution_search
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    return _print(resolution_search(ws, args.image, args.gsd, k=args.k), args.json)
