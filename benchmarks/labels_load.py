"""Load test of the label store: N annotator processes claim and label chips from one shared queue,
faster than people do, against SQLite and PostgreSQL; PostgreSQL is restarted mid-run.

    python benchmarks/labels_load.py            # 8 annotators, 20 s per backend, 0.05 s think time
    python benchmarks/labels_load.py --quick    # 3 annotators, 6 s (CI smoke run)

Each process loops claim(1) -> add() and logs every acknowledged label (the sequence number `add`
returned) to its own file, flushed at once. Afterwards the store is read back: lost = acknowledged
labels missing from it; double-assigned = chips labelled by more than one person (per_chip = 1).
On a dropped connection a client gets one clear error, calls again, and the store reconnects.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, markdown_table, write_results  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from pg_server import PostgresServer, available  # noqa: E402

CTX = mp.get_context("fork")
SEED = 0


def annotator(where: dict, name: str, until: float, think: float, log: str) -> None:
    """One simulated person: claim a chip, label it, note the acknowledgement, think, repeat."""
    from curator_widgets import CuratorError, LabelStore

    store = LabelStore(**where, annotator=name, n_items=1_000_000, timeout=60)
    errors = 0
    with open(log, "w") as out:
        while time.time() < until:
            try:
                t0 = time.perf_counter()
                ids = store.claim(1)
                if not ids:
                    break
                t1 = time.perf_counter()
                label = "positive" if ids[0] % 3 else "negative"
                seq = store.add(ids[0], label)
                t2 = time.perf_counter()
            except CuratorError:  # e.g. the database restarted under us: call again, the store reconnects
                errors += 1
                time.sleep(0.05)
                continue
            out.write(json.dumps({"seq": seq, "chip": ids[0], "label": label, "claim_ms": (t1 - t0) * 1e3,
                                  "add_ms": (t2 - t1) * 1e3, "t": time.time()}) + "\n")
            out.flush()
            time.sleep(think)
        out.write(json.dumps({"errors": errors}) + "\n")


def run(backend: str, n: int, seconds: float, think: float, chips: int, restart: bool) -> dict:
    from curator_widgets import LabelStore

    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix=f"labels-load-{backend}-"))
    server = PostgresServer().start() if backend == "postgresql" else None
    try:
        where = {"ws_or_path": str(tmp / "l.sqlite"), "url": None} if server is None else \
            {"ws_or_path": None, "url": server.create_database("load")}
        LabelStore(**where, n_items=1_000_000).queue_add(range(chips))
        until = time.time() + seconds
        logs = [str(tmp / f"a{i}.jsonl") for i in range(n)]
        procs = [CTX.Process(target=annotator, args=(where, f"a{i}", until, think, logs[i])) for i in range(n)]
        t_start = time.time()
        for p in procs:
            p.start()
        downtime = None
        if server is not None and restart:
            time.sleep(seconds / 2)
            t = time.perf_counter()
            server.restart()  # every client's connection is closed by the server
            downtime = time.perf_counter() - t
        for p in procs:
            p.join(seconds + 120)
        wall = time.time() - t_start
        acked, errors = [], 0
        for i, log in enumerate(logs):
            for line in Path(log).read_text().splitlines():
                row = json.loads(line)
                if "errors" in row:
                    errors += row["errors"]
                else:
                    acked.append({**row, "annotator": f"a{i}"})
        ev = LabelStore(**where, n_items=1_000_000).events()
        stored = {int(s): (int(c), a, lab) for s, c, a, lab in zip(ev["seq"], ev["chip_id"], ev["annotator"], ev["label"])}
        lost = sum(1 for r in acked if stored.get(r["seq"]) != (r["chip"], r["annotator"], r["label"]))
        per_chip = ev[ev["kind"] == "label"].groupby("chip_id")["annotator"].nunique()
        add = np.array([r["add_ms"] for r in acked])
        both = np.array([r["add_ms"] + r["claim_ms"] for r in acked])
        return {"backend": backend, "annotators": n, "seconds": seconds, "think_s": think, "labels": len(acked),
                "labels_per_s": round(len(acked) / wall, 1), "add_p50_ms": round(float(np.percentile(add, 50)), 2),
                "add_p99_ms": round(float(np.percentile(add, 99)), 2),
                "claim_add_p99_ms": round(float(np.percentile(both, 99)), 2),
                "lost": lost, "double_assigned": int((per_chip > 1).sum()),
                "unacknowledged_in_store": len(ev) - len(acked), "client_errors": errors,
                "restart_s": None if downtime is None else round(downtime, 2)}
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--think", type=float, default=0.05, help="seconds between one person's labels")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--quick", action="store_true", help="3 annotators, 6 s: a smoke run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.annotators, args.seconds = 3, 6.0
    started = time.perf_counter()
    rows = []
    for backend in args.backends.split(","):
        if backend == "postgresql" and available():
            print(f"skipping postgresql: {available()}")
            continue
        chips = int(args.annotators * args.seconds / max(args.think, 0.001) * 2) + 100
        rows.append(run(backend, args.annotators, args.seconds, args.think, chips, restart=True))
    cols = ["backend", "annotators", "labels", "labels_per_s", "add_p50_ms", "add_p99_ms", "claim_add_p99_ms",
            "lost", "double_assigned", "client_errors", "restart_s"]
    print(markdown_table(cols, rows))
    out = Path(args.out) if args.out else RESULTS / ("labels_load_quick.json" if args.quick else "labels_load.json")
    load = [round(x, 1) for x in os.getloadavg()]  # the box is shared: the load says how busy it was
    write_results(out, {"rows": rows, "quick": args.quick, "load_average": load}, seeds=[SEED], started=started)
    print(f"wrote {out}")
    return 0 if all(r["lost"] == 0 and r["double_assigned"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
