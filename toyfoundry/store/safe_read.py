"""The one way to read an exchange file: bounded, regular files only, strict JSON, one-line errors.

Everything in `exchange/` is written by other programs and is untrusted, so a
read refuses what a careless reader would trip on: symlinks (they could point
anywhere), FIFOs and devices (they block or have side effects), hard links (the
file can change under another name), huge files, deep nesting (recursion
limits), and JSON that Python would accept but other parsers read differently
(duplicate keys, NaN, integers beyond 64 bits, lone surrogates). Each refusal is
a `ReadError` carrying one `Problem`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from itertools import accumulate, repeat
from pathlib import Path
from typing import Any, Literal

from toyfoundry.errors import FoundryError, Problem

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_DEPTH = 64
MAX_BYTES_ENV = "TOYFOUNDRY_MAX_BYTES"
MAX_DEPTH_ENV = "TOYFOUNDRY_MAX_DEPTH"

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_JSON_SPACE = b" \t\r\n"
_UTF8_BOM = b"\xef\xbb\xbf"
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
# A string (an unterminated one runs to the end, so the scan stays linear) or a
# run of anything that is neither a quote nor a bracket: what is left is brackets.
_NOT_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[^\[\]{}"]+', re.DOTALL)
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class ReadError(Exception):
    """An exchange file could not be read or parsed; `problem` says which file, field and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _limit(explicit: int | None, env: str, default: int) -> int:
    """The keyword argument, else the environment variable, else the default."""
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"limit must be a positive integer, got {explicit}")
        return explicit
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise FoundryError(f"{env}: expected a positive integer, got {raw!r:.40}")
    return int(raw)


FileKind = Literal["regular", "symlink", "fifo", "directory", "special"]


def file_kind(mode: int) -> FileKind:
    """What an `lstat` mode is, in the words the graph and the watchers track entries by."""
    if stat.S_ISREG(mode):
        return "regular"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special"


def _kind(mode: int) -> str | None:
    """Why a file of this mode is refused, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link; links are not followed"
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return f"is {name}, not a regular file"
    return "is not a regular file"


def _open_error(path: Path, err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "does not exist"
    if isinstance(err, PermissionError):
        return "cannot be read: permission denied"
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = None
    reason = _kind(mode) if mode is not None else None
    return reason or f"cannot be read: {err.strerror or err}"


def open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """A descriptor on a regular file and its `fstat`; the caller closes it.

    Opened with `O_NOFOLLOW | O_NONBLOCK` and checked by `fstat` on the descriptor
    itself, so a FIFO, a device or a link renamed in after any earlier `lstat`
    is refused here instead of blocking a build (a FIFO) or feeding it for ever
    (`/dev/zero`). Anything that hashes or reads an exchange file opens it here.
    """
    shown = os.fspath(path)

    def fail(reason: str) -> ReadError:
        return ReadError(Problem(str(shown), "-", reason))

    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        raise fail(_open_error(Path(shown), err)) from None
    try:
        info = os.fstat(fd)
        reason = _kind(info.st_mode)
    except OSError as err:
        os.close(fd)
        raise fail(f"cannot be read: {err.strerror or err}") from None
    if reason:
        os.close(fd)
        raise fail(reason)
    return fd, info


#: Bytes hashed per read by `sha256_regular`.
_HASH_CHUNK = 1 << 20


def sha256_regular(path: str | os.PathLike[str]) -> str:
    """sha256 of a regular file's bytes, whatever their size or format: its content identity.

    Opened by `open_regular` and read no further than its size when opened plus one
    chunk: a file still growing gets the digest of that prefix, marked, and never
    keeps the reader going. Raises `ReadError` for anything but a regular file.
    """
    fd, info = open_regular(path)
    try:
        budget = info.st_size + _HASH_CHUNK
        digest = hashlib.sha256()
        read = 0
        while read < budget:
            chunk = os.read(fd, min(_HASH_CHUNK, budget - read))
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
            read += len(chunk)
        digest.update(b"\0grew while hashed")
        return digest.hexdigest()
    except OSError as err:
        raise ReadError(
            Problem(os.fspath(path), "-", f"cannot be read: {err.strerror or err}")
        ) from None
    finally:
        os.close(fd)


def read_bytes(path: Path, *, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular, singly linked file of at most `max_bytes` (default 1 MiB)."""
    limit = _limit(max_bytes, MAX_BYTES_ENV, DEFAULT_MAX_BYTES)

    def fail(reason: str) -> ReadError:
        return ReadError(Problem(str(path), "-", reason))

    # lstat first so a device or FIFO is never even opened; the fstat in
    # `open_regular` closes the race with a file swapped in between.
    try:
        reason = _kind(os.lstat(path).st_mode)
    except OSError as err:
        raise fail(_open_error(path, err)) from None
    if reason:
        raise fail(reason)
    fd, info = open_regular(path)
    try:
        if info.st_nlink > 1:
            raise fail(
                f"has {info.st_nlink} hard links; a file with several names can change"
                " under another one, so it is not read"
            )
        if info.st_size > limit:
            raise fail(f"is {info.st_size} bytes, over the {limit}-byte limit")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            want = limit + 1 - total
            chunk = os.read(fd, want)
            chunks.append(chunk)
            total += len(chunk)
            if len(chunk) < want:
                break  # a short read of a regular file is its end: no second read to see it
        if total > limit:
            raise fail(f"grew past the {limit}-byte limit while being read")
        return b"".join(chunks)
    except OSError as err:
        raise fail(f"cannot be read: {err.strerror or err}") from None
    finally:
        os.close(fd)


