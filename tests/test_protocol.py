"""The protocol kernel, label propagation, rotation-averaged embeddings and the `curator protocol` command."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from curator_widgets.errors import CuratorError
from curator_widgets.paths import shared_data_dir
from curator_widgets.propagation import LabelPropagation, affinity, blend, neighbour_graph
from curator_widgets.protocol import (DEFAULT_LOOP, DEFAULT_SSL, SSL_VIEWS_CAP, LoopRecipe, SSLRecipe, at_points,
                                      effort_to_recall, embedding_quality, evaluate, session, split_classes, starters_for, summarize)

ROOT = Path(__file__).resolve().parents[1]


def two_moons(n: int = 400, seed: int = 0, noise: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles: not linearly separable, but each is one chain of neighbours."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    y = (np.arange(n) % 2).astype(np.int64)
    X = np.where(y[:, None] == 0, np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    X = X + noise * rng.normal(size=X.shape)
    return np.c_[X, np.full(n, 5.0)].astype(np.float32), y  # a large constant 3rd dim: cosine ~ Euclidean


# ----------------------------------------------------------------------------- propagation
def test_neighbour_graph_is_the_exact_cosine_knn_without_self():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    ids, sims = neighbour_graph(X, k=5)
    Xu = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xu @ Xu.T
    np.fill_diagonal(S, -np.inf)
    want = np.argsort(-S, axis=1)[:, :5]
    assert (ids != np.arange(200)[:, None]).all()
    assert np.mean(np.sort(ids, 1) == np.sort(want, 1)) > 0.99  # ties aside
    np.testing.assert_allclose(sims[:, 0], S[np.arange(200), want[:, 0]], atol=1e-5)


def test_propagation_follows_a_chain_that_a_linear_head_cannot():
    from curator_widgets.heads import Head

    X, y = two_moons()
    labelled = np.array([np.flatnonzero(y == 0)[0], np.flatnonzero(y == 1)[0]])
    lp = LabelPropagation.from_embeddings(X, k=10)
    pred = lp.predict(labelled, y[labelled]).argmax(1)
    assert np.mean(pred == y) > 0.93  # measured 0.955
    head = Head("logistic", seed=0, device="cpu").fit(X[labelled], y[labelled])
    assert np.mean(head.predict_proba(X).argmax(1) == y) < 0.85  # measured 0.82


def test_background_mass_sends_unreached_chips_to_class_zero():
    rng = np.random.default_rng(2)
    centres = np.eye(4)[:3]  # cluster 0 holds the positive label, 2 the negative one, 1 no label at all
    X = np.vstack([c + 0.05 * rng.normal(size=(50, 4)) for c in centres]).astype(np.float32)
    ids, sims = neighbour_graph(X, k=5)
    S = affinity(ids, sims)
    labelled, y = np.array([0, 100]), np.array([1, 0])
    plain = LabelPropagation(S).predict(labelled, y)
    assert (plain[:50, 1] > 0.99).all() and (plain[100:, 0] > 0.99).all()
    assert np.allclose(plain[50:100], 0.5)  # nothing reached: a tie, which a 0.5 threshold calls positive
    prior = LabelPropagation(S, background=1.0).predict(labelled, y)
    assert (prior[50:100, 0] > 0.99).all()
    assert (prior[:50, 1] > 0.5).all()  # the labelled cluster keeps its positives


def test_propagation_and_blend_reject_bad_input():
    lp = LabelPropagation.from_embeddings(two_moons(40)[0], k=5)
    with pytest.raises(CuratorError, match="in 0..39"):
        lp.predict([0, 40], [0, 1])
    with pytest.raises(CuratorError, match="class indices"):
        lp.predict([0, 1], [0, 2])
    with pytest.raises(CuratorError, match="alpha"):
        LabelPropagation(lp.S, alpha=1.0)
    with pytest.raises(CuratorError, match="blend weight"):
        blend(np.zeros((3, 2)), np.zeros((3, 2)), 1.5)
    np.testing.assert_allclose(blend(np.array([[0.2, 0.8]]), np.array([[0.6, 0.4]]), 0.25), [[0.5, 0.5]])


def test_self_training_adds_the_most_confident_unlabelled_chips_per_class():
    from curator_widgets.propagation import GraphHead, pseudo_labels

    P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.99, 0.01], [0.3, 0.7]], np.float32)
    ids, ys = pseudo_labels(P, labelled=np.array([4]), per_class=2)  # chip 4 is labelled: never a pseudo-label
    assert ids.tolist() == [0, 2, 3, 1] and ys.tolist() == [0, 0, 1, 1]
    X, y = two_moons()
    labelled = np.concatenate([np.flatnonzero(y == 0)[:3], np.flatnonzero(y == 1)[:3]])
    fits = []
    head = GraphHead(seed=0, device="cpu", pseudo=20, whiten=0)  # the moons are built for cosine ~ Euclidean
    real_fit = None

    def spy(Xa, ya, ids):  # records what the logistic part is fitted on
        fits.append((np.asarray(ids).copy(), np.asarray(ya).copy()))
        return real_fit(Xa, ya, ids=ids)

    head.fit(X, y[labelled], ids=labelled)  # builds the graph and the logistic part
    real_fit = head.linear.fit
    head.linear.fit = lambda Xa, ya, ids: spy(Xa, ya, ids)
    P = head.fit(X, y[labelled], ids=labelled).predict_proba(X)
    assert len(fits) == 2 and len(fits[0][0]) == 6 and len(fits[1][0]) == 6 + 40  # 20 per class added
    extra = fits[1][0][6:]
    assert not np.isin(extra, labelled).any() and np.mean(fits[1][1][6:] == y[extra]) > 0.9  # mostly right
    assert P.shape == (len(X), 2) and np.allclose(P.sum(1), 1, atol=1e-5)
    with pytest.raises(CuratorError, match="pseudo=-1"):
        GraphHead(pseudo=-1)


# ----------------------------------------------------------------------------- protocol kernel
def clustered(classes: int = 6, per: int = 120, d: int = 16, seed: int = 0, spread: float = 1.1):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d))
    X = np.concatenate([centres[c] + spread * rng.normal(size=(per, d)) for c in range(classes)]).astype(np.float32)
    return X, np.repeat([f"class{c}" for c in range(classes)], per)


def test_split_and_starters_are_fixed_and_disjoint():
    names = ["forest", "beach", "airplane", "river", "harbor"]
    split = split_classes(names)
    assert split == {"dev": ["airplane", "forest", "river"], "test": ["beach", "harbor"]}
    labels = np.array(["a"] * 30 + ["b"] * 30)
    s1 = starters_for(labels, "b", 5, seed=0)
    assert s1 == starters_for(labels, "b", 5, seed=0) and len(set(s1)) == 5
    assert all(labels[i] == "b" for i in s1)
    assert s1 != starters_for(labels, "b", 5, seed=1)


def test_rounds_end_exactly_at_the_effort_points():
    X, labels = clustered()
    n = len(X)
    recipe = LoopRecipe().scaled(n)
    hist = session(X, labels == "class2", int(np.flatnonzero(labels == "class2")[0]), recipe, seed=0)
    ends = [h["labelled"] for h in hist]
    for p in recipe.points:
        assert int(np.floor(p / 100 * n)) in ends
    assert ends == sorted(ends) and ends[-1] == int(0.10 * n)
    assert all(b - a <= recipe.batch for a, b in zip(ends, ends[1:]))
    pts = at_points(hist, recipe.points, n)
    assert pts["7.8"]["effort"] <= 7.8 and pts["7.8"]["effort"] > 7.8 - 100 / n


def test_batch_grows_with_the_pool_above_ucmerced_and_is_unchanged_at_and_below_it():
    """Rounds, not chips, cost time: above 2,100 chips the batch is 64 x n / 2,100 and the seed set stays."""
    base = LoopRecipe()
    assert base.scaled(2100) == base  # UC Merced: the published sizes, exactly as before the rule
    small = base.scaled(1050)
    assert (small.k, small.r, small.batch) == (32, 16, 32)
    big = base.scaled(33_600)
    assert (big.k, big.r, big.batch) == (64, 32, 1024)


def test_starters_per_class_keep_the_sessions_within_their_budget():
    from curator_widgets.protocol import SESSION_ROUND_CHIPS, STARTERS, starters_per_class

    recipe = LoopRecipe(k=8, r=4, batch=8)
    assert starters_per_class(2100, 21, recipe) == STARTERS == 5  # UC Merced keeps the published 5
    big = starters_per_class(33_600, 21, recipe)
    assert big == 1 and 21 * 33_600 * recipe.rounds(33_600) > SESSION_ROUND_CHIPS / 2
    assert starters_per_class(33_600, 21, LoopRecipe()) == 3  # 64-chip batches: a quarter of the rounds
    assert 3 * 21 * 33_600 * LoopRecipe().rounds(33_600) <= SESSION_ROUND_CHIPS
    assert starters_per_class(1_000_000, 45) == 1  # never fewer than one


def test_rounds_counts_the_head_fits_of_a_session():
    """rounds() is what session() runs: one fit on the seed set, then one per batch, cut at each point."""
    n = 2100
    for recipe in (LoopRecipe(), LoopRecipe(k=8, r=4, batch=8)):
        truth = np.zeros(n, dtype=bool)
        truth[:100] = True
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n, 16)).astype(np.float32)
        X[:100] += 2.0
        hist = session(X, truth, 0, recipe.scaled(n), seed=0)
        assert len(hist) == recipe.rounds(n)
    small = LoopRecipe(k=8, r=4, batch=8)  # the batch grows with the pool, so the rounds barely change
    assert abs(small.rounds(33_600) - small.rounds(2100)) <= 2 and abs(small.rounds(600) - small.rounds(2100)) <= 2


def test_effort_to_recall_interpolates_between_rounds():
    hist = [{"effort": 4.0, "recall": 0.5}, {"effort": 6.0, "recall": 0.8}, {"effort": 8.0, "recall": 1.0}]
    assert effort_to_recall(hist, 0.9) == pytest.approx(7.0)
    assert effort_to_recall(hist, 0.4) == 4.0
    assert effort_to_recall(hist[:2], 0.9) is None


def test_sessions_find_separable_classes_and_summaries_keep_splits_apart():
    X, labels = clustered(spread=0.6)
    rows = evaluate(X, labels, ["class0", "class1"], LoopRecipe(), starters=2)
    s = summarize(rows)
    assert s["dev"]["sessions"] == 2 and s["test"]["sessions"] == 2 and s["all"]["sessions"] == 4
    assert s["all"]["7.8"]["recall"] > 0.95 and s["all"]["7.8"]["f1"] > 0.9
    assert {r["class"] for r in s["per_class"]} == {"class0", "class1"}
    blended = summarize(evaluate(X, labels, ["class0"], LoopRecipe(head_weight=0.5), starters=1))
    assert blended["all"]["7.8"]["recall"] > 0.9


def test_embedding_quality_tells_good_from_useless_features():
    X, labels = clustered(spread=0.3)
    good = embedding_quality(X, labels, ["class0", "class2"])
    noise = embedding_quality(np.random.default_rng(0).normal(size=X.shape), labels, ["class0", "class2"])
    assert good["knn_top1"] > 0.95 and good["p_at_10"] > 0.95
    assert noise["p_at_10"] < 0.4


def test_ssl_budget_is_compute_not_epochs():
    r = SSLRecipe(views=126_000, max_epochs=100)
    assert r.epochs(2100) == 60 and r.epochs(30_000) == 4 and r.epochs(300) == 100
    assert SSLRecipe(image_size=128, views=126_000).epochs(2100) == 15  # 4x the pixels per view
    # the seed is part of the model's name (seed 0's names are unchanged), so another seed never reuses a model
    assert SSLRecipe().model_run(2100) == "ssl-simclr-small_cnn-64px-20ep"
    assert SSLRecipe(seed=1).model_run(2100) == "ssl-simclr-small_cnn-64px-20ep-seed1"


# ----------------------------------------------------------------------------- embeddings
def test_rotation_averaged_embedding_ignores_orientation():
    from curator_widgets.augment import dihedral_views
    from curator_widgets.embed import encode_views
    from curator_widgets.models import Encoder, SmallCNN

    torch.manual_seed(0)
    model = Encoder(SmallCNN(), 256, image_size=32).eval()
    x = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    views = dihedral_views(x)
    assert len(views) == 8 and len({v.numpy().tobytes() for v in views[:1] + views[1:]}) == 8
    rotated = torch.rot90(x, 1, dims=(-2, -1)).flip(-1)
    a = encode_views(model, x, tta=True)
    b = encode_views(model, rotated, tta=True)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    plain_a, plain_b = encode_views(model, x), encode_views(model, rotated)
    assert not torch.allclose(plain_a, plain_b, atol=1e-4)


# ----------------------------------------------------------------------------- the command
def tiny_folder(root: Path, size: int, per_class: int = 40, classes=("agricultural", "beach", "forest")) -> Path:
    """UC Merced classes resized to `size` px (600 = larger than the originals, 64 = chips)."""
    from PIL import Image

    src = shared_data_dir() / "ucmerced"
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / cls).iterdir())[:per_class]:
            Image.open(f).convert("RGB").resize((size, size)).save(root / cls / f"{f.stem}.png")
    return root


def test_ucmerced_crops_cut_each_image_into_16_labelled_64px_chips(tmp_path):
    """The 30k benchmark's folder: 16 crops per image under the parent's class, the 256 px image tiled exactly."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location("ucmerced_crops", ROOT / "benchmarks" / "ucmerced_crops.py")
    crops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crops)
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    img = np.random.default_rng(0).integers(0, 255, size=(256, 256, 3), dtype=np.uint8)
    Image.fromarray(img).save(src / "a" / "x.png")
    Image.fromarray(img[:247, :247]).save(src / "b" / "y.png")  # a few UC Merced images are 247 px
    out = tmp_path / "out"
    assert crops.make_crops(src, out) == 32
    assert sorted(p.name for p in (out / "a").iterdir())[:2] == ["x_00.png", "x_01.png"]
    assert len(list((out / "b").iterdir())) == 16
    tile = np.asarray(Image.open(out / "a" / "x_12.png"))
    assert tile.shape == (64, 64, 3) and np.array_equal(tile, img[64:128, 128:192])
    assert crops.make_crops(src, out) == 32  # a second run keeps what is there


