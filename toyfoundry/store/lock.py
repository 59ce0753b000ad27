"""The foundry lock: one build at a time, so a watcher and a manual run never collide.

An exclusive `flock` on `.toyfoundry/lock`. The holder writes `PID PURPOSE` into
the file so a process that has to wait can say who it is waiting for. The lock
is reentrant within a process (a counter per path), because a doit backend
holds it from opening the dependency DB to closing it while the same process
may take it again around a task. Releasing leaves the file in place: removing
it would let a waiter and a newcomer lock two different files. A clean release
empties the note, so a note found on taking the lock means the holder before was
killed holding it: the taker then sweeps the temp files it left (`store.sweep`).

A waiter says whom it waits for and how long that holder has had the lock (the
note's mtime is when it was taken), again every `REPEAT_EVERY` seconds, and gives
up after a bound when one is set (`--lock-timeout`, `TOYFOUNDRY_LOCK_TIMEOUT`):
one line and a non-zero exit instead of a build queued for ever behind a stuck one.
"""

from __future__ import annotations

import fcntl
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from toyfoundry.errors import FoundryError

TIMEOUT_ENV = "TOYFOUNDRY_LOCK_TIMEOUT"
#: A waiter says again whom it waits for after this many seconds.
REPEAT_EVERY = 60.0
#: How often a waiter tries the lock again (it polls so that it can say and bound the wait).
_POLL = 0.1

_limit: ContextVar[float | None] = ContextVar("toyfoundry_lock_timeout", default=None)


class LockTimeout(FoundryError):
    """The lock stayed busy for longer than the caller would wait."""


def parse_timeout(text: str, source: str = "--lock-timeout") -> float:
    """Seconds from the command line or the environment: a finite number, zero or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise FoundryError(f"{source}: expected a number of seconds (0 or more), got {text!r:.40}")
    return value


@contextmanager
def lock_timeout(seconds: float | None) -> Iterator[None]:
    """Bound every wait for the foundry lock in this block (None: the environment's, else none)."""
    token = _limit.set(seconds)
    try:
        yield
    finally:
        _limit.reset(token)


def wait_limit() -> float | None:
    """How long a wait for the lock may last: the block's bound, else `TOYFOUNDRY_LOCK_TIMEOUT`."""
    limit = _limit.get()
    if limit is not None:
        return limit
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    return parse_timeout(raw, TIMEOUT_ENV) if raw else None


def _span(seconds: float) -> str:
    """A duration as people read it: 42s, 3m05s, 2h10m."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass
class _Held:
    fd: int
    count: int


_registry_lock = threading.RLock()
_held: dict[Path, _Held] = {}


def _forget_after_fork() -> None:
    # A forked child shares the parent's open file description; it must take
    # the lock on its own descriptor instead of believing it already holds it.
    _held.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _print_wait(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _holder(fd: int) -> str:
    """Who holds the lock and since when, from the `PID PURPOSE` note the holder wrote."""
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", errors="replace")
        since = os.fstat(fd).st_mtime
    except OSError:
        text, since = "", None
    pid, _, purpose = text.strip().partition(" ")
    purpose = "".join(c if c.isprintable() else "?" for c in purpose.strip())[:80]
    if not pid.isdigit():
        return "another process"
    who = f"pid {pid}: {purpose}" if purpose else f"pid {pid}"
    if since is not None:
        who += f", for {_span(time.time() - since)}"
    return who


def _after_a_dead_holder(path: Path, fd: int) -> None:
    """A clean release empties the note; one still there means its writer was killed
    holding the lock: sweep the temp files it may have left (see `store.sweep`)."""
    try:
        left = os.pread(fd, 1, 0)
    except OSError:
        return
    if not left or path.parent.name != ".toyfoundry":
        return
    from toyfoundry.store.layout import Layout
    from toyfoundry.store.sweep import sweep_temp_files

    with suppress(OSError):  # best effort: a temp file is never read, only untidy
        sweep_temp_files(Layout(path.parent.parent.absolute()))


class FoundryLock:
    """The foundry lock as an object, for holders whose span is not one `with` block."""

    def __init__(
        self,
        path: Path,
        *,
        purpose: str = "build",
        wait_message: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.path = path
        self.purpose = purpose
        self.wait_message = wait_message or _print_wait
        #: seconds to wait at most; None: `wait_limit()` when the lock is taken
        self.timeout = timeout
        self._key = path.absolute()
        self._depth = 0

    def acquire(self) -> None:
        """Take the lock, saying whom we wait for if it is busy; nested calls just count."""
        with _registry_lock:
            held = _held.get(self._key)
            if held is not None:
                held.count += 1
            else:
                _held[self._key] = _Held(self._lock_file(), 1)
            self._depth += 1

    def _lock_file(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._wait(fd)
            _after_a_dead_holder(self.path, fd)
            note = f"{os.getpid()} {self.purpose}\n".encode()
            # Advisory text for waiters, not durable state: no fsync, and a full
            # disk must not stop a build that already holds the lock.
            with suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, note, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _wait(self, fd: int) -> None:
        """Poll for the lock, saying whom we wait for, until it is ours or the bound is reached."""
        limit = self.timeout if self.timeout is not None else wait_limit()
        start = time.monotonic()
        said = start
        self.wait_message(f"toyfoundry: waiting for the foundry lock (held by {_holder(fd)})")
        while True:
            now = time.monotonic()
            if limit is not None and now - start >= limit:
                raise LockTimeout(
                    f"toyfoundry: error: the foundry lock is still held by {_holder(fd)};"
                    f" gave up after {_span(now - start)} (lock timeout {limit:g}s)"
                )
            if now - said >= REPEAT_EVERY:
                said = now
                self.wait_message(
                    f"toyfoundry: still waiting for the foundry lock after {_span(now - start)}"
                    f" (held by {_holder(fd)})"
                )
            pause = _POLL if limit is None else max(0.0, min(_POLL, limit - (now - start)))
            time.sleep(pause)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            return

    def release(self) -> None:
        """Undo one `acquire`; the last one clears the holder note and unlocks."""
        with _registry_lock:
            if self._depth == 0:
                raise RuntimeError(f"foundry lock {self.path} released more often than acquired")
            self._depth -= 1
            held = _held[self._key]
            held.count -= 1
            if held.count:
                return
            del _held[self._key]
            try:
                with suppress(OSError):
                    os.ftruncate(held.fd, 0)
                fcntl.flock(held.fd, fcntl.LOCK_UN)
            finally:
                os.close(held.fd)

    @property
    def held(self) -> bool:
        """True while this object holds at least one acquisition."""
        return self._depth > 0

    def __enter__(self) -> FoundryLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextmanager
def foundry_lock(
    path: Path,
    *,
    purpose: str = "build",
    wait_message: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the foundry lock for the `with` block (reentrant within this process)."""
    lock = FoundryLock(path, purpose=purpose, wait_message=wait_message)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()
