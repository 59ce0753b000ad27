"""Child processes for the suite: each one's wall time, peak memory and the tasks doit ran."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One finished child: `maxrss_mb` is that child's own peak, from `wait4`, not the suite's."""

    cmd: list[str]
    code: int
    wall: float
    maxrss_mb: float
    out: str
    err: str
    killed: bool = False
    seen: list[str] = field(default_factory=list)

    @property
    def executed(self) -> list[str]:
        return executed(self.out)

    def check(self) -> Run:
        if self.code != 0:
            tail = "\n".join((self.err or self.out).strip().splitlines()[-15:])
            raise RuntimeError(f"{' '.join(self.cmd)} exited {self.code}:\n{tail}")
        return self


def executed(output: str) -> list[str]:
    """Names of the tasks doit ran (the `.  name` lines of the console and foundry reporters)."""
    return [line[3:].strip() for line in output.splitlines() if line.startswith(".  ")]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The product under test is this tree, whatever is installed; output unbuffered for streaming."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOYFOUNDRY_")}
    # as installed: Python keeps compiled bytecode, for our package and the bare graph alike;
    # without it every run would compile the package's modules from source again
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


def doit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "doit", *args]


def _maxrss_mb(rusage: object) -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes
    kib = float(rusage.ru_maxrss)  # type: ignore[attr-defined]
    return kib / 1024 / (1024 if sys.platform == "darwin" else 1)


def run(
    cmd: Sequence[str],
    cwd: Path,
    *,
    timeout: float = 3600,
    env: dict[str, str] | None = None,
) -> Run:
    """Run a child to its end with output in temp files (no pipe to fill), timed by perf_counter."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=child_env(env)
        )
        code, rusage = _wait(proc, started + timeout)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Run(
            list(cmd),
            code,
            wall,
            _maxrss_mb(rusage),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def run_until(
    cmd: Sequence[str],
    cwd: Path,
    stop: Callable[[list[str]], bool],
    *,
    timeout: float = 3600,
    env: dict[str, str] | None = None,
) -> Run:
    """Run a doit child and SIGKILL it as soon as `stop(tasks started so far)` says so.

    SIGKILL, not SIGINT: a crash or an OOM kill gives doit no chance to save its DB,
    which is the case a resumable backend is for.
    """
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=child_env(env),
        )
        assert proc.stdout is not None
        lines: list[str] = []
        seen: list[str] = []
        killed = False
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.startswith(".  "):
                seen.append(line[3:].strip())
                if stop(seen):
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    break
        rest = proc.stdout.read() if not killed else b""
        lines.append(rest.decode(errors="replace"))
        code, rusage = _wait(proc, started + timeout)
        wall = time.perf_counter() - started
        err.seek(0)
        return Run(
            list(cmd),
            code,
            wall,
            _maxrss_mb(rusage),
            "".join(lines),
            err.read().decode(errors="replace"),
            killed=killed,
            seen=seen,
        )


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int, object]:
    """Block in `wait4` on this child alone, so its rusage is its own; kill it at the deadline."""
    timer = threading.Timer(max(0.0, deadline - time.perf_counter()), proc.kill)
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code == -signal.SIGKILL and time.perf_counter() >= deadline:
        raise TimeoutError(f"{proc.args!r} did not finish in time")
    return code, rusage