def test_ucmerced_crops_subset_pool_links_a_fixed_draw_of_one_splits_classes(tmp_path):
    """The large-class pools: only the split's classes, per_class crops each, the same draw every time, linked."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ucmerced_crops", ROOT / "benchmarks" / "ucmerced_crops.py")
    crops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crops)
    full = tmp_path / "full"
    for cls in ("a", "b", "c"):
        (full / cls).mkdir(parents=True)
        for i in range(10):
            (full / cls / f"{cls}{i}_00.png").write_bytes(b"png")
    out1, out2 = tmp_path / "one", tmp_path / "two"
    assert crops.subset_pool(full, out1, "dev", 4) == 8
    assert sorted(p.name for p in out1.iterdir()) == ["a", "c"]  # sorted names at even positions
    picked = sorted(p.name for p in (out1 / "a").iterdir())
    assert len(picked) == 4 and all((out1 / "a" / n).is_symlink() for n in picked)
    crops.subset_pool(full, out2, "dev", 4)
    assert sorted(p.name for p in (out2 / "a").iterdir()) == picked
    assert crops.subset_pool(full, tmp_path / "t", "test", 10) == 10
    with pytest.raises(SystemExit, match="fewer than --per-class 11"):
        crops.subset_pool(full, tmp_path / "x", "test", 11)
    with pytest.raises(SystemExit, match="is the crop folder itself"):  # the default --out is the crop folder
        crops.main(["--split", "dev", "--crops", str(full)] + ["--out", str(full)])


def check_report(res: dict, n: int) -> None:
    assert res["chips"] == n and res["classes"] == ["agricultural", "beach", "forest"]
    assert res["split"] == {"dev": ["agricultural", "forest"], "test": ["beach"]}
    assert {r["split"] for r in res["sessions"]} == {"dev", "test"} and len(res["sessions"]) == 3
    assert res["summary"]["all"]["10.0"]["effort"] <= 10.0
    assert (res.get("commit") or res["machine"]["commit"]) and res["seconds"]["total"] > 0
    assert res["ssl"]["image_size"] == DEFAULT_SSL.image_size  # same defaults whatever the image size


@pytest.mark.slow
def test_protocol_command_runs_end_to_end_on_64px_chips(tmp_path):
    from curator_widgets.cli import main

    folder = tiny_folder(tmp_path / "scenes64", 64, per_class=40)
    out = tmp_path / "report.json"
    assert main(["protocol", "--folder", str(folder), "--quick", "--out", str(out),
                 "--workdir", str(tmp_path / "cache")]) == 0
    check_report(json.loads(out.read_text()), 120)


@pytest.mark.slow
def test_protocol_benchmark_runs_end_to_end_on_600px_images(tmp_path, capsys):
    """benchmarks/active_protocol.py, in-process, on images larger than UC Merced's 256 px."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("active_protocol", ROOT / "benchmarks" / "active_protocol.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = tiny_folder(tmp_path / "scenes600", 600, per_class=14)
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--folder", str(folder), "--quick", "--out", str(out), "--workdir", str(tmp_path / "c")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "| split | classes | sessions | recall at 5.0%" in capsys.readouterr().out
    res = json.loads(out.read_text())
    check_report(res, 42)
    assert res["seeds"] == [0] and res["wall_s"] > 0 and res["commit"]  # benchmarks/common.write_results