class _Flaw:
    """A value the parse hooks refused; found with its path after parsing."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _DuplicateKeys(dict[str, Any]):
    """An object with a repeated key, marked so the walk after parsing can name its path."""

    __slots__ = ("key",)
    key: str


def _shorten(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width] + "..."


def _field(parts: list[str | int]) -> str:
    def printable(part: str | int) -> str:
        text = str(part)
        if text.isprintable():
            return text
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)

    return _shorten(".".join(printable(p) for p in parts), 200) or "-"


def _find_flaw(node: Any, path: list[str | int], strings: bool) -> tuple[str, str] | None:
    """(field, reason) of the first refused value in document order, or None."""
    if isinstance(node, _Flaw):
        return _field(path), node.reason
    if isinstance(node, _DuplicateKeys):
        return _field([*path, node.key]), f"duplicate key {node.key!r:.80}"
    if isinstance(node, dict):
        for key, value in node.items():
            if strings and _SURROGATE.search(key):
                return _field([*path, key]), "key contains a lone surrogate"
            found = _find_flaw(value, [*path, key], strings)
            if found:
                return found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _find_flaw(value, [*path, index], strings)
            if found:
                return found
    elif strings and isinstance(node, str) and _SURROGATE.search(node):
        return _field(path), "contains a lone surrogate"
    return None


def _depth(text: str) -> int:
    brackets = _NOT_BRACKETS.sub("", text)
    return max(accumulate(map(_DEPTH_STEP.get, brackets, repeat(0))), default=0)


class _Hooks:
    """Parse hooks that mark refused values instead of raising, so the walk can name their path."""

    def __init__(self) -> None:
        self.flawed = False

    def flaw(self, reason: str) -> _Flaw:
        self.flawed = True
        return _Flaw(reason)

    def pairs(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        seen: set[str] = set()
        marked = _DuplicateKeys(items)
        for key, _ in items:
            if key in seen:
                marked.key = key
                break
            seen.add(key)
        self.flawed = True
        return marked

    def integer(self, text: str) -> int | _Flaw:
        # Length first: int() of a megabyte of digits is slow and may hit Python's digit limit.
        if len(text) <= 20:
            value = int(text)
            if _INT64_MIN <= value <= _INT64_MAX:
                return value
        return self.flaw(f"integer {_shorten(text)} does not fit in 64 bits")

    def number(self, text: str) -> float | _Flaw:
        value = float(text)
        if math.isfinite(value):
            return value
        return self.flaw(f"number {_shorten(text)} does not fit in a 64-bit float")

    def constant(self, name: str) -> _Flaw:
        return self.flaw(f"{name} is not valid JSON")


def parse_json(data: bytes, *, source: str, max_depth: int | None = None) -> Any:
    """Strict JSON from `data`; `source` names the file in the error."""
    limit = _limit(max_depth, MAX_DEPTH_ENV, DEFAULT_MAX_DEPTH)

    def fail(reason: str, field: str = "-") -> ReadError:
        return ReadError(Problem(source, field, reason))

    if data.startswith(_UTF8_BOM):
        raise fail("starts with a UTF-8 byte order mark")
    if not data.strip(_JSON_SPACE):
        raise fail("is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"is not valid UTF-8 (byte offset {err.start})") from None
    if _depth(text) > limit:
        raise fail(f"nests deeper than {limit} levels")
    hooks = _Hooks()
    try:
        value = json.loads(
            text,
            object_pairs_hook=hooks.pairs,
            parse_int=hooks.integer,
            parse_float=hooks.number,
            parse_constant=hooks.constant,
        )
    except json.JSONDecodeError as err:
        raise fail(f"is not valid JSON: {err.msg} (line {err.lineno} column {err.colno})") from None
    strings = _SURROGATE_ESCAPE.search(text) is not None
    if hooks.flawed or strings:
        found = _find_flaw(value, [], strings)
        if found:
            field, reason = found
            raise fail(reason, field)
    return value


def read_json(path: Path, *, max_bytes: int | None = None, max_depth: int | None = None) -> Any:
    """`read_bytes` then `parse_json`; errors name `path` as given."""
    return parse_json(read_bytes(path, max_bytes=max_bytes), source=str(path), max_depth=max_depth)


def present(path: Path) -> bool:
    """Whether an entry is there to be read or refused: a dangling link counts, and so does
    one that cannot even be looked at (a folder of mode 000), whose read then says why.

    `Path.exists` raises `PermissionError` there, a traceback where a line was due.
    """
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def is_skipped_name(name: str) -> bool:
    """Hidden or in-progress names (`.x`, `x.tmp`, `x.part`, `x~`): producers rename them later."""
    return name.startswith(".") or name.endswith((".tmp", ".part", "~"))


def list_json(folder: Path) -> list[Path]:
    """The `*.json` entries of `folder`, sorted, without in-progress names; [] if it is missing.

    Symlinks and other odd entries are listed on purpose: `read_bytes` refuses
    them with a message, so the user hears about them instead of a silent skip.
    """
    return [folder / name for name in list_json_names(folder)]


def list_json_names(folder: Path) -> list[str]:
    """`list_json`'s entries as names: for a caller that lists a thousand and wants text."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.endswith(".json")]
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ReadError(Problem(str(folder), "-", "is not a folder")) from None
    except OSError as err:
        reason = f"cannot be listed: {err.strerror or err}"
        raise ReadError(Problem(str(folder), "-", reason)) from None
    return [name for name in sorted(names) if not is_skipped_name(name)]
