"""Build workers that never hold the graph: forked from a fork server, fed one small job at a time.

doit's parallel runner forks its workers after the graph is loaded. Each then holds a
copy-on-write view of the parent's heap, and every object it allocates or touches (a
refcount, a free slot in one of the graph's memory pools) copies a page of it: at 5,000
orders three workers held 588 MB summed over the tree against 239 MB for one process,
so big graphs built serially.

Here the workers come from a fork server (`multiprocessing`'s `forkserver`): a fresh
interpreter, started when a build turns out to be parallel, that imports the action
modules once and forks each worker from that state. A worker holds the imports (shared
with the server and its siblings) and what its own tasks fill, never the graph. Each job
is plain picklable data: the task's name, its actions as the dodo declared them (an
importable function and its arguments, or a command line), its effective verbosity and
the few task attributes an action may ask for by name. Results go back as doit's runner
expects them (values, result, captured output, the failure), with the folders the task
renamed files into, and the parent records each task in the DB as it arrives, as with
doit's own workers; it flushes those folders, several tasks' at once, before it commits
their records (see `backend`). A job whose actions ask for nothing by name runs without
a doit `Task` (`run_plain`).

A result also carries the content hash and stat of each target that another task reads
(`Job.digest`: the mint's artefact, read by the order's rituals, report and the quilt),
made from the bytes the worker wrote while it had them (`atomic.noting_writes`). The
build process records each dep's hash when it saves a task that reads it, and would
otherwise read back and hash every artefact the workers have just written: it offers
these to the DB's hash cache (`backend.FoundryDB.offer_hashes`), which takes one only
while the file's (mtime, size, inode) are still those the worker saw after its rename,
so the recorded state is the one a read would give.

A task whose job does not pickle (an action that is a closure or a lambda, or that asks
for the `task` object itself), that has a teardown, or whose action reads what the build
process holds already (the whole plan, the rollup the quilt parsed: `IN_BUILD`) runs in
the build process, between two results: same result, only not in parallel.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import hashlib
import inspect
import math
import multiprocessing
import os
import pickle
import queue
import select
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from doit.action import PythonAction
from doit.exceptions import BaseFail, InvalidTask, TaskFailed
from doit.task import Stream, Task

from toyfoundry.children import die_with, running_server
from toyfoundry.errors import os_error_line
from toyfoundry.store import atomic

#: Imported by the fork server before it forks any worker, so that every worker shares
#: them: the foundry's task actions and what they import when they first run.
PRELOAD = (
    "toyfoundry.graph.tasks",
    "toyfoundry.forge.mint",
    "toyfoundry.forge.rituals",
    "toyfoundry.telemetry.reports",
    "toyfoundry.telemetry.quilt",
    "toyfoundry.telemetry.exports",
    "toyfoundry.telemetry.dashboard",
    "toyfoundry.exchange.validate",
)
#: Actions that read the whole plan (`tasks.current_plan`): the build process has it loaded,
#: a worker would load it again (80 MB at 10,000 orders) for one task. They run there, and
#: so does the dashboard, which draws from the rollup the quilt has just parsed in the
#: build process, where a worker would parse all of it again (60 MB at 10,000 orders).
IN_BUILD = frozenset(
    {
        "toyfoundry.graph.tasks.quilt_action",
        "toyfoundry.graph.tasks.export_action",
        "toyfoundry.graph.tasks.dashboard_action",
        "toyfoundry.graph.tasks.validate_action",
    }
)
#: No job yet for a free worker (doit's "hold on"): it stays free.
HOLD = b"hold"
#: A worker's answer to a job it was sent but did not start: the build stopped meanwhile.
CANCELLED: dict[str, Any] = {"cancelled": True}
#: Jobs a worker holds beyond the one it runs (see `Crew`).
QUEUED = 1
#: The targets that some task of the build lists as a file dep: a worker reports the hash
#: of those it writes (`Job.digest`). Set by the runner for a parallel build.
read_by_others: frozenset[str] = frozenset()


def context() -> BaseContext:
    """The fork-server start method, preloading the worker module and the actions."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, *PRELOAD])
    return ctx