def test_protocol_command_names_a_folder_without_classes(tmp_path, capsys):
    from PIL import Image

    from curator_widgets.cli import main

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(flat / f"{i}.png")
    assert main(["protocol", "--folder", str(flat), "--quick", "--workdir", str(tmp_path / "c")]) == 2
    assert "class subfolder" in capsys.readouterr().err
    # a cache inside the image folder would feed its own plots back in as images: refused before any work
    assert main(["protocol", "--folder", str(flat), "--quick", "--workdir", str(flat / "cache")]) == 2
    err = capsys.readouterr().err
    assert "would lie inside the image folder" in err and "--workdir outside" in err
    assert not (flat / "cache").exists()


def test_protocol_gives_no_sessions_to_a_one_image_class_and_reads_nested_class_folders(tmp_path):
    """A one-image class would score recall 1 by construction: it stays in the pool as a negative and is named;
    images in subfolders of a class folder count for that class, not for a class named after the subfolder."""
    import shutil

    import torch

    from curator_widgets.protocol import MIN_CLASS_IMAGES, run_protocol

    folder = tiny_folder(tmp_path / "scenes", 64, per_class=6)
    (folder / "beach" / "2020").mkdir()
    for f in sorted((folder / "forest").iterdir())[:2]:
        shutil.move(str(f), folder / "beach" / "2020" / f.name.replace("forest", "beach_extra"))
    (folder / "lonely").mkdir()
    shutil.copy(sorted((folder / "agricultural").iterdir())[0], folder / "lonely" / "one.png")
    threads = torch.get_num_threads()
    lines: list[str] = []
    try:
        res = run_protocol(folder, tmp_path / "cache", quick=True, log=lines.append)
    finally:
        torch.set_num_threads(threads)
    assert MIN_CLASS_IMAGES == 2 and res["classes_without_sessions"] == {"lonely": 1}
    assert res["classes"] == ["agricultural", "beach", "forest"] and res["chips"] == 19
    assert {r["class"] for r in res["sessions"]} == {"agricultural", "beach", "forest"}
    assert {r["class"]: r["positives"] for r in res["sessions"]} == {"agricultural": 6, "beach": 8, "forest": 4}
    assert res["split"] == split_classes(["agricultural", "beach", "forest", "lonely"])  # the split of every folder
    assert any("lonely (1)" in line and "fewer than 2 images" in line for line in lines)


