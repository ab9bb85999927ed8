"""`curator run` / run_notebook: kernel resolution, parameters, outputs kept, clear errors."""

import json
import sys

import nbformat
import pytest

from curator_widgets import Workspace
from curator_widgets.cli import main
from curator_widgets.errors import CuratorError
from curator_widgets.notebooks import find_notebook, parse_value, run_notebook


def _notebook(path, params_src, body_src):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body_src)]
    nbformat.write(nb, str(path))
    return path


def _outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_run_uses_this_python_and_keeps_output_in_workspace(tmp_path):
    nb = _notebook(tmp_path / "probe.ipynb", 'workspace = "ws"\nn = 1\nwords = ["a"]',
                   "import sys\nprint('EXE', sys.executable)\nprint('N', n * 2, words, workspace)")
    run = run_notebook(nb, {"n": "21", "words": "x,y"}, cwd=tmp_path, progress=False)
    text = _outputs(run.output)
    # papermill's kernel_name="python3" must resolve to the interpreter running curator (the venv's)
    assert f"EXE {sys.executable}" in text
    assert f"N 42 ['x', 'y'] {tmp_path / 'ws'}" in text
    assert run.output.parent == tmp_path / "ws" / "runs"
    ws = Workspace.open(tmp_path / "ws")
    rec = ws.meta["notebook_runs"][run.output.stem]
    assert rec["parameters"]["n"] == 21 and rec["error"] is None


def test_failing_notebook_keeps_executed_copy_and_names_the_cell(tmp_path):
    nb = _notebook(tmp_path / "bad.ipynb", 'workspace = "ws"', "raise ValueError('boom here')")
    with pytest.raises(CuratorError) as e:
        run_notebook(nb, output=tmp_path / "out.ipynb", cwd=tmp_path, progress=False)
    assert "bad.ipynb failed in cell" in e.value.problem and "ValueError: boom here" in e.value.problem
    assert str(tmp_path / "out.ipynb") in e.value.fix
    assert "boom here" in json.dumps(nbformat.read(str(tmp_path / "out.ipynb"), as_version=4))
    assert Workspace.open(tmp_path / "ws").meta["notebook_runs"]["out"]["error"].endswith("boom here")


def test_unknown_parameter_and_notebook_are_clear_errors(tmp_path, capsys):
    nb = _notebook(tmp_path / "p.ipynb", "workspace = 'w'\nepochs = 1", "pass")
    with pytest.raises(CuratorError) as e:
        run_notebook(nb, {"epoch": "3"}, cwd=tmp_path)
    assert "has no parameter 'epoch'" in e.value.problem and "workspace, epochs" in e.value.fix
    assert main(["run", str(tmp_path / "nope.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "notebook" in err and "not found" in err and "fix:" in err
    nb2 = tmp_path / "noparams.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), str(nb2))
    with pytest.raises(CuratorError, match="has no cell tagged `parameters`"):
        run_notebook(nb2, cwd=tmp_path)


def test_cli_lists_notebooks_and_shows_parameters(capsys):
    assert main(["run", "x", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert any(p.endswith("00_quickstart.ipynb") for p in listed)
    assert main(["run", "quickstart", "--show-parameters"]) == 0
    out = capsys.readouterr().out
    for name in ("workspace", "source", "region", "chip_size", "epochs", "device", "seed", "oracle"):
        assert f"  {name} = " in out
    assert find_notebook("00").name == "00_quickstart.ipynb"


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("None") is None
    assert parse_value("true") is True and parse_value("[1, 2]") == [1, 2] and parse_value("(1, 2)") == [1, 2]
    assert parse_value("2020-09-27") == "2020-09-27" and parse_value("simclr") == "simclr"
    assert parse_value("-20,10,30,35", default=[0, 0, 0, 0]) == [-20, 10, 30, 35]


def test_oracle_rules_for_papermill_runs(tmp_path):
    from curator_widgets import BlueMarbleSource, LabelStore
    from curator_widgets.notebooks import oracle_from_rule

    ws = Workspace.open_or_create(tmp_path / "ws")
    ws.ingest(BlueMarbleSource(level=0), size=64, progress=False)
    land = ws.manifest["land_fraction"].to_numpy()
    assert oracle_from_rule(ws, None) is None and oracle_from_rule(ws, " ") is None
    coast = oracle_from_rule(ws, "0.1 < land_fraction < 0.9")
    assert (coast.is_positive() == ((land > 0.1) & (land < 0.9))).all() and coast.is_positive().any()
    mostly_land = oracle_from_rule(ws, "land_fraction >= 0.5")
    store = LabelStore(ws, task="t")
    assert mostly_land.answer(store, [0, 1, 2]) == 3
    assert store.current() == {i: ("positive" if land[i] >= 0.5 else "negative") for i in (0, 1, 2)}
    for bad in ("land_fraction about 0.5", "land_fraction => 0.5", "0.1 < land_fraction <"):
        with pytest.raises(CuratorError) as e:
            oracle_from_rule(ws, bad)
        assert "is not 'column op value'" in e.value.problem and "0.1 < land_fraction < 0.9" in e.value.fix
    with pytest.raises(CuratorError, match="no column 'colour'"):
        oracle_from_rule(ws, "colour == blue")
