"""Containment: every file the server reads or writes must resolve (symlinks followed) inside its root.

A shared workspace (unpacked from an archive, cloned, on a hub) is untrusted input: its
manifest may name absolute or `../` paths and its files may be symlinks. The rules match
Jupyter's own `/files` handler: nothing outside the root, nothing hidden unless
`ContentsManager.allow_hidden` (decided by `jupyter_core.paths.is_hidden`, as Jupyter does).
Errors name the URL part or the chip id, never a path on the server.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CuratorError


class Refused(CuratorError):
    """A request path that is not a plain relative path (answered with HTTP 400)."""

    status = 400


class NotServed(CuratorError):
    """A file that exists but lies outside the root or is hidden (HTTP 403)."""

    status = 403


class Missing(CuratorError):
    """Nothing to serve at that name, or it cannot be reached (HTTP 404)."""

    status = 404


def real(path: str | os.PathLike) -> Path:
    """`path` with every symlink followed; loops, over-long names and odd bytes raise Missing."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except (OSError, RuntimeError, ValueError):
        raise Missing("the requested file does not exist or cannot be reached",
                      "check the workspace and chip id; the server reads only existing files under its root") from None


def hidden(path: Path, root: Path) -> bool:
    """Jupyter's rule: a name starting with '.' (or flagged hidden) anywhere below `root`."""
    from jupyter_core.paths import is_hidden

    try:
        return is_hidden(str(path), str(root))
    except (OSError, ValueError):
        return True


def contained(root: str | os.PathLike, path: str | os.PathLike, allow_hidden: bool = False,
              what: str = "the file") -> Path:
    """The real path of `path` (absolute, or relative to `root`) if it lies inside the real `root`.

    Both the path as written and the path after symlinks must stay inside and (unless
    `allow_hidden`) visible, so a visible link to a hidden file is refused as Jupyter does.
    """
    jail = real(root)
    p = Path(path)
    written = Path(os.path.normpath(p if p.is_absolute() else jail / p))
    resolved = real(written)
    for q in (written, resolved):
        if q != jail and not q.is_relative_to(jail):
            raise NotServed(f"{what} lies outside the folder Jupyter serves",
                            "keep chips inside the Jupyter root; a shared workspace cannot point elsewhere")
        if not allow_hidden and hidden(q, jail):
            raise NotServed(f"{what} is in a hidden folder",
                            "move it out of the hidden folder, or start Jupyter with "
                            "--ContentsManager.allow_hidden=True")
    return resolved


def resolve_workspace(root_dir: str | Path, key: str, allow_hidden: bool = False) -> Path:
    """The workspace folder for URL segment(s) `key`, relative to `root_dir`.

    `key` arrives percent-decoded once (tornado decodes path arguments). Refused: absolute
    paths, `..` / `.` segments, backslashes, NUL, and any '%' left after decoding (a
    double-encoded `%252e%252e`). The resolved real path (symlinks followed) must stay
    inside the real `root_dir`; hidden folders are not found unless `allow_hidden`.
    """
    root = real(root_dir)
    bad = ("\x00" in key or "\\" in key or "%" in key or key.startswith(("/", "~"))
           or ":" in key.split("/", 1)[0])
    parts = key.split("/")
    if bad or any(p in ("..", ".", "") for p in parts):
        raise Refused(f"workspace path {key!r} is not a plain relative path",
                      "name the workspace by its folder relative to the Jupyter root, e.g. 'projects/ws1'")
    not_found = Missing(f"no workspace at {key!r} under the Jupyter root",
                        "check the path; it is relative to the folder Jupyter serves")
    try:
        candidate = real(root / Path(*parts))
    except Missing:
        raise not_found from None
    if candidate == root or not candidate.is_relative_to(root):
        raise Refused(f"workspace path {key!r} leaves the Jupyter root folder",
                      "keep workspaces inside the folder Jupyter was started in")
    if not allow_hidden and (hidden(root / Path(*parts), root) or hidden(candidate, root)):
        raise not_found  # as Jupyter's /files answers for hidden paths: not there
    try:
        contained(candidate, "workspace.json", allow_hidden=True)
    except (Missing, NotServed):
        raise not_found from None
    return candidate
