"""The order watcher: the pending set, and exactly one notification per change of it."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, make_project
from tests.test_watch_helpers import drop, drop_order, load_module, wait_for, write_light_dodo
from toyfoundry.store.atomic import write_json_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.watch.graph_watcher import run_graph
from toyfoundry.watch.observer import ScriptedSource
from toyfoundry.watch.orders import OrderWatcher, PendingChange, pending_orders

A, B = "2025-11-03-001", "2025-11-03-002"


@pytest.fixture
def light(tmp_path: Path) -> ModuleType:
    return load_module(write_light_dodo(tmp_path / "dodo"))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return make_project(tmp_path / "project", orders=False)


class Bell:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, title: str, body: str) -> None:
        self.calls.append((title, body))


def kinds(layout: Layout) -> dict[str, str]:
    return {o: p.kind for o, p in pending_orders(layout).items()}


def test_the_pending_set_follows_builds_edits_and_human_waits(
    layout: Layout, light: ModuleType
) -> None:
    drop_order(layout, A)
    drop_order(layout, B, seed=2)
    drop(layout.order_file("2025-11-03-003"), b"{broken")
    assert kinds(layout) == {A: "new", B: "new"}
    run_graph(layout, dodo=light)
    assert kinds(layout) == {}
    # an edited order is stale until it is rebuilt
    drop_order(layout, A, seed=9)
    assert kinds(layout) == {A: "stale"}
    run_graph(layout, dodo=light)
    assert kinds(layout) == {}
    # reports that wait for people
    report = json.loads(layout.report_json(B).read_text())
    write_json_atomic(layout.report_json(B), {**report, "status": "blocked", "reason": "no go"})
    write_json_atomic(
        layout.report_json(A), {**report, "awaiting_review": [{"alfa_id": "x", "reasons": []}]}
    )
    assert kinds(layout) == {A: "awaiting-review", B: "blocked"}


def test_notifies_exactly_once_per_change(layout: Layout, light: ModuleType) -> None:
    bell = Bell()
    watcher = OrderWatcher(layout, notify=bell)
    assert not watcher.check().any and bell.calls == []
    drop_order(layout, A)
    assert watcher.check().added == [A]
    assert watcher.check().any is False
    assert OrderWatcher(layout, notify=bell).check().any is False
    assert len(bell.calls) == 1 and "1 pending" in bell.calls[0][0]
    # --build runs the graph first: the order is done, one more notification
    done = OrderWatcher(layout, notify=bell, build=True, dodo=light).check()
    assert done.removed == {A: "new"} and len(bell.calls) == 2
    assert json.loads(layout.order_watcher_state.read_text())["pending"] == {}


def test_watch_mode_notifies_on_an_event(layout: Layout) -> None:
    bell, source = Bell(), ScriptedSource()
    checks: list[object] = []

    class Counting(OrderWatcher):
        def check(self) -> PendingChange:
            change = super().check()
            checks.append(change)
            return change

    watcher = Counting(layout, notify=bell, source=source, quiet=0.1)
    thread = threading.Thread(target=watcher.run, kwargs={"interval": 30}, daemon=True)
    thread.start()
    try:
        source.started.wait(5)
        wait_for(lambda: layout.order_watcher_state.exists())
        path = drop_order(layout, A)
        source.emit(path)
        wait_for(lambda: bell.calls)
        seen = len(checks)
        source.emit(path)
        wait_for(lambda: len(checks) > seen, timeout=10)
    finally:
        watcher.stop()
        thread.join(10)
    assert len(bell.calls) == 1


def _fake_notify_send(folder: Path) -> tuple[dict[str, str], Path]:
    log = folder / "notified.log"
    script = folder / "bin" / "notify-send"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{script.parent}:{os.environ['PATH']}"}
    return env, log


def _once(layout: Layout, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toyfoundry", "--root", str(layout.root), "watch-orders", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_once_from_a_scheduler_notifies_once_per_change(layout: Layout, tmp_path: Path) -> None:
    env, log = _fake_notify_send(tmp_path)
    drop_order(layout, A)
    first = _once(layout, env, "--once")
    assert first.returncode == 0, first.stderr
    assert f"+ {A}  new: no report yet" in first.stdout
    assert "\a" not in first.stdout
    assert _once(layout, env, "--once").stdout == ""
    assert len(log.read_text().splitlines()) == 1
    drop_order(layout, B)
    assert _once(layout, env, "--quiet").returncode == 0
    assert len(log.read_text().splitlines()) == 1


def test_rings_the_bell_on_a_terminal(layout: Layout, tmp_path: Path) -> None:
    env, _ = _fake_notify_send(tmp_path)
    drop_order(layout, A)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "toyfoundry", "--root", str(layout.root), "watch-orders"],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        proc.wait(30)
    assert proc.returncode == 0
    assert b"\a" in b"".join(chunks)