def test_protocol_over_several_ssl_models_reports_each_models_recall_per_class(tmp_path):
    """--ssl-seeds 2: two SSL models (another seed is another cached run), the same starters on each, the tables
    are the mean over both, and the per-class table shows each model's recall at 7.8%."""
    import torch

    from curator_widgets.protocol import per_class_table, run_protocol

    folder = tiny_folder(tmp_path / "scenes", 64, per_class=40)
    threads = torch.get_num_threads()
    try:
        res = run_protocol(folder, tmp_path / "cache", quick=True, ssl_seeds=2)
        with pytest.raises(CuratorError, match=r"ssl_seeds=0 must be an integer >= 1"):  # before any work
            run_protocol(folder, tmp_path / "never", quick=True, ssl_seeds=0)
        assert not (tmp_path / "never").exists()
    finally:
        torch.set_num_threads(threads)
    assert res["ssl_seeds"] == [0, 1] and len(res["ssl_runs"]) == 2 and len(res["embedding_quality_by_ssl_seed"]) == 2
    assert res["ssl_runs"][1]["model_run"] == res["ssl_runs"][0]["model_run"] + "-seed1"
    by_model = {m: [(r["class"], r["starter"]) for r in res["sessions"] if r["ssl_seed"] == m] for m in (0, 1)}
    assert by_model[0] == by_model[1] and len(by_model[0]) == 3  # the same sessions on each model
    for row in res["summary"]["per_class"]:
        each = row["recall@7.8_by_ssl_seed"]
        assert set(each) == {"0", "1"}
        assert row["recall@7.8"] == pytest.approx((each["0"] + each["1"]) / 2, abs=1e-3)
    each_model = res["summary"]["by_ssl_seed"]
    assert set(each_model) == {"0", "1"} and each_model["0"]["all"]["sessions"] == 3
    assert res["summary"]["all"]["10.0"]["recall"] == pytest.approx(
        (each_model["0"]["all"]["10.0"]["recall"] + each_model["1"]["all"]["10.0"]["recall"]) / 2, abs=1e-3)
    table = per_class_table(res["summary"]["per_class"], res["loop"]["points"])
    assert "recall at 7.8% by SSL model (seed 0 / 1)" in table.splitlines()[0]


