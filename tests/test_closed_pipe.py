"""A reader that goes away early (`doit clean | head -1`) ends the process quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, doit, executed, make_project


def piped_into_head(root: Path, *argv: str) -> tuple[int, str]:
    """Run ARGV with its stdout read for one line and then closed, as `| head -1` does."""
    proc = subprocess.Popen(
        argv,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=120), err


def test_doit_clean_into_a_closed_pipe_has_no_traceback(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p").root
    assert doit(root).code == 0
    code, err = piped_into_head(root, sys.executable, "-m", "doit", "clean")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code in (0, -13), code  # finished, or ended by SIGPIPE as `cat` is
    # whatever the clean removed before it ended, the next build restores it
    again = doit(root)
    assert again.code == 0, again.err
    assert executed(doit(root).out) == []
