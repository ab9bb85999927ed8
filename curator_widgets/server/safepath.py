"""Turning the `{workspace}` part of a URL into a folder that provably lies inside the server root."""

from __future__ import annotations

from pathlib import Path

from ..errors import CuratorError


class Refused(CuratorError):
    """A request path that tries to leave the server's root folder (answered with HTTP 400)."""


def resolve_workspace(root_dir: str | Path, key: str) -> Path:
    """The workspace folder for URL segment(s) `key`, relative to `root_dir`.

    `key` arrives percent-decoded once (tornado decodes path arguments). Refused: absolute
    paths, `..` / `.` segments, backslashes, NUL, and any '%' left after decoding (a
    double-encoded `%252e%252e`). The resolved real path (symlinks followed) must stay
    inside the real `root_dir`.
    """
    root = Path(root_dir).resolve()
    bad = ("\x00" in key or "\\" in key or "%" in key or key.startswith(("/", "~"))
           or ":" in key.split("/", 1)[0])
    parts = key.split("/")
    if bad or any(p in ("..", ".", "") for p in parts):
        raise Refused(f"workspace path {key!r} is not a plain relative path",
                      "name the workspace by its folder relative to the Jupyter root, e.g. 'projects/ws1'")
    candidate = (root / Path(*parts)).resolve()
    if candidate == root or not candidate.is_relative_to(root):
        raise Refused(f"workspace path {key!r} leaves the Jupyter root folder",
                      "keep workspaces inside the folder Jupyter was started in")
    if not (candidate / "workspace.json").is_file():
        raise FileNotFoundError(f"no workspace at {key!r}")
    return candidate
