"""Imagery sources behind one interface: `Source.chips(region, dates, size, overlap, boundary)`."""

from .base import Chip, IngestResult, Source, SourceError
from .bluemarble import BlueMarbleSource
from .folder import FolderSource
from .tiling import Window, grid_windows

__all__ = ["Chip", "IngestResult", "Source", "SourceError", "BlueMarbleSource", "FolderSource",
           "Window", "grid_windows"]
