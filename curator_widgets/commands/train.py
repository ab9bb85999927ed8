"""`curator train` and `curator embed`: self-supervised training and chip embeddings."""

from __future__ import annotations

import argparse
import json

from ..whitening import WHITEN_SHRINK
from ._cluster import add_scheduler, client_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a self-supervised model (SimCLR, SimSiam, BYOL) on a workspace's chips")
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--run", default="simclr-small", help="run name: models/<run>/ (default simclr-small)")
    p.add_argument("--method", choices=["simclr", "simsiam", "byol"], default="simclr")
    p.add_argument("--backbone", choices=["small_cnn", "resnet18", "resnet50", "resnet18_cifar", "resnet50_cifar"],
                   default="small_cnn", help="resnet*_cifar: small-image stem (3x3 conv, no max-pool)")
    p.add_argument("--image-size", type=int, default=64, help="training/embedding size in px (default 64)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-steps", type=int, help="step budget: the cosine schedule ends at this optimizer step")
    p.add_argument("--max-seconds", type=float, help="time budget in training seconds, schedule fitted to it")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, help="learning rate (default: scaled from the batch size)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], help="default: AdamW for simclr/byol, SGD for simsiam")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up epochs (default 1)")
    p.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--ids", help="train on these chip ids only: a file with one id per line (or .npy)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on the GPU")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster steps on GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", help="start from published weights by name, e.g. IMAGENET1K_V1 (downloads)")
    p.add_argument("--no-resume", action="store_true", help="start the run over instead of continuing it")
    p.add_argument("--no-knn", action="store_true", help="skip the kNN monitor on labelled chips")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    e = sub.add_parser("embed", help="embed every chip with a trained model into embeddings/<run>.npy")
    e.add_argument("--workspace", "-w", required=True, help="workspace folder")
    e.add_argument("--run", default="simclr-small", help="embeddings name (and model run unless --model-run)")
    e.add_argument("--model-run", help="trained model to use (default: --run)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--no-normalize", action="store_true", help="keep raw features instead of L2-normalized ones")
    e.add_argument("--device", default="auto")
    e.add_argument("--no-resume", action="store_true", help="recompute every row")
    e.add_argument("--whiten", type=float, metavar="SHRINK", nargs="?", const=WHITEN_SHRINK,
                   help="also store the run PCA-whitened on the pool's own statistics as <run>-w<SHRINK> "
                        "(default shrinkage 0.1): neighbours no longer follow the few dominant directions")
    e.add_argument("--quiet", action="store_true")
    add_scheduler(e, "the embedding (shards of chips on the workers, into embeddings/<run>.zarr; --device is "
                     "then the workers' choice)")
    e.set_defaults(func=_embed)


def _read_ids(path: str):
    import numpy as np

    from ..errors import CuratorError

    try:
        if path.endswith(".npy"):
            return np.load(path).astype(np.int64).ravel()
        return np.array([int(t) for t in open(path).read().split()], dtype=np.int64)
    except (OSError, ValueError) as e:
        raise CuratorError(f"cannot read chip ids from {path} ({e})", "give a .npy array or a text file of integers") from None


def _train(args: argparse.Namespace) -> int:
    from ..train import train_ssl
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    info = train_ssl(ws, run=args.run, method=args.method, backbone=args.backbone, image_size=args.image_size,
                     epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                     warmup=args.warmup, accumulate=args.accumulate,
                     ids=_read_ids(args.ids) if args.ids else None, device=args.device, amp=not args.no_amp,
                     channels_last=not args.no_channels_last, compile=args.compile, seed=args.seed,
                     weights=args.weights, resume=not args.no_resume, knn=not args.no_knn, progress=not args.quiet,
                     max_steps=args.max_steps, max_seconds=args.max_seconds)
    if info["skipped"]:
        print(f"run {args.run} already trained for {info['epoch']} epochs (use --epochs N to continue, --no-resume to redo)")
    shown = {k: v for k, v in info.items() if k != "history"}
    print(json.dumps(shown, indent=2))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from ..embed import embed, embedding_info
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    client = client_of(args)
    if client:
        from ..cluster_embed import cluster_embed

        path = cluster_embed(ws, args.run, model_run=args.model_run, client=client, batch_size=args.batch_size,
                             normalize=not args.no_normalize, resume=not args.no_resume, progress=not args.quiet)
    else:
        path = embed(ws, args.run, model_run=args.model_run, batch_size=args.batch_size,
                     normalize=not args.no_normalize, device=args.device, resume=not args.no_resume,
                     progress=not args.quiet)
    print(f"wrote {path}")
    print(json.dumps(embedding_info(ws, args.run), indent=2))
    if args.whiten is not None:
        from ..whitening import whiten_run

        out = whiten_run(ws, args.run, shrink=args.whiten, progress=not args.quiet)
        print(f"wrote {ws.embeddings_path(out)} (run {out!r}: whitened, shrinkage {args.whiten:g})")
    return 0
