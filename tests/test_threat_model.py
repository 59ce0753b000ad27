"""docs/threat-model.md stays true: every hostile case it lists names a test that exists.

The acceptance of the threat model is a list of hostile cases, each with the test that
holds it. A renamed or removed test, or a corpus file added without its line, must
fail here rather than leave the page promising what nothing checks.
"""

from __future__ import annotations

import json
import re

from tests.conftest import REPO

PAGE = REPO / "docs" / "threat-model.md"
CELL = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(\[[^\]]*\])?`")


def _cases() -> list[tuple[str, str]]:
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## The hostile cases", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[0].isdigit():
            rows.append((cells[1], cells[2]))
    return rows


def test_at_least_a_hundred_hostile_cases_each_held_by_a_test() -> None:
    cases = _cases()
    assert len(cases) >= 100, len(cases)
    for case, held_by in cases:
        found = CELL.findall(held_by)
        assert found, f"{case}: names no test"
        for file, name, _ in found:
            source = REPO / file
            assert source.is_file(), f"{case}: {file} does not exist"
            assert f"def {name}(" in source.read_text(encoding="utf-8"), f"{case}: no {name}"


def test_every_corpus_file_is_listed() -> None:
    manifest = json.loads((REPO / "tests" / "hostile" / "manifest.json").read_text("utf-8"))
    listed = "\n".join(case for case, _ in _cases())
    for entry in manifest["entries"]:
        if entry.get("role") == "good":
            continue
        shown = entry["file"].replace("|", "\\|").replace("`", "'")
        assert f"`exchange/{shown}`" in listed, entry["file"]


def test_the_count_on_the_page_is_the_count_of_rows() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert f"({len(_cases())} in all" in text
