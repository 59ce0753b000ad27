"""The daily dashboard for High Command: one self-contained HTML page, read in ten seconds.

Made from the rollup alone (O(orders)), and re-made after every new order, so
it is kept cheap. The page has a header (as of when, which exchange), the
headline figures with their change since the previous day's page
(`headline`), what needs attention with the command that clears it, the
charts (`charts`: plain plotly.js figures serialized with orjson and drawn by
`Plotly.newPlot`), the orders under their diversity target and an orders
table that sorts, filters and pages in the browser (`assets/dashboard.js`).
Python's plotly figure classes are not used: importing them and validating
each figure would cost some 0.3 s per run at a thousand orders, only to
produce the same JSON. The page's JavaScript is plotly.js's "finance"
partial bundle (bar, scatter and funnel among others, in 1.3 MB where the full bundle
takes 4.8 MB) and the `plotly_white` template, both in `assets/`. The rollup
is not loaded through its pydantic model either (importing the models alone
costs more than drawing the page). When `quilt/rollup_state.json` vouches for
its bytes, the quilt made it from validated parts, and its parse is shared
with the quilt and the exports in the same process (see `parts`), so the page
takes its fields as they are. Otherwise orjson reads it into the few fields
the page needs, each one checked, so a malformed or hand-edited rollup fails
with a one-line `FoundryError`.

Self-contained means no network fetch when the file is opened (it is mailed,
archived and opened offline): plotly.js is embedded exactly once, then one
script with the template, the figures and the table's rows. Every part is
deterministic: fixed ids, JSON with sorted keys, no clock. "As of" is the
latest ledger record the rollup holds (else the latest order's day), so the
same rollup and history give the same bytes, and `write_atomic` leaves an
unchanged page untouched. Names from the exchange are escaped as HTML in the
markup and as JSON (`<`, `>`, `&` too) inside the script; the table's script
sets them as text, never as markup. Each day's page is kept (`history`).
"""

from __future__ import annotations

import datetime as dt
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from toyfoundry.errors import FoundryError
from toyfoundry.store.atomic import write_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import charts, headline, history
from toyfoundry.telemetry.charts import CHARTS as CHARTS
from toyfoundry.telemetry.charts import SCORE_BIN as SCORE_BIN
from toyfoundry.telemetry.headline import (
    Figures,
    count_text,
    delta_text,
    rate_delta_text,
    rate_text,
)
from toyfoundry.telemetry.parts import load_rollup as vouched_rollup

#: The diversity shares, as in `telemetry.render.SHARES`.
SHARES = ("novel", "carryover", "baseline")
TEMPLATE = "plotly_white"
_CONFIG = {"displaylogo": False, "responsive": True}


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
    reason: str
    dry_run: bool
    minted: int
    drilled: int
    paraded: int
    passed: int
    failed: int
    purged: int
    promoted: int
    quarantined: int
    waived: int
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
OUTCOMES = (
    "minted",
    "drilled",
    "paraded",
    "passed",
    "failed",
    "purged",
    "promoted",
    "quarantined",
    "waived",
)


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
    minted, drilled, paraded, passed, failed, purged, promoted, quarantined, waived = _counts_of(
        obj.get("outcomes"), OUTCOMES, ".outcomes"
    )
    reason = obj.get("reason", "")
    if type(reason) is not str:
        raise _Malformed(".reason: not a string")
    dry_run = obj.get("dry_run", False)
    if type(dry_run) is not bool:
        raise _Malformed(".dry_run: not a boolean")
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
        reason=reason,
        dry_run=dry_run,
        minted=minted,
        drilled=drilled,
        paraded=paraded,
        passed=passed,
        failed=failed,
        purged=purged,
        promoted=promoted,
        quarantined=quarantined,
        waived=waived,
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
        reason=b["reason"],
        dry_run=b["dry_run"],
        minted=o["minted"],
        drilled=o["drilled"],
        paraded=o["paraded"],
        passed=o["passed"],
        failed=o["failed"],
        purged=o["purged"],
        promoted=o["promoted"],
        quarantined=o["quarantined"],
        waived=o["waived"],
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


