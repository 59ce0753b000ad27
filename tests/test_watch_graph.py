"""`toyfoundry watch`: real filesystem events in, exactly the affected tasks rebuilt, no self-trigger."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, make_project
from tests.test_watch_helpers import (
    drop,
    drop_order,
    load_module,
    order_bytes,
    stays,
    wait_for,
    write_light_dodo,
)
from toyfoundry.store.layout import Layout
from toyfoundry.watch.graph_watcher import CycleResult, GraphWatcher, run_graph
from toyfoundry.watch.observer import ScriptedSource

GLOBAL = ["dashboard", "export", "quilt", "validate"]


def chain(*orders: str) -> list[str]:
    return [f"{stage}:{o}" for o in orders for stage in ("mint", "rituals", "report")]


class Running:
    """A GraphWatcher looping in a thread, with every cycle it finished."""

    def __init__(self, watcher: GraphWatcher) -> None:
        self.watcher = watcher
        self.cycles: list[CycleResult] = []
        self._lock = threading.Lock()
        watcher.on_cycle = self._record
        self.thread = threading.Thread(target=watcher.run, daemon=True)

    def _record(self, result: CycleResult) -> None:
        with self._lock:
            self.cycles.append(result)

    @property
    def builds(self) -> list[CycleResult]:
        with self._lock:
            return [c for c in self.cycles if c.build is not None]

    def ran(self) -> list[str]:
        return [name for c in self.builds for name in (c.build.ran if c.build else [])]

    def wait_builds(self, count: int, timeout: float = 20) -> list[CycleResult]:
        return wait_for(lambda: len(self.builds) >= count and self.builds, timeout)

    def quiet_for(self, seconds: float) -> None:
        """No build starts within `seconds` (the no-self-trigger promise)."""
        before = len(self.builds)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert len(self.builds) == before, [c.build for c in self.builds[before:]]
            time.sleep(0.02)


@pytest.fixture
def light(tmp_path: Path) -> ModuleType:
    return load_module(write_light_dodo(tmp_path / "dodo"))


@pytest.fixture
def light_project(tmp_path: Path) -> Layout:
    return make_project(tmp_path / "project", orders=False)


@pytest.fixture
def running(light_project: Layout, light: ModuleType) -> Iterator[Running]:
    watcher = GraphWatcher(light_project, dodo=light, quiet=0.15, settle=1.5, rescan=30)
    run = Running(watcher)
    run.thread.start()
    run.wait_builds(1)
    yield run
    watcher.stop()
    run.thread.join(10)
    assert not run.thread.is_alive()


def test_a_new_order_is_built(running: Running, light_project: Layout) -> None:
    drop_order(light_project, "2025-11-03-001")
    build = running.wait_builds(2)[1]
    assert build.build is not None
    assert sorted(build.build.ran) == sorted(chain("2025-11-03-001") + GLOBAL)
    assert light_project.report_json("2025-11-03-001").exists()


def test_write_then_rename_is_exactly_one_build(running: Running, light_project: Layout) -> None:
    drop_order(light_project, "2025-11-03-001")
    running.wait_builds(2)
    running.quiet_for(1.0)
    assert len(running.builds) == 2


def test_after_a_build_nothing_rebuilds_during_a_quiet_period(
    running: Running, light_project: Layout
) -> None:
    drop_order(light_project, "2025-11-03-001")
    running.wait_builds(2)
    # the build wrote reports, exports and .toyfoundry/: none of it may wake the watcher
    running.quiet_for(1.5)
    assert all(c.build is None for c in running.cycles[2:])


def test_a_slow_partial_write_is_built_once_when_complete(
    running: Running, light_project: Layout, capfd: pytest.CaptureFixture[str]
) -> None:
    data = order_bytes("2025-11-03-002")
    path = light_project.order_file("2025-11-03-002")
    with path.open("wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        # paused longer than the quiet period, shorter than the settle period
        time.sleep(0.5)
        handle.write(data[len(data) // 2 :])
    running.wait_builds(2)
    running.quiet_for(0.8)
    assert running.ran().count("mint:2025-11-03-002") == 1
    # a cycle did look at the half-written file, and left it for later
    assert any(c.pending for c in running.cycles)
    assert all(not c.build.failed for c in running.builds if c.build)
    assert json.loads(light_project.report_json("2025-11-03-002").read_text())["status"]
    err = capfd.readouterr().err
    assert "not valid JSON" not in err and "2025-11-03-002" not in err


def test_a_bad_file_is_reported_and_the_next_good_order_still_builds(
    running: Running, light_project: Layout, capfd: pytest.CaptureFixture[str]
) -> None:
    drop(light_project.order_file("2025-11-03-003"), b'{"order_id": oops')
    bad = running.wait_builds(2)[1]
    assert bad.build is not None and "mint:2025-11-03-003" in bad.build.failed
    assert "exchange/orders/2025-11-03-003.json: -: is not valid JSON" in capfd.readouterr().err
    drop_order(light_project, "2025-11-03-004")
    good = running.wait_builds(3)[2]
    assert good.build is not None and "report:2025-11-03-004" in good.build.ran
    assert light_project.report_json("2025-11-03-004").exists()


def test_two_hundred_orders_in_a_burst_are_all_built(
    running: Running, light_project: Layout
) -> None:
    ids = [f"2025-11-{4 + i // 24:02d}-{i % 24 + 1:03d}" for i in range(200)]
    for n, order_id in enumerate(ids):
        drop_order(light_project, order_id, seed=n)
    wanted = {f"report:{o}" for o in ids}
    wait_for(lambda: wanted <= set(running.ran()), timeout=40)
    assert all(light_project.report_json(o).exists() for o in ids)
    ran = running.ran()
    assert all(ran.count(f"report:{o}") == 1 for o in ids)
    # a burst is debounced into a few builds, not one per file
    assert len(running.builds) <= 6


def test_a_missed_event_is_caught_by_the_periodic_rescan(
    light_project: Layout, light: ModuleType
) -> None:
    source = ScriptedSource()
    watcher = GraphWatcher(light_project, dodo=light, source=source, quiet=0.05, rescan=0.3)
    run = Running(watcher)
    run.thread.start()
    try:
        run.wait_builds(1)
        # no event at all, as after an inotify queue overflow
        drop_order(light_project, "2025-11-03-005")
        wait_for(lambda: "report:2025-11-03-005" in run.ran(), timeout=10)
        assert run.builds[-1].trigger == "rescan"
        assert light_project.report_json("2025-11-03-005").exists()
    finally:
        watcher.stop()
        run.thread.join(10)


def test_each_input_kind_selects_its_orders(light_project: Layout, light: ModuleType) -> None:
    layout = light_project
    scout = ["2025-11-03-001", "2025-11-04-001", "2025-11-05-001"]
    for n, order_id in enumerate(scout):
        drop_order(layout, order_id, seed=n)
    drop_order(layout, "2025-11-03-002", recipe="bolt-bunny")
    watcher = GraphWatcher(layout, dodo=light, source=ScriptedSource(), quiet=0.0, settle=0.0)
    watcher.scanner.quiet = 0.0

    def selected() -> list[str]:
        result = watcher.run_cycle()
        assert result.build is not None
        return sorted(result.build.selected or [])

    assert watcher.run_cycle().full
    # a middle order: its own chain and the later orders of its recipe
    doc = json.loads(layout.order_file(scout[1]).read_text())
    doc["seed"] = 77
    drop(layout.order_file(scout[1]), json.dumps(doc).encode())
    assert selected() == sorted(chain(*scout[1:]) + GLOBAL)
    # a review: that order and the later ones
    review = {"schema_version": 1, "order_id": scout[0], "decisions": []}
    drop(layout.review_file(scout[0]), json.dumps(review).encode())
    assert selected() == sorted(chain(*scout) + GLOBAL)
    # a recipe: all of its orders, none of the other recipe's
    recipe = layout.recipe_file("bolt-bunny")
    doc = json.loads(recipe.read_text())
    doc["title"] = "retitled"
    drop(recipe, json.dumps(doc).encode())
    assert selected() == sorted(chain("2025-11-03-002") + GLOBAL)
    # a checkpoint: every order of its phase (all of ours are pilots, none is expansion)
    checkpoint = layout.checkpoint_file("expansion")
    drop(checkpoint, json.dumps(json.loads(checkpoint.read_text()), indent=8).encode())
    assert selected() == sorted(GLOBAL)
    # a deleted order: the later orders of its recipe
    layout.order_file(scout[1]).unlink()
    assert selected() == sorted(chain(scout[2]) + GLOBAL)


def test_the_plan_says_what_a_change_feeds(light_project: Layout) -> None:
    """The watcher's question, asked of the plan: the orders that read a changed file,
    those whose declared inputs changed, and the later orders of their chains."""
    from toyfoundry.graph import plan as planning

    layout = light_project
    scout = ["2025-11-03-001", "2025-11-04-001", "2025-11-05-001"]
    bunny = ["2025-11-03-002", "2025-11-05-002"]
    for n, order_id in enumerate(scout):
        drop_order(layout, order_id, seed=n)
    for order_id in bunny:
        drop_order(layout, order_id, recipe="bolt-bunny")
    before = planning.scan(layout)
    named = planning.named_paths(before)
    # the settings and an optional review no order has yet are named too
    assert "pyproject.toml" in named and f"exchange/reviews/{scout[0]}.json" in named
    assert planning.orders_fed_by(before, ["exchange/recipes/bolt-bunny.json"], before) == set(
        bunny
    )
    # an order moved to the other recipe: its new chain from it on, and its old chain after it
    drop_order(layout, scout[1], recipe="bolt-bunny")
    after = planning.scan(layout)
    moved = planning.orders_fed_by(after, [f"exchange/orders/{scout[1]}.json"], before)
    assert moved == {scout[1], scout[2], bunny[1]}
    # no earlier plan: every order may be stale
    assert planning.orders_fed_by(after, [], None) == {*scout, *bunny}
    # a deleted recipe: no order lists it any more, but its orders' declared inputs changed
    layout.recipe_file("bolt-bunny").unlink()
    gone = planning.scan(layout)
    assert planning.orders_fed_by(gone, ["exchange/recipes/bolt-bunny.json"], after) == {
        scout[1],
        *bunny,
    }


def test_it_watches_what_the_plan_names_and_nothing_else(
    light_project: Layout, light: ModuleType
) -> None:
    layout = Layout(light_project.root.resolve())
    drop_order(layout, "2025-11-03-001")
    source = ScriptedSource()
    watcher = GraphWatcher(layout, dodo=light, source=source, quiet=0.05, rescan=30)
    with watcher.background():
        watcher.wait_for_cycle(lambda r: r.built, after=0, timeout=60)
        roots = {(r.path, r.recursive) for r in source.roots}
    listed = {(layout.exchange / f, False) for f in ("orders", "recipes", "checkpoints", "reviews")}
    assert listed | {(layout.root, False)} <= roots
    assert watcher.relevant(layout.settings_file)
    assert watcher.relevant(layout.order_file("2025-11-04-001"))  # a new file in a listed folder
    assert watcher.relevant(layout.review_file("2025-11-03-001"))
    assert not watcher.relevant(layout.root / "README.md")
    assert not watcher.relevant(layout.orders_dir / ".2025-11-04-001.json.tmp")
    assert not watcher.relevant(layout.report_json("2025-11-03-001"))


def test_without_an_initial_build_the_start_is_the_baseline(
    light_project: Layout, light: ModuleType
) -> None:
    layout = light_project
    scout = ["2025-11-03-001", "2025-11-04-001", "2025-11-05-001"]
    for n, order_id in enumerate(scout):
        drop_order(layout, order_id, seed=n)
    assert run_graph(layout, dodo=light).code == 0
    watcher = GraphWatcher(
        layout, dodo=light, source=ScriptedSource(), quiet=0.0, settle=0.0, initial_build=False
    )
    first = watcher.run_cycle()
    assert first.build is None and first.changes == []
    layout.order_file(scout[1]).unlink()
    deleted = watcher.run_cycle()
    assert deleted.build is not None
    assert sorted(deleted.build.selected or []) == sorted(chain(scout[2]) + GLOBAL)


def test_end_to_end_with_the_real_graph(tmp_path: Path) -> None:
    layout = make_project(tmp_path / "project")
    watcher = GraphWatcher(layout, quiet=0.15, rescan=30)
    with watcher.background():
        first = watcher.wait_for_cycle(lambda r: r.built, after=0, timeout=60)
        assert first.full and first.build is not None and first.build.code in (0, 1)
        doc = json.loads(layout.order_file("2025-10-28-002").read_text())
        doc.update(order_id="2025-10-29-001", seed=99)
        # what the benchmark suite does to time write-to-fresh-report latency
        mark, written = watcher.finished, time.monotonic()
        drop(layout.order_file("2025-10-29-001"), json.dumps(doc).encode())
        second = watcher.wait_for_cycle(
            lambda r: "report:2025-10-29-001" in r.ran, after=mark, timeout=60
        )
        # validate is selected but up to date: it reads no order that has no review
        assert sorted(second.ran) == sorted(chain("2025-10-29-001") + GLOBAL[:-1])
        assert layout.report_json("2025-10-29-001").exists()
        assert second.finished - written < 30
        builds = watcher.builds
        stays(lambda: watcher.builds == builds, seconds=1.0)


def test_the_start_gathers_each_recipes_carried_positions(tmp_path: Path) -> None:
    """A watcher walks each recipe's chain links back at start, not at its first new order."""
    from toyfoundry import caches
    from toyfoundry.graph import plan as planning

    layout = make_project(tmp_path / "project")
    assert run_graph(layout).code in (0, 1)
    watcher = GraphWatcher(layout, source=ScriptedSource(), initial_build=False)
    watcher.run_cycle()
    last = {n.recipe: n for n in planning.scan(layout).orders if n.recipe is not None}
    chained = {recipe for recipe, n in last.items() if (layout.root / n.chain).exists()}
    assert chained and set(caches.current().table("frontiers")) == chained
    caches.fresh(())


