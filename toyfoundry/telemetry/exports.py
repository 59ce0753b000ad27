"""Datasets for downstream ingestion: per-order partitions of Alfas and ritual events, and batches.

Every dataset is CSV (header row, columns in the row model's field order,
`\\n` line ends) with a JSON Lines twin holding the same rows. Every column has
one type (see `export_types` and docs/exports.md): nested data (an Alfa's
parameters, its validator reasons and defects, a ritual's counts) has its own
tidy dataset, one row per item, never JSON or a joined list inside a cell. Partitions are
one file per order, so a change to one order rewrites only its files and
DuckDB, pandas or Spark read the whole set with one glob
(`exports/alfas/*.csv`). An order without rows still gets a header-only CSV
and an empty JSON Lines file: every built order has its partition. The
columns are documented in docs/exports.md.
"""

from __future__ import annotations

import copy
import csv
import io
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from pathlib import Path
from typing import Any, NamedTuple, cast

import orjson
from pydantic import BaseModel, ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import (
    RITUALS,
    AlfaNoteRow,
    AlfaParamRow,
    AlfaRow,
    BatchRow,
    ParamValue,
    QuiltRollup,
    RitualCountRow,
    RitualEventRow,
)
from toyfoundry.store.atomic import remove_file, write_many_atomic
from toyfoundry.store.layout import (
    EXPORT_DATASETS,
    EXPORT_FORMATS,
    ORDER_ID_RE,
    Layout,
)
from toyfoundry.telemetry import render
from toyfoundry.telemetry.artefacts import OrderArtefacts, display
from toyfoundry.telemetry.parts import load_rollup

DATASETS = EXPORT_DATASETS
FORMATS = EXPORT_FORMATS
BATCH_COLUMNS = list(BatchRow.model_fields)
_batch_values = operator.itemgetter(*BATCH_COLUMNS)


def partition(layout: Layout, dataset: str, order_id: str, fmt: str) -> Path:
    """`exports/<dataset>/<order_id>.<fmt>`, the id checked before it becomes a path."""
    return layout.partition(dataset, order_id, fmt)


def batches_csv(layout: Layout) -> Path:
    return layout.exports / "batches.csv"


def batches_jsonl(layout: Layout) -> Path:
    return layout.exports / "batches.jsonl"


ALFA_COLUMNS = list(AlfaRow.model_fields)
PARAM_COLUMNS = list(AlfaParamRow.model_fields)
NOTE_COLUMNS = list(AlfaNoteRow.model_fields)
RITUAL_COLUMNS = list(RitualEventRow.model_fields)
COUNT_COLUMNS = list(RitualCountRow.model_fields)


def alfa_values(arts: OrderArtefacts) -> list[tuple[Any, ...]]:
    """`alfa_rows` as plain values in column order: the artefacts are valid, so the rows are."""
    mint = arts.mint
    if mint.alfas and mint.phase is None:
        raise FoundryError(f"mint.json of {arts.order_id}: has Alfas but no phase")
    order_id, day, dry_run = arts.order_id, arts.day, mint.dry_run
    recipe, version, phase = mint.recipe or "", mint.recipe_version or "", mint.phase or "pilot"
    rows: list[tuple[Any, ...]] = []
    for alfa, result in zip(mint.alfas, arts.results, strict=True):
        head = (
            order_id,
            alfa.alfa_id,
            recipe,
            version,
            phase,
            day,
            alfa.slot,
            alfa.share,
            alfa.parent_id or "",
            alfa.outcome,
            len(alfa.reasons),
            dry_run,
        )
        rows.append(
            (
                *head,
                result["score"],
                result["passed"],
                len(result["defects"]),
                result["rank"],
                result["purged"],
                result["purge_reason"] or "",
                result["promoted"],
                result["doctrine"] or "",
            )
        )
    return rows


def alfa_rows(arts: OrderArtefacts) -> list[AlfaRow]:
    """The consolidated per-Alfa view: the mint's record joined with every ritual result."""
    return [AlfaRow(**dict(zip(ALFA_COLUMNS, row, strict=True))) for row in alfa_values(arts)]


