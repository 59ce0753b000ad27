"""Everything made from one order's build artefacts: its report, its quilt part, its partitions.

`build_order_outputs` reads only that order's mint.json and rituals.json, so the
cost of a change follows the orders that changed. Every file is written through
`write_atomic`, which leaves identical bytes alone, and none holds a time: the
same artefacts give the same bytes, and doit's early cutoff stops there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toyfoundry.formats.models import BatchSummary, Report
from toyfoundry.store.atomic import dumps_canonical, write_many_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import artefacts, exports, render
from toyfoundry.telemetry.artefacts import OrderArtefacts
from toyfoundry.telemetry.parts import part_path, read_part
from toyfoundry.telemetry.report_html import report_html as page
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


def report_data(
    arts: OrderArtefacts, summary: BatchSummary, part: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The report as plain data: what `Report(...).model_dump(mode="json")` gives.

    Every value comes from the summary (`part` is its plain data, when the caller has it)
    and the artefacts, valid already: no model is made or validated for it."""
    part = part if part is not None else summary.model_dump(mode="json")
    waiting = [
        {"alfa_id": a.alfa_id, "reasons": list(a.reasons)}
        for a in arts.mint.alfas
        if a.outcome == "quarantined"
    ]
    rituals = arts.rituals
    return {
        "schema_version": 1,
        "order_id": arts.order_id,
        "recipe": summary.recipe,
        "phase": summary.phase,
        "status": summary.status,
        "reason": summary.reason,
        "dry_run": summary.dry_run,
        "target": part["target"],
        "achieved": part["achieved"],
        # each ritual's plain data is `RitualOutcome`'s fields, as the report holds them
        "rituals": rituals["rituals"] if rituals else {},
        "outcomes": part["outcomes"],
        "defects": part["defects"],
        "awaiting_review": waiting,
        "promoted": list(rituals["promoted"]) if rituals else [],
        "next_steps": next_steps(arts, summary, len(waiting)),
    }


def build_report(arts: OrderArtefacts, summary: BatchSummary | None = None) -> Report:
    """The report as its model (for callers that want one; the graph writes `report_data`)."""
    return Report.model_validate(report_data(arts, summary or summarize(arts)))


def write_order_outputs(layout: Layout, arts: OrderArtefacts) -> tuple[BatchSummary, list[Path]]:
    """Write the report (.json, .md, .html), the quilt part and the partitions; returns what changed."""
    summary = summarize(arts)
    part = summary.model_dump(mode="json")
    report = report_data(arts, summary, part)
    oid = arts.order_id
    blocks = render.report_blocks(report, arts.mint.problems)
    markdown = render.blocks_md(blocks)
    # one flush for the order's files (see `write_many_atomic`)
    written = write_many_atomic(
        [
            (layout.report_json(oid), dumps_canonical(report)),
            (layout.report_md(oid), markdown.encode("utf-8")),
            (layout.report_html(oid), page(blocks, markdown, f"Order {oid}").encode("utf-8")),
            (part_path(layout, oid), dumps_canonical(part)),
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
