"""An order's report as a readable HTML page, made from its Markdown so the two never differ.

Browsers show a local `.md` file as raw text or download it, so the dashboard
links each order to `exchange/reports/<order>.html` instead. Only the
Markdown that `render.report_md` writes is handled (headings, lists, tables,
paragraphs, code spans); every text is escaped first, so nothing from the
exchange becomes markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from itertools import chain

from toyfoundry.telemetry.render import Block, Items, Table

_CELL_BAR = re.compile(r"(?<!\\)\|")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
code { background: #f1f1f1; padding: 1px 4px; border-radius: 3px; }
li { margin: 3px 0; }
"""


def _inline(text: str) -> str:
    """Code spans of an escaped text, and `\\|` (a pipe escaped for a table cell) as the
    pipe it stands for."""
    text = text.replace("\\|", "|")
    if "`" not in text:
        return text
    # what `re.sub("`([^`]*)`", r"<code>\1</code>", text)` gives: backticks paired left to
    # right, an odd last one left as it is; by a split, not a template expanded a match
    parts = text.split("`")
    out = [parts[0]]
    for i in range(1, len(parts) - 1, 2):
        out += ("<code>", parts[i], "</code>", parts[i + 1])
    if len(parts) % 2 == 0:
        out += ("`", parts[-1])
    return "".join(out)


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells as HTML (`_inline`); `\\|` inside a cell is a literal
    pipe. A row without a backslash or a backtick (most rows: names and numbers) is
    split and stripped, with nothing to replace in its cells."""
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    if "\\" not in inner and "`" not in inner:
        return [c.strip() for c in inner.split("|")]
    cells = _CELL_BAR.split(inner) if "\\|" in inner else inner.split("|")
    return [_inline(c.strip().replace("\\|", "|")) for c in cells]


def _page(title: str, out: list[str]) -> str:
    page = "\n".join(out)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"{page}\n</body>\n</html>\n"
    )


#: A character that escaping or `_inline` would change, or that makes a table cell special
_SPECIAL = re.compile("[&<>\"'\\\\`]").search


def _marked(text: str) -> str:
    """`_inline` of the escaped text; most texts hold nothing either would change."""
    return text if _SPECIAL(text) is None else _inline(html.escape(text))


def _escaped(cell: str) -> str:
    return html.escape(cell).strip()


def report_html(blocks: Sequence[Block], markdown: str, title: str) -> str:
    """`md_to_html(markdown, title)` for the Markdown `render.blocks_md(blocks)` wrote, made
    from the blocks: each text escaped and marked up as `md_to_html` would once it found
    the block, without finding it again line by line.

    The blocks' texts come from the exchange, and a line break inside one would end its
    block early for `md_to_html`; so would a backslash or a backtick in a table cell
    (an escaped pipe, a code span). Such a page is made from its Markdown."""
    expected = len(blocks) - 1  # the blank lines between blocks
    out: list[str] = []
    for block in blocks:
        if isinstance(block, str):
            expected += 1
            out.append(f"<p>{_marked(block)}</p>")
        elif isinstance(block, Table):
            expected += 2 + len(block.rows)
            # most tables hold names and numbers: nothing to escape in any cell
            mark: Callable[[str], str] = str.strip
            if _SPECIAL("\n".join(chain(block.header, *block.rows))) is not None:
                if any("\\" in c or "`" in c for c in chain(block.header, *block.rows)):
                    return md_to_html(markdown, title)
                mark = _escaped
            out.append("<table><thead><tr>")
            out += [f"<th>{c}</th>" for c in map(mark, block.header)]
            out.append("</tr></thead><tbody>")
            out += [
                "<tr><td>" + "</td><td>".join(map(mark, row)) + "</td></tr>" for row in block.rows
            ]
            out.append("</tbody></table>")
        elif isinstance(block, Items):
            texts = [text for text, _ in block.items]
            expected += len(texts)
            plain = texts and all(more is None for _, more in block.items)
            if plain and _SPECIAL("\n".join(texts)) is None:
                # names and ids (the promoted Alfas): nothing to escape or mark up
                out.append("<ul>\n<li>" + "\n</li>\n<li>".join(texts) + "\n</li></ul>")
                continue
            out.append("<ul>")
            for text, more in block.items:
                if out[-1] != "<ul>":
                    out.append("</li>")
                out.append(f"<li>{_marked(text)}")
                if more is not None:
                    out.append(f"<br>{_marked(more.strip())}")
                    expected += 1
            out.append("</li></ul>")
        else:
            level, heading = block
            expected += 1
            out.append(f"<h{level}>{_marked(heading)}</h{level}>")
    if len(markdown.splitlines()) != expected:  # a text broke a line
        return md_to_html(markdown, title)
    return _page(title, out)


def md_to_html(markdown: str, title: str) -> str:
    """The page for one report's Markdown (as `render.report_md` writes it)."""
    out: list[str] = []
    # escaped whole, once: escaping maps each character on its own and leaves the
    # Markdown's marks (`#`, `|`, `-`, `\\`, backticks, spaces) as they are
    lines = html.escape(markdown).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            head, data = rows[0], rows[2:]
            out.append("<table><thead><tr>")
            out += [f"<th>{c}</th>" for c in _cells(head)]
            out.append("</tr></thead><tbody>")
            out += ["<tr><td>" + "</td><td>".join(_cells(row)) + "</td></tr>" for row in data]
            out.append("</tbody></table>")
            continue
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith(("- ", "  ")):
                item = lines[i]
                if item.startswith("- "):
                    if out[-1] != "<ul>":
                        out.append("</li>")
                    out.append(f"<li>{_inline(item[2:])}")
                else:
                    out.append(f"<br>{_inline(item.strip())}")
                i += 1
            out.append("</li></ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return _page(title, out)
