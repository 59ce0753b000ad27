"""Telemetry lint: every ledger line against its record model, reported as `FILE:LINE: problem`.

Findings are drift a person should look at: lines that are not valid JSON,
unknown record types, a wrong schema_version, unknown or missing fields, bad
values, torn lines (a last line without its newline, and the fragments earlier
repairs set aside in `<ledger>.torn`), and an invalid watcher snapshot. These
are errors. Records for orders whose file is no longer in the exchange are
history, not findings: withdrawing an order is legitimate and an append-only
ledger keeps what happened, so they are counted (`history_lines`) and never fail
the lint, with or without `strict`.

Speed: lines go through `ledgers.Reader`: a line in the shape the foundry writes
is checked by one regular expression, any other by pydantic's
`model_validate_json`, and a failing line is parsed again with orjson to explain
the problem. bench/ times `lint_paths`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from toyfoundry.formats.models import WatcherState
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import ledgers
from toyfoundry.telemetry.artefacts import display, exchange_order_ids

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    problem: str
    severity: Severity = "error"

    def __str__(self) -> str:
        tag = " (warning)" if self.severity == "warning" else ""
        return f"{self.path}:{self.line}: {self.problem}{tag}"


@dataclass
class LintResult:
    """What was checked and what was found; `seconds` is the wall time of the check."""

    files: int = 0
    lines: int = 0
    bytes: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    #: lines recording orders no longer in the exchange, and those orders
    history_lines: int = 0
    history_orders: set[str] = field(default_factory=set)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    def failed(self, strict: bool = False) -> bool:
        return bool(self.errors or (strict and self.warnings))

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


def lint_paths(layout: Layout) -> LintResult:
    """Check both ledgers, their `.torn` files and the watcher snapshot; read-only, repairs nothing."""
    started = time.perf_counter()
    result = LintResult()
    orders = set(exchange_order_ids(layout))
    findings = result.findings
    for path, kind in ledgers.ledgers(layout):
        shown = display(layout, path)
        for torn, number, fragment in ledgers.torn_fragments(path):
            findings.append(
                Finding(
                    display(layout, torn),
                    number,
                    f"{fragment}; inspect it, then delete the .torn file to acknowledge it",
                )
            )
        extent = ledgers.extent(path)
        if extent is None:
            continue
        result.files += 1
        result.bytes += extent.size
        read = ledgers.Reader(kind, extent.end).read
        number = 0
        for number, line in ledgers.lines(path, 0, extent.end):
            facts, problem = read(line)
            if facts is None:
                findings.append(Finding(shown, number, str(problem)))
                continue
            if facts.order_id not in orders:
                result.history_lines += 1
                result.history_orders.add(facts.order_id)
        result.lines += number
        if extent.torn:
            findings.append(
                Finding(
                    shown,
                    number + 1,
                    f"torn last line: {extent.size - extent.end} bytes without a newline"
                    " (a writer was killed; the next append sets it aside)",
                )
            )
    findings += _lint_watcher(layout)
    result.seconds = time.perf_counter() - started
    return result


def _lint_watcher(layout: Layout) -> list[Finding]:
    path = layout.watcher_state
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        WatcherState.model_validate_json(data)
    except ValidationError as exc:
        shown = display(layout, path)
        return [
            Finding(shown, 1, f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}")
            for e in exc.errors(include_url=False)[:10]
        ]
    return []
