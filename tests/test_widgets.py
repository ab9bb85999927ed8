"""Widget traits, binary serializers (round trip, chunking), comm command handlers, fallbacks.

No browser here: messages from the front end are fed to the handlers the comm would call,
and what the widget sends back is captured from `_send`.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import traitlets
from PIL import Image

from curator_widgets import BlueMarbleSource, CuratorError, Workspace
from curator_widgets.widgets import EmbeddingView, RegionPicker, SampleGallery, SwipeLabeler
from curator_widgets.widgets import _base
from curator_widgets.widgets.serializers import (CHUNK_BYTES, ChunkAssembler, NDArray, array_from_json,
                                                 array_to_json, chunk_count, split_rows)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ws_dir(tmp_path_factory):
    """A small real Blue Marble workspace: 12 chips of 64 px over Africa at level 1."""
    root = tmp_path_factory.mktemp("widgets") / "ws"
    ws = Workspace.create(root)
    ws.ingest(BlueMarbleSource(level=1), region=(-30, 0, 30, 40), size=64, progress=False)
    return root


@pytest.fixture
def ws(ws_dir, tmp_path):
    """A fresh copy per test, so labels written by one test never leak into another."""
    import shutil

    dst = tmp_path / "ws"
    shutil.copytree(ws_dir, dst)
    return Workspace.open(dst)


def capture(widget) -> list[tuple[dict, list]]:
    """Record every comm message the widget sends (state updates and custom messages)."""
    sent: list[tuple[dict, list]] = []
    widget._send = lambda msg, buffers=None: sent.append((msg, list(buffers or [])))
    return sent


def customs(sent):
    return [m["content"] for m, _ in sent if m.get("method") == "custom"]


def updates(sent):
    return [m["state"] for m, _ in sent if m.get("method") == "update"]


# ----------------------------------------------------------------------------- serializers
@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "int8", "uint16", "int16", "uint32", "int32"])
def test_binary_round_trip_every_dtype(dtype):
    arr = (np.arange(60).reshape(20, 3) * 3).astype(dtype)
    wire = array_to_json(arr)
    assert set(wire) == {"dtype", "shape", "view"} and isinstance(wire["view"], memoryview)
    assert wire["shape"] == [20, 3] and wire["dtype"] == dtype
    back = array_from_json(wire)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    back[0, 0] = 1  # writable: users edit selections in place


def test_chunking_splits_whole_rows_and_round_trips():
    xy = np.random.default_rng(0).random((10_000, 2), dtype=np.float32)  # 80 kB
    wire = array_to_json(xy, chunk_bytes=16_000)
    assert "chunks" in wire and "view" not in wire
    assert len(wire["chunks"]) == chunk_count(xy.nbytes, 16_000) == 5
    assert all(len(c) % 8 == 0 and len(c) <= 16_000 for c in wire["chunks"])  # whole [x, y] rows
    assert np.array_equal(array_from_json(wire), xy)
    # the widget's chunk_bytes trait decides for trait serialization
    class W:
        chunk_bytes = 40_000
    assert len(array_to_json(xy, W())["chunks"]) == 2


def test_default_chunk_keeps_browser_messages_under_tornado_limit():
    from curator_widgets.widgets.serializers import WEBSOCKET_MAX_MESSAGE_SIZE

    sel = np.arange(3_000_000, dtype=np.uint32)  # 12 MB: larger than one websocket message may be
    parts = split_rows(sel)
    assert len(parts) == 3 and max(len(p) for p in parts) <= CHUNK_BYTES < WEBSOCKET_MAX_MESSAGE_SIZE


def test_serializer_errors_name_problem_and_fix():
    with pytest.raises(CuratorError, match="dtype int64 cannot be sent") as e:
        array_to_json(np.arange(3, dtype=np.int64))
    assert "astype" in e.value.fix
    with pytest.raises(CuratorError, match="has 8 bytes but float32\\[3\\] needs 12"):
        array_from_json({"dtype": "float32", "shape": [3], "view": memoryview(b"\0" * 8)})
    with pytest.raises(CuratorError, match="malformed"):
        array_from_json({"view": b""})
    assert array_from_json(None) is None and array_to_json(None) is None


def test_chunk_assembler_out_of_order_and_newer_transfer_wins():
    arr = np.arange(1000, dtype=np.uint32)
    parts = split_rows(arr, 1000)  # 250 elements per chunk -> 4 chunks
    asm = ChunkAssembler()
    head = {"dtype": "uint32", "shape": [1000], "count": 4}
    assert asm.add({**head, "seq": 1, "index": 0}, [parts[0]]) is None
    # a newer transfer starts: the old one is dropped, late chunks of seq 1 are ignored
    assert asm.add({**head, "seq": 2, "index": 3}, [parts[3]]) is None
    assert asm.add({**head, "seq": 1, "index": 1}, [parts[1]]) is None
    for i in (1, 0):
        assert asm.add({**head, "seq": 2, "index": i}, [parts[i]]) is None
    out = asm.add({**head, "seq": 2, "index": 2}, [parts[2]])
    assert np.array_equal(out, arr)
    with pytest.raises(CuratorError, match="chunk 5 of 4 is out of range"):
        asm.add({**head, "seq": 3, "index": 5}, [parts[0]])


def test_ndarray_trait_validation():
    class T(traitlets.HasTraits):
        sel = NDArray("uint32", 1)
        xy = NDArray("float32", 2)

    t = T()
    t.sel = [3, 1.0]
    assert t.sel.dtype == np.uint32 and t.sel.tolist() == [3, 1]
    with pytest.raises(traitlets.TraitError, match="non-negative"):
        t.sel = [-1]
    with pytest.raises(traitlets.TraitError, match="needs integers"):
        t.sel = [0.5]
    with pytest.raises(traitlets.TraitError, match="needs a 2-D array"):
        t.xy = [1.0, 2.0]
    with pytest.raises(traitlets.TraitError, match="numeric array"):
        t.sel = ["a"]


# ----------------------------------------------------------------------------- base: fallbacks and URLs
def test_text_fallback_says_what_to_open(ws):
    view = EmbeddingView(np.zeros((3, 2)) + np.arange(3)[:, None])
    data, _ = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    text = data["text/plain"]
    assert text.startswith("EmbeddingView(3 points, 0 selected)")
    assert "JupyterLab" in text and "pip install curator-widgets" in text
    assert "interactive widget" in data["text/html"]


@pytest.mark.parametrize("make, starts", [
    (lambda ws: RegionPicker(ws, bbox=(-10, 0, 10, 20), chip_size=64, level=1), "RegionPicker(layer='BlueMarble_NextGeneration'"),
    (lambda ws: SampleGallery(ws, [0, 1, 2]), "SampleGallery(3 chips"),
    (lambda ws: SwipeLabeler(ws, ids=[0, 1]), "SwipeLabeler("),
])
def test_every_widget_says_what_it_is_without_a_widget_manager(ws, make, starts):
    """nbconvert, GitHub or a terminal show text/plain: the widget's state and where it renders."""
    data, _ = make(ws)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data  # widget front ends still get the view
    first, rest = data["text/plain"].split("\n", 1)
    assert first.startswith(starts)
    assert "cannot display it" in rest and "Jupyter Notebook >= 7" in rest and "Python call" in rest


