"""Drive a watcher process: drop new orders one at a time and time each until its outputs are fresh.

A drop is done when the order's report (`exchange/reports/<id>.json`) and its export
partition (`exports/alfas/<id>.csv`) exist: what a person waiting at the exchange sees.
Before the next drop the watcher must be idle again (the foundry lock free for a
while), so each drop is timed alone and never queues behind the previous one.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench import workload
from bench.runner import child_env

POLL = 0.005


@dataclass
class Session:
    """A watcher process and the lines it printed (read on a thread, so its pipe never fills)."""

    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    lines: list[str] = field(default_factory=list)

    def exited(self) -> RuntimeError:
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace").strip().splitlines()[-5:]
        return RuntimeError(f"watcher exited with {self.proc.returncode}: " + " | ".join(tail))

    def ready(self, word: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(word in line.lower() for line in self.lines):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False


def start(cmd: Sequence[str], cwd: Path) -> Session:
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop())
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=child_env(),
    )
    session = Session(proc, log)

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            session.lines.append(raw.decode(errors="replace"))

    threading.Thread(target=pump, daemon=True).start()
    return session


def stop(session: Session) -> None:
    if session.proc.poll() is None:
        session.proc.terminate()
        try:
            session.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            session.proc.kill()
            session.proc.wait()
    session.log.close()


def lock_free(project: Path) -> bool:
    """True when nobody holds the foundry lock (a build or a watcher's run)."""
    path = project / ".toyfoundry" / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def wait_idle(project: Path, session: Session, quiet: float = 0.4, timeout: float = 600) -> None:
    """Wait until the lock has been free for `quiet` seconds: the watcher's run is over."""
    deadline = time.monotonic() + timeout
    free_since: float | None = None
    while time.monotonic() < deadline:
        if session.proc.poll() is not None:
            raise session.exited()
        if lock_free(project):
            free_since = free_since or time.monotonic()
            if time.monotonic() - free_since >= quiet:
                return
        else:
            free_since = None
        time.sleep(0.02)
    raise TimeoutError("watcher never went idle")


def fresh(project: Path, order_id: str) -> bool:
    report = project / "exchange" / "reports" / f"{order_id}.json"
    part = project / ".toyfoundry" / "telemetry" / "quilt" / "exports" / "alfas" / f"{order_id}.csv"
    return report.exists() and part.exists()


def drop(project: Path, session: Session, n: int, k: int, timeout: float = 120) -> float:
    """Write order n + k and return the seconds until its report and exports are fresh."""
    started = time.perf_counter()
    order_id = workload.extra(project, n, k)
    deadline = started + timeout
    while not fresh(project, order_id):
        if session.proc.poll() is not None:
            raise session.exited()
        if time.perf_counter() > deadline:
            said = " | ".join(line.strip() for line in session.lines[-3:])
            raise TimeoutError(f"order {order_id} never came out fresh; the watcher said: {said}")
        time.sleep(POLL)
    return time.perf_counter() - started


def restart_cmd(project: Path, debounce: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.restart_watcher",
        str(project),
        "--debounce",
        str(debounce),
    ]
