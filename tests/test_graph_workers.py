"""Build workers from a fork server: which tasks become jobs, and a build mixing both kinds."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from doit.control import ExecNode
from doit.task import Stream, Task

from tests.conftest import make_project
from tests.test_run_command import PYPROJECT, _doit, two_cores
from toyfoundry.graph import tasks as foundry_tasks
from toyfoundry.graph import workers
from toyfoundry.graph.run import compact, release


def plain(target: str) -> None:
    Path(target).write_text("x")


def wants_changed(changed: list[str]) -> None:
    del changed


def wants_task(task: Any) -> None:
    del task


def talks(word: str) -> Any:
    print(f"out {word}")
    sys.stderr.write(f"err {word}\n")
    return {"False": False, "dict": {"v": 1}, "str": "done", "none": None}.get(word, word)


def fails(reason: str) -> Any:
    from doit.exceptions import TaskFailed

    print("before")
    if reason == "raise":
        raise ValueError("broken")
    return TaskFailed(reason)


def test_a_task_of_importable_functions_becomes_a_small_job() -> None:
    task = Task("t", [(plain, ["a.out"])], file_dep=["in.txt"], targets=["a.out"])
    task.dep_changed = ["in.txt"]
    job = workers.job_of(task)
    assert job is not None
    loaded = pickle.loads(job)
    assert loaded.actions == [(plain, ["a.out"])] and loaded.targets == ["a.out"]
    assert loaded.file_dep == [] and loaded.changed == []  # not asked for: not sent
    asking = Task("t", [(wants_changed,)], file_dep=["in.txt"])
    asking.dep_changed = ["in.txt"]
    job = workers.job_of(asking)
    assert job is not None and pickle.loads(job).changed == ["in.txt"]


@pytest.mark.parametrize(
    "actions",
    [
        [(talks, ["dict"]), (talks, ["str"])],
        [(talks, ["none"]), (talks, [], {"word": "dict"})],
        [(talks, ["False"]), (talks, ["dict"])],
        [(fails, ["no"]), (talks, ["dict"])],
        [(fails, ["raise"])],
        [(talks, [["not", "a", "value"]])],
    ],
)
@pytest.mark.parametrize("verbosity", [0, 1, 2, None])
def test_a_plain_job_runs_as_its_doit_task_would(
    actions: list[Any], verbosity: int | None, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without a `Task`, the same values, result, captured and shown output and failure."""
    from doit.task import Stream

    job = pickle.loads(workers.job_of(Task("t", actions, verbosity=verbosity)) or b"")
    assert job.plain
    stream = Stream(1)
    ran = []
    for run in (workers.run_task, workers.run_plain):
        result = run(job, stream)
        failure = result.pop("failure", None)
        shown = capfd.readouterr()
        ran.append((result, type(failure), str(failure)[:60], shown.out, shown.err))
    assert ran[0] == ran[1]


def test_a_job_that_asks_for_anything_is_not_plain() -> None:
    task = Task("t", [(wants_changed,)], file_dep=["in.txt"])
    task.dep_changed = []
    assert not pickle.loads(workers.job_of(task) or b"").plain
    assert not pickle.loads(workers.job_of(Task("t", ["echo hi"])) or b"").plain
    quiet = Task("t", [(plain, ["a.out"])], io={"capture": False})
    assert not pickle.loads(workers.job_of(quiet) or b"").plain
    options = Task("t", [(plain, ["a.out"])])
    options.options = {"x": 1}
    assert not pickle.loads(workers.job_of(options) or b"").plain


def test_tasks_a_worker_cannot_run_alone_stay_in_the_build() -> None:
    assert workers.job_of(Task("t", [lambda: None])) is None  # does not pickle
    assert workers.job_of(Task("t", [(wants_task,)])) is None  # asks for the task object
    quilt = Task("t", [(foundry_tasks.quilt_action, ["."])])
    assert workers.job_of(quilt) is None  # reads the plan the build has loaded
    assert workers.job_of(Task("t", ["echo %(targets)s"], targets=["x"])) is not None


