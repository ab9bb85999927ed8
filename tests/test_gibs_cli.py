"""`curator gibs search|layers|download` in-process, and the benchmark's --quick smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curator_widgets.cli import main
from curator_widgets.workspace import Workspace
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
MODIS = "MODIS_Terra_CorrectedReflectance_TrueColor"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_prints_identifier_first_best_match_first(capsys, gibs_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATOR_CACHE_DIR", str(tmp_path))
    caps = str(gibs_data / "wmts_capabilities_geographic_2015.xml")
    code, out, _ = run(capsys, "gibs", "search", "modis", "terra", "true", "--capabilities", caps)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[0] == MODIS
    assert all(line.split()[0].startswith("MODIS_Terra") for line in lines)
    code, _, err = run(capsys, "gibs", "search", "zzz", "qqq", "--capabilities", caps)
    assert code == 2 and "no layer matches all of 'zzz qqq' (101 layers" in err and "fewer or shorter words" in err


def test_layers_list_and_show(capsys, gibs_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATOR_CACHE_DIR", str(tmp_path))
    caps = str(gibs_data / "wmts_capabilities_geographic_2015.xml")
    code, out, _ = run(capsys, "gibs", "layers", "--capabilities", caps)
    assert code == 0 and out.startswith("# 101 layers in") and "catalog age" in out
    code, out, _ = run(capsys, "gibs", "layers", "--show", MODIS, "--capabilities", caps)
    info = json.loads(out)
    assert info["time"] == "2012-05-08 to 2015-05-15 (every 1 day)" and info["formats"] == ["image/jpeg"]
    assert info["tile_matrix_sets"]["EPSG4326_250m"]["levels"] == "0..8"
    code, _, err = run(capsys, "gibs", "layers", "--show", "MODIS_Terra_TrueColor", "--capabilities", caps)
    assert code == 2 and "unknown GIBS layer 'MODIS_Terra_TrueColor'" in err and "did you mean" in err


def test_download_into_a_workspace_and_resume(capsys, gibs_server, tmp_path):
    ws = tmp_path / "ws"
    argv = ["gibs", "download", "--layer", "BlueMarble_NextGeneration", "--bbox", "-20", "10", "40", "35",
            "--tile-size", "64", "--overlap", "0.25", "--workspace", str(ws), "--base-url", gibs_server.base_url]
    code, out, _ = run(capsys, *argv)
    assert code == 0, out
    n = len(Workspace.open(ws))
    assert n > 0 and f"added {n} chips, 0 already present" in out and "6 tiles: 6 downloaded" in out
    code, out, _ = run(capsys, *argv)
    assert code == 0 and f"added 0 chips, {n} already present" in out and "6 from cache" in out
    df = Workspace.open(ws).manifest
    assert set(df["layer"]) == {"BlueMarble_NextGeneration"} and set(df["tile_matrix_set"]) == {"500m"}
    meta = json.loads((ws / "workspace.json").read_text())
    assert meta["sources"][0]["source"] == "gibs" and meta["sources"][0]["level"] == 3


def test_download_dates_and_fill_flags(capsys, gibs_server, tmp_path):
    ws = tmp_path / "ws"
    with pytest.warns(UserWarning, match="2020-09-26: no tiles could be fetched"):
        code, out, _ = run(capsys, "gibs", "download", "--layer", MODIS, "--bbox", "0", "-5", "20", "5",
                           "--dates", "2020-09-26", "2020-09-27", "--level", "3", "--tile-size", "64",
                           "--fill-swath", "nearest", "--workspace", str(ws), "--base-url", gibs_server.base_url)
    assert code == 0, out
    assert "1 tile: 0 downloaded" in out and "HTTP 404" in out  # 2020-09-26 has no imagery on this server
    df = Workspace.open(ws).manifest
    assert set(df["date"]) == {"2020-09-27"}
    assert any("swath_filled" in list(f) for f in df["flags"])


def test_download_bad_input_messages(capsys, gibs_server, tmp_path):
    base = ["gibs", "download", "--workspace", str(tmp_path / "ws"), "--base-url", gibs_server.base_url]
    cases = [
        (["--layer", MODIS, "--bbox", "0", "10", "20", "5", "--dates", "2020-09-27"],
         "south=10.0 is not below north=5.0"),
        (["--layer", MODIS, "--bbox", "0", "-5", "20", "5", "--dates", "2019-01-01", "--level", "3"],
         "date 2019-01-01 is outside the time range of " + MODIS + ": 2020-09-01 to 2020-09-30"),
        (["--layer", MODIS, "--bbox", "0", "0", "1", "1", "--dates", "2020-09-27", "--level", "3"],
         "chip size 256 px is larger than the region"),
        (["--layer", "BlueMarble_NextGen", "--bbox", "0", "0", "10", "10"],
         "unknown GIBS layer 'BlueMarble_NextGen'"),
    ]
    for extra, msg in cases:
        code, _, err = run(capsys, *base, *extra)
        assert code == 2 and msg in err, (extra, err)
        assert err.startswith("curator gibs: error:")
    assert not (tmp_path / "ws").exists()  # nothing is created before the inputs are valid
    assert gibs_server.tile_requests() == []


def test_download_offline_points_to_bluemarble(capsys, tmp_path):
    port = free_port()
    code, _, err = run(capsys, "gibs", "download", "--layer", MODIS, "--bbox", "0", "0", "10", "10",
                       "--workspace", str(tmp_path / "ws"), "--timeout", "2",
                       "--base-url", f"http://127.0.0.1:{port}/wmts/epsg4326/best")
    assert code == 2 and "offline" in err and "curator demo" in err and "BlueMarbleSource()" in err


def test_benchmark_quick_runs(tmp_path):
    out = tmp_path / "gibs.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gibs_download.py"), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| latency per tile | concurrency 1 | concurrency 16 | ratio |" in r.stdout
    res = json.loads(out.read_text())
    assert len(res["download"]) == 4 and all(row["tiles_per_s"] > 0 for row in res["download"])
    assert res["cutting"][0]["chips"] > 0 and res["source"]["chips"] > 0


def test_serve_answers_with_gibs_layout(tmp_path):
    """`curator gibs serve` in its own process: capabilities and a Blue Marble tile over HTTP."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "curator_widgets.cli", "gibs", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "CURATOR_CACHE_DIR": str(tmp_path)})
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving BlueMarble_NextGeneration at http://127.0.0.1:"), proc.stderr.read()
        base = line.split(" at ", 1)[1].split()[0]
        with httpx.Client(trust_env=False, timeout=30) as client:
            caps = client.get(base + "/1.0.0/WMTSCapabilities.xml")
            assert caps.status_code == 200 and b"BlueMarble_NextGeneration" in caps.content
            tile = client.get(base + "/BlueMarble_NextGeneration/default/default/500m/0/0/0.jpg")
            assert tile.status_code == 200 and tile.content[:3] == b"\xff\xd8\xff"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
