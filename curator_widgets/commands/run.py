"""`curator run NOTEBOOK -p key value ...`: execute a notebook with papermill, reproducibly."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="execute a notebook with papermill (parameters from -p), keeping the executed copy",
        description="Execute a notebook top to bottom with papermill. The executed notebook (with every "
                    "output and plot) is written to WORKSPACE/runs/<name>-<time>.ipynb, or to --output. "
                    "NOTEBOOK is a path or a short name from notebooks/ (quickstart, 02, 03_explore_embeddings).")
    p.add_argument("notebook", help="notebook path or short name (e.g. quickstart, 02_train_ssl)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="set a parameter (repeatable); VALUE is read as Python: 3, 0.5, True, None, "
                        "[-20, 10, 30, 35]; anything else is a string")
    p.add_argument("--output", "-o", help="executed notebook path (a .ipynb file or a folder)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3, this Python)")
    p.add_argument("--log-output", action="store_true", help="stream each cell's output to the terminal")
    p.add_argument("--no-progress", action="store_true", help="hide the per-cell progress bar")
    p.add_argument("--show-parameters", action="store_true", help="print the notebook's parameters and exit")
    p.add_argument("--list", action="store_true", help="list the project's notebooks and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..notebooks import find_notebook, list_notebooks, notebook_parameters, run_notebook

    if args.list:
        for nb in list_notebooks():
            print(nb)
        return 0
    if args.show_parameters:
        path = find_notebook(args.notebook)
        print(f"{path.name} parameters:")
        for name, info in notebook_parameters(path).items():
            note = f"  # {info['help']}" if info.get("help") else ""
            print(f"  {name} = {info['default']}{note}")
        return 0
    given: dict[str, str] = {}
    for key, value in args.parameter:
        given[key] = value
    run = run_notebook(args.notebook, given, output=args.output, kernel=args.kernel,
                       log_output=args.log_output, progress=not args.no_progress)
    print(f"executed {run.notebook.name} in {run.seconds:.1f} s")
    print(f"output: {run.output}")
    return 0
