"""Cloud-free composites of one place seen on several dates, with the date each pixel came from.

Three per-pixel rules: `subtract` (the Curator paper's image subtraction: walk the days and
replace a pixel when another day is clearly darker there), `darkest` (the darkest valid day;
fooled by cloud shadows) and `median` (the median-brightness day among the pixels the cloud
mask calls clear; the darkest valid day where every day is cloudy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import CuratorError
from ..sources.quality import _max_min, _rgb, nodata_mask
from .clouds import detect_clouds

COMPOSITE_METHODS = ("median", "darkest", "subtract")
NO_DATE = -1  # provenance of a pixel no date had data for


@dataclass
class Composite:
    """The composite image and, per pixel, the index of the date it came from (NO_DATE: none)."""

    image: np.ndarray
    provenance: np.ndarray

    def share(self, n_dates: int) -> np.ndarray:
        """Fraction of pixels taken from each date."""
        counts = np.bincount(self.provenance[self.provenance >= 0].ravel(), minlength=n_dates)
        return counts / max(1, self.provenance.size)


def as_stack(images: Sequence[np.ndarray] | np.ndarray, what: str = "images") -> np.ndarray:
    """Validate dated views of one place as a [T, H, W, 3] uint8 stack (two or more, one grid)."""
    arrays = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
    if len(arrays) < 2:
        raise CuratorError(f"a composite needs two or more dates, got {len(arrays)} {what}",
                           "download more dates of the same region (e.g. `curator gibs download --dates START END`)")
    shapes = {np.asarray(a).shape for a in arrays}
    if len(shapes) > 1:
        raise CuratorError(f"the {what} are on mismatched grids: shapes {sorted(shapes)}",
                           "cut every date with the same level, chip size and region so the pixels line up")
    return np.stack([_rgb(a) for a in arrays])


def composite(images: Sequence[np.ndarray] | np.ndarray, method: str = "median", *,
              clouds: np.ndarray | None = None, cloud_method: str = "hysteresis",
              threshold: float = 0.08, device: str | None = None) -> Composite:
    """Composite dated views of one place ([T, H, W, 3] uint8, same grid) into one clear image.

    No-data (black swath gaps) is never chosen while any date has data. `clouds` ([T, H, W] bool)
    overrides the cloud masks the median rule computes; `threshold` is the brightness drop
    (share of full scale) at which `subtract` replaces a pixel. `device` ("cuda", "cpu", "auto")
    picks each pixel's date with torch on that device (a region mosaic is large); None: numpy.
    """
    if method not in COMPOSITE_METHODS:
        raise CuratorError(f"unknown composite method {method!r}", f"use one of {', '.join(COMPOSITE_METHODS)}")
    stack = as_stack(images)
    t = len(stack)
    mx = np.stack([_max_min(a)[0] for a in stack])
    valid = ~np.stack([nodata_mask(a, _mx=m) for a, m in zip(stack, mx)])
    bright = stack.astype(np.int16).sum(-1)  # 0..765
    big = np.int16(32000)
    if method == "median":
        if clouds is None:
            clouds = np.stack([detect_clouds(a, cloud_method) for a in stack])
        elif np.shape(clouds) != stack.shape[:3]:
            raise CuratorError(f"cloud masks have shape {np.shape(clouds)}, the stack {stack.shape[:3]}",
                               "pass one HxW boolean mask per date")
    if device is not None:
        idx = _pick_torch(valid, bright, None if clouds is None else np.asarray(clouds, bool), method, threshold,
                          device)
    elif method == "darkest":
        idx = np.where(valid, bright, big).argmin(0)
    elif method == "subtract":
        idx = np.zeros(stack.shape[1:3], np.int64)
        cur = np.where(valid[0], bright[0], big)
        step = int(round(threshold * 765))
        for d in range(1, t):
            take = valid[d] & ((cur - bright[d] > step) | (cur == big))
            idx[take] = d
            cur = np.where(take, bright[d], cur)
    else:
        clear = valid & ~np.asarray(clouds, bool)
        order = np.argsort(np.where(clear, bright, big), axis=0, kind="stable")
        n_clear = clear.sum(0)
        pick = np.take_along_axis(order, np.maximum(n_clear - 1, 0)[None] // 2, 0)[0]
        darkest = np.where(valid, bright, big).argmin(0)
        idx = np.where(n_clear > 0, pick, darkest)
    any_valid = valid.any(0)
    image = np.take_along_axis(stack, idx[None, :, :, None], 0)[0]
    image[~any_valid] = 0
    prov = np.where(any_valid, idx, NO_DATE).astype(np.int16)
    return Composite(image, prov)


def _pick_torch(valid: np.ndarray, bright: np.ndarray, clouds: np.ndarray | None, method: str, threshold: float,
                device: str) -> np.ndarray:
    """The per-pixel date of `composite`'s rules, computed with torch on `device` (the GPU twin of the numpy
    code above, which CI compares it with on the CPU)."""
    import torch

    from ..models import resolve_device

    dev = resolve_device(device)
    v = torch.from_numpy(valid).to(dev)
    b = torch.from_numpy(bright).to(dev, torch.int32)
    big = torch.tensor(32000, dtype=torch.int32, device=dev)
    masked = torch.where(v, b, big)
    if method == "darkest":
        idx = masked.argmin(0)
    elif method == "subtract":
        idx = torch.zeros(b.shape[1:], dtype=torch.int64, device=dev)
        cur = masked[0].clone()
        step = int(round(threshold * 765))
        for d in range(1, b.shape[0]):
            take = v[d] & ((cur - b[d] > step) | (cur == big))
            idx[take] = d
            cur = torch.where(take, b[d], cur)
    else:
        clear = v & ~torch.from_numpy(clouds).to(dev)
        order = torch.sort(torch.where(clear, b, big), dim=0, stable=True).indices
        n_clear = clear.sum(0)
        pick = torch.gather(order, 0, (torch.clamp(n_clear - 1, min=0) // 2)[None])[0]
        idx = torch.where(n_clear > 0, pick, masked.argmin(0))
    return idx.cpu().numpy()


def psnr(image: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (8-bit), over `mask` pixels when given."""
    err = (np.asarray(image, np.float64) - np.asarray(truth, np.float64)) ** 2
    if mask is not None:
        err = err[np.asarray(mask, bool)]
    mse = float(err.mean()) if err.size else 0.0
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def mae(image: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error per channel value (0..255)."""
    return float(np.abs(np.asarray(image, np.float64) - np.asarray(truth, np.float64)).mean())
