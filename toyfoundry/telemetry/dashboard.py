"""The daily dashboard for High Command: one self-contained HTML file of plotly charts.

Made from the rollup alone (O(orders)). Self-contained means no network fetch
when the file is opened (it is mailed, archived and opened offline): the first
figure embeds plotly.js (`include_plotlyjs=True`) and the others reuse it
(`False`), so the library is in the file exactly once instead of once per
chart. Each chart gets a fixed `div_id`, because plotly otherwise names its
divs with random uuids and the same rollup would give different bytes every
run; with fixed ids `write_atomic` leaves an unchanged dashboard untouched.
The dated copy in `exports/dashboards/<day>.html` keeps one snapshot per day.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from toyfoundry.formats.models import BatchSummary, QuiltRollup, ShareCounts
from toyfoundry.store.atomic import write_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.exports import read_rollup
from toyfoundry.telemetry.render import SHARES
from toyfoundry.telemetry.summary import SCORE_BIN, group_key

#: The chart ids, in page order; the browser test counts these.
CHARTS = ("alfas-per-day", "funnel", "defects", "diversity", "scores", "status")
PLAN_SHARES = {"novel": 0.6, "carryover": 0.2, "baseline": 0.2}
_CONFIG = {"displaylogo": False, "responsive": True}


def dashboards_dir(layout: Layout) -> Path:
    return layout.exports / "dashboards"


def _layout(fig: go.Figure, title: str, **extra: object) -> go.Figure:
    fig.update_layout(
        title={"text": title},
        template="plotly_white",
        height=420,
        margin={"l": 60, "r": 30, "t": 60, "b": 60},
        **extra,
    )
    return fig


def alfas_per_day(batches: list[BatchSummary]) -> go.Figure:
    days = sorted({b.day for b in batches})
    fig = go.Figure()
    for phase in ("pilot", "expansion", "operational", "unknown"):
        per_day = Counter[str]()
        for b in batches:
            if group_key(b.phase) == phase:
                per_day[b.day] += b.outcomes.minted
        if per_day:
            fig.add_trace(go.Bar(name=phase, x=days, y=[per_day[d] for d in days]))
    return _layout(
        fig, "Alfas minted per day and phase", barmode="stack", xaxis={"type": "category"}
    )


def funnel(batches: list[BatchSummary]) -> go.Figure:
    outcomes = [b.outcomes for b in batches]
    stages = {
        "Minted": sum(o.minted for o in outcomes),
        "Drill (scored)": sum(o.drilled for o in outcomes),
        "Parade (ranked)": sum(o.paraded for o in outcomes),
        "Purge (kept)": sum(max(o.drilled - o.purged, 0) for o in outcomes),
        "Promote": sum(o.promoted for o in outcomes),
    }
    fig = go.Figure(go.Funnel(y=list(stages), x=list(stages.values()), textinfo="value"))
    return _layout(fig, "Drill → Parade → Purge → Promote")


def defects(batches: list[BatchSummary]) -> go.Figure:
    found = Counter[str]()
    for b in batches:
        found.update(b.defects)
    kinds = sorted(found, key=lambda k: (-found[k], k))
    fig = go.Figure(go.Bar(x=kinds, y=[found[k] for k in kinds], marker_color="#c0392b"))
    if not kinds:
        fig.add_annotation(text="no defects recorded", showarrow=False, x=0.5, y=0.5)
    return _layout(fig, "Defects by kind")


def _share_percent(counts: ShareCounts, share: str) -> float | None:
    whole = counts.novel + counts.carryover + counts.baseline
    return round(100 * getattr(counts, share) / whole, 1) if whole else None


def diversity(batches: list[BatchSummary]) -> go.Figure:
    """Achieved shares stacked to 100% per batch, against the plan's 60/20/20 and each batch's target.

    Stacked, the plan is two lines: novel must reach 60%, novel plus carryover
    80%. A batch's own target differs when its pool was empty (carryover goes
    to novel) or the order overrides the shares, so its boundaries are markers.
    """
    built = [b for b in batches if b.achieved.novel + b.achieved.carryover + b.achieved.baseline]
    orders = [b.order_id for b in built]
    fig = go.Figure()
    colours = {"novel": "#2e86de", "carryover": "#10ac84", "baseline": "#f39c12"}
    for share in SHARES:
        fig.add_trace(
            go.Bar(
                name=f"{share} achieved",
                x=orders,
                y=[_share_percent(b.achieved, share) for b in built],
                marker_color=colours[share],
            )
        )
    for label, upto in (("novel", ("novel",)), ("novel + carryover", ("novel", "carryover"))):
        bounds = []
        for b in built:
            parts = [_share_percent(b.target, s) for s in upto]
            bounds.append(None if None in parts else round(sum(p or 0.0 for p in parts), 1))
        fig.add_trace(
            go.Scatter(
                name=f"target: {label}",
                x=orders,
                y=bounds,
                mode="markers",
                marker={
                    "symbol": "line-ew-open",
                    "size": 40,
                    "color": "#222",
                    "line": {"width": 3},
                },
            )
        )
    plan = 0.0
    for share in ("novel", "carryover"):
        plan += PLAN_SHARES[share]
        fig.add_hline(
            y=round(100 * plan),
            line_dash="dot",
            line_color="#555",
            annotation_text=f"plan: {'novel' if share == 'novel' else 'novel + carryover'}"
            f" {100 * plan:.0f}%",
            annotation_position="top left",
        )
    return _layout(
        fig,
        "Diversity shares per batch against the 60/20/20 targets",
        barmode="stack",
        xaxis={"type": "category"},
        yaxis={"title": {"text": "% of batch"}, "range": [0, 100]},
    )


def scores(batches: list[BatchSummary]) -> go.Figure:
    found = Counter[int]()
    for b in batches:
        for key, count in b.score_histogram.items():
            found[int(key)] += count
    bins = sorted(found)
    labels = [f"{lo}–{lo + SCORE_BIN}" for lo in bins]
    fig = go.Figure(go.Bar(x=labels, y=[found[lo] for lo in bins], marker_color="#8e44ad"))
    if not bins:
        fig.add_annotation(text="no Alfa has been scored yet", showarrow=False, x=0.5, y=0.5)
    return _layout(fig, "Drill score distribution", xaxis={"title": {"text": "score"}})


def status(batches: list[BatchSummary]) -> go.Figure:
    found = Counter(b.status for b in batches)
    names = sorted(found)
    fig = go.Figure(go.Pie(labels=names, values=[found[n] for n in names], sort=False, hole=0.4))
    return _layout(fig, "Orders by status")


def _orders_table(batches: list[BatchSummary]) -> str:
    head = (
        "order",
        "recipe",
        "phase",
        "status",
        "minted",
        "promoted",
        "quarantined",
        "mint attempts",
        "ritual runs",
        "last attempt",
    )
    rows = []
    for b in batches:
        cells = (
            b.order_id,
            b.recipe or "-",
            b.phase or "-",
            b.status,
            b.outcomes.minted,
            b.outcomes.promoted,
            b.outcomes.quarantined,
            b.telemetry.mint_attempts,
            b.telemetry.ritual_invocations,
            b.telemetry.last_attempt or "-",
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .sub { color: #666; margin-top: 0; }
.chart { border: 1px solid #ddd; border-radius: 6px; margin: 16px 0; padding: 4px; }
table { border-collapse: collapse; margin: 16px 0; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
"""


