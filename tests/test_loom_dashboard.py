"""The dashboard: self-contained, deterministic, light to import, and every chart drawn in a real browser."""

from __future__ import annotations

import errno
import html
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.test_loom_support import REPO, SAMPLE, Spec, build, sample
from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import Outcomes, QuiltRollup
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import (
    charts,
    dashboard,
    headline,
    history,
    parts,
    quilt,
    render,
    summary,
)
from toyfoundry.telemetry.loom import run_loom

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    layout = sample(tmp_path_factory.mktemp("dash") / "p")
    run_loom(layout, export=True, today="2025-10-28")
    return layout


def charts_of(layout: Layout) -> dict[str, Any]:
    figures: dict[str, Any] = charts.figures(dashboard.load_rollup(layout).batches)
    return figures


def _plotly_js() -> str:
    return dashboard.PLOTLY_JS.read_text("utf-8")


def test_dashboard_is_self_contained_and_deterministic(built: Layout) -> None:
    page = built.dashboard.read_text(encoding="utf-8")
    assert _plotly_js().startswith("/**\n* plotly.js")
    assert re.search(r"<script[^>]+src=", page) is None
    assert "<link" not in page and "@import" not in page
    assert page.count(_plotly_js()) == 1  # plotly.js embedded exactly once
    assert page.count("</script>") == 2  # plotly.js, then the figures
    ids = re.findall(r'<div id="(chart-[a-z-]+)" class="plotly-graph-div"', page)
    assert ids == [f"chart-{name}" for name in dashboard.CHARTS]
    copy = history.history_dir(built) / "2025-10-28.html"
    assert copy.read_bytes() == built.dashboard.read_bytes()
    before = built.dashboard.stat().st_mtime_ns
    assert dashboard.build_dashboard(built, "2025-10-28") == []  # same rollup, same bytes
    assert built.dashboard.stat().st_mtime_ns == before


