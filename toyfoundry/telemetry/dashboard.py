"""The daily dashboard for High Command: one self-contained HTML file of plotly charts.

Made from the rollup alone (O(orders)), and re-made after every new order, so
it is kept cheap. Each chart is written here as a plain plotly.js figure (a
`data` list and a `layout` dict, serialized with orjson) and drawn in the
browser by `Plotly.newPlot`. Python's plotly figure classes are not used:
importing them, validating each figure and expanding its template would cost
some 0.3 s per run at a thousand orders, only to produce the same JSON. The
page's JavaScript is plotly.js's "finance" partial bundle, which has the four
trace types the charts use (bar, scatter, pie, funnel) in 1.3 MB where the full
bundle takes 4.8 MB, and the `plotly_white` template; both ship with the package
(`assets/`, see its README). The rollup is not loaded through its pydantic
model either (importing the models alone costs more than drawing the page).
When `quilt/rollup_state.json` vouches for its bytes, the quilt made it from
validated parts, and its parse is shared with the quilt and the exports in the
same process (see `parts`), so the charts take its fields as they are.
Otherwise orjson reads it into the few fields the charts need, each one
checked, so a malformed or hand-edited rollup fails with a one-line `FoundryError`.

Self-contained means no network fetch when the file is opened (it is mailed,
archived and opened offline): plotly.js is embedded exactly once, then the
template once, then the six figures. Every part is deterministic: fixed div
ids, JSON with sorted keys, no clock. So the same rollup (with the same
assets) gives the same bytes, and `write_atomic` leaves an unchanged
dashboard untouched. Names from the exchange are escaped as HTML in the
orders table and as JSON (`<`, `>`, `&` too) inside the script. The dated copy
in `exports/dashboards/<day>.html` keeps one snapshot per day: a second name
for the page's file, so the page is written once per run, not twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import mmap
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from toyfoundry.errors import FoundryError
from toyfoundry.store import fsio
from toyfoundry.store.atomic import fsync_dir, write_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.parts import load_rollup as vouched_rollup

#: The chart ids, in page order; the browser test counts these.
CHARTS = ("alfas-per-day", "funnel", "defects", "diversity", "scores", "status")
PLAN_SHARES = {"novel": 0.6, "carryover": 0.2, "baseline": 0.2}
#: The diversity shares, as in `telemetry.render.SHARES`.
SHARES = ("novel", "carryover", "baseline")
#: Width of a score histogram bin, as in `telemetry.summary.SCORE_BIN`; keys are lower bounds.
SCORE_BIN = 10
#: The phases in stacking order; "unknown" groups orders rejected before their phase was
#: known, as `telemetry.summary.group_key` does.
UNKNOWN = "unknown"
PHASES = ("pilot", "expansion", "operational", UNKNOWN)
TEMPLATE = "plotly_white"
HEIGHT = 420
_CONFIG = {"displaylogo": False, "responsive": True}

#: A plotly.js trace, and a figure: {"data": [trace, ...], "layout": {...}}.
Trace = dict[str, object]
Figure = dict[str, object]


def dashboards_dir(layout: Layout) -> Path:
    return layout.exports / "dashboards"


# -- the rollup, as the charts see it ---------------------------------------------------------


@dataclass(slots=True)
class Batch:
    """The fields of one rollup batch summary that the dashboard draws.

    `target` and `achieved` are share counts in `SHARES` order.
    """

    order_id: str
    recipe: str | None
    phase: str | None
    day: str
    status: str
    minted: int
    drilled: int
    paraded: int
    purged: int
    promoted: int
    quarantined: int
    defects: dict[str, int]
    target: tuple[int, int, int]
    achieved: tuple[int, int, int]
    score_histogram: dict[int, int]
    mint_attempts: int
    ritual_invocations: int
    last_attempt: str | None


@dataclass(slots=True)
class Rollup:
    """What the dashboard draws from the rollup: its batches and how many entries it skipped."""

    batches: list[Batch]
    skipped: int


#: The outcome counts that the charts and the table use, in `Batch` order.
OUTCOMES = ("minted", "drilled", "paraded", "purged", "promoted", "quarantined")


class _Malformed(ValueError):
    """One thing wrong with the rollup, located like `batches[3].outcomes.minted: not a count`."""


def _object(value: object, where: str) -> dict[str, object]:
    if type(value) is not dict:
        raise _Malformed(f"{where}: not an object")
    return value


def _counts_of(value: object, names: tuple[str, ...], where: str) -> list[int]:
    """The named counts of an object; an absent count is 0, as the rollup's format defaults it."""
    obj = _object(value, where)
    found = []
    for name in names:
        count = obj.get(name, 0)
        if type(count) is not int or count < 0:
            raise _Malformed(f"{where}.{name}: not a count")
        found.append(count)
    return found


