"""EmbeddingView "similar to selection": the command the toolbar button and the S key invoke
searches the run's index (mean query, or tile votes of one chip) and highlights the results."""

from __future__ import annotations

import numpy as np
import pytest

from curator_widgets import BlueMarbleSource, Workspace
from curator_widgets.errors import CuratorError
from curator_widgets.index import build_index, search
from curator_widgets.widgets import EmbeddingView


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """12 real Blue Marble chips of 64 px with a tiny SSL run, its embeddings and its index."""
    from curator_widgets.embed import embed
    from curator_widgets.train import train_ssl

    ws = Workspace.create(tmp_path_factory.mktemp("similar") / "ws")
    ws.ingest(BlueMarbleSource(level=1), region=(-30, 0, 30, 40), size=64, progress=False)
    train_ssl(ws, run="m", epochs=1, image_size=32, batch_size=8, knn=False, progress=False, workers=0)
    embed(ws, "m", progress=False)
    build_index(ws, "m", progress=False)
    return ws


def test_similar_highlights_the_points_of_the_nearest_chips(trained):
    ws = trained
    n = len(ws)
    view = EmbeddingView(np.random.default_rng(0).random((n, 2)), workspace=ws, search_run="m")
    found = []
    view.on_similar(found.append)
    reply, _ = view.similar({}, [])  # the toolbar button with nothing selected: the error, in the widget
    assert reply["ok"] is False and "nothing is selected" in view.error and not found
    view.select([2, 5])
    reply, _ = view.similar({}, [])
    expected = search(ws, "m", ids=[2, 5], k=view.similar_k)
    assert reply == {"ok": True, "count": len(expected), "shown": len(expected)} and view.error == ""
    assert sorted(view.highlight.tolist()) == sorted(expected.ids.tolist())  # point i is chip i here
    assert not {2, 5} & set(view.highlight.tolist()) and view.selection.tolist() == [2, 5]
    assert len(found) == 1 and found[0].ids.tolist() == expected.ids.tolist()


def test_similar_maps_chip_ids_to_the_points_that_show_them(trained):
    ws = trained
    shown = np.array([7, 3, 9, 0, 3])  # a view of some chips, one of them twice
    view = EmbeddingView(np.random.default_rng(1).random((5, 2)), ids=shown, workspace=ws, search_run="m",
                         similar_k=len(ws))
    view.select([1])  # chip 3
    res = view.similar_to_selection()
    assert 3 not in res.ids and len(res) == len(ws) - 1
    assert view.highlight.tolist() == [0, 2, 3]  # chips 7, 9 and 0; chip 3 is the query


def test_similar_by_tile_votes_of_one_chip_and_clear_errors(trained):
    ws = trained
    view = EmbeddingView(np.random.default_rng(2).random((len(ws), 2)), workspace=ws, search_run="m", similar_tiles=2)
    view.select([4, 6])
    with pytest.raises(CuratorError, match="tile voting searches with one chip"):
        view.similar_to_selection()
    view.select([4])
    res = view.similar_to_selection(k=5)
    assert res.params["grid"] == 2 and 4 not in res.ids and len(res) == 5
    assert sorted(view.highlight.tolist()) == sorted(res.ids.tolist())
    bare = EmbeddingView(np.random.default_rng(3).random((len(ws), 2)))
    bare.select([0])
    reply, _ = bare.similar({}, [])
    assert reply["ok"] is False and "no workspace and search run" in bare.error
    with pytest.raises(Exception, match="similar_tiles must be 0"):
        view.similar_tiles = -1


def test_from_workspace_sets_the_search_run(trained):
    from curator_widgets.projection import project

    ws = trained
    project(ws, "m", method="pca", progress=False)
    view = EmbeddingView.from_workspace(ws, "m", method="pca")
    assert view.search_run == "m"