def test_missing_bundle_renders_an_explanation():
    esm = _base.static_asset("no_such_widget", "js")
    assert isinstance(esm, str) and "npm --prefix js run build" in esm and "export default" in esm
    assert _base.static_asset("no_such_widget", "css") == ""


def test_built_bundles_are_used_when_present():
    for name in ("region_picker", "embedding_view", "gallery", "swipe_labeler"):
        path = _base.STATIC / f"{name}.js"
        if not path.exists():
            pytest.fail(f"{path} missing: run `npm --prefix js ci && npm --prefix js run build` first")
    esm = str(EmbeddingView._esm)  # anywidget's FileContents: the bundle's text
    assert len(esm) > 50_000 and "export" in esm and "bundle static/embedding_view.js is missing" not in esm


def test_workspace_key_follows_the_server_root(ws, monkeypatch, tmp_path):
    monkeypatch.delenv("CURATOR_SERVER_ROOT", raising=False)
    assert _base.workspace_key(ws.root) == ""  # no server extension: comm fallback
    monkeypatch.setenv("CURATOR_SERVER_ROOT", str(ws.root.parent))
    assert _base.workspace_key(ws.root) == "ws"
    assert _base.thumb_traits(ws)["thumb_url"] == "curator/thumbs/ws"
    assert _base.thumb_traits(ws.root) == _base.thumb_traits(str(ws.root)) == _base.thumb_traits(ws)
    monkeypatch.setenv("CURATOR_SERVER_ROOT", str(ws.root))
    assert _base.workspace_key(ws.root) == ""  # the root itself cannot be a URL segment
    monkeypatch.setenv("CURATOR_SERVER_ROOT", str(tmp_path / "elsewhere"))
    assert _base.workspace_key(ws.root) == ""  # outside the server root: never served over HTTP


