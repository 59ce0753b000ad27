"""`toyfoundry mint [ORDER_ID ...] [--dry-run]`: mint orders' batches (the plan's forge_mint_alfa).

With no order named it mints what is pending: every valid order not minted yet or
older than its inputs, in issue order. Minting is one step; `toyfoundry build` runs
the whole job (rituals, reports, the quilt).
"""

from __future__ import annotations

import argparse
import sys

from toyfoundry.errors import FoundryError, Problem
from toyfoundry.exchange.loader import Exchange
from toyfoundry.forge.chain import previous_order
from toyfoundry.forge.mint import mint_order
from toyfoundry.formats.models import MintArtefact
from toyfoundry.graph.backend import forget_tasks
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "order_ids",
        nargs="*",
        metavar="ORDER_ID",
        help="the orders to mint, like 2025-10-20-011; none: every pending order",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="compute and log everything with dry_run: true, but leave the order's build untouched",
    )


def summary(artefact: MintArtefact) -> str:
    """One line: status, counts per share, and how many Alfas are held for review."""
    a = artefact.achieved
    line = f"{artefact.order_id}: {artefact.status}"
    if artefact.status not in ("blocked", "rejected"):
        line += (
            f": {a.novel + a.carryover + a.baseline} of {artefact.batch_size} Alfas"
            f" (novel {a.novel}, carryover {a.carryover}, baseline {a.baseline})"
        )
    if artefact.reason:
        line += f"; {artefact.reason}"
    return line


def _pending(layout: Layout) -> tuple[list[str], list[str]]:
    """Pending orders that can be minted now, and those that wait for an earlier order of
    their recipe to hand on its chain (minting is one step; the build orders the chain)."""
    from toyfoundry.watch.orders import pending_orders

    exchange = Exchange(layout)
    ready, waiting = [], []
    for order_id, pending in pending_orders(layout).items():
        if pending.kind not in ("new", "stale"):
            continue
        before = previous_order(exchange, order_id)
        if before is None or layout.chain_file(before).exists():
            ready.append(order_id)
        else:
            waiting.append(order_id)
    return ready, waiting


def _mint_one(layout: Layout, order_id: str, dry_run: bool) -> None:
    with foundry_lock(layout.lock_file, purpose=f"mint {order_id}"[:80]):
        if not dry_run:
            # the graph runs its mint again at the next build rather than trust this one
            forget_tasks(layout.dep_db, [f"mint:{order_id}"])
        artefact = mint_order(layout, order_id, force_dry_run=dry_run)
    print(summary(artefact))
    for alfa in artefact.alfas:
        if alfa.outcome == "quarantined":
            print(f"{alfa.alfa_id}: quarantined: {'; '.join(alfa.reasons)}")
    if artefact.status == "rejected":
        problems = [Problem(p.path, p.field, p.reason) for p in artefact.problems]
        raise FoundryError("", problems) if problems else FoundryError(artefact.reason)


def run(args: argparse.Namespace, layout: Layout) -> int:
    if len(args.order_ids) == 1:
        _mint_one(layout, args.order_ids[0], args.dry_run)
        return 0
    order_ids, waiting = (args.order_ids, []) if args.order_ids else _pending(layout)
    if waiting:
        print(
            f"{len(waiting)} pending order(s) wait for an earlier order of their recipe"
            f" ({', '.join(waiting[:3])}{', ...' if len(waiting) > 3 else ''});"
            " run `toyfoundry build` to build every chain in order"
        )
    if not order_ids:
        print("nothing pending to mint")
        return 0
    failed = 0
    for order_id in order_ids:
        try:
            _mint_one(layout, order_id, args.dry_run)
        except FoundryError as exc:
            failed += 1
            print(str(exc), file=sys.stderr)
    if failed:
        print(f"{failed} of {len(order_ids)} order(s) not minted (see above)", file=sys.stderr)
    return 1 if failed else 0
