"""`toyfoundry watch-exchange --target ID [--watch | --once]`: record exchange artefacts for a target."""

from __future__ import annotations

import argparse

from toyfoundry.commands import positive_seconds, seconds
from toyfoundry.store.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        required=True,
        help="the target the artefacts are addressed to, e.g. toyfoundry_ai_0",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="keep watching until Ctrl-C or SIGTERM")
    mode.add_argument(
        "--once", action="store_true", help="check once and exit (the default; for schedulers)"
    )
    parser.add_argument(
        "--interval",
        type=positive_seconds,
        default=300.0,
        metavar="SECONDS",
        help="with --watch: also rescan this often, in case an event was missed (default: 300)",
    )
    parser.add_argument(
        "--quiet-period",
        type=seconds,
        default=1.0,
        metavar="SECONDS",
        help="a file is read once unchanged for this long (default: 1)",
    )


def run(args: argparse.Namespace, layout: Layout) -> int:
    from toyfoundry.watch.exchange import ExchangeWatcher
    from toyfoundry.watch.observer import stop_on_signals

    watcher = ExchangeWatcher(layout, args.target, quiet=args.quiet_period)
    if not args.watch:
        diff = watcher.check(wait=3 * args.quiet_period)
        print("\n".join(diff.lines()), flush=True)
        return 0
    with stop_on_signals():
        try:
            return watcher.run(interval=args.interval)
        except KeyboardInterrupt:
            return 0
