"""Lineage: trace an order or an Alfa to its order file, ledger lines, artefacts, exports and reports.

Read-only and meant for people asking "where did this row come from?", so it
may scan the ledgers in full (a byte search for the order id before any
parsing keeps that quick).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import Alfa, AlfaResult, MintArtefact, MintRecord, WatcherState
from toyfoundry.store.layout import ALFA_ID_RE, ORDER_ID_RE, Layout, UnsafeIdError
from toyfoundry.telemetry import artefacts, exports, ledgers
from toyfoundry.telemetry.artefacts import OrderArtefacts, display
from toyfoundry.telemetry.parts import read_part


@dataclass
class LedgerLine:
    """One ledger record about the id, by file:line."""

    where: str
    run_id: str
    time: str
    what: str


@dataclass
class Lineage:
    ident: str
    order_id: str
    is_alfa: bool
    order_file: str
    order_sha256: str | None
    watcher: str = ""
    build: list[str] = field(default_factory=list)
    status: str = ""
    alfa: dict[str, object] = field(default_factory=dict)
    result: dict[str, object] = field(default_factory=dict)
    attempts: dict[str, list[LedgerLine]] = field(default_factory=dict)
    rituals: list[LedgerLine] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return bool(self.order_sha256 or self.build or self.attempts or self.rituals)


def sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _input_path(layout: Layout, key: str, mint: MintArtefact) -> Path | None:
    """The file an entry of MintArtefact.inputs names: a path, or a well-known input name."""
    if "/" in key or key.endswith(".json"):
        path = Path(key)
        return path if path.is_absolute() else layout.root / path
    try:
        named = {
            "order": layout.order_file(mint.order_id),
            "review": layout.review_file(mint.order_id),
            "recipe": layout.recipe_file(mint.recipe) if mint.recipe else None,
            "checkpoint": layout.checkpoint_file(mint.phase) if mint.phase else None,
            "chain": None,
        }
    except UnsafeIdError:
        return None
    return named.get(key)


def stale_inputs(layout: Layout, mint: MintArtefact) -> tuple[list[str], list[str]]:
    """(what changed since mint.json was made, inputs that cannot be checked), by content digest."""
    stale, unchecked = [], []
    order_file = layout.order_file(mint.order_id).absolute()
    saw_order = False
    for key, recorded in sorted(mint.inputs.items()):
        path = _input_path(layout, key, mint)
        if path is None:
            unchecked.append(key)
            continue
        saw_order = saw_order or path.absolute() == order_file
        current = sha256_of(path) if path.is_file() else None
        if current != recorded:
            before = recorded[:12] if recorded else "absent"
            now = current[:12] if current else "absent"
            stale.append(f"{key}: changed since mint.json was made (then {before}, now {now})")
    if not saw_order:
        unchecked.append("order file (mint.json records no digest for it)")
    return stale, unchecked


def _scan(layout: Layout, lineage: Lineage) -> None:
    needle = lineage.order_id.encode()
    for path, kind in ledgers.ledgers(layout):
        extent = ledgers.extent(path)
        if extent is None:
            continue
        shown = display(layout, path)
        for number, line in ledgers.lines(path, 0, extent.end):
            if needle not in line:
                continue
            record, problem = ledgers.check_line(kind, line)
            where = f"{shown}:{number}"
            if record is None:
                lineage.notes.append(f"{where}: mentions the id but is invalid: {problem}")
                continue
            if record.order_id != lineage.order_id:
                continue
            if isinstance(record, MintRecord):
                if lineage.is_alfa and record.alfa_id != lineage.ident:
                    continue
                what = f"{record.outcome} {record.alfa_id or '(order)'}"
                hit = LedgerLine(where, record.run_id, record.time, what)
                lineage.attempts.setdefault(record.run_id, []).append(hit)
            else:
                what = f"{record.ritual} {record.outcome}"
                lineage.rituals.append(LedgerLine(where, record.run_id, record.time, what))


def _rows(layout: Layout, path: Path, column: str, value: str | None) -> list[str]:
    """`file:line` (or `file:first-last`) of the rows of a CSV or JSON Lines file about the id."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    found: list[int] = []
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, 2):
            if value is None or row.get(column) == value:
                found.append(number)
    else:
        for number, line in enumerate(text.splitlines(), 1):
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict) and (value is None or row.get(column) == value):
                found.append(number)
    if not found:
        return []
    shown = display(layout, path)
    if len(found) == 1:
        return [f"{shown}:{found[0]}"]
    if found == list(range(found[0], found[-1] + 1)):
        return [f"{shown}:{found[0]}-{found[-1]}"]
    return [f"{shown}:{n}" for n in found]


