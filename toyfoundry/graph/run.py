"""`doit run` with the foundry's process policy: parallel for big builds, and a quiet collector.

Registered in pyproject.toml as doit's `run` command, and handed to doit by `toyfoundry
build` and the graph watcher for a folder without that file (`config.DOIT_PLUGINS`), so
`doit`, `doit run ...`, `toyfoundry build` and the watcher's in-process builds all use it.
It changes how tasks are executed, never which: the graph, the DB records and the
artefacts are the same as with doit's own `run`.

- **Parallel when there is a lot to build.** A fresh clone, a first build or a large
  drop of orders leaves many tasks that never ran. When at least `PARALLEL_AT` of the
  graph's tasks have no record in the DB, the build forks one worker per core (doit's
  `MRunner`, as `-n` does), and one more for a graph of up to `EXTRA_WORKER_UP_TO`
  tasks: a worker waiting for its task's files to reach the disk leaves its core idle
  (on this project's 2-core machine, three workers built 1,000 orders 5-10% faster
  than two; on a RAM-backed filesystem, where nothing waits, 2-3% slower). For a few
  tasks a fork costs more than it saves, so the build stays serial, and so does a
  graph of more than `PARALLEL_UP_TO` tasks, whose workers would each end up holding
  most of its memory again. `-n`/`--process` on
  the command line or `num_process` in the config always wins. Workers are forked,
  never spawned (the actions are closures of the loaded graph), only on Linux and from
  a single-threaded process (a fork next to other threads can inherit a lock one of
  them holds), and they die with the build (a parent-death `SIGKILL`), so a killed
  build never leaves a worker writing. A worker that dies mid-task (the out-of-memory
  killer) ends the build with one line and exit code 3, where doit's own runner would
  wait for its result for ever. Jobs and results go through pipes written by the
  sending thread (`SimpleQueue`), not through a feeder thread per queue: a thread switch
  less for every message, several per task (a quarter of the context switches, and a
  few percent of the CPU, of a parallel build of 1,000 orders).
- **A collector that leaves the graph alone.** The graph's few hundred thousand objects
  live until the command ends; Python's cyclic collector walked them again and again
  (a tenth of a no-op, more than half a second of a full build at 1,000 orders). The
  command collects young objects less often while it loads, and freezes what it loaded
  before it runs the tasks; both are undone when the command ends.
- **A failed order fails the build; it is not an error.** With `continue` on, doit marks
  every task that depends on a failed one by `task_dep` (the `report` group) with
  `UnmetDependency`, which it counts as an error: a build with one invalid order ended
  with exit code 2, doit's code for "error executing task". That mark is a consequence,
  so here it leaves the result to its cause: a failed task gives 1, a task error 2.
- **Implicit dependencies in linear time.** doit's check for a task already listed
  in `task_dep` searches a list once per file dep, quadratic for the quilt's 2N
  deps; `implicit` builds the same lists with a set.
- **No teardown.** When the command is the whole process (doit's console script or
  `python -m doit`), the process ends as soon as the build is recorded and the output
  flushed: tearing the interpreter down, object by object with a last full collection,
  cost a no-op at 1,000 orders a fifth of its time, for memory the OS frees at once.
  Not under a tracer or profiler (coverage writes its data at exit).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import doit.cmd_run
from doit.cmd_run import Run
from doit.dependency import DatabaseException
from doit.exceptions import InvalidDodoFile, TaskFailed, UnmetDependency
from doit.runner import FAILURE, SUCCESS, MRunner, Runner

from toyfoundry import caches
from toyfoundry.errors import FoundryError, os_error_line, say
from toyfoundry.graph.implicit import linear_implicit_deps
from toyfoundry.graph.reporter import counted
from toyfoundry.graph.tasks import UNRECORDED
from toyfoundry.store.lock import LockTimeout, lock_timeout, parse_timeout

#: Tasks without a record in the DB from which a build runs on every core.
PARALLEL_AT = 24
#: Graphs larger than this build serially unless `-n` says otherwise: each forked worker
#: ends up with its own copy of most of the graph's memory (at 5,000 orders, 15,000
#: tasks, three processes held 464-495 MB together against 214 MB for one).
PARALLEL_UP_TO = 6_000
#: Graphs up to this size get one worker more than there are cores (memory grows with
#: each: at 1,500 orders, 4,500 tasks, four processes held 230 MB against 200 MB for three).
EXTRA_WORKER_UP_TO = 4_500
#: Young-generation threshold while the command runs (CPython's default is 700).
GC_THRESHOLD = 50_000
_PR_SET_PDEATHSIG = 1

#: `doit --lock-timeout SECONDS`: how long a build waits for the foundry lock at most.
OPT_LOCK_TIMEOUT: dict[str, Any] = {
    "name": "lock_timeout",
    "long": "lock-timeout",
    "type": str,
    "default": "",
    "help": "give up (one line, exit 3) when the foundry lock stays busy this many seconds"
    " [default: wait; $TOYFOUNDRY_LOCK_TIMEOUT]",
}


def cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """Collect young objects less often for the block; undo it and any `gc.freeze` after."""
    before = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, before[1], before[2])
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


#: The build process whose workers must die with it; None until a parallel build starts.
_build_pid: int | None = None


def _die_with_parent() -> None:
    """In a forked worker: be killed when the build that forked it dies."""
    if _build_pid is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != _build_pid:  # the build died before the signal was armed
        os._exit(1)


def can_fork_workers() -> bool:
    """Workers are forked (they run closures of the loaded graph) and must die with the
    build: Linux (fork is safe there, and a parent-death signal exists), and only from a
    single-threaded process."""
    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return False
    method = multiprocessing.get_start_method(allow_none=True)
    if method is None:
        multiprocessing.set_start_method("fork")
        method = "fork"
    return method == "fork"


class WorkerLost(Exception):
    """A worker ended (killed, out of memory) before it reported its task."""


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit status {code}"


def _watched_queue() -> Any:
    """A queue without a feeder thread whose blocking `get` also notices a worker that died.

    doit's parallel runner passes every job, result and reporter call through a
    `multiprocessing.Queue`, whose `put` hands the message to a feeder thread: a thread
    switch and a GIL handover for each of them, several per task, on both sides. A
    `SimpleQueue` writes to the pipe in the caller's thread (the runner never has more
    than one job per free worker in flight, so a writer never waits long on a full pipe).

    doit's runner also waits for results with a plain `get()`; a worker killed mid-task
    (the out-of-memory killer, a crash in an extension) would leave the build waiting
    for ever. This `get` wakes every second and raises `WorkerLost` when a worker of
    this process has ended with a signal or an error status.
    """
    q: Any = multiprocessing.SimpleQueue()
    plain_get = q.get
    workers: list[Any] = []
    build = os.getpid()

    def get() -> Any:
        if os.getpid() != build:
            return plain_get()  # a worker waiting for its next job
        if not workers:
            # the runner starts every worker before it first waits; hold on to them, so
            # one that ends is still seen after anything reaps it
            workers.extend(multiprocessing.active_children())
        while not q._reader.poll(1.0):
            for worker in workers:
                code = worker.exitcode
                if code is not None and code != 0:
                    raise WorkerLost(
                        f"toyfoundry: error: a build worker (pid {worker.pid}) ended with"
                        f" {_exit_text(code)} before finishing its task; the finished"
                        " tasks are recorded, run the build again"
                    ) from None
        return plain_get()

    q.get = get
    return q


class _CausedResult:
    """A runner whose result a task skipped for a failed dependency leaves to that failure,
    and whose dependency DB failing to record (a full disk, an I/O error) ends the build
    with one line and exit 1 instead of a traceback."""

    final_result: int
    dep_manager: Any
    reporter: Any
    _stop_running: bool
    _storage_said: bool = False

    def _storage_failed(self, node: Any, exc: OSError) -> None:
        """Say it once, fail the task it was recording, and start nothing more: every later
        record would fail the same way. What was committed stays; the next build resumes."""
        line = os_error_line(exc)
        if not self._storage_said:
            self._storage_said = True
            say(line)
        if node is not None:
            node.run_status = "failure"
            self.reporter.add_failure(node.task, TaskFailed(line))
        if self.final_result == SUCCESS:
            self.final_result = FAILURE
        self._stop_running = True

    def process_task_result(self, node: Any, base_fail: Any) -> None:
        try:
            super().process_task_result(node, base_fail)  # type: ignore[misc]
            if node.run_status == "successful" and node.task.values.get(UNRECORDED):
                # done, but on bytes that changed under it (forge.snapshot): run it next time
                self.dep_manager.remove_success(node.task)
        except OSError as exc:
            self._storage_failed(node, exc)

    def _handle_task_error(self, node: Any, base_fail: Any) -> None:
        before = self.final_result
        try:
            super()._handle_task_error(node, base_fail)  # type: ignore[misc]
        except OSError as exc:  # forgetting the task's old record failed
            self._storage_failed(None, exc)
        line = getattr(base_fail, "storage_error", None)
        if line is not None:  # a task's write failed (tasks._guard): once, and stop
            if not self._storage_said:
                self._storage_said = True
                say(line)
            self._stop_running = True
        if isinstance(base_fail, UnmetDependency) and before != SUCCESS:
            self.final_result = before  # its cause set it: 1 for a failure, 2 for an error

    def finish(self) -> None:
        """doit's `finish`, with the DB's last commit failing in one line, not a traceback."""
        try:
            self.dep_manager.close()
        except OSError as exc:
            self._storage_failed(None, exc)
        self.teardown()  # type: ignore[attr-defined]
        self.reporter.complete_run()


class FoundryRunner(_CausedResult, Runner):  # type: ignore[misc]
    """doit's serial runner, with the result of a failed build as its cause says."""


