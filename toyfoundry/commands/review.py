"""`toyfoundry review {list|decide|undo}`: the queue of quarantined Alfas and the decisions on it."""

from __future__ import annotations

import argparse
from collections import Counter

from toyfoundry.errors import UsageError
from toyfoundry.exchange.loader import Exchange, display
from toyfoundry.forge.review import (
    Selection,
    Waiting,
    awaiting_review,
    decide,
    decide_pending,
    undo,
    undone,
)
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock

DECISIONS = ("waive", "reroll", "reject")
#: The one command that applies decisions: it re-mints, runs the rituals and writes the reports.
APPLY = "toyfoundry build"


def _selectors(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--finding",
        "--rule",
        dest="finding",
        metavar="TEXT",
        help="only Alfas whose finding contains TEXT (a rule: `forbidden`, `combination 0`, ...)",
    )
    cmd.add_argument("--recipe", metavar="RECIPE", help="only Alfas of this recipe")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    cmd = subs.add_parser(
        "list", help="the queue: counts by finding, then by order, the oldest waiting first"
    )
    cmd.add_argument("order_id", metavar="ORDER_ID", nargs="?", help="only this order")
    _selectors(cmd)
    cmd.add_argument("--brief", action="store_true", help="counts only, no line per Alfa")
    cmd = subs.add_parser(
        "decide",
        help="record a decision on one Alfa or on every pending Alfa selected; a build applies it",
        description="`decide ORDER ALFA waive` decides one Alfa; `decide ORDER waive` every"
        " pending Alfa of the order; `decide waive --finding TEXT | --recipe R | --all` every"
        " pending Alfa selected.",
    )
    cmd.add_argument(
        "targets",
        nargs="+",
        metavar="[ORDER_ID [ALFA_ID]] {waive,reroll,reject}",
        help="waive: accept as minted; reroll: draw a replacement; reject: leave the slot empty",
    )
    _selectors(cmd)
    cmd.add_argument("--all", action="store_true", help="every pending Alfa (with the selectors)")
    cmd.add_argument("--by", required=True, help="who decides")
    cmd.add_argument("--note", default="", help="why, for the record")
    cmd = subs.add_parser(
        "undo",
        help="remove decisions: the last `decide`, or those selected",
    )
    cmd.add_argument("order_id", metavar="ORDER_ID", nargs="?")
    cmd.add_argument("alfa_id", metavar="ALFA_ID", nargs="?")
    _selectors(cmd)


def _selection(args: argparse.Namespace, order: str | None, alfa: str | None) -> Selection:
    return Selection(order_id=order, alfa_id=alfa, finding=args.finding, recipe=args.recipe)


def _list(args: argparse.Namespace, layout: Layout) -> int:
    selection = _selection(args, args.order_id, None)
    exchange = Exchange(layout)
    waiting = [w for w in awaiting_review(layout, exchange) if selection.waiting(w)]
    taken_back = [w for w in undone(layout, exchange) if selection.waiting(w)]
    if taken_back:
        undone_in = len({w.order_id for w in taken_back})
        print(
            f"{len(taken_back)} decided Alfa(s) in {undone_in} order(s) no longer have a decision"
            f" (undone): they await review again after `{APPLY}`"
        )
        if not args.brief:
            for item in taken_back:
                print(f"    {item.alfa.alfa_id}: was {item.alfa.outcome}: {item.finding}")
    if not waiting:
        print("nothing awaits review")
        return 0
    pending = [w for w in waiting if w.decided is None]
    orders = sorted({w.order_id for w in waiting})
    print(
        f"{len(pending)} quarantined Alfa(s) await review, {len(waiting) - len(pending)} decided"
        f" (applied by `{APPLY}`), in {len(orders)} order(s); oldest waiting since"
        f" {min(w.day for w in waiting)}"
    )
    print("by finding:")
    for finding, count in Counter(w.finding for w in pending).most_common():
        print(f"  {count:5d}  {finding}")
    print("by order, oldest first:")
    for order_id in orders:
        items = [w for w in waiting if w.order_id == order_id]
        undecided = sum(w.decided is None for w in items)
        dry = " (dry run)" if items[0].dry_run else ""
        print(f"  {order_id} {items[0].recipe}{dry}: {undecided} waiting, {len(items)} quarantined")
        if not args.brief:
            for item in items:
                print(f"    {_line(item)}")
    return 0


def _line(item: Waiting) -> str:
    state = (
        f"decided {item.decided}, applied at the next build" if item.decided else "awaits review"
    )
    return f"{item.alfa.alfa_id}: {state}: {item.finding}"


def _decide(args: argparse.Namespace, layout: Layout) -> int:
    *named, decision = args.targets
    if decision not in DECISIONS or len(named) > 2:
        raise UsageError(
            "toyfoundry review decide: expected [ORDER_ID [ALFA_ID]] {waive,reroll,reject},"
            f" got {' '.join(args.targets)!r}"
        )
    order = named[0] if named else None
    alfa = named[1] if len(named) > 1 else None
    selection = _selection(args, order, alfa)
    if not selection and not args.all:
        raise UsageError(
            "toyfoundry review decide: name an order (and an Alfa), or select with"
            " --finding, --recipe or --all"
        )
    exchange = Exchange(layout)
    with foundry_lock(layout.lock_file, purpose=f"review decide {decision}"):
        if alfa is not None and order is not None and not (args.finding or args.recipe):
            decide(layout, exchange, order, alfa, decision, by=args.by, note=args.note)
            shown = display(layout, layout.review_file(order))
            print(f"{alfa}: {decision} recorded in {shown}")
        else:
            recorded = decide_pending(
                layout, exchange, selection, decision, by=args.by, note=args.note
            )
            orders = len({w.order_id for w in recorded})
            print(f"{decision} recorded on {len(recorded)} Alfa(s) in {orders} order(s)")
    print(f"run `{APPLY}` to apply it (`toyfoundry review undo` takes it back)")
    return 0


def _undo(args: argparse.Namespace, layout: Layout) -> int:
    selection = _selection(args, args.order_id, args.alfa_id)
    with foundry_lock(layout.lock_file, purpose="review undo"):
        undone = undo(layout, Exchange(layout), selection)
    orders = len({u.order_id for u in undone})
    print(f"{len(undone)} decision(s) removed in {orders} order(s)")
    print(f"run `{APPLY}` to apply it: those Alfas await review again")
    return 0


def run(args: argparse.Namespace, layout: Layout) -> int:
    actions = {"list": _list, "decide": _decide, "undo": _undo}
    return actions[args.action](args, layout)
