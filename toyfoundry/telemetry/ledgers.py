"""Read telemetry ledgers from any offset, and check each line against its record model.

Shared by the loom (which reads only what was appended since its last run) and
the lint (which reads everything). Both stop at the last newline: bytes after it
are a torn write from a killed process, or one still being written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from toyfoundry.formats.models import SCHEMA_VERSION, MintRecord, RitualRecord
from toyfoundry.store.layout import Layout
from toyfoundry.store.ledger import Extent as Extent
from toyfoundry.store.ledger import extent as extent
from toyfoundry.store.ledger import lines as lines

Record = MintRecord | RitualRecord
MODELS: dict[str, type[MintRecord] | type[RitualRecord]] = {
    "mint": MintRecord,
    "ritual": RitualRecord,
}


def ledgers(layout: Layout) -> list[tuple[Path, str]]:
    """Each ledger with the record kind its lines must have."""
    return [(layout.mint_ledger, "mint"), (layout.ritual_ledger, "ritual")]


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
