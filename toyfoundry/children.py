"""Children of the workers' fork server: how one dies with the build, and whether a server runs.

A parallel build starts a fork server (`multiprocessing`'s `forkserver`, see
`graph.workers`): a fresh interpreter that imports the actions once and forks each
child from that state, so a child holds the imports and never the build's graph. The
build's workers are such children, and so is the quilt's ledger reader (`telemetry.quilt.aside`).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from typing import Any

_PR_SET_PDEATHSIG = 1


def running_server() -> tuple[Any, int] | None:
    """The fork server's multiprocessing context and pid when one runs in this process,
    else None (a serial build: starting one costs its imports, more than a caller that
    only asks saves)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not isinstance(pid, int):
        return None
    return multiprocessing.get_context("forkserver"), pid


def die_with(parent: int | None) -> None:
    """Be killed when the fork server dies, and let it die with the build.

    The server ends when no process holds its "alive" pipe any more; each child inherits
    one end of it, which would keep it, and so the children, alive after a killed build.
    """
    from multiprocessing import forkserver

    server: Any = forkserver._forkserver
    alive = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive, int):
        with contextlib.suppress(OSError):
            os.close(alive)
        server._forkserver_alive_fd = None
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)
