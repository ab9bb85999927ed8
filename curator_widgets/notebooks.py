"""Run the project's notebooks reproducibly with papermill (what `curator run` and CI call).

A run opens (or creates) the notebook's workspace first, so the executed notebook is kept
inside it under `runs/` next to the artefacts it made, and the run is recorded in
workspace.json for provenance.
"""

from __future__ import annotations

import ast
import datetime as _dt
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import CuratorError

KERNEL = "python3"


@dataclass
class NotebookRun:
    """What one papermill run did: where the executed notebook is, with which parameters, how long."""

    notebook: Path
    output: Path
    parameters: dict[str, Any]
    seconds: float
    workspace: Path | None = None
    error: str | None = None


_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def oracle_from_rule(ws: Any, rule: str | None) -> Any:
    """The simulated labeller of a papermill run, from a notebook's `oracle` parameter.

    `"land_fraction > 0.5"`, `"label == forest"` or a range `"0.1 < land_fraction < 0.9"`: chips
    where the rule on a manifest column holds are positive; a bare column name (`"label"`) answers a
    multi-class task with its values; None means a person labels (returns None).
    """
    from .active import Oracle

    if rule is None or str(rule).strip() == "":
        return None
    parts = str(rule).split()
    if len(parts) == 1:
        return Oracle(ws, column=parts[0])
    bad = CuratorError(f"oracle rule {rule!r} is not 'column op value', 'low op column op high' or a column name",
                       "write e.g. 'land_fraction > 0.5', 'label == forest', '0.1 < land_fraction < 0.9' or 'label'; "
                       "ops: " + " ".join(_OPS))
    if len(parts) == 3 and parts[1] in _OPS:
        column, op, raw = parts
        value, fn = _number(raw), _OPS[op]
        return Oracle(ws, column=column, positive=lambda v: bool(fn(v, value)))
    if len(parts) == 5 and parts[1] in _OPS and parts[3] in _OPS:
        low, op1, column, op2, high = parts
        lo, hi, f1, f2 = _number(low), _number(high), _OPS[op1], _OPS[op2]
        return Oracle(ws, column=column, positive=lambda v: bool(f1(lo, v) and f2(v, hi)))
    raise bad


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def notebook_dirs() -> list[Path]:
    """Folders searched for a notebook given by name: ./notebooks, then the source checkout's."""
    repo = Path(__file__).resolve().parents[1]
    dirs = [Path.cwd() / "notebooks", repo / "notebooks"]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def list_notebooks() -> list[Path]:
    """The project's numbered notebooks (00_quickstart.ipynb ...), in order."""
    for d in notebook_dirs():
        found = sorted(p for p in d.glob("[0-9][0-9]_*.ipynb"))
        if found:
            return found
    return []


def find_notebook(name: str | os.PathLike) -> Path:
    """A notebook path from a path, a file name, or a short name such as `quickstart` or `02`."""
    p = Path(name).expanduser()
    if p.is_file():
        return p.resolve()
    stem = p.name[:-6] if p.name.endswith(".ipynb") else p.name
    candidates = list_notebooks()
    for nb in candidates:
        if nb.stem == stem or nb.stem.split("_", 1)[0] == stem or nb.stem.split("_", 1)[-1] == stem:
            return nb.resolve()
    names = ", ".join(nb.stem for nb in candidates) or "(no notebooks/ folder found here)"
    raise CuratorError(f"notebook {str(name)!r} not found", f"give a path to an .ipynb file or one of: {names}")


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The `parameters` cell of a notebook: name -> {default, inferred_type_name, help}."""
    import papermill as pm

    path = find_notebook(notebook)
    params = pm.inspect_notebook(str(path))
    if not params:
        raise CuratorError(f"{path.name} has no cell tagged `parameters`",
                           "tag the cell that sets the defaults with `parameters` (View > Cell Toolbar > Tags)")
    return params


def parse_value(text: str, default: Any = None) -> Any:
    """A command-line value as Python: numbers, True/False/None, lists; dates and words stay strings."""
    low = text.strip()
    if low in ("true", "false", "none", "null"):
        return {"true": True, "false": False, "none": None, "null": None}[low]
    try:
        value = ast.literal_eval(low)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text
    if isinstance(value, str) and isinstance(default, (list, tuple)) and "," in value:
        return [parse_value(v.strip()) for v in value.split(",") if v.strip()]
    if isinstance(value, tuple):
        value = list(value)
    return value


def _default_of(param: Mapping[str, Any]) -> Any:
    try:
        return ast.literal_eval(str(param.get("default")))
    except (ValueError, SyntaxError):
        return param.get("default")


def resolve_parameters(notebook: str | os.PathLike, given: Mapping[str, Any]) -> dict[str, Any]:
    """Check parameter names against the notebook's `parameters` cell and parse string values."""
    params = notebook_parameters(notebook)
    unknown = [k for k in given if k not in params]
    if unknown:
        raise CuratorError(f"{Path(notebook).name} has no parameter {', '.join(map(repr, unknown))}",
                           f"use one of: {', '.join(params)} (see `curator run {Path(notebook).stem} --show-parameters`)")
    return {k: parse_value(v, _default_of(params[k])) if isinstance(v, str) else v for k, v in given.items()}


