"""curator_widgets: from one reference satellite image to a curated, balanced, labelled dataset.

The kernel API (workspace, sources, training, search, sampling, labels) is importable without
any widget; widgets live in `curator_widgets.widgets` and build on it.
"""

from __future__ import annotations

from .bbox import BBox
from .errors import CuratorError
from .sources import BlueMarbleSource, Chip, FolderSource, Source, grid_windows
from .workspace import Workspace

__all__ = ["BBox", "CuratorError", "BlueMarbleSource", "Chip", "FolderSource", "Source", "grid_windows",
           "Workspace"]
