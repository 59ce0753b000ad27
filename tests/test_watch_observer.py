"""The watchers' shared parts: debounced hints, scans that read only complete files, event sources."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from tests.test_watch_helpers import drop, wait_for
from toyfoundry.watch.observer import (
    Hints,
    ScriptedSource,
    StableScanner,
    Wake,
    WatchdogSource,
    WatchLoop,
    WatchRoot,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_hints_is_one_batch(tmp_path: Path) -> None:
    hints = Hints(quiet=0.15, max_delay=5.0)
    for i in range(50):
        hints.notify(tmp_path / f"{i}.json")
    started = time.monotonic()
    batch = hints.next_batch(time.monotonic() + 5)
    assert len(batch) == 50
    assert time.monotonic() - started >= 0.1
    assert hints.next_batch(time.monotonic() + 0.05) == []


def test_a_steady_trickle_still_closes_at_the_max_delay(tmp_path: Path) -> None:
    hints = Hints(quiet=0.2, max_delay=0.5)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            hints.notify(tmp_path / "x.json")
            time.sleep(0.05)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        started = time.monotonic()
        batch = hints.next_batch(time.monotonic() + 5)
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
    assert batch
    assert took < 2.0


def test_rejected_hints_never_wake_anyone(tmp_path: Path) -> None:
    hints = Hints(quiet=0.05, max_delay=1.0, accept=lambda p: p.suffix == ".json")
    hints.notify(tmp_path / "report.md")
    assert hints.next_batch(time.monotonic() + 0.2) == []
    hints.notify(None)
    assert hints.next_batch(time.monotonic() + 1) == [None]


def test_stop_wakes_a_waiting_batch() -> None:
    hints = Hints(quiet=0.05, max_delay=1.0)
    threading.Timer(0.1, hints.stop).start()
    assert hints.next_batch(None) == []
    assert hints.stopped


def scanner(clock: FakeClock, wall: list[int], **kwargs: float) -> StableScanner:
    return StableScanner(
        quiet=kwargs.get("quiet", 0.5),
        settle=kwargs.get("settle", 2.0),
        clock=clock,
        wall_ns=lambda: wall[0],
    )


def test_a_young_json_file_is_taken_once_it_parses(tmp_path: Path) -> None:
    """JSON needs no quiet spell: a document cut short never parses."""
    clock, path = FakeClock(), tmp_path / "a.json"
    path.write_text('{"a": 1}')
    wall = [path.stat().st_mtime_ns]
    first = scanner(clock, wall).scan([path])
    assert [c.what for c in first.changes] == ["added"] and first.pending == []


def test_a_young_file_that_does_not_parse_waits_for_its_quiet_period(tmp_path: Path) -> None:
    clock, path = FakeClock(), tmp_path / "a.json"
    path.write_text('{"a": ')
    wall = [path.stat().st_mtime_ns]
    scan = scanner(clock, wall)
    first = scan.scan([path])
    assert first.changes == [] and first.pending == [path]
    assert first.retry_after is not None and 0 < first.retry_after <= 0.5
    path.write_text('{"a": 1}')
    wall[0] = path.stat().st_mtime_ns
    second = scan.scan([path])
    assert [c.what for c in second.changes] == ["added"] and second.pending == []
    assert scan.snapshot[path].sha256 is not None


def test_a_young_file_of_any_bytes_waits_for_its_quiet_period(tmp_path: Path) -> None:
    clock, path = FakeClock(), tmp_path / "a.bin"
    path.write_bytes(b"\x00\x01")
    wall = [path.stat().st_mtime_ns]
    scan = StableScanner(quiet=0.5, settle=2.0, check="bytes", clock=clock, wall_ns=lambda: wall[0])
    first = scan.scan([path])
    assert first.changes == [] and first.pending == [path]
    assert first.retry_after is not None and 0 < first.retry_after <= 0.5
    clock.now += 0.6
    second = scan.scan([path])
    assert [c.what for c in second.changes] == ["added"] and second.pending == []


def test_an_old_file_is_read_at_once(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("{}")
    wall = [path.stat().st_mtime_ns + 5_000_000_000]
    result = scanner(FakeClock(), wall).scan([path])
    assert [c.path for c in result.changes] == [path]


def test_a_half_written_file_is_retried_silently_then_taken_as_bad(tmp_path: Path) -> None:
    clock, path = FakeClock(), tmp_path / "a.json"
    path.write_text('{"order_id": "2025-')
    wall = [path.stat().st_mtime_ns + 1_000_000_000]
    scan = scanner(clock, wall)
    assert scan.scan([path]).pending == [path]
    # the writer finishes: the complete file is read as soon as it is quiet
    path.write_text('{"order_id": "2025-11-03-001"}')
    wall[0] = path.stat().st_mtime_ns + 1_000_000_000
    assert [c.what for c in scan.scan([path]).changes] == ["added"]
    # a file that never parses is handed on once it has settled, so it gets reported
    bad = tmp_path / "b.json"
    bad.write_text("{nope")
    wall[0] = bad.stat().st_mtime_ns + 1_000_000_000
    assert scan.scan([path, bad]).pending == [bad]
    wall[0] += 1_500_000_000
    changes = scan.scan([path, bad]).changes
    assert [(c.path, c.what) for c in changes] == [(bad, "added")]


def test_touch_without_new_bytes_is_no_change_but_removal_is(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("{}")
    wall = [path.stat().st_mtime_ns + 5_000_000_000]
    scan = scanner(FakeClock(), wall)
    scan.scan([path])
    os.utime(path, ns=(wall[0] - 2_000_000_000, wall[0] - 2_000_000_000))
    assert scan.scan([path]).changes == []
    path.write_text('{"x": 1}')
    wall[0] = path.stat().st_mtime_ns + 5_000_000_000
    assert [c.what for c in scan.scan([path]).changes] == ["changed"]
    path.unlink()
    assert [c.what for c in scan.scan([]).changes] == ["removed"]


def test_links_and_fifos_are_remembered_by_kind_never_opened(tmp_path: Path) -> None:
    link, fifo = tmp_path / "l.json", tmp_path / "f.json"
    link.symlink_to("/etc/passwd")
    os.mkfifo(fifo)
    result = scanner(FakeClock(), [time.time_ns()]).scan([link, fifo])
    kinds = sorted((c.new.kind if c.new else "") for c in result.changes)
    assert kinds == ["fifo", "symlink"]


def test_watchdog_source_reports_real_events_and_waits_for_missing_roots(tmp_path: Path) -> None:
    seen: list[Path | None] = []
    lock = threading.Lock()

    def notify(path: Path | None) -> None:
        with lock:
            seen.append(path)

    (tmp_path / "here").mkdir()
    later = tmp_path / "later" / "deeper"
    source = WatchdogSource()
    source.start([WatchRoot(tmp_path / "here"), WatchRoot(later)], notify)
    try:
        drop(tmp_path / "here" / "a.json", b"{}")
        wait_for(lambda: tmp_path / "here" / "a.json" in seen, timeout=5)
        later.mkdir(parents=True)
        wait_for(lambda: None in seen or later in seen, timeout=5)
        source.repair()  # as the watch loop does before each cycle
        (later / "b.json").write_text("{}")
        wait_for(lambda: later / "b.json" in seen, timeout=5)
    finally:
        source.stop()


def test_watchdog_source_watches_a_removed_or_replaced_root_again(tmp_path: Path) -> None:
    """`rm -r orders && mkdir orders`, or a folder swapped for another: the old watch ended
    with (or went along with) the old folder; `repair` watches the new one."""
    seen: list[Path | None] = []
    lock = threading.Lock()

    def notify(path: Path | None) -> None:
        with lock:
            seen.append(path)

    here = tmp_path / "exchange" / "orders"
    here.mkdir(parents=True)
    source = WatchdogSource()
    source.start([WatchRoot(here, recursive=False)], notify)
    try:
        # removed, then made again: the removal is reported, and repair waits for the folder
        shutil.rmtree(here)
        wait_for(lambda: here in seen, timeout=5)
        source.repair()
        with lock:
            seen.clear()
        here.mkdir()
        source.repair()  # made before its parent's watch began, or reported by it
        wait_for(lambda: None in seen, timeout=5)
        drop(here / "a.json", b"{}")
        wait_for(lambda: here / "a.json" in seen, timeout=5)
        # renamed away and replaced: nothing is reported under the old name, and the
        # rescan's check of every folder finds the folder at that path is another one
        here.rename(tmp_path / "exchange" / "old")
        here.mkdir()
        with lock:
            seen.clear()
        source.repair(everything=True)
        assert None in seen
        drop(here / "b.json", b"{}")
        wait_for(lambda: here / "b.json" in seen, timeout=5)
    finally:
        source.stop()


def test_scripted_source_delivers_what_a_test_emits(tmp_path: Path) -> None:
    got: list[Path | None] = []
    source = ScriptedSource()
    source.start([WatchRoot(tmp_path)], got.append)
    source.emit(tmp_path / "x")
    source.emit()
    source.stop()
    source.emit(tmp_path / "y")
    assert got == [tmp_path / "x", None]


def test_the_watch_loop_runs_a_cycle_at_start_per_batch_and_per_rescan(tmp_path: Path) -> None:
    """The loop every watcher runs: a rejected hint wakes nothing, a burst is one cycle,
    silence still rescans, and a cycle can end the loop."""
    source = ScriptedSource()
    loop = WatchLoop(
        source, quiet=0.05, max_delay=1.0, rescan=0.2, accept=lambda p: p.suffix == ".json"
    )
    wakes: list[Wake] = []

    def cycle(wake: Wake) -> float | None:
        wakes.append(wake)
        if wake.trigger == "start":
            source.emit(tmp_path / "ignored.txt")
            source.emit(tmp_path / "a.json")
            source.emit(tmp_path / "b.json")
        elif wake.trigger == "rescan":
            loop.stop()
        return None

    thread = threading.Thread(target=loop.run, args=([WatchRoot(tmp_path)], cycle), daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive() and not loop.running
    assert [w.trigger for w in wakes] == ["start", "event", "rescan"]
    assert wakes[1].hints == [tmp_path / "a.json", tmp_path / "b.json"]
    assert source.roots == [WatchRoot(tmp_path)]
