"""Clouds: procedural cloud fields (ground truth for composites and masks) and single-image masks.

The synthetic field is value noise hashed on global pixel coordinates, so tiles cut from the
same date join without seams and a chip's clouds do not depend on how the region was tiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import CuratorError
from ..sources.quality import _max_min, _rgb, cloud_mask, nodata_mask

MASK_METHODS = ("rgb", "hysteresis")
TRUTH_ALPHA = 0.25  # a synthetic pixel counts as cloud (ground truth) when its opacity exceeds this


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """A well-mixed integer hash of lattice points to [0, 1) (a murmur-style finaliser)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
        h ^= np.uint64(salt & 0xFFFFFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
    return (h >> np.uint64(40)).astype(np.float32) / np.float32(2 ** 24)


def value_noise(shape: tuple[int, int], cell: float, salt: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Smooth noise in [0, 1] with features ~`cell` px, defined on global pixel coordinates."""
    y = (np.arange(shape[0], dtype=np.float64) + origin[0]) / cell
    x = (np.arange(shape[1], dtype=np.float64) + origin[1]) / cell
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    ty, tx = y - y0, x - x0
    ty, tx = (ty * ty * (3 - 2 * ty)).astype(np.float32)[:, None], (tx * tx * (3 - 2 * tx)).astype(np.float32)[None, :]
    Y0, X0 = y0[:, None], x0[None, :]
    a, b = _hash01(X0, Y0, salt), _hash01(X0 + 1, Y0, salt)
    c, d = _hash01(X0, Y0 + 1, salt), _hash01(X0 + 1, Y0 + 1, salt)
    return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty


def fractal_noise(shape: tuple[int, int], seed: int, origin: tuple[int, int] = (0, 0), cell: float = 96.0,
                  octaves: int = 5, persistence: float = 0.5) -> np.ndarray:
    """Sum of `octaves` value-noise layers, each twice as fine and `persistence` as strong, in [0, 1]."""
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        out += amp * value_noise(shape, cell / 2 ** o, seed * 1000003 + o, origin)
        total += amp
        amp *= persistence
    return out / total


@lru_cache(maxsize=64)
def _noise_quantile(q: float, cell: float, octaves: int, persistence: float) -> float:
    """The noise level exceeded by a share `q` of pixels, from a fixed reference field (no seams per tile)."""
    ref = fractal_noise((1024, 1024), seed=12345, cell=cell, octaves=octaves, persistence=persistence)
    return float(np.quantile(ref, q))


@dataclass
class CloudyImage:
    """A synthetic cloudy view of a clear image: pixels, cloud opacity (0..1) and shadow strength."""

    image: np.ndarray
    alpha: np.ndarray
    shadow: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """The ground-truth cloud mask: opacity above TRUTH_ALPHA."""
        return self.alpha > TRUTH_ALPHA


def synthetic_clouds(clear: np.ndarray, seed: int, cover: float = 0.4, origin: tuple[int, int] = (0, 0),
                     cell: float = 64.0, softness: float = 0.06, shadow: float = 0.5,
                     shadow_offset: tuple[int, int] = (6, 9)) -> CloudyImage:
    """Clouds over `clear` from fractal noise: about `cover` of the pixels opaque-ish, soft edges,
    brightness texture inside, and a darkened shadow displaced by `shadow_offset` pixels."""
    a = _rgb(clear)
    if not (0.0 <= cover <= 1.0):
        raise CuratorError(f"cloud cover {cover} is outside [0, 1]", "give it as a fraction, e.g. 0.4")
    shape = a.shape[:2]
    t0 = _noise_quantile(1.0 - cover, cell, 5, 0.5) if 0 < cover < 1 else (2.0 if cover == 0 else -1.0)

    def opacity(org: tuple[int, int]) -> np.ndarray:
        n = fractal_noise(shape, seed, org, cell)
        return np.clip((n - t0) / softness + 0.5, 0.0, 1.0)

    alpha = opacity(origin)
    sh = opacity((origin[0] - shadow_offset[0], origin[1] - shadow_offset[1])) * (1 - alpha)
    texture = fractal_noise(shape, seed + 7919, origin, cell / 4, octaves=3)
    cloud_rgb = (225 + 30 * texture)[..., None] * np.array([1.0, 1.0, 1.02], np.float32)
    ground = a.astype(np.float32) * (1 - shadow * sh)[..., None]
    out = ground * (1 - alpha[..., None]) + cloud_rgb * alpha[..., None]
    return CloudyImage(np.clip(np.rint(out), 0, 255).astype(np.uint8), alpha.astype(np.float32),
                       sh.astype(np.float32))


def detect_clouds(image: np.ndarray, method: str = "hysteresis", brightness: float = 0.65, saturation: float = 0.20,
                  weak_brightness: float = 0.45, weak_saturation: float = 0.30) -> np.ndarray:
    """Cloud mask of one image (True = cloud; no-data is never cloud).

    `rgb`: bright and grey pixels (the chip-quality rule). `hysteresis`: those pixels grown into
    connected, less bright and grey ones, which catches thin cloud edges and haze around a core.
    """
    if method not in MASK_METHODS:
        raise CuratorError(f"unknown cloud mask method {method!r}", f"use one of {', '.join(MASK_METHODS)}")
    a = _rgb(image)
    mxmn = _max_min(a)
    valid = ~nodata_mask(a, _mx=mxmn[0])
    strong = cloud_mask(a, valid, brightness, saturation, _mxmn=mxmn)
    if method == "rgb" or not strong.any():
        return strong
    from scipy import ndimage

    weak = cloud_mask(a, valid, weak_brightness, weak_saturation, _mxmn=mxmn) | strong
    labels, _ = ndimage.label(weak)
    keep = np.unique(labels[strong])
    return np.isin(labels, keep[keep > 0])


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    union = int((p | t).sum())
    return 1.0 if union == 0 else float((p & t).sum()) / union