def test_dashboard_rejects_a_day_that_is_not_a_date(built: Layout) -> None:
    with pytest.raises(ValueError):
        dashboard.build_dashboard(built, "../../etc")


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _png_byte_variety(data: bytes) -> int:
    """Distinct byte values in a PNG's decompressed, filtered pixel stream.

    A single-colour image filters to its few colour bytes, the filter type bytes
    and zeros (at most a dozen values, whatever filters the encoder chose); a
    page of charts gives nearly all 256. Cheaper than unfiltering 4 million pixels
    in pure Python, and exact enough to tell blank from drawn.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, tag = struct.unpack(">I4s", data[pos : pos + 8])
        if tag == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def _dump_dom(browser: str, url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (virtual time, so no waiting on a real clock)."""
    return subprocess.run(
        [
            browser,
            *BROWSER_FLAGS,
            "--virtual-time-budget=5000",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def _drawn_charts(dom: str) -> dict[str, str]:
    """Each chart's drawn markup, by chart name; a chart plotly did not draw is left out."""
    found = {}
    for piece in re.split(r'(?=<section class="chart")', dom)[1:]:
        drawn = re.match(
            r'<section class="chart" data-chart="([a-z-]+)">'
            r'<div id="chart-\1" class="plotly-graph-div js-plotly-plot"',
            piece,
        )
        if drawn:
            found[drawn.group(1)] = piece[: piece.find("</section>")]
    return found


def _expected_marks(figure: dict[str, Any]) -> tuple[int, list[str]]:
    """How many bars, markers or funnel stages a figure draws, and the labels it must show."""
    marks, labels = 0, [figure["layout"]["title"]["text"]]
    for trace in figure["data"]:
        marks += sum(
            value is not None
            for value in trace[
                "y" if trace["type"] != "bar" or trace.get("orientation") != "h" else "x"
            ]
        )
        across = trace["type"] == "funnel" or trace.get("orientation") == "h"
        labels += [str(c) for c in (trace["y"] if across else trace["x"])]
    labels += [
        re.sub(r"</?b>", "", note["text"]) for note in figure["layout"].get("annotations", [])
    ]
    return marks, labels


def test_every_chart_renders_in_headless_chromium(built: Layout, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium); .ci/run installs it")
    url = built.dashboard.absolute().as_uri()
    shot = tmp_path / "dashboard.png"
    subprocess.run(
        [
            browser,
            *BROWSER_FLAGS,
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path / 'profile-1'}",
            f"--screenshot={shot}",
            "--window-size=1400,3000",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _png_byte_variety(shot.read_bytes()) > 64, "the screenshot is blank"
    charts = _drawn_charts(_dump_dom(browser, url, tmp_path / "profile-2"))
    assert list(charts) == list(dashboard.CHARTS)
    figures: dict[str, Any] = charts_of(built)
    for name, piece in charts.items():
        assert 'class="main-svg"' in piece, f"chart {name} has no SVG"
        # Every bar, funnel stage, target marker and pie slice is drawn, with its labels.
        marks, labels = _expected_marks(figures[name])
        drawn = piece.count('class="point"')
        assert drawn == marks > 0, f"chart {name}: {drawn} marks drawn, {marks} expected"
        shown = {
            re.sub(r"</?b>", "", html.unescape(t))
            for t in re.findall(r'data-unformatted="([^"]*)"', piece)
        }
        missing = [label for label in labels if label not in shown]
        assert not missing, f"chart {name} does not show {missing}"


def test_a_dashboard_without_orders_still_draws_every_chart(tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium); .ci/run installs it")
    layout = Layout(tmp_path / "p")
    layout.rollup.parent.mkdir(parents=True)
    layout.rollup.write_bytes(orjson.dumps(_rollup()))
    dashboard.build_dashboard(layout, "2025-10-12")
    url = layout.dashboard.absolute().as_uri()
    charts = _drawn_charts(_dump_dom(browser, url, tmp_path / "profile"))
    assert list(charts) == list(dashboard.CHARTS)
    assert "no orders yet" in layout.dashboard.read_text(encoding="utf-8")
    assert 'data-unformatted="no defects recorded"' in charts["defects"]
    assert 'data-unformatted="no Alfa has been scored yet"' in charts["scores"]


def test_the_page_draws_the_figures_of_its_rollup(built: Layout) -> None:
    page = built.dashboard.read_text(encoding="utf-8")
    figures = charts_of(built)
    drawn = re.findall(r'^draw\("chart-([a-z-]+)", (.*)\);$', page, flags=re.MULTILINE)
    assert [name for name, _ in drawn] == list(dashboard.CHARTS)
    for name, figure in drawn:
        assert orjson.loads(figure) == orjson.loads(orjson.dumps(figures[name]))
    # The sample's totals, as the charts show them: one funnel per phase, dry runs left out.
    funnel = {t["name"]: t["x"] for t in figures["funnel"]["data"]}
    assert funnel == {"expansion": [8, 8, 5, 1], "operational": [10, 8, 6, 2]}
    assert figures["funnel"]["data"][0]["y"] == ["Minted", "Drilled", "Passed Drill", "Promoted"]
    defects = figures["defects"]["data"]
    assert [(t["name"], t["y"], t["x"]) for t in defects] == [
        ("sprocket-scout", ["gear-slip", "leg-shear"], [2, 2])
    ]
    trends = figures["trends"]["data"]
    assert trends[0]["x"] == ["2025-W41", "2025-W43", "2025-W44"]


def test_the_headline_of_the_sample(built: Layout) -> None:
    batches = dashboard.load_rollup(built).batches
    now = headline.figures(batches)
    assert now.by_status == {"dry-run": 1, "built": 1, "awaiting-review": 1, "blocked": 1}
    assert (now.minted, now.passed, now.failed, now.promoted) == (22, 11, 5, 3)
    assert now.pass_rate == 11 / 16
    assert headline.review_backlog(batches) == headline.Backlog(
        2, 1, "2025-10-27-014", "2025-10-27"
    )
    items = headline.attention(batches, 0)
    assert [(i.kind, i.orders, i.command) for i in items] == [
        ("blocked", ["2025-10-28-002"], "toyfoundry checkpoint approve operational --by NAME"),
        (
            "review",
            ["2025-10-27-014"],
            "toyfoundry review list, then toyfoundry review decide ORDER ALFA"
            " {waive|reroll|reject} --by NAME; then toyfoundry build",
        ),
    ]
    page = built.dashboard.read_text(encoding="utf-8")
    assert 'As of <b id="as-of">2025-10-12 10:00 UTC (latest ledger record)</b>' in page
    assert "68.8%" in page  # the pass rate, for people
    assert '<a class="report" href="../../../exchange/reports/2025-10-28-002.html">' in page
    assert "no operational checkpoint" in page


def test_numbers_are_formatted_for_people() -> None:
    assert headline.count_text(13613) == "13,613"
    assert headline.rate_text(0.6875) == "68.8%"
    assert headline.rate_text(None) == "–"
    assert (headline.delta_text(5, 2), headline.delta_text(2, 5), headline.delta_text(2, 2)) == (
        "+3",
        "−3",
        "±0",
    )
    assert headline.delta_text(2, None) == ""
    assert headline.rate_delta_text(0.7, 0.65) == "+5.0 pts"
    assert charts.COUNT == ",~f"  # plotly's default would print 13613 as 13.613k


def test_the_dashboard_reads_the_rollup_as_its_format_defines_it(built: Layout) -> None:
    data = built.rollup.read_bytes()
    model = QuiltRollup.model_validate_json(data)
    view = dashboard.parse_rollup(data)
    assert view.skipped == len(model.skipped)
    assert len(view.batches) == len(model.batches) > 0
    for seen, b in zip(view.batches, model.batches, strict=True):
        assert (seen.order_id, seen.recipe, seen.phase, seen.day, seen.status) == (
            b.order_id,
            b.recipe,
            b.phase,
            b.day,
            b.status,
        )
        assert [getattr(seen, k) for k in dashboard.OUTCOMES] == [
            getattr(b.outcomes, k) for k in dashboard.OUTCOMES
        ]
        assert seen.target == tuple(getattr(b.target, s) for s in dashboard.SHARES)
        assert seen.achieved == tuple(getattr(b.achieved, s) for s in dashboard.SHARES)
        assert seen.defects == b.defects
        assert seen.score_histogram == {int(k): v for k, v in b.score_histogram.items()}
        assert (seen.mint_attempts, seen.ritual_invocations, seen.last_attempt) == (
            b.telemetry.mint_attempts,
            b.telemetry.ritual_invocations,
            b.telemetry.last_attempt,
        )


def test_the_dashboard_constants_match_the_quilt() -> None:
    """The dashboard keeps its own copies, to stay off the models' import; they must agree."""
    assert dashboard.SHARES == render.SHARES
    assert dashboard.SCORE_BIN == summary.SCORE_BIN
    assert set(dashboard.OUTCOMES) == set(Outcomes.model_fields)


def test_building_the_dashboard_imports_neither_plotly_nor_pydantic(
    built: Layout, tmp_path: Path
) -> None:
    """A fresh process, another hash seed: the same bytes, and no heavy imports on the way."""
    out = tmp_path / "page.html"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from toyfoundry.store.layout import Layout\n"
        "from toyfoundry.telemetry import dashboard\n"
        "page = dashboard.render(dashboard.load_rollup(Layout(Path(sys.argv[1]))))\n"
        "Path(sys.argv[2]).write_bytes(page)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'pydantic')))\n"
    )
    for seed in ("1", "2"):
        run = subprocess.run(
            [sys.executable, "-c", code, str(built.root), str(out)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed},
            timeout=60,
        )
        assert run.stdout.strip() == "[]"
        assert out.read_bytes() == built.dashboard.read_bytes()


def _minimal_batch() -> dict[str, Any]:
    """A batch with every optional field left out: valid, all counts 0."""
    return {
        "order_id": "2025-10-12-001",
        "recipe": None,
        "phase": None,
        "day": "2025-10-12",
        "status": "rejected",
        "dry_run": False,
        "outcomes": {},
        "target": {},
        "achieved": {},
    }


def _rollup(*batches: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "batches": list(batches), "totals": {}}


def test_optional_rollup_fields_take_the_formats_defaults(tmp_path: Path) -> None:
    data = orjson.dumps(_rollup(_minimal_batch()))
    QuiltRollup.model_validate_json(data)  # valid in the format
    (batch,) = dashboard.parse_rollup(data).batches
    assert (batch.minted, batch.target, batch.defects, batch.score_histogram) == (
        0,
        (0, 0, 0),
        {},
        {},
    )
    assert (batch.mint_attempts, batch.last_attempt) == (0, None)
    layout = Layout(tmp_path)
    layout.rollup.parent.mkdir(parents=True)
    layout.rollup.write_bytes(data)
    assert dashboard.build_dashboard(layout, "2025-10-12") == [
        layout.dashboard,
        history.history_dir(layout) / "2025-10-12.html",
        history.history_dir(layout) / "2025-10-12.json",
        history.index_path(layout),
    ]
    page = layout.dashboard.read_text(encoding="utf-8")
    assert "no defects recorded" in page and "no Alfa has been scored yet" in page


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """Set a field of the first batch, e.g. `outcomes.minted`."""

    def change(doc: dict[str, Any]) -> None:
        target = doc["batches"][0]
        *parents, last = path.split(".")
        for key in parents:
            target = target[key]
        target[last] = value

    return change


MALFORMED: list[tuple[bytes | Callable[[dict[str, Any]], None], str]] = [
    (b"{not json", "not JSON: "),
    (b"[]", "the file: not an object"),
    (lambda doc: doc.update(schema_version=2), "schema_version: not 1"),
    (lambda doc: doc.update(schema_version=True), "schema_version: not 1"),
    (lambda doc: doc.pop("batches"), "batches: not a list"),
    (lambda doc: doc.update(skipped="x"), "skipped: not a list"),
    (lambda doc: doc["batches"].append(7), "batches[1]: not an object"),
    (_set("order_id", 7), "batches[0].order_id: not a string"),
    (_set("phase", ["pilot"]), "batches[0].phase: not a string or null"),
    (_set("outcomes", None), "batches[0].outcomes: not an object"),
    (_set("outcomes.minted", -1), "batches[0].outcomes.minted: not a count"),
    (_set("outcomes.minted", True), "batches[0].outcomes.minted: not a count"),
    (_set("outcomes.drilled", 1.5), "batches[0].outcomes.drilled: not a count"),
    (_set("target.novel", "6"), "batches[0].target.novel: not a count"),
    (_set("defects", {"gear-slip": "2"}), "batches[0].defects: a value is not a count"),
    (_set("score_histogram", {"forty": 1}), "batches[0].score_histogram: a bin is not a number"),
    (_set("telemetry", {"last_attempt": 5}), "batches[0].telemetry.last_attempt: not a string"),
    (_set("telemetry", {"mint_attempts": None}), "batches[0].telemetry.mint_attempts: not a count"),
]


@pytest.mark.parametrize(("change", "problem"), MALFORMED)
def test_a_malformed_rollup_fails_with_one_line(
    tmp_path: Path, change: bytes | Callable[[dict[str, Any]], None], problem: str
) -> None:
    layout = Layout(tmp_path)
    layout.rollup.parent.mkdir(parents=True)
    if isinstance(change, bytes):
        data = change
    else:
        doc = _rollup(_minimal_batch())
        change(doc)
        data = orjson.dumps(doc)
    layout.rollup.write_bytes(data)
    with pytest.raises(FoundryError) as caught:
        dashboard.build_dashboard(layout, "2025-10-12")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        ".toyfoundry/telemetry/quilt/quilt_rollup_all.json: not a valid rollup ("
    )
    assert problem in message
    assert not layout.dashboard.exists()


def test_a_dashboard_without_orders_keeps_no_day(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "p")
    layout.rollup.parent.mkdir(parents=True)
    layout.rollup.write_bytes(orjson.dumps(_rollup()))
    # no day is kept, but the index the dashboard task declares is written (listing none)
    index = history.index_path(layout)
    assert dashboard.build_dashboard(layout) == [layout.dashboard, index]
    assert [p.name for p in history.history_dir(layout).iterdir()] == ["index.html"]
    assert dashboard.build_dashboard(layout) == []
    assert 'As of <b id="as-of">no orders yet</b>' in layout.dashboard.read_text("utf-8")


def test_a_missing_rollup_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FoundryError, match="missing; run `toyfoundry build`"):
        dashboard.build_dashboard(Layout(tmp_path), "2025-10-12")


