"""`toyfoundry ritual {drill|parade|purge|promote|all} ORDER_ID`: run rituals on a minted order."""

from __future__ import annotations

import argparse

from toyfoundry.forge.rituals import counts_line, run_rituals
from toyfoundry.formats.models import RITUALS
from toyfoundry.graph.backend import forget_tasks
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import foundry_lock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ritual",
        choices=(*RITUALS, "all"),
        help="the ritual to run; `all` runs the order's rituals (its phase's default)",
    )
    parser.add_argument("order_id", metavar="ORDER_ID")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="run as a logged stub: the ledger records it, nothing else changes",
    )


def run(args: argparse.Namespace, layout: Layout) -> int:
    only = None if args.ritual == "all" else args.ritual
    with foundry_lock(layout.lock_file, purpose=f"ritual {args.ritual} {args.order_id}"[:80]):
        if not args.dry_run:
            # one ritual at a time leaves artefacts no build makes: the graph runs the
            # order's rituals again at the next build rather than trust them
            forget_tasks(layout.dep_db, [f"rituals:{args.order_id}"])
        ran = run_rituals(layout, args.order_id, only=only, force_dry_run=args.dry_run)
    artefact = ran.artefact
    # in the order they run, not the artefact's (sorted keys put promote before purge)
    done = {r for r, o in artefact.rituals.items() if o.ran or o.stub}
    shown = [only] if only else [r for r in RITUALS if r in done]
    if not shown:
        print(f"{artefact.order_id}: {artefact.status}: no ritual ran")
    for ritual in shown:
        outcome = artefact.rituals[ritual]
        state = "stub" if outcome.stub else "ran" if outcome.ran else "skipped"
        print(
            f"{artefact.order_id}: {ritual}: {state} ({artefact.status}): {counts_line(outcome.counts)}"
        )
    return 0