# ----------------------------------------------------------------------------- EmbeddingView
def test_embedding_view_accepts_plain_numpy_and_normalizes():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(500, 2)) * [100, 10] + [5, -3]
    view = EmbeddingView(xy, color=rng.integers(0, 4, 500))
    assert view.xy.dtype == np.float32 and view.xy.shape == (500, 2)
    assert np.isclose(np.abs(view.xy).max(), 0.95, atol=1e-6)
    assert view.color.dtype == np.uint8 and len(view.palette) == 4 and len(view.legend) == 4
    state = view.get_state()
    assert isinstance(state["xy"]["view"], memoryview) and state["xy"]["dtype"] == "float32"


def test_embedding_view_bad_input_messages():
    with pytest.raises(CuratorError, match=r"\[N, 2\] array, got shape \(5,\)"):
        EmbeddingView(np.zeros(5))
    with pytest.raises(CuratorError, match="1 of 3 points have NaN") as e:
        EmbeddingView(np.array([[0, 0], [1, np.nan], [2, 2]]))
    assert "np.isfinite" in e.value.fix
    view = EmbeddingView(np.random.rand(10, 2))
    with pytest.raises(CuratorError, match="3 color values for 10 points"):
        view.color_by([1, 2, 3])
    with pytest.raises(CuratorError, match="point index 10 is out of range 0..9") as e:
        view.select([2, 10])
    assert "not chip ids" in e.value.fix
    with pytest.raises(CuratorError, match="ids has shape"):
        EmbeddingView(np.random.rand(10, 2), ids=[1, 2])
    with pytest.raises(CuratorError, match="gestures must be one of auto, live, deferred, got 'fast'"):
        EmbeddingView(np.random.rand(10, 2), gestures="fast")
    with pytest.raises(CuratorError, match="slow_frame_ms must be >= 0"):
        view.slow_frame_ms = -1
    assert view.gestures == "auto" and view.slow_frame_ms == 60  # a failed assignment keeps the old value


def test_embedding_view_gesture_modes_sync():
    view = EmbeddingView(np.random.rand(10, 2), gestures="deferred")
    assert view.get_state()["gestures"] == "deferred"
    view.gestures, view.slow_frame_ms = "live", 30
    assert view.get_state()["gestures"] == "live" and view.get_state()["slow_frame_ms"] == 30


def test_color_by_category_and_value():
    view = EmbeddingView(np.random.rand(300, 2))
    view.color_by(["river"] * 100 + ["beach"] * 100 + [None] * 100)
    assert [l[0] for l in view.legend] == ["beach", "river", "(none)"]
    assert view.color[0] == 1 and view.color[150] == 0 and view.color[250] == 2
    scores = np.linspace(0, 1, 300)
    scores[5] = np.nan
    view.color_by(scores)  # > 20 distinct floats: continuous
    assert len(view.palette) == 256 and view.color[5] == 255 and view.color[0] == 0 and view.color[-1] == 254
    with pytest.raises(CuratorError, match="unknown colormap"):
        view.color_by(scores, kind="value", cmap="nope")
    with pytest.raises(CuratorError, match="unknown color kind"):
        view.color_by(scores, kind="rainbow")


