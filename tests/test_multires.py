"""Multi-resolution search on real UC Merced images: tile grids, bucket votes, the search option,
the model store per resolution, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import write_embeddings
from curator_widgets import FolderSource, Workspace
from curator_widgets.cli import main
from curator_widgets.errors import CuratorError
from curator_widgets.index import build_index, search
from curator_widgets.multires import (pick_run, register_resolution, resolution_search, resolutions, run_filters,
                                      tile_grid, tile_vote_search, vote)

from test_train import ucm_subset


def raw(images) -> np.ndarray:
    """16x16 area-downsampled RGB: no learning, so the test needs no model."""
    return np.stack([np.asarray(Image.fromarray(np.asarray(a)).resize((16, 16), Image.BOX), np.float32).ravel() / 255
                     for a in images])


@pytest.fixture(scope="module")
def ucm(tmp_path_factory):
    base = tmp_path_factory.mktemp("multires")
    ws = Workspace.create(base / "ws")
    ws.ingest(FolderSource(ucm_subset(base / "ucm", classes=4, per_class=8)), size=None, progress=False)
    write_embeddings(ws, "raw", raw([ws.load_chip(i) for i in range(len(ws))]))
    build_index(ws, "raw", progress=False)
    return ws


def zoomed_out(ws, ids) -> np.ndarray:
    """A 2x zoomed-out context view: four chips side by side, shrunk back to one chip's size."""
    a = [np.asarray(Image.fromarray(ws.load_chip(i)).resize((256, 256))) for i in ids]
    big = np.vstack([np.hstack(a[:2]), np.hstack(a[2:])])
    return np.asarray(Image.fromarray(big).resize((256, 256), Image.BOX))


def test_tile_grid_cuts_rows_then_columns_with_overlap():
    img = np.arange(64 * 96 * 3, dtype=np.uint8).reshape(64, 96, 3)
    tiles = tile_grid(img, 2)
    assert [t.shape for t in tiles] == [(32, 48, 3)] * 4
    assert np.array_equal(tiles[1], img[:32, 48:]) and np.array_equal(tiles[2], img[32:, :48])
    wide = tile_grid(img, 2, overlap=0.5)
    assert wide[0].shape == (40, 60, 3) and wide[3].shape == (40, 60, 3)
    for bad, match in (((img, 0), "positive integer"), ((img, 9), "under 8 px"), ((img[..., 0], 2), "HxWx3")):
        with pytest.raises(CuratorError, match=match):
            tile_grid(*bad)


def test_votes_add_up_per_chip_and_per_group():
    ids = np.array([[5, 7, 9], [7, 5, -1], [7, 2, 3]])
    top, score, hits = vote(ids, k=3)
    assert top.tolist() == [7, 5, 2]
    assert np.allclose(score, [2 / 3 + 1 + 1, 1 + 2 / 3, 2 / 3]) and hits.tolist() == [3, 2, 1]
    groups = np.array(["a", "a", "b", "b", "c", "c", "c", "d", "d", "d"])  # chip -> parent image
    top, score, hits = vote(ids, k=2, groups=groups)
    assert top.tolist() == [7, 5] and np.allclose(score, [8 / 3 + 1 / 3, 5 / 3])  # d: 7 and 9; c: 5


def test_tile_voting_finds_the_chips_inside_a_zoomed_out_query(ucm):
    ws = ucm
    parts = [0, 9, 18, 27]  # one chip of each class
    query = zoomed_out(ws, parts)
    res = tile_vote_search(ws, "raw", query, grid=2, k=4, per_tile=1, embed=raw)
    assert sorted(res.ids.tolist()) == sorted(parts)  # each tile's best match is the chip it shows
    assert (res.rows["hits"] >= 1).all() and res.params["mode"] == "tiles2x2" and res.higher_is_better
    plain = search(ws, "raw", vectors=raw([query]), k=4)
    assert len(set(plain.ids.tolist()) & set(parts)) < 4  # one vector for the whole view misses some
    kept = tile_vote_search(ws, "raw", query, grid=2, k=4, embed=raw, exclude=[0], filters={"label": ["agricultural",
                                                                                                    "airplane"]})
    assert 0 not in kept.ids and set(ws.manifest.loc[kept.ids, "label"]) <= {"agricultural", "airplane"}
    per_class = tile_vote_search(ws, "raw", query, grid=2, k=4, embed=raw, group_by="label")
    assert per_class.rows["label"].nunique() == len(per_class) == 4