def test_defaults_are_the_levers_chosen_on_dev_classes():
    path = ROOT / "benchmarks" / "results" / "active_protocol_levers.json"
    lev = json.loads(path.read_text())
    assert lev["split"] == "dev" and set(lev["dev_classes"]).isdisjoint(
        split_classes(json.loads((ROOT / "benchmarks/results/active_protocol.json").read_text())["classes"])["test"])
    ssl = {**asdict(DEFAULT_SSL), "augment": dict(DEFAULT_SSL.augment)}
    assert json.loads(json.dumps(ssl)) == lev["chosen_ssl"]
    assert json.loads(json.dumps(asdict(DEFAULT_LOOP))) == lev["chosen_loop"]
    from curator_widgets.propagation import GraphHead

    head = GraphHead()  # what ActiveLoop(head="propagation") uses: the same winners
    assert (head.head_weight, head.k, head.alpha, head.background, head.pseudo, head.whiten) == (
        DEFAULT_LOOP.head_weight, DEFAULT_LOOP.graph_k, DEFAULT_LOOP.alpha, DEFAULT_LOOP.background,
        DEFAULT_LOOP.pseudo, DEFAULT_LOOP.whiten)
    assert DEFAULT_SSL.views <= SSL_VIEWS_CAP  # the budget's ceiling is the 30k-image CPU cost, not a score


