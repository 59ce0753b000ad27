"""The production plan's command names, each the `toyfoundry` subcommand that does the job.

`forge_mint_alfa --dry-run` is `toyfoundry mint --dry-run`, and so on: one code path,
so the plan's commands and the foundry's own never drift apart (see the table in docs/operators.md).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from toyfoundry.cli import main
from toyfoundry.pipes import end_quietly_on_closed_pipe

#: plan command -> the `toyfoundry` subcommand it runs
PLAN_COMMANDS: dict[str, str] = {
    "forge_mint_alfa": "mint",
    "quilt_loom": "loom",
    "exchange_watcher": "watch-exchange",
    "manufacturing_order_watcher": "watch-orders",
    "schema_validator": "validate",
}


def _run(name: str, argv: Sequence[str] | None) -> int:
    """`toyfoundry [--root R] SUBCOMMAND ARGS`, with `--root` and `--version` taken from
    anywhere on the plan command's line, and usage lines naming the plan's command."""
    if argv is None:
        end_quietly_on_closed_pipe()
    args = list(sys.argv[1:] if argv is None else argv)
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg == "--version":
            front.append(arg)
        elif arg == "--root" and i + 1 < len(args):
            front += args[i : i + 2]
            i += 1
        elif arg.startswith("--root="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return main([*front, PLAN_COMMANDS[name], *rest], prog=name)


def forge_mint_alfa(argv: Sequence[str] | None = None) -> int:
    """`forge_mint_alfa [ORDER_ID ...] [--dry-run]`: mint the orders named, or what is pending."""
    return _run("forge_mint_alfa", argv)


def quilt_loom(argv: Sequence[str] | None = None) -> int:
    """`quilt_loom [--export]`: stitch the quilt (and the exports and dashboard)."""
    return _run("quilt_loom", argv)


def exchange_watcher(argv: Sequence[str] | None = None) -> int:
    """`exchange_watcher --target T --watch|--once`: record artefacts addressed to a target."""
    return _run("exchange_watcher", argv)


def manufacturing_order_watcher(argv: Sequence[str] | None = None) -> int:
    """`manufacturing_order_watcher --watch --interval S`: say when pending orders change."""
    return _run("manufacturing_order_watcher", argv)


def schema_validator(argv: Sequence[str] | None = None) -> int:
    """`schema_validator [PATH ...]`: check exchange files (all of them when none is named)."""
    return _run("schema_validator", argv)
