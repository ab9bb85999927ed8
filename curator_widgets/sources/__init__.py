"""Imagery sources behind one interface: `Source.chips(region, dates, size, overlap, boundary)`."""

from .base import Chip, IngestResult, Source, SourceError
from .bluemarble import BlueMarbleSource
from .catalog import Catalog, Layer, load_catalog
from .folder import FolderSource
from .gibs import GIBSSource
from .quality import QualityOptions, assess, fill_swath_gaps
from .wmts_server import WMTSServer, serve_bluemarble
from .tiling import Window, grid_windows

__all__ = ["Chip", "IngestResult", "Source", "SourceError", "BlueMarbleSource", "FolderSource",
           "Window", "grid_windows", "GIBSSource", "Catalog", "Layer", "load_catalog", "QualityOptions", "assess",
           "fill_swath_gaps", "WMTSServer", "serve_bluemarble"]
