"""`toyfoundry watch-orders [--watch | --once]`: notify when the set of pending orders changes."""

from __future__ import annotations

import argparse

from toyfoundry.commands import positive_seconds
from toyfoundry.store.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="keep watching until Ctrl-C or SIGTERM")
    mode.add_argument(
        "--once", action="store_true", help="check once and exit (the default; for schedulers)"
    )
    parser.add_argument(
        "--interval",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="with --watch: check at least this often (default: 30)",
    )
    parser.add_argument("--build", action="store_true", help="run the graph before each check")
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no terminal bell and no desktop notification; print only",
    )


def run(args: argparse.Namespace, layout: Layout) -> int:
    from toyfoundry.watch.observer import stop_on_signals
    from toyfoundry.watch.orders import Notifier, OrderWatcher

    watcher = OrderWatcher(layout, build=args.build, notify=Notifier(quiet=args.quiet))
    if not args.watch:
        watcher.check()
        return 0
    with stop_on_signals():
        try:
            return watcher.run(interval=args.interval)
        except KeyboardInterrupt:
            return 0
