"""Reading and writing chip images as uint8 RGB arrays, with errors that name the file."""

from __future__ import annotations

import io
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import write_bytes
from .errors import CuratorError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")
# thumbnails decode at most this many pixels (after JPEG draft scaling): a 4096 x 4096 image is
# ~64 MB while decoding, where Pillow's own bomb limit (179 MP) would allow ~0.7 GB per request
THUMB_MAX_PIXELS = 4096 * 4096


class ImageTooLarge(CuratorError):
    """An image over a pixel cap, or a decompression bomb (Pillow's limit): refused before decoding."""


def to_rgb(img: Image.Image) -> np.ndarray:
    """PIL image -> HxWx3 uint8, compositing alpha over black so no-data stays black."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike, fit: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file; a corrupt, truncated or decompression-bomb file raises CuratorError naming it.

    `fit`: the caller only needs about `fit` px per side, so JPEGs decode at 1/2..1/8 scale.
    `max_pixels`: refuse (from the header, before any decoding) images larger than this.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if fit:
                img.draft("RGB", (fit, fit))  # JPEG only: DCT scaling, a fraction of the memory
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageTooLarge(f"image {path} is too large to decode here ({w} x {h} px, more than "
                                   f"{max_pixels:,} pixels)", "cut it into chips with an ingest (size=256)")
            with DECODES.take(w * h * 4):  # decode + RGB copy
                img.load()
                return to_rgb(img)
    except FileNotFoundError:
        raise CuratorError(f"image not found: {path}", "check the path; chips must stay where the manifest says") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"image {path} is a decompression bomb or far too large to decode ({e})",
                           "remove it, or cut it with a tool that tiles large rasters") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as e:
        if isinstance(e, CuratorError):
            raise
        raise CuratorError(f"cannot decode image {path}: {e}",
                           "the file is corrupt or not an image; replace or remove it") from None


class DecodeBudget:
    """Bounds the bytes being decoded at once across threads, so concurrent requests cannot
    multiply peak memory (a count semaphore cannot: one image may be 1 KB or 700 MB)."""

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def take(self, nbytes: int) -> Iterator[None]:
        n = min(int(nbytes), self.limit)  # one oversized decode still runs, alone
        with self._cond:
            self._cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


def _decode_budget_bytes() -> int:
    """An eighth of physical memory, between 256 MB and 2 GB."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 4 << 30
    return int(min(max(total // 8, 256 << 20), 2 << 30))


DECODES = DecodeBudget(_decode_budget_bytes())


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) read from the header only."""
    with Image.open(path) as img:
        return img.size


def encode(image: np.ndarray, fmt: str = "PNG", quality: int = 92) -> bytes:
    """Encode an HxWx3 uint8 array as PNG or JPEG bytes."""
    buf = io.BytesIO()
    kw = {"quality": quality} if fmt.upper() in ("JPEG", "JPG") else {"optimize": False}
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="JPEG" if fmt.upper() == "JPG" else fmt.upper(), **kw)
    return buf.getvalue()


def write_image(path: str | os.PathLike, image: np.ndarray, fmt: str | None = None, fsync: bool = False) -> None:
    """Write an image atomically (temp + rename); the format follows the extension unless given."""
    path = Path(path)
    fmt = fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    write_bytes(path, encode(image, fmt), fsync=fsync)
