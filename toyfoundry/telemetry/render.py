"""Markdown for people: one page per order (from its report) and a summary across orders."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

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


def _shares(target: Mapping[str, int], achieved: Mapping[str, int]) -> Table:
    t_all = sum(map(target.__getitem__, SHARES))
    a_all = sum(map(achieved.__getitem__, SHARES))
    rows = [
        (
            s,
            str(target[s]),
            percent(target[s], t_all),
            str(achieved[s]),
            percent(achieved[s], a_all),
        )
        for s in SHARES
    ]
    return Table(("share", "planned", "planned %", "achieved", "achieved %"), rows)


class Table(NamedTuple):
    """A Markdown table's header and rows, every cell's text already safe (`cell`)."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]


class Items(NamedTuple):
    """A list: each item's text, and a second line (indented under it) or None."""

    items: Sequence[tuple[str, str | None]]


#: A block of the report's page: a heading (level, text), a paragraph, a list or a table.
Block = tuple[int, str] | str | Items | Table


def _table_lines(t: Table) -> list[str]:
    out = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    out += ["| " + " | ".join(row) + " |" for row in t.rows]
    return out


def report_blocks(report: Mapping[str, Any], problems: Sequence[ProblemModel] = ()) -> list[Block]:
    """The report's page as blocks, from its plain data (`Report(...).model_dump(mode="json")`,
    as `reports.report_data` makes it): what `report_md` writes and `report_html` shows."""
    r = report
    oid, status = r["order_id"], r["status"]
    dry = "yes" if r["dry_run"] else "no"
    about = f"recipe: {r['recipe'] or '-'}; phase: {r['phase'] or '-'}; dry run: {dry}"
    head: list[tuple[str, str | None]] = [(about, None)]
    if r["reason"]:
        label = "reason" if status in ("blocked", "rejected") else "note"
        head.append((f"{label}: {r['reason']}", None))
    outcomes = r["outcomes"]
    blocks: list[Block] = [
        (1, f"Order {oid}: {status}"),
        Items(head),
        (2, "Quotas (planned against achieved)"),
        _shares(r["target"], r["achieved"]),
        (2, "Outcomes"),
        Table(OUTCOME_COLUMNS, [[str(outcomes[c]) for c in OUTCOME_COLUMNS]]),
    ]
    rituals = r["rituals"]
    if rituals:
        rows: list[Sequence[str]] = []
        for name in RITUALS:
            if name in rituals:
                got = rituals[name]
                counts = ", ".join(f"{k} {v}" for k, v in sorted(got["counts"].items()))
                state = "stub" if got["stub"] else ("ran" if got["ran"] else "not run")
                rows.append((name, state, cell(counts) or "-"))
        blocks += [(2, "Rituals"), Table(("ritual", "state", "counts"), rows)]
    if r["defects"]:
        rows = [(cell(name), str(n)) for name, n in sorted(r["defects"].items())]
        blocks += [(2, "Defects"), Table(("defect", "Alfas"), rows)]
    if problems:
        listed = [(f"`{cell(p.path)}`: {cell(p.field)}: {cell(p.reason)}", None) for p in problems]
        blocks += [(2, "Problems"), Items(listed)]
    waiting = r["awaiting_review"]
    if waiting:
        items: list[tuple[str, str | None]] = []
        for item in waiting:
            why = "; ".join(item["reasons"]) or "no reason recorded"
            alfa = item["alfa_id"]
            items.append(
                (f"{alfa}: {cell(why)}", f"`{REVIEW_COMMAND.format(order=oid, alfa=alfa)}`")
            )
        blocks += [
            (2, f"Awaiting review ({len(waiting)})"),
            "Decide each quarantined Alfa (the review file re-mints exactly these):",
            Items(items),
        ]
    if r["promoted"]:
        blocks += [
            (2, f"Promoted ({len(r['promoted'])})"),
            Items([(a, None) for a in r["promoted"]]),
        ]
    if r["next_steps"]:
        blocks += [(2, "Next steps"), Items([(step, None) for step in r["next_steps"]])]
    return blocks


def blocks_md(blocks: Sequence[Block]) -> str:
    """The blocks as Markdown, a blank line between two."""
    out = []
    for block in blocks:
        if isinstance(block, str):
            out.append(block)
        elif isinstance(block, Table):
            out.append("\n".join(_table_lines(block)))
        elif isinstance(block, Items):
            lines = []
            for text, more in block.items:
                lines.append(f"- {text}")
                if more is not None:
                    lines.append(f"  {more}")
            out.append("\n".join(lines))
        else:
            level, text = block
            out.append(f"{'#' * level} {text}")
    return "\n\n".join(out) + "\n"


def report_md(report: Mapping[str, Any], problems: Sequence[ProblemModel] = ()) -> str:
    """The human form of `exchange/reports/<order>.json`, from its plain data."""
    return blocks_md(report_blocks(report, problems))


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
