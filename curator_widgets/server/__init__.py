"""Jupyter server extension: map tiles and chip thumbnails over HTTP for the widgets.

Enabled on install by `etc/jupyter/jupyter_server_config.d/curator_widgets.json`; check with
`jupyter server extension list`. Routes (under the server's base URL, authenticated):

- `/curator/tiles/{source}/{layer}/{date}/{matrix}/{z}/{row}/{col}.jpg[?wrap=1]`
- `/curator/thumbs/{workspace}/{chip_id}[?size=128]`
"""

from __future__ import annotations

import os
from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "curator_widgets.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the handlers; tell kernels started by this server where its root is."""
    from .handlers import setup_handlers

    root = serverapp.root_dir
    # hidden files follow the contents manager, as Jupyter's /files handler does
    allow_hidden = bool(getattr(serverapp.contents_manager, "allow_hidden", False))
    setup_handlers(serverapp.web_app, root, allow_hidden=allow_hidden)
    # kernels inherit the server's environment: widgets read these to build thumbnail URLs
    os.environ["CURATOR_SERVER_ROOT"] = os.path.abspath(root)
    os.environ["CURATOR_SERVER_BASE_URL"] = serverapp.base_url
    serverapp.log.info("curator_widgets: serving /curator/tiles and /curator/thumbs (root %s)", root)


# the name older notebook servers look for
load_jupyter_server_extension = _load_jupyter_server_extension
