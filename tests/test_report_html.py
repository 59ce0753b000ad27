"""An order's HTML report is its Markdown made readable, with nothing from the exchange as markup."""

from __future__ import annotations

from pathlib import Path

from tests.test_loom_support import sample
from toyfoundry.telemetry.loom import run_loom
from toyfoundry.telemetry.report_html import md_to_html


def test_every_report_has_its_html_beside_it(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    for md in sorted(layout.reports_dir.glob("20*.md")):
        page = md.with_suffix(".html").read_text(encoding="utf-8")
        assert page == md_to_html(md.read_text(encoding="utf-8"), f"Order {md.stem}")
        assert f"<h1>Order {md.stem}: " in page


def test_the_markdown_report_becomes_headings_lists_and_tables() -> None:
    markdown = (
        "# Order 2025-10-27-014: awaiting-review\n\n"
        "- recipe: sprocket-scout; phase: operational\n\n"
        "## Outcomes\n\n| minted | passed |\n|---|---|\n| 10 | 6 |\n\n"
        "## Awaiting review (1)\n\n"
        "- 2025-10-27-014.a004: a \\| b\n"
        "  `toyfoundry review decide 2025-10-27-014 2025-10-27-014.a004 waive --by NAME`\n"
    )
    page = md_to_html(markdown, "Order 2025-10-27-014")
    assert "<title>Order 2025-10-27-014</title>" in page
    assert "<h2>Outcomes</h2>" in page
    assert "<th>minted</th><th>passed</th>" in page.replace("\n", "")
    assert "<tr><td>10</td><td>6</td></tr>" in page
    assert "<li>2025-10-27-014.a004: a | b<br><code>toyfoundry review decide" in page.replace(
        "\n", ""
    )


def test_text_from_the_exchange_is_never_markup() -> None:
    hostile = "</title><script>alert(1)</script> & `<img src=x onerror=alert(1)>`"
    page = md_to_html(
        f"# Order x: {hostile}\n\n- {hostile}\n\n| a |\n|---|\n| {hostile} |\n", hostile
    )
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "<code>&lt;img src=x" in page
