"""Read telemetry ledgers from any offset, and check each line against its record model.

Shared by the loom (which reads only what was appended since its last run) and
the lint (which reads everything). Both stop at the last newline: bytes after it
are a torn write from a killed process, or one still being written.

`check_line` is pydantic's verdict on one line. `Reader` gives the same verdict on
many lines for a quarter of the instructions, for readers that need only the order,
time and run of each record (the quilt's ledger index, the lint): a full build's
quilt reads every line, 100,000 at 1,000 orders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, cast, get_args, get_origin

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    PlainValidator,
    ValidationError,
    WrapValidator,
)

from toyfoundry.formats.models import SCHEMA_VERSION, BatchMeta, MintRecord, RitualRecord
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

    pydantic parses and validates the bytes in one call (measured ~40% faster than
    orjson then model_validate). Only a line that fails is parsed again with orjson,
    to say what is wrong in plain words.
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
    if not isinstance(found, str) or found not in MODELS:  # a list or an object is no kind
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


# ------------------------------------------------------------------ the fast reader


class Facts(NamedTuple):
    """What the readers of a whole ledger use from a valid record."""

    order_id: str
    time: str
    run_id: str


#: Characters of a JSON string the fast path takes as they are: printable ASCII but `"`, `\`.
_PLAIN = rb"[\x20\x21\x23-\x5b\x5d-\x7e]"
#: A JSON string of printable ASCII and simple escapes (never `\u`: a lone surrogate is not
#: valid JSON), for fields whose value is checked only as "a string".
_TEXT = rb'"' + _PLAIN + rb'*(?:\\["\\/bfnrt]' + _PLAIN + rb'*)*"'
_TEXT_OR_NULL = rb"(?:" + _TEXT + rb"|null)"
#: Integers of up to 25 digits: pydantic takes any JSON integer as an `int` (and one >= 0
#: as a `Count`); seeds take 19.
_COUNT = rb"(?:0|[1-9][0-9]{0,24})"
_INT = rb"-?" + _COUNT


def _hints(model: type[BaseModel], name: str) -> tuple[list[Any], list[Any], bool]:
    """A field's Literal values, its constraint objects and whether it may be null."""
    field = model.model_fields[name]
    values: list[Any] = []
    constraints: list[Any] = list(field.metadata)
    nullable = False
    stack: list[Any] = [field.annotation]
    while stack:
        hint = stack.pop()
        if hint is type(None):
            nullable = True
        elif get_origin(hint) is Literal:
            values += get_args(hint)
        elif get_origin(hint) is Annotated:
            stack.append(get_args(hint)[0])
            constraints += get_args(hint)[1:]
        else:
            stack += get_args(hint)
    return values, constraints, nullable


def _or_null(shape: bytes, nullable: bool) -> bytes:
    return b"(?:" + shape + b"|null)" if nullable else shape


def _one_of(model: type[BaseModel], name: str) -> bytes:
    """The field's Literal strings as a quoted alternation (with `null` when it is Optional)."""
    values, _, nullable = _hints(model, name)
    if not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{model.__name__}.{name}: not a choice of strings")
    quoted = b"|".join(b'"' + re.escape(v.encode()) + b'"' for v in values)
    return _or_null(b"(?:" + quoted + b")", nullable)


#: The pattern syntax that means the same to Python's `re` and to pydantic's Rust regex
#: on the ASCII the shape admits: ASCII literals, classes, groups, repeats; `\.` only.
_EMBEDDABLE = re.compile(r"(?:[0-9A-Za-z_:+,|?{}()\[\]-]|\\\.)*")


def _pattern(model: type[BaseModel], name: str, group: str = "") -> bytes:
    """The field's own string pattern, quoted; captured as `group` when one is named."""
    _, constraints, nullable = _hints(model, name)
    (pattern,) = {c.pattern for c in constraints if getattr(c, "pattern", None)}
    inner = pattern[1:-1]
    rust_only = ("[[", "&&", "--", "~~")  # class operations of Rust's regex
    if not (pattern[0] == "^" and pattern[-1] == "$" and _EMBEDDABLE.fullmatch(inner)):
        raise ValueError(f"{model.__name__}.{name}: a pattern the fast shape cannot embed")
    if any(token in inner for token in rust_only):
        raise ValueError(f"{model.__name__}.{name}: a pattern the fast shape cannot embed")
    embedded = inner.encode()
    if group:
        embedded = b"(?P<" + group.encode() + b">" + embedded + b")"
    return _or_null(b'"' + embedded + b'"', nullable)