def test_entropy_positive_prefers_the_likelier_positive_among_equally_uncertain_chips():
    from curator_widgets.acquisition import select

    P = np.array([[0.3, 0.7], [0.7, 0.3], [0.5, 0.5], [0.99, 0.01], [0.01, 0.99]], dtype=np.float32)
    assert select(P, 3, "entropy_positive").tolist() == [0, 2, 1]  # entropy alone ties 0 and 1, ranks 2 first
    assert select(P, 1, "entropy_positive", candidates=np.array([1, 3])).tolist() == [1]


def test_save_embeddings_stores_features_that_load_back(embedded_ws):
    from curator_widgets.embed import load_embeddings, save_embeddings

    ws, _ = embedded_ws(n=6, d=4)
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    save_embeddings(ws, "mine", X, scales=[64])
    np.testing.assert_allclose(load_embeddings(ws, "mine"), X, atol=2e-3)
    assert json.loads(ws.embeddings_path("mine").with_suffix(".json").read_text())["scales"] == [64]
    with pytest.raises(CuratorError, match="6 chips"):
        save_embeddings(ws, "bad", X[:5])


def test_activeloop_runs_the_propagation_head_by_name(embedded_ws):
    from curator_widgets.active import ActiveLoop, Oracle

    ws, X = embedded_ws(n=400, d=8, clusters=4)
    truth = ws.manifest["label"].to_numpy() == "c1"
    loop = ActiveLoop(ws, "r", name="graph", head="propagation", head_options={"head_weight": 0.5, "k": 10},
                      batch_size=16, budget=0.3, stability=0.0)
    loop.seed(int(np.flatnonzero(truth)[0]), k=16, r=8)
    hist = loop.run(Oracle(ws, positive="c1"))
    assert hist["true_recall"].iloc[-1] > 0.9
    P = loop.scores().astype(np.float32)
    assert P.shape == (400, 2) and np.allclose(P.sum(1), 1, atol=1e-2)


