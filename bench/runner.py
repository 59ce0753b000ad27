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
    #: the peak of the summed PSS of the child and its descendants (its workers), when sampled
    tree_pss_mb: float | None = None
    #: the machine's busy core-seconds (user + system, every process) while the child ran,
    #: and its idle ones (idle + I/O wait), from /proc/stat (None without it)
    busy_s: float | None = None
    idle_s: float | None = None
    #: the child's own CPU time (user + system, from `wait4`: not its workers', see `busy_s`)
    cpu_s: float | None = None

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
    tree_memory: bool = False,
) -> Run:
    """Run a child to its end with output in temp files (no pipe to fill), timed by perf_counter.

    `tree_memory`: also sample the memory of the child's whole process tree (see `TreeMemory`).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        cpu_before = machine_cpu()
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=child_env(env)
        )
        sampler = TreeMemory(proc.pid) if tree_memory and TreeMemory.available() else None
        if sampler is not None:
            sampler.start()
        try:
            code, rusage = _wait(proc, started + timeout)
        finally:
            if sampler is not None:
                sampler.stop()
        wall = time.perf_counter() - started
        cpu_after = machine_cpu()
        busy = idle = None
        if cpu_before is not None and cpu_after is not None:
            busy, idle = (
                after - before for after, before in zip(cpu_after, cpu_before, strict=True)
            )
        out.seek(0)
        err.seek(0)
        return Run(
            list(cmd),
            code,
            wall,
            _maxrss_mb(rusage),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            tree_pss_mb=sampler.peak_mb if sampler is not None else None,
            busy_s=busy,
            idle_s=idle,
            cpu_s=rusage.ru_utime + rusage.ru_stime,  # type: ignore[attr-defined]
        )


def machine_cpu() -> tuple[float, float] | None:
    """The machine's busy and idle core-seconds since boot, from /proc/stat's `cpu` line
    (Linux; None elsewhere). Busy is user, nice, system, irq and softirq time: a build's
    workers are the fork server's children, which `wait4`'s rusage of doit misses, and the
    kernel's writeback of the build's files runs in threads of its own; idle counts I/O wait.
    Every process on the machine counts, so read it on a host that runs nothing else."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu" or len(fields) < 8:
        return None
    user, nice, system, idle, iowait, irq, softirq = (int(v) for v in fields[1:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, (idle + iowait) / tick


class TreeMemory(threading.Thread):
    """The peak, over a child's life, of the PSS summed over it and its descendants (Linux).

    `wait4`'s peak RSS is one process's: a parallel build's workers each hold memory of
    their own, and RSS counts the pages they share with the parent once in each. PSS
    splits each shared page among its sharers, so the sum is what the tree holds.
    Sampled every `interval` seconds from `/proc`, so a shorter peak can be missed.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self._done = threading.Event()

    @staticmethod
    def available() -> bool:
        return Path("/proc/self/smaps_rollup").is_file()

    def run(self) -> None:
        while not self._done.is_set():
            total = sum(_pss_kib(pid) for pid in _tree(self.pid)) / 1024
            self.peak_mb = max(self.peak_mb, total)
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(root: int) -> list[int]:
    """`root` and every live descendant, from the parent pids in `/proc/<pid>/stat`."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the fields follow its last ")"
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass  # gone meanwhile, or not ours to read
    return 0


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
