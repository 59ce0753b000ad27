"""Atomic, durable file writes: readers see the old bytes or the new bytes, never a mix."""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from toyfoundry.store import fsio

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
_temp_serial = itertools.count()
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC


@dataclass
class Block:
    """What waits for the end of a `grouped_folder_syncs` block: folders to flush, and
    whether file data (a ledger append) waits for the same flush."""

    folders: set[str] = field(default_factory=set)  # as text: a Path each costs more
    data: bool = False


_pending: ContextVar[Block | None] = ContextVar("toyfoundry_pending_syncs", default=None)
_noting: ContextVar[Callable[[Path, bytes], None] | None] = ContextVar(
    "toyfoundry_noting_writes", default=None
)


@dataclass
class Stage:
    """A build worker's task's writes of its own targets, left as flushed-later temp files.

    Inside `staging`, `write_many_atomic` writes each of the task's targets to a temp
    file next to it and goes on: no flush, no rename. The worker's flusher thread then
    flushes the temp files of every task that finished meanwhile with one `syncfs` and
    renames them in place (`publish`), while the worker runs its next task; a worker
    used to wait for that flush itself, a third of its time at 1,000 orders. Every file
    is still durable before its rename, and every rename before the build records the
    task, so a crash leaves each target old or new, as before.

    What the task reads back of a staged write, it reads from here (`read_whole`, the
    equality check of a second write), and a removal drops the staged write first. Only
    the task's declared targets are staged (`wanted`, as the writers name them): no
    other task reads them before this one is recorded, which needs its result.
    """

    wanted: frozenset[str]
    #: `noting_writes`'s callback, called for each staged file once it is in place
    note: Callable[[Path, bytes], None] | None = None
    #: path as text -> (path, its temp file, its folder, the bytes), in the order of the
    #: last write of each
    pending: dict[str, tuple[Path, str, str, bytes]] = field(default_factory=dict)

    def drop(self, key: str) -> None:
        """Forget the staged write of `key` (written again, or removed), and its temp file."""
        entry = self.pending.pop(key, None)
        if entry is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry[1])


_staged: ContextVar[Stage | None] = ContextVar("toyfoundry_staged_writes", default=None)


@contextmanager
def staging(stage: Stage) -> Iterator[Stage]:
    """Stage the block's writes of `stage.wanted` (see `Stage`); `publish` puts them in place."""
    token = _staged.set(stage)
    try:
        yield stage
    finally:
        _staged.reset(token)


def publish(stages: Sequence[Stage]) -> list[tuple[set[str], OSError | None]]:
    """Put the staged writes of several tasks in place: one flush of every temp file, then
    each renamed over its target in order. For each stage, the folders its renames went
    to (to flush before the task is recorded, see `deferred_folder_syncs`) and the error
    that failed it, if any: a failed flush fails them all and renames nothing (a failed
    fsync is never retried, see `fsio`); a failed rename fails its own stage, whose
    remaining temp files are removed. Each stage is left empty."""
    entries = [entry for stage in stages for entry in stage.pending.values()]
    failed: OSError | None = None
    if entries:
        try:
            _flush_files(sorted({folder for _, _, folder, _ in entries}), [e[1] for e in entries])
        except OSError as exc:
            failed = exc
    published: list[tuple[set[str], OSError | None]] = []
    for stage in stages:
        folders: set[str] = set()
        error = failed
        staged, stage.pending = list(stage.pending.values()), {}
        for path, temp, folder, data in staged:
            if error is None:
                try:
                    fsio.replace(temp, path)
                except OSError as exc:
                    error = exc
                else:
                    folders.add(folder)
                    if stage.note is not None:
                        stage.note(path, data)
                    continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        published.append((folders, error))
    return published


def _flush_files(folders: Sequence[str], temps: Sequence[str]) -> None:
    """Make the data of closed files durable: one `syncfs` per filesystem of their folders
    where Linux has it, otherwise an fsync of each file."""
    if fsio.HAS_SYNCFS:
        _fsync_folders(folders, whole=True)
        return
    for temp in temps:
        fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fsio.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def noting_writes(note: Callable[[Path, bytes], None]) -> Iterator[None]:
    """Call `note(path, data)` for each file `write_many_atomic` leaves holding `data` (written
    or already equal) in the block, once it is in place: a build worker tells the build
    process the content hash of what it wrote, which would otherwise read it back."""
    token = _noting.set(note)
    try:
        yield
    finally:
        _noting.reset(token)


@contextmanager
def grouped_folder_syncs() -> Iterator[None]:
    """Fsync each folder written in the block once, when the block ends.

    A task that writes seven files into four folders then pays one flush of the
    four folders (a `syncfs` where Linux has it), not seven fsyncs. Every file's
    data is still durable before its rename, and every folder before the block
    returns, so a caller that records success afterwards (doit's DB, after the
    action) never records an artefact that is not durable yet.
    """
    if _pending.get() is not None:
        yield
        return
    block = Block()
    token = _pending.set(block)
    try:
        yield
    finally:
        _pending.reset(token)
        _fsync_folders(sorted(block.folders), whole=block.data)


