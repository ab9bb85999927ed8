"""Preprocessing against ground truth: composites (PSNR / MAE), cloud masks (IoU), swath fills (Fig. 3).

Synthetic stacks: Blue Marble chips (cloud-free, the truth) under procedural daily clouds with
shadows (`synthetic_clouds`, cover drawn from 0.3-0.6 per day). Places are split in two: the
`subtract` threshold is chosen on the first half, every number is reported on the second.
Real data: the MODIS Terra mosaic of 2020-09-27 (shared data). Fig. 3 experiment: chips of the
tropics, raw-pixel features (16x16 RGB, standardised; no model is trained here), each gap chip's
5 nearest chips: the share that are gap chips too, before and after filling the gaps.

    nice .venv/bin/python benchmarks/preprocess.py            # ~1 min on 2 cores
    nice .venv/bin/python benchmarks/preprocess.py --figures  # also docs/images/preprocess_*.png

Writes benchmarks/results/preprocess.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, markdown_table, write_results  # noqa: E402

from curator_widgets.preprocess import (COMPOSITE_METHODS, MASK_METHODS, composite, detect_clouds, fill_gaps,  # noqa: E402
                                        mae, mask_iou, psnr, synthetic_clouds)
from curator_widgets.sources.quality import assess, nodata_mask  # noqa: E402

MODIS = "MODIS_Terra_CorrectedReflectance_TrueColor_2020-09-27_global.jpg"


def places(n: int, size: int, seed: int) -> list[tuple[int, int]]:
    """Chip origins on the level-3 Blue Marble grid between 60S and 70N (no polar night, some land)."""
    from curator_widgets.sources.bluemarble import world_raster

    h, w = world_raster(3).shape[:2]
    rng = np.random.default_rng(seed)
    lo, hi = int(h * 20 / 180), int(h * 150 / 180) - size
    return [(int(rng.integers(lo, hi)), int(rng.integers(0, w - size))) for _ in range(n)]


def synthetic(n_places: int, days: int, size: int, seed: int) -> dict[str, Any]:
    from curator_widgets.sources.bluemarble import world_raster

    world = world_raster(3)
    rng = np.random.default_rng(seed)
    stacks = []
    for r, c in places(n_places, size, seed):
        clear = world[r:r + size, c:c + size]
        views = [synthetic_clouds(clear, seed=int(rng.integers(1 << 30)), cover=float(rng.uniform(0.3, 0.6)),
                                  origin=(r, c)) for _ in range(days)]
        stacks.append((clear, views))
    choose, test = stacks[: n_places // 2], stacks[n_places // 2:]
    thresholds = (0.04, 0.08, 0.16)
    chosen = max(thresholds, key=lambda t: np.mean([psnr(composite([v.image for v in vs], "subtract", threshold=t).image, cl)
                                                    for cl, vs in choose]))
    rows = []
    single = [(psnr(v.image, cl), mae(v.image, cl)) for cl, vs in test for v in vs]
    rows.append({"method": "single day (no composite)", "psnr_db": round(float(np.mean([s[0] for s in single])), 2),
                 "mae": round(float(np.mean([s[1] for s in single])), 2), "ms_per_chip": 0.0})
    for m in COMPOSITE_METHODS:
        t0, ps, ma = time.perf_counter(), [], []
        for cl, vs in test:
            img = composite([v.image for v in vs], m, threshold=chosen).image
            ps.append(psnr(img, cl))
            ma.append(mae(img, cl))
        rows.append({"method": m + (f" (threshold {chosen}, chosen on the other half)" if m == "subtract" else ""),
                     "psnr_db": round(float(np.mean(ps)), 2), "mae": round(float(np.mean(ma)), 2),
                     "ms_per_chip": round(1000 * (time.perf_counter() - t0) / len(test), 1)})
    masks = []
    for m in MASK_METHODS:
        t0 = time.perf_counter()
        ious = [mask_iou(detect_clouds(v.image, m), v.mask) for _, vs in test for v in vs]
        masks.append({"method": m, "iou": round(float(np.mean(ious)), 3), "worst_iou": round(float(np.min(ious)), 3),
                      "ms_per_chip": round(1000 * (time.perf_counter() - t0) / len(ious), 1)})
    return {"places": n_places, "test_places": len(test), "days": days, "size": size, "subtract_threshold": chosen,
            "composites": rows, "masks": masks}


def modis_chips(size: int = 64) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Every size x size chip of the MODIS mosaic between 30S and 30N that is not blank."""
    from PIL import Image

    from curator_widgets.paths import shared_data_dir

    with Image.open(shared_data_dir() / "gibs" / MODIS) as im:
        world = np.asarray(im.convert("RGB"))
    h = world.shape[0]
    r0, r1 = int(h * 60 / 180), int(h * 120 / 180)
    out, where = [], []
    for r in range(r0, r1 - size + 1, size):
        for c in range(0, world.shape[1] - size + 1, size):
            chip = world[r:r + size, c:c + size]
            if "blank" not in assess(chip).flags:
                out.append(chip)
                where.append((r, c))
    return np.stack(out), where


