"""`.toyfoundry/README.md` lists every file and folder the foundry keeps there."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO
from toyfoundry.store.layout import Layout

KEPT = (
    "lock_file",
    "dep_db",
    "logs_dir",
    "build",
    "doctrine",
    "mint_ledger",
    "ritual_ledger",
    "watcher_state",
    "order_watcher_state",
    "quilt_dir",
)


def test_the_state_readme_names_every_file_the_foundry_keeps(tmp_path: Path) -> None:
    readme = (REPO / ".toyfoundry" / "README.md").read_text(encoding="utf-8")
    layout = Layout(tmp_path)
    for name in KEPT:
        rel = getattr(layout, name).relative_to(layout.state).as_posix()
        assert f"`{rel}" in readme, f"{rel} ({name}) is not in .toyfoundry/README.md"
