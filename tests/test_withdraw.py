"""Withdrawing an order, as the operators' guide says: what ends and what remains."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO, doit, make_project

ORDER = "2025-10-20-011"


def _section() -> tuple[str, str]:
    """The operators' guide's withdrawal section: what the build ends, and what remains."""
    text = (REPO / "docs" / "operators.md").read_text(encoding="utf-8")
    section = text.split("## Withdrawing an order", 1)[1].split("\n## ", 1)[0]
    ends, remains = section.split("What remains, as history:", 1)
    return ends, remains


def test_the_build_ends_what_the_readme_says_and_keeps_what_it_says(tmp_path: Path) -> None:
    ends, remains = _section()
    named = set(re.findall(r"`((?:exchange|\.toyfoundry)/[^`]*<order>[^`]*)`", ends))
    assert "exchange/outbox/toysoldiers/<order>.json" in named
    assert ".toyfoundry/build/<order>/" in named
    assert ".toyfoundry/build" not in remains  # a build removes it: it is not history
    root = make_project(tmp_path / "project").root
    assert doit(root).code == 0
    paths = [root / p.replace("<order>", ORDER) for p in named]
    paths += [root / "exchange/reports" / f"{ORDER}{ext}" for ext in (".md", ".html")]
    assert all(p.exists() for p in paths)
    (root / "exchange/orders" / f"{ORDER}.json").unlink()
    assert doit(root).code == 0
    assert [p for p in paths if p.exists()] == []
    assert ORDER not in (root / "exchange/reports/summary.md").read_text(encoding="utf-8")
    assert ORDER in (root / ".toyfoundry/telemetry/forge_mint_alfa.jsonl").read_text()
    second = doit(root)
    assert second.code == 0 and "\n.  " not in "\n" + second.out