def _run_id(model: type[BaseModel]) -> bytes:
    _, constraints, _ = _hints(model, "run_id")
    (low, high), *_ = [(c.min_length, c.max_length) for c in constraints if c.max_length]
    return b'"(?P<run>' + _PLAIN + b"{%d,%d})" % (low, high) + b'"'


def _items(model: type[BaseModel], shapes: dict[str, bytes]) -> list[bytes]:
    """`model`'s members as the ledger writes them: every field, keys sorted, no spaces."""
    if set(shapes) != set(model.model_fields):
        raise ValueError(f"the fast shape of {model.__name__} does not name its fields")
    return [b'"' + key.encode() + b'":' + shapes[key] for key in sorted(shapes)]


def _object(model: type[BaseModel], shapes: dict[str, bytes]) -> bytes:
    return rb"\{" + b",".join(_items(model, shapes)) + rb"\}"


def _common(model: type[BaseModel]) -> dict[str, bytes]:
    return {
        "schema_version": str(SCHEMA_VERSION).encode(),
        "kind": _one_of(model, "kind"),
        "run_id": _run_id(model),
        "time": _pattern(model, "time", "time"),
        "order_id": _pattern(model, "order_id", "order"),
        "dry_run": b"(?:true|false)",
        "outcome": _one_of(model, "outcome"),
    }


@dataclass(frozen=True)
class _Shape:
    """A record as the foundry writes it, cut in two before the member `_SPLIT` names:
    the head (with the order id) differs from line to line, the tail (with the time and
    the run id) is the same on all the lines of one task."""

    head: re.Pattern[bytes]
    tail: re.Pattern[bytes]
    #: the order id's group in `head` (the models' patterns have groups of their own)
    order: int
    #: the model's own checks of a time that has the pattern (its calendar check)
    time_checks: tuple[Callable[[str], str], ...]


_VALIDATORS = (AfterValidator, BeforeValidator, PlainValidator, WrapValidator)


def _time_checks(model: type[BaseModel]) -> tuple[Callable[[str], str], ...]:
    """The after-validators of `model.time`; refuses a model whose other validators the
    shape does not stand for (it spells out `schema_version` as 1 and nothing else)."""
    decorators = model.__pydantic_decorators__
    if decorators.model_validators or decorators.field_validators:
        raise ValueError(f"{model.__name__} has validators the fast shape does not run")
    checks: list[Callable[[str], str]] = []
    for name in model.model_fields:
        _, constraints, _ = _hints(model, name)
        for c in constraints:
            if not isinstance(c, _VALIDATORS):
                continue
            if name == "time" and isinstance(c, AfterValidator):
                checks.append(cast(Callable[[str], str], c.func))  # `func(value)`: no info
            elif not (name == "schema_version" and isinstance(c, BeforeValidator)):
                raise ValueError(f"{model.__name__}.{name}: a validator the shape does not run")
            elif c.func(SCHEMA_VERSION) != SCHEMA_VERSION:  # type: ignore[call-arg]
                raise ValueError(f"{model.__name__}.{name}: refuses {SCHEMA_VERSION}")
    return tuple(checks)


_SPLIT = {"mint": "recipe", "ritual": "run_id"}


