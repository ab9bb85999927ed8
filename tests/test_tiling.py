import numpy as np
import pytest

from curator_widgets import BBox, CuratorError
from curator_widgets.sources.geogrid import region_pixels
from curator_widgets.sources.tiling import cut, grid_windows


def test_no_overlap_exact_fit():
    w = grid_windows(128, 256, 64)
    assert len(w) == 2 * 4
    assert {(x.row, x.col) for x in w} == {(r, c) for r in (0, 64) for c in (0, 64, 128, 192)}


def test_overlap_stride():
    w = grid_windows(64, 160, 64, overlap=0.5, boundary="discard")
    assert [x.col for x in w] == [0, 32, 64, 96]
    w = grid_windows(64, 160, 64, overlap=0.5, boundary="shift")
    assert [x.col for x in w] == [0, 32, 64, 96]  # 96+64 = 160 fits exactly


def test_boundary_modes():
    assert [x.col for x in grid_windows(64, 150, 64, boundary="discard")] == [0, 64]
    assert [x.col for x in grid_windows(64, 150, 64, boundary="shift")] == [0, 64, 86]
    part = grid_windows(64, 150, 64, boundary="partial")
    assert [x.col for x in part] == [0, 64, 128] and part[-1].width == 22
    img = np.ones((64, 150, 3), np.uint8)
    chip = cut(img, part[-1], 64)
    assert chip.shape == (64, 64, 3) and chip[:, :22].all() and not chip[:, 22:].any()


def test_chip_larger_than_region_is_a_clear_error():
    with pytest.raises(CuratorError, match="larger than the region") as e:
        grid_windows(50, 500, 64)
    assert "smaller chip size" in str(e.value)


@pytest.mark.parametrize("kw,msg", [({"overlap": 1.0}, "overlap"), ({"boundary": "wrap"}, "boundary"),
                                    ({"size": 3}, "too small")])
def test_bad_tiling_parameters(kw, msg):
    args = {"height": 100, "width": 100, "size": 32, **kw}
    with pytest.raises(CuratorError, match=msg):
        grid_windows(**args)


def test_antimeridian_region_is_contiguous():
    ps = 0.5
    pr = region_pixels(BBox(170, -10, -170, 10), ps)
    assert pr.width == 40 and pr.height == 40
    cols = pr.columns()
    assert cols[0] == 700 and cols[19] == 719 and cols[20] == 0 and cols[-1] == 19
    win = grid_windows(pr.height, pr.width, 20)
    bboxes = [pr.window_bbox(w) for w in win]
    assert (170.0, -0.0, 180.0, 10.0) in [tuple(round(v, 6) + 0.0 for v in b) for b in bboxes]
    assert any(b[0] == -180.0 for b in bboxes)


@pytest.mark.parametrize("bbox,msg", [((0, 10, 5, 5), "south=10"), ((0, 0, 200, 5), "east=200"),
                                      ((0, -95, 5, 5), "south=-95"), ((5, 0, 5, 1), "zero width")])
def test_bad_bbox_messages(bbox, msg):
    with pytest.raises(CuratorError, match=msg):
        BBox(*bbox)


def test_bbox_parsing_and_split():
    b = BBox.coerce("170,-5,-170,5")
    assert b.crosses_antimeridian and b.width == 20
    assert [x.as_tuple() for x in b.split()] == [(170, -5, 180, 5), (-180, -5, -170, 5)]
    assert b.contains(179, 0) and b.contains(-175, 0) and not b.contains(0, 0)
    with pytest.raises(CuratorError, match="4 numbers"):
        BBox.coerce([1, 2, 3])
    with pytest.raises(CuratorError, match="not four numbers"):
        BBox.coerce("a,b,c,d")


def test_a_box_inside_a_downloaded_region_adds_no_overlapping_chips(tmp_path):
    """Issue 16 bug 7: chips sit on the tile matrix's grid, so the same place is the same chip id."""
    from curator_widgets import BlueMarbleSource, Workspace

    ws = Workspace.create(tmp_path / "ws")
    first = ws.ingest(BlueMarbleSource(level=1), region=(-30, 0, 30, 40), size=64, progress=False)
    inner = ws.ingest(BlueMarbleSource(level=1), region=(-12.3, 6.9, 13.1, 33.2), size=64, progress=False)
    assert first.added > 0 and inner.added == 0 and inner.existing > 0, (first, inner)
    west = ws.manifest["west"].to_numpy()
    step = 64 * BlueMarbleSource(level=1).pixel_size
    assert np.allclose(((west + 180) / step) % 1, 0) or np.allclose(((west + 180) / step) % 1, 1)
