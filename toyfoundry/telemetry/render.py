"""Markdown for people: one page per order (from its report) and a summary across orders."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toyfoundry.formats.models import RITUALS, Outcomes, ProblemModel

SHARES = ("novel", "carryover", "baseline")
OUTCOME_COLUMNS = tuple(Outcomes.model_fields)
REVIEW_COMMAND = "toyfoundry review decide {order} {alfa} {{waive|reroll|reject}} --by NAME"


def cell(value: object) -> str:
    """A value safe inside a Markdown table cell: no pipes, no line breaks."""
    text = "" if value is None else str(value)
    return " ".join(text.replace("|", "\\|").split())


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def shares_table(target: Mapping[str, int], achieved: Mapping[str, int]) -> list[str]:
    """The planned and achieved shares (`ShareCounts` as plain data) side by side."""
    t_all = sum(map(target.__getitem__, SHARES))
    a_all = sum(map(achieved.__getitem__, SHARES))
    rows = [
        (s, target[s], percent(target[s], t_all), achieved[s], percent(achieved[s], a_all))
        for s in SHARES
    ]
    return table(("share", "planned", "planned %", "achieved", "achieved %"), rows)


def report_md(report: Mapping[str, Any], problems: Sequence[ProblemModel] = ()) -> str:
    """The human form of `exchange/reports/<order>.json`, from its plain data
    (`Report(...).model_dump(mode="json")`, as `reports.report_data` makes it)."""
    r = report
    oid, status = r["order_id"], r["status"]
    lines = [f"# Order {oid}: {status}", ""]
    dry = "yes" if r["dry_run"] else "no"
    lines.append(f"- recipe: {r['recipe'] or '-'}; phase: {r['phase'] or '-'}; dry run: {dry}")
    if r["reason"]:
        label = "reason" if status in ("blocked", "rejected") else "note"
        lines.append(f"- {label}: {r['reason']}")
    lines += ["", "## Quotas (planned against achieved)", ""]
    lines += shares_table(r["target"], r["achieved"])
    lines += ["", "## Outcomes", ""]
    lines += table(OUTCOME_COLUMNS, [list(map(r["outcomes"].__getitem__, OUTCOME_COLUMNS))])
    rituals = r["rituals"]
    if rituals:
        lines += ["", "## Rituals", ""]
        rows = []
        for name in RITUALS:
            if name in rituals:
                got = rituals[name]
                counts = ", ".join(f"{k} {v}" for k, v in sorted(got["counts"].items()))
                state = "stub" if got["stub"] else ("ran" if got["ran"] else "not run")
                rows.append((name, state, counts or "-"))
        lines += table(("ritual", "state", "counts"), rows)
    if r["defects"]:
        lines += ["", "## Defects", ""]
        lines += table(("defect", "Alfas"), sorted(r["defects"].items()))
    if problems:
        lines += ["", "## Problems", ""]
        lines += [f"- `{cell(p.path)}`: {cell(p.field)}: {cell(p.reason)}" for p in problems]
    waiting = r["awaiting_review"]
    if waiting:
        lines += ["", f"## Awaiting review ({len(waiting)})", ""]
        lines += ["Decide each quarantined Alfa (the review file re-mints exactly these):", ""]
        for item in waiting:
            why = "; ".join(item["reasons"]) or "no reason recorded"
            alfa = item["alfa_id"]
            lines.append(f"- {alfa}: {cell(why)}")
            lines.append(f"  `{REVIEW_COMMAND.format(order=oid, alfa=alfa)}`")
    if r["promoted"]:
        lines += ["", f"## Promoted ({len(r['promoted'])})", ""]
        lines += [f"- {alfa}" for alfa in r["promoted"]]
    if r["next_steps"]:
        lines += ["", "## Next steps", ""]
        lines += [f"- {step}" for step in r["next_steps"]]
    return "\n".join(lines) + "\n"


def summary_md(batches: Sequence[Mapping[str, Any]]) -> str:
    """`exchange/reports/summary.md`: every order on one page, then the foundry totals.

    Built from the deterministic part of the rollup's batches (plain data, as
    the rollup holds them) only: no attempt counts or times, so it changes only
    when an order's outcome changes. Order ids and numbers need no escaping,
    and the few distinct texts (recipes, phases, statuses, reasons) are
    escaped once each.
    """
    lines = ["# Toyfoundry: all orders", ""]
    if not batches:
        return "\n".join([*lines, "No orders have been built yet."]) + "\n"
    header = (
        "order",
        "recipe",
        "phase",
        "status",
        "minted",
        "passed",
        "failed",
        "purged",
        "promoted",
        "quarantined",
        "novel / carryover / baseline",
        "reason",
    )
    text = functools.cache(cell)  # recipes, phases and statuses repeat on every row

    lines += table(header, [])
    counts: dict[str, int] = {}
    for b in batches:
        o, a, oid, status = b["outcomes"], b["achieved"], b["order_id"], b["status"]
        counts[status] = counts.get(status, 0) + 1
        row = (
            f"[{oid}]({oid}.md)",
            text(b["recipe"] or "-"),
            text(b["phase"] or "-"),
            text(status),
            str(o["minted"]),
            str(o["passed"]),
            str(o["failed"]),
            str(o["purged"]),
            str(o["promoted"]),
            str(o["quarantined"]),
            f"{a['novel']} / {a['carryover']} / {a['baseline']}",
            text(b["reason"]),
        )
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Orders by status", ""]
    lines += table(("status", "orders"), sorted(counts.items()))
    waiting = [b for b in batches if b["status"] == "awaiting-review"]
    if waiting:
        held = sum(b["outcomes"]["quarantined"] for b in waiting)
        lines += ["", "## Awaiting review", ""]
        lines += [
            f"{held} quarantined Alfas in {len(waiting)} orders, the oldest from"
            f" {min(b['day'] for b in waiting)}. Decide them (`toyfoundry review list` shows the"
            " queue, `toyfoundry review decide` records decisions), then run `toyfoundry build`.",
            "",
        ]
        lines += [
            f"- [{b['order_id']}]({b['order_id']}.md):"
            f" {b['outcomes']['quarantined']} quarantined Alfas"
            for b in waiting
        ]
    return "\n".join(lines) + "\n"
