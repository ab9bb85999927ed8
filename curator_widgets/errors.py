"""One error type that always says what went wrong and how to fix it."""

from __future__ import annotations

import os
import sys
import warnings


class CuratorError(ValueError):
    """A user-facing error: `problem` names what is wrong, `fix` says what to do."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  Fix: {fix}")


def require(module: str, problem: str, fix: str):
    """Import an optional dependency by name, or raise a CuratorError that says which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise CuratorError(problem, fix) from None


def warn_user(message: str) -> None:
    """Warn at the user's own line: the first frame outside this package and tqdm (a source's chips are read in a
    generator a progress bar drives, so a fixed stacklevel would name tqdm's file)."""
    here = os.path.dirname(os.path.abspath(__file__))
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is warn_user's caller
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(here + os.sep) and f"{os.sep}tqdm{os.sep}" not in path:
            break
        level, frame = level + 1, frame.f_back
    warnings.warn(message, UserWarning, stacklevel=level)
