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
        help="also fail on warnings (records of orders no longer in the exchange)",
    )


def collapsed(findings: Sequence[Finding]) -> list[tuple[str, int]]:
    """The findings as lines to print, each with how many it stands for: one problem on
    consecutive lines of one file is one line (a deleted order's 96 records, say)."""
    out: list[tuple[str, int]] = []
    run: list[Finding] = []
    for finding in [*findings, None]:
        last = run[-1] if run else None
        if (
            finding is not None
            and last is not None
            and (finding.path, finding.problem, finding.severity)
            == (last.path, last.problem, last.severity)
            and finding.line == last.line + 1
        ):
            run.append(finding)
            continue
        if run:
            first, end = run[0], run[-1]
            if len(run) == 1:
                out.append((str(first), 1))
            else:
                tag = "warning, " if first.severity == "warning" else ""
                text = f"{first.path}:{first.line}-{end.line}: {first.problem}"
                out.append((f"{text} ({tag}{len(run)} lines)", len(run)))
        run = [finding] if finding is not None else []
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
    print(
        f"lint-telemetry: {result.files} ledgers, {result.lines} lines ({rate}):"
        f" {result.errors} errors, {result.warnings} warnings",
        file=sys.stderr,
    )


def run(args: argparse.Namespace, layout: Layout) -> int:
    result = lint_paths(layout)
    report(result)
    return 1 if result.failed(args.strict) else 0
