"""Reading and writing chip images as uint8 RGB arrays, with errors that name the file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import write_bytes
from .errors import CuratorError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def to_rgb(img: Image.Image) -> np.ndarray:
    """PIL image -> HxWx3 uint8, compositing alpha over black so no-data stays black."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file fully; a corrupt or truncated file raises CuratorError naming it."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise CuratorError(f"image not found: {path}", "check the path; chips must stay where the manifest says") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CuratorError(f"cannot decode image {path}: {e}",
                           "the file is corrupt or not an image; replace or remove it") from None


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
