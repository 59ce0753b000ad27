"""The dashboard: self-contained, deterministic, and every chart drawn in a real browser."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.test_loom_support import sample
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import dashboard
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


def test_dashboard_is_self_contained_and_deterministic(built: Layout) -> None:
    page = built.dashboard.read_text(encoding="utf-8")
    assert re.search(r"<script[^>]+src=", page) is None
    assert "<link" not in page and "@import" not in page
    assert page.count("window.PlotlyConfig") == 1  # plotly.js embedded exactly once
    ids = re.findall(r'<div id="(chart-[a-z-]+)" class="plotly-graph-div"', page)
    assert ids == [f"chart-{name}" for name in dashboard.CHARTS]
    copy = dashboard.dashboards_dir(built) / "2025-10-28.html"
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


def test_every_chart_renders_in_headless_chromium(built: Layout, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium); .ci/run installs it")
    url = built.dashboard.absolute().as_uri()
    shot = tmp_path / "dashboard.png"
    common = [browser, *BROWSER_FLAGS, "--virtual-time-budget=5000"]
    subprocess.run(
        [
            *common,
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
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-2'}", "--dump-dom", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    drawn = re.findall(r'<div id="(chart-[a-z-]+)" class="plotly-graph-div js-plotly-plot"', dom)
    assert drawn == [f"chart-{name}" for name in dashboard.CHARTS]
    pieces = re.split(r'<div id="chart-[a-z-]+"', dom)[1:]
    assert len(pieces) == len(dashboard.CHARTS)
    for name, piece in zip(dashboard.CHARTS, pieces, strict=True):
        assert 'class="main-svg"' in piece, f"chart {name} has no SVG"