def run_notebook(notebook: str | os.PathLike, parameters: Mapping[str, Any] | None = None,
                 output: str | os.PathLike | None = None, kernel: str = KERNEL, log_output: bool = False,
                 progress: bool = True, cwd: str | os.PathLike | None = None,
                 start_timeout: int = 120) -> NotebookRun:
    """Execute `notebook` with papermill; the executed copy goes to `output` or `<workspace>/runs/`.

    The workspace parameter is made absolute (relative to `cwd`) so the notebook, the CLI and the
    output location agree on one folder whatever directory the kernel starts in. A failed cell
    raises CuratorError naming the cell; the executed notebook with the traceback is kept.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    path = find_notebook(notebook)
    params = resolve_parameters(path, dict(parameters or {}))
    defaults = notebook_parameters(path)
    base = Path(cwd) if cwd else Path.cwd()
    ws_root: Path | None = None
    if "workspace" in defaults:
        ws_value = params.get("workspace", _default_of(defaults["workspace"]))
        if ws_value:
            ws_root = (base / Path(str(ws_value)).expanduser()).resolve()
            params["workspace"] = str(ws_root)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    if output is not None:
        out = Path(output).expanduser()
        out = (base / out).resolve() if not out.is_absolute() else out
        if out.suffix != ".ipynb":
            out = out / f"{path.stem}-{stamp}.ipynb"
    elif ws_root is not None:
        out = ws_root / "runs" / f"{path.stem}-{stamp}.ipynb"
    else:
        out = base / "runs" / f"{path.stem}-{stamp}.ipynb"

    ws = None
    if ws_root is not None:
        from .workspace import Workspace
        ws = Workspace.open_or_create(ws_root, description=f"made by `curator run {path.stem}`")
    out.parent.mkdir(parents=True, exist_ok=True)

    # papermill rewrites the output after every cell; keep that in a temp file beside the target so a
    # crash never leaves a half-written notebook under the final name, then rename it into place.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".ipynb", dir=out.parent)
    os.close(fd)
    t0 = time.perf_counter()
    error: str | None = None
    try:
        pm.execute_notebook(str(path), tmp_name, parameters=params, kernel_name=kernel,
                            progress_bar=progress, log_output=log_output, cwd=str(path.parent),
                            start_timeout=start_timeout, stderr_file=sys.stderr if log_output else None)
    except PapermillExecutionError as e:
        error = f"cell {e.exec_count}: {e.ename}: {e.evalue}"
    except Exception as e:  # kernel died, missing kernel spec, ...: keep what was executed
        if Path(tmp_name).stat().st_size == 0:
            os.unlink(tmp_name)
            raise CuratorError(f"could not run {path.name}: {type(e).__name__}: {e}",
                               f"check that the Jupyter kernel {kernel!r} exists (jupyter kernelspec list)") from e
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    shutil.move(tmp_name, out)
    run = NotebookRun(notebook=path, output=out, parameters=params, seconds=round(seconds, 2),
                      workspace=ws_root, error=error)
    if ws is not None and ws_root is not None and (ws_root / "workspace.json").exists():
        ws.record("notebook_runs", out.stem, {"notebook": path.name, "output": str(out), "parameters": params,
                                              "seconds": run.seconds, "error": error,
                                              "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    if error:
        raise CuratorError(f"{path.name} failed in {error}", f"the executed notebook with the traceback is {out}")
    return run
