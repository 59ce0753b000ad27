"""`toyfoundry mint ORDER_ID [--dry-run]`: mint one order's batch (the plan's forge_mint_alfa)."""

from __future__ import annotations

import argparse

from toyfoundry.errors import FoundryError, Problem
from toyfoundry.forge.mint import mint_order
from toyfoundry.formats.models import MintArtefact
from toyfoundry.graph.backend import forget_tasks
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "order_id", metavar="ORDER_ID", help="the order to mint, like 2025-10-20-011"
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


def run(args: argparse.Namespace, layout: Layout) -> int:
    with foundry_lock(layout.lock_file, purpose=f"mint {args.order_id}"[:80]):
        if not args.dry_run:
            # the graph runs its mint again at the next build rather than trust this one
            forget_tasks(layout.dep_db, [f"mint:{args.order_id}"])
        artefact = mint_order(layout, args.order_id, force_dry_run=args.dry_run)
    print(summary(artefact))
    for alfa in artefact.alfas:
        if alfa.outcome == "quarantined":
            print(f"{alfa.alfa_id}: quarantined: {'; '.join(alfa.reasons)}")
    if artefact.status == "rejected":
        problems = [Problem(p.path, p.field, p.reason) for p in artefact.problems]
        raise FoundryError("", problems) if problems else FoundryError(artefact.reason)
    return 0