def test_the_protocols_recipe_runs_as_an_activeloop(embedded_ws):
    """docs/active_learning.md's recipe: DEFAULT_LOOP's sizes, acquisition and head in a loop of your own."""
    from curator_widgets.active import ActiveLoop, Oracle

    ws, X = embedded_ws(n=1050, d=8, clusters=4)
    truth = ws.manifest["label"].to_numpy() == "c1"
    rec = DEFAULT_LOOP.scaled(len(ws))
    assert (rec.k, rec.r, rec.batch) == (4, 2, 4)  # half of UC Merced's pool: half the sizes
    loop = ActiveLoop(ws, "r", name="recipe", head="propagation", strategy=rec.strategy, batch_size=rec.batch,
                      budget=0.05, stability=0.0)
    seeds = loop.seed(int(np.flatnonzero(truth)[0]), k=rec.k, r=rec.r)
    assert len(seeds.ids) == 1 + rec.k + rec.r
    hist = loop.run(Oracle(ws, positive="c1"))
    assert hist["true_recall"].iloc[-1] > 0.9 and hist["labelled"].iloc[-1] <= 0.05 * len(ws) + rec.batch
    assert loop.head().pseudo == DEFAULT_LOOP.pseudo and len(hist) > 5  # many small rounds, not a few big ones
