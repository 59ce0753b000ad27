"""Everything made from one order's build artefacts: its report, its quilt part, its partitions.

`build_order_outputs` reads only that order's mint.json and rituals.json, so the
cost of a change follows the orders that changed. Every file is written through
`write_atomic`, which leaves identical bytes alone, and none holds a time: the
same artefacts give the same bytes, and doit's early cutoff stops there.
"""

from __future__ import annotations

from pathlib import Path

from toyfoundry.formats.models import AwaitingReview, BatchSummary, Report, RitualOutcome
from toyfoundry.store.atomic import dumps_canonical, write_many_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import artefacts, exports, render
from toyfoundry.telemetry.artefacts import OrderArtefacts
from toyfoundry.telemetry.parts import part_path, read_part
from toyfoundry.telemetry.report_html import md_to_html
from toyfoundry.telemetry.summary import summarize


def next_steps(arts: OrderArtefacts, summary: BatchSummary, waiting: int) -> list[str]:
    """What a person should do next, as commands they can run."""
    oid, steps = arts.order_id, []
    if summary.status == "blocked":
        steps.append(
            f"resolve the block ({summary.reason or 'see reason'}), then run `toyfoundry build`"
        )
    elif summary.status == "rejected":
        steps.append(
            f"fix exchange/orders/{oid}.json (see the problems), then run `toyfoundry build`"
        )
    if waiting:
        steps.append(
            f"decide the {waiting} quarantined Alfa{'s' if waiting > 1 else ''}"
            f" (`toyfoundry review list {oid}` shows them):"
            f" `toyfoundry review decide {oid} {{waive|reroll|reject}} --by NAME`,"
            " then run `toyfoundry build`"
        )
    if arts.rituals and arts.rituals["promoted"]:
        steps.append(f"promoted Alfas are in exchange/outbox/toysoldiers/{oid}.json")
    return steps


def build_report(arts: OrderArtefacts, summary: BatchSummary | None = None) -> Report:
    summary = summary or summarize(arts)
    waiting = [
        AwaitingReview(alfa_id=a.alfa_id, reasons=list(a.reasons))
        for a in arts.mint.alfas
        if a.outcome == "quarantined"
    ]
    return Report(
        schema_version=1,
        order_id=arts.order_id,
        recipe=summary.recipe,
        phase=summary.phase,
        status=summary.status,
        reason=summary.reason,
        dry_run=summary.dry_run,
        target=summary.target,
        achieved=summary.achieved,
        rituals={str(k): RitualOutcome(**v) for k, v in arts.rituals["rituals"].items()}
        if arts.rituals
        else {},
        outcomes=summary.outcomes,
        defects=summary.defects,
        awaiting_review=waiting,
        promoted=list(arts.rituals["promoted"]) if arts.rituals else [],
        next_steps=next_steps(arts, summary, len(waiting)),
    )


def write_order_outputs(layout: Layout, arts: OrderArtefacts) -> tuple[BatchSummary, list[Path]]:
    """Write the report (.json, .md, .html), the quilt part and the partitions; returns what changed."""
    summary = summarize(arts)
    report = build_report(arts, summary)
    oid = arts.order_id
    markdown = render.report_md(report, arts.mint.problems)
    # one flush for the order's eight files (see `write_many_atomic`)
    written = write_many_atomic(
        [
            (layout.report_json(oid), dumps_canonical(report)),
            (layout.report_md(oid), markdown.encode("utf-8")),
            (layout.report_html(oid), md_to_html(markdown, f"Order {oid}").encode("utf-8")),
            (part_path(layout, oid), dumps_canonical(summary)),
            *exports.partition_files(layout, arts),
        ]
    )
    return summary, written


def build_order_outputs(layout: Layout, order_id: str) -> BatchSummary:
    """The graph's `report:<order>` action: every per-order output, from that order's artefacts."""
    summary, _ = write_order_outputs(layout, artefacts.load(layout, order_id))
    return summary


def write_report(layout: Layout, order_id: str) -> BatchSummary:
    """The name the graph's report task calls: the same as `build_order_outputs`."""
    return build_order_outputs(layout, order_id)


def is_current(layout: Layout, order_id: str) -> bool:
    """True when the order's part was made from its current artefacts and every output exists.

    Costs one hash of the two artefacts; the outputs are not read.
    """
    part, _ = read_part(layout, order_id)
    if part is None or not all(p.is_file() for p in outputs_of(layout, order_id)):
        return False
    mint, rituals = artefacts.read_source(layout, order_id)
    return mint is not None and part.source == artefacts.source_digest(mint, rituals)


def outputs_of(layout: Layout, order_id: str) -> list[Path]:
    """Every file `build_order_outputs` writes for `order_id`."""
    return layout.order_outputs(order_id)