# -- the page --------------------------------------------------------------------------------


#: The page's JavaScript and chart template, shipped with the package (see assets/README.md).
ASSETS = Path(__file__).resolve().parent / "assets"
PLOTLY_JS = ASSETS / "plotly-finance.min.js"
TEMPLATE_FILE = ASSETS / f"{TEMPLATE}.json"
TABLE_JS = ASSETS / "dashboard.js"
#: Reports as seen from the page: `quilt/dashboard.html` and `dashboards/<day>.html` sit at
#: the same depth under the project, so one relative path serves both.
REPORTS = "../../../exchange/reports/"
#: Rows the problem and under-target lists show before pointing to the orders table.
LIST_LIMIT = 20
#: The orders table's columns as the page's script receives them.
TABLE_COLUMNS = (
    "order",
    "day",
    "recipe",
    "phase",
    "status",
    "minted",
    "passed",
    "promoted",
    "quarantined",
    "attainment",
    "reason",
)


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


def _table_js() -> bytes:
    try:
        return TABLE_JS.read_bytes()
    except OSError as exc:
        raise _cannot_read(TABLE_JS, exc) from None


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


def _report_link(order_id: str) -> str:
    oid = _escape(order_id)
    return f'<a class="report" href="{REPORTS}{oid}.html">{oid}</a>'


@dataclass(frozen=True, slots=True)
class AsOf:
    """When the page's data ends: the latest ledger record, else the latest order's day."""

    day: str
    text: str


def as_of(batches: list[Batch]) -> AsOf:
    """The latest ledger record over every order (in UTC), else the latest order's day.

    Taken from the rollup, never from the clock, so the same inputs give the same page.
    """
    latest: dt.datetime | None = None
    for b in batches:
        if b.last_attempt:
            try:
                when = dt.datetime.fromisoformat(b.last_attempt)
            except ValueError:
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            if latest is None or when > latest:
                latest = when
    if latest is not None:
        utc = latest.astimezone(dt.UTC)
        return AsOf(utc.date().isoformat(), f"{utc:%Y-%m-%d %H:%M} UTC (latest ledger record)")
    days = [b.day for b in batches if charts.week_of(b.day) != charts.NO_WEEK]
    if days:
        day = max(days)
        return AsOf(day, f"{day} (latest order; no ledger record yet)")
    return AsOf("", "no orders yet")


def _tile(label: str, value: str, change: str, detail: str = "") -> str:
    delta = f'<span class="delta">{_escape(change)}</span>' if change else ""
    more = f'<div class="detail">{detail}</div>' if detail else ""
    return (
        f'<div class="tile"><div class="label">{_escape(label)}</div>'
        f'<div class="value">{_escape(value)}{delta}</div>{more}</div>'
    )


def _headline(batches: list[Batch], now: Figures, before: Figures | None) -> str:
    """The tiles: each figure with its change since the previous day's page."""

    def was(name: str) -> int | None:
        return None if before is None else int(getattr(before, name))

    statuses = [s for s in headline.STATUSES if s in now.by_status] + sorted(
        set(now.by_status) - set(headline.STATUSES)
    )
    status_lines = "".join(
        f'<span class="st st-{_escape(s)}">{_escape(s)} {count_text(now.by_status[s])}'
        f"{_delta_span(delta_text(now.by_status[s], None if before is None else before.by_status.get(s, 0)))}"
        "</span>"
        for s in statuses
    )
    backlog = headline.review_backlog(batches)
    oldest = (
        f"oldest: {_report_link(backlog.oldest_order)} ({_escape(backlog.oldest_day or '')})"
        if backlog.oldest_order
        else "nothing awaits review"
    )
    tiles = [
        _tile(
            "Orders", count_text(now.orders), delta_text(now.orders, was("orders")), status_lines
        ),
        _tile("Alfas minted", count_text(now.minted), delta_text(now.minted, was("minted"))),
        _tile(
            "Passed Drill",
            count_text(now.passed),
            delta_text(now.passed, was("passed")),
            f"of {count_text(now.passed + now.failed)} judged",
        ),
        _tile(
            "Pass rate",
            rate_text(now.pass_rate),
            rate_delta_text(now.pass_rate, None if before is None else before.pass_rate),
        ),
        _tile("Promoted", count_text(now.promoted), delta_text(now.promoted, was("promoted"))),
        _tile(
            "Review backlog",
            f"{count_text(now.backlog_alfas)} Alfas",
            delta_text(now.backlog_alfas, was("backlog_alfas")),
            f"in {count_text(now.backlog_orders)} order{'' if now.backlog_orders == 1 else 's'};"
            f" {oldest}",
        ),
    ]
    return '<section class="tiles" id="headline">' + "".join(tiles) + "</section>"