@contextmanager
def deferred_folder_syncs() -> Iterator[Block]:
    """Collect what `grouped_folder_syncs` blocks inside would flush, and flush none of it:
    the caller makes it durable later with `flush_deferred`, before anything relies on it
    (a build worker's task: the build process flushes several tasks' folders at once,
    before it records them; see `graph.backend`). File data is still durable before
    each rename."""
    block = Block()
    token = _pending.set(block)
    try:
        yield block
    finally:
        _pending.reset(token)


def flush_deferred(folders: Iterable[str], *, data: bool) -> None:
    """Flush what `deferred_folder_syncs` collected (from any process): each folder once,
    their filesystems whole when file data waits too."""
    _fsync_folders(sorted(set(folders)), whole=data)  # as strings: a Path each costs more


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in `folder` durable: the entry lives in the folder, not the file."""
    block = _pending.get()
    if block is not None:
        block.folders.add(os.fspath(folder))
        return
    _fsync_folders([os.fspath(folder)])


def defer_data_flush(path: Path) -> bool:
    """Leave the flush of data just written in place to `path` (a ledger append) to the end
    of the current block, whose one `syncfs` covers it with the folders; False outside a
    block or where there is no `syncfs`, and the caller flushes it now.

    A task appends to two or three ledgers; each append's own fsync cost as much as the
    flush of all the task's folders. The data is still durable before the block returns.
    """
    block = _pending.get()
    if block is None or not fsio.HAS_SYNCFS:
        return False
    block.folders.add(os.fspath(path.parent))
    block.data = True
    return True


def _fsync_folders(folders: Sequence[str | Path], *, whole: bool = False) -> None:
    """Make the folders' entries durable: one fsync for one folder, one `syncfs` for several
    (see `fsio.fsync_many`); a folder removed meanwhile has nothing left to make durable.
    `whole`: file data waits too, so flush the folders' filesystems whole (`syncfs`).

    A `syncfs` needs one open folder of each filesystem: the others are only `stat`ed for
    their device, not opened, `fstat`ed and closed (a task flushes up to a dozen folders)."""
    groups: list[list[str | Path]] = [[folder] for folder in folders]
    if len(folders) > 1 and fsio.HAS_SYNCFS:
        by_device: dict[int, list[str | Path]] = {}
        for folder in folders:
            try:
                by_device.setdefault(os.stat(folder).st_dev, []).append(folder)
            except FileNotFoundError:
                continue
        groups, whole = list(by_device.values()), True
    fds: list[int] = []
    try:
        for group in groups:  # the first folder of each group that opens
            for folder in group:
                try:
                    fds.append(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                    break
                except FileNotFoundError:
                    continue
        fsio.fsync_many(fds, whole=whole)
    finally:
        for fd in fds:
            os.close(fd)


def read_whole(path: str | os.PathLike[str]) -> bytes:
    """A foundry file's bytes by plain syscalls: open, fstat, one read, close.

    A buffered `open()` or `Path.read_bytes()` adds an fstat, a failing ioctl, an lseek
    and a second read to every file; the actions read several of their own files an order.
    A short read of a regular file is its end, so one read of size + 1 bytes takes it whole.
    """
    stage = _staged.get()
    if stage is not None and stage.pending:
        entry = stage.pending.get(os.fspath(path))
        if entry is not None:
            return entry[3]
    fd = os.open(path, _READ_FLAGS)
    try:
        return _read_rest(fd, os.fstat(fd).st_size)
    except OSError as err:  # a folder, say: named in the error as a buffered open names it
        raise type(err)(err.errno, err.strerror, path) from None
    finally:
        os.close(fd)


def _read_rest(fd: int, size: int) -> bytes:
    """The bytes from `fd`'s offset to its end, `size` the expected length."""
    want = size + 1
    data = os.read(fd, want)
    if len(data) < want:
        return data
    chunks = [data]  # the file grew since its fstat: read on to its end
    while True:
        data = os.read(fd, want)
        chunks.append(data)
        if len(data) < want:
            return b"".join(chunks)