def param_values(arts: OrderArtefacts) -> list[tuple[Any, ...]]:
    """One row per parameter of each Alfa, in slot then name order.

    A number goes to `number` (a float, so one column holds integer and float
    parameters alike) with `text` empty; an enumeration's value goes to `text`
    with `number` null.
    """
    oid = arts.order_id
    rows: list[tuple[Any, ...]] = []
    for alfa in arts.mint.alfas:
        for name, value in sorted(alfa.params.items()):
            if isinstance(value, str):
                rows.append((oid, alfa.alfa_id, name, None, value))
            else:
                rows.append((oid, alfa.alfa_id, name, float(value), ""))
    return rows


def note_values(arts: OrderArtefacts) -> list[tuple[Any, ...]]:
    """One row per validator reason, then per Drill defect, of each Alfa in slot order.

    Most Alfas have neither: those that have one are found by builtins over the two
    columns, and only they take a step in Python."""
    oid, ids = arts.order_id, arts.alfa_ids
    reasons, defects = arts.alfa_columns.reasons, arts.columns.defects
    # the positions of the non-empty lists of each column (`compress` tests them itself)
    places = range(len(ids))
    noted = set(compress(places, reasons))
    noted.update(compress(places, defects))
    rows: list[tuple[Any, ...]] = []
    for i in sorted(noted):
        rows += [(oid, ids[i], "validator", reason) for reason in reasons[i]]
        rows += [(oid, ids[i], "drill", defect) for defect in defects[i]]
    return rows


def ritual_values(arts: OrderArtefacts) -> list[tuple[Any, ...]]:
    """`ritual_rows` as plain values in column order."""
    if arts.rituals is None:
        return []
    done = arts.rituals["rituals"]
    return [
        (arts.order_id, name, done[name]["ran"], done[name]["stub"])
        for name in RITUALS
        if name in done
    ]


def count_values(arts: OrderArtefacts) -> list[tuple[Any, ...]]:
    """One row per thing each ritual counted, in ritual then counter order."""
    if arts.rituals is None:
        return []
    done = arts.rituals["rituals"]
    return [
        (arts.order_id, name, counter, count)
        for name in RITUALS
        if name in done
        for counter, count in sorted(done[name]["counts"].items())
    ]


def ritual_rows(arts: OrderArtefacts) -> list[RitualEventRow]:
    """One row per ritual the order's rituals.json mentions, in ritual order."""
    return [
        RitualEventRow(**dict(zip(RITUAL_COLUMNS, row, strict=True))) for row in ritual_values(arts)
    ]