def _delta_span(change: str) -> str:
    return f' <span class="delta">{_escape(change)}</span>' if change else ""


def _attention(items: list[headline.Item]) -> str:
    if not items:
        return (
            '<section id="attention"><h2>Needs attention</h2>'
            "<p>Nothing: every order is built.</p></section>"
        )
    out = []
    for item in items:
        orders = ", ".join(_report_link(oid) for oid in item.orders)
        if item.more:
            orders += (
                f' and <a href="#status={_escape(item.status)}">{count_text(item.more)} more'
                " in the orders table</a>"
            )
        where = f'<div class="orders">reports: {orders}</div>' if orders else ""
        out.append(
            f'<li class="att att-{_escape(item.kind)}"><div>{_escape(item.text)}</div>{where}'
            f'<div class="cmd">clear it: <code>{_escape(item.command)}</code></div></li>'
        )
    return f'<section id="attention"><h2>Needs attention</h2><ul>{"".join(out)}</ul></section>'


def _problems(batches: list[Batch]) -> str:
    """Blocked and rejected orders, each with its reason (the first few; the table has all)."""
    found = [b for b in batches if b.status in ("blocked", "rejected")]
    if not found:
        return ""
    rows = "".join(
        f"<tr><td>{_report_link(b.order_id)}</td><td>{_escape(b.status)}</td>"
        f"<td>{_escape(b.phase or '–')}</td><td>{_escape(b.reason or '–')}</td></tr>"
        for b in found[:LIST_LIMIT]
    )
    more = (
        f"<p>and {count_text(len(found) - LIST_LIMIT)} more: filter the orders table by status.</p>"
        if len(found) > LIST_LIMIT
        else ""
    )
    return (
        '<section id="problems"><h2>Blocked and rejected orders</h2>'
        "<table><thead><tr><th>order</th><th>status</th><th>phase</th><th>reason</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{more}</section>"
    )


def _under_target(batches: list[Batch], shares: list[float | None]) -> str:
    under = charts.under_target(batches, shares)
    if not under:
        return '<p class="note">Every order met its diversity target.</p>'
    rows = "".join(
        f"<tr><td>{_report_link(b.order_id)}</td><td>{_escape(b.recipe or '–')}</td>"
        f'<td class="num">{100 * share:.1f}%</td>'
        f'<td class="num">{b.achieved[0]} / {b.achieved[1]} / {b.achieved[2]}</td>'
        f'<td class="num">{b.target[0]} / {b.target[1]} / {b.target[2]}</td></tr>'
        for b, share in under[:LIST_LIMIT]
    )
    more = (
        f"<p>and {count_text(len(under) - LIST_LIMIT)} more: sort the orders table by attainment.</p>"
        if len(under) > LIST_LIMIT
        else ""
    )
    return (
        f'<div id="under-target"><h3>{count_text(len(under))} orders under their target, worst first</h3>'
        "<table><thead><tr><th>order</th><th>recipe</th><th>attainment</th>"
        "<th>achieved novel / carryover / baseline</th><th>target</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{more}</div>"
    )