class WatchedRunner(_CausedResult, MRunner):  # type: ignore[misc]
    """doit's process runner, with queues that notice a dead worker (see `_watched_queue`)."""

    Queue = staticmethod(_watched_queue)

    def _run_start_processes(self, job_q: Any, result_q: Any) -> list[Any]:
        """Start each worker, then hand it its first job: doit queues the job first, which a
        queue without a feeder thread cannot do for a job bigger than the pipe holds (a
        task with thousands of file deps) while nobody reads yet."""
        workers: list[Any] = []
        for _ in range(self.num_process):
            job = self.get_next_job(None)
            if job is None:
                break  # no more workers than tasks
            worker = self.Child(
                target=self.execute_task_subprocess,
                args=(job_q, result_q, self.reporter.__class__),
            )
            worker.start()
            workers.append(worker)
            job_q.put(job)
        return workers


@contextlib.contextmanager
def our_runners() -> Iterator[None]:
    """doit's `run` picks its runners by module name: name ours for the block, and add
    implicit task dependencies in linear time (`implicit`: the same graph)."""
    before = doit.cmd_run.Runner, doit.cmd_run.MRunner
    doit.cmd_run.Runner, doit.cmd_run.MRunner = FoundryRunner, WatchedRunner
    try:
        with linear_implicit_deps():
            yield
    finally:
        doit.cmd_run.Runner, doit.cmd_run.MRunner = before