def test_model_store_picks_the_run_nearest_the_query_resolution(ucm, tmp_path):
    ws = ucm
    with pytest.raises(CuratorError, match="no run is registered"):
        pick_run(ws, 0.3)
    write_embeddings(ws, "raw-2x", raw([ws.load_chip(i) for i in range(len(ws))]))
    register_resolution(ws, "raw", 0.3)
    register_resolution(ws, "raw-2x", 0.6)
    assert resolutions(ws) == {"raw": 0.3, "raw-2x": 0.6}
    assert pick_run(ws, 0.3) == "raw" and pick_run(ws, 0.5) == "raw-2x" and pick_run(ws, 2.0) == "raw-2x"
    assert pick_run(ws, 0.42) == "raw"  # log scale: 0.42 is 1.40x from 0.3 and 1.43x from 0.6
    with pytest.raises(CuratorError, match="positive number"):
        register_resolution(ws, "raw", -1.0)
    with pytest.raises(CuratorError):
        register_resolution(ws, "never-embedded", 0.3)
    assert main(["multires", "register", "-w", str(ws.root), "--run", "raw", "--gsd", "0.25"]) == 0
    assert resolutions(ws)["raw"] == 0.25


def test_search_option_and_cli_with_a_trained_model(ucm, tmp_path, capsys):
    from curator_widgets.embed import embed
    from curator_widgets.train import train_ssl

    ws = ucm
    train_ssl(ws, run="m", epochs=1, image_size=32, batch_size=16, knn=False, progress=False, workers=0)
    embed(ws, "m", progress=False)
    build_index(ws, "m", progress=False)
    res = search(ws, "m", ids=3, k=5, tiles=2)
    assert 3 not in res.ids and len(res) == 5 and res.params["grid"] == 2
    with pytest.raises(CuratorError, match="one query image"):
        search(ws, "m", ids=[1, 2], k=5, tiles=2)
    with pytest.raises(CuratorError, match="not vectors"):
        search(ws, "m", vectors=np.zeros(4), k=5, tiles=2)
    path = tmp_path / "query.png"
    Image.fromarray(zoomed_out(ws, [1, 10, 19, 28])).save(path)
    assert main(["multires", "vote", "-w", str(ws.root), "--run", "m", "--image", str(path), "-k", "3"]) == 0
    assert "3 chips (run=m" in capsys.readouterr().out
    register_resolution(ws, "m", 0.3)
    picked = resolution_search(ws, str(path), gsd=0.35, k=3)
    assert picked.params["run"] == "m" and picked.params["picked_for_gsd"] == 0.35


def test_model_store_searches_among_the_chips_registered_with_the_picked_run(ucm, tmp_path, capsys):
    ws = ucm
    fine, coarse = np.arange(0, 16), np.arange(16, len(ws))  # two levels of one workspace
    feats = raw([ws.load_chip(i) for i in range(len(ws))])
    write_embeddings(ws, "lvl-fine", feats)
    write_embeddings(ws, "lvl-coarse", feats)
    build_index(ws, "lvl-fine", progress=False)
    build_index(ws, "lvl-coarse", progress=False)
    register_resolution(ws, "lvl-fine", 0.05, filters={"ids": fine})
    register_resolution(ws, "lvl-coarse", 0.1, filters={"ids": coarse.tolist()})
    query = None  # the written runs have no model: query by vector
    kw = {"vectors": feats[3]}
    near_fine = resolution_search(ws, query, gsd=0.05, k=5, **kw)
    assert set(near_fine.ids.tolist()) <= set(fine.tolist()) and near_fine.params["run"] == "lvl-fine"
    near_coarse = resolution_search(ws, query, gsd=0.12, k=5, **kw)
    assert set(near_coarse.ids.tolist()) <= set(coarse.tolist()) and near_coarse.params["run"] == "lvl-coarse"
    narrowed = resolution_search(ws, query, gsd=0.12, k=5, filters={"label": "baseballdiamond"}, **kw)
    assert set(ws.manifest.loc[narrowed.ids, "label"]) == {"baseballdiamond"}
    with pytest.raises(CuratorError, match="already set by run"):
        resolution_search(ws, query, gsd=0.12, k=5, filters={"ids": [1, 2]}, **kw)
    with pytest.raises(CuratorError, match="unknown filter"):
        register_resolution(ws, "lvl-fine", 0.05, filters={"zoom": 2})
    with pytest.raises(CuratorError, match="match no chip"):
        register_resolution(ws, "lvl-fine", 0.05, filters={"label": "no-such-class"})
    assert main(["multires", "register", "-w", str(ws.root), "--run", "lvl-fine", "--gsd", "0.05",
                 "--source", "folder"]) == 0
    assert run_filters(ws, "lvl-fine") == {"source": "folder"}