def render(rollup: QuiltRollup) -> str:
    """The dashboard page; equal rollups give equal text."""
    batches = rollup.batches
    figures = [
        alfas_per_day(batches),
        funnel(batches),
        defects(batches),
        diversity(batches),
        scores(batches),
        status(batches),
    ]
    charts = []
    for number, (name, fig) in enumerate(zip(CHARTS, figures, strict=True)):
        div = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=number == 0,
            include_mathjax=False,
            div_id=f"chart-{name}",
            config=_CONFIG,
            default_height="420px",
            validate=False,
        )
        charts.append(f'<section class="chart" data-chart="{name}">{div}</section>')
    days = sorted({b.day for b in batches})
    span = f"{days[0]} to {days[-1]}" if days else "no orders yet"
    skipped = len(rollup.skipped)
    note = f"; {skipped} ledger or part entries skipped (see the rollup)" if skipped else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Toyfoundry dashboard</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        "<h1>Toyfoundry dashboard</h1>\n"
        f'<p class="sub">{len(batches)} orders, {html.escape(span)}{html.escape(note)}</p>\n'
        + "\n".join(charts)
        + "\n<h2>Orders</h2>\n"
        + _orders_table(batches)
        + "\n</body>\n</html>\n"
    )


def build_dashboard(layout: Layout, today: str | None = None) -> list[Path]:
    """Write `quilt/dashboard.html` and today's copy (UTC day); returns the files that changed."""
    page = render(read_rollup(layout)).encode("utf-8")
    # Parsed, not trusted: the day becomes part of a path.
    day = (
        dt.date.fromisoformat(today).isoformat()
        if today
        else dt.datetime.now(dt.UTC).date().isoformat()
    )
    written = []
    for path in (layout.dashboard, dashboards_dir(layout) / f"{day}.html"):
        if write_atomic(path, page):
            written.append(path)
    return written
