"""`doit run` with the foundry's process policy: parallel for big builds, and a quiet collector.

Registered in pyproject.toml as doit's `run` command, and handed to doit by `toyfoundry
build` and the graph watcher for a folder without that file (`config.DOIT_PLUGINS`), so
`doit`, `doit run ...`, `toyfoundry build` and the watcher's in-process builds all use it.
It changes how tasks are executed, never which: the graph, the DB records and the
artefacts are the same as with doit's own `run`.

- **Parallel when there is a lot to build.** A fresh clone, a first build or a large
  drop of orders leaves many tasks that never ran. When at least `PARALLEL_AT` of the
  graph's tasks have no record in the DB, the build runs one worker more than there are
  cores: a worker that waits for the next task of a recipe's chain, or for its files to
  reach the disk, leaves its core idle (on this project's 2-core machine, three workers
  built 1,000 orders 5-10% faster than two, and 10,000 orders 2-7% faster; on a
  RAM-backed filesystem, where nothing waits, 2-3% slower). For a few tasks starting
  workers costs more than it saves, so the build stays serial. `-n`/`--process` on the
  command line or `num_process` in the config always wins. The workers come from a
  fork server started once the graph is loaded (before, for a first build sure to be
  parallel, so that its imports overlap the load) and never hold the graph: each gets one small pickled job
  per task (see `workers`), holds the next one in its pipe while it runs one (with
  `continue` on, see `workers.Crew`), and the build records each result in the DB as it arrives (committed a
  few at a time, see `backend`). They run only on Linux, automatically only from a
  single-threaded process (the graph watcher's in-process builds stay serial), and die
  with the build (a parent-death `SIGKILL`), so a killed build never leaves a worker
  writing and runs again one unfinished task per worker and the few finished ones whose
  records were not committed yet. A worker that dies mid-task (the out-of-memory killer) ends the build with
  one line and exit code 3, where doit's own runner would wait for its result for ever.
- **A collector that leaves the graph alone.** The graph's few hundred thousand objects
  live until the command ends; Python's cyclic collector walked them again and again
  (a tenth of a no-op, more than half a second of a full build at 1,000 orders). The
  command collects young objects less often while it loads, and freezes what it loaded
  before it runs the tasks; both are undone when the command ends.
- **Tasks that take less memory.** doit keeps every task and its dispatcher node until
  the command ends. Once loaded, each task keeps only the attributes that differ from the
  usual (`compact`, `SlimTask`), the heap's freed pages go back to the system, and each
  node has one step generator and no empty sets or lists of its own (`SlimNode`,
  `SlimDispatcher`). When the command is the whole process, the target map goes once the
  graph is wired, and a task that finished is released as soon as the dispatcher has its
  result (`release`): its actions, deps, targets and wait sets. A full build's process
  then holds about what it held once the graph was loaded.
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
import gc
import itertools
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import doit.cmd_run
import doit.control
from doit.cmd_run import Run
from doit.control import ExecNode, TaskDispatcher
from doit.dependency import DatabaseException
from doit.exceptions import InvalidDodoFile, TaskFailed, UnmetDependency
from doit.runner import FAILURE, SUCCESS, MRunner, Runner
from doit.task import IOConfig, Task

from toyfoundry import caches, installed
from toyfoundry.errors import FoundryError, os_error_line, say
from toyfoundry.graph import stale, workers
from toyfoundry.graph.implicit import linear_implicit_deps
from toyfoundry.graph.reporter import counted
from toyfoundry.graph.tasks import UNRECORDED, reported, reports_noted, slim_targets
from toyfoundry.graph.workers import WorkerLost
from toyfoundry.store import atomic
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import LockTimeout, lock_timeout, parse_timeout

#: The name of an order's report task, before its order id.
REPORT_PREFIX = "report:"
#: The dodo file doit looks for in the working folder, where a first build starts its
#: workers' fork server early (`FoundryRun._start_server_early`).
DODO_NAME = "dodo.py"
#: Each order's tasks: mint, rituals, report.
TASKS_PER_ORDER = 3
#: Tasks without a record in the DB from which a build runs on every core.
PARALLEL_AT = 24
#: Tasks handed to doit from which the heap is trimmed once they are loaded (a no-op or a
#: new order hands it none or a few, and would pay the trim's walk of the heap for nothing).
TRIM_AT = 1_000
#: Young-generation threshold while the command runs (CPython's default is 700).
GC_THRESHOLD = 50_000

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


def can_start_workers() -> bool:
    """Workers come from a fork server and must die with the build: Linux (the parent-death
    signal), and, for the automatic choice, a single-threaded process (the graph watcher's
    in-process builds stay serial, as they always were)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


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

    def select_task(self, node: Any, tasks_dict: Any) -> bool:
        """doit's choice, and a task chosen to run loses its record before it starts
        (see `FoundryDB.starting`): a build killed mid-task runs that task again."""
        chosen = bool(super().select_task(node, tasks_dict))  # type: ignore[misc]
        backend = self.dep_manager.backend
        if not chosen and node.run_status == "up-to-date" and hasattr(backend, "done_with"):
            backend.done_with(node.task.name)
        starting = getattr(backend, "starting", None)
        if chosen and starting is not None:
            try:
                starting(node.task.name)
            except OSError as exc:
                self._storage_failed(node, exc)
                return False
        return chosen

    def _get_task_args(self, task: Any, tasks_dict: Any) -> None:
        """doit's, without the parser it makes for the options of a task that has none to
        parse (every task of the foundry's graph): its options are then empty."""
        if (
            task.options is None
            and not task.params
            and not task.creator_params
            and task.pos_arg is None
            and not task.getargs
        ):
            task.options = {}
            return
        super()._get_task_args(task, tasks_dict)  # type: ignore[misc]

    def process_task_result(self, node: Any, base_fail: Any) -> None:
        try:
            super().process_task_result(node, base_fail)  # type: ignore[misc]
            if node.run_status == "successful":
                name = node.task.name
                if name.startswith(REPORT_PREFIX):  # the quilt takes its part as current
                    reported(name[len(REPORT_PREFIX) :])
                if node.task.values.get(UNRECORDED):
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

    def run_tasks(self, task_dispatcher: Any) -> None:
        """doit's loop, releasing each finished task once the dispatcher has its result."""
        releasing = releases()
        node = None
        while not self._stop_running:
            try:
                sent, node = node, task_dispatcher.generator.send(node)
            except StopIteration:
                break
            if sent is not None and releasing:
                release(sent)
            if not self.select_task(node, task_dispatcher.tasks):
                continue
            base_fail = self.execute_task(node.task)
            self.process_task_result(node, base_fail)