@functools.cache
def _shape(kind: str) -> _Shape:
    """The shape of `kind` records as regular expressions; made on first use."""
    if kind == "mint":
        model: type[BaseModel] = MintRecord
        shapes = _common(MintRecord) | {
            "alfa_id": _pattern(MintRecord, "alfa_id"),
            "seed": rb"(?:" + _INT + rb"|null)",
            "recipe": _TEXT_OR_NULL,
            "recipe_version": _TEXT_OR_NULL,
            "share": _one_of(MintRecord, "share"),
            "reasons": rb"\[(?:" + _TEXT + rb"(?:," + _TEXT + rb")*)?\]",
        }
    else:
        model, pair = RitualRecord, _TEXT + b":" + _COUNT
        batch = {"phase": _one_of(BatchMeta, "phase"), "recipe": _TEXT_OR_NULL, "size": _COUNT}
        shapes = _common(RitualRecord) | {
            "ritual": _one_of(RitualRecord, "ritual"),
            "batch": _object(BatchMeta, batch),
            "counts": rb"\{(?:" + pair + rb"(?:," + pair + rb")*)?\}",
        }
    items = _items(model, shapes)
    cut = sorted(shapes).index(_SPLIT[kind])
    head = rb"\{" + b",".join(items[:cut])
    tail = b"," + b",".join(items[cut:]) + rb"\}"
    _time_checks(BatchMeta)
    compiled = re.compile(head)
    return _Shape(compiled, re.compile(tail), compiled.groupindex["order"], _time_checks(model))


#: Tails remembered per reader: one task's lines share theirs, a few tasks' interleave.
_TAILS = 1024
_UNSEEN = ("", "")
#: Bytes to read from which the shape pays for making it (~6 ms, ~2,000 lines' saving):
#: a few new orders' lines are left to pydantic, which the process has usually built.
FAST_FROM = 512 * 1024


def _no_head(line: bytes) -> None:
    return None


class Reader:
    """`check_line` for the lines of one ledger in order, when only their `Facts` are needed.

    A line in the shape the foundry writes (`_shape`: sorted keys, no spaces, ASCII
    strings, every value in its field's pattern or choices) is checked by regular
    expressions, its tail (`_Shape`) and the time's calendar check (the model's own)
    once per distinct tail. Every other line goes to pydantic (`check_line`), so what is
    accepted, and why a line is not, are the model's: the shape admits only lines
    pydantic accepts, and takes from them the values pydantic would.
    """

    def __init__(self, kind: str, size: int = FAST_FROM) -> None:
        """`size`: about how many bytes will be read; below `FAST_FROM`, all go to pydantic."""
        self.kind = kind
        self._head: Callable[[bytes], re.Match[bytes] | None] = _no_head
        if size >= FAST_FROM:
            shape = _shape(kind)
            self._head, self._tail = shape.head.match, shape.tail.fullmatch
            self._order_group = shape.order
            self._time_checks = shape.time_checks
        #: tail -> (time, run id), or None when pydantic must say what is wrong with it
        self._tails: dict[bytes, tuple[str, str] | None] = {}
        #: the last tail and what it is
        self._tail_seen = b""
        self._known: tuple[str, str] | None = None  # b"" is no valid tail
        #: the last `Facts` made, of which order and tail
        self._order = b""
        self._facts_of: tuple[str, str] | None = _UNSEEN
        self._facts = Facts("", "", "")

    def read(self, line: bytes) -> tuple[Facts | None, str | None]:
        """The line's `Facts`, or why it is not a valid record (`check_line`'s words).

        The same `Facts` object as the line before's when the order, time and run are.
        """
        head = self._head(line)
        if head is not None:
            tail = line[head.end() :]
            if tail == self._tail_seen:  # cheaper than hashing it for `_tails`
                known = self._known
            else:
                known = self._tails.get(tail, _UNSEEN)
                if known is _UNSEEN:
                    known = self._checked(tail)
                self._tail_seen, self._known = tail, known
            if known is not None:
                order = head.group(self._order_group)
                if order != self._order or known is not self._facts_of:
                    self._order, self._facts_of = order, known
                    self._facts = Facts(order.decode(), *known)
                return self._facts, None
        record, problem = check_line(self.kind, line)
        if record is None:
            return None, problem
        return Facts(record.order_id, record.time, record.run_id), None

    def _checked(self, tail: bytes) -> tuple[str, str] | None:
        """(time, run id) of a valid tail, remembered; None (remembered too) for pydantic."""
        if len(self._tails) >= _TAILS:
            self._tails.clear()
        found = self._tail(tail)
        known = None
        if found is not None:
            time, run = found.group("time").decode(), found.group("run").decode()
            try:
                for check in self._time_checks:
                    time = check(time)
                known = (time, run)
            except Exception:  # pydantic says why, or raises as it would have
                pass
        self._tails[tail] = known
        return known
