"""One error type that always says what went wrong and how to fix it."""

from __future__ import annotations


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
