"""Draw the figures of the docs' concepts page from the package's own code.

    python tools/make_figures.py      # writes docs/images/concepts_diversity.png

The figure is the "Biased Circles" set of *Scalable Data Balancing for Unlabeled Satellite
Imagery*: 10 rings numbered 1 (outer) to 10 (inner), each odd ring holding 8 times the points of
the ring inside it (800 and 100 per pair, 4,500 in all), 500 of them chosen at random or by
`curator_widgets.sampling.farthest_point_sample` (the same set as `benchmarks/circles.py`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "concepts_diversity.png"


def biased_circles(seed: int = 0, rings: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Points on `rings` concentric rings (ring 1 outermost, radius 0.5), the ring number as the class;
    the same set as benchmarks/circles.py."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for ring in range(1, rings + 1):
        n = 800 if ring % 2 == 1 else 100
        radius = 0.05 * (rings + 1 - ring)
        theta = rng.uniform(0, 2 * np.pi, n)
        xs.append(np.stack([0.5 + radius * np.cos(theta), 0.5 + radius * np.sin(theta)], axis=1))
        ys.append(np.full(n, ring))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT, help="PNG to write (default: docs/images/concepts_diversity.png)")
    out = ap.parse_args(argv).out
    sys.path.insert(0, str(ROOT))
    from matplotlib.figure import Figure

    from curator_widgets.balance import class_size_std
    from curator_widgets.sampling import farthest_point_sample, random_sample

    X, y = biased_circles()
    k = 500
    rnd = random_sample(X, k, seed=0)
    fps, _ = farthest_point_sample(X, k, start=0)
    rings = np.arange(1, 11)
    fig = Figure(figsize=(13, 3.6), dpi=100)
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.4]})
    for ax, idx, title in ((axes[0], np.arange(len(X)), f"all {len(X)} points (10 classes)"),
                           (axes[1], rnd, f"{k} at random"), (axes[2], fps, f"{k} by farthest-point sampling")):
        ax.scatter(X[idx, 0], X[idx, 1], c=y[idx], cmap="tab10", s=3 if len(idx) > k else 6, vmin=1, vmax=10)
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.axis("off")
    width = 0.4
    counts_r = [(y[rnd] == r).sum() for r in rings]
    counts_f = [(y[fps] == r).sum() for r in rings]
    axes[3].bar(rings - width / 2, counts_r, width, label=f"random (class-size std {class_size_std(y[rnd], rings.tolist()):.0f})")
    axes[3].bar(rings + width / 2, counts_f, width, label=f"diverse (class-size std {class_size_std(y[fps], rings.tolist()):.0f})")
    axes[3].axhline(k / 10, color="k", lw=0.8, ls=":", label="perfectly balanced")
    axes[3].set(xlabel="ring (class)", ylabel="points selected", xticks=rings, title="points per class in the selection")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
