import json

from curator_widgets import Workspace
from curator_widgets.cli import main


def test_demo_end_to_end_in_temp_dir(tmp_path, capsys):
    ws_dir = tmp_path / "demo"
    assert main(["demo", "--workspace", str(ws_dir), "--bbox", "-30", "-40", "60", "40", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "tile:" in out and str(ws_dir) in out
    ws = Workspace.open(ws_dir)
    d = ws.describe()
    assert d["chips"] > 100 and d["ocean_chips"] > 0 and d["land_chips"] > 0
    assert ws.meta["parameters"]["demo"]["size"] == 64
    # resumable: a second run adds nothing new
    assert main(["demo", "--workspace", str(ws_dir), "--bbox", "-30", "-40", "60", "40", "--size", "64"]) == 0
    assert "chips_added=0" in capsys.readouterr().out


def test_cli_error_is_two_clear_lines(tmp_path, capsys):
    code = main(["ingest", "-w", str(tmp_path / "w"), "--bbox", "0", "10", "5", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: bbox south=10.0 is not below north=5.0" in err and "fix:" in err


def test_cli_ingest_folder_and_info(tmp_path, capsys):
    from curator_widgets.paths import shared_data_dir

    forest = shared_data_dir() / "ucmerced" / "forest"
    assert main(["ingest", "-w", str(tmp_path / "w"), "--source", "folder", "--folder", str(forest)]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "w")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["chips"] == 100
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "not a workspace" in capsys.readouterr().err


def test_scheduler_option_on_the_cluster_commands_and_a_bad_address_is_two_lines(embedded_ws, capsys, monkeypatch):
    import pytest

    pytest.importorskip("distributed")
    from curator_widgets import cluster
    from curator_widgets.cli import build_parser
    from helpers import free_port

    commands = build_parser()._subparsers._group_actions[0].choices
    gibs = commands["gibs"]._subparsers._group_actions[0].choices
    for name, parser in [(n, commands[n]) for n in ("ingest", "embed", "index", "sample", "project", "active")] + [
            ("gibs download", gibs["download"])]:
        text = " ".join(parser.format_help().split())
        assert "--scheduler ADDRESS" in text and "overrides $CURATOR_DASK_SCHEDULER" in text, name
    ws, _ = embedded_ws(n=60)
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1.0)  # a refused connection is retried until the timeout
    monkeypatch.delenv(cluster.SCHEDULER_ENV, raising=False)
    address = f"tcp://127.0.0.1:{free_port()}"
    for argv in (["index", "-w", str(ws.root), "--run", "r"], ["sample", "-w", str(ws.root), "--run", "r", "-n", "5"]):
        capsys.readouterr()
        assert main([*argv, "--scheduler", address]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"curator {argv[0]}: error: cannot reach the Dask scheduler at '{address}'"), err
        assert "fix --scheduler" in err and "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert not ws.index_path("r").exists() and not (ws.root / "samples").exists()  # nothing ran before it failed
