"""`toyfoundry review {list|decide}`: quarantined Alfas and the human decisions on them."""

from __future__ import annotations

import argparse

from toyfoundry.exchange.loader import Exchange, display
from toyfoundry.forge.review import awaiting_review, decide
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    subs.add_parser("list", help="show the quarantined Alfas that await a decision")
    cmd = subs.add_parser("decide", help="record a decision; the next mint of the order applies it")
    cmd.add_argument("order_id", metavar="ORDER_ID")
    cmd.add_argument("alfa_id", metavar="ALFA_ID")
    cmd.add_argument(
        "decision",
        choices=("waive", "reroll", "reject"),
        help="waive: accept as minted; reroll: draw a replacement; reject: leave the slot empty",
    )
    cmd.add_argument("--by", required=True, help="who decides")
    cmd.add_argument("--note", default="", help="why, for the record")


def run(args: argparse.Namespace, layout: Layout) -> int:
    exchange = Exchange(layout)
    if args.action == "list":
        waiting = awaiting_review(layout, exchange)
        for item in waiting:
            state = (
                f"decided {item.decided}, applied at the next mint"
                if item.decided
                else "awaits review"
            )
            dry = " (dry run)" if item.dry_run else ""
            print(f"{item.alfa.alfa_id}{dry}: {state}: {'; '.join(item.alfa.reasons)}")
        if not waiting:
            print("nothing awaits review")
        return 0
    with foundry_lock(layout.lock_file, purpose=f"review {args.order_id}"[:80]):
        decide(
            layout, exchange, args.order_id, args.alfa_id, args.decision, by=args.by, note=args.note
        )
    shown = display(layout, layout.review_file(args.order_id))
    print(f"{args.alfa_id}: {args.decision} recorded in {shown}")
    print(f"run `toyfoundry mint {args.order_id}` to apply it")
    return 0
