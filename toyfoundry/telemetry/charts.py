"""The dashboard's charts as plain plotly.js figures, each readable from 4 to 5,000 orders.

Every chart aggregates (by ISO week, by phase, by defect kind and recipe, by
attainment band) instead of drawing one mark per order, so its size does not
grow with the orders. Numbers are formatted for people: thousands separated
(`13,613`, never plotly's SI `13.613k`) and rates as percentages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from toyfoundry.telemetry.headline import pass_rate

if TYPE_CHECKING:
    from toyfoundry.telemetry.dashboard import Batch

#: A plotly.js trace, and a figure: {"data": [trace, ...], "layout": {...}}.
Trace = dict[str, object]
Figure = dict[str, object]

#: The chart ids, in page order; the browser test counts these.
CHARTS = ("trends", "quota", "funnel", "defects", "scores")
#: The phases in order; an order rejected before its phase was known has none.
PHASES = ("pilot", "expansion", "operational")
PHASE_COLOURS = {"pilot": "#95a5a6", "expansion": "#2e86de", "operational": "#10ac84"}
#: Width of a score histogram bin, as in `telemetry.summary.SCORE_BIN`; keys are lower bounds.
SCORE_BIN = 10
#: Quota attainment bands, lowest first; an order at 100% met every share of its target.
BANDS = ("under 50%", "50–69%", "70–89%", "90–99%", "100%")
#: Counts with thousands separated and no decimals they do not have (never SI `13.613k`).
COUNT = ",~f"
#: The week of an order whose day is no calendar date; sorts after every real week.
NO_WEEK = "no date"
PERCENT = ".0%"
_FONT = {"family": "system-ui, sans-serif", "size": 13}


def week_of(day: str) -> str:
    """The ISO week of a `YYYY-MM-DD` day, like `2025-W44`: the forge's sprint (`sprint_of`).

    A day that is no date (a rejected order's id such as `2025-13-45-001`) has no week.
    """
    try:
        year, week, _ = dt.date.fromisoformat(day).isocalendar()
    except ValueError:
        return NO_WEEK
    return f"{year}-W{week:02d}"


def attainment(b: Batch) -> float | None:
    """How much of its diversity target an order met: slots achieved up to each share's target,
    over the slots targeted. 1.0 when every share met its target; None without a target."""
    planned = sum(b.target)
    if not planned:
        return None
    met = sum(min(a, t) for a, t in zip(b.achieved, b.target, strict=True))
    return met / planned


def attainments(batches: Sequence[Batch]) -> list[float | None]:
    """`attainment` of each batch, in order; worked out once per distinct target and outcome
    (most batches share a few), since the page uses it four times."""
    known: dict[tuple[tuple[int, int, int], tuple[int, int, int]], float | None] = {}
    out = []
    for b in batches:
        key = (b.target, b.achieved)
        if key not in known:
            known[key] = attainment(b)
        out.append(known[key])
    return out


def _weeks(batches: Sequence[Batch]) -> list[str]:
    """`week_of` each batch's day, each distinct day worked out once."""
    known: dict[str, str] = {}
    out = []
    for b in batches:
        week = known.get(b.day)
        if week is None:
            week = known[b.day] = week_of(b.day)
        out.append(week)
    return out


def band(value: float) -> str:
    if value >= 1.0:
        return BANDS[4]
    if value >= 0.9:
        return BANDS[3]
    if value >= 0.7:
        return BANDS[2]
    if value >= 0.5:
        return BANDS[1]
    return BANDS[0]


def _figure(data: list[Trace], title: str, height: object = 420, **layout: object) -> Figure:
    """A figure with the dashboard's common layout; the template is added in the page."""
    return {
        "data": data,
        "layout": {
            "title": {"text": title},
            "height": height,
            "margin": {"l": 70, "r": 30, "t": 60, "b": 60},
            "font": _FONT,
            "separators": ".,",
            "legend": {"orientation": "h", "y": -0.12},
            **layout,
        },
    }


def _count_ticks(top: int) -> dict[str, object]:
    """A count axis: whole numbers only, so a few orders do not get ticks at 0.5."""
    ticks: dict[str, object] = {"tickformat": COUNT, "rangemode": "tozero"}
    if top <= 10:
        ticks["dtick"] = 1
    return ticks


def _note(text: str) -> dict[str, object]:
    return {"text": text, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper"}


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def trends(batches: Sequence[Batch], shares: Sequence[float | None] | None = None) -> Figure:
    """Per ISO week (the sprint): Alfas minted by phase, pass rate, defects per 1,000 drilled,
    and mean quota attainment, as four panels on one shared week axis."""
    shares = attainments(batches) if shares is None else shares
    of = _weeks(batches)
    weeks = sorted(set(of))
    at = {w: i for i, w in enumerate(weeks)}
    n = len(weeks)
    minted = {p: [0] * n for p in PHASES}
    passed, failed, drilled, found = [0] * n, [0] * n, [0] * n, [0] * n
    quota_sum, quota_n = [0.0] * n, [0] * n
    for b, week, share in zip(batches, of, shares, strict=True):
        i = at[week]
        if b.phase in minted:
            minted[b.phase][i] += b.minted
        passed[i] += b.passed
        failed[i] += b.failed
        drilled[i] += b.drilled
        found[i] += sum(b.defects.values())
        if share is not None and not b.dry_run:
            quota_sum[i] += share
            quota_n[i] += 1
    traces: list[Trace] = [
        {
            "type": "bar",
            "name": f"Alfas minted: {phase}",
            "x": weeks,
            "y": minted[phase],
            "marker": {"color": PHASE_COLOURS[phase]},
            "hovertemplate": "%{x}: %{y:,d} Alfas<extra>" + phase + "</extra>",
        }
        for phase in PHASES
        if any(minted[phase])
    ]
    lines = (
        (
            "pass rate",
            [pass_rate(p, f) for p, f in zip(passed, failed, strict=True)],
            "y2",
            "#27ae60",
            ".1%",
        ),
        (
            "defects per 1,000 drilled",
            [
                None if not d else round(1000 * f / d, 1)
                for f, d in zip(found, drilled, strict=True)
            ],
            "y3",
            "#c0392b",
            ",.1f",
        ),
        (
            "quota attainment",
            [_ratio(s, c) for s, c in zip(quota_sum, quota_n, strict=True)],
            "y4",
            "#8e44ad",
            ".1%",
        ),
    )
    for name, values, axis, colour, fmt in lines:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": weeks,
                "y": values,
                "yaxis": axis,
                "line": {"color": colour},
                "hovertemplate": "%{x}: %{y:" + fmt + "}<extra>" + name + "</extra>",
            }
        )
    extra = {} if weeks else {"annotations": [_note("no orders yet")]}
    return _figure(
        traces,
        "Trends by ISO week (sprint)",
        height=760,
        barmode="stack",
        showlegend=False,
        xaxis={"type": "category", "title": {"text": "ISO week"}, "anchor": "y4"},
        yaxis={
            "domain": [0.78, 1.0],
            "title": {"text": "Alfas minted"},
            "tickformat": COUNT,
            "rangemode": "tozero",
        },
        yaxis2={
            "domain": [0.52, 0.72],
            "title": {"text": "pass rate"},
            "tickformat": PERCENT,
            "range": [0, 1.05],
        },
        yaxis3={
            "domain": [0.26, 0.46],
            "title": {"text": "defects / 1,000"},
            "tickformat": ",~f",
            "rangemode": "tozero",
        },
        yaxis4={
            "domain": [0.0, 0.2],
            "title": {"text": "quota attainment"},
            "tickformat": PERCENT,
            "range": [0, 1.05],
        },
        **extra,
    )