def _export_rows(layout: Layout, lineage: Lineage) -> list[str]:
    oid = lineage.order_id
    alfa = lineage.ident if lineage.is_alfa else None
    out = []
    for dataset in ("alfas", "alfa_params", "alfa_notes"):
        for fmt in exports.FORMATS:
            out += _rows(layout, exports.partition(layout, dataset, oid, fmt), "alfa_id", alfa)
    if not lineage.is_alfa:
        for dataset in ("rituals", "ritual_counts"):
            for fmt in exports.FORMATS:
                path = exports.partition(layout, dataset, oid, fmt)
                out += _rows(layout, path, "order_id", oid)
    out += _rows(layout, exports.batches_csv(layout), "order_id", oid)
    return out


def _describe_alfa(alfa: Alfa | None, result: AlfaResult | None, lineage: Lineage) -> None:
    if alfa is not None:
        lineage.alfa = alfa.model_dump(mode="json")
    if result is not None:
        lineage.result = result.model_dump(mode="json", exclude={"alfa_id"})


def _watcher(layout: Layout, order_id: str) -> str:
    try:
        state = WatcherState.model_validate_json(layout.watcher_state.read_bytes())
    except (OSError, ValidationError):
        return ""
    for seen in state.artefacts:
        if seen.path.endswith(f"orders/{order_id}.json"):
            return f"first seen {seen.first_seen}, last seen {seen.last_seen} ({seen.sha256[:12]})"
    return ""


def _build(layout: Layout, lineage: Lineage) -> OrderArtefacts | None:
    oid = lineage.order_id
    for path in (layout.mint_artefact(oid), layout.rituals_artefact(oid)):
        if path.is_file():
            lineage.build.append(display(layout, path))
    if not lineage.build:
        return None
    try:
        arts = artefacts.load(layout, oid)
    except FoundryError as exc:
        lineage.notes.append(str(exc))
        return None
    lineage.status = arts.mint.status
    return arts


def trace(layout: Layout, ident: str) -> Lineage:
    """Everything recorded about an order id or an Alfa id; FoundryError if nothing is."""
    if ALFA_ID_RE.match(ident):
        order_id, is_alfa = ident.split(".", 1)[0], True
    elif ORDER_ID_RE.match(ident):
        order_id, is_alfa = ident, False
    else:
        raise FoundryError(f"{ident[:80]!r}: not an order id (YYYY-MM-DD-NNN) or an Alfa id")
    order_file = layout.order_file(order_id)
    lineage = Lineage(
        ident=ident,
        order_id=order_id,
        is_alfa=is_alfa,
        order_file=display(layout, order_file),
        order_sha256=sha256_of(order_file) if order_file.is_file() else None,
    )
    if lineage.order_sha256 is None:
        lineage.notes.append(
            "the order file is gone: the next `toyfoundry loom --export` removes its outputs"
        )
    lineage.watcher = _watcher(layout, order_id)
    arts = _build(layout, lineage)
    if arts is not None:
        stale, unchecked = stale_inputs(layout, arts.mint)
        lineage.stale += stale
        lineage.notes += [f"cannot check input: {u}" for u in unchecked]
        part, _ = read_part(layout, order_id)
        if part is not None and part.source != arts.source:
            lineage.stale.append(
                "reports, quilt part and exports are older than the build artefacts:"
                " run `toyfoundry build`"
            )
        if is_alfa:
            alfa = next((a for a in arts.mint.alfas if a.alfa_id == ident), None)
            results = arts.rituals["results"] if arts.rituals else []
            row = next((r for r in results if r["alfa_id"] == ident), None)
            result = AlfaResult.model_validate(row) if row is not None else None
            if alfa is None:
                lineage.notes.append(f"{ident} is not in {lineage.build[0]}")
            _describe_alfa(alfa, result, lineage)
    _scan(layout, lineage)
    lineage.exports = _export_rows(layout, lineage)
    for path in (
        layout.report_json(order_id),
        layout.report_md(order_id),
        layout.report_html(order_id),
    ):
        if path.is_file():
            lineage.reports.append(display(layout, path))
    if not lineage.known:
        raise FoundryError(
            f"{ident}: nothing is recorded about it (no order file, build or ledger line)"
        )
    if is_alfa and not lineage.alfa and not lineage.attempts:
        # the order is known, the Alfa is not: its order's records would only mislead
        raise FoundryError(
            f"{ident}: nothing is recorded about it (not in its order's build or any ledger"
            f" line); `toyfoundry why {order_id}` shows the order"
        )
    return lineage
