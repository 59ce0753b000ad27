"""`toyfoundry nightly [--strict]`: the nightly rollup: lint, loom with exports, the dashboard,
and the review backlog.

The loom runs even when the lint finds drift (it skips bad lines and lists
them), so High Command gets its dashboard; the exit code still says 1, so a
scheduler mails the output.
"""

from __future__ import annotations

import argparse
import datetime as dt

from toyfoundry.commands import lint_telemetry, loom
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock
from toyfoundry.telemetry.backlog import backlog
from toyfoundry.telemetry.lint import lint_paths
from toyfoundry.telemetry.loom import run_loom

#: Findings printed by the nightly run; the rest are counted (lint-telemetry prints all).
SHOWN_FINDINGS = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on lint warnings and on anything the loom skipped",
    )


def run(args: argparse.Namespace, layout: Layout) -> int:
    linted = lint_paths(layout)
    lint_telemetry.report(linted, limit=SHOWN_FINDINGS)
    with foundry_lock(layout.lock_file, purpose="toyfoundry nightly"):
        result = run_loom(layout, export=True, before_writing=loom.graph_redoes(layout))
    loom.report(layout, result)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for line in backlog(layout).lines(today):
        print(line)
    failed = linted.failed(args.strict) or (args.strict and bool(result.skipped))
    return 1 if failed else 0
