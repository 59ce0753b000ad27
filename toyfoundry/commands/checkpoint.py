"""`toyfoundry checkpoint {approve|list}`: the human checkpoints before expansion and operational."""

from __future__ import annotations

import argparse

from toyfoundry.exchange.loader import Exchange, display
from toyfoundry.forge.checkpoint import GATED_PHASES, approve
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    approve_cmd = subs.add_parser("approve", help="approve a phase: its orders may then build")
    approve_cmd.add_argument("phase", choices=GATED_PHASES)
    approve_cmd.add_argument("--by", required=True, help="who approves")
    approve_cmd.add_argument("--note", default="", help="why, for the record")
    subs.add_parser("list", help="show each gated phase's checkpoint")


def run(args: argparse.Namespace, layout: Layout) -> int:
    if args.action == "approve":
        with foundry_lock(layout.lock_file, purpose=f"checkpoint approve {args.phase}"):
            checkpoint, written = approve(layout, args.phase, by=args.by, note=args.note)
        shown = display(layout, layout.checkpoint_file(args.phase))
        verb = "approved" if written else "already approved"
        print(
            f"{args.phase}: {verb} by {checkpoint.approved_by} at {checkpoint.approved_at} ({shown})"
        )
        print(f"run `toyfoundry build` to build the {args.phase} orders")
        return 0
    exchange = Exchange(layout)
    status = 0
    for phase in GATED_PHASES:
        loaded = exchange.checkpoint(phase)
        if loaded is None:
            print(f"{phase}: not approved: its orders are blocked")
        elif loaded.model is None or loaded.problems:
            status = 1
            for problem in loaded.problems:
                print(problem)
        else:
            cp = loaded.model
            print(f"{phase}: approved by {cp.approved_by} at {cp.approved_at}")
    return status
