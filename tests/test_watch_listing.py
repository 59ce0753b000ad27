"""The watcher's event-trusted listing: patched from the paths events name, it reads as a
fresh listing would, and what events missed is picked up by the next full listing."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from types import ModuleType

import pytest
from watchdog.events import FileSystemEvent

from tests.conftest import make_project
from tests.test_watch_helpers import drop, drop_order, load_module, write_light_dodo
from toyfoundry.graph import plan as planning
from toyfoundry.store.layout import Layout
from toyfoundry.watch.graph_watcher import GraphWatcher, plan_inputs
from toyfoundry.watch.listing import Listing
from toyfoundry.watch.observer import ScriptedSource, _Forward


@pytest.fixture
def light(tmp_path: Path) -> ModuleType:
    return load_module(write_light_dodo(tmp_path / "dodo"))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    built = make_project(tmp_path / "project", orders=False)
    return Layout(built.root.resolve())


def _view(entries: list[planning.Entry]) -> list[tuple[str, str, int, int, int]]:
    return [(e.rel, e.kind, e.st.st_size, e.st.st_mtime_ns, e.st.st_ino) for e in entries]


def test_a_listing_patched_path_by_path_reads_as_a_fresh_one(layout: Layout) -> None:
    rng = random.Random(5)
    listing = Listing(layout, planning.scan_inputs(layout))
    ids = [f"2025-11-{d:02d}-{k:03d}" for d in range(3, 9) for k in range(1, 4)]
    for step in range(60):
        order_id = rng.choice(ids)
        path = layout.order_file(order_id)
        what = rng.random()
        if what < 0.5:
            drop_order(layout, order_id, seed=step)
        elif what < 0.7 and path.exists():
            path.unlink()
        elif what < 0.8:
            link = layout.orders_dir / f"link-{step % 3}.json"
            link.unlink(missing_ok=True)
            link.symlink_to(path)
            path = link
        elif what < 0.9:
            path = layout.orders_dir / "notes.txt"  # not an input: ignored
            path.write_text("x")
        else:
            path = layout.settings_file
            path.write_text(path.read_text() + "\n")
        held, st = listing.look(planning.rel(layout, path))
        assert held == (path.suffix in (".json", ".toml"))
        assert (st is not None) == (held and os.path.lexists(path))
        assert _view(listing.entries()) == _view(planning.scan_inputs(layout))


def _watcher(layout: Layout, light: ModuleType, clock: list[float]) -> GraphWatcher:
    watcher = GraphWatcher(
        layout,
        dodo=light,
        source=ScriptedSource(),
        quiet=0.0,
        settle=0.0,
        rescan=10.0,
        clock=lambda: clock[0],
    )
    watcher.scanner.wall_ns = lambda: 10**30  # every file is long settled
    return watcher


def test_a_change_events_missed_is_built_once_a_full_listing_is_due(
    layout: Layout, light: ModuleType
) -> None:
    clock = [100.0]
    drop_order(layout, "2025-11-03-001")
    watcher = _watcher(layout, light, clock)
    assert watcher.run_cycle("start", None).full
    # an order no event named: a cycle that trusts its events does not see it
    missed = drop_order(layout, "2025-11-04-001", seed=2)
    named = drop_order(layout, "2025-11-05-001", seed=3)
    clock[0] += 1.0
    seen = watcher.run_cycle("event", [named])
    assert [c.path for c in seen.changes] == [named]
    assert not layout.report_json("2025-11-04-001").exists()
    # a timer wake before the full listing is due looks at nothing
    clock[0] += 1.0
    assert watcher.run_cycle("rescan", []).build is None
    # once it is due, even a cycle woken by an event lists everything
    clock[0] += 10.0
    other = drop_order(layout, "2025-11-03-002", recipe="bolt-bunny")
    caught = watcher.run_cycle("event", [other])
    assert {c.path for c in caught.changes} == {missed, other}
    assert caught.build is not None and "report:2025-11-04-001" in caught.build.ran
    assert layout.report_json("2025-11-04-001").exists()


def test_a_hint_for_anything_lists_everything(layout: Layout, light: ModuleType) -> None:
    clock = [100.0]
    drop_order(layout, "2025-11-03-001")
    watcher = _watcher(layout, light, clock)
    watcher.run_cycle("start", None)
    missed = drop_order(layout, "2025-11-04-001", seed=2)
    # the kernel's queue overflowed: watchdog says events were lost, the hint is None
    hints: list[Path | None] = []
    forward = _Forward(hints.append)
    forward.on_any_event(FileSystemEvent(str(layout.orders_dir)))  # no type: ignored
    lost = FileSystemEvent(str(layout.orders_dir))
    lost.event_type = "events_lost"
    forward.on_any_event(lost)
    assert hints == [None]
    clock[0] += 1.0
    result = watcher.run_cycle("event", hints)
    assert [c.path for c in result.changes] == [missed]


def test_edits_removals_and_pending_files_through_trusted_cycles(
    layout: Layout, light: ModuleType
) -> None:
    """A run of event cycles ends where a clean full scan would: same snapshot, same plan."""
    clock = [100.0]
    drop_order(layout, "2025-11-03-001")
    watcher = _watcher(layout, light, clock)
    watcher.run_cycle("start", None)
    a = drop_order(layout, "2025-11-04-001", seed=2)
    clock[0] += 0.5
    watcher.run_cycle("event", [a])
    # a half-written order waits, and is looked at again without a new event
    watcher.scanner.settle = 60.0
    watcher.scanner.wall_ns = time.time_ns
    b = layout.order_file("2025-11-05-001")
    b.write_bytes(b'{"order_id": ')
    clock[0] += 0.5
    waiting = watcher.run_cycle("event", [b])
    assert waiting.pending == [b] and waiting.build is None
    drop_order(layout, "2025-11-05-001", seed=3)
    clock[0] += 0.5
    done = watcher.run_cycle("rescan", [])
    assert done.build is not None and "report:2025-11-05-001" in done.build.ran
    # an edit and a removal
    doc = json.loads(a.read_text())
    doc["seed"] = 9
    drop(a, json.dumps(doc).encode())
    layout.order_file("2025-11-03-001").unlink()
    clock[0] += 0.5
    edited = watcher.run_cycle("event", [a, layout.order_file("2025-11-03-001")])
    assert {c.what for c in edited.changes} == {"changed", "removed"}
    snapshot = dict(watcher.scanner.snapshot)
    plan = watcher._plan
    assert plan is not None
    # a full listing now finds nothing new, and draws the same plan
    clock[0] += 20.0
    full = watcher.run_cycle("rescan", [])
    assert full.changes == [] and full.build is None
    assert watcher.scanner.snapshot == snapshot
    assert planning.scan(layout).orders == plan.orders


def test_the_plans_record_is_written_once_idle_and_at_stop(tmp_path: Path) -> None:
    """The record serves the next process: after a stream of changes it is written when
    events go quiet for the rescan period, and when the watcher stops."""
    from tests.conftest import make_project as make_real
    from toyfoundry.graph.backend import FoundryDB

    layout = Layout(make_real(tmp_path / "real").root.resolve())

    def recorded() -> str | None:
        db = FoundryDB(str(layout.dep_db), None)
        try:
            text = db.get_meta("plan")
        finally:
            db.dump()
        return None if text is None else str(json.loads(text)["stat"])

    watcher = GraphWatcher(layout, source=ScriptedSource(), quiet=0.0, settle=0.0)
    watcher.scanner.wall_ns = lambda: 10**30
    watcher.run_cycle("start", None)
    doc = json.loads(layout.order_file("2025-10-28-002").read_text())
    doc.update(order_id="2025-10-29-001", seed=99)
    new = layout.order_file("2025-10-29-001")
    drop(new, json.dumps(doc).encode())
    built = watcher.run_cycle("event", [new])
    assert built.build is not None and "report:2025-10-29-001" in built.build.ran
    now = planning.stat_key(planning.scan_inputs(layout))
    assert recorded() != now  # not after every change
    assert watcher.run_cycle("event", []).build is None and recorded() != now
    watcher.run_cycle("rescan", [])  # events quiet for the rescan period: written
    assert recorded() == now
    # and at stop, from the loop
    doc.update(order_id="2025-10-29-002", seed=98)
    drop(layout.order_file("2025-10-29-002"), json.dumps(doc).encode())
    watcher.run_cycle("event", [layout.order_file("2025-10-29-002")])
    watcher.stop()
    watcher.run()
    assert recorded() == planning.stat_key(planning.scan_inputs(layout))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_through_trusted_cycles_end_where_a_fresh_read_does(
    layout: Layout, light: ModuleType, seed: int
) -> None:
    """Orders added (in the middle of a chain too), edited, moved to another recipe,
    garbled, linked and removed, each cycle told only the path it changed: the watcher's
    plan and snapshot are those of a fresh read after every cycle."""
    from toyfoundry.watch.observer import StableScanner

    rng = random.Random(seed)
    ids = [f"2025-11-{d:02d}-{k:03d}" for d in range(3, 7) for k in range(1, 4)]
    recipes = ["sprocket-scout", "bolt-bunny"]
    for order_id in ids[::3]:
        drop_order(layout, order_id, recipe=rng.choice(recipes))
    clock = [100.0]
    watcher = _watcher(layout, light, clock)
    watcher.run_cycle("start", None)
    for step in range(25):
        order_id = rng.choice(ids)
        path = layout.order_file(order_id)
        what = rng.random()
        if what < 0.5:
            drop_order(layout, order_id, recipe=rng.choice(recipes), seed=step)
        elif what < 0.65:
            path.unlink(missing_ok=True)
        elif what < 0.75:
            drop(path, b"{")
        elif what < 0.85:
            path.unlink(missing_ok=True)
            path.symlink_to(layout.order_file(ids[0]))
        else:
            path = layout.review_file(order_id)
            review = {"schema_version": 1, "order_id": order_id, "decisions": []}
            drop(path, json.dumps(review).encode())
        clock[0] += 0.5
        watcher.run_cycle("event", [path])
        fresh = planning.scan(layout)
        assert watcher._plan is not None
        assert watcher._plan.orders == fresh.orders
        assert watcher._plan.regular_inputs == fresh.regular_inputs
        assert watcher._plan.odd_inputs == fresh.odd_inputs
        scanner = StableScanner(quiet=0.0, settle=0.0, clock=lambda: clock[0])
        scanner.wall_ns = lambda: 10**30
        scanner.scan_stats((p, None) for p in plan_inputs(layout, watcher._named))
        assert watcher.scanner.snapshot == scanner.snapshot
