"""Every notebook is stored clean and runs top to bottom under papermill with small parameters.

The execution tests go through `curator_widgets.notebooks.run_notebook`, the function behind
`curator run`, with kernel `python3` (this venv's Python), and fail on any cell error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from curator_widgets.notebooks import list_notebooks, notebook_parameters, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]

# Small parameters: seconds of work per step on 2 CPU cores (Blue Marble level 2: 81 chips of 64 px).
TINY = {"level": 2, "epochs": 1}
SMALL = {
    "00_quickstart": {**TINY, "sample_size": 24, "batch_size": 16},
    "01_region_and_download": {},
    "02_train_ssl": TINY,
    "03_explore_embeddings": {**TINY, "projection": "pca"},
    "04_diverse_sampling_and_balance": {**TINY, "circle_sizes": [100, 500], "circle_seeds": 1, "balance_rounds": 1,
                                        "balance_epochs": 1, "ucm_max_per_class": 10},
    "05_active_labeling": {**TINY, "rounds": 2},
}
SLOW = {"00_quickstart", "03_explore_embeddings", "04_diverse_sampling_and_balance", "05_active_labeling"}
EXPECTED = ["00_quickstart", "01_region_and_download", "02_train_ssl", "03_explore_embeddings",
            "04_diverse_sampling_and_balance", "05_active_labeling"]


def test_the_six_notebooks_exist():
    assert IDS == EXPECTED
    assert [p.stem for p in list_notebooks()] == IDS
    assert set(SMALL) == set(IDS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs or execution counts; "
                       f"fix: {Path(sys.executable).parent / 'nbstripout'} notebooks/*.ipynb")
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    # nbstripout's own check (also strips volatile metadata such as execution times and widget state)
    r = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, f"{path.name} is not stripped: {r.stdout}{r.stderr}; fix: nbstripout notebooks/*.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_cell_is_complete_and_used(path):
    params = notebook_parameters(path)
    assert {"workspace", "seed"} <= set(params), sorted(params)
    nb = nbformat.read(str(path), as_version=4)
    body = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if re.match(r"^\w+\s*=", line)]
    # papermill skips a line it cannot parse (e.g. a second '=' in the comment): every one must parse
    assert assigned == list(params), f"{path.name}: papermill parsed {list(params)} from {assigned}"
    unused = [name for name in params if not re.search(rf"\b{name}\b", body)]
    assert not unused, f"{path.name}: parameters never used by the notebook: {unused}"
    for name, info in params.items():
        assert info.get("help"), f"{path.name}: parameter {name} needs a trailing # comment saying what it is"


def test_parameters_cover_the_documented_set():
    names = set().union(*(notebook_parameters(p) for p in NOTEBOOKS))
    for expected in ("workspace", "source", "region", "dates", "layer", "chip_size", "seed"):
        assert expected in names, expected


def _png_count(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text())
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for o in c.get("outputs", []))


def _params(stem: str):
    return [pytest.param(stem, marks=pytest.mark.slow) if stem in SLOW else stem]


@pytest.mark.parametrize("stem", [p for s in IDS for p in _params(s)])
def test_notebook_runs_under_papermill(stem, tmp_path):
    params = {"workspace": str(tmp_path / "ws"), **SMALL.get(stem, {})}
    run = run_notebook(ROOT / "notebooks" / f"{stem}.ipynb", params, output=tmp_path / f"{stem}.ipynb",
                       cwd=tmp_path, progress=False)
    print(f"{stem}: {run.seconds:.1f} s under papermill")
    assert run.error is None and run.output.exists()
    assert _png_count(run.output) >= 1, f"{stem} should show at least one matplotlib figure"
