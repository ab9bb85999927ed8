"""Biased UC Merced ("Scalable Data Balancing for Unlabeled Satellite Imagery", section 3.2).

A long-tailed subset of UC Merced: the 21 classes in a seeded random order get 80 .. 4 training
images (geometric), and 20 other images per class form a balanced held-out test set. Round 0 trains
a self-supervised small CNN (SimCLR, 64 px, 20 epochs) on the whole long-tailed pool and embeds
every chip; then, for 5 rounds and for each arm (diverse = exact farthest-point sampling, random),
select n = 120 chips from the pool with the previous round's embeddings, retrain SSL on that
selection only (12 epochs), re-embed, and score: class-size std of the selection and kNN / linear
probe accuracy (probe trained on the selection's labels, tested on the balanced held-out set).
Both arms share round 0.

    .venv/bin/python benchmarks/biased_ucmerced.py           # ~1 h on 2 shared CPU cores; resumes
    .venv/bin/python benchmarks/biased_ucmerced.py --quick   # 4 classes, 1 round, 1 epoch, 32 px
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curator_widgets.paths import shared_data_dir  # noqa: E402


def long_tail_sizes(n_classes: int, largest: int, smallest: int) -> list[int]:
    """Geometric class sizes from `largest` down to `smallest`."""
    if n_classes == 1:
        return [largest]
    r = (smallest / largest) ** (1 / (n_classes - 1))
    return [int(round(largest * r ** i)) for i in range(n_classes)]


def biased_split(seed: int = 0, n_classes: int = 21, largest: int = 80, smallest: int = 4,
                 test_per_class: int = 20) -> list[tuple[str, Path, str]]:
    """(class, file, "pool"|"test") for the long-tailed pool and the balanced test set."""
    root = shared_data_dir() / "ucmerced"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    classes = [classes[i] for i in rng.permutation(len(classes))[:n_classes]]
    out = []
    for cls, size in zip(classes, long_tail_sizes(n_classes, largest, smallest)):
        files = sorted((root / cls).glob("*.jpg"))
        files = [files[i] for i in rng.permutation(len(files))]
        out += [(cls, f, "test") for f in files[:test_per_class]]
        out += [(cls, f, "pool") for f in files[test_per_class:test_per_class + size]]
    return out


def build_workspace(folder: Path, split: list[tuple[str, Path, str]]):
    """A workspace over the images in place (never copied); returns (ws, pool ids, test ids)."""
    from curator_widgets.sources.base import Chip
    from curator_widgets.workspace import Workspace

    ws = Workspace.open_or_create(folder, description="Biased UC Merced benchmark")
    ws.add_chips([Chip(key=f"ucmerced:{cls}/{f.name}", path=f, meta={"source": "folder", "label": cls})
                  for cls, f, _ in split], progress=False)
    by_key = dict(zip(ws.manifest["key"], ws.manifest["id"]))
    ids = np.array([by_key[f"ucmerced:{cls}/{f.name}"] for cls, f, _ in split])
    which = np.array([s for _, _, s in split])
    return ws, np.sort(ids[which == "pool"]), np.sort(ids[which == "test"])


# SSL augmentation pinned here (not the library default, which may change) so the benchmark's
# runs stay comparable and resumable: SimCLR-style crops of 25-100% of the chip, flips, 90-degree
# rotations, colour jitter, a little greyscale and blur.
AUGMENT = {"crop_scale": [0.25, 1.0], "crop_ratio": [0.75, 4 / 3], "flip": 0.5, "rotate90": True, "jitter": 0.8,
           "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.05, "grayscale": 0.1, "blur": 0.3,
           "blur_sigma": [0.1, 1.5]}


def settings(quick: bool, rounds: int = 5, n: int = 120, epochs: int = 20, image_size: int = 64,
             batch_size: int = 32, round_epochs: int = 12) -> dict:
    """Split and SSL settings; importance_sampling.py calls this too, to reuse the same round-0 encoder.
    `epochs` trains round 0 (the whole pool), `round_epochs` each round's model (the selection only)."""
    if quick:
        return {"split": {"n_classes": 4, "largest": 24, "smallest": 4, "test_per_class": 4},
                "rounds": 1, "n": 16, "train": {"epochs": 1, "image_size": 32, "batch_size": 16, "augment": AUGMENT},
                "round_epochs": 1}
    return {"split": {"n_classes": 21, "largest": 80, "smallest": 4, "test_per_class": 20},
            "rounds": rounds, "n": n, "train": {"epochs": epochs, "image_size": image_size, "batch_size": batch_size,
                                                "augment": AUGMENT},
            "round_epochs": round_epochs}