def test_names_from_the_exchange_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    hostile = "</script><img src=x onerror=alert(1)>\u2028&amp;"
    batch = _minimal_batch() | {"recipe": hostile, "status": hostile, "defects": {hostile: 1}}
    data = orjson.dumps(_rollup(batch))
    page = dashboard.render(dashboard.parse_rollup(data)).decode("utf-8")
    assert page.count("</script>") == 2
    assert "<img" not in page
    figures = page[page.rindex("<script>") :]
    assert "\u2028" not in figures  # a line separator, escaped in the JSON of the script
    escaped = html.escape(hostile)
    assert f'<option value="{escaped}">{escaped}</option>' in page  # the table's filter, as HTML
    drawn = re.search(r'^draw\("chart-defects", (.*)\);$', page, flags=re.MULTILINE)
    assert drawn is not None
    assert orjson.loads(drawn.group(1))["data"][0]["y"] == [hostile]  # JSON gives it back intact


# --------------------------------------------------------------------------- vouched rollups, dated copies


def test_a_vouched_rollup_is_drawn_as_the_checked_one(built: Layout) -> None:
    vouched = dashboard._vouched(built)
    assert vouched is not None  # the loom's record vouches for the rollup
    assert vouched == dashboard.parse_rollup(built.rollup.read_bytes())


