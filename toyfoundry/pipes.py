"""Output into a closed pipe ends the process quietly, as it ends `cat` or `make`.

Python ignores SIGPIPE and raises `BrokenPipeError` instead, which doit prints as a
traceback: `doit clean | head` or `toyfoundry review list | head` would end in one.
With the signal's default action back, the process ends when its reader has gone,
with the shell's usual status (141). A build ended this way resumes like any killed
build: every artefact is written whole and every finished task is in the DB.
"""

from __future__ import annotations

import signal
import threading


def end_quietly_on_closed_pipe() -> None:
    """Restore SIGPIPE's default action (only the main thread may set a handler)."""
    if hasattr(signal, "SIGPIPE") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
