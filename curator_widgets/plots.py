"""Static matplotlib views of chips, so papermill outputs and the docs show what the widgets show.

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
