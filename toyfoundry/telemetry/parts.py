"""Quilt parts, and the rollup as the quilt wrote it.

A part is one order's BatchSummary in `quilt/parts/<order>.json`, made once
per change. The rollup holds the parts as plain data (the model's JSON form),
so a batch carried over from the previous rollup and a part validated just now
are the same kind of value and serialize to the same bytes.

Next to the rollup, `quilt/rollup_state.json` records the sha256 of the
rollup bytes last written, the code that wrote them, and the file identity
(inode, size, mtime) of each part the rollup holds. While the rollup still
has those bytes it is trusted as is: the quilt reuses its batches and only
re-reads parts whose identity moved, the exports skip re-validating it, and
the dashboard skips its field-by-field checks. Anything else (no record,
other bytes, other code) means the rollup is read the slow way: parts
validated one by one, the rollup by its model or the dashboard's checks.

The quilt, the exports and the dashboard run one after another in one doit
process, and each wants the rollup the quilt just wrote. The last rollup this
process wrote or trusted is kept with the bytes of both files, so the next
reader compares bytes (a read and a memcmp) instead of hashing and parsing a
megabyte again; a file edited or replaced meanwhile differs and is read anew.
The dashboard reads the rollup through here too and must stay off pydantic
(see `dashboard`), so the models are imported only where a part is validated.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

import toyfoundry.formats
from toyfoundry import caches
from toyfoundry.store.atomic import dumps_canonical, write_many_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import fingerprint

if TYPE_CHECKING:
    from pydantic import ValidationError

    from toyfoundry.formats.models import BatchSummary

STATE_VERSION = 1
#: A part's identity on disk: inode, size, mtime (ns). A rewrite renames a new file into place.
Stat = list[int]


def part_path(layout: Layout, order_id: str) -> Path:
    return layout.quilt_part(order_id)


def state_path(layout: Layout) -> Path:
    return layout.quilt_dir / "rollup_state.json"


#: The formats' source, part of `code_digest`; found by path so that importing this module
#: does not import the models (and pydantic).
MODELS_SOURCE = Path(toyfoundry.formats.__file__).with_name("models.py")


def _missing(layout: Layout, path: Path, order_id: str) -> str:
    from toyfoundry.telemetry.artefacts import display

    return (
        f"{display(layout, path)}: missing: order {order_id} has no summary"
        " (not built yet, or its build artefacts could not be read)"
    )


def _invalid(layout: Layout, path: Path, exc: ValidationError) -> str:
    from toyfoundry.telemetry.artefacts import display

    return f"{display(layout, path)}: not a valid batch summary ({exc.error_count()} errors)"


def read_part(layout: Layout, order_id: str) -> tuple[BatchSummary | None, str | None]:
    """The order's part, or why there is none (as a skip line)."""
    from pydantic import ValidationError

    from toyfoundry.formats.models import BatchSummary

    path = part_path(layout, order_id)
    try:
        return BatchSummary.model_validate_json(path.read_bytes()), None
    except FileNotFoundError:
        return None, _missing(layout, path, order_id)
    except ValidationError as exc:
        return None, _invalid(layout, path, exc)


def read_part_data(layout: Layout, order_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """The order's part validated, as the plain data the rollup holds; or why there is none."""
    part, problem = read_part(layout, order_id)
    return (None, problem) if part is None else (part.model_dump(mode="json"), None)


def part_stats(layout: Layout, order_ids: list[str]) -> dict[str, Stat]:
    """The identity of each of these orders' parts that exists, by order id.

    Each looked up by name in the open parts folder: a thousand stats walk
    one name each rather than the whole path.
    """
    try:
        folder = os.open(layout.quilt_parts, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return {}
    found: dict[str, Stat] = {}
    try:
        for oid in order_ids:
            try:
                info = os.stat(f"{oid}.json", dir_fd=folder)
            except OSError:
                continue
            found[oid] = [info.st_ino, info.st_size, info.st_mtime_ns]
    finally:
        os.close(folder)
    return found


def code_digest() -> str:
    """The telemetry code and the formats the rollup was made with: other code, other rollup."""
    digest = hashlib.sha256(fingerprint().encode())
    digest.update(MODELS_SOURCE.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Stored:
    """The rollup on disk, trusted: the bytes the record describes, parsed.

    Shared by every reader in this process (see `load_rollup`): read it, never change it.
    """

    document: dict[str, Any]
    parts: dict[str, Stat]


@dataclass(frozen=True)
class _Seen:
    """A rollup this process wrote or trusted: where, the bytes of it and of its record."""

    rollup: Path
    data: bytes
    record: bytes
    code: str
    stored: Stored


# The `rollup` cache (`toyfoundry.caches`): the last rollup written or trusted; one slot.
def _remember(seen: _Seen) -> None:
    last = caches.current().table("rollup")
    last.clear()
    last[None] = seen


def _recall(rollup: Path, data: bytes, record: bytes, code: str) -> Stored | None:
    """The parsed rollup when these are the very bytes (rollup and record) last seen here."""
    last: dict[None, _Seen] = caches.current().table("rollup")
    for seen in last.values():
        if (seen.rollup, seen.code, seen.record, seen.data) == (rollup, code, record, data):
            return seen.stored
    return None


def load_rollup(layout: Layout, code: str | None = None) -> Stored | None:
    """The rollup as plain data if it holds the bytes this code recorded writing; else None.

    Bytes equal to those this process last wrote or trusted are not hashed or
    parsed again: the document is shared (see `Stored`). Never raises for a
    missing, unreadable or malformed rollup or record: the caller then takes
    the slow path, which says what is wrong. The record's vouching is the
    `rollup_vouching` cache (`toyfoundry.caches`): turned off, this is always None.
    """
    if not caches.current().on("rollup_vouching"):
        return None
    try:
        raw = state_path(layout).read_bytes()
        data = layout.rollup.read_bytes()
    except OSError:
        return None
    code = code or code_digest()
    known = _recall(layout.rollup, data, raw, code)
    if known is not None:
        return known
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("version") != STATE_VERSION:
        return None
    found = record.get("parts")
    if not isinstance(found, dict) or record.get("code") != code:
        return None
    if record.get("rollup") != hashlib.sha256(data).hexdigest():
        return None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("batches"), list):
        return None
    stored = Stored(document, found)
    _remember(_Seen(layout.rollup, data, raw, code, stored))
    return stored


def write_rollup(
    layout: Layout,
    document: dict[str, Any],
    parts: dict[str, Stat],
    code: str,
    *,
    before: Sequence[tuple[Path, bytes]] = (),
) -> bool:
    """Write `before` (the ledger index), the rollup's canonical bytes, then the record of them,
    as one set: one flush, then the renames in that order. True if the rollup changed.

    The rollup is renamed before its record: a crash in between leaves a record
    that no longer matches, so the next run rebuilds from the parts instead of
    trusting it. `document` is then what `load_rollup` hands the next reader in
    this process, so the caller must not change it afterwards.
    """
    data = dumps_canonical(document)
    record = {
        "version": STATE_VERSION,
        "code": code,
        "rollup": hashlib.sha256(data).hexdigest(),
        "parts": parts,
    }
    raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"
    written = write_many_atomic([*before, (layout.rollup, data), (state_path(layout), raw)])
    _remember(_Seen(layout.rollup, data, raw, code, Stored(document, parts)))
    return layout.rollup in written
