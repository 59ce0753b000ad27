"""`toyfoundry lint-telemetry [--strict]`: every ledger line against its schema, as FILE:LINE lines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.lint import Finding, LintResult, lint_paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail on warnings (records of withdrawn orders are history, never warnings)",
    )


def _key(finding: Finding) -> tuple[str, str, str]:
    return finding.path, finding.problem, finding.severity


def _run_line(run: Sequence[Finding]) -> tuple[str, int]:
    """One printed line for a run of one problem on consecutive lines, and its size."""
    first, last, size = run[0], run[-1], len(run)
    if size == 1:
        return str(first), 1
    tag = "warning, " if first.severity == "warning" else ""
    return f"{first.path}:{first.line}-{last.line}: {first.problem} ({tag}{size} lines)", size


def collapsed(findings: Sequence[Finding]) -> list[tuple[str, int]]:
    """The findings as lines to print, each with how many it stands for: one problem on
    consecutive lines of one file is one line (a deleted order's 96 records, say)."""
    out: list[tuple[str, int]] = []
    run: list[Finding] = []
    for finding in findings:
        if run and _key(finding) == _key(run[-1]) and finding.line == run[-1].line + 1:
            run.append(finding)
            continue
        if run:
            out.append(_run_line(run))
        run = [finding]
    if run:
        out.append(_run_line(run))
    return out


def report(result: LintResult, *, limit: int | None = None) -> None:
    """Findings to stdout, the counts to stderr.

    With a `limit` (the nightly run's summary) runs of one problem on consecutive lines
    are one line each, and at most `limit` lines are printed; without one, every
    finding is a FILE:LINE line of its own, for editors and scripts.
    """
    every = [(str(f), 1) for f in result.findings]
    lines = every if limit is None else collapsed(result.findings)[:limit]
    for text, _ in lines:
        print(text)
    hidden = len(result.findings) - sum(n for _, n in lines)
    if hidden:
        print(f"... {hidden} more: run `toyfoundry lint-telemetry`")
    rate = f"{result.lines_per_second / 1000:.0f}k lines/s" if result.seconds else "-"
    history = (
        f"; {result.history_lines} lines of {len(result.history_orders)} withdrawn order(s)"
        " kept as history"
        if result.history_lines
        else ""
    )
    print(
        f"lint-telemetry: {counted(result.files, 'ledger')}, {counted(result.lines, 'line')}"
        f" ({rate}): {counted(result.errors, 'error')}, {counted(result.warnings, 'warning')}"
        f"{history}",
        file=sys.stderr,
    )


def counted(n: int, noun: str) -> str:
    """`1 error`, `2 errors`: cron mails and CI logs are read by people."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def run(args: argparse.Namespace, layout: Layout) -> int:
    result = lint_paths(layout)
    report(result)
    return 1 if result.failed(args.strict) else 0