def server_pid() -> int | None:
    """Start the fork server if it is not running; its pid, for the workers' death check."""
    from multiprocessing import forkserver

    forkserver.ensure_running()
    running = running_server()
    return None if running is None else running[1]


def stop_server() -> None:
    """End the fork server once the build's workers are gone (an in-process build, the
    tests): it would otherwise wait, holding its imports, until the process ends."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


@dataclass
class Job:
    """What a worker needs to run one task: no graph, no dependency state."""

    name: str
    actions: list[Any]
    verbosity: int | None
    capture: bool
    options: dict[str, Any] | None = None
    pos_arg_val: Any = None
    targets: list[str] = field(default_factory=list)
    file_dep: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    #: every action is a Python callable that asks for nothing by name, and the task has
    #: no options and captures its output: the worker runs the actions without a `Task`
    plain: bool = False
    #: targets another task reads: their hashes come back with the result (module docstring)
    digest: list[str] = field(default_factory=list)


@functools.cache
def _asks_for(func: Any) -> frozenset[str]:
    """The task attributes a Python action takes by name (doit passes them when it runs it)."""
    try:
        names = set(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return frozenset({"task"})
    return frozenset(names & {"task", "targets", "dependencies", "changed"})


def job_of(task: Any) -> bytes | None:
    """The task as a pickled `Job`, or None when it must run in the build process."""
    if task.teardown:
        return None
    asked: set[str] = set()
    for action in task._actions:
        func = action[0] if isinstance(action, tuple) and action else action
        if isinstance(func, str | list):
            if "%(" in str(func):  # a command line that names them
                asked |= {"targets", "dependencies", "changed"}
        elif callable(func):
            if f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '')}" in IN_BUILD:
                return None
            asked |= _asks_for(func)
        else:
            return None
    if "task" in asked:
        return None
    plain = (
        not asked
        and not task.options
        and task.pos_arg is None
        and task.io.capture
        and all(isinstance(a, tuple) or callable(a) for a in task._actions)
    )
    targets = list(task.targets)
    job = Job(
        name=task.name,
        actions=task._actions,
        verbosity=task.verbosity,
        capture=task.io.capture,
        options=task.options,
        pos_arg_val=task.pos_arg_val,
        targets=targets,
        file_dep=sorted(task.file_dep) if "dependencies" in asked else [],
        changed=list(task.dep_changed or ()) if "changed" in asked else [],
        plain=plain,
        digest=[t for t in targets if t in read_by_others] if read_by_others else [],
    )
    try:
        return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None


def serve(
    jobs: Any,
    results: Any,
    path: list[str],
    stream: Stream,
    parent: int | None,
    cwd: str = "",
    stopped: Any = None,
) -> None:
    """A worker's life: run each job and send its result, until an empty job. The build
    process told the reporter of the task when it handed the job over: the worker starts
    it at once, and a message of its own would cost both processes a wake-up per task.
    `cwd`: the build's folder, which the targets' names are relative to; `stopped`: a
    shared flag the build sets when it stops, after which a job is answered `CANCELLED`
    (see `Crew`)."""
    # what the server imported stays shared only while nothing writes to its pages: the
    # collector would, walking (and so touching) every object the worker inherited
    gc.freeze()
    die_with(parent)
    sys.path[:] = path  # the dodo's folder, for the dodo's own functions
    if cwd and os.getcwd() != cwd:  # a server started before doit moved to the dodo's folder
        os.chdir(cwd)
    # the flusher wants the GIL back after each flush and rename: at the default 5 ms a
    # CPU-bound job would hold it that long each time, and the result would wait
    sys.setswitchinterval(SWITCH_INTERVAL)
    flusher = Flusher(results)
    try:
        while True:
            payload = jobs.recv_bytes()
            flusher.check()
            if not payload:
                flusher.close()
                flusher.check()
                return
            if stopped is not None and stopped.value:
                flusher.put(CANCELLED)
                continue
            # no `trim` after a job: the next one reuses the pages it freed, and handing
            # them back after every task cost a worker 7% more CPU in page faults for 2-3 MB
            # less memory each
            flusher.put(run_staged(pickle.loads(payload), stream, cwd, flusher))
    except (SystemExit, KeyboardInterrupt, Exception) as exc:
        flusher.close()
        results.send({"exit": exc.__class__, "exception": str(exc)})


def run_staged(job: Job, stream: Stream, cwd: str, flusher: Flusher) -> Done:
    """Run a job with its targets staged, for `flusher` to put in place. A job that raises
    (an interrupt: an action's own error is its result) has what it wrote put in place
    and flushed at once, after the jobs before it, as if it had not been staged."""
    done = Done(job, cwd)
    noting = (
        atomic.noting_writes(done.stage.note)
        if done.stage.note is not None
        else contextlib.nullcontext()
    )
    with atomic.deferred_folder_syncs() as done.block, noting, atomic.staging(done.stage):
        try:
            done.result = run_plain(job, stream) if job.plain else run_task(job, stream)
        except BaseException:
            flusher.close()
            (folders, _), *_ = atomic.publish([done.stage])
            atomic.flush_deferred([*folders, *done.block.folders], data=done.block.data)
            raise
    return done


#: A worker's `sys.setswitchinterval`: how long its running job may keep the GIL from the
#: flusher thread, which holds it for a few hundred microseconds per batch.
SWITCH_INTERVAL = 0.0005


class Done:
    """A job whose actions ran: its result, and what it wrote that is not in place yet."""

    def __init__(self, job: Job, cwd: str) -> None:
        self.digests: dict[str, tuple[str, int, int, int, str]] = {}
        note = _noter(set(job.digest), cwd, self.digests) if job.digest else None
        wanted = {os.path.join(cwd, t) for t in job.targets} | set(job.targets)
        self.stage = atomic.Stage(frozenset(wanted), note)
        #: what its ledger appends and its writes of other files left to flush
        self.block = atomic.Block()
        self.result: dict[str, Any] = {}

    def finish(self, folders: set[str], error: OSError | None) -> dict[str, Any]:
        """The result to send once its files are in place (`folders`, their folders) or
        could not be put there (`error`, which fails the task as a storage error)."""
        result = self.result
        # the folders its renames went to are flushed by the build process, with those
        # of the other tasks it records in the same commit (see `backend`)
        result["flush"] = (sorted(folders | self.block.folders), self.block.data)
        if error is not None:
            line = os_error_line(error)
            failure = TaskFailed(line)
            failure.storage_error = line  # the runner stops the build (see `tasks._guard`)
            result["failure"] = failure
        elif self.digests:
            result["digests"] = list(self.digests.values())
        return result


class Flusher:
    """A worker's thread that puts its finished jobs' files in place and sends their results.

    A job's targets are staged (`atomic.Stage`): written to temp files, not flushed. The
    worker hands the job here and starts its next one; this thread takes every job that
    finished since its last flush, flushes all their temp files at once, renames them in
    place and sends the results, in the order the jobs ran. A worker used to wait for each
    job's flush itself: 4 ms of a report's 10, sampled at 1,000 orders. Other messages
    (`CANCELLED`) go through here too, so that they keep their place.
    """

    def __init__(self, results: Any) -> None:
        self.results = results
        self.queue: queue.SimpleQueue[Done | dict[str, Any] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="toyfoundry-flusher", daemon=True)
        self.thread.start()

    def put(self, item: Done | dict[str, Any]) -> None:
        self.queue.put(item)

    def check(self) -> None:
        """Raise what stopped the thread (a result pipe that broke) in the worker."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Send what waits, then end the thread (`check` says whether it could)."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def _run(self) -> None:
        try:
            while True:
                batch = [self.queue.get()]
                with contextlib.suppress(queue.Empty):
                    while batch[-1] is not None:
                        batch.append(self.queue.get_nowait())
                done = [item for item in batch if isinstance(item, Done)]
                placed = iter(atomic.publish([item.stage for item in done]))
                for item in batch:
                    if item is None:
                        return
                    self.results.send(
                        item.finish(*next(placed)) if isinstance(item, Done) else item
                    )
        except BaseException as exc:  # handed to the worker's thread (`check`)
            self.error = exc


def _noter(
    wanted: set[str], cwd: str, into: dict[str, tuple[str, int, int, int, str]]
) -> Callable[[Path, bytes], None]:
    """What `atomic.noting_writes` calls for each file a job writes: for a wanted target,
    its name, its (mtime, size, inode) once in place, and the sha256 of the bytes written
    (the checker's `whole_hash` of the file), the last write of a path winning."""
    prefix = cwd.rstrip("/") + "/" if cwd else ""

    def note(path: Path, data: bytes) -> None:
        name = str(path)
        if prefix and name.startswith(prefix):
            name = name[len(prefix) :]
        if name not in wanted:
            return
        try:
            st = os.stat(name if not prefix else prefix + name)
        except OSError:
            into.pop(name, None)
            return
        digest = hashlib.sha256(data).hexdigest()
        into[name] = (name, st.st_mtime_ns, st.st_size, st.st_ino, digest)

    return note


def run_task(job: Job, stream: Stream) -> dict[str, Any]:
    """Run a job as doit's runner would run its task; the result doit's runner expects."""
    task = Task(
        job.name,
        job.actions,
        file_dep=job.file_dep,
        targets=job.targets,
        verbosity=job.verbosity,
        io={"capture": job.capture},
    )
    task.options = job.options
    task.pos_arg_val = job.pos_arg_val
    task.dep_changed = job.changed
    failure = task.execute(stream)
    result: dict[str, Any] = {
        "name": job.name,
        "task": {"values": task.values, "result": task.result, "executed": True},
        "out": [action.out for action in task.actions],
        "err": [action.err for action in task.actions],
    }
    if failure:
        result["failure"] = failure
    return result


def run_plain(job: Job, stream: Stream) -> dict[str, Any]:
    """`run_task` for a plain job (see `Job.plain`), without a doit `Task`: its actions run
    as `Task.execute` runs them, each a `PythonAction` of no task, which captures its
    output and takes no arguments by name, as a plain job's actions ask. A `Task` and
    doit's look at each callable's signature cost a worker more than the stat and the
    read of a small artefact, on every task."""
    out, err = stream._get_out_err(job.verbosity)
    actions = [_python_action(action) for action in job.actions]
    values: dict[str, Any] = {}
    returned = None
    failure = None
    for action in actions:
        failure = action.execute(out, err)
        if isinstance(failure, BaseFail):
            break
        failure = None
        returned = action.result
        values.update(action.values)
    result: dict[str, Any] = {
        "name": job.name,
        "task": {"values": values, "result": returned, "executed": True},
        "out": [action.out for action in actions],
        "err": [action.err for action in actions],
    }
    if failure:
        result["failure"] = failure
    return result


def _python_action(action: Any) -> PythonAction:
    """doit's `create_action` for a Python action, tied to no task."""
    if isinstance(action, tuple):
        if len(action) > 3:
            raise InvalidTask(f"invalid 'actions' tuple length. got: {action!r}")
        func, args, kwargs = (*action, None, None, None)[:3]
        return PythonAction(func, args, kwargs)
    return PythonAction(action)


def trim() -> None:
    """Give the free pages of the heap back to the system (glibc), for the build process
    after a graph or a global task of tens of MB: freed in the heap's middle, they would
    otherwise stay its memory for the rest of the build."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None)


class WorkerLost(Exception):
    """A worker ended (killed, out of memory) before it reported its task."""


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit status {code}"


class Crew:
    """The build's workers, each with a pipe of its own for jobs and one for results.

    doit's runner hands a job to the queue when a worker is free and reads results from
    another queue; `put` and `get` keep that shape. Pipes of their own need no lock (a
    shared queue's are named semaphores, which a build that ends without teardown would
    leave to the resource tracker), a job goes to the worker with the fewest jobs, and a
    worker that dies is seen at once: its result pipe ends.

    **A job waiting in each worker's pipe.** The runner sees `depth` slots per worker
    (`QUEUED` + 1): a worker holds the job it runs and the next one, so it starts that one
    the moment it sends a result, where it used to wait for the build process to wake,
    record the result and choose its next task, while both cores ran the other worker.
    Each worker waited so about a tenth of a build of 10,000 orders (two workers, sampled
    from `/proc`). A job goes to the least loaded worker (the one whose result came last
    on a tie, to keep an order's stages together, see `run._Ready`); while fewer workers
    run than the runner asked for (`limit`), one with a job already starts a new one.
    A build that stops (a record it could not write) cancels the jobs that wait
    (`cancel`): a worker then answers each with `CANCELLED` instead of running it.
    """

    def __init__(self, stream: Stream, limit: int = 1, depth: int = 1) -> None:
        self.stream = stream
        self.limit = max(1, limit)
        self.depth = max(1, depth)
        self.ctx: Any = context()
        self.server: int | None = None
        self.processes: list[Any] = []
        self.jobs: dict[Connection, Connection] = {}  # result pipe -> the same worker's job pipe
        self.owner: dict[Connection, Any] = {}  # result pipe -> its worker's process
        self.load: dict[Connection, int] = {}  # job pipe -> jobs sent, no result yet
        self.room: dict[Connection, int] = {}  # job pipe -> jobs it may hold (0: told to end)
        self.told: set[Connection] = set()  # job pipes sent the end (`retire`, `retire_all`)
        self.last: Connection | None = None  # the job pipe of the worker that answered last
        self.ready: list[Any] = []
        # read by each worker before it starts a job: set when the build stops
        self.stopped: Any = self.ctx.RawValue("b", 0)
        # one poll set for the build, where `multiprocessing.connection.wait` would make
        # and fill a selector for every message (two per task)
        self.poller = select.poll()
        self.by_fd: dict[int, Connection] = {}

    def __len__(self) -> int:
        return len(self.processes)

    def _fork(self) -> Connection:
        """Fork one more worker from the server; its job pipe."""
        if self.server is None:
            self.server = server_pid()
        job_r, job_w = self.ctx.Pipe(duplex=False)
        result_r, result_w = self.ctx.Pipe(duplex=False)
        pipe: Connection = job_w
        process = self.ctx.Process(
            target=serve,
            args=(
                job_r,
                result_w,
                list(sys.path),
                self.stream,
                self.server,
                os.getcwd(),
                self.stopped,
            ),
        )
        process.start()
        job_r.close()
        result_w.close()  # only the worker writes: its end closing is its death
        self.processes.append(process)
        self.poller.register(result_r.fileno(), select.POLLIN)
        self.by_fd[result_r.fileno()] = result_r
        self.jobs[result_r] = pipe
        self.owner[result_r] = process
        self.load[pipe] = 0
        self.room[pipe] = self.depth
        return pipe

    def _open(self) -> list[Connection]:
        """The job pipes of the workers that may take a job now."""
        return [pipe for pipe, room in self.room.items() if self.load[pipe] < room]

    def put(self, job: bytes | None) -> None:
        """A job for a free slot; None ends a slot (and its worker with its last slot);
        HOLD leaves the slot free. With no worker to take it (they retired, see `retire`,
        or fewer run than `limit`) a job starts a new one, and None has nothing to end."""
        if job == HOLD:
            return
        open_ = self._open()
        if job is None:
            if open_:
                pipe = min(open_, key=self.load.__getitem__)
                self.room[pipe] -= 1
                if not self.room[pipe]:
                    self._tell(pipe)
            return
        least = min((self.load[p] for p in open_), default=None)
        live = sum(1 for room in self.room.values() if room)
        if least is None or (least and live < self.limit):
            pipe = self._fork()
        elif self.last in open_ and self.load[self.last] == least:
            pipe = self.last
        else:
            pipe = next(p for p in open_ if self.load[p] == least)
        try:
            pipe.send_bytes(job)
        except OSError:  # its worker died: `get` reports it when its result pipe ends
            self.room[pipe] = 0
        self.load[pipe] += 1

    def _tell(self, pipe: Connection) -> None:
        """End the worker once it has answered the jobs it holds."""
        self.room[pipe] = 0
        if pipe not in self.told:
            self.told.add(pipe)
            # one that died meanwhile is reported by `get` when its result pipe ends
            with contextlib.suppress(OSError):
                pipe.send_bytes(b"")

    def busy(self) -> int:
        """How many workers hold a job now."""
        return sum(1 for load in self.load.values() if load)

    def retire(self) -> None:
        """End the workers that wait for a job: the build process is about to run a task
        itself (the quilt, the exports: the last tasks of a build), and idle workers would
        hold their memory all that time. A later job starts a new one."""
        for pipe, room in list(self.room.items()):
            if room and not self.load[pipe]:
                self._tell(pipe)

    def retire_all(self) -> None:
        """`retire`, and tell each worker still running a job to end once it has sent its
        result: the build's tail (the quilt, then the exports and the dashboard) runs in
        the build process while the last reports may still run, and a worker left idle
        through it held its memory (two of them 80 MB at 10,000 orders) at the build's
        peak, when the quilt's ledger reader is forked beside it. Its results stay in its
        pipe for `get`."""
        for pipe in list(self.room):
            self._tell(pipe)

    def cancel(self) -> None:
        """The build stops: each worker answers the jobs still waiting in its pipe with
        `CANCELLED` instead of running them (the one it runs finishes)."""
        self.stopped.value = 1

    def get(self, within: float | None = None) -> dict[str, Any] | None:
        """The next result of any worker, which frees its slot; None when `within` seconds
        pass first (without `within`, it waits for one)."""
        while True:
            if not self.ready:
                if not self.jobs:
                    raise RuntimeError("no build worker left to wait for")
                wait = 1000 if within is None else math.ceil(within * 1000)
                self.ready = [self.by_fd[fd] for fd, _ in self.poller.poll(wait)]
                if not self.ready and within is not None:
                    return None
                continue
            conn = self.ready.pop()
            try:
                message: dict[str, Any] = conn.recv()
            except (EOFError, OSError):
                process = self.owner.pop(conn)
                pipe = self.jobs.pop(conn)
                self.told.discard(pipe)
                held = self.load.pop(pipe, 0)
                self.room.pop(pipe, None)
                if self.last is pipe:
                    self.last = None
                self.poller.unregister(conn.fileno())
                del self.by_fd[conn.fileno()]
                process.join(5)
                code = process.exitcode
                if code or held:
                    raise WorkerLost(
                        f"toyfoundry: error: a build worker (pid {process.pid}) ended with"
                        f" {_exit_text(code or 0)} before finishing its task; the finished"
                        " tasks are recorded, run the build again"
                    ) from None
                continue
            pipe = self.jobs[conn]
            self.load[pipe] -= 1
            self.last = pipe
            return message

    def close(self, *, kill: bool = False, server: bool = True) -> None:
        """Wait for the workers (end them first when the build failed), then the server.
        `server` False leaves the server to end with the process, which is about to: it
        ends when the build's end of its "alive" pipe closes, and waiting for its exit
        (the teardown of every module it imported) cost the build's tail a tenth of a
        second or more."""
        for process in self.processes:
            with contextlib.suppress(Exception):
                if kill:
                    process.terminate()
                process.join(5)
        if self.server is not None and server:
            stop_server()
