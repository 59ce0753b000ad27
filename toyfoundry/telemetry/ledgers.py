"""Read telemetry ledgers from any offset, and check each line against its record model.

Shared by the loom (which reads only what was appended since its last run) and
the lint (which reads everything). Both stop at the last newline: bytes after it
are a torn write from a killed process, or one still being written.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from toyfoundry.formats.models import SCHEMA_VERSION, MintRecord, RitualRecord
from toyfoundry.store.layout import Layout

Record = MintRecord | RitualRecord
MODELS: dict[str, type[MintRecord] | type[RitualRecord]] = {
    "mint": MintRecord,
    "ritual": RitualRecord,
}
_CHUNK = 1 << 20
_TAIL = 1 << 16


def ledgers(layout: Layout) -> list[tuple[Path, str]]:
    """Each ledger with the record kind its lines must have."""
    return [(layout.mint_ledger, "mint"), (layout.ritual_ledger, "ritual")]


@dataclass(frozen=True)
class Extent:
    """Where a ledger's complete lines end, and its size: `size > end` means a torn last line."""

    inode: int
    end: int
    size: int

    @property
    def torn(self) -> bool:
        return self.size > self.end


def _after_last_newline(fd: int, size: int) -> int:
    end = size
    while end > 0:
        start = max(0, end - _TAIL)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


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


def torn_fragments(ledger: Path) -> list[tuple[Path, int, str]]:
    """(torn file, line, description) for each fragment a repair moved to `<ledger>.torn`."""
    torn = ledger.with_name(ledger.name + ".torn")
    try:
        data = torn.read_bytes()
    except FileNotFoundError:
        return []
    found = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            note = orjson.loads(line)
            where = f" (was at byte {int(note['offset'])} of {note['ledger']})"
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            where = ""
        found.append((torn, number, f"torn fragment set aside by a repair{where}"))
    return found


def read_prefix(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def lines(path: Path, start: int, end: int, first_line: int = 1) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for the complete lines in bytes [start, end), numbered from `first_line`.

    Bytes before a measured end never change (ledgers only grow, and repair only
    cuts after the last newline), so they are read without the lock.
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
            chunk = os.pread(fd, min(_CHUNK, end - pos), pos)
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


def check_line(kind: str, line: bytes) -> tuple[Record | None, str | None]:
    """The record on `line`, or why it is not a valid `kind` record.

    Valid lines take the fast path: pydantic parses and validates the bytes in
    one call (measured ~40% faster than orjson then model_validate). Only a line
    that fails is parsed again with orjson, to say what is wrong in plain words.
    """
    model = MODELS[kind]
    try:
        return model.model_validate_json(line), None
    except ValidationError as exc:
        return None, diagnose(kind, line, exc)


def diagnose(kind: str, line: bytes, exc: ValidationError) -> str:
    """One-line reason a ledger line is not a valid `kind` record: drift first, then values."""
    if not line.strip():
        return "empty line"
    try:
        data: Any = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        return f"not valid JSON: {err}"
    if not isinstance(data, dict):
        return "not a JSON object"
    found = data.get("kind")
    if found not in MODELS:
        return "record has no kind" if found is None else f"unknown record type {_show(found)}"
    if found != kind:
        return f"a {found} record in the {kind} ledger"
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        return f"schema_version is {_show(version)}, expected {SCHEMA_VERSION}"
    model = MODELS[kind]
    drift = _field_drift(model, data)
    if drift:
        return drift
    return "; ".join(_reason(e) for e in exc.errors(include_url=False)[:3])


def _field_drift(model: type[BaseModel], data: dict[str, Any]) -> str:
    fields = model.model_fields
    unknown = sorted(k for k in data if k not in fields)
    missing = sorted(n for n, f in fields.items() if f.is_required() and n not in data)
    parts = []
    if unknown:
        parts.append(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    if missing:
        parts.append(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return "; ".join(parts)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reason(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "-"
    message = str(error.get("msg", "is invalid"))
    if error.get("type", "").endswith("_type") or error.get("type") in {
        "literal_error",
        "string_pattern_mismatch",
    }:
        message += f" (got {_show(error.get('input'))})"
    return f"{where}: {message}"
