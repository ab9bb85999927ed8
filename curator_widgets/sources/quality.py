"""Chip quality: no-data (blank chips, MODIS swath gaps), a cloud-fraction estimate, and gap filling.

MODIS daily mosaics leave black wedges between orbits near the equator; a model trained on
them learns the wedges as a feature (Curator's "Swath Filler"), so chips are flagged and can
be filled from the nearest valid pixel. Clouds are estimated as bright, unsaturated pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import CuratorError

FillMethod = Literal["nearest", "inpaint"]
FILL_METHODS = ("nearest", "inpaint")


@dataclass(frozen=True)
class QualityOptions:
    """Thresholds for the flags; the defaults are tuned on the real 2020-09-27 MODIS mosaic."""

    nodata_threshold: int = 2        # a pixel whose brightest channel is <= this is no-data ...
    min_gap_pixels: int = 32         # ... when it is part of a dark patch at least this big
    blank_fraction: float = 0.98     # no-data share at which a chip is 'blank'
    gap_fraction: float = 0.01       # no-data share at which a (non-blank) chip has a 'swath_gap'
    cloud_brightness: float = 0.65   # cloud pixels: max channel >= this (0..1) ...
    cloud_saturation: float = 0.20   # ... and (max - min) / max <= this
    cloudy_fraction: float = 0.5     # cloud share of valid pixels at which a chip is 'cloudy'

    def __post_init__(self) -> None:
        for name in ("blank_fraction", "gap_fraction", "cloud_brightness", "cloud_saturation", "cloudy_fraction"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise CuratorError(f"quality option {name}={v} is outside [0, 1]", "give it as a fraction, e.g. 0.5")
        if not (0 <= self.nodata_threshold < 255):
            raise CuratorError(f"nodata_threshold={self.nodata_threshold} is outside 0..254",
                               "use a small pixel value such as 2 (MODIS gaps are 0 inside)")
        if self.min_gap_pixels < 1:
            raise CuratorError(f"min_gap_pixels={self.min_gap_pixels} must be at least 1", "use e.g. 32")


@dataclass
class ChipQuality:
    """What `assess` found in one chip."""

    nodata_fraction: float
    cloud_fraction: float | None  # None when the chip has no valid pixel
    flags: list[str] = field(default_factory=list)


def _rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
        raise CuratorError(f"expected an HxWx3 uint8 image, got shape {a.shape} dtype {a.dtype}",
                           "pass chip pixels as returned by read_image / Workspace.load_chip")
    return a[..., :3]


def _max_min(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel brightest and darkest channel (elementwise on channel views: ~5x faster than .max(axis=2))."""
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)