def raw_features(chips: np.ndarray) -> np.ndarray:
    from PIL import Image

    x = np.stack([np.asarray(Image.fromarray(c).resize((16, 16), Image.BOX), np.float32) / 255 for c in chips])
    x = (x - x.mean((0, 1, 2))) / x.std((0, 1, 2))
    x = x.reshape(len(x), -1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def gap_neighbours(chips: np.ndarray, gap: np.ndarray, k: int = 5) -> float:
    """Mean share of gap chips among each gap chip's k nearest chips (cosine, itself excluded)."""
    x = raw_features(chips)
    sim = x[gap] @ x.T
    sim[np.arange(gap.sum()), np.flatnonzero(gap)] = -np.inf
    nn = np.argsort(-sim, axis=1)[:, :k]
    return float(gap[nn].mean())


def swath_experiment() -> dict[str, Any]:
    chips, _ = modis_chips()
    gap = np.array(["swath_gap" in assess(c).flags for c in chips])
    rows = [{"chips": "as downloaded", "gap_share_of_gap_chip_neighbours@5": round(gap_neighbours(chips, gap), 3)}]
    for method in ("nearest", "inpaint"):
        t0 = time.perf_counter()
        filled = chips.copy()
        for i in np.flatnonzero(gap):
            filled[i] = fill_gaps(chips[i], method)[0]
        rows.append({"chips": f"gaps filled ({method})",
                     "gap_share_of_gap_chip_neighbours@5": round(gap_neighbours(filled, gap), 3),
                     "ms_per_chip": round(1000 * (time.perf_counter() - t0) / max(1, gap.sum()), 1)})
    return {"chips": int(len(chips)), "gap_chips": int(gap.sum()), "base_rate": round(float(gap.mean()), 3),
            "features": "raw pixels (16x16 RGB, standardised); no SSL model", "rows": rows}


def figures(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curator_widgets.sources.bluemarble import world_raster

    r, c = 1080, 2650  # the Alps and the Adriatic on the level-3 grid
    clear = world_raster(3)[r:r + 192, c:c + 192]
    views = [synthetic_clouds(clear, seed=s, cover=0.45, origin=(r, c)) for s in (11, 12, 13, 14, 15)]
    comp = composite([v.image for v in views], "median")
    fig, ax = plt.subplots(1, 6, figsize=(16, 3.2))
    for i in range(3):
        ax[i].imshow(views[i].image)
        ax[i].set_title(f"day {i + 1}")
    ax[3].imshow(comp.image)
    ax[3].set_title(f"median composite ({psnr(comp.image, clear):.1f} dB)")
    ax[4].imshow(comp.provenance, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    ax[4].set_title("provenance: date per pixel")
    ax[5].imshow(clear)
    ax[5].set_title("truth (Blue Marble)")
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(out / "preprocess_composite.png", dpi=80)
    plt.close(fig)

    chips, _ = modis_chips(size=128)
    gaps = [i for i, ch in enumerate(chips) if "swath_gap" in assess(ch).flags and 0.15 < nodata_mask(ch).mean() < 0.5]
    cloudy = sorted(range(len(chips)), key=lambda i: -abs(0.45 - float(detect_clouds(chips[i]).mean())))[-2:]
    picks = gaps[:2] + cloudy
    fig, ax = plt.subplots(3, len(picks), figsize=(3.2 * len(picks), 9.6))
    for j, i in enumerate(picks):
        ch = chips[i]
        ax[0, j].imshow(ch)
        ax[0, j].set_title("MODIS 2020-09-27")
        m = detect_clouds(ch)
        over = ch.copy()
        over[m] = (0.5 * over[m] + [127, 0, 127]).astype(np.uint8)
        ax[1, j].imshow(over)
        ax[1, j].set_title(f"cloud mask ({m.mean():.0%})")
        ax[2, j].imshow(fill_gaps(ch, "nearest")[0])
        ax[2, j].set_title("swath gap filled (nearest)")
    for a in ax.ravel():
        a.axis("off")
    fig.tight_layout()
    fig.savefig(out / "preprocess_modis.png", dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--places", type=int, default=40)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", action="store_true", help="also draw docs/images/preprocess_*.png")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/preprocess.json)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"benchmark": "preprocess", "seed": args.seed,
                           "synthetic": synthetic(args.places, args.days, args.size, args.seed),
                           "swath_fig3": swath_experiment()}
    if args.figures:
        figures(ROOT / "docs" / "images")
    out = Path(args.out) if args.out else RESULTS / "preprocess.json"
    write_results(out, doc, seeds=[args.seed], started=t0)
    print(tables(doc))
    print(f"wrote {out}")
    return doc


def doc_tables(doc: dict[str, Any]) -> dict[str, str]:
    """docs/preprocessing.md's tables (tools/gen_docs.py fills them from the committed JSON)."""
    s, f = doc["synthetic"], doc["swath_fig3"]
    when = f"(commit `{(doc.get('commit') or '?')[:10]}`)"
    return {
        "composites": markdown_table(["method", "psnr_db", "mae", "ms_per_chip"], s["composites"],
                                     header=["composite", "PSNR (dB)", "MAE", "ms per chip"]) + f"\n\n{when}",
        "masks": markdown_table(["method", "iou", "worst_iou", "ms_per_chip"], s["masks"],
                                header=["cloud mask", "IoU", "worst IoU", "ms per chip"]),
        "swaths": (f"{f['chips']} chips, {f['gap_chips']} with swath gaps; base rate {f['base_rate']}:\n\n"
                   + markdown_table(["chips", "gap_share_of_gap_chip_neighbours@5"], f["rows"],
                                    header=["MODIS tropics chips", "gap chips among a gap chip's 5 nearest"]))}


def tables(doc: dict[str, Any]) -> str:
    return "\n\n".join(doc_tables(doc).values())


if __name__ == "__main__":
    main()