def test_color_by_sampling_rank():
    view = EmbeddingView(np.random.rand(10, 2))
    view.color_by_rank([7, 2, 5])
    assert view.color[7] == 0 and view.color[5] == 254 and view.color[0] == 255  # unsampled: grey
    assert view.legend[-1][0] == "not picked" and view.legend_title == "pick order" and view.color_kind == "value"
    with pytest.raises(CuratorError, match="rank indices must be point indices 0..9"):
        view.color_by_rank([10])


def test_lasso_selection_arrives_chunked_without_echo():
    n = 200_000
    view = EmbeddingView(np.random.rand(n, 2))
    sent = capture(view)
    got = []
    view.on_select(got.append)
    sel = np.arange(0, n, 2, dtype=np.uint32)  # 100k selected, 400 kB
    parts = split_rows(sel, 64 * 1024)  # the browser splits at chunk_bytes; small here to force 7 chunks
    for i, p in enumerate(parts):
        view._on_msg(view, {"type": "selection", "seq": 7, "index": i, "count": len(parts),
                            "dtype": "uint32", "shape": [sel.size]}, [p])
    assert np.array_equal(view.selection, sel) and len(got) == 1 and got[0].size == 100_000
    assert customs(sent) == [{"type": "selection-ack", "seq": 7, "count": 100_000}]
    assert not any("selection" in u for u in updates(sent))  # never sent back to the browser
    assert np.array_equal(view.selected_ids, sel.astype(np.int64))


def test_python_selection_and_highlight_sync_to_browser():
    view = EmbeddingView(np.random.rand(50, 2), ids=np.arange(100, 150))
    sent = capture(view)
    view.select([3, 1, 3])
    assert view.selection.tolist() == [1, 3] and view.selected_ids.tolist() == [101, 103]
    state = updates(sent)[-1]
    assert state["selection"]["dtype"] == "uint32" and state["selection"]["shape"] == [2]
    view.highlight_points([7, 8])
    assert updates(sent)[-1]["highlight"]["shape"] == [2]
    view.zoom_to([1, 2])
    assert customs(sent)[-1] == {"type": "zoom", "indices": [1, 2]}


def test_set_points_replaces_data_and_clears_selection():
    view = EmbeddingView(np.random.rand(20, 2), color=np.arange(20) % 3)
    view.select([1, 2])
    view.set_points(np.random.rand(30, 2))
    assert view.n == 30 and view.selection.size == 0 and view.color is None


def test_thumbnail_command_over_the_comm(ws):
    view = EmbeddingView(np.random.rand(len(ws), 2), workspace=ws.root)  # a Workspace, a Path or a str
    reply, bufs = view.thumb({"id": 3, "size": 100}, [])
    assert reply == {"ok": True, "mime": "image/jpeg"}
    img = Image.open(io.BytesIO(bufs[0]))
    assert img.format == "JPEG" and img.size == (64, 64)  # never enlarged past the chip
    bad, none = view.thumb({"id": 999}, [])
    assert bad["ok"] is False and "chip id 999 is not in this workspace" in bad["error"] and none == []
    plain = EmbeddingView(np.random.rand(4, 2))
    reply, _ = plain.thumb({"id": 0}, [])
    assert reply["ok"] is False and "no workspace" in reply["error"]


# ----------------------------------------------------------------------------- SampleGallery
def test_gallery_traits_captions_and_selection(ws):
    from curator_widgets.labels import LabelStore

    LabelStore(ws).add(4, "positive")
    gal = SampleGallery(ws, [4, 5, 6], scores=[0.9, 0.5, 0.1], title="search")
    assert gal.ids.dtype == np.uint32 and gal.ids.tolist() == [4, 5, 6]
    assert gal.captions == ["positive", "", ""] and gal.scores.dtype == np.float32
    got = []
    gal.on_select(got.append)
    # the browser syncs the selection trait as a binary uint32 buffer
    gal.set_state({"selection": {"dtype": "uint32", "shape": [2], "view": memoryview(np.array([4, 6], np.uint32))}})
    assert gal.selected.tolist() == [4, 6] and got[-1].tolist() == [4, 6]
    gal.select([5, 99])
    assert gal.selected.tolist() == [5]
    gal.show([1, 2], captions=["a", "b"], title="two")
    assert gal.selection.size == 0 and gal.captions == ["a", "b"] and gal.title == "two"


