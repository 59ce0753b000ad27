"""The production plan's command names, each the `toyfoundry` subcommand that does the job.

`forge_mint_alfa --dry-run` is `toyfoundry mint --dry-run`, and so on: one code path,
so the plan's commands and the foundry's own never drift apart (see the README's table).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from toyfoundry.cli import main

#: plan command -> the `toyfoundry` subcommand it runs
PLAN_COMMANDS: dict[str, str] = {
    "forge_mint_alfa": "mint",
    "quilt_loom": "loom",
    "exchange_watcher": "watch-exchange",
    "manufacturing_order_watcher": "watch-orders",
    "schema_validator": "validate",
}


def _run(name: str, argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return main([PLAN_COMMANDS[name], *args])


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
