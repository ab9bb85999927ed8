"""Embeddings: aligned with manifest ids, float16 memmap + sidecar, resumable by chunks, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import curator_widgets.embed as embed_mod
from curator_widgets import CuratorError, FolderSource, Workspace
from curator_widgets.embed import embed, embed_images, embedding_info, load_embeddings
from curator_widgets.images import write_image
from curator_widgets.sources import Chip
from curator_widgets.train import load_model, train_ssl

from test_train import SIZE, ucm_subset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("emb")
    ws = Workspace.create(base / "ws")
    ws.ingest(FolderSource(ucm_subset(base / "ucm", classes=3, per_class=6)), size=None, progress=False)
    train_ssl(ws, run="m", epochs=1, image_size=SIZE, batch_size=9, knn=False, progress=False, workers=0)
    return ws


def test_embeddings_line_up_with_manifest_ids(trained):
    ws = trained
    path = embed(ws, "m", batch_size=5, chunk_size=7, progress=False)
    X = load_embeddings(ws, "m")
    assert path == ws.embeddings_path("m") and isinstance(X, np.memmap)
    assert X.dtype == np.float16 and X.shape == (len(ws), 256)
    assert np.allclose(np.linalg.norm(X.astype(np.float32), axis=1), 1.0, atol=2e-3)
    model = load_model(ws, "m")
    for i in (0, 7, len(ws) - 1):  # row i is chip id i, embedded like a user's own image would be
        own = embed_images(model, ws.load_chip(i))[0]
        assert np.allclose(X[i].astype(np.float32), own, atol=3e-3)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["run"] == "m" and meta["model_run"] == "m" and meta["count"] == len(ws) and meta["dim"] == 256
    assert meta["normalized"] is True and embedding_info(ws, "m") == meta
    assert ws.meta["embeddings"]["m"]["count"] == len(ws)


def test_unnormalized_and_other_name(trained):
    path = embed(trained, "m-raw", model_run="m", normalize=False, progress=False)
    X = np.asarray(load_embeddings(trained, "m-raw"), dtype=np.float32)
    assert path.name == "m-raw.npy" and not np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-2)
    assert embedding_info(trained, "m-raw")["model_run"] == "m"


def _counting(monkeypatch, fail_on: int | None = None):
    calls = {"n": 0, "rows": 0}
    real = embed_mod.encode

    def wrapped(model, images, **kw):
        calls["n"] += 1
        if fail_on is not None and calls["n"] == fail_on:
            raise KeyboardInterrupt
        calls["rows"] += len(images)
        return real(model, images, **kw)

    monkeypatch.setattr(embed_mod, "encode", wrapped)
    return calls


def test_interrupted_embed_resumes_from_the_last_chunk(trained, monkeypatch):
    ws = trained
    full = np.array(load_embeddings(ws, "m")) if ws.embeddings_path("m").exists() else None
    if full is None:
        embed(ws, "m", progress=False)
        full = np.array(load_embeddings(ws, "m"))
    calls = _counting(monkeypatch, fail_on=3)  # chunks of 6 rows, batches of 3 -> dies in the 2nd chunk
    with pytest.raises(KeyboardInterrupt):
        embed(ws, "again", model_run="m", batch_size=3, chunk_size=6, progress=False)
    assert not ws.embeddings_path("again").exists()  # nothing half-written under the real name
    partial = json.loads((ws.root / "embeddings" / ".again.partial.json").read_text())
    assert partial["rows_done"] == 6
    calls = _counting(monkeypatch)
    embed(ws, "again", model_run="m", batch_size=3, chunk_size=6, progress=False)
    assert calls["rows"] == len(ws) - 6  # only the chunks that were not finished
    assert np.allclose(np.array(load_embeddings(ws, "again"), dtype=np.float32), full.astype(np.float32), atol=2e-3)
    assert not (ws.root / "embeddings" / ".again.partial.json").exists()
    calls = _counting(monkeypatch)
    embed(ws, "again", model_run="m", progress=False)  # up to date: nothing to do
    assert calls["n"] == 0


def test_new_chips_mismatch_then_only_new_rows_are_embedded(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("grow")
    ws = Workspace.create(base / "ws")
    ws.ingest(FolderSource(ucm_subset(base / "ucm", classes=2, per_class=5)), size=None, progress=False)
    train_ssl(ws, run="g", epochs=1, image_size=SIZE, batch_size=5, knn=False, progress=False, workers=0)
    embed(ws, "g", progress=False)
    before = np.array(load_embeddings(ws, "g"))
    rng = np.random.default_rng(0)
    chips = []
    for i in range(3):
        p = base / f"new{i}.png"
        write_image(p, rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        chips.append(Chip(key=f"new:{i}", meta={"source": "test"}, path=p))
    ws.add_chips(chips, progress=False)
    ws = Workspace.open(ws.root)
    with pytest.raises(CuratorError, match=r"have 10 rows but the manifest has 13 chips") as e:
        load_embeddings(ws, "g")
    assert "resume=True computes only the chips added since" in str(e.value)
    calls = _counting(monkeypatch)
    embed(ws, "g", progress=False)
    assert calls["rows"] == 3
    after = load_embeddings(ws, "g")
    assert after.shape == (13, 256) and np.array_equal(np.array(after[:10]), before)


def test_retrained_model_invalidates_embeddings(trained, monkeypatch):
    ws = trained
    embed(ws, "m", progress=False)
    train_ssl(ws, run="m", epochs=2, image_size=SIZE, batch_size=9, knn=False, progress=False, workers=0)
    calls = _counting(monkeypatch)
    embed(ws, "m", progress=False)
    assert calls["rows"] == len(ws)  # a new epoch is a new model: everything is recomputed
    assert embedding_info(ws, "m")["model"].endswith(":2:4")


def test_load_embeddings_errors(trained):
    ws = trained
    with pytest.raises(CuratorError, match=r"no embeddings for run 'ghost'") as e:
        load_embeddings(ws, "ghost")
    assert "curator embed" in str(e.value)
    bad = ws.embeddings_path("broken")
    bad.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CuratorError, match=r"broken\.npy is corrupt"):
        load_embeddings(ws, "broken")
    np.save(ws.embeddings_path("wrongdtype"), np.zeros((len(ws), 4), dtype=np.float32))
    with pytest.raises(CuratorError, match=r"is float32 with shape .* expected float16 \[N, d\]"):
        load_embeddings(ws, "wrongdtype")
    np.save(ws.embeddings_path("wrongdim"), np.zeros((len(ws), 4), dtype=np.float16))
    ws.embeddings_path("wrongdim").with_suffix(".json").write_text(json.dumps({"dim": 8}))
    with pytest.raises(CuratorError, match=r"have 4 dims but their sidecar says 8"):
        load_embeddings(ws, "wrongdim")
    with pytest.raises(CuratorError, match=r"no trained model 'ghost'"):
        embed(ws, "ghost", progress=False)


def test_embed_images_inputs_and_errors(trained, tmp_path):
    model = load_model(trained, "m")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)
    one = embed_images(model, a)
    assert one.shape == (1, 256) and one.dtype == np.float32
    many = embed_images(model, [a, b])
    assert many.shape == (2, 256) and np.allclose(many[0], one[0], atol=1e-5)
    assert np.allclose(embed_images(model, np.stack([a, a])), np.repeat(one, 2, 0), atol=1e-5)
    assert np.allclose(embed_images(model, a.astype(np.float32) / 255), one, atol=1e-5)
    write_image(tmp_path / "q.png", a)
    assert np.allclose(embed_images(model, str(tmp_path / "q.png")), one, atol=1e-5)
    with pytest.raises(CuratorError, match=r"image 0 has shape \(40, 40, 4\), expected HxWx3"):
        embed_images(model, np.zeros((40, 40, 4), dtype=np.uint8))
    with pytest.raises(CuratorError, match=r"image 1 has shape \(40, 40\)"):
        embed_images(model, [a, np.zeros((40, 40), dtype=np.uint8)])
    with pytest.raises(CuratorError, match="embed_images needs an encoder from load_model"):
        embed_images(torch.nn.Linear(3, 3), a)
    with pytest.raises(CuratorError, match="embed_images got no images"):
        embed_images(model, [])


def test_cli_embed(trained, capsys):
    from curator_widgets.cli import main

    assert main(["embed", "-w", str(trained.root), "--run", "cli-emb", "--model-run", "m", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cli-emb.npy" in out and '"count": %d' % len(trained) in out
    assert main(["embed", "-w", str(trained.root), "--run", "nomodel", "--quiet"]) == 2
    assert "no trained model 'nomodel'" in capsys.readouterr().err
    # --whiten also stores the run whitened on the pool's statistics (a second run, the first kept)
    assert main(["embed", "-w", str(trained.root), "--run", "cli-emb", "--model-run", "m", "--whiten", "--quiet"]) == 0
    assert "run 'cli-emb-w0.1'" in capsys.readouterr().out
    from curator_widgets.embed import embedding_info
    assert embedding_info(trained, "cli-emb-w0.1")["whitened_from"] == "cli-emb"
    assert main(["embed", "-w", str(trained.root), "--run", "cli-emb", "--model-run", "m", "--whiten", "0", "--quiet"]) == 2
    assert "shrink=0" in capsys.readouterr().err