def test_views_read_a_team_store_named_by_the_environment(ws, postgres_server, monkeypatch):
    # a workspace whose labels live only in the team's PostgreSQL (no labels.sqlite): captions and hover
    # cards still show them, and no SQLite file is created on the side
    from curator_widgets.labels import URL_ENV, LabelStore

    monkeypatch.setenv(URL_ENV, postgres_server.create_database())
    LabelStore(ws).add(5, "positive")
    assert not ws.labels_path.exists()
    assert SampleGallery(ws, [4, 5]).captions == ["", "positive"]
    store = EmbeddingView(np.zeros((len(ws), 2), np.float32))._hover_store(ws)  # what hover cards read labels from
    assert store is not None and store.current() == {5: "positive"} and not ws.labels_path.exists()


def test_gallery_bad_input_messages(ws):
    with pytest.raises(CuratorError, match=r"chip id 500 is not in this workspace \(ids are 0..11\)"):
        SampleGallery(ws, [1, 500])
    with pytest.raises(CuratorError, match="2 scores for 3 chips"):
        SampleGallery(ws, [1, 2, 3], scores=[1, 2])
    with pytest.raises(CuratorError, match="1 captions for 2 chips"):
        SampleGallery(ws, [1, 2], captions=["x"])
    with pytest.raises(CuratorError, match="captions='nope' is not understood"):
        SampleGallery(ws, [1], captions="nope")


def test_gallery_show_search_result(ws):
    from types import SimpleNamespace

    gal = SampleGallery(ws)
    gal.show_search(SimpleNamespace(ids=np.array([3, 1]), scores=np.array([0.99, 0.5], np.float32)))
    assert gal.ids.tolist() == [3, 1] and gal.title == "2 similar chips"


# ----------------------------------------------------------------------------- SwipeLabeler
def test_labeler_writes_each_decision_immediately(ws):
    from curator_widgets.labels import LabelStore

    lab = SwipeLabeler(ws, ids=[2, 5, 7, 9])
    sent = capture(lab)
    assert lab.upcoming[:4] == [2, 5, 7, 9] and lab.remaining == 4 and lab.classes == ["negative", "positive"]
    lab._on_msg(lab, {"type": "label", "chip_id": 2, "label": "positive"}, [])
    # a second, independent connection sees it at once: nothing waits for a flush or the kernel
    assert LabelStore(ws.root).current() == {2: "positive"}
    lab._on_msg(lab, {"type": "label", "chip_id": 5, "label": "negative"}, [])
    lab._on_msg(lab, {"type": "label", "chip_id": 7, "label": "unsure"}, [])
    assert LabelStore(ws.root).current() == {2: "positive", 5: "negative", 7: "unsure"}
    assert lab.upcoming == [9] and lab.done == 3 and lab.counts == {"negative": 1, "positive": 1, "unsure": 1}
    lab._on_msg(lab, {"type": "undo", "seq": 4, "view": "v1"}, [])
    assert LabelStore(ws.root).current() == {2: "positive", 5: "negative"}
    assert lab.upcoming[0] == 7 and lab.done == 2 and lab.last == {"chip_ids": [7], "action": "undo"}
    # queue and acknowledgement travel in one message, so the view never shows a stale chip
    last = updates(sent)[-1]
    assert last["acks"] == {"v1": 4} and last["upcoming"][0] == 7


