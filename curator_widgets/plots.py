"""Static matplotlib views of chips and of an active loop's learning curve, so papermill outputs and the
docs show what the widgets show.

Figures are built without pyplot: they never depend on (or change) the active backend, and a
notebook cell that ends with one displays it exactly once.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import CuratorError


def chip_grid(ws: Any, ids: Sequence[int] | np.ndarray, captions: Sequence[str] | None = None,
              title: str | None = None, ncols: int = 8, max_chips: int = 48, size: float = 1.6) -> Any:
    """A grid of chip images with their ids (or `captions`), at most `max_chips` of them."""
    from matplotlib.figure import Figure

    ids = [int(i) for i in np.asarray(ids).ravel()[:max_chips]]
    if not ids:
        raise CuratorError("no chips to show", "pass a non-empty list of chip ids")
    if captions is not None and len(captions) < len(ids):
        raise CuratorError(f"{len(ids)} chips but {len(captions)} captions", "pass one caption per chip id")
    ncols = max(1, min(int(ncols), len(ids)))
    nrows = -(-len(ids) // ncols)
    fig = Figure(figsize=(size * ncols, (size + 0.25) * nrows + (0.4 if title else 0)), dpi=90)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for k, (ax, cid) in enumerate(zip(axes, ids)):
        ax.imshow(ws.load_chip(cid), interpolation="nearest")
        ax.set_title(captions[k] if captions is not None else str(cid), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def learning_curve(history: Any, title: str = "", path: Any = None, ax: Any = None) -> Any:
    """An active loop's learning curve from its per-round table (`ActiveLoop.history()`): quality (true or
    held-out F1 / recall / precision) and positives found / left, both against the labelled share."""
    from pathlib import Path

    from matplotlib.figure import Figure

    from .atomic import atomic_path

    h = history
    if h.empty:
        raise CuratorError("no rounds yet, nothing to plot", "call loop.step() first")
    if ax is None:
        fig = Figure(figsize=(10, 3.8))
        axes = np.atleast_1d(fig.subplots(1, 2))
    else:
        axes = np.atleast_1d(ax)
        fig = axes[0].figure
    x = h["labelled_pct"]
    left = axes[0]
    quality = [("true_f1", "-o"), ("true_recall", "-s"), ("true_precision", "-^"), ("true_macro_f1", "-o"),
               ("true_macro_recall", "-s"), ("holdout_f1", "--o"), ("holdout_macro_f1", "--o")]
    for col, style in quality:
        if col in h and h[col].notna().any():
            left.plot(x, h[col], style, label=col.replace("_", " "))
    left.set_xlabel("labelled (% of chips)")
    left.set_ylim(0, 1.02)
    left.set_title(title)
    if left.lines:
        left.legend(loc="lower right", fontsize=8)
    if len(axes) > 1 and "positives_found" in h:
        right = axes[1]
        right.plot(x, h["positives_found"], "-o", label="positives found (labelled)")
        if "estimated_positives_left" in h:
            right.plot(x, h["estimated_positives_left"], "--", label="estimated positives left")
        if "true_positives_left" in h:
            right.plot(x, h["true_positives_left"], ":", label="true positives left")
        right.set_xlabel("labelled (% of chips)")
        right.legend(fontsize=8)
    per_class = [c for c in h.columns if c.startswith("true_recall_")]
    if len(axes) > 1 and "positives_found" not in h and per_class:  # multi-class: recall of each class
        right = axes[1]
        for col in per_class:
            right.plot(x, h[col], "-o", label=col.replace("true_recall_", "recall "))
        right.set_xlabel("labelled (% of chips)")
        right.set_ylim(0, 1.02)
        right.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    return fig