def quota(batches: Sequence[Batch], shares: Sequence[float | None] | None = None) -> Figure:
    """How many orders reached each band of quota attainment (dry runs and orders without a
    target left out); the orders under target are listed beside the chart, not drawn."""
    counts = dict.fromkeys(BANDS, 0)
    shares = attainments(batches) if shares is None else shares
    for b, share in zip(batches, shares, strict=True):
        if share is not None and not b.dry_run:
            counts[band(share)] += 1
    colours = ["#c0392b", "#e67e22", "#f1c40f", "#a3cb38", "#27ae60"]
    trace: Trace = {
        "type": "bar",
        "x": list(BANDS),
        "y": list(counts.values()),
        "marker": {"color": colours},
        "text": [f"{v:,}" for v in counts.values()],
        "textposition": "auto",
        "hovertemplate": "%{x}: %{y:,d} orders<extra></extra>",
    }
    return _figure(
        [trace],
        "Quota attainment: orders by share of their diversity target met",
        xaxis={"type": "category", "title": {"text": "attainment"}},
        yaxis={"title": {"text": "orders"}, **_count_ticks(max(counts.values()))},
    )


def under_target(
    batches: Sequence[Batch], shares: Sequence[float | None] | None = None
) -> list[tuple[Batch, float]]:
    """Orders below their diversity target, worst first (then by id)."""
    found = []
    shares = attainments(batches) if shares is None else shares
    for b, share in zip(batches, shares, strict=True):
        if share is not None and share < 1.0 and not b.dry_run:
            found.append((b, share))
    found.sort(key=lambda item: (item[1], item[0].order_id))
    return found


#: The funnel's stages and how each is counted from a batch.
STAGES = ("Minted", "Drilled", "Passed Drill", "Promoted")


