"""`curator preprocess composite|mosaic|clouds|fill-swaths`: clean imagery inside a workspace."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..preprocess import COMPOSITE_METHODS, MASK_METHODS, SWATH_METHODS

    p = sub.add_parser("preprocess", help="cloud-free composites, cloud masks and swath-gap fills of a workspace's chips")
    psub = p.add_subparsers(dest="preprocess_command", metavar="STEP")
    psub.required = True

    c = psub.add_parser("composite", help="one cloud-free chip per place seen on two or more dates "
                                          "(new chips flagged 'composite', per-pixel date provenance kept)")
    c.add_argument("--workspace", "-w", required=True)
    c.add_argument("--method", choices=COMPOSITE_METHODS, default="median",
                   help="median of cloud-free days (default), darkest day, or the paper's image subtraction")
    c.add_argument("--dates", nargs="+", metavar="DATE", help="START [END]: only chips dated in this range")
    c.add_argument("--layer", help="only chips of this layer")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=_composite)

    r = psub.add_parser("mosaic", help="one cloud-free mosaic of the whole region (per-pixel date provenance "
                                       "kept), stored under preprocess/mosaics/NAME; resumable")
    r.add_argument("--workspace", "-w", required=True)
    r.add_argument("--method", choices=COMPOSITE_METHODS, default="median")
    r.add_argument("--dates", nargs="+", metavar="DATE", help="START [END]: only chips dated in this range")
    r.add_argument("--layer", help="the layer to mosaic (needed when the workspace has several dated layers)")
    r.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="only chips centred in this box")
    r.add_argument("--name", help="the mosaic's name (default LAYER_START_END_METHOD)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="pick each pixel's date with torch on this device (auto: the GPU when present); default numpy")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=_mosaic)

    m = psub.add_parser("clouds", help="a cloud mask per chip; sets the manifest's cloud_fraction and 'cloudy' "
                                       "flag (filter with max_cloud / exclude_flags)")
    m.add_argument("--workspace", "-w", required=True)
    m.add_argument("--method", choices=MASK_METHODS, default="hysteresis")
    m.add_argument("--cloudy-fraction", type=float, default=None,
                   help="cloud share at which a chip is flagged 'cloudy' (default 0.5)")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=_clouds)

    f = psub.add_parser("fill-swaths", help="a filled copy of every chip flagged 'swath_gap' (flag 'swath_filled')")
    f.add_argument("--workspace", "-w", required=True)
    f.add_argument("--method", choices=SWATH_METHODS, default="adjacent",
                   help="adjacent: the nearest other date's pixels, then neighbours (default); nearest; inpaint")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=_fill)


def _report(name: str, result) -> int:
    print(f"{name}: {result.added} written, {result.existing} already done"
          + (f", {len(result.skipped)} passed over ({result.skipped[0]}{', ...' if len(result.skipped) > 1 else ''})"
             if result.skipped else ""))
    return 0


def _composite(args: argparse.Namespace) -> int:
    from ..preprocess import composite_chips
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    return _report("composite chips", composite_chips(ws, args.dates, args.method, layer=args.layer,
                                                       progress=not args.no_progress))


def _mosaic(args: argparse.Namespace) -> int:
    from ..preprocess import composite_region
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    m = composite_region(ws, args.dates, args.method, layer=args.layer, bbox=args.bbox, name=args.name,
                         device=args.device, progress=not args.no_progress)
    share = ", ".join(f"{d} {v:.0%}" for d, v in m.share().items())
    print(f"mosaic {m.name}: {m.meta['width']}x{m.meta['height']} px from {len(m.dates)} dates"
          f"{' (already done)' if m.existing else ''}; pixels per date: {share}")
    return 0


def _clouds(args: argparse.Namespace) -> int:
    from ..preprocess import cloud_masks
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    res = cloud_masks(ws, args.method, cloudy_fraction=args.cloudy_fraction, progress=not args.no_progress)
    cloudy = int(ws.manifest["flags"].map(lambda f: "cloudy" in list(f)).sum())
    _report("cloud masks", res)
    print(f"{cloudy} of {len(ws)} chips flagged cloudy; `curator search --max-cloud 0.2` leaves cloudier chips out")
    return 0


def _fill(args: argparse.Namespace) -> int:
    from ..preprocess import fill_swaths
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    return _report("swath fills", fill_swaths(ws, args.method, progress=not args.no_progress))
