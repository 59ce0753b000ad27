"""`toyfoundry lint-telemetry [--strict]`: every ledger line against its schema, as FILE:LINE lines."""

from __future__ import annotations

import argparse
import sys

from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.lint import LintResult, lint_paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail on warnings (records of orders no longer in the exchange)",
    )


def report(result: LintResult, *, limit: int | None = None) -> None:
    """Findings to stdout (at most `limit`), the counts to stderr."""
    shown = result.findings if limit is None else result.findings[:limit]
    for finding in shown:
        print(finding)
    if len(shown) < len(result.findings):
        print(f"... {len(result.findings) - len(shown)} more: run `toyfoundry lint-telemetry`")
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
