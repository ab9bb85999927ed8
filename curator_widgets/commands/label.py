"""`curator label` (a terminal labeler over the queue) and `curator active` (seed set + AL rounds)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from ._cluster import add_scheduler, client_of

HELP_BINARY = "y = {pos}, n = {neg}, u = unsure, s = skip, z/undo = undo last, q = quit"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="label queued chips in the terminal (shows each path, reads y/n/u/undo)",
                       description="Labels go straight into <workspace>/labels.sqlite (one transaction each), "
                                   "so quitting or a crash never loses one. Without --ids it works through the "
                                   "task's queue (seed set, active-learning batches).")
    p.add_argument("--workspace", "-w", required=True)
    p.add_argument("--task", default="default", help="label task (default: 'default')")
    p.add_argument("--labels", help="comma-separated label set for a new task, e.g. forest,river,beach")
    p.add_argument("--annotator", help="who is labelling (default: your user name)")
    p.add_argument("--ids", type=int, nargs="+", help="put these chip ids at the front of the queue first")
    p.add_argument("--limit", type=int, default=None, help="stop after this many labels")
    p.add_argument("--status", action="store_true", help="print counts and the queue length, then exit")
    p.add_argument("--export", metavar="PATH", help="write the curated set to PATH (.csv or .parquet, or a folder "
                                                    "with --format) and exit")
    p.add_argument("--format", choices=["stac", "geo", "hf", "fiftyone", "labelstudio"],
                   help="with --export: a STAC catalog, georeferenced PNGs, a Hugging Face imagefolder, a FiftyOne "
                        "dataset or Label Studio tasks, in the folder PATH")
    p.add_argument("--import", dest="import_path", metavar="PATH",
                   help="record the labels of an export (any --format folder, Label Studio JSON, or a CSV / "
                        "Parquet with id,label) as events with source 'import', then exit")
    p.add_argument("--import-format", choices=["stac", "geo", "hf", "fiftyone", "labelstudio", "csv", "parquet"],
                   help="with --import: the format (default: told from what PATH holds)")
    p.add_argument("--export-tree", metavar="DIR", help="lay the curated set out as DIR/<label>/ links and exit")
    p.add_argument("--mode", choices=["symlink", "copy", "hardlink"], default="symlink", help="for --export-tree")
    p.set_defaults(func=_label)

    a = sub.add_parser("active", help="active learning from a reference chip: seed set, then rounds",
                       description="Builds the seed set (k nearest neighbours of the reference + r random chips) "
                                   "once, then runs rounds: fit a head on the labels, score every chip, queue the "
                                   "next batch. With --oracle-column the rounds are labelled from the manifest "
                                   "(benchmarks, demos); without it, label the queue with `curator label`, then "
                                   "run `curator active` again for the next round.")
    a.add_argument("--workspace", "-w", required=True)
    a.add_argument("--run", required=True, help="embedding run to learn on")
    a.add_argument("--reference", nargs="+", help="reference chip id(s), or the path of an image file")
    a.add_argument("--name", default="default", help="loop name (its state lives in <ws>/active/<name>)")
    a.add_argument("--task", help="label task (default: the loop name)")
    a.add_argument("-k", type=int, default=64, help="nearest neighbours in the seed set (default 64)")
    a.add_argument("-r", type=int, default=32, help="random chips in the seed set (default 32)")
    a.add_argument("--strategy", help="e.g. entropy, margin+coreset, least_confidence+kmeans (default entropy)")
    a.add_argument("--head", choices=["logistic", "mlp"])
    a.add_argument("--batch-size", type=int)
    a.add_argument("--budget", type=float, help="stop at this fraction of chips labelled (default 0.05)")
    a.add_argument("--rounds", type=int, help="run at most this many rounds now (oracle mode)")
    a.add_argument("--max-rounds", type=int, help="stopping rule: total rounds")
    a.add_argument("--holdout", type=float, help="fraction of labels held out for F1 (default 0)")
    a.add_argument("--oracle-column", help="answer from this manifest column instead of a person")
    a.add_argument("--oracle-positive", help="value of the column that means positive")
    a.add_argument("--oracle-min", type=float, help="numeric column: positive when value >= this")
    a.add_argument("--export", metavar="PATH", help="after the rounds, write the ranked predicted-positive set "
                                                    "(.csv or .parquet)")
    a.add_argument("--plot", metavar="PNG", help="write the learning curve")
    a.add_argument("--status", action="store_true", help="print the loop's state and exit")
    add_scheduler(a, "each round's scoring of every chip")
    a.set_defaults(func=_active)


# ----------------------------------------------------------------------------- curator label
def _keymap(store: Any) -> dict[str, Callable[[], str]]:
    """Input word -> label (or a command name): y/n for binary sets, digits and names always."""
    keys: dict[str, Any] = {}
    for i, c in enumerate(store.classes, start=1):
        keys[str(i)] = c
        keys[c.lower()] = c
    if store.binary:
        neg, pos = store.classes
        keys.update({"y": pos, "yes": pos, "p": pos, "n": neg, "no": neg})
    if store.unsure:
        keys.update({"u": "unsure", "?": "unsure", "unsure": "unsure"})
    return keys


def run_terminal_labeler(store: Any, read: Callable[[str], str] | None = None,
                         write: Callable[[str], Any] | None = None, limit: int | None = None) -> int:
    """Work through the store's queue: show each chip's path, read a key, write the label at once."""
    read = read or input  # looked up per call, so a replaced input() (tests, notebooks) is honoured
    write = write or print
    keys = _keymap(store)
    if store.binary:
        help_line = HELP_BINARY.format(pos=store.classes[1], neg=store.classes[0])
    else:
        help_line = ", ".join(f"{i} = {c}" for i, c in enumerate(store.classes, 1)) + \
            ", u = unsure, s = skip, z/undo = undo last, q = quit"
    write(help_line)
    done = 0
    while limit is None or done < limit:
        nxt = store.next_in_queue(1)
        if not nxt:
            write("queue empty: nothing left to label")
            break
        cid = nxt[0]
        store.queue_mark_shown(cid)
        path = store.workspace.chip_path(cid) if store.workspace is not None else "(no workspace)"
        try:
            answer = read(f"[{store.queue_pending()} left] chip {cid}  {path}\n> ").strip().lower()
        except EOFError:
            write("")
            break
        if answer in ("q", "quit", "exit"):
            break
        if answer in ("z", "undo", "b", "back"):
            undone = store.undo(1, session=store.session)
            write(f"undid chip {undone[0]}" if undone else "nothing to undo in this session")
            continue
        if answer in ("s", "skip"):
            store.queue_skip(cid)
            continue
        if answer not in keys:
            write(f"'{answer}' is not a choice: {help_line}")
            continue
        store.add(cid, keys[answer])
        done += 1
    counts = ", ".join(f"{k}={v}" for k, v in store.counts().items())
    write(f"labelled {done} this session; totals: {counts}; {store.queue_pending()} still queued")
    return done


def _label(args: argparse.Namespace) -> int:
    from ..labels import URL_ENV, LabelStore
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    label_set = [s.strip() for s in args.labels.split(",")] if args.labels else None
    if args.status:  # a read: never creates the store or the task
        if not ws.labels_path.exists() and not os.environ.get(URL_ENV):  # no file, no team database
            print(json.dumps({"task": args.task, "counts": {}, "queued": 0}, indent=2))
            return 0
        store = LabelStore(ws, label_set=label_set, task=args.task, annotator=args.annotator, read_only=True)
        print(json.dumps({"task": store.task, "labels": list(store.choices), "counts": store.counts(),
                          "queued": store.queue_pending()}, indent=2))
        return 0
    store = LabelStore(ws, label_set=label_set, task=args.task, annotator=args.annotator)
    if args.import_path:
        from ..exports import import_labels

        n = import_labels(store, args.import_path, format=args.import_format)
        print(f"imported {n} labels from {args.import_path} into task {store.task!r}")
        return 0
    if args.export or args.export_tree:
        if args.export and args.format:
            from ..exports import export_labels

            dest = export_labels(store, args.format, args.export)
            print(f"wrote {len(store.table())} labelled chips as {args.format} to {dest}")
        elif args.export:
            path = store.export(args.export)
            print(f"wrote {len(store.table())} labelled chips to {path}")
        if args.export_tree:
            counts = store.export_tree(args.export_tree, mode=args.mode)
            print(f"exported {sum(counts.values())} chips ({args.mode}) to {args.export_tree}: {counts}")
        return 0
    if args.ids:
        store.queue_add(args.ids, source="cli", front=True)
    run_terminal_labeler(store, limit=args.limit)
    return 0


# ----------------------------------------------------------------------------- curator active
def _active(args: argparse.Namespace) -> int:
    from ..active import ActiveLoop, Oracle
    from ..errors import CuratorError
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    loop = ActiveLoop(ws, args.run, name=args.name, task=args.task, head=args.head, strategy=args.strategy,
                      batch_size=args.batch_size, budget=args.budget, max_rounds=args.max_rounds,
                      holdout=args.holdout, client=False if args.status else client_of(args))
    if args.status:
        print(json.dumps(loop.summary(), indent=2, default=str))
        return 0
    if args.reference:
        ref: Any = args.reference[0] if len(args.reference) == 1 else [int(x) for x in args.reference]
        seeds = loop.seed(ref, k=args.k, r=args.r)
        print(f"seed set: {len(seeds.reference)} reference, {len(seeds.neighbours)} neighbours, "
              f"{len(seeds.random)} random; {loop.store.queue_pending()} chips queued")
    elif loop.state.get("seed_set") is None and not len(loop.store):
        raise CuratorError("this loop has no seed set and no labels yet",
                           "start it with --reference CHIP_ID (or an image file)")
    oracle = None
    if args.oracle_column:
        if args.oracle_min is not None:
            oracle = Oracle(ws, column=args.oracle_column, positive=lambda v, m=args.oracle_min: float(v) >= m)
        elif args.oracle_positive is not None:
            oracle = Oracle(ws, column=args.oracle_column, positive=args.oracle_positive)
        else:
            oracle = Oracle(ws, column=args.oracle_column)
    if oracle is None and loop.store.queue_pending():
        print(f"{loop.store.queue_pending()} chips wait for labels: run `curator label -w {args.workspace} "
              f"--task {loop.store.task}`, then `curator active` again for the next round")
        return 0
    rounds = args.rounds if oracle is not None else 1

    def show(res: Any) -> None:
        m = res.metrics
        parts = [f"round {res.round}", f"labelled {m.get('labelled_pct', 0):.2f}%"]
        for key in ("positives_found", "estimated_positives_left", "holdout_f1", "true_recall", "true_f1"):
            if m.get(key) is not None:
                parts.append(f"{key}={m[key]:.3g}" if isinstance(m[key], float) else f"{key}={m[key]}")
        parts.append(f"queued {len(res.batch)}" if res.batch else f"stopped: {res.stopped}")
        print("  ".join(parts))

    loop.run(oracle=oracle, rounds=rounds, callback=show)
    if oracle is None and not loop.stopped:
        print(f"label the new batch: curator label -w {args.workspace} --task {loop.store.task}")
    if args.plot:
        loop.plot(args.plot)
        print(f"learning curve: {args.plot}")
    if args.export:
        from pathlib import Path

        from ..atomic import atomic_path

        df = loop.predicted_positives()
        parquet = Path(args.export).suffix.lower() == ".parquet"
        with atomic_path(args.export) as tmp:
            df.to_parquet(tmp, index=False) if parquet else df.to_csv(tmp, index=False)
        print(f"wrote {len(df)} predicted positives (ranked) to {args.export}")
    return 0
