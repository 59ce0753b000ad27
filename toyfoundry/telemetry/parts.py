"""Quilt parts, and the rollup as the quilt wrote it.

A part is one order's BatchSummary in `quilt/parts/<order>.json`, made once
per change. The rollup holds the parts as plain data (the model's JSON form),
so a batch carried over from the previous rollup and a part validated just now
are the same kind of value and serialize to the same bytes.

Next to the rollup, `quilt/rollup_state.json` records the sha256 of the
rollup bytes last written, the code that wrote them, and the file identity
(inode, size, mtime) of each part the rollup holds. While the rollup still
has those bytes it is trusted as is: the quilt reuses its batches and only
re-reads parts whose identity moved, and the exports skip re-validating it.
Anything else (no record, other bytes, other code) means the rollup is read
the slow way: parts validated one by one, the rollup by its model.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

import toyfoundry.formats.models as models
from toyfoundry.formats.models import BatchSummary
from toyfoundry.store.atomic import dumps_canonical, write_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import fingerprint
from toyfoundry.telemetry.artefacts import display

STATE_VERSION = 1
#: A part's identity on disk: inode, size, mtime (ns). A rewrite renames a new file into place.
Stat = list[int]


def part_path(layout: Layout, order_id: str) -> Path:
    return layout.quilt_part(order_id)


def state_path(layout: Layout) -> Path:
    return layout.quilt_dir / "rollup_state.json"


def _missing(layout: Layout, path: Path, order_id: str) -> str:
    return (
        f"{display(layout, path)}: missing: order {order_id} has no summary"
        " (not built yet, or its build artefacts could not be read)"
    )


def _invalid(layout: Layout, path: Path, exc: ValidationError) -> str:
    return f"{display(layout, path)}: not a valid batch summary ({exc.error_count()} errors)"


def read_part(layout: Layout, order_id: str) -> tuple[BatchSummary | None, str | None]:
    """The order's part, or why there is none (as a skip line)."""
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


def stat_of(path: str) -> Stat | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_ino, info.st_size, info.st_mtime_ns]


def code_digest() -> str:
    """The telemetry code and the formats the rollup was made with: other code, other rollup."""
    digest = hashlib.sha256(fingerprint().encode())
    digest.update(Path(models.__file__).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Stored:
    """The rollup on disk, trusted: the bytes the record describes, parsed."""

    document: dict[str, Any]
    parts: dict[str, Stat]


def load_rollup(layout: Layout, code: str | None = None) -> Stored | None:
    """The rollup as plain data if it holds the bytes this code recorded writing; else None.

    Never raises for a missing, unreadable or malformed rollup or record: the
    caller then takes the slow path, which says what is wrong.
    """
    try:
        record = orjson.loads(state_path(layout).read_bytes())
        data = layout.rollup.read_bytes()
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("version") != STATE_VERSION:
        return None
    found = record.get("parts")
    if not isinstance(found, dict) or record.get("code") != (code or code_digest()):
        return None
    if record.get("rollup") != hashlib.sha256(data).hexdigest():
        return None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("batches"), list):
        return None
    return Stored(document, found)


def write_rollup(
    layout: Layout, document: dict[str, Any], parts: dict[str, Stat], code: str
) -> bool:
    """Write the rollup's canonical bytes, then the record of them; True if the rollup changed.

    The rollup goes first: a crash in between leaves a record that no longer
    matches, so the next run rebuilds from the parts instead of trusting it.
    """
    data = dumps_canonical(document)
    changed = write_atomic(layout.rollup, data)
    record = {
        "version": STATE_VERSION,
        "code": code,
        "rollup": hashlib.sha256(data).hexdigest(),
        "parts": parts,
    }
    write_atomic(state_path(layout), orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
    return changed