def test_a_rollup_edited_by_hand_is_checked_again(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    doc = orjson.loads(layout.rollup.read_bytes())
    doc["batches"][0]["outcomes"]["minted"] = -1
    layout.rollup.write_bytes(orjson.dumps(doc))
    assert dashboard._vouched(layout) is None
    with pytest.raises(FoundryError, match=r"batches\[0\]\.outcomes\.minted: not a count"):
        dashboard.build_dashboard(layout, "2025-10-28")


def test_a_vouched_rollup_the_charts_cannot_read_fails_with_one_line(tmp_path: Path) -> None:
    """A part may name a score bin that is no number (the format allows any key); the quilt
    vouches for the rollup, and the dashboard still says what is wrong, as without a record."""
    layout = sample(tmp_path / "p")
    run_loom(layout)
    path = parts.part_path(layout, "2025-10-20-011")
    part = orjson.loads(path.read_bytes())
    part["score_histogram"] = {"forty": 1}
    path.write_bytes(orjson.dumps(part))
    quilt.build_quilt(layout, [s.order_id for s in SAMPLE], set())  # reads the edited part
    assert parts.load_rollup(layout) is not None
    with pytest.raises(FoundryError, match="score_histogram: a bin is not a number"):
        dashboard.build_dashboard(layout, "2025-10-28")


def test_the_dated_copy_is_a_second_name_for_the_page(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    copy = history.history_dir(layout) / "2025-10-28.html"
    assert os.path.samefile(copy, layout.dashboard)
    first = copy.read_bytes()
    # a new order: a new page, and today's copy follows it; yesterday's keeps its page
    build(layout, Spec("2025-10-29-001", size=3, failed=(1,)))
    run_loom(layout, export=True, today="2025-10-29")
    assert copy.read_bytes() == first != layout.dashboard.read_bytes()
    page = layout.dashboard.read_text(encoding="utf-8")
    assert "changes are since the dashboard of 2025-10-28" in page
    assert '<div class="value">5<span class="delta">+1</span></div>' in page  # orders
    assert history.kept_days(layout) == ["2025-10-28", "2025-10-29"]
    index = history.index_path(layout).read_text(encoding="utf-8")
    assert index.index('href="2025-10-29.html"') < index.index('href="2025-10-28.html"')
    assert copy.stat().st_nlink == 1
    today = history.history_dir(layout) / "2025-10-29.html"
    assert os.path.samefile(today, layout.dashboard)
    assert dashboard.build_dashboard(layout, "2025-10-29") == []  # nothing to do twice
    # a copy with the page's bytes under its own inode is left as it is
    today.unlink()
    today.write_bytes(layout.dashboard.read_bytes())
    assert dashboard.build_dashboard(layout, "2025-10-29") == []
    assert not os.path.samefile(today, layout.dashboard)


def test_without_hard_links_the_dated_copy_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    copy = history.history_dir(layout) / "2025-10-28.html"
    assert copy.read_bytes() == layout.dashboard.read_bytes()
    assert not os.path.samefile(copy, layout.dashboard)
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("text", ["plain", "", "</script>&amp;\"'<>", "\u2028 ünïcode ' \""])
def test_escaping_is_html_escape(text: str) -> None:
    assert dashboard._escape(text) == html.escape(text)
