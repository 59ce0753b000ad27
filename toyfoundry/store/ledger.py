"""Append-only JSON Lines ledgers that survive killed writers and concurrent processes.

Durability policy: one flush per `append` call. Each call writes all of its
lines in one `write` while holding an exclusive `flock`, so two writers never
interleave, and fsyncs before unlocking, so a record is on disk when `append`
returns. Inside a task (a `grouped_folder_syncs` block) on Linux the flush waits
for the block's end instead, where one `syncfs` covers the task's ledgers and
folders together: the record is on disk before the task is recorded as done.
Callers that log many records at once should pass them in one call.

A writer killed in the middle of its `write` leaves a last line without its
newline (a torn tail). The next writer, under the same lock, moves those bytes
to `<ledger>.torn` (fsynced first), truncates the ledger back to its last
newline and warns. Complete lines are never dropped, and the fragment is never
glued to the next record. A crash between saving the fragment and truncating
saves it again on the next repair: `.torn` may hold a fragment twice, never
lose one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from toyfoundry.errors import say
from toyfoundry.store import fsio
from toyfoundry.store.atomic import defer_data_flush, fsync_dir

if TYPE_CHECKING:  # pydantic is heavy to import; the store only duck-types models
    from pydantic import BaseModel

_READ_CHUNK = 1 << 20
_TAIL_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class TornTail:
    """A fragment left by a killed writer, and where it was set aside."""

    ledger: Path
    offset: int
    size: int
    torn_file: Path

    def __str__(self) -> str:
        return (
            f"{self.ledger}: torn last line ({self.size} bytes at offset {self.offset})"
            f" moved to {self.torn_file}"
        )


def warn_torn(t: TornTail) -> None:
    """Tell the user a torn tail was repaired: it means some process died mid-append."""
    say(f"toyfoundry: warning: {t}")


def _encode(record: Mapping[str, object] | BaseModel) -> bytes:
    obj: object
    if isinstance(record, dict):  # first: a failed `hasattr` costs an exception a record
        obj = record
    elif hasattr(record, "model_dump"):
        obj = record.model_dump(mode="json")
    else:
        obj = dict(record)
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) + b"\n"


def _after_last_newline(fd: int, size: int) -> int:
    """Offset just past the last newline in the first `size` bytes (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


class Ledger:
    """One JSON Lines ledger file: `append` whole records, `read` complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def torn_path(self) -> Path:
        """Where torn tails are set aside: made only for a repair (most ledgers are whole)."""
        return self.path.with_name(self.path.name + ".torn")

    def append(self, records: Sequence[Mapping[str, object] | BaseModel]) -> None:
        """Append `records` as one write and one fsync; repair a torn tail first."""
        if not records:
            return
        data = b"".join(_encode(r) for r in records)
        torn: TornTail | None = None
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o666)
        except FileNotFoundError:  # the folder is made when missing, not checked every append
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                torn = self._repair_locked(fd)
                fsio.write_all(fd, data)
                if not defer_data_flush(self.path):
                    fsio.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        if torn is not None:
            warn_torn(torn)

    def repair(self) -> TornTail | None:
        """Set a torn last line aside into `.torn`; None if the ledger is missing or whole."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._repair_locked(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _repair_locked(self, fd: int) -> TornTail | None:
        """The repair itself; the caller holds the exclusive lock on `fd`, open for reading
        and appending (one descriptor: no second open of the ledger every append)."""
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        if os.pread(fd, 1, size - 1) == b"\n":
            return None
        offset = _after_last_newline(fd, size)
        fragment = os.pread(fd, size - offset, offset)
        self._save_fragment(offset, fragment)
        os.ftruncate(fd, offset)
        fsio.fsync(fd)
        return TornTail(self.path, offset, len(fragment), self.torn_path)

    def _save_fragment(self, offset: int, fragment: bytes) -> None:
        note = {
            "ledger": self.path.name,
            "offset": offset,
            "bytes": fragment.decode("utf-8", errors="backslashreplace"),
            "found_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        line = orjson.dumps(note, option=orjson.OPT_SORT_KEYS) + b"\n"
        fd = os.open(self.torn_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            size = os.fstat(fd).st_size
            # A repair killed mid-write leaves `.torn` torn too; start on a fresh line.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            fsio.write_all(fd, line)
            fsio.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.torn_path.parent)

    def read(self) -> Iterator[tuple[int, bytes]]:
        """Yield (1-based line number, line without its newline) for every complete line."""
        found = extent(self.path)
        if found is not None:
            yield from lines(self.path, 0, found.end)


@dataclass(frozen=True, slots=True)
class Extent:
    """Where a ledger's complete lines end, and its size: `size > end` means a torn last line."""

    inode: int
    end: int
    size: int

    @property
    def torn(self) -> bool:
        return self.size > self.end


def extent(path: Path) -> Extent | None:
    """The ledger's extent, measured under a shared lock (no writer mid-append); None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            info = os.fstat(fd)
            return Extent(info.st_ino, _after_last_newline(fd, info.st_size), info.st_size)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lines(path: Path, start: int, end: int, first_line: int = 1) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for the complete lines in bytes [start, end), numbered from `first_line`.

    Bytes before a measured end never change (the ledger only grows, and repair
    only cuts after the last newline), so they are read without the lock, in big
    chunks: readers start where they left off instead of re-reading history.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        number = first_line - 1
        pos = start
        carry = b""
        while pos < end:
            chunk = os.pread(fd, min(_READ_CHUNK, end - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            for line in parts:
                number += 1
                yield number, line
    finally:
        os.close(fd)
