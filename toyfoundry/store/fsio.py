"""The store's durable syscalls (write, fsync, rename) behind one seam for fault injection.

Every write, fsync and rename of durable state goes through `write_all`, `fsync`
(or `fsync_many`, which flushes a set of files with one `syncfs`) and `replace`,
and every write transaction of the dependency DB passes `commit_point` first.
Setting `TOYFOUNDRY_FAULT` makes the Nth call (1-based, counted per process) of
one operation fail, e.g. `enospc:write:3`, `eio:fsync:1`, `enospc:replace:2` or
`enospc:commit:4`;
several faults may be joined with commas. The variable is read once, on first
use; `reset_faults()` forgets it and the call counts.

A failed fsync is fatal and is never retried: after a failed fsync the kernel
may already have dropped the dirty pages, so a retry that succeeds proves
nothing (the PostgreSQL "fsyncgate" lesson). Callers let the error propagate.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import cast

FAULT_ENV = "TOYFOUNDRY_FAULT"
OPERATIONS = ("write", "fsync", "replace", "commit")

_state_lock = threading.Lock()
_faults: dict[tuple[str, int], int] | None = None
_calls: Counter[str] = Counter()


def _parse(spec: str) -> dict[tuple[str, int], int]:
    """`kind:op:n[,kind:op:n...]` to {(op, n): errno}; a malformed spec raises, not ignored."""
    faults: dict[tuple[str, int], int] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 3:
            raise ValueError(f"{FAULT_ENV}: expected KIND:OPERATION:N, got {item!r}")
        kind, op, nth = parts
        code = getattr(errno, kind.upper(), None)
        if not isinstance(code, int):
            raise ValueError(f"{FAULT_ENV}: unknown errno name {kind!r}")
        if op not in OPERATIONS:
            raise ValueError(f"{FAULT_ENV}: operation must be one of {OPERATIONS}, got {op!r}")
        if not nth.isdigit() or int(nth) < 1:
            raise ValueError(f"{FAULT_ENV}: call number must be a positive integer, got {nth!r}")
        faults[(op, int(nth))] = code
    return faults


def _check(op: str) -> None:
    """Count one call of `op` and raise the injected error if this is the chosen call."""
    global _faults
    with _state_lock:
        if _faults is None:
            _faults = _parse(os.environ.get(FAULT_ENV, ""))
        if not _faults:
            return
        _calls[op] += 1
        code = _faults.get((op, _calls[op]))
    if code is not None:
        raise OSError(code, f"{os.strerror(code)} (injected by {FAULT_ENV})")


def reset_faults() -> None:
    """Re-read `TOYFOUNDRY_FAULT` on next use and restart the call counts."""
    global _faults
    with _state_lock:
        _faults = None
        _calls.clear()


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: `os.write` may write less than asked (signals, pipes, full disks)."""
    _check("write")
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync(fd: int) -> None:
    """Flush `fd` to stable storage; an error here is fatal to the caller, never retried."""
    _check("fsync")
    os.fsync(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's `syncfs(2)` (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast(Callable[[int], int], function)


_syncfs = _load_syncfs()
#: Whether `fsync_many(..., whole=True)` flushes whole filesystems (Linux's `syncfs`).
HAS_SYNCFS = _syncfs is not None


def fsync_many(fds: Sequence[int], *, whole: bool = False) -> None:
    """Flush several files at once: one `syncfs` per filesystem where the platform has it
    (a single journal commit instead of one per file), otherwise an fsync of each.
    `whole`: `syncfs` even for one descriptor, to flush other data written on its
    filesystem too (see `atomic.defer_data_flush`).

    Counted and failed as one `fsync` per flush call for fault injection; like
    `fsync`, an error is fatal and never retried.
    """
    if (len(fds) <= 1 and not whole) or _syncfs is None:
        for fd in fds:
            fsync(fd)
        return
    devices: dict[int, int] = {}
    for fd in fds:
        devices.setdefault(os.fstat(fd).st_dev, fd)
    for fd in devices.values():
        _check("fsync")
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}")


def commit_point() -> None:
    """Count one write transaction of the dependency DB (SQLite writes and syncs it itself),
    failing it here when a fault is injected, as a full disk would fail it."""
    _check("commit")


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Atomically rename `src` over `dst` (same filesystem)."""
    _check("replace")
    os.replace(src, dst)
