"""Property-based tests (hypothesis): no input to the URL parsers, the bbox and date parsers or the
manifest-path containment yields anything but a clear CuratorError or a value inside its bounds."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curator_widgets import CuratorError, Workspace
from curator_widgets.bbox import BBox
from curator_widgets.server import safepath, tiles
from curator_widgets.server.handlers import CHIP_ID

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# path-like text: the characters an attacker would try, and any other unicode
segment = st.one_of(st.sampled_from(["..", ".", "", "~", "%2e%2e", "\\", "\x00", "ws", "projects", ".hidden",
                                     "x" * 300, "²", "C:", "link", "outside"]),
                    st.text(min_size=0, max_size=12))
path_text = st.lists(segment, min_size=1, max_size=5).map("/".join)
integer_text = st.one_of(st.integers(min_value=-10**60, max_value=10**60).map(str),
                         st.text(alphabet="0123456789-+e. ²٣", max_size=50), st.just("9" * 4000))


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    """A server root with a workspace, a hidden workspace, a link out, and a secret outside."""
    base = tmp_path_factory.mktemp("prop")
    root, outside = base / "root", base / "outside"
    Workspace.create(root / "projects" / "ws")
    Workspace.create(root / ".hidden" / "ws")
    Workspace.create(outside / "ws")
    (outside / "secret.png").write_bytes(b"secret")
    os.symlink(outside, root / "link")
    os.symlink(root / "loop", root / "loop")
    return root.resolve(), outside.resolve()


@FAST
@given(key=path_text)
def test_workspace_url_part_never_leaves_the_root(jail, key):
    root, outside = jail
    try:
        got = safepath.resolve_workspace(root, key)
    except CuratorError as e:
        assert str(outside) not in e.problem
        return
    assert got.is_relative_to(root) and got != root
    assert not any(p.startswith(".") for p in got.relative_to(root).parts)


@FAST
@given(path=st.one_of(path_text, path_text.map(lambda p: "/" + p), st.sampled_from(
    ["../outside/secret.png", "link/secret.png", "/etc/passwd", "loop/x", "projects/ws/../../link/ws"])))
def test_manifest_paths_resolve_inside_the_root_or_are_refused(jail, path):
    root, outside = jail
    try:
        got = safepath.contained(root, root / "projects" / "ws" / path if not path.startswith("/") else path)
    except CuratorError as e:
        assert e.status in (403, 404) and str(root) not in e.problem and str(outside) not in e.problem
        return
    assert got.is_relative_to(root) and os.path.realpath(got) == str(got)


@FAST
@given(z=integer_text, row=integer_text, col=integer_text, wrap=st.booleans(),
       names=st.lists(st.text(max_size=8), min_size=4, max_size=4))
def test_tile_urls_parse_or_fail_clearly(z, row, col, wrap, names):
    for source, layer, date, matrix in (("bluemarble", "L", "default", "500m"), tuple(names)):
        try:
            req = tiles.parse_request(source, layer, date, matrix, z, row, col, wrap=wrap)
        except CuratorError:
            continue
        h, w = tiles.world_tiles(req.z)
        assert 0 <= req.z <= tiles.MAX_ZOOM and 0 <= req.row < h
        if not wrap:
            assert 0 <= req.col < w
        else:  # a canonical column: the same pixels, a number numpy can index with
            width = tiles.world_pixels(req.z)[1]
            assert abs(req.col) < 2 * width and (req.col * tiles.TILE) % width == (int(col) * tiles.TILE) % width
        assert "/" not in req.layer + req.matrix + req.date and req.layer not in (".", "..")


@FAST
@given(chip=st.one_of(integer_text, st.text(max_size=30)))
def test_chip_ids_accepted_are_small_ascii_integers(chip):
    if CHIP_ID.fullmatch(chip):
        assert chip.isascii() and 0 <= int(chip) < 2**63


coord = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1000, 1000),
                  st.text(max_size=6))


@FAST
@given(values=st.lists(coord, min_size=0, max_size=6), as_text=st.booleans())
def test_bbox_parses_or_fails_clearly(values, as_text):
    value = ",".join(map(str, values)) if as_text else values
    try:
        box = BBox.coerce(value)
    except CuratorError:
        return
    assert -180 <= box.west <= 180 and -180 <= box.east <= 180 and -90 <= box.south < box.north <= 90
    assert 0 < box.width <= 360


@FAST
@given(lo=st.one_of(st.dates().map(str), st.text(max_size=12)), hi=st.one_of(st.dates().map(str), st.text(max_size=12)))
def test_date_filters_parse_or_fail_clearly(tmp_path_factory, lo, hi):
    from curator_widgets.index import filter_mask

    ws = _dated_ws(tmp_path_factory)
    try:
        mask = filter_mask(ws, {"date": (lo, hi)})
    except CuratorError:
        return
    assert lo[:10] <= hi[:10] and mask.dtype == bool and len(mask) == len(ws)


_WS: dict[str, Workspace] = {}


def _dated_ws(factory) -> Workspace:
    if "ws" not in _WS:
        import numpy as np

        from curator_widgets.sources.base import Chip

        ws = Workspace.create(factory.mktemp("dated") / "ws")
        ws.add_chips((Chip(key=f"d{i}", meta={"source": "t", "date": f"2020-0{i + 1}-15"},
                           image=np.zeros((4, 4, 3), np.uint8)) for i in range(5)), progress=False)
        _WS["ws"] = ws
    return _WS["ws"]
