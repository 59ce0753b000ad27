"""The foundry's own folders as links: refused in one line, unless the project allows it.

Everything the foundry writes lands in `.toyfoundry/`, `exchange/reports/` and
`exchange/outbox/`. If one of them is a symbolic link, every artefact, report or
manifest would silently go wherever it points; a build and every command that writes
refuse it with one line naming the folder, and write nothing anywhere, until
`allow_symlinked_folders = true` under `[tool.toyfoundry]` says the link is meant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import doit, make_project
from toyfoundry.store.layout import LINKED_REASON, Layout

FOLDERS = ["exchange/reports", "exchange/outbox", "exchange/outbox/toysoldiers", ".toyfoundry"]


def _link(layout: Layout, folder: str, outside: Path) -> None:
    outside.mkdir(parents=True)
    link = layout.root / folder
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_linked_folder_is_refused(tmp_path: Path, run_cli: Any, folder: str) -> None:
    layout = make_project(tmp_path / "project")
    outside = tmp_path / "elsewhere"
    _link(layout, folder, outside)
    built = doit(layout.root, timeout=120)
    line = f"{folder}: -: {LINKED_REASON}"
    assert built.code == 3, built.out + built.err
    assert built.err.splitlines() == [line], built.err
    assert "Traceback" not in built.out + built.err
    assert _listing(outside) == []  # nothing went through the link
    minted = run_cli("--root", layout.root, "mint", "2025-10-12-005")
    assert minted.code == 1 and minted.err.splitlines() == [line], minted.err
    assert _listing(outside) == []
    # reading is not writing: validate still checks the exchange
    assert run_cli("--root", layout.root, "validate").code == 0


def test_a_linked_folder_the_project_allows(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "project")
    outside = tmp_path / "elsewhere"
    _link(layout, "exchange/reports", outside)
    settings = layout.root / "pyproject.toml"
    text = settings.read_text().replace(
        "[tool.toyfoundry]\n", "[tool.toyfoundry]\nallow_symlinked_folders = true\n"
    )
    settings.write_text(text)
    built = doit(layout.root, timeout=120)
    assert built.code == 0, built.out + built.err
    assert "2025-10-12-005.json" in _listing(outside)