def test_labeler_rejects_unknown_label_and_shows_chip_again(ws):
    lab = SwipeLabeler(ws, ids=[1, 2])
    sent = capture(lab)
    lab._on_msg(lab, {"type": "label", "chip_id": 1, "label": "maybe"}, [])
    assert "label 'maybe' is not in the label set" in lab.error and "fix:" in lab.error
    assert {"type": "rejected", "chip_id": 1} in customs(sent)
    assert lab.upcoming[0] == 1 and lab.done == 0
    lab._on_msg(lab, {"type": "label", "chip_id": 1, "label": "positive"}, [])
    assert lab.error == ""


def test_labeler_resumes_after_restart_and_multiclass(ws):
    lab = SwipeLabeler(ws, ids=range(6), label_set=("forest", "river", "beach"), task="landcover")
    assert lab.classes == ["forest", "river", "beach"]
    for name in ("forest", "beach"):
        lab.label(name)
    events = []
    lab.on_label(events.append)
    lab.label("river")
    assert events == [{"chip_id": 2, "label": "river", "action": "label"}]
    del lab  # "the kernel restarts": a new widget on the same workspace resumes the queue
    again = SwipeLabeler(ws, task="landcover")
    assert again.upcoming[:3] == [3, 4, 5] and again.remaining == 3
    assert again.counts["forest"] == 1 and again.counts["beach"] == 1
    assert again.undo() == [2] and again.current == 2  # undo reaches across the restart
    with pytest.raises(CuratorError, match="the labelling queue is empty"):
        empty = SwipeLabeler(ws, task="empty-task")
        empty.label("positive")


# ----------------------------------------------------------------------------- RegionPicker
def test_region_picker_traits_and_grid_preview(ws):
    picker = RegionPicker(ws, bbox=(-30, 0, 30, 40), chip_size=64, level=1)
    assert picker.bbox == [-30.0, 0.0, 30.0, 40.0] and picker.source == "bluemarble"
    assert picker.grid_count == len(ws)  # exactly the chips the ingest cut
    assert len(picker.grid) == picker.grid_count and all(len(g) == 4 for g in picker.grid)
    picker.bbox = [170, -20, -170, 0]  # crosses the antimeridian
    assert picker.region.crosses_antimeridian and picker.grid_count > 0
    deg = 64 * picker.pixel_size()  # the grid grows outward to whole chips on the level's grid
    in_box = [lon >= 170 - deg or lon <= -170 + deg for g in picker.grid for lon in (g[0], g[2])]
    assert all(in_box) and any(g[2] <= -170 + deg for g in picker.grid)  # the short way, across 180
    with pytest.raises(traitlets.TraitError, match="south=10.0 is not below north=5.0"):
        picker.bbox = [0, 10, 5, 5]
    with pytest.raises(traitlets.TraitError, match="level 9 is not served"):
        picker.level = 9
    picker.bbox = [0, 0, 1, 1]  # smaller than one chip: the error shows in the widget
    assert picker.grid_count == 0 and "larger than the region" in picker.error


def test_region_picker_download_shows_progress(ws):
    picker = RegionPicker(ws, bbox=(0, -40, 40, 0), chip_size=64, level=1)
    sent = capture(picker)
    before = len(ws)
    picker._on_msg(picker, {"type": "download"}, [])
    assert picker.progress["state"] == "done" and picker.progress["added"] == picker.grid_count
    assert len(Workspace.open(ws.root)) == before + picker.grid_count
    states = [u["progress"]["state"] for u in updates(sent) if "progress" in u]
    assert states[0] == "running" and states[-1] == "done"
    picker.download()  # resumable: nothing new the second time
    assert picker.progress["added"] == 0 and picker.progress["existing"] == picker.grid_count


def test_region_picker_errors(ws, tmp_path):
    with pytest.raises(CuratorError, match="no workspace to download into"):
        RegionPicker(bbox=(0, 0, 10, 10)).download()
    with pytest.raises(CuratorError, match="no region chosen yet"):
        RegionPicker(ws).download()
    picker = RegionPicker(ws, catalog=tmp_path / "missing.xml")
    picker.layer = "MODIS_Terra_CorrectedReflectance_TrueColor"
    assert "needs the GIBS catalog, which is unavailable" in picker.error
    assert picker.layer == "BlueMarble_NextGeneration"  # the front end is told the real layer


