"""`doit auto` from the installed entry point: re-runs on changes, reloads tasks, exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_watch_helpers import drop, stays, wait_for

DODO = '''
from pathlib import Path

DOIT_CONFIG = {"backend": "json", "dep_file": ".doit.json", "verbosity": 2}


def concat(targets):
    parts = [p.read_text() for p in sorted(Path("src").glob("*.txt"))]
    Path(targets[0]).parent.mkdir(exist_ok=True)
    Path(targets[0]).write_text("".join(parts))


def task_concat():
    """Concatenate src/*.txt into out/all.txt: the task list follows the folder."""
    return {
        "actions": [concat],
        "file_dep": [str(p) for p in sorted(Path("src").glob("*.txt"))],
        "targets": ["out/all.txt"],
    }
'''


class Auto:
    """`python -m doit auto` in a project folder, with its output collected as it comes."""

    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "doit", "auto", "--quiet-period", "0.1", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def cycles(self) -> list[str]:
        return [line for line in list(self.lines) if line.startswith("doit auto: cycle")]

    def wait_cycles(self, count: int) -> list[str]:
        return wait_for(lambda: len(self.cycles()) >= count and self.cycles(), timeout=20)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(5)
        return code


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "dodo.py").write_text(DODO)
    (root / "src" / "a.txt").write_text("a\n")
    return root


@pytest.fixture
def auto(project: Path) -> Iterator[Auto]:
    running = Auto(project)
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def output(project: Path) -> str:
    path = project / "out" / "all.txt"
    return path.read_text() if path.exists() else ""


def test_reruns_on_change_and_picks_up_a_new_input(auto: Auto, project: Path) -> None:
    first = auto.wait_cycles(1)[0]
    assert "cycle 1 (start): ran 1 of 1 task(s)" in first
    assert output(project) == "a\n"
    drop(project / "src" / "a.txt", b"a2\n")
    wait_for(lambda: output(project) == "a2\n")
    # a new file in a watched folder: the reloaded dodo makes it a new file dep
    drop(project / "src" / "b.txt", b"b\n")
    wait_for(lambda: output(project) == "a2\nb\n")
    cycles = auto.wait_cycles(3)
    assert "after src/b.txt" in cycles[2] and "watching 3 file(s)" in cycles[2]
    assert auto.stop() == 0


def test_its_own_outputs_and_unrelated_writes_start_no_cycle(auto: Auto, project: Path) -> None:
    auto.wait_cycles(1)
    # a log growing next to the dodo, the DB and the targets are not inputs
    (project / "run.log").write_text("x")
    with (project / "run.log").open("a") as log:
        log.write("more")
    (project / "out" / "all.txt").write_text("tampered\n")
    stays(lambda: len(auto.cycles()) == 1, seconds=1.0)
    assert auto.stop(signal.SIGINT) == 0


def test_a_broken_dodo_is_reported_and_the_fix_is_picked_up(auto: Auto, project: Path) -> None:
    auto.wait_cycles(1)
    (project / "dodo.py").write_text(DODO + "\nthis is not python\n")
    wait_for(lambda: any("could not load tasks" in line for line in auto.lines), timeout=20)
    (project / "dodo.py").write_text(DODO)
    drop(project / "src" / "c.txt", b"c\n")
    wait_for(lambda: output(project) == "a\nc\n")
    assert auto.stop() == 0


def test_is_listed_by_doit_help(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "doit", "help", "auto"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quiet-period" in proc.stdout and "--ignore" in proc.stdout


def test_a_foundry_cycle_with_a_broken_order_fails_with_1(tmp_path: Path) -> None:
    """In a foundry project (its pyproject names our `run`), a cycle's exit code is the
    one `doit` gives: 1 for an invalid order, though doit skips the report group after it."""
    from tests.conftest import make_project

    layout = make_project(tmp_path / "factory")
    running = Auto(layout.root)
    try:
        first = running.wait_cycles(1)[0]
        assert "ok" in first, first
        drop(layout.orders_dir / "2025-10-30-001.json", b'{"schema_version": 1')
        second = running.wait_cycles(2)[1]
        assert "FAILED (exit 1)" in second, second
        assert running.stop() == 0
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def test_in_a_foundry_project_it_watches_the_settings_the_plan_names(tmp_path: Path) -> None:
    """The plan is read from the settings too: `doit auto` watches every file the plan
    names, not only the file deps of the tasks it drew (no order here reads the settings)."""
    from tests.conftest import make_project

    layout = make_project(tmp_path / "factory")
    running = Auto(layout.root)
    try:
        running.wait_cycles(1)
        settings = layout.settings_file.read_text()
        assert "experimental_quota = 0.2" in settings
        drop(
            layout.settings_file,
            settings.replace("experimental_quota = 0.2", "experimental_quota = 0.5").encode(),
        )
        second = running.wait_cycles(2)[1]
        assert "after pyproject.toml" in second, second
        assert running.stop() == 0
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def test_a_second_signal_while_stopping_is_no_traceback(auto: Auto) -> None:
    auto.wait_cycles(1)
    auto.proc.send_signal(signal.SIGTERM)
    auto.proc.send_signal(signal.SIGINT)
    assert auto.stop() == 0
    assert not any("Traceback" in line for line in auto.lines), auto.lines


def test_in_a_foundry_project_the_plan_says_what_a_change_is(tmp_path: Path) -> None:
    """Real events in a foundry project: a new order re-runs the graph and gets its report;
    a rewrite with the same bytes, a new mtime, a temp file, a file the plan does not
    read and the foundry's own outputs start no cycle (the plan read those bytes)."""
    from tests.conftest import make_project

    layout = make_project(tmp_path / "factory")
    running = Auto(layout.root)
    try:
        first = running.wait_cycles(1)[0]
        assert "ok" in first and "the plan names" in first, first
        order = layout.orders_dir / "2025-10-28-002.json"
        data = order.read_bytes()
        drop(order, data)  # same bytes, new inode and mtime
        os.utime(order)
        (layout.orders_dir / ".draft.json.tmp").write_text("{")
        (layout.exchange / "notes.txt").write_text("not an input")
        (layout.root / "exchange" / "reports" / "scratch.md").write_text("x")
        stays(lambda: len(running.cycles()) == 1, seconds=1.5)

        new = layout.orders_dir / "2025-10-29-001.json"
        text = data.decode().replace("2025-10-28-002", "2025-10-29-001")
        drop(new, text.replace("20251028002", "20251029001").encode())
        second = running.wait_cycles(2)[1]
        assert "after exchange/orders/2025-10-29-001.json" in second and "ok" in second, second
        assert (layout.root / "exchange" / "reports" / "2025-10-29-001.md").exists()
        stays(lambda: len(running.cycles()) == 2, seconds=1.0)
        assert running.stop() == 0
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def test_a_cycles_child_stops_once_for_either_signal() -> None:
    """The loop terminates its child again when a second signal reaches it while the child
    stops: the child raises for the first signal only, SIGINT or SIGTERM alike."""
    from toyfoundry.watch import doit_auto

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    try:
        for first, second in ((signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGTERM)):
            doit_auto.stop_once()
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(first)
            signal.raise_signal(second)  # ignored: no second KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
