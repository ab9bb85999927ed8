"""CuratorApp wiring over a real Blue Marble workspace: explore -> select -> search -> label -> seed
set -> active-learning round. Embeddings are raw-pixel features written in the agreed format, so
the test needs no SSL training (the train step itself is covered by the training tests)."""

from __future__ import annotations

import json

import ipywidgets as W
import numpy as np
import pytest

from curator_widgets import BlueMarbleSource, CuratorError, Workspace
from curator_widgets.widgets import CuratorApp, EmbeddingView, RegionPicker, SampleGallery, SwipeLabeler


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    ws.ingest(BlueMarbleSource(level=2), region=(-60, -30, 60, 50), size=64, progress=False)
    # raw-pixel features: 8x8 mean colors per chip, L2-normalized (float16 [N, d], row i = chip i)
    feats = np.stack([ws.load_chip(i).reshape(8, 8, 8, 8, 3).mean(axis=(1, 3)).ravel() for i in range(len(ws))])
    feats = feats - feats.mean(axis=0)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-6
    path = ws.embeddings_path("pix")
    np.save(path, feats.astype(np.float16))
    path.with_suffix(".json").write_text(json.dumps({"run": "pix", "dim": feats.shape[1], "count": len(ws),
                                                     "normalized": True, "model_run": None}))
    return ws


def test_app_composes_the_four_widgets(ws):
    app = CuratorApp(ws, run="pix", projection="pca", bbox=(-20, 0, 20, 30))
    assert isinstance(app, W.VBox) and isinstance(app.tabs, W.Tab)
    assert [app.tabs.get_title(i) for i in range(4)] == ["1 Region", "2 Train & embed", "3 Explore", "4 Label"]
    assert isinstance(app.picker, RegionPicker) and isinstance(app.gallery, SampleGallery)
    assert isinstance(app.labeler, SwipeLabeler) and app.view is None
    assert app.picker.bbox == [-20.0, 0.0, 20.0, 30.0]


def test_app_says_what_it_is_without_a_widget_manager(ws):
    """Not ipywidgets' VBox(children=(...)) dump: one line of state, then where to open it."""
    app = CuratorApp(ws, run="pix", projection="pca")
    data = app._repr_mimebundle_()  # ipywidgets: the data dict alone
    assert "application/vnd.jupyter.widget-view+json" in data
    first, rest = data["text/plain"].split("\n", 1)
    assert first == f"CuratorApp(workspace {str(ws.root)!r}, {len(ws)} chips, run 'pix', no projection yet, task 'default')"
    assert "cannot display it" in rest and "VBox" not in data["text/plain"]
    app.explore()
    assert f"{len(ws)} points in the view" in app._repr_mimebundle_()["text/plain"]


def test_explore_select_search_label_and_a_round(ws):
    from curator_widgets.labels import LabelStore

    app = CuratorApp(ws, run="pix", projection="pca", loop_options={"budget": 0.6, "batch_size": 8})
    app.k.value = 12
    view = app.explore()
    assert isinstance(view, EmbeddingView) and view.n == len(ws) and app.tabs.selected_index == 2
    assert "land_fraction" in app.color_by.options
    app.color_by.value = "land_fraction"
    assert len(view.palette) == 256  # continuous coloring

    # a lasso in the browser arrives as a selection; the gallery shows it
    view.select([0, 1, 2])
    assert app.gallery.ids.tolist() == [0, 1, 2] and "3 selected" in app.gallery.title

    res = app.search_selection(k=10)
    assert len(res) == 10 and not set(res.ids.tolist()) & {0, 1, 2}
    assert app.gallery.ids.tolist() == res.ids.tolist() and view.highlight.size == 10

    assert app.label_selection() == 3 and app.labeler.upcoming[:3] == [0, 1, 2] and app.tabs.selected_index == 3
    seed = app.seed_from_selection()
    assert len(seed.ids) > 3 and app.labeler.remaining >= len(seed.ids) - 3

    # label the whole queue as a person would (land = positive), then the next round
    lf = ws.manifest["land_fraction"].to_numpy()
    while app.labeler.current is not None:
        cid = app.labeler.current
        app.labeler.label("positive" if lf[cid] >= 0.5 else "negative")
    assert len(LabelStore(ws).current()) >= len(seed.ids)
    rnd = app.next_round()
    assert rnd.round == 1 and len(rnd.batch) > 0 and app.labeler.remaining == len(rnd.batch)
    assert app.color_by.value == "active score" and len(view.palette) == 256
    assert "round 1" in app.status.value


def test_embedding_view_from_workspace(ws):
    view = EmbeddingView.from_workspace(ws, "pix", color="land_fraction", method="pca")
    assert view.n == len(ws) and len(view.palette) == 256 and view.thumb_url == ""
    assert view.workspace_path == str(ws.root)
    with pytest.raises(CuratorError, match="the manifest has no column 'nope'"):
        EmbeddingView.from_workspace(ws, "pix", color="nope", method="pca")


def test_app_errors_show_in_the_cell(ws, tmp_path):
    app = CuratorApp(ws, run="pix", projection="pca")
    app._action(app.search_selection)
    assert "nothing is selected" in app.status.value and "lasso" in app.status.value
    empty = CuratorApp(tmp_path / "empty", run="pix")
    empty._action(empty.train)
    assert "the workspace has no chips yet" in empty.status.value
    with pytest.raises(CuratorError, match="nothing is selected"):
        app.label_selection()
