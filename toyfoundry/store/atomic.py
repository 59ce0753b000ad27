"""Atomic, durable file writes: readers see the old bytes or the new bytes, never a mix."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import orjson

from toyfoundry.store import fsio

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
_temp_serial = itertools.count()


#: Folders whose fsync waits for the end of the current `grouped_folder_syncs` block.
_pending: ContextVar[set[Path] | None] = ContextVar("toyfoundry_pending_dir_syncs", default=None)


@contextmanager
def grouped_folder_syncs() -> Iterator[None]:
    """Fsync each folder written in the block once, when the block ends.

    A task that writes seven files into four folders then pays four folder fsyncs,
    not seven. Every file is still fsynced before its rename, and every folder
    before the block returns, so a caller that records success afterwards (doit's
    DB, after the action) never records an artefact that is not durable yet.
    """
    if _pending.get() is not None:
        yield
        return
    folders: set[Path] = set()
    token = _pending.set(folders)
    try:
        yield
    finally:
        _pending.reset(token)
        for folder in sorted(folders):
            _fsync_folder(folder)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable: the entry lives in the folder, not the file."""
    pending = _pending.get()
    if pending is not None:
        pending.add(folder)
        return
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsio.fsync(fd)
    finally:
        os.close(fd)


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically; False, file untouched, if it already holds them.

    Leaving an identical file alone keeps its mtime, so doit's md5 checker can
    skip re-hashing it and watchers see no event.
    """
    if _same_bytes(path, data):
        return False
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{path.name}.{os.getpid()}.{next(_temp_serial)}.tmp"
    fd = -1
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        fsio.write_all(fd, data)
        fsio.fsync(fd)
        os.close(fd)
        fd = -1
        fsio.replace(temp, path)
        fsync_dir(folder)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    return True


def dumps_canonical(obj: object) -> bytes:
    """Sorted keys, two-space indent, trailing newline: equal data gives equal bytes."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return orjson.dumps(obj, option=_CANONICAL) + b"\n"


def write_json_atomic(path: Path, obj: object) -> bool:
    """`write_atomic` of the canonical JSON of `obj`."""
    return write_atomic(path, dumps_canonical(obj))


def remove_file(path: Path) -> bool:
    """Remove `path` durably; a missing file is fine. True if this call removed it."""
    try:
        path.unlink()
        removed = True
    except FileNotFoundError:
        removed = False
    if path.parent.is_dir():
        fsync_dir(path.parent)
    return removed
