"""The history of dashboards: each day's page kept under its as-of date, and an index of them.

`.toyfoundry/telemetry/dashboards/<day>.html` is the page as it last was on
that day, `<day>.json` its headline figures (what the next day's page compares
with, and what the index shows), and `index.html` lists every kept day. The
folder sits at the same depth as `quilt/dashboard.html`, so the page's
relative links to `exchange/reports/` work from either place and the day's
page can be a second name (a hard link) for the same file instead of a
second write of 1.3 MB.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import orjson

from toyfoundry.store import fsio
from toyfoundry.store.atomic import fsync_dir, write_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.headline import Figures, count_text, rate_text


def history_dir(layout: Layout) -> Path:
    return layout.telemetry / "dashboards"


def index_path(layout: Layout) -> Path:
    return history_dir(layout) / "index.html"


def page_path(layout: Layout, day: str) -> Path:
    """The day's page; the day is parsed, not trusted, before it becomes part of a path."""
    return history_dir(layout) / f"{dt.date.fromisoformat(day).isoformat()}.html"


def figures_path(layout: Layout, day: str) -> Path:
    return page_path(layout, day).with_suffix(".json")


def kept_days(layout: Layout) -> list[str]:
    """Days with stored figures, oldest first, from one listing of the folder."""
    try:
        names = os.listdir(history_dir(layout))
    except (FileNotFoundError, NotADirectoryError):
        return []
    days = []
    for name in names:
        stem, dot, suffix = name.rpartition(".")
        if dot and suffix == "json":
            try:
                days.append(dt.date.fromisoformat(stem).isoformat())
            except ValueError:
                continue
    return sorted(set(days))


def read_figures(layout: Layout, day: str) -> Figures | None:
    try:
        return Figures.from_data(orjson.loads(figures_path(layout, day).read_bytes()))
    except (OSError, orjson.JSONDecodeError):
        return None


def previous(layout: Layout, day: str) -> tuple[str, Figures] | None:
    """The newest kept day before `day` whose figures can be read: what `day` compares with."""
    for earlier in reversed(kept_days(layout)):
        if earlier < day:
            found = read_figures(layout, earlier)
            if found is not None:
                return earlier, found
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def dated_copy(page_path: Path, page: bytes, copy: Path) -> bool:
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


_INDEX_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
"""


def index_html(layout: Layout) -> bytes:
    """The index of kept days, newest first, each with its headline figures."""
    rows = []
    for day in reversed(kept_days(layout)):
        f = read_figures(layout, day)
        if f is None:
            continue
        rows.append(
            f'<tr><td><a href="{day}.html">{day}</a></td><td>{count_text(f.orders)}</td>'
            f"<td>{count_text(f.minted)}</td><td>{count_text(f.passed)}</td>"
            f"<td>{rate_text(f.pass_rate)}</td><td>{count_text(f.promoted)}</td>"
            f"<td>{count_text(f.backlog_alfas)}</td>"
            f"<td>{count_text(f.by_status.get('blocked', 0))}</td>"
            f"<td>{count_text(f.by_status.get('rejected', 0))}</td></tr>"
        )
    head = (
        "day",
        "orders",
        "Alfas minted",
        "passed",
        "pass rate",
        "promoted",
        "review backlog",
        "blocked",
        "rejected",
    )
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(rows) or f'<tr><td colspan="{len(head)}">no dashboard kept yet</td></tr>'
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Toyfoundry dashboards by day</title>\n"
        f"<style>{_INDEX_STYLE}</style>\n</head>\n<body>\n"
        "<h1>Toyfoundry dashboards by day</h1>\n"
        "<p>Each day's page as it last was on that day. The current one is <a href=\"../quilt/"
        'dashboard.html">quilt/dashboard.html</a>.</p>\n'
        f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>\n"
        "</body>\n</html>\n"
    ).encode()


def keep(layout: Layout, day: str, page: bytes, figures: Figures) -> list[Path]:
    """Keep `day`'s page (a second name for `quilt/dashboard.html`) and figures, and the index.

    Returns the files that changed; the index is rewritten only when a day's figures did.
    """
    copy = page_path(layout, day)
    written = [copy] if dated_copy(layout.dashboard, page, copy) else []
    stored = figures_path(layout, day)
    data = orjson.dumps(figures.as_data(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    if write_atomic(stored, data + b"\n"):
        written.append(stored)
    index = index_path(layout)
    if (written or not index.exists()) and write_atomic(index, index_html(layout)):
        written.append(index)
    return written