def prepare(workdir: Path, cfg: dict, seed: int):
    """The workspace and the shared round-0 model (SSL on the whole long-tailed pool), embedded."""
    from curator_widgets.embed import embed
    from curator_widgets.train import train_ssl

    ws, pool, test = build_workspace(workdir / f"ws-s{seed}", biased_split(seed, **cfg["split"]))
    run0 = f"bucm-r0-s{seed}"
    train_ssl(ws, run=run0, ids=pool.tolist(), seed=seed, knn=False, progress=False, **cfg["train"])
    embed(ws, run0, progress=False)
    return ws, pool, test, run0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 classes, 1 round, 1 epoch at 32 px")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=120, help="chips selected per round (default 120 of a ~550 pool)")
    ap.add_argument("--epochs", type=int, default=20, help="SSL epochs of round 0 (the whole pool)")
    ap.add_argument("--round-epochs", type=int, default=12, help="SSL epochs of each round's model (its selection)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "curator-bench-biased-ucmerced",
                    help="workspaces (models, embeddings) live here; re-running resumes")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "biased_ucmerced.json")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from curator_widgets.balance import class_counts, iterative_balance, plot_balance

    cfg = settings(args.quick, args.rounds, args.n, args.epochs, args.image_size, args.batch_size, args.round_epochs)
    t0 = time.perf_counter()
    arms: dict[str, list[dict]] = {"diverse": [], "random": []}
    pool_counts = None
    for seed in range(1 if args.quick else args.seeds):
        ws, pool, test, run0 = prepare(args.workdir, cfg, seed)
        labels = ws.manifest["label"].to_numpy(dtype=object)
        pool_counts = class_counts(labels[pool].tolist())
        for arm, selector in (("diverse", "fps"), ("random", "random")):
            doc = iterative_balance(ws, rounds=cfg["rounds"], n=cfg["n"], selector=selector, name=f"{arm}-s{seed}",
                                    initial_run=run0, test_ids=test, seed=seed, progress=False,
                                    train_kwargs={"knn": False, "seed": seed,
                                                  **{**cfg["train"], "epochs": cfg["round_epochs"]}})
            arms[arm].append(doc)
    res = {"benchmark": "biased_ucmerced", "quick": args.quick, "settings": cfg, "seeds": len(arms["diverse"]),
           "pool_class_sizes": pool_counts, "arms": {}, "machine": platform.platform()}
    for arm, docs in arms.items():
        rounds = []
        for r in range(cfg["rounds"] + 1):
            rows = [d["rounds"][r] for d in docs]
            entry = {"round": r}
            for key in ("class_size_std", "knn_acc", "linear_acc"):
                vals = [row[key] for row in rows if key in row]
                if vals:
                    entry[key] = float(np.mean(vals))
                    entry[key + "_std"] = float(np.std(vals))
            entry["classes_present"] = float(np.mean([sum(v > 0 for v in row["class_counts"].values()) for row in rows]))
            rounds.append(entry)
        res["arms"][arm] = {"rounds": rounds}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"Biased UC Merced: pool {sum(pool_counts.values())} chips in {len(pool_counts)} classes "
          f"({max(pool_counts.values())} .. {min(pool_counts.values())}), n={cfg['n']} per round, "
          f"{res['seeds']} seed(s); probe = kNN/linear on the selection, tested on the balanced held-out set")
    print(f"{'round':>5} | {'class-size std':^17} | {'classes present':^17} | {'kNN acc':^15} | {'linear acc':^15}")
    print(f"{'':>5} | {'diverse':>8} {'random':>8} | {'diverse':>8} {'random':>8} | {'diverse':>7} {'random':>7} | "
          f"{'diverse':>7} {'random':>7}")
    for d, r in zip(res["arms"]["diverse"]["rounds"], res["arms"]["random"]["rounds"]):
        label = "0*" if d["round"] == 0 else str(d["round"])
        print(f"{label:>5} | {d['class_size_std']:>8.2f} {r['class_size_std']:>8.2f} | {d['classes_present']:>8.1f} "
              f"{r['classes_present']:>8.1f} | {d.get('knn_acc', float('nan')):>7.3f} {r.get('knn_acc', float('nan')):>7.3f} | "
              f"{d.get('linear_acc', float('nan')):>7.3f} {r.get('linear_acc', float('nan')):>7.3f}")
    print("0* = the shared bootstrap model, trained on the whole long-tailed pool (its probe uses every pool label)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        plot_balance(arms["diverse"] + arms["random"], args.out.with_suffix(".png"),
                     labels=[f"diverse s{i}" for i in range(len(arms["diverse"]))] +
                     [f"random s{i}" for i in range(len(arms["random"]))])
        res["plot"] = str(args.out.with_suffix(".png"))
    args.out.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
