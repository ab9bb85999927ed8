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
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402

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


def round0_selection_check(ws, run0: str, pool: np.ndarray, labels: np.ndarray, n: int, seed: int,
                           starts: int = 10, draws: int = 200) -> dict:
    """Class-size std of n chips picked by FPS on the round-0 embeddings (several random starts) against
    random draws of n, with no retraining: how well this seed's embedding lets diversity balance classes."""
    from curator_widgets.class_stats import class_counts
    from curator_widgets.embed import load_embeddings
    from curator_widgets.sampling import farthest_point_sample

    X = np.asarray(load_embeddings(ws, run0), dtype=np.float32)[pool]
    classes = sorted(set(labels[pool].tolist()))
    rng = np.random.default_rng(seed)

    def std(idx: np.ndarray) -> float:
        return float(np.std(list(class_counts(labels[pool][idx].tolist(), classes).values())))

    fps = [std(farthest_point_sample(X, n, start=int(s0))[0]) for s0 in rng.choice(len(pool), starts, replace=False)]
    rnd = [std(rng.choice(len(pool), n, replace=False)) for _ in range(draws)]
    return {"seed": seed, "fps_std_mean": float(np.mean(fps)), "fps_std_std": float(np.std(fps)),
            "random_std_mean": float(np.mean(rnd)), "random_std_std": float(np.std(rnd)), "starts": starts,
            "draws": draws}


def doc_tables(res: dict) -> dict[str, str]:
    """The table and summary docs/sampling.md shows (tools/gen_docs.py fills them from the committed JSON)."""
    d_rounds, r_rounds = res["arms"]["diverse"]["rounds"], res["arms"]["random"]["rounds"]

    def ms(row: dict, key: str, fmt: str) -> str:
        return "-" if key not in row else f"{row[key]:{fmt}} +- {row.get(key + '_std', 0.0):{fmt}}"

    table = markdown_table(
        ["round", "class-size std, diverse", "class-size std, random", "kNN acc, diverse", "kNN acc, random",
         "linear acc, diverse", "linear acc, random"],
        (["0 (shared)" if d["round"] == 0 else d["round"], ms(d, "class_size_std", ".2f"), ms(r, "class_size_std", ".2f"),
          ms(d, "knn_acc", ".3f"), ms(r, "knn_acc", ".3f"), ms(d, "linear_acc", ".3f"), ms(r, "linear_acc", ".3f")]
         for d, r in zip(d_rounds, r_rounds)))
    seeds = len(res.get("seeds") or [])
    later = [(d, r) for d, r in zip(d_rounds, r_rounds) if d["round"] > 0]

    def avg(arm: int, key: str) -> float:
        return float(np.mean([pair[arm][key] for pair in later]))

    ahead = sum(d["linear_acc"] > r["linear_acc"] for d, r in later)
    summary = (f"Averaged over rounds 1-{len(later)}: linear probe {avg(0, 'linear_acc'):.3f} diverse against "
               f"{avg(1, 'linear_acc'):.3f} random (diverse ahead in {ahead} of {len(later)} rounds), kNN probe "
               f"{avg(0, 'knn_acc'):.3f} against {avg(1, 'knn_acc'):.3f}, class-size std {avg(0, 'class_size_std'):.2f} "
               f"against {avg(1, 'class_size_std'):.2f}.")
    checks = res.get("round0_selection") or []
    if checks:
        c0 = checks[0]
        summary += (f" Farthest-point sampling on each seed's round-0 embeddings, with no retraining "
                    f"({c0['starts']} random starts, against {c0['draws']} random draws of {res['settings']['n']}), "
                    "gives a class-size std of " + "; ".join(
                        f"{c['fps_std_mean']:.2f} +- {c['fps_std_std']:.2f} against {c['random_std_mean']:.2f} +- "
                        f"{c['random_std_std']:.2f} for seed {c['seed']}" for c in checks) + ".")
    return {"main": f"Mean +- std over {seeds} seed(s) (commit `{(res.get('commit') or '?')[:10]}`):\n\n{table}",
            "summary": summary}


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
    ap.add_argument("--out", type=Path, default=RESULTS / "biased_ucmerced.json")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from curator_widgets.balance import class_counts, iterative_balance, plot_balance

    cfg = settings(args.quick, args.rounds, args.n, args.epochs, args.image_size, args.batch_size, args.round_epochs)
    t0 = time.perf_counter()
    arms: dict[str, list[dict]] = {"diverse": [], "random": []}
    pool_counts = None
    fps_check: list[dict] = []
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
        fps_check.append(round0_selection_check(ws, run0, pool, labels, cfg["n"], seed))
    seeds = list(range(len(arms["diverse"])))
    res = {"benchmark": "biased_ucmerced", "quick": args.quick, "settings": cfg, "pool_class_sizes": pool_counts,
           "arms": {}}
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
    res["per_seed"] = [{"seed": i, "diverse": [{k: row.get(k) for k in ("round", "class_size_std", "knn_acc", "linear_acc")}
                                               for row in d["rounds"]],
                        "random": [{k: row.get(k) for k in ("round", "class_size_std", "knn_acc", "linear_acc")}
                                   for row in r["rounds"]]}
                       for i, (d, r) in enumerate(zip(arms["diverse"], arms["random"]))]
    res["round0_selection"] = fps_check
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"Biased UC Merced: pool {sum(pool_counts.values())} chips in {len(pool_counts)} classes "
          f"({max(pool_counts.values())} .. {min(pool_counts.values())}), n={cfg['n']} per round, "
          f"{len(seeds)} seed(s); probe = kNN/linear on the selection, tested on the balanced held-out set")
    nan = float("nan")
    print(markdown_table(
        ["round", "class-size std, diverse", "class-size std, random", "classes present, diverse",
         "classes present, random", "kNN acc, diverse", "kNN acc, random", "linear acc, diverse", "linear acc, random"],
        (["0*" if d["round"] == 0 else d["round"], f"{d['class_size_std']:.2f}", f"{r['class_size_std']:.2f}",
          f"{d['classes_present']:.1f}", f"{r['classes_present']:.1f}", f"{d.get('knn_acc', nan):.3f}",
          f"{r.get('knn_acc', nan):.3f}", f"{d.get('linear_acc', nan):.3f}", f"{r.get('linear_acc', nan):.3f}"]
         for d, r in zip(res["arms"]["diverse"]["rounds"], res["arms"]["random"]["rounds"]))))
    print("0* = the shared bootstrap model, trained on the whole long-tailed pool (its probe uses every pool label)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        plot_balance(arms["diverse"] + arms["random"], args.out.with_suffix(".png"),
                     labels=[f"diverse s{i}" for i in range(len(arms["diverse"]))] +
                     [f"random s{i}" for i in range(len(arms["random"]))])
        res["plot"] = str(args.out.with_suffix(".png"))
    return write_results(args.out, res, seeds=seeds, started=t0)


if __name__ == "__main__":
    main()
