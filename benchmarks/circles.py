"""Biased Circles ("Scalable Data Balancing for Unlabeled Satellite Imagery", section 3.1).

4500 2-D points on 10 concentric rings around (0.5, 0.5), radii 0.05 .. 0.50, numbered 1 (outer)
to 10 (inner); each odd-numbered ring holds 800 points and each even-numbered ring 100 (8x the ring
just inside it), one class per ring. Per seed: hold out a random 20% test set, select n training
points from the rest at random and by exact farthest-point sampling (`farthest_point_sample`,
random start), train the same classifier on each, and score it on the held-out set. Reports mean
+- std over seeds of the class-balanced accuracy (mean per-ring recall; the paper's metric, see
docs/sampling.md), the plain accuracy on the (biased) held-out set, and the class-size std of each
selection, for n = 500 and larger; plus how many random points it takes to match diverse at 500.

    .venv/bin/python benchmarks/circles.py           # 10 seeds, n = 500 .. 3000 (~1 min)
    .venv/bin/python benchmarks/circles.py --quick   # 2 seeds, n = 500, 750
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_results  # noqa: E402

from curator_widgets.balance import class_size_std  # noqa: E402
from curator_widgets.sampling import farthest_point_sample  # noqa: E402

PUBLISHED = {"random_500": (0.484, 0.003), "diverse_500": (0.906, 0.011), "random_points_to_match": "about 2.5x"}
RINGS = 10


def biased_circles(seed: int, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Ring i (1 = outer, radius 0.5) has 800 points when i is odd, 100 when even; labels are ring numbers."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for ring in range(1, RINGS + 1):
        count = 800 if ring % 2 == 1 else 100
        radius = 0.05 * (RINGS + 1 - ring) + rng.normal(0, noise, count)
        theta = rng.uniform(0, 2 * np.pi, count)
        xs.append(np.c_[0.5 + radius * np.cos(theta), 0.5 + radius * np.sin(theta)])
        ys.append(np.full(count, ring))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def classifiers() -> dict:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    return {"knn5": lambda s: KNeighborsClassifier(5),
            "knn1": lambda s: KNeighborsClassifier(1),
            "tree": lambda s: DecisionTreeClassifier(random_state=s)}


def scores(clf, X, y, train, test) -> tuple[float, float]:
    pred = clf.fit(X[train], y[train]).predict(X[test])
    ok = pred == y[test]
    return float(np.mean([ok[y[test] == c].mean() for c in np.unique(y[test])])), float(ok.mean())


def run(seeds: list[int], sizes: list[int], primary: str, extra: list[str], noise: float) -> dict:
    clfs = classifiers()
    rows: dict[tuple[str, int, str], list[tuple[float, float, float]]] = {}
    for seed in seeds:
        X, y = biased_circles(seed, noise)
        rng = np.random.default_rng(10_000 + seed)
        test = rng.choice(len(X), size=len(X) // 5, replace=False)
        pool = np.setdiff1d(np.arange(len(X)), test)
        start = int(rng.integers(len(pool)))
        fps_order, _ = farthest_point_sample(X[pool], max(sizes), start=start)  # prefixes of one run
        perm = rng.permutation(pool)
        for n in sizes:
            sel = {"random": perm[:n], "diverse": pool[fps_order[:n]]}
            for method, ids in sel.items():
                std = class_size_std(y[ids].tolist(), classes=list(range(1, RINGS + 1)))
                for name in [primary] + (extra if n == sizes[0] else []):
                    bal, acc = scores(clfs[name](seed), X, y, ids, test)
                    rows.setdefault((method, n, name), []).append((bal, acc, std))
    return rows


def summarize(rows: dict, sizes: list[int], primary: str, extra: list[str]) -> dict:
    def stat(method, n, name, col):
        v = np.array([r[col] for r in rows[(method, n, name)]])
        return float(v.mean()), float(v.std())

    table = []
    for n in sizes:
        r_bal, d_bal = stat("random", n, primary, 0), stat("diverse", n, primary, 0)
        r_acc, d_acc = stat("random", n, primary, 1), stat("diverse", n, primary, 1)
        r_std, d_std = stat("random", n, primary, 2), stat("diverse", n, primary, 2)
        table.append({"n": n, "random_acc_mean": r_bal[0], "random_acc_std": r_bal[1],
                      "diverse_acc_mean": d_bal[0], "diverse_acc_std": d_bal[1],
                      "random_plain_acc_mean": r_acc[0], "diverse_plain_acc_mean": d_acc[0],
                      "random_class_std_mean": r_std[0], "random_class_std_std": r_std[1],
                      "diverse_class_std_mean": d_std[0], "diverse_class_std_std": d_std[1]})
    target = table[0]["diverse_acc_mean"]
    match = None
    for a, b in zip(table, table[1:] + [None]):
        if a["random_acc_mean"] >= target:
            match = a["n"]
            break
        if b is not None and b["random_acc_mean"] >= target:  # linear interpolation between sizes
            f = (target - a["random_acc_mean"]) / (b["random_acc_mean"] - a["random_acc_mean"])
            match = a["n"] + f * (b["n"] - a["n"])
            break
    others = {}
    for name in extra:
        others[name] = {m: stat(m, sizes[0], name, 0) for m in ("random", "diverse")}
    return {"table": table, "random_points_to_match_diverse": match,
            "match_ratio": None if match is None else match / sizes[0], "other_classifiers": others}


def plot(res: dict, path: Path, seed: int, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = biased_circles(seed)
    rng = np.random.default_rng(0)
    fps = farthest_point_sample(X, n, start=int(rng.integers(len(X))))[0]
    rnd = rng.choice(len(X), n, replace=False)
    fig, ax = plt.subplots(1, 5, figsize=(22, 4.2))
    for a, ids, title in ((ax[0], np.arange(len(X)), "Biased Circles (4500)"), (ax[1], rnd, f"random {n}"),
                          (ax[2], fps, f"diverse (FPS) {n}")):
        a.scatter(X[ids, 0], X[ids, 1], c=y[ids], cmap="tab10", s=3)
        a.set_title(title)
        a.set_aspect("equal")
        a.set_xticks([])
        a.set_yticks([])
    t = res["table"]
    ns = [r["n"] for r in t]
    for m, c in (("random", "C0"), ("diverse", "C1")):
        ax[3].errorbar(ns, [r[f"{m}_acc_mean"] for r in t], [r[f"{m}_acc_std"] for r in t], label=m, color=c,
                       marker="o", capsize=3)
        ax[4].errorbar(ns, [r[f"{m}_class_std_mean"] for r in t], [r[f"{m}_class_std_std"] for r in t], label=m,
                       color=c, marker="o", capsize=3)
    ax[3].set_title("class-balanced accuracy")
    ax[4].set_title("class-size std of the selection")
    for a in ax[3:]:
        a.set_xlabel("training points")
        a.legend()
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def doc_tables(res: dict) -> dict[str, str]:
    """The tables docs/sampling.md shows (tools/gen_docs.py fills them from the committed JSON)."""
    t = res["table"]
    main = markdown_table(["n", "random", "diverse (FPS)", "class-size std, random", "class-size std, diverse"],
                          ([r["n"], f"{r['random_acc_mean']:.3f} +- {r['random_acc_std']:.3f} ({r['random_plain_acc_mean']:.2f})",
                            f"{r['diverse_acc_mean']:.3f} +- {r['diverse_acc_std']:.3f} ({r['diverse_plain_acc_mean']:.2f})",
                            f"{r['random_class_std_mean']:.1f} +- {r['random_class_std_std']:.1f}",
                            f"{r['diverse_class_std_mean']:.1f} +- {r['diverse_class_std_std']:.1f}"] for r in t))
    n0, m = t[0]["n"], res["random_points_to_match_diverse"]
    lines = [f"Random selection needs **{'more than the largest n' if m is None else f'{m:,.0f} points ({m / n0:.1f}x)'}** "
             f"to match diverse selection at {n0}."]
    names = {"knn1": "1-nearest-neighbour", "tree": "a decision tree", "knn5": "5-nearest-neighbour"}
    others = [f"{names.get(k, k)} {v['random'][0]:.3f} +- {v['random'][1]:.3f} random vs "
              f"**{v['diverse'][0]:.3f} +- {v['diverse'][1]:.3f}** diverse" for k, v in res["other_classifiers"].items()]
    if others:
        lines.append(f"Other classifiers at n = {n0}: " + "; ".join(others) + ".")
    seeds = len(res.get("seeds") or [])
    return {"main": f"Mean +- std over {seeds} seeds (commit `{(res.get('commit') or '?')[:10]}`):\n\n{main}",
            "summary": " ".join(lines)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, sizes 500 and 750")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="*", default=[500, 750, 1000, 1250, 1500, 2000, 2500, 3000])
    ap.add_argument("--classifier", default="knn5", choices=list(classifiers()))
    ap.add_argument("--noise", type=float, default=0.0, help="radial Gaussian noise (default 0: clean rings)")
    ap.add_argument("--out", type=Path, default=RESULTS / "circles.json")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    seeds = list(range(2 if args.quick else args.seeds))
    sizes = [500, 750] if args.quick else sorted(args.sizes)
    extra = [] if args.quick else [c for c in classifiers() if c != args.classifier]
    warnings.filterwarnings("ignore")
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-D points: threads only add synchronisation (and stall on a shared machine)
    t0 = time.perf_counter()
    try:
        with threadpool_limits(1):
            rows = run(seeds, sizes, args.classifier, extra, args.noise)
    finally:
        torch.set_num_threads(threads)
    res = {"benchmark": "circles", "quick": args.quick, "classifier": args.classifier,
           "noise": args.noise, "published": PUBLISHED, **summarize(rows, sizes, args.classifier, extra),
           "seconds": round(time.perf_counter() - t0, 1)}
    print(f"Biased Circles, {len(seeds)} seeds, classifier {args.classifier}; accuracy = mean per-ring recall on a "
          "random 20% held-out set (plain accuracy in brackets)")
    for table in doc_tables(res).values():
        print(table)
    print(f"published: random 0.484 +- 0.003, diverse 0.906 +- 0.011, random needs about 2.5x the points")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        plot(res, args.out.with_suffix(".png"), 0, sizes[0])
        res["plot"] = str(args.out.with_suffix(".png"))
    return write_results(args.out, res, seeds=seeds, started=started)


if __name__ == "__main__":
    main()
