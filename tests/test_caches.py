"""Each cache is a second copy of the truth: change the truth underneath it, in one process,
and what it gives must be what a fresh read gives (see `toyfoundry.caches`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from toyfoundry import caches
from toyfoundry.exchange import loader
from toyfoundry.exchange.loader import Exchange
from toyfoundry.store.layout import Layout


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    caches.fresh(())
    yield
    caches.fresh(())


def _rewrite_keeping_stats(path: Path, text: str) -> None:
    """New bytes of the same length, in place (same inode), with the old mtime restored."""
    st = path.stat()
    data = text.encode()
    assert len(data) == st.st_size
    with path.open("r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_switch_names_caches_and_all() -> None:
    assert caches.Caches(["parsed", " files "]).off == {"parsed", "files"}
    assert caches.Caches(["all"]).off == set(caches.NAMES)
    assert caches.Caches([]).on("files")
    os.environ[caches.ENV] = "files"
    try:
        assert not caches.fresh().on("files")
    finally:
        del os.environ[caches.ENV]
    assert caches.fresh().on("files")


def test_settings_edited_with_size_and_mtime_restored_are_read_again(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.toyfoundry]\nexperimental_quota = 0.2\n")
    layout = Layout(tmp_path)
    assert loader.settings(layout).experimental_quota == 0.2
    _rewrite_keeping_stats(path, "[tool.toyfoundry]\nexperimental_quota = 0.3\n")
    assert loader.settings(layout).experimental_quota == 0.3


def test_an_order_edited_with_size_and_mtime_restored_is_read_again(tmp_path: Path) -> None:
    from tests.conftest import make_project

    layout = make_project(tmp_path)
    path = sorted(layout.orders_dir.glob("*.json"))[0]
    text = path.read_text()
    before = Exchange(layout).load("order", path)
    assert before.model is not None
    notes = before.model.notes
    assert notes and notes[0] != "Q"
    edited = text.replace(f'"notes": "{notes}', f'"notes": "Q{notes[1:]}', 1)
    assert edited != text
    _rewrite_keeping_stats(path, edited)
    after = Exchange(layout).load("order", path)
    fresh = caches.fresh(["all"]) and Exchange(layout).load("order", path)
    assert after.model is not None and fresh.model is not None
    assert after.model.notes.startswith("Q")
    assert after.model == fresh.model


def test_a_recipe_edited_with_size_and_mtime_restored_is_loaded_again(tmp_path: Path) -> None:
    from tests.conftest import make_project

    layout = make_project(tmp_path)
    path = sorted(layout.recipes_dir.glob("*.json"))[0]
    text = path.read_text()
    before = Exchange(layout).recipe(path.stem)
    assert before.ok and before.model is not None
    again = Exchange(layout)
    assert again.recipe(path.stem).model is before.model  # the same bytes: kept
    assert again.digests[path] == hashlib.sha256(path.read_bytes()).hexdigest()
    stem = path.stem
    other = stem[:-1] + ("x" if stem[-1] != "x" else "y")
    edited = text.replace(f'"recipe_id": "{stem}"', f'"recipe_id": "{other}"', 1)
    assert edited != text
    _rewrite_keeping_stats(path, edited)
    after = Exchange(layout)
    loaded = after.recipe(stem)
    fresh = caches.fresh(["all"]) and Exchange(layout)
    assert not loaded.ok and loaded.problems == fresh.recipe(stem).problems
    assert after.digests[path] == fresh.digests[path]


def test_a_doctrine_index_rewritten_in_place_is_parsed_again(tmp_path: Path) -> None:
    from tests.support import build, make_project
    from toyfoundry.forge import doctrine

    layout = make_project(tmp_path)
    orders = sorted(p.stem for p in layout.orders_dir.glob("*.json"))
    build(layout, *orders)
    before = doctrine.indexed_digests(layout)
    assert before
    path = layout.doctrine_index
    text = path.read_text()
    gone = sorted(before)[0]
    _rewrite_keeping_stats(path, text.replace(gone, "f" * len(gone)))
    after = doctrine.indexed_digests(layout)
    caches.fresh(["all"])
    assert after == doctrine.indexed_digests(layout)
    assert gone not in after


def test_a_warm_process_rebuilds_an_edited_order_as_a_cold_one_builds_it(tmp_path: Path) -> None:
    """Every cache on, the orders built in one process; an order's seed then changes with
    its size and mtime restored, and the order is built again in the same process: its
    artefacts equal those of a build with every cache off, in another project."""
    from tests.support import build, make_project

    warm = make_project(tmp_path / "warm")
    orders = sorted(p.stem for p in warm.orders_dir.glob("*.json"))
    build(warm, *orders)
    last = warm.order_file(orders[-1])
    text = last.read_text()
    edited = text.replace('"seed": 2025', '"seed": 2026', 1)
    assert edited != text
    _rewrite_keeping_stats(last, edited)
    build(warm, orders[-1])

    caches.fresh(["all"])
    cold = make_project(tmp_path / "cold")
    cold.order_file(orders[-1]).write_text(edited)
    build(cold, *orders)
    for order_id in orders:
        for name in ("mint.json", "rituals.json", "chain.json"):
            got = warm.order_build(order_id) / name
            want = cold.order_build(order_id) / name
            assert got.exists() == want.exists(), (order_id, name)
            if want.exists():
                assert got.read_bytes() == want.read_bytes(), (order_id, name)


#: The records a build keeps in the dependency DB or beside the rollup, each switchable.
RECORDS = ("plan_stat_key", "plan_facts", "code_fingerprints")
RECORDS += ("rollup_vouching",)


def _edit(root: Path) -> None:
    """A new order, and an edited one: what the records are there to make cheap."""
    orders = root / "exchange" / "orders"
    text = (orders / "2025-10-28-002.json").read_text()
    new = text.replace("2025-10-28-002", "2025-10-29-001").replace("20251028002", "20251029001")
    (orders / "2025-10-29-001.json").write_text(new)
    (orders / "2025-10-28-002.json").write_text(text.replace("second line.", "second line!"))


def test_the_sample_builds_the_same_bytes_with_every_cache_off(tmp_path: Path) -> None:
    """`TOYFOUNDRY_NO_CACHE=all` and each of the build's records turned off alone give the
    bytes of a build with everything on: from scratch, after an edit, and in a copy with
    every mtime new (a CI checkout with a restored `.toyfoundry/`)."""
    import shutil

    from tests.conftest import doit, executed, make_project
    from tests.test_incremental_equals_clean import deliverables

    def build(root: Path, off: str = "") -> None:
        env = {caches.ENV: off}
        result = doit(root, env=env)
        assert result.code == 0, result.out + result.err
        again = doit(root, env=env)
        assert executed(again.out) == [], (off, again.out)

    on = make_project(tmp_path / "on").root
    build(on)
    off = make_project(tmp_path / "off").root
    build(off, "all")
    assert deliverables(off) == deliverables(on)

    before = tmp_path / "before"
    shutil.copytree(on, before, symlinks=True)
    _edit(on)
    build(on)
    want = deliverables(on)
    for setting in ("all", *RECORDS):
        root = tmp_path / f"edited-{setting}"
        shutil.copytree(before, root, symlinks=True)
        _edit(root)
        build(root, setting)
        assert deliverables(root) == want, setting
        copy = tmp_path / f"copy-{setting}"
        shutil.copytree(root, copy, symlinks=True, copy_function=shutil.copyfile)
        build(copy, setting)
        assert deliverables(copy) == want, setting


def test_each_build_starts_with_fresh_caches_but_a_watcher_keeps_what_it_used(
    tmp_path: Path,
) -> None:
    """The run command starts every build with `caches.next_build()`: a table filled before
    it is gone after, the switches stay; the graph watcher's set keeps its content-keyed
    tables, but only the entries used since the build before."""
    from tests.conftest import make_project
    from toyfoundry.watch.graph_watcher import GraphWatcher, run_graph

    layout = make_project(tmp_path / "project")
    caches.fresh(["frontiers"])
    caches.current().table("parsed")["sentinel"] = 1
    assert run_graph(layout, ["validate"]).code == 0
    assert "sentinel" not in caches.current().table("parsed")
    assert not caches.current().on("frontiers")

    GraphWatcher(layout, initial_build=False)
    caches.current().table("parsed")["sentinel"] = 1
    caches.current().table("frontiers")["sentinel"] = 1
    caches.current().table("domains")["sentinel"] = 1
    assert run_graph(layout, ["validate"]).code == 0
    assert dict.get(caches.current().table("parsed"), "sentinel") == 1
    assert dict.get(caches.current().table("frontiers"), "sentinel") == 1
    assert caches.current().table("frontiers").get("sentinel") == 1  # used again: kept
    assert run_graph(layout, ["validate"]).code == 0
    # `parsed` and `domains` were not used by the last build: dropped; `frontiers` was
    assert "sentinel" in caches.current().table("frontiers")
    assert not dict.__contains__(caches.current().table("parsed"), "sentinel")
    assert not dict.__contains__(caches.current().table("domains"), "sentinel")
    # `frontiers` bounds itself and is carried whole: the next order may be of a recipe
    # the last build did not mint
    for _ in range(2):
        assert run_graph(layout, ["validate"]).code == 0
    assert dict.get(caches.current().table("frontiers"), "sentinel") == 1


def test_a_process_keeps_the_fingerprints_of_the_code_it_runs_across_builds() -> None:
    """The `code` cache describes the running process's code, which does not change when its
    sources on disk do: every build of a watcher stamps what the watcher runs."""
    from toyfoundry.graph import stages

    first = stages.fingerprints()
    caches.current().table("parsed")["sentinel"] = 1
    caches.next_build()
    assert "sentinel" not in caches.current().table("parsed")
    assert stages.fingerprints() is first
    caches.fresh(["code"])
    assert stages.fingerprints() == first
    assert not caches.current().table("code")


def test_the_build_plan_is_a_snapshot_that_cannot_be_turned_off() -> None:
    """Every task creator must share one read of the inputs: `all` leaves the plan on."""
    assert caches.fresh(["all"]).on("parsed") is False
    caches.current().table("plan")["root"] = "plan"
    assert caches.current().table("plan") == {"root": "plan"}
    caches.next_build()
    assert caches.current().table("plan") == {}
