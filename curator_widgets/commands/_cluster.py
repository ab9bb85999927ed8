"""`--scheduler`: the Dask cluster a command's cluster steps run on (see docs/scale.md)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_scheduler(p: argparse.ArgumentParser, what: str) -> None:
    """The `--scheduler ADDRESS` option, `what` saying which part of the command runs on the cluster."""
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help=f"run {what} on this Dask cluster: a scheduler address (tcp://host:8786) or 'local' "
                        "(a LocalCluster of this machine's cores); overrides $CURATOR_DASK_SCHEDULER")


def client_of(args: argparse.Namespace) -> Any:
    """The cluster for this command (connected now, so a bad address fails before any work), or False
    for one process: --scheduler, else $CURATOR_DASK_SCHEDULER."""
    from ..cluster import SCHEDULER_ENV, get_client
    from ..errors import CuratorError

    given = getattr(args, "scheduler", None)
    address = given or os.environ.get(SCHEDULER_ENV, "").strip()
    if not address:
        return False
    try:
        return get_client(address)
    except CuratorError as e:
        if not given:
            raise
        raise CuratorError(e.problem, "start it (`dask scheduler`), fix --scheduler, or leave --scheduler out to "
                                      "run in this process") from None