def nodata_mask(image: np.ndarray, threshold: int = 2, min_pixels: int = 32,
                _mx: np.ndarray | None = None) -> np.ndarray:
    """True where the pixel is black no-data (transparent tiles decode to black as well).

    Gaps are 0 inside (JPEG noise stays <= 2), while the darkest real ocean in Blue Marble
    reaches 3-10; dark specks smaller than `min_pixels` connected pixels do not count either.
    """
    mx = _max_min(_rgb(image))[0] if _mx is None else _mx
    dark = mx <= threshold
    if not dark.any() or dark.all() or min_pixels <= 1:
        return dark
    from scipy import ndimage  # lazy: keeps `import curator_widgets` fast

    labels, n = ndimage.label(dark)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def cloud_mask(image: np.ndarray, valid: np.ndarray | None = None, brightness: float = 0.65,
               saturation: float = 0.20, _mxmn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """True for bright, low-saturation pixels (clouds; also snow and ice, which look the same in RGB)."""
    mx, mn = _max_min(_rgb(image)) if _mxmn is None else _mxmn
    bright = mx >= int(round(brightness * 255))
    # (max - min) / max <= saturation, in integers: 1000 * (max - min) <= round(1000 * saturation) * max
    grey = (mx - mn).astype(np.uint32) * 1000 <= int(round(saturation * 1000)) * mx.astype(np.uint32)
    m = bright & grey
    return m if valid is None else m & valid


def assess(image: np.ndarray, options: QualityOptions | None = None) -> ChipQuality:
    """No-data share, cloud share of the valid pixels, and the flags blank / swath_gap / cloudy."""
    o = options or QualityOptions()
    mxmn = _max_min(_rgb(image))
    nodata = nodata_mask(image, o.nodata_threshold, o.min_gap_pixels, _mx=mxmn[0])
    n_nodata = int(nodata.sum())
    frac = n_nodata / nodata.size
    flags: list[str] = []
    if frac >= o.blank_fraction:
        return ChipQuality(frac, None, ["blank"])
    if frac >= o.gap_fraction:
        flags.append("swath_gap")
    cloud = cloud_mask(image, None, o.cloud_brightness, o.cloud_saturation, _mxmn=mxmn)
    if n_nodata:
        cloud &= ~nodata
    cf = float(cloud.sum()) / max(1, nodata.size - n_nodata)
    if cf >= o.cloudy_fraction:
        flags.append("cloudy")
    return ChipQuality(frac, cf, flags)


def fill_swath_gaps(image: np.ndarray, mask: np.ndarray | None = None, method: FillMethod = "nearest",
                    threshold: int = 2, halo: int = 24, grow: int = 1) -> np.ndarray:
    """Fill no-data pixels from the valid ones around them (a copy; the input is untouched).

    `nearest` copies the nearest valid pixel (the Curator paper's Swath Filler); `inpaint` solves
    Laplace's equation over the gap for a smooth blend. The gap is widened to the dark JPEG halo
    along its edge (connected pixels <= `halo`) plus `grow` pixels, so no black fringe is copied
    inward. A chip with no valid pixel is returned as is.
    """
    from scipy import ndimage

    if method not in FILL_METHODS:
        raise CuratorError(f"unknown swath fill method {method!r}", f"use one of {', '.join(FILL_METHODS)}")
    a = _rgb(image)
    m = nodata_mask(a, threshold) if mask is None else np.asarray(mask, bool)
    if m.shape != a.shape[:2]:
        raise CuratorError(f"gap mask shape {m.shape} does not match the image {a.shape[:2]}",
                           "pass a mask with the image's height and width")
    if not m.any():
        return a.copy()
    m = widen_gap(a, m, halo if halo > threshold else 0, grow)
    if m.all():
        return a.copy()
    if method == "nearest":
        idx = ndimage.distance_transform_edt(m, return_distances=False, return_indices=True)
        return a[idx[0], idx[1]]
    return _harmonic_fill(a, m)


def widen_gap(image: np.ndarray, mask: np.ndarray, halo: int = 24, grow: int = 1) -> np.ndarray:
    """The gap plus the dark JPEG halo connected to it (pixels <= `halo`) and `grow` more pixels,
    so a fill never copies the black fringe inward."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    if not m.any():
        return m
    if halo > 0:
        labels, _ = ndimage.label(m | (_max_min(_rgb(image))[0] <= halo))
        touching = np.unique(labels[m])
        m = np.isin(labels, touching[touching > 0])
    return ndimage.binary_dilation(m, iterations=grow) if grow > 0 else m


def _harmonic_fill(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Solve the discrete Laplace equation on the masked pixels with the valid ones as boundary."""
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    h, w = m.shape
    # gap pixels not connected to any valid pixel (whole-chip holes) fall back to nearest fill
    out = a.astype(np.float64)
    unknown = np.flatnonzero(m.ravel())
    index = np.full(h * w, -1, dtype=np.int64)
    index[unknown] = np.arange(unknown.size)
    ys, xs = np.divmod(unknown, w)
    rows, cols, vals = [], [], []
    rhs = np.zeros((unknown.size, 3))
    degree = np.zeros(unknown.size)
    flat = out.reshape(-1, 3)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        degree += inside
        nb = ny[inside] * w + nx[inside]
        src = np.flatnonzero(inside)
        nb_idx = index[nb]
        is_unknown = nb_idx >= 0
        rows.append(src[is_unknown])
        cols.append(nb_idx[is_unknown])
        vals.append(-np.ones(int(is_unknown.sum())))
        np.add.at(rhs, src[~is_unknown], flat[nb[~is_unknown]])
    rows.append(np.arange(unknown.size))
    cols.append(np.arange(unknown.size))
    vals.append(degree)
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(unknown.size, unknown.size)).tocsc()
    try:
        solved = splu(A).solve(rhs)
    except RuntimeError:  # singular: a gap component touches no valid pixel
        idx = ndimage.distance_transform_edt(m, return_distances=False, return_indices=True)
        return a[idx[0], idx[1]]
    flat[unknown] = solved
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
