"""Blank / swath-gap / cloud detection and swath filling on the real 2020-09-27 MODIS mosaic."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curator_widgets.errors import CuratorError
from curator_widgets.images import to_rgb
from curator_widgets.sources.quality import QualityOptions, assess, cloud_mask, fill_swath_gaps, nodata_mask

PS = 360.0 / 3996  # the mosaic's degrees per pixel
# Points inside the black wedges between Terra orbits (found along the equator and 10N, and
# visible in the mosaic): the chips around them must be flagged.
GAP_POINTS = [(6.58, 0.0), (31.35, 0.0), (-42.84, 0.0), (-116.98, 0.0), (8.78, 10.0), (33.51, 10.0)]
# Sahara chips away from the wedges: bright sand, few clouds.
SAHARA = [(20.0, 30.0), (20.0, 25.0), (-5.0, 28.0), (22.0, 20.0), (28.0, 26.0)]


@pytest.fixture(scope="module")
def mosaic(gibs_data) -> np.ndarray:
    with Image.open(gibs_data / "MODIS_Terra_CorrectedReflectance_TrueColor_2020-09-27_global.jpg") as im:
        return np.asarray(im.convert("RGB"))


def chip_at(mosaic: np.ndarray, lon: float, lat: float, size: int = 64) -> np.ndarray:
    """The size x size chip centred on (lon, lat)."""
    r, c = int((90 - lat) / PS) - size // 2, int((lon + 180) / PS) - size // 2
    return mosaic[r:r + size, c:c + size]


def test_chips_over_swath_gaps_are_flagged(mosaic):
    for lon, lat in GAP_POINTS:
        q = assess(chip_at(mosaic, lon, lat))
        assert "swath_gap" in q.flags, (lon, lat, q)
        assert 0.2 < q.nodata_fraction < 0.9


def test_sahara_is_not_cloudy_and_has_no_gap(mosaic):
    fractions = []
    for lon, lat in SAHARA:
        q = assess(chip_at(mosaic, lon, lat))
        assert q.flags == [], (lon, lat, q)
        fractions.append(q.cloud_fraction)
    assert max(fractions) < 0.25 and np.mean(fractions) < 0.1


def test_cloudy_ocean_and_clear_chips(mosaic):
    # the big white cloud band in the southern ocean vs. clear sand
    south = [assess(chip_at(mosaic, lon, -55.0)).cloud_fraction for lon in range(-170, 171, 20)]
    assert np.mean(south) > 0.5
    assert "cloudy" in assess(chip_at(mosaic, -150.0, -55.0)).flags or max(south) > 0.8


def test_polar_night_is_blank(mosaic):
    top = mosaic[:40, 1000:1064]  # the unlit Arctic in late September: all black
    q = assess(top)
    assert q.flags == ["blank"] and q.cloud_fraction is None and q.nodata_fraction == 1.0


def test_transparent_png_tile_is_blank():
    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), (200, 200, 200, 0)).save(buf, "PNG")
    buf.seek(0)
    with Image.open(buf) as im:
        assert assess(to_rgb(im)).flags == ["blank"]


def test_thresholds_are_configurable(mosaic):
    chip = chip_at(mosaic, 6.58, 0.0)
    assert "swath_gap" not in assess(chip, QualityOptions(gap_fraction=0.95)).flags
    assert "blank" in assess(chip, QualityOptions(blank_fraction=0.3)).flags
    with pytest.raises(CuratorError, match="cloudy_fraction=1.5 is outside"):
        QualityOptions(cloudy_fraction=1.5)
    with pytest.raises(CuratorError, match="nodata_threshold=300"):
        QualityOptions(nodata_threshold=300)


@pytest.mark.parametrize("method", ["nearest", "inpaint"])
def test_fill_removes_the_gap_from_valid_neighbours(mosaic, method):
    chip = chip_at(mosaic, 31.35, 0.0)
    gap = nodata_mask(chip)
    filled = fill_swath_gaps(chip, method=method)
    assert filled.shape == chip.shape and filled.dtype == np.uint8
    assert "swath_gap" not in assess(filled).flags
    assert np.array_equal(chip, chip_at(mosaic, 31.35, 0.0))  # input untouched
    # far from the gap nothing changes; inside it the colours come from the surroundings
    from scipy import ndimage

    near = ndimage.binary_dilation(gap, iterations=6)  # the gap, its dark JPEG halo and a margin
    assert np.array_equal(filled[~near], chip[~near])
    changed = (filled != chip).any(axis=2)
    assert changed[gap].all() and not changed[~near].any()
    valid = ~changed
    lo, hi = chip[valid].min(axis=0), chip[valid].max(axis=0)
    assert (filled[changed] >= lo).all() and (filled[changed] <= hi).all()
    assert filled[near].max(axis=1).min() > 24  # no black fringe copied inward


def test_fill_edge_cases():
    black = np.zeros((16, 16, 3), np.uint8)
    assert np.array_equal(fill_swath_gaps(black), black)  # nothing valid to fill from
    img = np.full((16, 16, 3), 120, np.uint8)
    img[4:12, 4:12] = 0
    assert (fill_swath_gaps(img, method="inpaint") == 120).all()
    with pytest.raises(CuratorError, match="unknown swath fill method 'magic'"):
        fill_swath_gaps(img, method="magic")
    with pytest.raises(CuratorError, match="gap mask shape"):
        fill_swath_gaps(img, mask=np.zeros((3, 3), bool))
    with pytest.raises(CuratorError, match="expected an HxWx3 uint8 image"):
        assess(np.zeros((8, 8), np.float32))
    assert cloud_mask(np.full((4, 4, 3), 250, np.uint8)).all()
