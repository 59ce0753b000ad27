"""`toyfoundry loom [--export] [--strict]`: the plan's telemetry quilt loom."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from toyfoundry.graph.backend import forget_tasks
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock
from toyfoundry.telemetry.artefacts import display
from toyfoundry.telemetry.loom import LoomResult, run_loom


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export",
        action="store_true",
        help="also write the exports, exchange/reports/summary.md and the dashboard",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when anything was skipped")


def report(layout: Layout, result: LoomResult) -> None:
    """Print what the loom did: a few lines to stdout, every skip to stderr."""
    waiting = len(result.orders) - len(result.built)
    print(
        f"loom: {len(result.built)} orders in the quilt, {len(result.rebuilt)} rebuilt"
        + (f", {waiting} not built yet" if waiting else "")
        + f" -> {display(layout, layout.rollup)}"
    )
    if result.exports is not None:
        print(
            f"exports: {display(layout, layout.exports)}/ ({len(result.exports.written)} files"
            f" written, {len(result.exports.removed)} removed)"
        )
        print(f"dashboard: {display(layout, layout.dashboard)}")
    if result.skipped:
        print(f"loom: skipped {len(result.skipped)}:", file=sys.stderr)
        for line in result.skipped:
            print(f"  {line}", file=sys.stderr)


def graph_redoes(layout: Layout) -> Callable[[list[str]], None]:
    """What the loom calls before it writes: the graph's tasks for those files drop their
    records, so the next build makes the files again rather than trust the loom's."""
    return lambda tasks: forget_tasks(layout.dep_db, tasks)


def run(args: argparse.Namespace, layout: Layout) -> int:
    with foundry_lock(layout.lock_file, purpose="toyfoundry loom"):
        result = run_loom(layout, export=args.export, before_writing=graph_redoes(layout))
    report(layout, result)
    return 1 if args.strict and result.skipped else 0