def test_region_picker_layers_from_a_real_capabilities_file(ws):
    from curator_widgets.paths import shared_data_dir

    caps = shared_data_dir() / "gibs" / "wmts_capabilities_geographic_2015.xml"
    picker = RegionPicker(ws, catalog=str(caps))
    hits = picker.find_layers("modis terra true color")
    assert hits and hits[0]["id"] == "MODIS_Terra_CorrectedReflectance_TrueColor"
    assert picker.find_layers("blue marble")[0]["id"] == "BlueMarble_NextGeneration"
    reply, _ = picker.search_layers({"query": "terra reflectance"}, [])
    assert reply["error"] == "" and any(h["source"] == "gibs" for h in reply["layers"])
    picker.layer = "MODIS_Terra_CorrectedReflectance_TrueColor"
    assert picker.source == "gibs" and picker.time_range[0] == "2012-05-08" and picker.date
    assert picker.tile_matrix_set.endswith("250m") and picker.max_level >= 5  # 2015 names it EPSG4326_250m
    picker.date = "1999-01-01"
    assert "outside the time range" in picker.error
    with pytest.raises(CuratorError, match="unknown GIBS layer 'MODIS_Terra_CorrectedReflectance_TrueColour'"):
        picker.set_layer("MODIS_Terra_CorrectedReflectance_TrueColour")


def test_region_layers_without_a_widget():
    """The picker's layer rules as plain functions over a catalog (region_layers.py)."""
    from curator_widgets.paths import shared_data_dir
    from curator_widgets.sources.catalog import load_catalog
    from curator_widgets.widgets.region_layers import check_date, find_layers, layer_info

    info, lay = layer_info("BlueMarble_NextGeneration", None)
    assert lay is None and info["source"] == "bluemarble" and info["time_range"] is None
    with pytest.raises(CuratorError, match="needs the GIBS catalog, which is unavailable: offline"):
        layer_info("MODIS_Terra_CorrectedReflectance_TrueColor", None, "offline")
    assert [h["id"] for h in find_layers("marble", None)] == ["BlueMarble_NextGeneration"]  # no catalog: offline only
    cat = load_catalog(shared_data_dir() / "gibs" / "wmts_capabilities_geographic_2015.xml")
    info, lay = layer_info("MODIS_Terra_CorrectedReflectance_TrueColor", cat, date="2014-06-01")
    assert lay.identifier == "MODIS_Terra_CorrectedReflectance_TrueColor" and info["date"] == "2014-06-01"
    with pytest.raises(CuratorError, match="outside the time range"):
        layer_info("MODIS_Terra_CorrectedReflectance_TrueColor", cat, date="1999-01-01")
    check_date("2014-06-01T00:00:00Z", info["time_range"], "x")  # a timestamp's day is what counts


def test_tile_command_serves_blue_marble_over_the_comm():
    picker = RegionPicker()
    reply, bufs = picker.tile({"source": "bluemarble", "layer": "BlueMarble_NextGeneration", "date": "",
                               "matrix": "500m", "z": 1, "row": 0, "col": -1}, [])
    assert reply["ok"] and Image.open(io.BytesIO(bufs[0])).size == (512, 512)
    reply, bufs = picker.tile({"source": "bluemarble", "layer": "Nope", "date": "", "matrix": "500m",
                               "z": 1, "row": 0, "col": 0}, [])
    assert not reply["ok"] and "serves only BlueMarble_NextGeneration" in reply["error"] and bufs == []


def test_state_is_json_serializable_besides_buffers(ws):
    """Every synced trait must survive the comm's JSON encoder (buffers are split off first)."""
    from ipywidgets.widgets.widget import _remove_buffers

    for w in (RegionPicker(ws, bbox=(0, 0, 20, 20)), EmbeddingView(np.random.rand(5, 2), color=[1, 2, 1, 2, 3]),
              SampleGallery(ws, [1, 2]), SwipeLabeler(ws, ids=[1])):
        state, _, buffers = _remove_buffers(w.get_state())
        json.dumps(state)
