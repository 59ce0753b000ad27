"""The `run` command's process policy: parallel for big builds, serial for small ones, workers
that die with the build, the collector restored, and no interpreter teardown for the CLI."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from toyfoundry.graph import run as run_command

PYPROJECT = """\
[tool.doit]
dep_file = ".toyfoundry/doit.sqlite"
backend = "toyfoundry"

[tool.doit.plugins.backend]
toyfoundry = "toyfoundry.graph.backend:FoundryDB"

[tool.doit.plugins.command]
run = "toyfoundry.graph.run:FoundryRun"
"""

#: Each task writes the pid of the process that ran it (and sleeps a moment when asked, so
#: that a build can be killed while its workers are busy); TEARDOWN says whether the
#: interpreter was torn down.
DODO = """\
import atexit, os, sys, time

atexit.register(lambda: print("TEARDOWN", flush=True))
COUNT = int(os.environ.get("TASKS", "30"))
PAUSE = float(os.environ.get("PAUSE", "0"))


def work(target):
    with open(target, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(PAUSE)
    if os.environ.get("FAIL") == os.path.basename(target):
        return False
    if os.environ.get("RAISE") == os.path.basename(target):
        raise RuntimeError("an action that crashed")


def task_work():
    for i in range(COUNT):
        target = f"out/{i:03}.pid"
        yield {
            "name": str(i),
            "actions": [(work, [target])],
            "file_dep": ["in.txt"],
            "targets": [target],
        }
"""


def _project(root: Path) -> Path:
    (root / "out").mkdir(parents=True)
    (root / "in.txt").write_text("input\n")
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "dodo.py").write_text(textwrap.dedent(DODO))
    return root


def _doit(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdin=subprocess.DEVNULL,
    )


def _pids(root: Path) -> set[str]:
    return {p.read_text() for p in (root / "out").glob("*.pid")}


two_cores = pytest.mark.skipif(run_command.cores() < 2, reason="needs two cores")


@pytest.mark.parametrize("jobs", ["0", "2"])
def test_tasks_skipped_after_a_failure_leave_the_exit_code_to_it(tmp_path: Path, jobs: str) -> None:
    root = _project(tmp_path / "p")
    # `--continue`, as the foundry's graph runs: the `work` group is skipped (UnmetDependency),
    # which doit alone counts as an error (2); the cause was a failed task (1)
    failed = _doit(root, "--continue", "-n", jobs, TASKS="4", FAIL="001.pid")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "UnmetDependency - taskid:work" in failed.stdout
    assert failed.stdout.count(".  work:") == 4  # the others still ran
    # a task that crashed is an error, and the skipped group does not soften it
    crashed = _doit(root, "-a", "--continue", "-n", jobs, TASKS="4", RAISE="002.pid")
    assert crashed.returncode == 2, crashed.stdout + crashed.stderr


@two_cores
def test_a_first_build_of_many_tasks_runs_on_every_core(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    done = _doit(root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(".  work:") == 30
    assert len(_pids(root)) >= 2  # forked workers, not the doit process alone
    again = _doit(root)
    assert again.returncode == 0 and ".  work:" not in again.stdout


def test_a_few_new_tasks_run_serially(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    done = _doit(root, TASKS=str(run_command.PARALLEL_AT - 1))
    assert done.returncode == 0, done.stderr
    assert len(_pids(root)) == 1


def test_dash_n_zero_forces_a_serial_build(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    done = _doit(root, "-n", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(".  work:") == 30
    assert len(_pids(root)) == 1


def test_the_cli_skips_teardown_and_keeps_the_exit_code(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    done = _doit(root, TASKS="3")
    assert done.returncode == 0
    assert "TEARDOWN" not in done.stdout  # the process ended without tearing down
    failed = _doit(root, "-a", TASKS="3", FAIL="001.pid")
    assert failed.returncode == 1  # doit's code for a failed task, as without the shortcut
    assert "TEARDOWN" not in failed.stdout
    listed = _doit(root, "list", TASKS="3")  # other commands end as usual
    assert listed.returncode == 0 and "TEARDOWN" in listed.stdout
    script = Path(sys.executable).with_name("doit")  # the console script, as `make run` runs it
    if script.exists():
        again = subprocess.run(
            [str(script), "-a"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO), "TASKS": "3"},
            stdin=subprocess.DEVNULL,
        )
        assert again.returncode == 0 and "TEARDOWN" not in again.stdout, again.stderr


def test_whole_process_is_false_in_process() -> None:
    assert not run_command.whole_process()  # pytest is the process here: it must carry on


def test_the_collector_is_restored() -> None:
    before = gc.get_threshold()
    with run_command.quiet_collector():
        assert gc.get_threshold()[0] == run_command.GC_THRESHOLD
        gc.freeze()
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@two_cores
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_workers_die_with_a_killed_build(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO), "PAUSE": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(_pids(root)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = {int(pid) for pid in _pids(root) if pid}
    assert len(workers) >= 2, "the build never ran two workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _alive(pid)}
        time.sleep(0.05)
    assert not alive, f"workers outlived the build: {sorted(alive)}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@two_cores
def test_a_worker_killed_mid_task_ends_the_build_instead_of_hanging(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    dodo = root / "dodo.py"
    dodo.write_text(
        dodo.read_text().replace(
            "    time.sleep(PAUSE)\n",
            "    time.sleep(PAUSE)\n"
            "    if target.endswith('007.pid'):\n"
            "        os.kill(os.getpid(), 9)  # a worker dies, as under the out-of-memory killer\n",
        )
    )
    started = time.monotonic()
    done = _doit(root)
    assert time.monotonic() - started < 60
    assert done.returncode == 3, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "a build worker" in lines[0] and "SIGKILL" in lines[0], lines
    assert "Traceback" not in done.stderr


def test_a_very_large_graph_builds_on_every_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers hold no graph, so a graph of 30,000 tasks builds on every core too, with
    one worker more than there are cores, as a smaller one does."""

    size = 30_001

    class Tasks(list[object]):
        def __len__(self) -> int:
            return size

    command = run_command.FoundryRun.__new__(run_command.FoundryRun)
    command.task_list = Tasks()
    command.dep_manager = None
    monkeypatch.setattr(run_command, "cores", lambda: 8)
    monkeypatch.setattr(run_command, "can_start_workers", lambda: True)
    assert command._auto_jobs(always=True) == 9
    size = 3_001
    assert command._auto_jobs(always=True) == 9


BIG_FIRST = """\
import os

DEPS = sorted(f"deps/{'d' * 60}-{i:04}.txt" for i in range(1500))


def task_big():
    # first in the file, so the first job handed to a worker: its pickled file deps
    # (about 100 KB) are more than a pipe holds before anybody reads it
    return {"actions": ["touch big.out"], "file_dep": DEPS, "targets": ["big.out"]}


def task_small():
    for i in range(4):
        yield {"name": str(i), "actions": [f"touch small{i}.out"], "file_dep": DEPS[:1]}
"""


@two_cores
def test_a_first_job_bigger_than_a_pipe_reaches_its_worker(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "deps").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "dodo.py").write_text(BIG_FIRST)
    for i in range(1500):
        (root / "deps" / f"{'d' * 60}-{i:04}.txt").write_text("x")
    done = _doit(root, "-n", "2")
    assert done.returncode == 0, done.stderr
    assert (root / "big.out").exists()
    assert done.stdout.count(".  small:") == 4


