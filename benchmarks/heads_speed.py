"""How long one active-learning round's head fit takes at 3,000 labels x 768 dims (target: <= 1 s on 2 cores).

A binary logistic head with 3-fold cross-validated calibration is four stacked logistic regressions.
The rows compare the solver the head uses above NEWTON_CG_DIM dims (all four heads by Newton steps
whose systems are solved by conjugate gradients with float32 Hessian-vector products, preconditioned
by one Cholesky factor of the main head's Hessian, reused from the previous fit) with the exact stacked
Newton solver (four float64 dims x dims Hessians per step), on the same data: a fresh fit on 2,936
labels, then the next round's fit on 3,000 (64 labels added), as ActiveLoop and the protocol do
(that is the "warm" row: it reuses the factor, and starts from zero weights). Both wall and process
CPU seconds are reported: on a shared machine the wall time mostly measures the other processes.
Writes benchmarks/results/heads_speed.json.

    python benchmarks/heads_speed.py [--labels 3000] [--dims 768] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402

from curator_widgets import heads  # noqa: E402


def features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 30%-positive class shifted along 50 of d standard-normal dims: overlapping, like frozen embeddings."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    X = (rng.normal(size=(n, d)) + 0.3 * y[:, None] * (np.arange(d) < 50)).astype(np.float32)
    return X, y


def timed_rounds(X: np.ndarray, y: np.ndarray, batch: int, exact: bool) -> tuple[list[dict], np.ndarray]:
    """A fresh fit on all but the last batch, then the next round's fit on all: seconds (wall, CPU) of each."""
    saved = heads.NEWTON_CG_DIM
    heads.NEWTON_CG_DIM = 1 << 30 if exact else saved
    try:
        head = heads.Head("logistic", device="cpu", seed=0)
        rows = []
        for kind, m in (("fresh", len(y) - batch), ("warm", len(y))):
            t, c = time.perf_counter(), time.process_time()
            head.fit(X[:m], y[:m])
            rows.append({"fit": kind, "labels": m, "wall_s": round(time.perf_counter() - t, 3),
                         "cpu_s": round(time.process_time() - c, 3), "temperature": round(head.temperature, 4)})
        return rows, head.predict_proba(X)
    finally:
        heads.NEWTON_CG_DIM = saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=3000)
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="600 labels x 300 dims (a smoke run for the tests)")
    ap.add_argument("--out", default=str(RESULTS / "heads_speed.json"))
    args = ap.parse_args(argv)
    n, d = (600, 300) if args.quick else (args.labels, args.dims)
    X, y = features(n, d, args.seed)
    t0 = time.perf_counter()
    table = []
    probs = {}
    for name, exact in (("newton-pcg (now)", False), ("stacked exact newton (before)", True)):
        rounds, probs[name] = timed_rounds(X, y, args.batch, exact)
        table += [{"solver": name, **r} for r in rounds]
    diff = float(np.abs(probs["newton-pcg (now)"] - probs["stacked exact newton (before)"]).max())
    print(markdown_table(["solver", "fit", "labels", "wall_s", "cpu_s", "temperature"], table,
                         ["solver", "fit", f"labels (x {d} dims)", "wall s", "CPU s", "temperature"]))
    print(f"largest probability difference between the solvers: {diff:.2e}")
    result = {"benchmark": "heads_speed", "quick": args.quick, "labels": n, "dims": d, "batch": args.batch,
              "table": table, "max_probability_difference": diff,
              "load_average": [round(v, 2) for v in os.getloadavg()]}
    write_results(args.out, result, seeds=[args.seed], started=t0)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