def _options(name: str, values: set[str]) -> str:
    """A filter's choices; an empty value (a rejected order's unknown recipe) is not one."""
    opts = "".join(
        f'<option value="{_escape(v)}">{_escape(v)}</option>' for v in sorted(values) if v
    )
    return (
        f'<label>{name} <select id="f-{name}"><option value="">all</option>{opts}</select></label>'
    )


def _orders_table(batches: list[Batch]) -> str:
    """The table's frame and controls; the script fills and pages its rows."""
    heads = [
        ("order", "order"),
        ("day", "day"),
        ("recipe", "recipe"),
        ("phase", "phase"),
        ("status", "status"),
        ("minted", "minted"),
        ("passed", "passed"),
        ("promoted", "promoted"),
        ("quarantined", "awaiting review"),
        ("attainment", "quota attainment"),
        ("reason", "reason"),
    ]
    header = "".join(
        f'<th><button type="button" data-col="{key}">{_escape(label)}</button></th>'
        for key, label in heads
    )
    header += "<th>trace it</th>"
    controls = (
        _options("status", {b.status for b in batches})
        + _options("recipe", {b.recipe or "" for b in batches})
        + _options("phase", {b.phase or "" for b in batches})
        + '<label>order <input id="f-search" type="search" placeholder="2025-10-28"></label>'
        + '<span id="t-count"></span>'
        + '<button type="button" id="t-prev">‹ previous</button><span id="t-page"></span>'
        + '<button type="button" id="t-next">next ›</button>'
    )
    return (
        '<section id="orders"><h2>Orders</h2>'
        '<p class="note">Click a column to sort; each order links to its report.</p>'
        f'<div class="controls">{controls}</div>'
        f'<table id="orders-table"><thead><tr>{header}</tr></thead><tbody></tbody></table></section>'
    )