def test_a_doit_auto_cycle_keeps_the_tasks_it_reads_after_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `doit auto` cycle is the whole process too, but it reads the tasks' file deps and
    targets once its run is over: our runners release nothing for it."""
    from toyfoundry.graph import run as runmod

    monkeypatch.setattr(runmod, "whole_process", lambda: True)
    assert runmod.releases()
    with runmod.our_runners(drop_targets=True, keep_tasks=True):
        assert not runmod.releases()
        assert not runmod.SlimDispatcher.drop_targets
    assert runmod.releases()
    source = Path(runmod.__file__).parent.parent / "watch" / "doit_auto.py"
    assert "our_runners(keep_tasks=True)" in source.read_text()


def test_a_first_build_of_many_orders_starts_the_fork_server_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only when the build is sure to be parallel: no DB yet, enough orders, nothing named."""
    started: list[str] = []
    monkeypatch.setattr(run_command.workers, "server_pid", lambda: started.append("server"))
    monkeypatch.setattr(run_command, "cores", lambda: 2)
    monkeypatch.setattr(run_command, "can_start_workers", lambda: True)
    orders = tmp_path / "exchange" / "orders"
    orders.mkdir(parents=True)
    (tmp_path / "dodo.py").write_text("")
    monkeypatch.chdir(tmp_path)
    command = run_command.FoundryRun.__new__(run_command.FoundryRun)
    command._jobs_chosen = False

    def early(*args: str) -> bool:
        started.clear()
        chose = command._start_server_early({}, list(args))
        assert chose == bool(started)
        return chose

    for number in range(run_command.PARALLEL_AT // run_command.TASKS_PER_ORDER - 1):
        (orders / f"2025-10-01-{number:03}.json").write_text("{}")
    assert not early()  # too few orders: the build may well be serial
    (orders / "2025-10-02-001.json").write_text("{}")
    assert early()
    assert not early("mint")  # tasks named: only those may run
    command._jobs_chosen = True
    assert not early()  # -n given
    command._jobs_chosen = False
    (tmp_path / ".toyfoundry").mkdir()
    (tmp_path / ".toyfoundry" / "doit.sqlite").write_bytes(b"")
    assert not early()  # built before: how much is stale is the DB's to say