def funnel(batches: Sequence[Batch]) -> Figure:
    """One funnel per phase, side by side, each on its own scale; dry runs (stubs) left out."""
    stages: dict[str, list[int]] = {}
    for b in batches:
        if b.dry_run or b.phase not in PHASES:
            continue
        row = stages.setdefault(b.phase, [0, 0, 0, 0])
        row[0] += b.minted
        row[1] += b.drilled
        row[2] += b.passed
        row[3] += b.promoted
    phases = [p for p in PHASES if p in stages]
    traces: list[Trace] = []
    axes: dict[str, object] = {}
    notes: list[dict[str, object]] = []
    width = 1 / max(len(phases), 1)
    for i, phase in enumerate(phases):
        suffix = "" if i == 0 else str(i + 1)
        traces.append(
            {
                "type": "funnel",
                "name": phase,
                "y": list(STAGES),
                "x": stages[phase],
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
                "marker": {"color": PHASE_COLOURS[phase]},
                "texttemplate": "%{value:,d}<br>%{percentInitial:.0%}",
                "textposition": "inside",
                "hovertemplate": "%{y}: %{x:,d}<extra>" + phase + "</extra>",
            }
        )
        domain = [i * width + (0.02 if i else 0.0), (i + 1) * width - 0.02]
        notes.append(
            {
                "text": f"<b>{phase}</b>",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": (domain[0] + domain[1]) / 2,
                "y": 1.02,
                "yanchor": "bottom",
            }
        )
        axes[f"xaxis{suffix}"] = {
            "domain": domain,
            "title": {"text": phase},
            "tickformat": COUNT,
            "showticklabels": False,
        }
        axes[f"yaxis{suffix}"] = {
            "anchor": f"x{suffix}",
            "showticklabels": i == 0,
            "type": "category",
            "autorange": "reversed",
        }
    notes = notes or [_note("no batch has run its rituals yet")]
    return _figure(
        traces,
        "Drill → Promote, per phase (dry runs left out)",
        showlegend=False,
        annotations=notes,
        **axes,
    )


def defects(batches: Sequence[Batch]) -> Figure:
    """Defects found by Drill, by kind (most frequent first), stacked by recipe."""
    by_kind: dict[str, dict[str, int]] = {}
    for b in batches:
        recipe = b.recipe or "unknown"
        for kind, count in b.defects.items():
            per = by_kind.setdefault(kind, {})
            per[recipe] = per.get(recipe, 0) + count
    total = {k: sum(v.values()) for k, v in by_kind.items()}
    kinds = sorted(total, key=lambda k: (-total[k], k))
    recipes = sorted({r for per in by_kind.values() for r in per})
    traces: list[Trace] = [
        {
            "type": "bar",
            "orientation": "h",
            "name": recipe,
            "y": kinds,
            "x": [by_kind[k].get(recipe, 0) for k in kinds],
            "hovertemplate": "%{y}: %{x:,d}<extra>" + recipe.replace("<", "") + "</extra>",
        }
        for recipe in recipes
    ]
    extra = {} if kinds else {"annotations": [_note("no defects recorded")]}
    return _figure(
        traces,
        "Defects by kind and recipe",
        height=max(320, 120 + 28 * len(kinds)),
        barmode="stack",
        xaxis={"title": {"text": "defects found"}, "tickformat": COUNT, "rangemode": "tozero"},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        **extra,
    )


def scores(batches: Sequence[Batch]) -> Figure:
    found: dict[int, int] = {}
    for b in batches:
        for lo, count in b.score_histogram.items():
            found[lo] = found.get(lo, 0) + count
    bins = sorted(found)
    trace: Trace = {
        "type": "bar",
        "x": [f"{lo}–{lo + SCORE_BIN}" for lo in bins],
        "y": [found[lo] for lo in bins],
        "marker": {"color": "#8e44ad"},
        "hovertemplate": "score %{x}: %{y:,d} Alfas<extra></extra>",
    }
    extra = {} if bins else {"annotations": [_note("no Alfa has been scored yet")]}
    return _figure(
        [trace],
        "Drill score distribution",
        xaxis={"title": {"text": "score"}, "type": "category"},
        yaxis={"title": {"text": "Alfas"}, "tickformat": COUNT},
        **extra,
    )


def figures(
    batches: Sequence[Batch], shares: Sequence[float | None] | None = None
) -> dict[str, Figure]:
    """Every chart's figure, keyed by chart id in page order (`shares`: `attainments`)."""
    shares = attainments(batches) if shares is None else shares
    return {
        "trends": trends(batches, shares),
        "quota": quota(batches, shares),
        "funnel": funnel(batches),
        "defects": defects(batches),
        "scores": scores(batches),
    }