def _same_bytes(path: Path, data: bytes) -> bool:
    """Whether `path` holds `data` already: one open (a failing one for a new file), an
    fstat and, when the sizes match, one read. Non-blocking, so a FIFO there is not
    waited on: it is no regular file and gets replaced."""
    try:
        fd = os.open(path, _READ_FLAGS | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        size = info.st_size
        return stat.S_ISREG(info.st_mode) and size == len(data) and _read_rest(fd, size) == data
    except OSError:
        return False
    finally:
        os.close(fd)


def _pid() -> int:
    """This process's id, asked of the kernel once (and again in a forked child)."""
    global _own_pid
    if _own_pid is None:
        _own_pid = os.getpid()
    return _own_pid


def _forget_pid() -> None:
    global _own_pid
    _own_pid = None


_own_pid: int | None = None
os.register_at_fork(after_in_child=_forget_pid)


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _open_temp(path: Path, mode: int) -> tuple[str, str, int]:
    """A fresh temp file next to `path`: its folder's and its own name (as text, made from
    the path's text: a `Path` join and `parent` cost more than the open), and its fd. The
    folder is made only when the open says it is missing (a mkdir per write costs a
    syscall on every artefact of every build)."""
    head, sep, name = os.fspath(path).rpartition(os.sep)
    temp = f"{head}{sep}.{name}.{_pid()}.{next(_temp_serial)}.tmp"
    folder = head or sep or os.curdir  # what `path.parent` names
    try:
        return folder, temp, os.open(temp, _TEMP_FLAGS, mode)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        return folder, temp, os.open(temp, _TEMP_FLAGS, mode)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> bool:
    """Write `data` to `path` atomically; False, file untouched, if it already holds them.

    Leaving an identical file alone keeps its mtime, so doit's content checker can
    skip re-hashing it and watchers see no event.
    """
    return bool(write_many_atomic([(path, data)], mode=mode))


def write_many_atomic(
    items: Iterable[tuple[Path, bytes]],
    *,
    mode: int = 0o666,
    modes: Mapping[Path, int] | None = None,
    absent: Container[Path] = (),
) -> list[Path]:
    """Write several files atomically; the ones that changed, in order.

    Each file is written to a temp file in its folder, all temp files are flushed
    to stable storage, and only then is each renamed over its target, in the
    order given, so a crash leaves every target old or new, never torn, as with
    one fsync per file. The flush is `fsio.fsync_many`: one `syncfs` for the set
    where Linux has it, which costs about a third of an fsync per file for a
    task's handful of outputs. A file that already holds its bytes is left alone
    (its mtime kept). `modes` gives some files a mode of their own (`mode` for the rest).
    `absent`: files the caller has just found missing (the doctrine's `lstat`), written
    without the open that would find them missing again.
    """
    note = _noting.get()
    stage = _staged.get()
    if stage is not None:
        items = list(items)
        if all(os.fspath(path) in stage.wanted for path, _ in items):
            return _stage_writes(stage, items, mode, modes, absent)
        for path, _ in items:  # written here: a staged write of it would come after
            stage.drop(os.fspath(path))
    elif note is not None:
        items = list(items)
    todo = [(path, data) for path, data in items if path in absent or not _same_bytes(path, data)]
    temps: list[str] = []
    folders: list[str] = []
    open_fds: list[int] = []
    try:
        for path, data in todo:
            folder, temp, fd = _open_temp(path, modes.get(path, mode) if modes else mode)
            temps.append(temp)
            folders.append(folder)
            open_fds.append(fd)
            fsio.write_all(fd, data)
        fsio.fsync_many(open_fds)
        while open_fds:
            os.close(open_fds.pop())
        with grouped_folder_syncs():  # each folder once, here or at the caller's block end
            for (path, _), temp, folder in zip(todo, temps, folders, strict=True):
                fsio.replace(temp, path)
                fsync_dir(folder)
    except BaseException:
        for fd in open_fds:
            os.close(fd)
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        raise
    if note is not None:
        for path, data in items:
            note(path, data)
    return [path for path, _ in todo]


def _stage_writes(
    stage: Stage,
    items: list[tuple[Path, bytes]],
    mode: int,
    modes: Mapping[Path, int] | None,
    absent: Container[Path],
) -> list[Path]:
    """`write_many_atomic` inside `staging`: temp files, written and closed, left for
    `publish`. A file that already holds its bytes is left alone and noted at once; a
    write that fails leaves none of the call's files staged, as a failed call renames none."""
    changed: list[tuple[str, tuple[Path, str, str, bytes]]] = []
    superseded: list[str] = []  # staged earlier with other bytes
    try:
        for path, data in items:
            key = os.fspath(path)
            entry = stage.pending.get(key)
            if entry is not None:
                if entry[3] == data:
                    continue
                superseded.append(key)
            if path not in absent and _same_bytes(path, data):
                if stage.note is not None:
                    stage.note(path, data)
                continue
            folder, temp, fd = _open_temp(path, modes.get(path, mode) if modes else mode)
            changed.append((key, (path, temp, folder, data)))
            try:
                fsio.write_all(fd, data)
            finally:
                os.close(fd)
    except BaseException:
        for _, (_, temp, _, _) in changed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        raise
    for key in superseded:
        stage.drop(key)
    stage.pending.update(changed)
    return [entry[0] for _, entry in changed]


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
    stage = _staged.get()
    if stage is not None:
        stage.drop(os.fspath(path))
    try:
        path.unlink()
        removed = True
    except FileNotFoundError:
        removed = False
    fsync_dir(path.parent)  # a folder gone meanwhile is skipped by the flush
    return removed
