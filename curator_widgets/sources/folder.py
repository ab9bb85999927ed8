"""Any folder of images; its class subfolders (`root/<class>/...`, images at any depth below) are ground-truth labels."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

from ..bbox import BBox
from ..errors import CuratorError
from ..images import IMAGE_EXTENSIONS, read_image
from .base import Chip, Source
from .tiling import Boundary, cut, grid_windows


PIECE_FILES = 512  # images per piece a Dask worker ingests (a few seconds of decoding each)


class FolderSource(Source):
    """Images under `root`. With `size=None` each image is one chip, used in place (never copied
    or moved); with a size, each image is cut into chips written to the workspace."""

    name = "folder"
    default_size = None  # what Workspace.ingest(size="auto") uses: each image whole, at its own size

    def __init__(self, root: str | os.PathLike, labels: bool = True, recursive: bool = True,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS):
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise CuratorError(f"image folder not found: {self.root}", "pass an existing folder of images")
        self.labels = labels
        self.recursive = recursive
        self.extensions = tuple(e.lower() for e in extensions)

    def describe(self) -> dict:
        return {"source": self.name, "root": str(self.root), "labels": self.labels}

    def files(self) -> list[Path]:
        """Image files under the root in a stable (sorted) order; hidden files skipped."""
        it = self.root.rglob("*") if self.recursive else self.root.iterdir()
        files = sorted(p for p in it if p.is_file() and p.suffix.lower() in self.extensions
                       and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        if not files:
            raise CuratorError(f"no images ({', '.join(self.extensions)}) found under {self.root}",
                               "point FolderSource at a folder that contains image files")
        return files

    def _inside(self, rel: str) -> Path:
        """A piece's relative path as a file under the root (never one outside it)."""
        parts = Path(rel).parts
        path = self.root / rel
        if Path(rel).is_absolute() or ".." in parts or not parts:
            raise CuratorError(f"{rel!r} is not inside the image folder {self.root}",
                               "pass paths relative to the folder, as FolderSource.partitions gives them")
        return path

    def label_of(self, path: Path) -> str | None:
        """The class: the top-level subfolder the image lies under (torchvision's ImageFolder convention), so
        `root/<class>/<any>/<subfolders>/x.png` stays `<class>` and same-named subfolders of two classes never
        merge into one; None for images at the root."""
        if not self.labels:
            return None
        parts = path.relative_to(self.root).parts
        return parts[0] if len(parts) > 1 else None

    def partitions(self, region: BBox | Sequence[float] | None = None,
                   dates: Sequence[str] | str | None = None) -> list[dict]:
        """Groups of PIECE_FILES images in the sorted order `chips` reads them (relative paths)."""
        if region is not None or dates:
            warnings.warn("a folder of images has no georeference: region and dates are ignored", stacklevel=2)
        rel = [p.relative_to(self.root).as_posix() for p in self.files()]
        return [{"files": rel[i:i + PIECE_FILES]} for i in range(0, len(rel), PIECE_FILES)]

    def chips(self, region: BBox | Sequence[float] | None = None, dates: Sequence[str] | str | None = None,
              size: int | None = None, overlap: float = 0.0, boundary: Boundary = "shift",
              files: Sequence[str] | None = None) -> Iterator[Chip]:
        """Yield one chip per image (size=None) or a grid of chips per image; corrupt files are skipped.
        `files` (paths relative to the root, as `partitions` gives them) limits it to those images."""
        if region is not None or dates:
            warnings.warn("a folder of images has no georeference: region and dates are ignored", stacklevel=2)
        paths = self.files() if files is None else [self._inside(f) for f in files]
        for path in paths:
            rel = path.relative_to(self.root).as_posix()
            try:
                image = read_image(path)
            except CuratorError as e:
                self.report(path, e.problem)
                continue
            h, w = image.shape[:2]
            base = {"source": self.name, "layer": None, "date": None, "label": self.label_of(path),
                    "origin": str(path), "flags": []}
            if size is None:
                yield Chip(key=f"{self.name}:{rel}", path=path,
                           meta={**base, "width": w, "height": h, "x0": 0, "y0": 0})
                continue
            try:
                windows = grid_windows(h, w, size, overlap, boundary)
            except CuratorError as e:
                self.report(path, e.problem)
                continue
            for win in windows:
                yield Chip(key=f"{self.name}:{rel}:{size}:{win.row}:{win.col}", image=cut(image, win, size),
                           meta={**base, "width": size, "height": size, "x0": win.col, "y0": win.row,
                                 "flags": ["partial"] if (win.height < size or win.width < size) else []})