def test_raising_the_experimental_quota_rebuilds_what_it_blocked(tmp_path: Path) -> None:
    """The settings are an input the plan names (experimental orders read the quota), so
    the watcher watches them and rebuilds the orders that read them, as `doit` does."""
    layout = make_project(tmp_path / "project")
    for order_id, size in (("2025-10-29-003", 48), ("2025-10-30-004", 12)):
        doc = json.loads(layout.order_file("2025-10-28-002").read_text())
        doc.update(order_id=order_id, recipe="marble-mech", batch_size=size, seed=size)
        drop(layout.order_file(order_id), json.dumps(doc).encode())
    watcher = GraphWatcher(layout, source=ScriptedSource(), quiet=0.0, settle=0.0)
    assert watcher.run_cycle().full
    blocked = json.loads(layout.mint_artefact("2025-10-30-004").read_bytes())
    assert blocked["status"] == "blocked" and "allows 50" in blocked["reason"]
    settings = layout.settings_file.read_text()
    assert "experimental_quota = 0.2" in settings
    drop(
        layout.settings_file,
        settings.replace("experimental_quota = 0.2", "experimental_quota = 0.5").encode(),
    )
    result = watcher.run_cycle()
    assert result.build is not None and "mint:2025-10-30-004" in result.ran, result
    assert "mint:2025-10-27-014" not in result.ran  # an order that does not read the quota
    built = json.loads(layout.mint_artefact("2025-10-30-004").read_bytes())
    assert built["status"] in ("built", "awaiting-review")


