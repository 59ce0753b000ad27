"""An order's HTML report is its Markdown made readable, with nothing from the exchange as markup."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

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


def _escaped_piece_by_piece(markdown: str, title: str) -> str:
    """`md_to_html` as it was written first: every piece of text escaped on its own."""
    import html
    import re

    def inline(text: str) -> str:
        escaped = html.escape(text.replace("\\|", "|"))
        return re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)

    def cells(line: str) -> list[str]:
        inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]

    out: list[str] = []
    lines, i = markdown.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            out.append(f"<h2>{inline(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{inline(line[2:])}</h1>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out.append("<table><thead><tr>")
            out += [f"<th>{inline(c)}</th>" for c in cells(rows[0])]
            out.append("</tr></thead><tbody>")
            for row in rows[2:]:
                out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells(row)) + "</tr>")
            out.append("</tbody></table>")
            continue
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith(("- ", "  ")):
                item = lines[i]
                if item.startswith("- "):
                    if out[-1] != "<ul>":
                        out.append("</li>")
                    out.append(f"<li>{inline(item[2:])}")
                else:
                    out.append(f"<br>{inline(item.strip())}")
                i += 1
            out.append("</li></ul>")
            continue
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    head = md_to_html("", title).split("<body>\n")[0]
    return head + "<body>\n" + "\n".join(out) + "\n</body>\n</html>\n"


_MD_TEXT = st.text(alphabet=st.sampled_from(list("ab |\\`<>&\"'-#\t")), max_size=12)
_MD_LINE = st.one_of(
    st.builds("# {}".format, _MD_TEXT),
    st.builds("## {}".format, _MD_TEXT),
    st.builds("- {}".format, _MD_TEXT),
    st.builds("  {}".format, _MD_TEXT),
    st.builds("| {} | {} |".format, _MD_TEXT, _MD_TEXT),
    st.just("|---|---|"),
    _MD_TEXT,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_MD_LINE, max_size=12))
def test_escaping_the_whole_page_once_is_escaping_each_piece(lines: list[str]) -> None:
    markdown = "\n".join(lines) + "\n"
    assert md_to_html(markdown, "t") == _escaped_piece_by_piece(markdown, "t")


_REPORT_TEXT = st.text(
    alphabet=st.sampled_from(list("ab |\\`<>&\"'-#\t\n\r\x0b\u2028")), max_size=8
)


@settings(max_examples=200, deadline=None)
@given(
    reason=_REPORT_TEXT,
    defect=_REPORT_TEXT,
    counter=_REPORT_TEXT,
    why=_REPORT_TEXT,
    problem=_REPORT_TEXT,
    recipe=_REPORT_TEXT,
)
def test_the_page_made_from_blocks_is_the_page_made_from_the_markdown(
    reason: str, defect: str, counter: str, why: str, problem: str, recipe: str
) -> None:
    """`report_html` of a report's blocks is `md_to_html` of its Markdown, whatever its texts."""
    from toyfoundry.formats.models import ProblemModel
    from toyfoundry.telemetry import render
    from toyfoundry.telemetry.report_html import report_html

    shares = {"novel": 3, "carryover": 1, "baseline": 0}
    report = {
        "order_id": "2025-10-27-014",
        "recipe": recipe,
        "phase": "pilot",
        "status": "blocked",
        "reason": reason,
        "dry_run": False,
        "target": shares,
        "achieved": shares,
        "rituals": {"drill": {"ran": True, "stub": False, "counts": {counter: 2}}},
        "outcomes": {name: 1 for name in render.OUTCOME_COLUMNS},
        "defects": {defect: 1},
        "awaiting_review": [{"alfa_id": "2025-10-27-014.a001", "reasons": [why]}],
        "promoted": ["2025-10-27-014.a002"],
        "next_steps": [f"resolve the block ({reason})"],
    }
    problems = [ProblemModel(path=problem, field=why, reason=reason)]
    blocks = render.report_blocks(report, problems)
    markdown = render.blocks_md(blocks)
    assert markdown == render.report_md(report, problems)
    assert report_html(blocks, markdown, "Order x") == md_to_html(markdown, "Order x")
