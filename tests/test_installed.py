"""One scan of the installed distributions serves doit's plugin lookups and the validator
plugins, and is kept while the import path folders keep their stats (`toyfoundry.installed`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_forge_plugins import install_plugin
from toyfoundry import caches, installed
from toyfoundry.forge.plugins import registered

OLD = 1_600_000_000_000_000_000  # 2020: a folder whose mtime is not racy


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    caches.fresh(())
    yield
    caches.fresh(())


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real scans."""
    count = [0]
    real = installed.entry_points

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(installed, "entry_points", counted)
    return count


def _age(folder: Path, ns: int) -> None:
    os.utime(folder, ns=(ns, ns))


def test_a_plugin_installed_in_a_folder_already_on_the_path_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scans: list[int]
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _age(site, OLD)
    monkeypatch.syspath_prepend(str(site))
    assert registered() == []
    assert registered() == [] and scans[0] == 1  # kept: the path's folders did not change
    caches.next_build()
    assert registered() == [] and scans[0] == 1  # and across builds of the process
    install_plugin(site, "tf_late", "def hook(params, recipe):\n    return []\n")
    _age(site, OLD + 10**9)  # the dist-info folder changed the folder's link count too
    assert [ep.name for ep in registered()] == ["tf_late-check"]
    assert scans[0] == 2


def test_a_folder_changed_moments_ago_is_scanned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scans: list[int]
) -> None:
    """Within its clock's tick a folder can change again under the same mtime: not kept."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    registered()
    registered()
    assert scans[0] == 2


def test_doit_and_the_mint_share_one_scan_and_a_watcher_cycle_makes_none(
    tmp_path: Path, scans: list[int]
) -> None:
    from tests.conftest import make_project
    from toyfoundry.watch.graph_watcher import GraphWatcher, run_graph

    if installed._racy(installed._path_key()):
        pytest.skip("an import path folder changed in the last seconds")
    layout = make_project(tmp_path / "project")
    assert run_graph(layout).code in (0, 1)  # commands, backends, reporters, validators
    assert scans[0] == 1
    assert run_graph(layout, ["validate"]).code == 0
    assert scans[0] == 1  # the next build of the process scans nothing
    GraphWatcher(layout, initial_build=False)  # a new set of caches: scanned again once
    for _ in range(2):
        assert run_graph(layout, ["validate"]).code == 0
    assert scans[0] == 2


def test_doit_reads_its_plugins_from_the_scan_only_inside_the_block() -> None:
    import doit.plugin

    before = doit.plugin.entry_points_impl
    with installed.for_doit():
        names = [ep.name for ep in doit.plugin.entry_points_impl()(group="doit.COMMAND")]
        assert "auto" in names
    assert doit.plugin.entry_points_impl is before
