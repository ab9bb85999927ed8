"""Importance sampling on frozen embeddings ("Comparing Importance Sampling Based Methods for
Mitigating the Effect of Class Imbalance"), on the Biased UC Merced subset.

Encoder: the self-supervised small CNN of benchmarks/biased_ucmerced.py's round 0 (trained on the
long-tailed pool, labels never used), frozen. Head, as in the paper: Linear-ReLU-Dropout(0.2)-Linear,
Adam lr 1e-3, batch 64, 20 epochs, cross-entropy (single-label, so softmax instead of the paper's
multi-label sigmoid), on features standardised with the training set's statistics. Methods: baseline; undersampling to the 25th-percentile class size;
oversampling to the 75th-percentile class size (every item kept at least once); loss reweighting
by k = 1.5, 2, 2.5, 3, 5, 10 for low-frequency classes (at or below the 25th percentile of
frequency); oversampling with augmented copies (flips, single bands, blur, unsharp; embedded by the
same frozen encoder) up to the 75th-percentile size. Accuracy per class on the balanced held-out
set, averaged over low-frequency classes and over the others; mean +- std over 5 seeds.

    .venv/bin/python benchmarks/importance_sampling.py           # reuses biased_ucmerced's round 0
    .venv/bin/python benchmarks/importance_sampling.py --quick   # 4 classes, tiny encoder
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

K_VALUES = (1.5, 2, 2.5, 3, 5, 10)


def train_head(Xtr, ytr, w, n_classes: int, seed: int, epochs: int = 20, lr: float = 1e-3, batch: int = 64,
               hidden: int = 256, dropout: float = 0.2):
    """The paper's classifier on frozen features; `w` scales each item's loss (reweighting)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Sequential(nn.Linear(Xtr.shape[1], hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    X, y, wt = torch.as_tensor(Xtr), torch.as_tensor(ytr), torch.as_tensor(w)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    for _ in range(epochs):
        head.train()
        for b in torch.randperm(len(X), generator=g).split(batch):
            opt.zero_grad()
            (loss_fn(head(X[b]), y[b]) * wt[b]).mean().backward()
            opt.step()
    return head.eval()


def per_class_accuracy(head, X, y, n_classes: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        pred = head(torch.as_tensor(X)).argmax(1).numpy()
    return np.array([(pred[y == c] == c).mean() for c in range(n_classes)])


def doc_tables(res: dict) -> dict[str, str]:
    """docs/sampling.md's table and its caption facts (tools/gen_docs.py fills them from the committed JSON)."""
    table = markdown_table(["method", "low-frequency classes", "other classes", "all classes"],
                           ([r["method"]] + [f"{r[k + '_mean']:.3f} +- {r[k + '_std']:.3f}"
                                             for k in ("low_acc", "other_acc", "all_acc")] for r in res["table"]))
    low = res["low_frequency_classes"]
    setup = (f"Low-frequency classes ({len(low)}: {', '.join(low)}); undersampling to {res['undersample_threshold']}, "
             f"oversampling to {res['oversample_threshold']}, {res['augmented_copies']} augmented copies; "
             f"mean +- std over {len(res.get('seeds') or [])} seeds (commit `{(res.get('commit') or '?')[:10]}`):")
    by = {r["method"]: r for r in res["table"]}
    summary = ""
    if {"baseline", "undersample", "oversample", "oversample augmented"} <= set(by):
        pts = lambda a, b, k: 100 * (by[a][k + "_mean"] - by[b][k + "_mean"])  # noqa: E731
        best = max(res["table"], key=lambda r: r["all_acc_mean"])["method"]
        strongest = max((r for r in res["table"] if r["method"].startswith("reweight")), key=lambda r: r["low_acc_mean"],
                        default=None)
        summary = (f"Best overall: {best}. Augmented copies add {pts('oversample augmented', 'oversample', 'low_acc'):+.0f} "
                   f"points on the rare classes over plain repeats; undersampling moves the frequent classes by "
                   f"{pts('undersample', 'baseline', 'other_acc'):+.0f} points and the rare ones by "
                   f"{pts('undersample', 'baseline', 'low_acc'):+.0f}")
        if strongest is not None:
            summary += (f"; the strongest reweighting ({strongest['method']}) moves the rare classes by "
                        f"{pts(strongest['method'], 'baseline', 'low_acc'):+.0f} points and the others by "
                        f"{pts(strongest['method'], 'baseline', 'other_acc'):+.0f}")
        summary += " (differences of the means against the baseline row)."
    return {"main": f"{setup}\n\n{table}", "summary": summary}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 classes, 1-epoch encoder, 1 seed")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20, help="SSL epochs of the shared round-0 encoder")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "curator-bench-biased-ucmerced")
    ap.add_argument("--out", type=Path, default=RESULTS / "importance_sampling.json")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    from curator_widgets.balance import (augmented_oversample, class_counts, low_frequency_classes, oversample,
                                         reweight, undersample)
    from curator_widgets.embed import embed_images, load_embeddings
    from curator_widgets.train import load_model

    import biased_ucmerced as bucm  # the same split, settings and round-0 encoder
    cfg = bucm.settings(args.quick, epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size)
    t0 = time.perf_counter()
    ws, pool, test, run0 = bucm.prepare(args.workdir, cfg, seed=0)
    X = np.asarray(load_embeddings(ws, run0), dtype=np.float32)
    names = ws.manifest["label"].to_numpy(dtype=object)
    classes = sorted(set(names[pool]))
    cid = {c: i for i, c in enumerate(classes)}
    y = np.array([cid[c] for c in names])
    ytr, ylab = y[pool], names[pool]
    counts = class_counts(ylab.tolist())
    sizes = np.array(list(counts.values()))
    low = low_frequency_classes(ylab.tolist(), 25)
    low_idx = np.array([cid[c] for c in low])
    other_idx = np.setdiff1d(np.arange(len(classes)), low_idx)
    under_t = int(np.percentile(sizes, 25))
    over_t = int(np.ceil(np.percentile(sizes, 75)))

    # augmented copies of the rare classes, embedded by the same frozen encoder
    plan = augmented_oversample(ylab.tolist(), threshold=over_t, seed=0)
    model = load_model(ws, run0)
    aug_imgs = list(plan.images(lambda i: ws.load_chip(int(pool[i]))))
    # unit length and float16-rounded, exactly like the stored embeddings of the originals
    aug_X = (embed_images(model, aug_imgs).astype(np.float16).astype(np.float32) if aug_imgs
             else np.zeros((0, X.shape[1]), np.float32))
    aug_y = np.array([cid[c] for c in plan.labels], dtype=np.int64)

    mu, sd = X[pool].mean(0), X[pool].std(0) + 1e-6  # standardised with train statistics, the same for every method
    X, aug_X = (X - mu) / sd, (aug_X - mu) / sd
    Xtr_all = X[pool]
    results: dict[str, list[np.ndarray]] = {}
    seeds = list(range(1 if args.quick else args.seeds))
    for seed in seeds:
        variants = {"baseline": (Xtr_all, ytr, np.ones(len(pool), np.float32)),
                    "undersample": (lambda i: (Xtr_all[i], ytr[i], np.ones(len(i), np.float32)))(
                        undersample(ylab, threshold=under_t, seed=seed)),
                    "oversample": (lambda i: (Xtr_all[i], ytr[i], np.ones(len(i), np.float32)))(
                        oversample(ylab, threshold=over_t, seed=seed)),
                    "oversample augmented": (np.concatenate([Xtr_all, aug_X]), np.concatenate([ytr, aug_y]),
                                             np.ones(len(pool) + len(aug_y), np.float32))}
        for k in K_VALUES:
            variants[f"reweight k={k:g}"] = (Xtr_all, ytr, reweight(ylab, k))
        for name, (Xt, yt, wt) in variants.items():
            head = train_head(Xt.astype(np.float32), yt.astype(np.int64), wt, len(classes), seed)
            results.setdefault(name, []).append(per_class_accuracy(head, X[test], y[test], len(classes)))
    table = []
    for name, accs in results.items():
        A = np.stack(accs)  # seeds x classes
        lo, ot, al = A[:, low_idx].mean(1), A[:, other_idx].mean(1), A.mean(1)
        table.append({"method": name, "low_acc_mean": float(lo.mean()), "low_acc_std": float(lo.std()),
                      "other_acc_mean": float(ot.mean()), "other_acc_std": float(ot.std()),
                      "all_acc_mean": float(al.mean()), "all_acc_std": float(al.std()),
                      "per_class": {c: float(A[:, i].mean()) for i, c in enumerate(classes)}})
    res = {"benchmark": "importance_sampling", "quick": args.quick, "encoder_run": run0, "settings": cfg,
           "class_sizes": counts, "low_frequency_classes": low,
           "undersample_threshold": under_t, "oversample_threshold": over_t, "augmented_copies": len(aug_y),
           "table": table, "torch_threads": torch.get_num_threads(),
           "seconds": round(time.perf_counter() - t0, 1)}
    print(f"Importance sampling on frozen SSL embeddings ({run0}, dim {X.shape[1]}); train = long-tailed pool "
          f"({len(pool)} chips, class sizes {sizes.max()}..{sizes.min()}), test = balanced held-out ({len(test)})")
    print(f"low-frequency classes (<= 25th percentile, {len(low)}): {', '.join(low)}; undersample to {under_t}, "
          f"oversample to {over_t}, {len(aug_y)} augmented copies; {len(seeds)} seeds")
    print(doc_tables({**res, "seeds": seeds})["main"])
    return write_results(args.out, res, seeds=seeds, started=t0)


if __name__ == "__main__":
    main()
