"""`toyfoundry watch`: watch exchange/ and rebuild what each change affects, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse

from toyfoundry.commands import positive_seconds, seconds
from toyfoundry.store.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet-period",
        type=seconds,
        default=0.05,
        metavar="SECONDS",
        help="rebuild once no event came for this long (default: 0.05); JSON files are read"
        " as soon as they parse, other files once unchanged this long",
    )
    parser.add_argument(
        "--max-delay",
        type=seconds,
        default=3.0,
        metavar="SECONDS",
        help="rebuild at the latest this long after the first event of a burst (default: 3)",
    )
    parser.add_argument(
        "--settle",
        type=seconds,
        default=2.0,
        metavar="SECONDS",
        help="a file that does not parse is reported once unchanged this long (default: 2)",
    )
    parser.add_argument(
        "--rescan",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="rescan the exchange this often even without events (default: 10)",
    )
    parser.add_argument(
        "--polling",
        action="store_true",
        help="poll instead of native events (network filesystems)",
    )
    parser.add_argument(
        "--no-initial-build",
        action="store_true",
        help="take the exchange as it is at start as built; rebuild only later changes",
    )
    parser.add_argument(
        "--dodo",
        metavar="FILE_OR_MODULE",
        help="task module to run instead of Toyfoundry's graph (tests and benchmarks)",
    )


def run(args: argparse.Namespace, layout: Layout) -> int:
    from toyfoundry.watch.graph_watcher import GraphWatcher, load_dodo
    from toyfoundry.watch.observer import WatchdogSource, stop_on_signals

    watcher = GraphWatcher(
        layout,
        dodo=load_dodo(args.dodo) if args.dodo else None,
        source=WatchdogSource(polling=args.polling),
        quiet=args.quiet_period,
        max_delay=args.max_delay,
        settle=args.settle,
        rescan=args.rescan,
        initial_build=not args.no_initial_build,
    )
    with stop_on_signals():
        try:
            print(
                f"watch: watching {layout.exchange} (quiet {args.quiet_period:g}s,"
                f" rescan every {args.rescan:g}s); Ctrl-C to stop",
                flush=True,
            )
            code = watcher.run()
            print(f"watch: stopped after {watcher.builds} build(s)", flush=True)
        except KeyboardInterrupt:
            code = 0
    return code