def batch_record(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A BatchRow as plain data (columns in the model's order) from a batch as the rollup holds it."""
    o, a = summary["outcomes"], summary["achieved"]
    return {
        "order_id": summary["order_id"],
        "recipe": summary["recipe"] or "",
        "phase": summary["phase"] or "",
        "day": summary["day"],
        "status": summary["status"],
        "dry_run": summary["dry_run"],
        "minted": o["minted"],
        "passed": o["passed"],
        "failed": o["failed"],
        "purged": o["purged"],
        "promoted": o["promoted"],
        "quarantined": o["quarantined"],
        "waived": o["waived"],
        "novel": a["novel"],
        "carryover": a["carryover"],
        "baseline": a["baseline"],
        "reason": summary["reason"],
    }


def _cell(value: object) -> str:
    """CSV text of a value: empty for null, lower-case booleans (as in the JSON twin)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_bytes(model: type[BaseModel], rows: Sequence[BaseModel]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = list(model.model_fields)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in columns])
    return buffer.getvalue().encode("utf-8")


def jsonl_bytes(rows: Sequence[BaseModel]) -> bytes:
    """One object per line, keys in column order (orjson keeps the model's field order)."""
    return b"".join(orjson.dumps(r.model_dump(mode="json")) + b"\n" for r in rows)


def _csv_text(value: object) -> str:
    """One cell as the csv module writes it in a row of several: as `_cell` gives it, quoted
    only when it holds a comma, a quote or a line end. Quoting is decided per field, so a
    row is its cells joined by commas; the module itself quotes any text that needs it."""
    cls = value.__class__
    if cls is str:
        text = cast(str, value)
        if "," not in text and '"' not in text and "\n" not in text and "\r" not in text:
            return text
    elif value is None:
        return ""
    elif cls is bool:
        return "true" if value else "false"
    elif cls is float:
        return repr(value)
    elif cls is int:
        return str(value)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_cell(value), ""])
    return buffer.getvalue()[:-2]


_NEEDS_QUOTES = (",", '"', "\n", "\r")
_NONE = type(None)
#: Types whose equal values have one text (unlike 0.0 and -0.0): a column of one of them
#: holding one value is one text for every line.
_PLAIN = frozenset((str, int, bool, _NONE))
#: Types orjson writes as the CSV writes them, but for some floats (see `_column_pieces`).
_SCALARS = frozenset((int, float, bool, _NONE))


def _json_texts(column: Sequence[Any]) -> list[str]:
    return list(map(bytes.decode, map(orjson.dumps, column)))


#: Part of every line of a file: a text the same in each line, or each line's own text.
Piece = str | Sequence[str]


class Plain(list[str]):
    """A column of texts that need neither CSV quotes nor JSON escapes, taken as they are:
    ids and values a model holds to a pattern or a few literals (an Alfa's id, its share)."""


class Texts(NamedTuple):
    """A column already turned into text, for each file: numbers and flags whose type the
    model fixes, made by a lookup per cell (`_small`, `_flags`)."""

    csv: list[str]
    json: list[str]


def _column_pieces(column: Sequence[Any]) -> tuple[Piece, list[Piece]]:
    """One column's part of each line, CSV and JSON.

    A column holding one value in every row (an order's id, its recipe, its day) is one
    text for all lines. The others are turned into text a column at a time by builtins,
    once for both files where their texts agree: numbers and flags (one orjson call for
    the column), and texts that need neither CSV quotes nor JSON escapes (the JSON
    quotes are pieces of their own)."""
    kinds = set(map(type, column))
    first = column[0]
    if len(kinds) == 1 and first.__class__ in _PLAIN and column.count(first) == len(column):
        return _csv_text(first), [orjson.dumps(first).decode()]
    if kinds == {str}:
        joined = "".join(column)
        csv_cells = column
        if any(mark in joined for mark in _NEEDS_QUOTES):
            csv_cells = list(map(_csv_text, column))
        # orjson's text of the whole column's characters is two quotes longer than
        # their UTF-8 exactly when none of them needs an escape
        size = len(joined) if joined.isascii() else len(joined.encode("utf-8"))
        if len(orjson.dumps(joined)) != size + 2:
            return csv_cells, [_json_texts(column)]
        return csv_cells, ['"', column, '"']
    if kinds <= _SCALARS:
        # numbers, flags and nulls: orjson's texts of the whole column at once, which are
        # the CSV's too (a null's is empty) unless a float's repr differs (an exponent, a
        # value below 1e-4, which orjson writes out, or nan and inf, which it writes null)
        texts = orjson.dumps(column)[1:-1].decode()
        cells = texts.split(",")
        if float in kinds and (
            "e" in texts or "0.0000" in texts or _nan_or_inf(texts.count("null"), column)
        ):
            return list(map(_csv_text, column)), [cells]
        if _NONE in kinds:
            return texts.replace("null", "").split(","), [cells]
        return cells, [cells]
    return list(map(_csv_text, column)), [_json_texts(column)]


def _pieces(column: object) -> tuple[Piece, list[Piece]]:
    """`_column_pieces` of a column given as a list or tuple of cells; a `Plain` column's
    texts as they are; any other value is the value of every row."""
    cls = column.__class__
    if cls is Texts:
        texts = cast(Texts, column)
        return texts.csv, [texts.json]
    if cls is Plain:
        plain = cast(Plain, column)
        if plain.count(plain[0]) == len(plain):
            return plain[0], [f'"{plain[0]}"']
        return plain, ['"', plain, '"']
    if cls is list or cls is tuple:
        return _column_pieces(cast(Sequence[Any], column))
    return _csv_text(column), [orjson.dumps(column).decode()]


def _csv_lines(cells: Iterable[Piece], n: int) -> str:
    """`n` CSV lines from their cells, left to right: a text the same in every line
    (neighbours kept as one, with the comma between them) or a column of each line's own
    text. A line is its cells joined by commas: a tuple from `zip`, joined as it is."""
    columns: list[Iterable[str]] = []
    text: str | None = None
    for cell in cells:
        if cell.__class__ is str:
            text = cell if text is None else f"{text},{cell}"
            continue
        if text is not None:
            columns.append(repeat(text, n))
            text = None
        columns.append(cell)
    if text is not None:
        columns.append(repeat(text, n))
    return "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"


def _lines(pieces: Iterable[Piece], n: int) -> str:
    """`n` lines (or blocks of lines) of a file from their pieces, left to right: texts the
    same in every line (neighbours kept as one) and columns of each line's own text. Each
    line's pieces are joined (a tuple from `zip`, joined as it is), then the lines."""
    parts: list[Iterable[str]] = []
    text = ""
    for piece in pieces:
        if piece.__class__ is str:
            text += piece
            continue
        if text:
            parts.append(repeat(text, n))
            text = ""
        parts.append(piece)
    if not parts:  # every column the same in every line
        return text * n
    if text:
        parts.append(repeat(text, n))
    return "".join(map("".join, zip(*parts, strict=True)))


@dataclass(frozen=True)
class Table:
    """A dataset's columns, with the texts every file of it repeats: the CSV header line
    and each column's JSON key as it leads the column's value ('{"a":', ',"b":')."""

    columns: tuple[str, ...]
    header: str
    keys: tuple[str, ...]


def table(columns: Sequence[str]) -> Table:
    keys = [orjson.dumps(c).decode() + ":" for c in columns]
    return Table(
        tuple(columns),
        ",".join(map(_csv_text, columns)) + "\n",
        tuple(("," if i else "{") + k for i, k in enumerate(keys)),
    )


#: Tables of up to this many rows are made a row at a time: each column's checks and
#: pieces cost more than a few rows' cells.
FEW_ROWS = 12


def table_files(form: Table, rows: Sequence[Sequence[Any]]) -> tuple[bytes, bytes]:
    """`csv_bytes` and `jsonl_bytes` of the row models, from plain rows in column order
    (two or more columns), made together.

    A few rows are made a row at a time (each line its cells' texts joined by commas,
    and orjson's text of its dict). More are made a column at a time (`columns_files`)."""
    if len(rows) > FEW_ROWS:
        return columns_files(form, len(rows), list(zip(*rows, strict=True)))
    names = form.columns
    csv_text = form.header + "".join([",".join(map(_csv_text, row)) + "\n" for row in rows])
    jsonl = b"".join([orjson.dumps(dict(zip(names, row, strict=True))) + b"\n" for row in rows])
    return csv_text.encode("utf-8"), jsonl


def columns_files(form: Table, n: int, columns: Sequence[object]) -> tuple[bytes, bytes]:
    """`table_files` of `n` rows (one or more) given as columns (see `_pieces`).

    Each column's cells are turned into text once for both files (`_column_pieces`),
    and each file is one join of its lines' pieces, the column names and separators
    among them: a line costs no dict and no string but its own."""
    cells: list[Piece] = []
    pieces: list[Piece] = []
    for key, column in zip(form.keys, columns, strict=True):
        csv_piece, json_pieces = _pieces(column)
        cells.append(csv_piece)
        pieces.append(key)
        pieces += json_pieces
    pieces.append("}\n")
    return (form.header + _csv_lines(cells, n)).encode("utf-8"), _lines(pieces, n).encode()


ALFA_TABLE, PARAM_TABLE, NOTE_TABLE, RITUAL_TABLE, COUNT_TABLE, BATCH_TABLE = map(
    table, (ALFA_COLUMNS, PARAM_COLUMNS, NOTE_COLUMNS, RITUAL_COLUMNS, COUNT_COLUMNS, BATCH_COLUMNS)
)


def _texts(values: Sequence[str | None]) -> list[str]:
    """Nulls as empty texts (a lookup a cell: a text is its own default)."""
    return cast(list[str], list(map(_EMPTY.get, values, values)))


_EMPTY: dict[str | None, str | None] = {None: ""}


#: The texts of null, false, true and small non-negative integers: CSV's, then JSON's
_CSV_OF: dict[object, str] = {None: "", False: "false", True: "true"}
_JSON_OF: dict[object, str] = {None: "null", False: "false", True: "true"}
#: ...and of integers, kept apart from the flags (0 == False, 1 == True as keys)
_CSV_INT: dict[object, str] = {None: "", **{i: str(i) for i in range(1024)}}
_JSON_INT: dict[object, str] = {None: "null", **{i: str(i) for i in range(1024)}}


_NULL: dict[str, str] = {"null": ""}


def _nan_or_inf(nulls: int, column: Sequence[object]) -> bool:
    """Whether orjson's texts of a column of floats and nulls, holding `nulls` nulls, hold
    one for a nan or an inf: more than the column has. The column's nulls are counted only
    when the texts have one (a float compared with None is a slow comparison a cell)."""
    return bool(nulls) and nulls != column.count(None)


def _floats(column: Sequence[float | None]) -> Texts | Sequence[float | None]:
    """A column of floats or nulls (as the model has them): orjson's texts of the whole
    column, the CSV's too but for nulls; as it is (for `_column_pieces`) when a float's
    repr may differ from orjson's (see there) or a float is nan or inf."""
    raw = orjson.dumps(column)
    if b"e" in raw or b"0.0000" in raw or _nan_or_inf(raw.count(b"null"), column):
        return column
    texts = raw[1:-1].decode().split(",")
    return Texts(cast(list[str], list(map(_NULL.get, texts, texts))), texts)


def _flags(column: Sequence[bool | None]) -> Texts:
    """A column of flags (booleans or nulls, as the model has them), a lookup a cell."""
    csv_texts = list(map(_CSV_OF.__getitem__, column))
    # a null's CSV text is the only empty one: looked for among the texts, each compared
    # by its length, not among the flags, each a slow comparison of a bool with None
    return Texts(
        csv_texts, list(map(_JSON_OF.__getitem__, column)) if "" in csv_texts else csv_texts
    )


def _small(column: Sequence[int | None]) -> Texts | Sequence[int | None]:
    """A column of integers or nulls, a lookup a cell while they are small and not
    negative; as it is (for `_column_pieces`) otherwise."""
    try:
        csv_texts = list(map(_CSV_INT.__getitem__, column))
    except KeyError:
        return column
    return Texts(  # a null's CSV text is the only empty one (see `_flags`)
        csv_texts, list(map(_JSON_INT.__getitem__, column)) if "" in csv_texts else csv_texts
    )


def _alfa_files(arts: OrderArtefacts) -> tuple[bytes, bytes]:
    """The alfas partition: `table_files` of `alfa_values`, made a column at a time from the
    mint's Alfas and their results (`OrderArtefacts.results`), with no row an Alfa. The
    order's values are one text for every line; ids and literals go in as they are."""
    mint = arts.mint
    alfas = mint.alfas
    if not alfas:
        return ALFA_TABLE.header.encode("utf-8"), b""
    if mint.phase is None:
        raise FoundryError(f"mint.json of {arts.order_id}: has Alfas but no phase")
    # each object's fields at once, then the columns: one step an Alfa, not one a field
    slots, shares, parents, verdicts, reasons = arts.alfa_columns
    scores, passed, defects, ranks, purged, purge_reasons, promoted, doctrines = arts.columns
    columns = (
        arts.order_id,
        Plain(arts.alfa_ids),
        mint.recipe or "",
        mint.recipe_version or "",
        mint.phase,
        arts.day,
        _small(slots),
        Plain(shares),
        Plain(_texts(parents)),
        Plain(verdicts),
        _small(list(map(len, reasons))),
        mint.dry_run,
        _floats(scores),
        _flags(passed),
        _small(list(map(len, defects))),
        _small(ranks),
        _flags(purged),
        _texts(purge_reasons),
        _flags(promoted),
        Plain(_texts(doctrines)),
    )
    return columns_files(ALFA_TABLE, len(alfas), columns)


#: The JSON keys of an alfa_params row, as orjson writes its dict: b'{"order_id":',
#: b',"alfa_id":', ...
_K_OID, _K_ALFA, _K_PARAM, _K_NUMBER, _K_TEXT = (
    (b"," if i else b"{") + orjson.dumps(c) + b":" for i, c in enumerate(PARAM_COLUMNS)
)


def _param_files(arts: OrderArtefacts) -> tuple[bytes, bytes]:
    """The alfa_params partition, CSV and JSON Lines: `table_files` of `param_values`,
    without a row tuple per row (six or so rows an Alfa): a parameter at a time when the
    batch allows it (`_param_columns`), else an Alfa at a time. A row is the Alfa's head (order and
    Alfa id) and a tail (name, number, text), each made once: the tail per distinct
    parameter value of the batch, which repeat (enumerations, small integer ranges)."""
    by_column = _param_columns(arts)
    if by_column is not None:
        return by_column
    oid = arts.order_id
    csv_lines = [PARAM_TABLE.header[:-1]]
    json_lines: list[bytes] = []
    csv_oid = _csv_text(oid) + ","
    k_param, k_number, k_text = _K_PARAM, _K_NUMBER, _K_TEXT
    json_oid = _K_OID + orjson.dumps(oid) + _K_ALFA
    tails: dict[tuple[str, type, ParamValue], tuple[str, bytes]] = {}
    for alfa in arts.mint.alfas:
        csv_head = csv_oid + _csv_text(alfa.alfa_id) + ","
        json_head = json_oid + orjson.dumps(alfa.alfa_id) + k_param
        for name, value in sorted(alfa.params.items()):
            key = (name, value.__class__, value)
            tail = tails.get(key)
            if tail is None:
                if isinstance(value, str):
                    tail = (
                        f"{_csv_text(name)},,{_csv_text(value)}",
                        b"%s%snull%s%s}"
                        % (orjson.dumps(name), k_number, k_text, orjson.dumps(value)),
                    )
                else:
                    number = float(value)
                    tail = (
                        f"{_csv_text(name)},{number!r},",
                        b'%s%s%s%s""}'
                        % (orjson.dumps(name), k_number, orjson.dumps(number), k_text),
                    )
                if not (value.__class__ is float and value == 0.0):  # 0.0 == -0.0
                    tails[key] = tail
            csv_lines.append(csv_head + tail[0])
            json_lines.append(json_head + tail[1])
    csv_lines.append("")
    json_lines.append(b"")
    return "\n".join(csv_lines).encode("utf-8"), b"\n".join(json_lines)


def _param_columns(arts: OrderArtefacts) -> tuple[bytes, bytes] | None:
    """`_param_files` for a batch whose Alfas have the same parameters, each all texts
    or all numbers (a recipe's batch): an Alfa's lines are one block of pieces, the
    order id, the names and any parameter the batch does not vary among them, and
    each parameter's column is turned into text once for both files
    (`_column_pieces`). None for any other batch."""
    alfas = arts.mint.alfas
    if not alfas:
        return None
    params = list(map(_PARAMS, alfas))
    if len(set(map(len, params))) != 1:
        return None
    names = sorted(params[0])
    try:  # every Alfa has as many parameters as the first, so the same names
        columns = [list(map(operator.itemgetter(name), params)) for name in names]
    except KeyError:
        return None
    oid_csv = _csv_text(arts.order_id) + ","
    oid_json = _J_OID + orjson.dumps(arts.order_id).decode() + _J_ALFA
    ids = Plain(arts.alfa_ids)
    id_csv, id_json = _pieces(ids)
    csv: list[Piece] = []
    json: list[Piece] = []
    csv_number: Piece
    json_number: list[Piece]
    csv_text: Piece
    json_text: list[Piece]
    for name, values in zip(names, columns, strict=True):
        kinds = set(map(type, values))
        if kinds == {str}:
            csv_text, json_text = _column_pieces(values)
            csv_number, json_number = "", ["null"]
        elif kinds == {int} and min(values) >= 0 and max(values) < len(_FLOAT_INTS):
            # a small integer's float text, without the float: "7.0"
            if values.count(values[0]) == len(values):
                csv_number = _FLOAT_INTS[values[0]]
                json_number = [csv_number]
            else:
                csv_number = list(map(_FLOAT_INTS.__getitem__, values))
                json_number = [csv_number]
            csv_text, json_text = "", ['""']
        elif kinds <= {int, float}:
            csv_number, json_number = _pieces(_floats(list(map(float, values))))
            csv_text, json_text = "", ['""']
        else:
            return None
        csv_name = "," + _csv_text(name) + ","
        json_name = _J_PARAM + orjson.dumps(name).decode() + _J_NUMBER
        csv += (oid_csv, id_csv, csv_name, csv_number, ",", csv_text, "\n")
        json += (oid_json, *id_json, json_name, *json_number, _J_TEXT, *json_text, "}\n")
    n = len(alfas)
    return (PARAM_TABLE.header + _lines(csv, n)).encode("utf-8"), _lines(json, n).encode()


_PARAMS = operator.attrgetter("params")
#: The texts of small non-negative integers as floats (`repr(float(i))`)
_FLOAT_INTS = tuple(f"{i}.0" for i in range(1024))
#: The JSON keys of an alfa_params row as text: '{"order_id":', ',"alfa_id":', ...
_J_OID, _J_ALFA, _J_PARAM, _J_NUMBER, _J_TEXT = (
    k.decode() for k in (_K_OID, _K_ALFA, _K_PARAM, _K_NUMBER, _K_TEXT)
)


_BOOL = {False: "false", True: "true"}


def _ritual_files(arts: OrderArtefacts) -> tuple[bytes, bytes]:
    """The rituals partition (`table_files` of `ritual_values`): a line of text a ritual,
    the order's id and the rituals' names as they are (a pattern and literals)."""
    oid = arts.order_id
    csv_lines, json_lines = [RITUAL_TABLE.header], []
    for _, name, ran, stub in ritual_values(arts):
        done, stubbed = _BOOL[ran], _BOOL[stub]
        csv_lines.append(f"{oid},{name},{done},{stubbed}\n")
        json_lines.append(
            f'{{"order_id":"{oid}","ritual":"{name}","ran":{done},"stub":{stubbed}}}\n'
        )
    return "".join(csv_lines).encode("utf-8"), "".join(json_lines).encode("utf-8")


def _count_files(arts: OrderArtefacts) -> tuple[bytes, bytes]:
    """The ritual_counts partition (`table_files` of `count_values`): a line of text a
    count, the counter's name quoted or escaped as each file needs."""
    oid = arts.order_id
    csv_lines, json_lines = [COUNT_TABLE.header], []
    for _, name, counter, count in count_values(arts):
        csv_lines.append(f"{oid},{name},{_csv_text(counter)},{count}\n")
        json_lines.append(
            f'{{"order_id":"{oid}","ritual":"{name}","counter":'
            f'{orjson.dumps(counter).decode()},"count":{count}}}\n'
        )
    return "".join(csv_lines).encode("utf-8"), "".join(json_lines).encode("utf-8")


def _note_files(arts: OrderArtefacts) -> tuple[bytes, bytes]:
    """The alfa_notes partition (`table_files` of `note_values`): a line of text a note,
    the note quoted or escaped as each file needs."""
    csv_lines, json_lines = [NOTE_TABLE.header], []
    for oid, alfa, source, note in note_values(arts):
        csv_lines.append(f"{oid},{alfa},{source},{_csv_text(note)}\n")
        json_lines.append(
            f'{{"order_id":"{oid}","alfa_id":"{alfa}","source":"{source}","note":'
            f"{orjson.dumps(note).decode()}}}\n"
        )
    return "".join(csv_lines).encode("utf-8"), "".join(json_lines).encode("utf-8")


def partition_files(layout: Layout, arts: OrderArtefacts) -> list[tuple[Path, bytes]]:
    """The order's partition files, a CSV and a JSON Lines file per dataset, and their bytes
    (as `csv_bytes` and `jsonl_bytes` of the row models would give them)."""
    out = []
    for dataset, (csv_data, jsonl_data) in (
        ("alfas", _alfa_files(arts)),
        ("alfa_params", _param_files(arts)),
        ("alfa_notes", _note_files(arts)),
        ("rituals", _ritual_files(arts)),
        ("ritual_counts", _count_files(arts)),
    ):
        out.append((partition(layout, dataset, arts.order_id, "csv"), csv_data))
        out.append((partition(layout, dataset, arts.order_id, "jsonl"), jsonl_data))
    return out


def write_partitions(layout: Layout, arts: OrderArtefacts) -> list[Path]:
    """Write the order's partition files; returns those whose bytes changed."""
    return write_many_atomic(partition_files(layout, arts))


def read_rollup(layout: Layout) -> QuiltRollup:
    shown = display(layout, layout.rollup)
    try:
        return QuiltRollup.model_validate_json(layout.rollup.read_bytes())
    except FileNotFoundError:
        raise FoundryError(f"{shown}: missing; run `toyfoundry build`") from None
    except ValidationError as exc:
        raise FoundryError(f"{shown}: not a valid rollup ({exc.error_count()} errors)") from None


def _rollup_batches(layout: Layout) -> list[dict[str, Any]]:
    """The rollup's batches as plain data, read only: as is when it holds the bytes the quilt
    recorded (shared with the other readers in this process), else validated."""
    stored = load_rollup(layout)
    if stored is not None:
        batches: list[dict[str, Any]] = stored.document["batches"]
        return batches
    batches = read_rollup(layout).model_dump(mode="json")["batches"]
    return batches


def read_rollup_data(layout: Layout) -> dict[str, Any]:
    """The rollup as plain data of the caller's own: as is when it holds the bytes the quilt
    recorded, else validated."""
    stored = load_rollup(layout)
    if stored is not None:
        return copy.deepcopy(stored.document)  # the parsed rollup is shared: see `parts`
    return read_rollup(layout).model_dump(mode="json")


@dataclass
class ExportsResult:
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def build_exports(
    layout: Layout, order_ids: Iterable[str], changed: Iterable[str] | None = None
) -> ExportsResult:
    """batches.csv/.jsonl and summary.md from the rollup; drop outputs of orders no longer listed.

    Reads only the rollup (O(orders)), as plain data: the partitions were
    written per order by `reports.build_order_outputs` when that order changed,
    so `changed` (what the graph saw change) needs no work here and is accepted
    for its call. The rollup the quilt just wrote is trusted without
    validating it again, and in the quilt's process without parsing it again
    (see `parts`); the three files are made from plain values into the bytes
    the BatchRow model would give.
    """
    keep = set(order_ids)
    batches = [b for b in _rollup_batches(layout) if b["order_id"] in keep]
    records = [batch_record(b) for b in batches]
    result = ExportsResult()
    csv_data, jsonl_data = batches_files(records)
    # the three files in one batch: one flush for the set (see `write_many_atomic`)
    result.written = write_many_atomic(
        [
            (batches_csv(layout), csv_data),
            (batches_jsonl(layout), jsonl_data),
            (layout.summary_md, render.summary_md(batches).encode("utf-8")),
        ]
    )
    result.removed = remove_stale(layout, keep)
    return result


def batches_files(records: Sequence[Mapping[str, Any]]) -> tuple[bytes, bytes]:
    """`csv_bytes(BatchRow, rows)` and `jsonl_bytes(rows)` for plain rows (`batch_record`s)."""
    return table_files(BATCH_TABLE, list(map(_batch_values, records)))


def stale_outputs(layout: Layout, keep: set[str]) -> list[Path]:
    """Per-order outputs (partitions, reports, quilt parts, outbox manifests) of orders not
    in `keep`.

    One listing of names per folder: a kept order's file costs a set lookup,
    and only the (usually no) stale names are checked, sorted and made paths.
    The outbox is swept like the reports: a manifest exists only while its order
    is in the exchange.
    """
    places: list[tuple[Path, tuple[str, ...]]] = [(layout.exports / d, FORMATS) for d in DATASETS]
    places += [
        (layout.reports_dir, ("json", "md", "html")),
        (layout.quilt_parts, ("json",)),
        (layout.outbox_dir, ("json",)),
    ]
    found = []
    for folder, suffixes in places:
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        stale = []
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if stem not in keep and dot and suffix in suffixes and ORDER_ID_RE.match(stem):
                stale.append(name)
        found += [folder / name for name in sorted(stale)]
    return found


def stale_builds(layout: Layout, keep: set[str]) -> list[Path]:
    """The build folders (`.toyfoundry/build/<order>/`) of orders not in `keep`: no task
    makes them any more, and a clean build of the same exchange has none."""
    try:
        names = os.listdir(layout.build)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [layout.build / n for n in sorted(names) if n not in keep and ORDER_ID_RE.match(n)]


def remove_stale(layout: Layout, keep: set[str]) -> list[Path]:
    removed = []
    for path in stale_outputs(layout, keep):
        if remove_file(path):
            removed.append(path)
    for folder in stale_builds(layout, keep):
        # the folder's files, then the folder; a folder holding anything else stays
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            if child.is_file() and not child.is_symlink() and remove_file(child):
                removed.append(child)
        try:
            folder.rmdir()
        except OSError:
            continue
        removed.append(folder)
    return removed