#: What a finished task's emptied sets are replaced with: one shared object, and any code
#: that would still add to one fails loudly instead of filling it.
_NO_NAMES: frozenset[str] = frozenset()


def release(node: Any) -> None:
    """Drop what doit holds for a task that finished and whose result the dispatcher has
    taken: its actions and their arguments, its file deps, targets and clean actions, and
    its node's (empty) wait sets and spent generator. doit reads none of it again in this
    run, and a full build would otherwise keep it all to the end (70 MB at 10,000 orders).
    The task keeps its name, its values and its statuses. Only for a command that is the
    whole process: a `doit auto` cycle reads the tasks again when the run ends."""
    if node.run_status not in ("successful", "up-to-date"):
        return  # a failure is shown at the end, with its actions' output
    task = node.task
    task._actions = task.targets = ()
    task.file_dep = _NO_NAMES
    if isinstance(task, SlimTask):  # back to the class's usual values
        for name in ("clean_actions", "_action_instances", "dep_changed"):
            task.__dict__.pop(name, None)
    else:
        task.clean_actions = ()
        task._action_instances = task.dep_changed = None
    node.calc_dep = node.wait_run = node.wait_run_calc = node.waiting_me = _NO_NAMES
    node.ancestors = ()
    node.generator = None


class _NoCalc(frozenset[str]):
    """The calc deps of a node whose task has none, and the set of those it waits for: doit
    clears the one and adds nothing to the other, so every such node shares this object.
    Anything added to it fails loudly."""

    def clear(self) -> None:
        pass

    def update(self, *others: Any) -> None:
        if any(others):
            raise TypeError("calc deps for a task that declared none")


_NO_CALC = _NoCalc()


