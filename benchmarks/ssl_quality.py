"""SSL embedding quality on UC Merced (21 classes x 100 aerial scenes, resized to 64 px).

For each backbone: kNN top-1 (k=20, cosine, similarity-weighted votes) of held-out test chips
against train chips, for the SSL embedding (trained on the train split only, labels never
used), a random-init network of the same architecture, and raw downsampled pixels, all in the
same run and on the same split. Prints a table and writes benchmarks/results/ssl_quality.json.

    .venv/bin/python benchmarks/ssl_quality.py            # full run (~55 min on 2 CPU cores)
    .venv/bin/python benchmarks/ssl_quality.py --quick    # smoke run on a 3-class subset
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# as `import curator_widgets` does before torch loads: OpenMP threads wait passively (see its __init__)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curator_widgets import FolderSource, Workspace  # noqa: E402
from curator_widgets.data import load_chips  # noqa: E402
from curator_widgets.evaluation import holdout_split, knn_top1  # noqa: E402
from curator_widgets.models import Encoder, build_backbone, encode  # noqa: E402
from curator_widgets.paths import shared_data_dir  # noqa: E402
from curator_widgets.train import load_model, train_ssl  # noqa: E402

# Per-model budgets (train_ssl defaults otherwise: batch 64 on CPU, AdamW for SimCLR, SGD for
# SimSiam). SimCLR passes both baselines within 5 epochs; SimSiam (no negatives) first loses the
# random network's colour statistics and needs ~20 epochs to climb past it on the small CNN, and a
# 60-epoch schedule with ResNet-18 (0.27 after 10 epochs, 0.32 after a 30-epoch schedule, 0.39
# after 60: docs/training.md), which is most of this script's ~55 minutes on 2 CPU cores.
FULL = {
    ("small_cnn", "simclr"): {"epochs": 15},
    ("small_cnn", "simsiam"): {"epochs": 30},
    ("resnet18", "simclr"): {"epochs": 10},
    ("resnet18", "simsiam"): {"epochs": 60},
}
QUICK = {("small_cnn", "simclr"): {"epochs": 1}, ("small_cnn", "simsiam"): {"epochs": 1}}


def make_workspace(root: Path, quick: bool, classes: int = 3, per_class: int = 20) -> Workspace:
    """UC Merced in place via FolderSource (class folders -> labels); --quick links a small subset."""
    src = shared_data_dir() / "ucmerced"
    if quick:
        sub = root / "ucm-subset"
        for cls in sorted(p for p in src.iterdir() if p.is_dir())[:classes]:
            (sub / cls.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:per_class]:
                (sub / cls.name / f.name).symlink_to(f)
        src = sub
    ws = Workspace.open_or_create(root / "ws")
    if len(ws) == 0:
        ws.ingest(FolderSource(src), size=None, progress=False)
    return ws


def raw_pixel_features(images: torch.Tensor, px: int = 16) -> np.ndarray:
    """Downsampled pixels, standardised per channel: the "no learning at all" baseline."""
    x = torch.nn.functional.interpolate(images.float() / 255, size=(px, px), mode="area")
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    return x.flatten(1).numpy()


def random_init_features(backbone: str, images: torch.Tensor, mean, std, size: int, seed: int) -> np.ndarray:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net, dim = build_backbone(backbone)
    enc = Encoder(net, dim, mean, std, size, backbone).eval()
    return encode(enc, images).numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 classes x 20 images, 1 epoch, small CNN")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--models", nargs="*", help="backbone:method pairs, e.g. small_cnn:simclr resnet18:simsiam")
    ap.add_argument("--epochs", type=int, help="override every model's epoch budget")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch-size", type=int, help="default: train_ssl's (64 on the CPU, 256 on a GPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep the temp workspace here (reused across runs)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/ssl_quality[_quick].json)")
    args = ap.parse_args(argv)

    plan = dict(QUICK if args.quick else FULL)
    if args.models:
        plan = {tuple(m.split(":")): plan.get(tuple(m.split(":")), {"epochs": 20}) for m in args.models}
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="ssl-quality-")
    workdir = Path(args.workdir or tmp.name)
    t0 = time.perf_counter()
    ws = make_workspace(workdir, args.quick)
    labels = ws.manifest["label"].to_numpy()
    ref_pos, q_pos, y, classes = holdout_split(labels, fraction=0.2, seed=args.seed,
                                               max_reference=10 ** 9, max_queries=10 ** 9)
    images = load_chips(ws, size=args.image_size, progress=False)
    size = args.image_size
    print(f"UC Merced: {len(ws)} chips, {len(classes)} classes, train {len(ref_pos)} / test {len(q_pos)}, "
          f"{size} px, torch threads {torch.get_num_threads()}", flush=True)

    def score(feats: np.ndarray) -> float:
        return knn_top1(feats[ref_pos], y[ref_pos], feats[q_pos], y[q_pos], k=20)

    raw = score(raw_pixel_features(images))
    rows = []
    random_cache: dict[str, float] = {}
    for (backbone, method), budget in plan.items():
        epochs = args.epochs or budget["epochs"]
        run = f"{method}-{backbone}-{size}"
        t = time.perf_counter()
        info = train_ssl(ws, run=run, method=method, backbone=backbone, image_size=size, epochs=epochs,
                         batch_size=args.batch_size, lr=args.lr, ids=ref_pos, seed=args.seed, knn=False,
                         progress=False, resume=False)
        train_s = time.perf_counter() - t
        model = load_model(ws, run)
        ssl = score(encode(model, images).numpy())
        if backbone not in random_cache:
            random_cache[backbone] = score(random_init_features(backbone, images, model.config["mean"],
                                                                model.config["std"], size, args.seed))
        rnd = random_cache[backbone]
        rows.append({"backbone": backbone, "method": method, "epochs": epochs, "train_seconds": round(train_s, 1),
                     "batch_size": model.config["batch_size"], "lr": round(model.config["lr"], 6),
                     "images_per_s": info["images_per_s"], "final_loss": round(info["loss"], 4),
                     "knn_top1_ssl": round(ssl, 4), "knn_top1_random_init": round(rnd, 4),
                     "knn_top1_raw_pixels": round(raw, 4), "beats_both": bool(ssl > rnd and ssl > raw)})
        print(f"  {backbone:9s} {method:8s} {epochs:3d} ep {train_s:7.1f} s  ssl {ssl:.3f}  random {rnd:.3f}  "
              f"raw {raw:.3f}", flush=True)

    header = "| backbone | method | epochs | train s | img/s | kNN top-1 SSL | random init | raw pixels 16px | beats both |"
    print("\n" + header + "\n|" + "---|" * 9)
    for r in rows:
        print(f"| {r['backbone']} | {r['method']} | {r['epochs']} | {r['train_seconds']} | {r['images_per_s']} | "
              f"{r['knn_top1_ssl']:.3f} | {r['knn_top1_random_init']:.3f} | {r['knn_top1_raw_pixels']:.3f} | "
              f"{'yes' if r['beats_both'] else 'NO'} |")
    result = {"benchmark": "ssl_quality", "quick": args.quick, "dataset": "UC Merced", "image_size": size,
              "n_train": int(len(ref_pos)), "n_test": int(len(q_pos)), "classes": len(classes), "k": 20,
              "metric": "cosine, similarity-weighted votes (T=0.07)", "batch_size": args.batch_size or "train_ssl default",
              "seed": args.seed, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
              "machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                          "load_avg_1m": round(os.getloadavg()[0], 2)}}
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"ssl_quality{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