def never_ran(dep_manager: Any, task_list: list[Any]) -> int:
    """Tasks with actions that have no record in the DB (never built, or forgotten)."""
    backend = dep_manager.backend
    known = getattr(backend, "recorded", backend.in_)
    return sum(1 for t in task_list if counted(t) and not known(t.name))


def whole_process() -> bool:
    """True when this doit command is the process: doit's console script or `python -m doit`,
    with no tracer or profiler that still has to write its data at exit."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "doit.__main__":
        return True
    cli = sys.modules.get("doit.__main__")
    return cli is not None and getattr(main, "main", None) is getattr(cli, "main", None)


def end_process(code: int) -> None:
    """Flush the output and end the process with `code`, skipping the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)


class FoundryRun(Run):  # type: ignore[misc]
    """doit's `run`, with the process policy in the module's docstring."""

    doc_purpose = "run tasks (all stale ones by default); on every core when many never ran"
    cmd_options = (*Run.cmd_options, OPT_LOCK_TIMEOUT)

    def execute(self, params: Any, args: list[str]) -> Any:
        caches.next_build()  # this build's caches, dropped when the next build starts
        self._jobs_chosen = "num_process" in params._non_default_keys or bool(
            params.get("num_process")
        )
        with quiet_collector():
            try:
                raw = str(params.get("lock_timeout") or "").strip()
                bound = parse_timeout(raw) if raw else None
                with contextlib.ExitStack() as stack:
                    if bound is not None:
                        stack.enter_context(lock_timeout(bound))
                    code = super().execute(params, args)
            except LockTimeout as timeout:
                # the build could not start: one line, doit's code for that
                sys.stderr.write(f"{timeout}\n")
                code = 3
            except FoundryError as exc:  # a --lock-timeout that is not a number of seconds
                sys.stderr.write(f"toyfoundry: error: {exc}\n")
                code = 3
            except WorkerLost as lost:
                sys.stderr.write(f"{lost}\n")
                code = 3
            except OSError as exc:
                # the dependency DB could not be written while the graph was loaded (a full
                # disk, an I/O error): one line, as for any failed write, and exit 1
                self._close_quietly()
                sys.stderr.write(f"{os_error_line(exc)}\n")
                code = 1
            except InvalidDodoFile as exc:
                if isinstance(exc.__cause__, OSError):
                    self._close_quietly()  # a stamp file could not be written while loading
                    code = 1
                elif isinstance(exc.__cause__, FoundryError):
                    code = 3  # the layout's own folders are links: the build cannot start
                else:
                    raise
                sys.stderr.write(f"{exc}\n")
            except DatabaseException as exc:
                # a dependency DB that cannot be used (a corrupt file, another tool's DB)
                # is the user's to remove, as the message says: one line, not a traceback
                sys.stderr.write(f"toyfoundry: error: {exc}\n")
                code = 3
            if isinstance(code, int) and whole_process():
                end_process(code)  # before the collector's settings return and it runs once more
        return code

    def _close_quietly(self) -> None:
        """Release the DB (and with it the foundry lock) after a failure while loading;
        its own error, if it fails again, was said already."""
        manager = getattr(self, "dep_manager", None)
        if manager is not None:
            with contextlib.suppress(OSError):
                manager.close()

    def _execute(  # doit passes its options by name, from this signature
        self,
        outfile: Any,
        verbosity: Any = None,
        always: bool = False,
        continue_: bool = False,
        reporter: Any = "console",
        num_process: int = 0,
        par_type: str = "process",
        single: bool = False,
        auto_delayed_regex: bool = False,
        force_verbosity: bool = False,
        failure_verbosity: int = 0,
        pdb: bool = False,
    ) -> Any:
        # the loaded graph lives until the command ends: no collection needs to walk it
        gc.freeze()
        if not getattr(self, "_jobs_chosen", True) and not pdb:
            num_process = self._auto_jobs(always)
        parallel = bool(num_process) and par_type == "process"
        if parallel:
            global _build_pid
            if _build_pid is None:
                os.register_at_fork(after_in_child=_die_with_parent)
            _build_pid = os.getpid()
        with our_runners():
            return super()._execute(
                outfile,
                verbosity=verbosity,
                always=always,
                continue_=continue_,
                reporter=reporter,
                num_process=num_process,
                par_type=par_type,
                single=single,
                auto_delayed_regex=auto_delayed_regex,
                force_verbosity=force_verbosity,
                failure_verbosity=failure_verbosity,
                pdb=pdb,
            )

    def _auto_jobs(self, always: bool) -> int:
        jobs = cores()
        size = len(self.task_list)
        if jobs < 2 or size > PARALLEL_UP_TO or not can_fork_workers():
            return 0
        todo = size if always else never_ran(self.dep_manager, self.task_list)
        if todo < PARALLEL_AT:
            return 0
        return jobs + 1 if size <= EXTRA_WORKER_UP_TO else jobs