def _table_rows(batches: list[Batch], shares: list[float | None]) -> dict[str, object]:
    rows = []
    for b, share in zip(batches, shares, strict=True):
        rows.append(
            [
                b.order_id,
                b.day,
                b.recipe or "",
                b.phase or "",
                b.status,
                b.minted,
                b.passed,
                b.promoted,
                b.quarantined,
                None if share is None else round(share, 4),
                b.reason,
            ]
        )
    return {"columns": list(TABLE_COLUMNS), "rows": rows}


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 20px 28px; color: #222; max-width: 1500px; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin: 28px 0 8px; font-size: 20px; }
.sub { color: #555; margin: 0 0 16px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 12px; }
.tile { border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; background: #fafafa; }
.tile .label { color: #555; font-size: 13px; text-transform: uppercase; letter-spacing: .04em; }
.tile .value { font-size: 28px; font-weight: 600; margin: 2px 0; white-space: nowrap; }
.tile .detail { font-size: 13px; color: #444; }
.delta { font-size: 14px; font-weight: 400; color: #555; margin-left: 8px; }
.st { display: inline-block; margin-right: 10px; }
.st-blocked, .st-rejected { color: #b03a2e; font-weight: 600; }
.st-awaiting-review { color: #9a6700; font-weight: 600; }
#attention ul { list-style: none; padding: 0; margin: 0; }
.att { border-left: 5px solid #999; background: #fdfdfd; padding: 6px 12px; margin: 6px 0; }
.att-blocked, .att-rejected { border-color: #c0392b; } .att-review { border-color: #e1a100; }
.att .orders, .att .cmd { font-size: 14px; color: #333; margin-top: 2px; }
code { background: #f1f1f1; padding: 1px 4px; border-radius: 3px; font-size: 13px; }
.chart { border: 1px solid #ddd; border-radius: 6px; margin: 16px 0; padding: 4px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#orders-table { width: 100%; } #orders-table td:nth-child(-n+2) { white-space: nowrap; }
#orders-table td:last-child { white-space: nowrap; }
th button { font: inherit; font-weight: 600; border: 0; background: none; cursor: pointer; padding: 0; }
th[aria-sort="ascending"] button::after { content: " ▲"; }
th[aria-sort="descending"] button::after { content: " ▼"; }
.controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 8px 0; }
.note { color: #555; font-size: 14px; }
.status-blocked, .status-rejected { color: #b03a2e; } .status-awaiting-review { color: #9a6700; }
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


def _chart(name: str, figure: charts.Figure) -> str:
    layout = figure["layout"]
    height = layout["height"] if isinstance(layout, dict) else 420
    return (
        f'<section class="chart" data-chart="{name}"><div id="chart-{name}" '
        f'class="plotly-graph-div" style="height:{height}px; width:100%;"></div></section>'
    )


def render(rollup: Rollup, previous: tuple[str, Figures] | None = None) -> bytes:
    """The dashboard page as UTF-8; equal rollups and previous figures give equal bytes."""
    batches = rollup.batches
    now = headline.figures(batches)
    when = as_of(batches)
    days = sorted({b.day for b in batches})
    recipes = {b.recipe for b in batches if b.recipe}
    covers = (
        f"{count_text(len(batches))} orders issued {days[0]} to {days[-1]},"
        f" {len(recipes)} recipe{'s' if len(recipes) != 1 else ''}"
        if days
        else "no orders yet"
    )
    if previous is not None:
        compared = f"changes are since the dashboard of {previous[0]}"
    else:
        compared = "no earlier dashboard to compare with"
    skipped = rollup.skipped
    note = f"; {skipped} ledger or part entries skipped (see the rollup)" if skipped else ""
    shares = charts.attainments(batches)
    figs = charts.figures(batches, shares)
    sections = "\n".join(_chart(name, figure) for name, figure in figs.items())
    quota_at = sections.index('<section class="chart" data-chart="funnel"')
    sections = sections[:quota_at] + _under_target(batches, shares) + "\n" + sections[quota_at:]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Toyfoundry daily dashboard</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        "<header><h1>Toyfoundry daily dashboard</h1>\n"
        f'<p class="sub">As of <b id="as-of">{_escape(when.text)}</b> · exchange '
        f"<code>exchange/</code>: {_escape(covers)}{_escape(note)} · {_escape(compared)} · "
        '<a href="../dashboards/index.html">earlier days</a></p></header>\n'
        f"{_headline(batches, now, previous[1] if previous else None)}\n"
        f"{_attention(headline.attention(batches, skipped))}\n"
        f"{_problems(batches)}\n"
        f"<h2>Charts</h2>\n{sections}\n{_orders_table(batches)}\n"
    ).encode()
    script = [_DRAW % (_script_json(_CONFIG), _template())]
    for name, figure in figs.items():
        script.append(b'draw("chart-%s", %s);\n' % (name.encode(), _script_json(figure)))
    script.append(b"const orders = %s;\n" % _script_json(_table_rows(batches, shares)))
    script.append(_table_js())
    script.append(b"ordersTable(orders);\n")
    script.append(b"})();\n</script>\n</body>\n</html>\n")
    return _around_plotly_js(page + b"<script>\n", b"\n</script>\n<script>\n" + b"".join(script))


def build_dashboard(layout: Layout, today: str | None = None) -> list[Path]:
    """Write `quilt/dashboard.html` and keep it as the day's page; returns the files that changed.

    The day is the page's as-of day unless `today` names another (parsed, not
    trusted: it becomes part of a path). Changes are shown against the newest
    kept day before it.
    """
    rollup = load_rollup(layout)
    day = dt.date.fromisoformat(today).isoformat() if today else as_of(rollup.batches).day
    previous = history.previous(layout, day) if day else None
    page = render(rollup, previous)
    written = [layout.dashboard] if write_atomic(layout.dashboard, page) else []
    if not day:  # no order and no ledger record: nothing has happened on any day yet,
        # but the index is the task's declared target: it lists the days kept before, if any
        index = history.index_path(layout)
        if write_atomic(index, history.index_html(layout)):
            written.append(index)
        return written
    return written + history.keep(layout, day, page, headline.figures(rollup.batches))