class _NoParams(list[Any]):
    """A task's creator parameters when it has none: doit adds this list to another (so
    not a tuple), and fills it only while the tasks are made. Changing it fails loudly."""

    def _fixed(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the shared empty parameter list is not to be changed")

    append = extend = insert = remove = pop = clear = sort = reverse = _fixed
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _fixed


_NO_PARAMS = _NoParams()


#: Task attributes doit only reads once the graph is loaded (for a task without `calc_dep`,
#: whose results could extend them): an empty one reads as the shared empty value.
_READ_ONLY = frozenset(
    {
        "creator_params",
        "setup_tasks",
        "wild_dep",
        "value_savers",
        "uptodate",
        "clean_actions",
        "teardown",
        "watch",
        "params",
        "getargs",
    }
)


class SlimTask(Task):  # type: ignore[misc]
    """doit's `Task` whose attributes that hold the usual value (None, False, an empty
    collection doit only reads, output captured) are read from the class (`_USUAL`), not
    kept in each task's `__dict__`. Setting one gives the task its own, as for any class
    attribute; doit never changes one of them in place (see `compact`)."""


#: The usual value of each attribute a `SlimTask` reads from its class.
_USUAL: dict[str, Any] = {
    "params": (),
    "creator_params": _NO_PARAMS,
    "options": None,
    "pos_arg": None,
    "pos_arg_val": None,
    "setup_tasks": (),
    "io": IOConfig({"capture": True}),
    "_action_instances": None,
    "dep_changed": None,
    "wild_dep": (),
    "calc_dep": _NO_CALC,
    "loader": None,
    "getargs": MappingProxyType({}),
    "value_savers": (),
    "uptodate": (),
    "subtask_of": None,
    "has_subtask": False,
    "result": None,
    "verbosity": None,
    "custom_title": None,
    "cfg_values": None,
    "_remove_targets": True,
    "clean_actions": (),
    "teardown": (),
    "doc": "",
    "watch": (),
    "meta": None,
    "executed": False,
}
for _name, _value in _USUAL.items():
    setattr(SlimTask, _name, _value)


def _usual(name: str, value: Any) -> bool:
    """Whether a task's `value` of attribute `name` reads the same as the class's."""
    usual = _USUAL.get(name, _USUAL)
    if usual is _USUAL:
        return False
    if value is usual:
        return True
    if name in _READ_ONLY or name == "calc_dep":
        return type(value) in (list, tuple, set, dict) and not value
    if name == "io":
        return type(value) is IOConfig and vars(value) == {"capture": True}
    return type(value) in (bool, str, type(None)) and type(value) is type(usual) and value == usual


def compact(tasks: list[Any]) -> None:
    """Make each loaded task smaller: doit's `Task` sets 34 attributes one by one, most of
    them to None, False or an empty list of its own, and an `IOConfig` and an empty
    `calc_dep` set of its own (1,584 bytes of `__dict__` alone). A task without `calc_dep`
    becomes a `SlimTask` whose `__dict__` keeps only what differs from the usual (its
    name, actions, deps, targets, values): 40 MB at 10,000 orders. A task with `calc_dep`,
    whose results extend its deps in place, keeps every attribute, in a copied `__dict__`
    half the size."""
    for task in tasks:
        attrs = task.__dict__
        if type(task) is not Task or attrs.get("calc_dep"):
            task.__dict__ = dict(attrs)
            continue
        slim = {k: v for k, v in attrs.items() if not _usual(k, v)}
        deps = slim.get("file_dep")
        if type(deps) is set and len(deps) > 4:
            # a set filled one by one keeps the table it grew to: a copy of a mint's six
            # deps takes 472 bytes instead of 728
            copied = set(deps)
            if sys.getsizeof(copied) < sys.getsizeof(deps):
                slim["file_dep"] = copied
        task.__class__ = SlimTask
        task.__dict__ = slim


#: The global tasks that run last, in the build process: every worker retires at the
#: first of them (`workers.Crew.retire_all`).
TAIL = frozenset({"quilt", "export", "dashboard"})


#: True while a caller that reads the tasks once the run is over (a `doit auto` cycle,
#: which watches their file deps) runs them: nothing is released.
_keep_tasks = False


def releases() -> bool:
    """Whether a build releases its finished tasks (see `release`)."""
    return whole_process() and not _keep_tasks


class PoolRunner(_CausedResult, MRunner):  # type: ignore[misc]
    """doit's process runner with workers that do not hold the graph (see `workers`)."""

    free_proc: int
    _crew: workers.Crew | None = None
    #: whether finished tasks are released (`release`)
    releasing: bool = False

    def get_next_job(self, completed: Any) -> bytes | None:
        """doit's, handing out a pickled `workers.Job`; a task that cannot be one runs here."""
        if self._stop_running:
            return None
        node = completed
        ready = self.task_dispatcher.ready
        if completed is not None and isinstance(ready, _Ready):
            # its worker is the one free now: keep it on the same order (see `_Ready`)
            ready.prefer = completed.task.name.partition(":")[2] or None
        while True:
            try:
                sent, node = node, self.task_dispatcher.generator.send(node)
            except StopIteration:
                return None
            if sent is not None and self.releasing:
                release(sent)
            if node == "hold on":
                self.free_proc += 1
                return workers.HOLD
            if self.select_task(node, self.tasks):
                job = workers.job_of(node.task)
                if job is not None:
                    # the caller hands it to a free worker, which starts it at once
                    self.reporter.execute_task(node.task)
                    return job
                if self._crew is not None and node.task.name in TAIL:
                    # the build's tail: the workers would idle through the global tasks,
                    # those still on a report as soon as it is done
                    self._crew.retire_all()
                elif self._crew is not None and not self._crew.busy():
                    # mid-build (`validate` needs no order) the workers wait for this
                    # one task with what their orders left in memory, which a new worker
                    # would lack; retired only when none has a job
                    self._crew.retire()
                self._commit_records()  # what finished waits no longer than this task
                self.process_task_result(node, self.execute_task(node.task))
                # what the task parsed and built is free now (the quilt's and the exports'
                # 40 MB at 10,000 orders): hand its pages back before the next one
                workers.trim()
                if self._stop_running:
                    return None

    def _commit_records(self) -> None:
        """Commit the finished tasks' records that wait (see `backend`), now."""
        commit = getattr(self.dep_manager.backend, "commit", None)
        if commit is not None:
            try:
                commit()
            except OSError as exc:
                self._storage_failed(None, exc)

    def _process_result(self, node: Any, task: Any, result: dict[str, Any]) -> None:
        """doit's, but the output reaches the task's actions only when the reporter shows
        it (a failure): an action object per task would cost the build memory."""
        base_fail = result.get("failure")
        digests = result.get("digests")
        if digests:
            offer = getattr(self.dep_manager.backend, "offer_hashes", None)
            if offer is not None:
                offer(digests)
        folders, data = result["flush"]
        if folders or data:
            written = getattr(self.dep_manager.backend, "written", None)
            if written is not None:  # flushed before the task's record is committed
                written(folders, data=data)
            else:
                atomic.flush_deferred(folders, data=data)
        task.update_from_pickle(result["task"])
        if base_fail is not None:
            for action, out, err in zip(task.actions, result["out"], result["err"], strict=False):
                action.out, action.err = out, err
        self.process_task_result(node, base_fail)

    def run_tasks(self, task_dispatcher: Any) -> None:
        """doit's loop: a job for each free slot (`workers.QUEUED` + 1 per worker, see
        `workers.Crew`), a result recorded as it arrives."""
        self._run_tasks_init(task_dispatcher)
        self.releasing = releases()
        # without `continue` a failure starts nothing more: a job waiting in a worker's
        # pipe would start before the build has seen it
        depth = workers.QUEUED + 1 if self.continue_ else 1
        crew = self._crew = workers.Crew(self.stream, self.num_process, depth)
        failed = True
        try:
            running = 0  # slots not ended
            for _ in range(self.num_process * depth):
                job = self.get_next_job(None)
                if job is None:
                    break  # no more slots than tasks
                crew.put(job)
                running += 1
            due = getattr(self.dep_manager.backend, "commit_due", lambda: None)
            while running:
                if self._stop_running:
                    crew.cancel()
                result = crew.get(due())
                if result is None:  # no result before the records waiting were due
                    self._commit_records()
                    continue
                if "exit" in result:
                    raise result["exit"](result["exception"])
                completed = None
                if "cancelled" not in result:
                    node = task_dispatcher.nodes[result["name"]]
                    self._process_result(node, node.task, result)
                    completed = node
                free, self.free_proc = self.free_proc + 1, 0
                for _ in range(free):
                    job = self.get_next_job(completed)
                    completed = None
                    if job is None:
                        running -= 1
                    crew.put(job)
            failed = False
        finally:
            crew.close(kill=failed, server=not whole_process())


class SlimNode(ExecNode):  # type: ignore[misc]
    """doit's dispatcher node, without two empty sets of its own for a task without calc
    deps, nor two empty lists for the failed and ignored tasks it depends on (made when
    there is one): doit makes the graph's 30,000 nodes in the first seconds of a full
    build, so their size is the build process's peak (16 MB of it at 10,000 orders)."""

    bad_deps: Sequence[Any]
    ignored_deps: Sequence[Any]

    def __init__(self, task: Any, parent: Any) -> None:
        super().__init__(task, parent)
        if not task.calc_dep:
            self.calc_dep = self.wait_run_calc = _NO_CALC
        self.bad_deps = self.ignored_deps = ()

    def parent_status(self, parent_node: Any) -> None:
        """doit's: note a dependency that failed or was ignored."""
        if parent_node.run_status == "failure":
            self.bad_deps = [*self.bad_deps, parent_node]
        elif parent_node.run_status == "ignore":
            self.ignored_deps = [*self.ignored_deps, parent_node]


class SlimDispatcher(TaskDispatcher):  # type: ignore[misc]
    """doit's dispatcher, with a small iterator per node where doit makes two generators.

    doit wraps each node's step generator (`_add_task`) in a second one that drops the
    None it yields for a dependency whose node exists already, and keeps both alive
    while the node waits: 30,000 pairs at 10,000 orders, 20 MB. A task without calc deps,
    setup tasks or a delayed loader (every task of the foundry's graph) gets
    `_PlainSteps`, which gives what doit's loop yields for such a task, in the same order;
    any other task gets doit's own.

    `drop_targets`: the run reads no target map once the graph is loaded (no delayed
    loader, no calc deps): clear it, so that what it names leaves with each released task
    (see `release`). Only for a command that is the whole process (`FoundryRun`).
    """

    drop_targets = False

    def __init__(self, tasks: Any, targets: Any, selected_tasks: Any) -> None:
        super().__init__(tasks, targets, selected_tasks)
        self.ready = _Ready()
        if self.drop_targets and all(not t.loader and not t.calc_dep for t in tasks.values()):
            targets.clear()

    def _add_task(self, node: Any) -> Any:
        task = node.task
        if task.loader or task.calc_dep or task.setup_tasks or node.calc_dep:
            return super()._add_task(node)
        return _PlainSteps(self, node)


class _Ready(deque[Any]):
    """doit's queue of ready nodes, which hands out first, when asked to (`prefer`), a node
    of the same order as the task that just finished: its worker then runs the order's next
    stage (the report after the rituals after the mint) with the order's artefacts still
    in its memo of parsed files (`formats.parsed`), where another worker would read and
    validate them again. Any ready node may run first: only the order changes."""

    #: how far down the queue a preferred node is looked for (it is short once the build runs)
    LOOK = 16

    def __init__(self) -> None:
        super().__init__()
        #: the order id (a task name's part after ':') to hand out first, once
        self.prefer: str | None = None

    def popleft(self) -> Any:
        want, self.prefer = self.prefer, None
        if want is not None:
            for at, node in enumerate(itertools.islice(self, self.LOOK)):
                if node.task.name.partition(":")[2] == want:
                    if at:
                        del self[at]
                        return node
                    break
        return super().popleft()


#: `_PlainSteps.at` before the first step, and once the node waits for its dependencies.
_START, _WAITED = -1, -2


class _PlainSteps:
    """doit's `_add_task` for a task with task deps alone, as an iterator of its own (64
    bytes, where a suspended generator takes 240): each dependency's new node, a wait
    while any of them has not finished, then the task itself."""

    __slots__ = ("at", "deps", "dispatcher", "node")

    def __init__(self, dispatcher: TaskDispatcher, node: Any) -> None:
        self.dispatcher = dispatcher
        self.node: Any = node
        self.deps: Sequence[str] = ()
        self.at = _START

    def __iter__(self) -> _PlainSteps:
        return self

    def __next__(self) -> Any:
        node = self.node
        if node is None:
            raise StopIteration
        at = self.at
        if at == _START:  # doit reads the node's deps at its first step, not before
            self.deps, node.task_dep = node.task_dep, ()
            at = 0
        if at >= 0:
            deps = self.deps
            while at < len(deps):
                made = self.dispatcher._gen_node(node, deps[at])
                at += 1
                if made is not None:
                    self.at = at
                    return made
            self.dispatcher._node_add_wait_run(node, deps)
            self.deps = ()
            if node.wait_run or node.wait_run_calc:
                self.at = _WAITED
                return "wait"
        self.node = None
        return node.task


@contextlib.contextmanager
def our_runners(*, drop_targets: bool = False, keep_tasks: bool = False) -> Iterator[None]:
    """doit's `run` picks its runners by module name: name ours for the block, make its
    dispatcher and nodes slim (`drop_targets`: see `SlimDispatcher`), and add implicit
    task dependencies in linear time (`implicit`: the same graph). `keep_tasks`: the
    caller reads the tasks after the run, so none is released (see `release`)."""
    global _keep_tasks
    before = (
        doit.cmd_run.Runner,
        doit.cmd_run.MRunner,
        doit.control.ExecNode,
        doit.control.TaskDispatcher,
    )
    doit.cmd_run.Runner, doit.cmd_run.MRunner = FoundryRunner, PoolRunner
    doit.control.ExecNode, doit.control.TaskDispatcher = SlimNode, SlimDispatcher
    SlimDispatcher.drop_targets = drop_targets and not keep_tasks
    _keep_tasks = keep_tasks
    try:
        with linear_implicit_deps():
            yield
    finally:
        SlimDispatcher.drop_targets = _keep_tasks = False
        (
            doit.cmd_run.Runner,
            doit.cmd_run.MRunner,
            doit.control.ExecNode,
            doit.control.TaskDispatcher,
        ) = before


def read_by_others(tasks: list[Any]) -> frozenset[str]:
    """The targets that some task lists as a file dep: a worker that writes one reports its
    hash, which the build process would otherwise read back (see `workers`)."""
    deps: set[str] = set()
    for task in tasks:
        deps.update(task.file_dep)
    return frozenset(t for task in tasks for t in task.targets if t in deps)


@contextlib.contextmanager
def _forgetting_readers() -> Iterator[None]:
    try:
        yield
    finally:
        workers.read_by_others = frozenset()


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
        early = self._start_server_early(params, args)
        with quiet_collector():
            try:
                raw = str(params.get("lock_timeout") or "").strip()
                bound = parse_timeout(raw) if raw else None
                with contextlib.ExitStack() as stack:
                    # doit's backend and reporter lookups share the build's one scan
                    stack.enter_context(installed.for_doit())
                    stack.enter_context(reports_noted())
                    if bound is not None:
                        stack.enter_context(lock_timeout(bound))
                    # a plain run hands doit only what may be stale (`stale`)
                    stack.enter_context(stale.plain_run(self, params, args))
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
            if early:
                workers.stop_server()  # the build ran serially after all, or it is done
        return code

    def _start_server_early(self, params: Any, args: list[str]) -> bool:
        """Start the workers' fork server now, before the graph is loaded, when the build is
        sure to be parallel: a first build (no dependency DB yet) of a project with enough
        orders, all stale, and no tasks or job count named. The server's imports (0.7 s of
        one core) then overlap the loading of the graph instead of following it; the first
        worker would otherwise wait for them. Whether the build is parallel is still
        decided as always (`_auto_jobs`); a server it does not use is stopped."""
        if args or self._jobs_chosen or params.get("pdb") or not can_start_workers():
            return False
        if cores() < 2 or not os.path.isfile(DODO_NAME):
            return False
        layout = Layout(Path.cwd())
        if layout.dep_db.exists():
            return False
        try:
            with os.scandir(layout.orders_dir) as found:
                orders = sum(1 for entry in itertools.islice(found, PARALLEL_AT))
        except OSError:
            return False
        if orders * TASKS_PER_ORDER < PARALLEL_AT:
            return False
        try:
            workers.context()
            workers.server_pid()
        except OSError:  # no process to spare: the build starts it when it needs it, or not
            return False
        return True

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
        compact(self.task_list)
        slim_targets(self.task_list)
        # the loaded graph lives until the command ends: no collection needs to walk it
        gc.freeze()
        if len(self.task_list) >= TRIM_AT:
            # the task dicts `compact` replaced, and what drawing the graph left, are free
            # but in the heap's middle: hand their pages back (28 MB at 10,000 orders)
            workers.trim()
        if not getattr(self, "_jobs_chosen", True) and not pdb:
            num_process = self._auto_jobs(always)
        if num_process:
            workers.read_by_others = read_by_others(self.task_list)
        with our_runners(drop_targets=whole_process()), _forgetting_readers():
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
        # every size: the workers hold no graph (see `workers`), so at 10,000 orders two
        # of them added 39 MB (9%) to the build process's 415 MB where forks of doit's
        # runner each ended up with a copy of most of it
        if jobs < 2 or not can_start_workers():
            return 0
        todo = size if always else never_ran(self.dep_manager, self.task_list)
        if todo < PARALLEL_AT:
            return 0
        # one more than the cores at every size: at 10,000 orders a third worker (on two
        # cores) added 23-27 MB to the build's peak (287-291 MB against 264 MB for two),
        # once each recipe's carried positions were an array (`forge.carried.Positions`)
        return jobs + 1
