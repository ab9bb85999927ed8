"""benchmarks/common.py: the scaffolding every benchmark script shares (results provenance, UC Merced
workspace, raw-pixel baseline, embedding runs, tables)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import REPO, load_bench

common = load_bench("common")


# ----------------------------------------------------------------------------- provenance
def test_write_results_adds_provenance_and_replaces_the_file_atomically(tmp_path):
    out = tmp_path / "results" / "topic.json"
    out.parent.mkdir()
    out.write_text('{"old": true}\n')
    started = time.perf_counter() - 2.0
    doc = common.write_results(out, {"benchmark": "topic", "rows": [{"a": 1}]}, seeds=[0, np.int64(3)],
                               started=started)
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(doc)) and "old" not in on_disk
    assert on_disk["rows"] == [{"a": 1}] and on_disk["seeds"] == [0, 3]
    assert on_disk["wall_s"] >= 2.0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", on_disk["date"])
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert on_disk["commit"] in (head, head + "+dirty")
    m = on_disk["machine"]
    assert m["cpus"] >= 1 and m["python"] == ".".join(map(str, sys.version_info[:3])) and len(m["load_avg"]) == 3
    assert [p.name for p in out.parent.iterdir()] == ["topic.json"]  # no temp file left behind


def test_machine_does_not_import_torch_to_describe_it():
    """A benchmark without torch (search, gibs_download) must not pay its import for the machine line."""
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); import common; m = common.machine(); "
            "print(json.dumps({'m': m, 'torch_loaded': 'torch' in sys.modules}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["torch_loaded"] is False
    assert out["m"]["cuda"] is None and out["m"]["torch_threads"] is None  # not asked, so not claimed
    assert out["m"]["torch"]  # the installed version still comes from the package metadata


def test_machine_reports_cuda_and_threads_once_torch_is_loaded():
    import torch

    m = common.machine()
    assert m["cuda"] is torch.cuda.is_available() and m["torch_threads"] == torch.get_num_threads()
    assert m["torch"] == torch.__version__.split("+")[0] or m["torch"] == torch.__version__


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


def test_git_commit_marks_uncommitted_changes_and_is_none_outside_git(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "ROOT", tmp_path)
    assert common.git_commit() is None  # a copy without .git (a release tarball) says so, not a guess
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "r.json").write_text("{}")
    _git(tmp_path, "add", "a.txt", "benchmarks/results/r.json")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("results of a run")
    assert common.git_commit() == head  # untracked files (e.g. fresh results) do not make it dirty
    (tmp_path / "benchmarks" / "results" / "r.json").write_text('{"new": 1}')
    assert common.git_commit() == head  # nor a results JSON the run itself has just rewritten
    (tmp_path / "a.txt").write_text("2")
    assert common.git_commit() == head + "+dirty"


# ----------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def ucm(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucm")
    return root, common.ucmerced_workspace(root, classes=2, per_class=3)


def test_ucmerced_subset_is_linked_labelled_and_reused(ucm):
    root, ws = ucm
    assert len(ws) == 6 and ws.manifest["label"].value_counts().tolist() == [3, 3]
    assert all(p.is_symlink() for p in (root / "ucm-subset").rglob("*.jpg"))  # linked, never copied
    again = common.ucmerced_workspace(root, classes=2, per_class=3)
    assert len(again) == 6 and again.root == ws.root  # reused: no second ingest, no duplicate chips


def test_raw_pixels_are_area_means_standardised_per_channel(ucm):
    _, ws = ucm
    from curator_widgets.data import load_chips

    x = common.raw_pixels(ws, px=16)
    assert x.shape == (6, 3 * 16 * 16) and x.dtype == np.float32
    per_channel = x.reshape(6, 3, -1)
    assert np.allclose(per_channel.mean((0, 2)), 0, atol=1e-5)
    assert np.allclose(per_channel.std((0, 2), ddof=1), 1, atol=1e-4)
    imgs = load_chips(ws, size=64, progress=False).numpy().astype(np.float64) / 255
    blocks = imgs.reshape(6, 3, 16, 4, 16, 4).mean((3, 5))  # area downsampling 64 -> 16 is a 4x4 block mean
    ref = (blocks - blocks.mean((0, 2, 3), keepdims=True)) / blocks.std((0, 2, 3), ddof=1, keepdims=True)
    assert np.allclose(x, ref.reshape(6, -1), atol=1e-4)


def test_write_embedding_run_is_the_format_the_package_reads(ucm):
    _, ws = ucm
    from curator_widgets.embed import embedding_info, load_embeddings
    from curator_widgets.index import build_index

    x = np.random.default_rng(0).standard_normal((len(ws), 5)).astype(np.float32)
    path = common.write_embedding_run(ws, "feat", x, chunk=4)  # 6 rows in chunks of 4: crosses a boundary
    assert np.array_equal(load_embeddings(ws, "feat"), x.astype(np.float16))
    assert embedding_info(ws, "feat") == {"run": "feat", "dim": 5, "count": 6, "normalized": False,
                                          "model_run": None, "dtype": "float16"}
    assert build_index(ws, "feat", progress=False).ntotal == 6
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_the_retrieval_ssl_recipe_is_fixed_and_never_read_from_results(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)  # a results file with a "better" row changes nothing
    rows = [{"backbone": "resnet18", "method": "simclr", "epochs": 10, "knn_top1_ssl": 0.99}]
    (tmp_path / "ssl_quality.json").write_text(json.dumps({"rows": rows}))
    cfg = common.ssl_config(quick=False)
    assert {k: cfg[k] for k in ("backbone", "method", "epochs")} == common.DEFAULT_SSL
    assert common.ssl_config(quick=True)["epochs"] == 1


# ----------------------------------------------------------------------------- tables
def test_markdown_table_from_mappings_and_from_cells():
    rows = [{"a": 1, "b": None}, {"a": "x"}]
    assert common.markdown_table(["a", "b"], rows) == "| a | b |\n|---|---|\n| 1 |  |\n| x |  |"
    assert common.markdown_table(["a", "b"], [[1, 2.5]], header=["A", "B"]) == "| A | B |\n|---|---|\n| 1 | 2.5 |"
    assert common.markdown_table(["a"], []) == "| a |\n|---|"


def test_widgets_docs_tables_when_auto_chose_live_gestures():
    """The widget benchmark's docs tables: a size whose auto mode ran live has no settle time; the table says
    so instead of failing (a flaky CI failure when one size drew fast enough to stay live)."""
    import copy

    bench = load_bench("widgets")
    res = json.loads((REPO / "benchmarks" / "results" / "widgets.json").read_text())
    live = copy.deepcopy(res)
    live["gesture"][0].update(mode="live", settle_ms={})
    text = bench.docs_tables(live)
    assert "(live: every frame is sharp)" in text and "(live: auto chose it)" in text
    assert "every frame is sharp" not in bench.docs_tables(res)