def _counts(value: object, where: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key, count in _object(value, where).items():
        if type(count) is not int or count < 0:
            raise _Malformed(f"{where}: a value is not a count")
        counts[key] = count
    return counts


def _histogram(value: object, where: str) -> dict[int, int]:
    counts = _counts(value, where)
    try:
        return {int(key): count for key, count in counts.items()}
    except ValueError:
        raise _Malformed(f"{where}: a bin is not a number") from None


def _text(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    if type(value) is not str:
        raise _Malformed(f".{key}: not a string")
    return value


def _optional_text(obj: dict[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and type(value) is not str:
        raise _Malformed(f".{key}: not a string or null")
    return value


def _batch(value: object) -> Batch:
    """One batch; a problem's location is relative to the batch (`.outcomes.minted: ...`)."""
    obj = _object(value, "")
    minted, drilled, paraded, purged, promoted, quarantined = _counts_of(
        obj.get("outcomes"), OUTCOMES, ".outcomes"
    )
    novel, carryover, baseline = _counts_of(obj.get("target"), SHARES, ".target")
    a_novel, a_carryover, a_baseline = _counts_of(obj.get("achieved"), SHARES, ".achieved")
    telemetry = _object(obj.get("telemetry", {}), ".telemetry")
    attempts, invocations = _counts_of(
        telemetry, ("mint_attempts", "ritual_invocations"), ".telemetry"
    )
    try:
        last_attempt = _optional_text(telemetry, "last_attempt")
    except _Malformed as exc:
        raise _Malformed(f".telemetry{exc}") from None
    return Batch(
        order_id=_text(obj, "order_id"),
        recipe=_optional_text(obj, "recipe"),
        phase=_optional_text(obj, "phase"),
        day=_text(obj, "day"),
        status=_text(obj, "status"),
        minted=minted,
        drilled=drilled,
        paraded=paraded,
        purged=purged,
        promoted=promoted,
        quarantined=quarantined,
        defects=_counts(obj.get("defects", {}), ".defects"),
        target=(novel, carryover, baseline),
        achieved=(a_novel, a_carryover, a_baseline),
        score_histogram=_histogram(obj.get("score_histogram", {}), ".score_histogram"),
        mint_attempts=attempts,
        ritual_invocations=invocations,
        last_attempt=last_attempt,
    )


def parse_rollup(data: bytes) -> Rollup:
    """The charts' view of `quilt_rollup_all.json`; `ValueError` (one line) if it is malformed."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {' '.join(str(exc).split())}") from None
    doc = _object(doc, "the file")
    version = doc.get("schema_version")
    if type(version) is not int or version != 1:
        raise _Malformed("schema_version: not 1")
    items = doc.get("batches")
    if type(items) is not list:
        raise _Malformed("batches: not a list")
    skipped = doc.get("skipped", [])
    if type(skipped) is not list:
        raise _Malformed("skipped: not a list")
    batches = []
    for number, item in enumerate(items):
        try:
            batches.append(_batch(item))
        except _Malformed as exc:
            raise _Malformed(f"batches[{number}]{exc}") from None
    return Rollup(batches, len(skipped))


def _shown(layout: Layout, path: Path) -> str:
    """A path as people should read it: relative to the project when inside it."""
    try:
        return str(path.absolute().relative_to(layout.root))
    except ValueError:
        return str(path)


def _vouched_batch(b: dict[str, Any]) -> Batch:
    """`_batch` without its checks, for a batch of a rollup the quilt's record vouches for.

    Such a batch is a BatchSummary's plain data: every field present and typed.
    Only a score bin that is not a number fails here (ValueError), as in `_batch`.
    """
    o, t, a, tel = b["outcomes"], b["target"], b["achieved"], b["telemetry"]
    return Batch(
        order_id=b["order_id"],
        recipe=b["recipe"],
        phase=b["phase"],
        day=b["day"],
        status=b["status"],
        minted=o["minted"],
        drilled=o["drilled"],
        paraded=o["paraded"],
        purged=o["purged"],
        promoted=o["promoted"],
        quarantined=o["quarantined"],
        defects=dict(b["defects"]),
        target=(t["novel"], t["carryover"], t["baseline"]),
        achieved=(a["novel"], a["carryover"], a["baseline"]),
        score_histogram={int(key): count for key, count in b["score_histogram"].items()},
        mint_attempts=tel["mint_attempts"],
        ritual_invocations=tel["ritual_invocations"],
        last_attempt=tel["last_attempt"],
    )


def _vouched(layout: Layout) -> Rollup | None:
    """The charts' view of the rollup when `rollup_state.json` vouches for its bytes, else None.

    Those bytes are what the quilt wrote from validated parts, and the quilt's
    own parse is shared within the process (see `parts`), so their batches are
    taken as they are, not checked field by field. Anything unexpected
    (a score bin that is not a number) leaves it to `parse_rollup` to say what.
    """
    stored = vouched_rollup(layout)
    if stored is None:
        return None
    document = stored.document
    try:
        return Rollup(
            [_vouched_batch(b) for b in document["batches"]], len(document.get("skipped", []))
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def load_rollup(layout: Layout) -> Rollup:
    """The charts' view of the rollup: as vouched for by the quilt's record, else checked."""
    vouched = _vouched(layout)
    if vouched is not None:
        return vouched
    shown = _shown(layout, layout.rollup)
    try:
        data = layout.rollup.read_bytes()
    except FileNotFoundError:
        raise FoundryError(f"{shown}: missing; run `toyfoundry build`") from None
    except OSError as exc:
        raise FoundryError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    try:
        return parse_rollup(data)
    except ValueError as exc:
        raise FoundryError(f"{shown}: not a valid rollup ({exc})") from None


# -- the charts ------------------------------------------------------------------------------


def _figure(data: list[Trace], title: str, **layout: object) -> Figure:
    """A figure with the dashboard's common layout; the template is added in the page."""
    return {
        "data": data,
        "layout": {
            "title": {"text": title},
            "height": HEIGHT,
            "margin": {"l": 60, "r": 30, "t": 60, "b": 60},
            **layout,
        },
    }


def _centred_note(text: str) -> dict[str, object]:
    return {"text": text, "showarrow": False, "x": 0.5, "y": 0.5}


def alfas_per_day(batches: list[Batch]) -> Figure:
    days = sorted({b.day for b in batches})
    traces: list[Trace] = []
    for phase in PHASES:
        per_day = Counter[str]()
        for b in batches:
            if (b.phase or UNKNOWN) == phase:
                per_day[b.day] += b.minted
        if per_day:
            traces.append(
                {"type": "bar", "name": phase, "x": days, "y": [per_day[d] for d in days]}
            )
    return _figure(
        traces, "Alfas minted per day and phase", barmode="stack", xaxis={"type": "category"}
    )


def funnel(batches: list[Batch]) -> Figure:
    stages = {
        "Minted": sum(b.minted for b in batches),
        "Drill (scored)": sum(b.drilled for b in batches),
        "Parade (ranked)": sum(b.paraded for b in batches),
        "Purge (kept)": sum(max(b.drilled - b.purged, 0) for b in batches),
        "Promote": sum(b.promoted for b in batches),
    }
    trace: Trace = {
        "type": "funnel",
        "y": list(stages),
        "x": list(stages.values()),
        "textinfo": "value",
    }
    return _figure([trace], "Drill → Parade → Purge → Promote")


def defects(batches: list[Batch]) -> Figure:
    found: dict[str, int] = {}
    for b in batches:
        for kind, count in b.defects.items():
            found[kind] = found.get(kind, 0) + count
    kinds = sorted(found, key=lambda k: (-found[k], k))
    trace: Trace = {
        "type": "bar",
        "x": kinds,
        "y": [found[k] for k in kinds],
        "marker": {"color": "#c0392b"},
    }
    extra = {} if kinds else {"annotations": [_centred_note("no defects recorded")]}
    return _figure([trace], "Defects by kind", **extra)


def _boundaries(target: tuple[int, int, int]) -> tuple[float | None, float | None]:
    """A target's novel and novel + carryover boundaries in percent (one decimal), if planned."""
    planned = sum(target)
    if not planned:
        return None, None
    first = round(100 * target[0] / planned, 1)
    return first, round(first + round(100 * target[1] / planned, 1), 1)


def diversity(batches: list[Batch]) -> Figure:
    """Achieved shares stacked to 100% per batch, against the plan's 60/20/20 and each batch's target.

    Stacked, the plan is two lines: novel must reach 60%, novel plus carryover
    80%. A batch's own target differs when its pool was empty (carryover goes
    to novel) or the order overrides the shares, so its boundaries are markers.
    Percentages have one decimal; a batch without any Alfa is left out.
    """
    orders: list[str] = []
    achieved: tuple[list[float], list[float], list[float]] = ([], [], [])
    novel: list[float | None] = []
    novel_carryover: list[float | None] = []
    # most batches share a few share counts: each distinct one is worked out once
    percents: dict[tuple[int, int, int], tuple[float, ...]] = {}
    boundaries: dict[tuple[int, int, int], tuple[float | None, float | None]] = {}
    for b in batches:
        row = percents.get(b.achieved)
        if row is None:
            whole = sum(b.achieved)
            row = percents[b.achieved] = (
                tuple(round(100 * count / whole, 1) for count in b.achieved) if whole else ()
            )
        if not row:
            continue
        orders.append(b.order_id)
        for column, percent in zip(achieved, row, strict=True):
            column.append(percent)
        marks = boundaries.get(b.target)
        if marks is None:
            marks = boundaries[b.target] = _boundaries(b.target)
        novel.append(marks[0])
        novel_carryover.append(marks[1])
    colours = {"novel": "#2e86de", "carryover": "#10ac84", "baseline": "#f39c12"}
    traces: list[Trace] = [
        {
            "type": "bar",
            "name": f"{share} achieved",
            "x": orders,
            "y": column,
            "marker": {"color": colours[share]},
        }
        for share, column in zip(SHARES, achieved, strict=True)
    ]
    for label, bounds in (("novel", novel), ("novel + carryover", novel_carryover)):
        traces.append(
            {
                "type": "scatter",
                "name": f"target: {label}",
                "x": orders,
                "y": bounds,
                "mode": "markers",
                "marker": {
                    "symbol": "line-ew-open",
                    "size": 40,
                    "color": "#222",
                    "line": {"width": 3},
                },
            }
        )
    shapes: list[dict[str, object]] = []
    notes: list[dict[str, object]] = []
    plan = 0.0
    for share in ("novel", "carryover"):
        plan += PLAN_SHARES[share]
        level = round(100 * plan)
        label = "novel" if share == "novel" else "novel + carryover"
        shapes.append(
            {
                "type": "line",
                "xref": "x domain",
                "yref": "y",
                "x0": 0,
                "x1": 1,
                "y0": level,
                "y1": level,
                "line": {"color": "#555", "dash": "dot"},
            }
        )
        notes.append(
            {
                "text": f"plan: {label} {100 * plan:.0f}%",
                "showarrow": False,
                "xref": "x domain",
                "yref": "y",
                "x": 0,
                "y": level,
                "xanchor": "left",
                "yanchor": "bottom",
            }
        )
    return _figure(
        traces,
        "Diversity shares per batch against the 60/20/20 targets",
        barmode="stack",
        xaxis={"type": "category"},
        yaxis={"title": {"text": "% of batch"}, "range": [0, 100]},
        shapes=shapes,
        annotations=notes,
    )


def scores(batches: list[Batch]) -> Figure:
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
    }
    extra = {} if bins else {"annotations": [_centred_note("no Alfa has been scored yet")]}
    return _figure([trace], "Drill score distribution", xaxis={"title": {"text": "score"}}, **extra)


def status(batches: list[Batch]) -> Figure:
    found = Counter(b.status for b in batches)
    names = sorted(found)
    trace: Trace = {
        "type": "pie",
        "labels": names,
        "values": [found[n] for n in names],
        "sort": False,
        "hole": 0.4,
    }
    return _figure([trace], "Orders by status")


def figures(rollup: Rollup) -> dict[str, Figure]:
    """Every chart's figure, keyed by chart id in page order."""
    batches = rollup.batches
    drawn = (alfas_per_day, funnel, defects, diversity, scores, status)
    return {name: draw(batches) for name, draw in zip(CHARTS, drawn, strict=True)}


# -- the page --------------------------------------------------------------------------------


#: The page's JavaScript and chart template, shipped with the package (see assets/README.md).
ASSETS = Path(__file__).resolve().parent / "assets"
PLOTLY_JS = ASSETS / "plotly-finance.min.js"
TEMPLATE_FILE = ASSETS / f"{TEMPLATE}.json"


def _cannot_read(path: Path, exc: OSError | ValueError) -> FoundryError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return FoundryError(f"dashboard: cannot read {path} ({reason})")


def _template() -> bytes:
    """The plotly template every chart uses, as script JSON."""
    path = TEMPLATE_FILE
    try:
        return _script_json(orjson.loads(path.read_bytes()))
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    except orjson.JSONDecodeError:
        raise FoundryError(f"dashboard: {path}: not a plotly template (not JSON)") from None


def _around_plotly_js(before: bytes, after: bytes) -> bytes:
    """`before`, plotly.js, `after`: the bundle is mapped, not read, to copy it only once."""
    path = PLOTLY_JS
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as js:
            return b"".join((before, js, after))
    except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
        raise _cannot_read(path, exc) from None


def _script_json(value: object) -> bytes:
    """JSON that is safe inside a <script> element: `<`, `>` and `&` are escaped in strings."""
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    for char, escape in (
        (b"<", rb"\u003c"),
        (b">", rb"\u003e"),
        (b"&", rb"\u0026"),
        ("\u2028".encode(), rb"\u2028"),
        ("\u2029".encode(), rb"\u2029"),
    ):
        data = data.replace(char, escape)
    return data


def _escape(text: str) -> str:
    """`html.escape(text)`, without importing `html` (and its table of entities) for it."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def _orders_table(batches: list[Batch]) -> str:
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
    esc = _escape
    # once per distinct value: recipes, phases and statuses repeat on every row
    text = functools.cache(esc)

    rows = [
        f"<tr><td>{esc(b.order_id)}</td><td>{text(b.recipe or '-')}</td>"
        f"<td>{text(b.phase or '-')}</td><td>{text(b.status)}</td><td>{b.minted}</td>"
        f"<td>{b.promoted}</td><td>{b.quarantined}</td><td>{b.mint_attempts}</td>"
        f"<td>{b.ritual_invocations}</td><td>{esc(b.last_attempt or '-')}</td></tr>"
        for b in batches
    ]
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .sub { color: #666; margin-top: 0; }
.chart { border: 1px solid #ddd; border-radius: 6px; margin: 16px 0; padding: 4px; }
table { border-collapse: collapse; margin: 16px 0; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
"""

# Runs after plotly.js, inside a function so that nothing but `Plotly` is global.
# Every figure gets the shared template and config; a chart that fails to draw
# is logged and does not stop the others. The figures follow as `draw(...)` calls.
_DRAW = b"""(function () {
const config = %s;
const template = %s;
function draw(id, figure) {
  figure.layout.template = template;
  try {
    Plotly.newPlot(id, figure.data, figure.layout, config);
  } catch (error) {
    console.error("chart " + id + ": " + error);
  }
}
"""


def render(rollup: Rollup) -> bytes:
    """The dashboard page as UTF-8; equal rollups (and the same assets) give equal bytes."""
    batches = rollup.batches
    days = sorted({b.day for b in batches})
    span = f"{days[0]} to {days[-1]}" if days else "no orders yet"
    skipped = rollup.skipped
    note = f"; {skipped} ledger or part entries skipped (see the rollup)" if skipped else ""
    style = f"height:{HEIGHT}px; width:100%;"
    sections = "\n".join(
        f'<section class="chart" data-chart="{name}">'
        f'<div id="chart-{name}" class="plotly-graph-div" style="{style}"></div></section>'
        for name in CHARTS
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Toyfoundry dashboard</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        "<h1>Toyfoundry dashboard</h1>\n"
        f'<p class="sub">{len(batches)} orders, {_escape(span)}{_escape(note)}</p>\n'
        f"{sections}\n<h2>Orders</h2>\n{_orders_table(batches)}\n"
    ).encode()
    script = [_DRAW % (_script_json(_CONFIG), _template())]
    for name, figure in figures(rollup).items():
        script.append(b'draw("chart-%s", %s);\n' % (name.encode(), _script_json(figure)))
    script.append(b"})();\n</script>\n</body>\n</html>\n")
    return _around_plotly_js(page + b"<script>\n", b"\n</script>\n<script>\n" + b"".join(script))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _dated_copy(page_path: Path, page: bytes, copy: Path) -> bool:
    """Make `copy` hold the page that `page_path` holds; True if `copy` changed.

    The copy is a second name for the page's file (a hard link made under a
    temp name and renamed into place), not a second write of the page. Neither
    name is ever written in place (`write_atomic` renames a new file over the old), so
    the two cannot drift apart; the next page written leaves the copy with the
    old file. Where no link can be made (another filesystem, no hard links),
    the bytes are written.
    """
    if _same_file(page_path, copy):
        return False
    try:
        if copy.stat().st_size == len(page) and copy.read_bytes() == page:
            return False  # a copy with the same bytes stays untouched, as `write_atomic` leaves it
    except OSError:
        pass
    temp = copy.with_name(f".{copy.name}.{os.getpid()}.link.tmp")
    try:
        try:
            os.link(page_path, temp)
        except FileNotFoundError:
            copy.parent.mkdir(parents=True, exist_ok=True)
            os.link(page_path, temp)
    except OSError:
        return write_atomic(copy, page)
    try:
        fsio.replace(temp, copy)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(copy.parent)
    return True


def build_dashboard(layout: Layout, today: str | None = None) -> list[Path]:
    """Write `quilt/dashboard.html` and today's copy (UTC day); returns the files that changed."""
    # Parsed, not trusted: the day becomes part of a path.
    day = (
        dt.date.fromisoformat(today).isoformat()
        if today
        else dt.datetime.now(dt.UTC).date().isoformat()
    )
    page = render(load_rollup(layout))
    written = [layout.dashboard] if write_atomic(layout.dashboard, page) else []
    copy = dashboards_dir(layout) / f"{day}.html"
    if _dated_copy(layout.dashboard, page, copy):
        written.append(copy)
    return written
