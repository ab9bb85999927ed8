"""`curator` command line: one subcommand per step, each thin over the Python API.

Subcommands live in `curator_widgets/commands/<name>.py`, each with `register(subparsers)`;
they are found automatically, so adding a step never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sqlite3
import sys
from typing import Sequence

from .errors import CuratorError


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    parser = argparse.ArgumentParser(prog="curator", description="Curate satellite-image datasets: "
                                     "chips -> self-supervised embeddings -> search, diverse samples, labels.")
    parser.add_argument("--version", action="version", version=f"curator-widgets {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand, turning CuratorError into a two-line message and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CuratorError as e:
        print(f"curator {args.command}: error: {e.problem}", file=sys.stderr)
        if e.fix:
            print(f"  fix: {e.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept", file=sys.stderr)
        return 130
    except (OSError, sqlite3.Error) as e:  # the file system said no: one line, not a traceback
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"curator {args.command}: error: {getattr(e, 'strerror', None) or e}{where}", file=sys.stderr)
        print("  fix: check the path exists, is a folder where one is expected, and is writable", file=sys.stderr)
        return 2


def _version() -> str:
    from .workspace import _package_version
    return _package_version()


if __name__ == "__main__":
    sys.exit(main())
