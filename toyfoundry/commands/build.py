"""`toyfoundry build [DOIT ARGS]`: the doit graph, for callers without the project's dodo.py."""

from __future__ import annotations

import argparse
import os
import tomllib

from toyfoundry import installed
from toyfoundry.errors import FoundryError
from toyfoundry.store.layout import Layout


def _seconds(text: str) -> float:
    """`--lock-timeout`'s value; one that is not seconds is a usage error (exit 2)."""
    from toyfoundry.store.lock import parse_timeout

    try:
        return parse_timeout(text)
    except FoundryError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--lock-timeout: ")) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lock-timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up (one line, non-zero exit) when the foundry lock stays busy this long",
    )
    parser.add_argument(
        "doit_args",
        nargs=argparse.REMAINDER,
        help="passed to doit as is (task names, `list`, `info TASK`, `clean`, ...)",
    )


def run(args: argparse.Namespace, layout: Layout) -> int:
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from toyfoundry.graph import dodo
    from toyfoundry.graph.config import DOIT_PLUGINS
    from toyfoundry.store.lock import lock_timeout

    if not layout.exchange.is_dir() and not layout.state.is_dir():
        # no project here: building would make an empty foundry in whatever folder this is
        raise FoundryError(
            f"toyfoundry build: {layout.root} holds no exchange/ folder; run it in the"
            " project folder, or give --root"
        )
    os.chdir(layout.root)
    try:
        main = DoitMain(ModuleTaskLoader(dodo), extra_config=DOIT_PLUGINS)
    except tomllib.TOMLDecodeError as exc:  # doit reads the folder's pyproject.toml first
        raise FoundryError(f"pyproject.toml: -: is not valid TOML: {exc}") from None
    with lock_timeout(args.lock_timeout), installed.for_doit():
        code: int = main.run(list(args.doit_args))
    return code