def test_the_watcher_hands_doit_only_the_affected_orders(tmp_path: Path) -> None:
    """doit sees the affected orders' tasks and the global ones, not the whole graph;
    an earlier order of the chain whose artefacts are missing is drawn too, and built."""
    from toyfoundry.graph import backend, tasks
    from toyfoundry.watch.graph_watcher import focus_orders

    layout = make_project(tmp_path / "project")
    assert run_graph(layout).code in (0, 1)
    with contextlib.chdir(layout.root):
        db = backend.FoundryDB(str(layout.dep_db), None)
        try:
            tasks.forget_plan()
            plan = tasks.current_plan()
        finally:
            db.dump()
    last = "2025-10-27-014"  # sprocket-scout, after 2025-10-20-011 in the chain
    before = plan.by_id[last].previous
    assert before is not None
    assert focus_orders(layout, plan, [f"mint:{last}", "quilt"]) == {last}
    (layout.root / plan.by_id[before].chain).unlink()
    assert focus_orders(layout, plan, [f"mint:{last}", "quilt"]) == {last, before}
    with tasks.focus({last, before}):
        run = run_graph(layout, [f"report:{last}", "quilt"])
    assert run.total == 2 * 3 + 4, run  # two orders' three tasks, the four global ones
    assert f"rituals:{before}" in run.ran and (layout.root / plan.by_id[before].chain).exists()


def _cli(root: Path, dodo: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "toyfoundry", "--root", str(root), "watch"),
            *("--dodo", str(dodo), "--quiet-period", "0.1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1", **env},
        stdin=subprocess.DEVNULL,
    )


def _lock_is_free(layout: Layout) -> bool:
    fd = os.open(layout.lock_file, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_build_exits_0_and_releases_the_lock(
    tmp_path: Path, light_project: Layout, sig: signal.Signals
) -> None:
    dodo = write_light_dodo(tmp_path / "cli")
    proc = _cli(light_project.root, dodo, {"LIGHT_DODO_SLOW": "60"})
    try:
        marker = light_project.state / "slow-task-started"
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.communicate()
        assert not _lock_is_free(light_project)
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            # where it hangs: faulthandler dumps every thread's stack on SIGABRT
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=20)
            raise AssertionError(f"no exit 20s after {sig.name}:\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err
    assert _lock_is_free(light_project)
