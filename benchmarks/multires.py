"""Multi-resolution search on UC Merced: queries 2x zoomed out from the chips, precision@10 and time.

Two levels of the same imagery live in one workspace, as a model store holds them: the chips
(each 256 px scene cut into four 128 px quadrants, 0.3 m per pixel) and the 0.6 m level (each
scene shrunk to 128 px, so it shows a quadrant's ground twice over, objects at half size). A
small SimCLR run is trained on each level and registered with its GSD. A query is one scene at
0.6 m: a zoomed-out context view of four chips. Rows, all from this one run:

- one quadrant at chip scale (the reference: what a query at the chips' own scale gets);
- plain search: the 0.6 m query embedded whole by the chip model;
- tile voting: the query cut into a grid, each tile searched with the chip model, votes pooled
  (the grid, 2x2 or 3x3, is chosen on the even-numbered queries; the odd ones are scored);
- the per-resolution model: `resolution_search(gsd=0.6)` picks the 0.6 m run and searches its level.

The query's own scene (its quadrants, its 0.6 m chip) never counts; precision@10 is the share
of results of the query's class; time per query includes embedding the query.

    nice -n 10 .venv/bin/python benchmarks/multires.py     # ~10 min on 2 shared cores

Writes benchmarks/results/multires.json (docs/preprocessing.md's table: tools/gen_docs.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402

from curator_widgets import FolderSource, Workspace  # noqa: E402
from curator_widgets.embed import embed  # noqa: E402
from curator_widgets.index import build_index, search  # noqa: E402
from curator_widgets.multires import register_resolution, resolution_search, tile_vote_search  # noqa: E402
from curator_widgets.paths import shared_data_dir  # noqa: E402
from curator_widgets.train import train_ssl  # noqa: E402

CHIP_GSD, CONTEXT_GSD = 0.3, 0.6  # UC Merced is 1 ft (0.3 m) per pixel


def write_levels(src: Path, out: Path, per_class: int | None) -> None:
    """The two levels as image folders: class/<scene>_q<i>.png (128 px quadrants) and class/<scene>.png
    (the scene shrunk to 128 px); scenes a few px off 256 are resized to 256 first."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        for f in sorted(cls.iterdir())[:per_class]:
            scene = Image.open(f).convert("RGB").resize((256, 256), Image.BILINEAR)
            for i, (x, y) in enumerate(((0, 0), (128, 0), (0, 128), (128, 128))):
                (out / "chips" / cls.name).mkdir(parents=True, exist_ok=True)
                scene.crop((x, y, x + 128, y + 128)).save(out / "chips" / cls.name / f"{f.stem}_q{i}.png")
            (out / "context" / cls.name).mkdir(parents=True, exist_ok=True)
            scene.resize((128, 128), Image.BOX).save(out / "context" / cls.name / f"{f.stem}.png")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=10, help="queries per class (default 10)")
    ap.add_argument("--scenes", type=int, default=None, help="scenes per class in the database (default all)")
    ap.add_argument("--train-seconds", type=float, default=150.0, help="SSL training budget per level")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="multires-"))
    try:
        write_levels(shared_data_dir() / "ucmerced", tmp / "levels", args.scenes)
        ws = Workspace.create(tmp / "ws")
        ws.ingest(FolderSource(tmp / "levels" / "chips"), size=None, progress=False)
        ws.ingest(FolderSource(tmp / "levels" / "context"), size=None, progress=False)
        m = ws.manifest
        paths = m["path"].astype(str).to_numpy()
        is_chip = np.array(["/levels/chips/" in p for p in paths])
        scene = np.array([Path(p).stem.split("_q")[0] + "/" + Path(p).parent.name for p in paths])
        labels = m["label"].to_numpy()
        levels = {CHIP_GSD: np.flatnonzero(is_chip), CONTEXT_GSD: np.flatnonzero(~is_chip)}
        train = {}
        for gsd, ids in levels.items():
            run = f"ssl-{gsd:g}m"
            t0 = time.perf_counter()
            info = train_ssl(ws, run=run, ids=ids, image_size=args.image_size, epochs=args.epochs,
                             max_seconds=args.train_seconds, knn=False, seed=args.seed, progress=False, workers=0)
            embed(ws, run, progress=False)
            build_index(ws, run, progress=False)
            register_resolution(ws, run, gsd, filters={"ids": ids})
            train[run] = {"chips": len(ids), "epochs_done": info["epoch"], "stopped": info["stopped"],
                          "images_per_s": info["images_per_s"], "seconds": round(time.perf_counter() - t0, 1)}
            print(run, train[run], flush=True)
        chip_filter = {"ids": levels[CHIP_GSD]}
        own = {s: np.flatnonzero(scene == s) for s in np.unique(scene)}  # the query scene's chips, both levels

        rng = np.random.default_rng(args.seed)
        queries = []  # (class, the scene's 0.6 m chip id)
        ctx = levels[CONTEXT_GSD]
        for cls in sorted(set(labels)):
            members = ctx[labels[ctx] == cls]
            queries += [(cls, int(i)) for i in rng.choice(members, min(args.per_class, len(members)), replace=False)]
        choose, scored = queries[0::2], queries[1::2]
        images = {i: ws.load_chip(i) for _, i in queries}

        def measure(fn: Callable[[int], Any], qs: list) -> tuple[float, float]:
            precs, t0 = [], time.perf_counter()
            for cls, i in qs:
                res = fn(i)
                precs.append(float((labels[res.ids[:10]] == cls).mean()))
            return float(np.mean(precs)), 1000 * (time.perf_counter() - t0) / len(qs)

        chip_run = f"ssl-{CHIP_GSD:g}m"

        def tiles(grid: int) -> Callable[[int], Any]:
            return lambda i: tile_vote_search(ws, chip_run, images[i], grid=grid, k=10, filters=chip_filter,
                                              exclude=own[scene[i]])

        picked = {g: measure(tiles(g), choose)[0] for g in (2, 3)}
        grid = max(picked, key=lambda g: (picked[g], -g))
        print("tile grid chosen on the even queries:", picked, "->", grid, flush=True)
        quadrant = {i: int(own[scene[i]][is_chip[own[scene[i]]]][0]) for _, i in scored}
        variants = [
            ("one quadrant at chip scale (reference)",
             lambda i: search(ws, chip_run, ids=quadrant[i], k=10, filters=chip_filter, exclude=own[scene[i]])),
            ("2x zoomed out: plain search, chip model",
             lambda i: search(ws, chip_run, image=images[i], k=10, filters=chip_filter, exclude=own[scene[i]])),
            (f"2x zoomed out: tile voting {grid}x{grid}, chip model", tiles(grid)),
            ("2x zoomed out: per-resolution model (picked for 0.6 m)",
             lambda i: resolution_search(ws, images[i], CONTEXT_GSD, k=10, exclude=own[scene[i]])),
        ]
        rows = []
        for name, fn in variants:
            p, ms = measure(fn, scored)
            rows.append({"query": name, "precision@10": round(p, 3), "ms_per_query": round(ms, 1)})
            print(rows[-1], flush=True)
        n = len(ws)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {"benchmark": "multires", "dataset": "UC Merced", "chips": int(levels[CHIP_GSD].size),
           "context_chips": int(levels[CONTEXT_GSD].size), "workspace_chips": n,
           "queries_scored": len(scored), "queries_choosing": len(choose),
           "ssl": {"method": "simclr", "backbone": "small_cnn", "image_size": args.image_size, "epochs": args.epochs,
                   "max_seconds": args.train_seconds, "runs": train},
           "tile_grid": {"chosen": grid, "precision@10_on_choosing_split": {f"{g}x{g}": round(v, 3)
                                                                             for g, v in picked.items()}},
           "rows": rows}
    out = Path(args.out) if args.out else RESULTS / "multires.json"
    write_results(out, doc, seeds=[args.seed], started=t_all)
    print(markdown_table(["query", "precision@10", "ms_per_query"], rows,
                         header=["query", "precision@10", "ms per query"]))
    print(f"wrote {out}")
    return doc


if __name__ == "__main__":
    main()