MIXED = """\
import os


def work(target):
    with open(target, "w") as f:
        f.write(f"{os.getpid()} {os.getppid()}")


def task_work():
    for i in range(30):
        yield {"name": str(i), "actions": [(work, [f"out/{i:03}.pid"])], "targets": [f"out/{i:03}.pid"]}


def task_inline():
    def here():  # a closure: it cannot be sent to a worker
        work("out/inline.pid")

    return {"actions": [here], "targets": ["out/inline.pid"]}
"""


@two_cores
def test_workers_are_not_forks_of_the_build(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "out").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "dodo.py").write_text(MIXED)
    done = _doit(root, "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    build, _ = (root / "out" / "inline.pid").read_text().split()
    ran = [p.read_text().split() for p in (root / "out").glob("0*.pid")]
    assert len(ran) == 30
    assert {pid for pid, _ in ran} - {build}, "no task ran in a worker"
    # forked from the fork server, never from the build process that holds the graph
    assert all(parent != build for pid, parent in ran if pid != build)


def _built(root: Path) -> dict[str, bytes]:
    tops = [
        root / ".toyfoundry" / "build",
        root / "exchange" / "reports",
        root / "exchange" / "outbox",
    ]
    return {
        str(path.relative_to(root)): path.read_bytes()
        for top in tops
        for path in sorted(top.rglob("*"))
        if path.is_file()
    }


@two_cores
def test_a_parallel_build_that_releases_finished_tasks_builds_what_a_serial_one_does(
    tmp_path: Path,
) -> None:
    """`python -m doit` is the whole process, so its parallel runner drops each finished
    task's actions, deps and wait sets (`run.release`): same artefacts, same records."""
    built = {}
    for jobs in ("0", "2"):
        root = tmp_path / f"n{jobs}"
        make_project(root)
        done = _doit(root, "-n", jobs)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        built[jobs] = _built(root)
        again = _doit(root, "-n", jobs)
        assert ".  " not in again.stdout, again.stdout  # every task was recorded
    assert built["0"] == built["2"]


def test_release_leaves_a_finished_task_its_name_values_and_status() -> None:
    task = Task("t", [(plain, ["a.out"])], file_dep=["in.txt"], targets=["a.out"])
    task.values = {"k": 1}
    node = ExecNode(task, None)
    node.run_status = "failure"
    release(node)
    assert task.file_dep == {"in.txt"}  # a failure is shown with its actions at the end
    node.run_status = "successful"
    release(node)
    assert task.name == "t" and task.values == {"k": 1} and node.run_status == "successful"
    assert not task.file_dep and not task.targets and not task._actions
    assert not node.waiting_me and node.generator is None


def test_a_compacted_task_keeps_every_attribute_in_less_memory() -> None:
    task = Task("t", [(plain, ["a.out"])], file_dep=["in.txt"], targets=["a.out"])
    before = dict(vars(task))
    size = sys.getsizeof(task.__dict__)
    compact([task])
    assert isinstance(task, Task) and sys.getsizeof(task.__dict__) * 3 < size
    for name, value in before.items():
        now = getattr(task, name)
        if isinstance(value, list | set | dict) and not value:
            assert not now and not isinstance(now, str), name  # an empty one, shared
        elif name == "io":
            assert now.capture is True
        else:
            assert now is value, name
    assert task.setup_tasks == () and task.teardown == () and task.value_savers == ()
    with pytest.raises(TypeError):
        task.creator_params.append("x")  # the shared empty list is not to be filled
    task.verbosity = 2  # setting one gives the task its own
    assert task.verbosity == 2 and Task("u", [(plain, [])]).verbosity is None


def test_a_task_with_calc_deps_keeps_its_own_attributes() -> None:
    task = Task("t", [(plain, ["a.out"])], calc_dep=["c"])
    before = dict(vars(task))
    compact([task])
    assert type(task) is Task and vars(task) == before


def test_a_task_without_parameters_gets_the_options_doit_would_give() -> None:
    from toyfoundry.graph.run import FoundryRunner

    runner = object.__new__(FoundryRunner)
    ours, theirs = Task("t", [(plain, ["a"])]), Task("t", [(plain, ["a"])])
    runner._get_task_args(ours, {})
    theirs.init_options()
    assert ours.options == theirs.options == {}
    with_params = Task("p", [(plain, ["a"])], params=[{"name": "x", "default": 3}])
    runner._get_task_args(with_params, {})
    assert with_params.options == {"x": 3}


def test_records_wait_for_a_few_more_and_their_folders_are_flushed_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records are committed several at a time, each commit after the flush of the folders
    the workers left to flush; a record waiting for its commit reads back as it will be."""
    from toyfoundry.graph import backend
    from toyfoundry.store import atomic

    events: list[str] = []
    monkeypatch.setattr(atomic, "flush_deferred", lambda folders, data: events.append("flush"))
    db = backend.FoundryDB(str(tmp_path / ".toyfoundry" / "doit.sqlite"), None)
    real = db._transaction
    monkeypatch.setattr(db, "_transaction", lambda write: (events.append("commit"), real(write)))
    try:
        for i in range(backend.COMMIT_EVERY - 1):
            db.written([str(tmp_path)], data=False)
            db.set(f"t{i}", "deps:", [])
        assert events == [] and db.recorded("t0") and db.get("t0", "deps:") == []
        assert db._conn.execute("select count(*) from doit").fetchone()[0] == 0
        db.written([str(tmp_path)], data=True)
        db.set("last", "deps:", [])
        assert events == ["flush", "commit"]
        assert db._conn.execute("select count(*) from doit").fetchone()[0] == backend.COMMIT_EVERY
        db.set("late", "deps:", [])
        due = db.commit_due()
        assert due is not None and 0 < due <= backend.COMMIT_WITHIN
    finally:
        db.dump()  # commits what waits
    assert events == ["flush", "commit", "commit"]
    again = backend.FoundryDB(str(tmp_path / ".toyfoundry" / "doit.sqlite"), None)
    try:
        assert again.recorded("late") and again.recorded("t0")
    finally:
        again.dump()


def writes(target: str, other: str) -> None:
    from toyfoundry.store.atomic import write_atomic

    write_atomic(Path(target), b"read by another task\n")
    write_atomic(Path(other), b"read by nobody\n")


def test_a_worker_reports_the_hash_of_a_target_another_task_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash, from the bytes written, and the stat once in place: what the checker would
    find reading the file back; for the targets another task lists as a file dep only."""
    import hashlib

    from toyfoundry.graph.backend import FoundryDB
    from toyfoundry.graph.checker import file_hash, whole_hash

    monkeypatch.chdir(tmp_path)
    task = Task("t", [(writes, ["read.json", "unread.json"])], targets=["read.json", "unread.json"])
    monkeypatch.setattr(workers, "read_by_others", frozenset({"read.json", "x"}))
    job: workers.Job = pickle.loads(workers.job_of(task) or b"")
    assert job.digest == ["read.json"]
    got: dict[str, Any] = {}
    with workers.atomic.noting_writes(workers._noter({"read.json"}, str(tmp_path), got)):
        workers.run_plain(job, Stream(0))
    st = os.stat("read.json")
    want = hashlib.sha256(Path("read.json").read_bytes()).hexdigest()
    assert got == {"read.json": ("read.json", st.st_mtime_ns, st.st_size, st.st_ino, want)}
    assert want == whole_hash("read.json")

    db = FoundryDB(str(tmp_path / "doit.sqlite"), None)
    try:
        db.offer_hashes(got.values())
        # taken at the stat the worker saw, and remembered as if hashed here
        assert file_hash("read.json", st) == want
        assert db.cached_hash("read.json", st) == want
        stale = ("unread.json", 1, 2, 3, "not the bytes")
        db.offer_hashes([stale])  # another stat than the file's: never taken
        assert file_hash("unread.json") == whole_hash("unread.json") != "not the bytes"
    finally:
        db.dump()


def test_the_quilt_takes_as_current_the_parts_of_the_reports_that_succeeded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner notes each report task that succeeds in the build; the quilt action hands
    those orders to `build_quilt` as current, and nothing once the build is over."""
    from types import SimpleNamespace

    from doit.runner import Runner

    from toyfoundry.graph.run import FoundryRunner
    from toyfoundry.telemetry import quilt

    given: list[frozenset[str]] = []
    monkeypatch.setattr(
        quilt, "build_quilt", lambda layout, ids, changed, current: given.append(current)
    )
    monkeypatch.setattr(foundry_tasks, "_plan", lambda root: SimpleNamespace(orders=[]))
    monkeypatch.setattr(Runner, "process_task_result", lambda *args: None)  # doit's part
    runner = object.__new__(FoundryRunner)
    with foundry_tasks.reports_noted():
        for name, status in [
            ("report:a", "successful"),
            ("report:b", "failure"),
            ("mint:c", "successful"),
        ]:
            task = Task(name, [(plain, ["x"])])
            runner.process_task_result(SimpleNamespace(task=task, run_status=status), None)
        foundry_tasks.quilt_action(".", [])
    foundry_tasks.quilt_action(".", [])
    assert given == [frozenset({"a"}), frozenset()]


TAIL = """\
import os
import time
from pathlib import Path


def slow(target):
    Path(target).write_text(str(os.getpid()))
    time.sleep(0.5)


def task_work():
    for i in range(4):
        yield {
            "name": str(i),
            "actions": [(slow, [f"out/{i}.pid"])],
            "targets": [f"out/{i}.pid"],
            "uptodate": [True],
        }


def task_quilt():
    def here():  # a closure: it runs in the build process, while the workers still sleep
        pids = set()
        for _ in range(200):
            pids = {p.read_text() for p in Path("out").glob("*.pid")}
            if len(pids) >= 2:
                break
            time.sleep(0.05)
        for _ in range(200):
            alive = {pid for pid in pids if _alive(int(pid))}
            if not alive:
                break
            time.sleep(0.05)
        Path("out/alive").write_text(" ".join(sorted(alive)))

    return {"actions": [here], "targets": ["out/alive"], "uptodate": [True]}


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
"""


@two_cores
def test_the_tail_ends_every_worker_once_its_job_is_done(tmp_path: Path) -> None:
    """A task of the build's tail (`run.TAIL`) that runs in the build process while
    workers still run jobs: they end as soon as their results are sent, instead of
    holding their memory through the tail; their results are still recorded."""
    root = tmp_path / "p"
    (root / "out").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "dodo.py").write_text(TAIL)
    done = _doit(root, "-n", "2", "work:0", "work:1", "quilt", "work:2", "work:3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "out" / "alive").read_text() == ""  # every worker it saw had ended
    again = _doit(root, "-n", "2")
    assert ".  " not in again.stdout, again.stdout  # every task was recorded


QUEUE = """\
import time
from pathlib import Path

DOIT_CONFIG = {"continue": CONTINUE}


def slow(target, fail=False):
    time.sleep(1.0)
    if fail:
        return False
    Path(target).write_text("x")


def task_work():
    for i in range(3):
        yield {
            "name": str(i),
            "actions": [(slow, [f"out/{i}"], {"fail": i == 0 and not CONTINUE})],
            "targets": [f"out/{i}"],
            "uptodate": [True],
        }


def task_hold():
    def here():  # a closure: it runs in the build process, between two results
        seen = "before" if Path("out/1").exists() else "never"
        for _ in range(400):
            if seen != "never":
                break
            time.sleep(0.05)
            if Path("out/1").exists():
                seen = "while"
        Path("out/seen").write_text(seen)

    return {"actions": [here], "targets": ["out/seen"], "uptodate": [True]}
"""


@two_cores
def test_a_worker_runs_the_job_waiting_in_its_pipe_while_the_build_is_busy(
    tmp_path: Path,
) -> None:
    """One worker holds the job it runs and the next (`workers.QUEUED`): it starts the next
    as soon as it has sent a result, while the build process records that result and
    goes on (here with a task of its own)."""
    root = tmp_path / "p"
    (root / "out").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "dodo.py").write_text(QUEUE.replace("CONTINUE", "True"))
    done = _doit(root, "-n", "1", "work:0", "work:1", "hold", "work:2")
    assert done.returncode == 0, done.stdout + done.stderr
    # work:1 waited in the worker's pipe and ran while `hold` ran, started right after
    # work:0's result; it used to be handed over once that result was recorded, and to
    # be done before `hold` started
    assert (root / "out" / "seen").read_text() == "while"
    assert (root / "out" / "2").exists()
    again = _doit(root, "-n", "1")
    assert ".  " not in again.stdout, again.stdout  # every task was recorded


@two_cores
def test_without_continue_a_failure_starts_nothing_more(tmp_path: Path) -> None:
    """Without `continue`, a failure stops the build: no job waits in a worker's pipe
    (it would start before the build saw the failure), so nothing more runs."""
    root = tmp_path / "p"
    (root / "out").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "dodo.py").write_text(QUEUE.replace("CONTINUE", "False"))
    done = _doit(root, "-n", "1", "work:0", "work:1", "work:2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "work:0" in done.stdout + done.stderr
    assert not (root / "out" / "1").exists()
    assert not (root / "out" / "2").exists()


def test_a_crew_that_was_cancelled_answers_a_waiting_job_without_running_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that stops (a record it could not write) cancels what waits in the workers'
    pipes: a worker answers such a job `CANCELLED` and writes nothing."""
    monkeypatch.chdir(tmp_path)
    job = workers.job_of(Task("work:0", [(plain, ["made"])]))
    assert job is not None
    crew = workers.Crew(Stream(0), 1, 2)
    try:
        crew.put(job)
        assert crew.get(30)["name"] == "work:0"
        (tmp_path / "made").unlink()
        crew.cancel()
        crew.put(job)
        assert crew.get(30) == workers.CANCELLED
        assert not (tmp_path / "made").exists()
        crew.retire_all()
    finally:
        crew.close(kill=True)


def test_a_jobs_targets_are_in_place_when_its_result_is_sent_and_results_keep_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's flusher renames a job's staged targets, then sends its result with their
    folders (for the build process's flush) and the hash of the one another task reads;
    a message sent after it (`CANCELLED`) comes after it."""
    import multiprocessing

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(workers, "read_by_others", frozenset({"read.json"}))
    task = Task("t", [(writes, ["read.json", "unread.json"])], targets=["read.json"])
    job: workers.Job = pickle.loads(workers.job_of(task) or b"")
    got, sent = multiprocessing.Pipe(duplex=False)
    flusher = workers.Flusher(sent)
    done = workers.run_staged(job, Stream(0), str(tmp_path), flusher)
    assert not Path("read.json").exists()  # staged: a target of the job
    assert Path("unread.json").read_bytes() == b"read by nobody\n"  # not one: in place
    flusher.put(done)
    flusher.put(workers.CANCELLED)
    flusher.close()
    result = got.recv()
    assert Path("read.json").read_bytes() == b"read by another task\n"
    assert result["name"] == "t" and "failure" not in result
    assert result["flush"] == (["."], False)  # the folder as the writer named it
    assert [name for name, *_ in result["digests"]] == ["read.json"]
    assert got.recv() == workers.CANCELLED
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_a_job_whose_targets_cannot_be_put_in_place_fails_as_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from toyfoundry.store import fsio

    monkeypatch.chdir(tmp_path)
    task = Task("t", [(plain_write, ["out.json"])], targets=["out.json"])
    job: workers.Job = pickle.loads(workers.job_of(task) or b"")
    got, sent = multiprocessing.Pipe(duplex=False)
    flusher = workers.Flusher(sent)
    done = workers.run_staged(job, Stream(0), str(tmp_path), flusher)
    monkeypatch.setenv(fsio.FAULT_ENV, "enospc:fsync:1")
    fsio.reset_faults()
    try:
        flusher.put(done)
        flusher.close()
    finally:
        monkeypatch.delenv(fsio.FAULT_ENV)
        fsio.reset_faults()
    failure = got.recv()["failure"]
    assert failure.storage_error.startswith("toyfoundry: error: ENOSPC: No space left")
    assert not Path("out.json").exists()
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def plain_write(target: str) -> None:
    from toyfoundry.store.atomic import write_atomic

    write_atomic(Path(target), b"{}\n")
