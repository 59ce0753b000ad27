"""`toyfoundry doctrine {list|verify}`: inspect and verify the doctrine archive."""

from __future__ import annotations

import argparse

from toyfoundry.errors import FoundryError
from toyfoundry.forge.doctrine import read_index, verify
from toyfoundry.store.layout import Layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    subs.add_parser("list", help="one line per archived Alfa")
    subs.add_parser("verify", help="re-hash every entry; exit 1 on a missing or tampered one")


def run(args: argparse.Namespace, layout: Layout) -> int:
    if args.action == "list":
        entries, problems = read_index(layout)
        for e in entries:
            print(
                f"{e.sha256[:12]} {e.alfa_id} {e.recipe} score {e.score} archived {e.archived_at}"
            )
        if problems:
            raise FoundryError("", problems)
        return 0
    checked, problems = verify(layout)
    if problems:
        raise FoundryError("", problems)
    print(f"doctrine: {checked} entries verified")
    return 0
