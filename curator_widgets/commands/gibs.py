"""`curator gibs search|layers|download|serve`: find GIBS layers and cut them into a workspace."""

from __future__ import annotations

import argparse
import json

from ._cluster import add_scheduler, client_of


def _catalog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--capabilities", metavar="FILE_OR_URL",
                   help="WMTS capabilities file or URL (default: live GIBS EPSG:4326 'best', cached for a day)")
    p.add_argument("--base-url", help="tile server root, e.g. https://gibs.earthdata.nasa.gov/wmts/epsg4326/best "
                                      "or a loopback server from `curator gibs serve`")
    p.add_argument("--refresh", action="store_true", help="ignore the cached catalog and fetch it again")


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gibs", help="NASA GIBS imagery: search layers, download chips")
    gsub = g.add_subparsers(dest="gibs_command", metavar="ACTION")
    gsub.required = True

    s = gsub.add_parser("search", help="find layers whose identifier or title contain all WORDS")
    s.add_argument("words", nargs="+")
    s.add_argument("--limit", type=int, default=50)
    _catalog_args(s)
    s.set_defaults(func=_search)

    lp = gsub.add_parser("layers", help="list layers, or --show one in full")
    lp.add_argument("--show", metavar="ID", help="print everything known about one layer")
    _catalog_args(lp)
    lp.set_defaults(func=_layers)

    d = gsub.add_parser("download", help="download a layer over a region and dates into a workspace as chips")
    d.add_argument("--layer", required=True)
    d.add_argument("--bbox", nargs=4, type=float, required=True, metavar=("W", "S", "E", "N"),
                   help="region in degrees; W > E crosses the antimeridian")
    d.add_argument("--dates", nargs="+", metavar="DATE",
                   help="START [END] (YYYY-MM-DD); two dates mean every valid date between them "
                        "(default: the layer's default date)")
    d.add_argument("--tile-size", type=int, default=256, help="chip size in px (default 256)")
    d.add_argument("--overlap", type=float, default=0.0, help="chip overlap as a fraction (e.g. 0.25)")
    d.add_argument("--boundary", choices=["shift", "partial", "discard"], default="shift")
    d.add_argument("--level", type=int, help="tile matrix level (default: the layer's finest)")
    d.add_argument("--tile-matrix-set", help="tile matrix set, when the layer has several")
    d.add_argument("--workspace", "-w", required=True, help="workspace folder (created if new)")
    d.add_argument("--concurrency", type=int, default=16)
    d.add_argument("--retries", type=int, default=3)
    d.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    d.add_argument("--fill-swath", choices=["nearest", "inpaint"], help="fill MODIS swath gaps in the chips")
    d.add_argument("--keep-blank", action="store_true", help="keep blank (no-data) chips, flagged 'blank'")
    d.add_argument("--max-tiles", type=int, default=20000)
    d.add_argument("--cache", help="tile/catalog cache folder (default $CURATOR_CACHE_DIR or ~/.cache/curator_widgets)")
    _catalog_args(d)
    add_scheduler(d, "the cutting (one task per date)")
    d.set_defaults(func=_download)

    sv = gsub.add_parser("serve", help="serve the offline Blue Marble through GIBS's URL layout on loopback")
    sv.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.set_defaults(func=_serve)


def _load(args: argparse.Namespace):
    from ..sources.catalog import load_catalog

    return load_catalog(args.capabilities, base_url=args.base_url, refresh=args.refresh)


def _search(args: argparse.Namespace) -> int:
    catalog = _load(args)
    found = catalog.search(args.words, limit=args.limit)
    if not found:
        from ..errors import CuratorError

        raise CuratorError(f"no layer matches all of {' '.join(args.words)!r} ({len(catalog)} layers in "
                           f"{catalog.source})", "use fewer or shorter words, e.g. `curator gibs search modis true`")
    for layer in found:
        print(layer.summary())
    return 0


def _layers(args: argparse.Namespace) -> int:
    catalog = _load(args)
    if not args.show:
        print(f"# {len(catalog)} layers in {catalog.source} (catalog age {_age(catalog.age)})")
        for layer in sorted(catalog, key=lambda l: l.identifier):
            print(layer.summary())
        return 0
    layer = catalog.get(args.show)
    info = {"identifier": layer.identifier, "title": layer.title, "formats": layer.formats,
            "tile_matrix_sets": {}, "time": layer.describe_time(limit=20), "time_default": layer.time_default,
            "bbox": list(layer.bbox)}
    for name in layer.tile_matrix_sets:
        tms = catalog.tile_matrix_set_for(layer, name)
        top = layer.max_level(tms)
        info["tile_matrix_sets"][name] = {"crs": tms.crs, "levels": f"0..{top}",
                                          "degrees_per_pixel": {z: tms.degrees_per_pixel(z) for z in range(top + 1)}}
    print(json.dumps(info, indent=2))
    return 0


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _download(args: argparse.Namespace) -> int:
    from ..sources.gibs import GIBSSource
    from ..workspace import Workspace
    from ._bbox import say_antimeridian

    dates = None
    if args.dates:
        if len(args.dates) > 2:
            dates = list(args.dates)
        else:
            dates = tuple(args.dates) if len(args.dates) == 2 else args.dates[0]
    src = GIBSSource(args.layer, level=args.level, tile_matrix_set=args.tile_matrix_set, base_url=args.base_url,
                     capabilities=args.capabilities, cache=args.cache, concurrency=args.concurrency,
                     retries=args.retries, timeout=args.timeout, fill=args.fill_swath, keep_blank=args.keep_blank,
                     max_tiles=args.max_tiles, refresh_catalog=args.refresh)
    src.plan(args.bbox, dates, args.tile_size, args.overlap, args.boundary)  # every input error before the workspace
    say_antimeridian(args.bbox)
    ws = Workspace.open_or_create(args.workspace)
    res = ws.ingest(src, region=args.bbox, dates=dates, size=args.tile_size, overlap=args.overlap,
                    boundary=args.boundary, client=client_of(args))
    print(f"{src.layer.identifier} level {src.level} ({src.tms.identifier}): added {res.added} chips, "
          f"{res.existing} already present; {src.stats['blank_dropped']} blank dropped, "
          f"{src.stats['held_back']} held back")
    for rep in src.reports:
        print(f"  download: {rep.summary()}")
    for s in res.skipped[:20]:
        print(f"  problem: {s.where}: {s.reason}")
    if src.stats["held_back"]:
        print("  re-run the same command to fetch the missing tiles; chips already added are kept")
    print(json.dumps(ws.describe(), indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import time

    from ..sources.wmts_server import serve_bluemarble

    server = serve_bluemarble(port=args.port, host=args.host)
    print(f"serving BlueMarble_NextGeneration at {server.base_url} (capabilities: {server.capabilities_url})")
    print("use it with: curator gibs download --base-url " + server.base_url + " --layer BlueMarble_NextGeneration ...",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()
