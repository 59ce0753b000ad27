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
