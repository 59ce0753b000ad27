"""`toyfoundry watch`: a warm process that rebuilds only what a change in exchange/ affects.

Unlike `doit auto`, which restarts doit and re-checks the whole graph for every
event, the watcher keeps what it knows between events: a snapshot of every
exchange input (path -> size, mtime, sha256) and the last plan. Each cycle
rescans the inputs (events are only hints), turns the differences into the tasks
they affect, and runs doit in-process on just those, under the foundry lock.
A new order X selects mint, rituals and report of X and of the later orders of
its recipe (doit's early cutoff skips those whose inputs did not change) plus
the global tasks; a recipe selects all its orders, a checkpoint all orders of
its phase, a review its order and the later ones, a deleted order the later
ones. The global tasks list every order's artefacts as file deps, so doit still
checks (stats) those, but rebuilds nothing it does not have to.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from toyfoundry.errors import FoundryError
from toyfoundry.exchange.loader import settings
from toyfoundry.graph import plan as planning
from toyfoundry.graph.reporter import counted
from toyfoundry.store import safe_read
from toyfoundry.store.layout import INPUT_FOLDERS, Layout
from toyfoundry.store.lock import FoundryLock
from toyfoundry.watch.observer import (
    Change,
    Clock,
    EventSource,
    Hints,
    ScanResult,
    StableScanner,
    WatchdogSource,
    WatchRoot,
)

#: Per-order stages and global tasks of the graph, in the order the line lists them.
ORDER_STAGES = ("mint", "rituals", "report")
GLOBAL_TASKS = ("quilt", "export", "dashboard", "validate")

Dodo = ModuleType | Mapping[str, Any]


# --------------------------------------------------------------------------- doit in-process


class Tally:
    """A doit reporter that prints nothing and keeps count; the watcher prints one line instead.

    Failures the task did not explain itself (crashes, setup errors) go to `err`
    in full; a `TaskFailed` already printed its one-line problems.
    """

    desc = "counts tasks for the watchers; prints only crashes"

    def __init__(self, err: TextIO | None = None) -> None:
        self.err = err
        self.total = 0
        self.ran: list[str] = []
        self.uptodate: list[str] = []
        self.failed: list[str] = []

    _counts = staticmethod(counted)

    def _print(self, text: str) -> None:
        stream = self.err or sys.stderr
        stream.write(text.rstrip("\n") + "\n")
        stream.flush()

    def initialize(self, tasks: Mapping[str, Any], selected_tasks: Sequence[str]) -> None:
        self.total = sum(1 for t in tasks.values() if self._counts(t))

    def get_status(self, task: Any) -> None:
        return None

    def execute_task(self, task: Any) -> None:
        if self._counts(task):
            self.ran.append(task.name)

    def add_failure(self, task: Any, fail: Any) -> None:
        self.failed.append(task.name)
        name = fail.get_name()
        if name not in ("TaskFailed", "UnmetDependency"):
            self._print(f"{name} - taskid:{task.name}\n{fail.get_msg().rstrip()}")

    def add_success(self, task: Any) -> None:
        return None

    def skip_uptodate(self, task: Any) -> None:
        if self._counts(task):
            self.uptodate.append(task.name)

    def skip_ignore(self, task: Any) -> None:
        return None

    def cleanup_error(self, exception: Any) -> None:
        self._print(f"cleanup error: {exception.get_msg().rstrip()}")

    def runtime_error(self, msg: str) -> None:
        self._print(f"doit: {msg.rstrip()}")

    def teardown_task(self, task: Any) -> None:
        return None

    def complete_run(self) -> None:
        return None


@dataclass
class GraphRun:
    """One in-process doit run: what was asked for, what ran, what failed, and doit's exit code."""

    code: int
    selected: list[str] | None
    total: int
    ran: list[str]
    uptodate: list[str]
    failed: list[str]
    seconds: float


def namespace(dodo: Dodo | None) -> dict[str, Any]:
    """The task module's names as doit's loader sees them; None is Toyfoundry's own graph."""
    if dodo is None:
        from toyfoundry.graph import dodo as graph_dodo

        dodo = graph_dodo
    return dict(vars(dodo)) if isinstance(dodo, ModuleType) else dict(dodo)


def load_dodo(spec: str) -> ModuleType:
    """A task module from a `.py` file path or an importable module name."""
    if spec.endswith(".py"):
        path = Path(spec).absolute()
        found = importlib.util.spec_from_file_location(f"_toyfoundry_dodo_{path.stem}", path)
        if found is None or found.loader is None:
            raise FoundryError(f"{spec}: -: cannot be loaded as a task module")
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise FoundryError(f"{spec}: -: cannot be imported: {exc}") from None


def run_graph(
    layout: Layout,
    tasks: Sequence[str] | None = None,
    *,
    dodo: Dodo | None = None,
    err: TextIO | None = None,
) -> GraphRun:
    """Run doit in this process from the project folder: `tasks`, or the default tasks if None."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from toyfoundry.graph import backend
    from toyfoundry.graph.config import DOIT_PLUGINS

    tally = Tally(err)
    names = namespace(dodo)
    names["DOIT_CONFIG"] = {**(names.get("DOIT_CONFIG") or {}), "reporter": tally}
    started = time.perf_counter()
    with contextlib.chdir(layout.root):
        try:
            main = DoitMain(ModuleTaskLoader(names), extra_config=DOIT_PLUGINS)
            code = int(main.run(["run", *(tasks or [])]))
        finally:
            # doit leaves its DB open when it fails before running (an unknown task name,
            # a bad dodo); in a long-lived process that would keep the foundry lock for ever
            leaked = backend.current()
            if leaked is not None:
                leaked.dump()
    return GraphRun(
        code=code,
        selected=None if tasks is None else list(tasks),
        total=tally.total,
        ran=tally.ran,
        uptodate=tally.uptodate,
        failed=tally.failed,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- what a change affects


def affected_orders(
    layout: Layout,
    changes: Iterable[Change],
    old: planning.Plan | None,
    new: planning.Plan,
) -> set[str]:
    """Orders of the new plan whose tasks a set of input changes may make stale.

    The plan answers, not rules of the watcher's own: an order is affected when a
    changed path is one its mint reads (the plan's `inputs`: its order file, recipe,
    checkpoint, review, sprint peers, the settings), in the plan before the change
    (a deleted order, a removed review) or after it (a new order, an added recipe),
    and then so are the later orders of its recipe, which chain on it.
    """
    new_nodes = new.by_id
    rels = {os.path.relpath(c.path, layout.root) for c in changes}
    out: set[str] = set()
    for plan in (old, new):
        for node in plan.orders_reading(rels) if plan is not None else []:
            out.add(node.order_id)
            if node.recipe:
                out.update(
                    n.order_id
                    for n in new.orders
                    if n.recipe == node.recipe and n.order_id > node.order_id
                )
    return out & new_nodes.keys()


def affected_tasks(
    layout: Layout,
    changes: Iterable[Change],
    old: planning.Plan | None,
    new: planning.Plan,
    names: Mapping[str, Any],
) -> list[str]:
    """Task names to run for `changes`: the affected orders' stages, then the global tasks."""
    orders = sorted(affected_orders(layout, changes, old, new))
    stages = [s for s in ORDER_STAGES if f"task_{s}" in names]
    selected = [f"{stage}:{order}" for order in orders for stage in stages]
    return selected + [g for g in GLOBAL_TASKS if f"task_{g}" in names]


def focus_orders(layout: Layout, plan: planning.Plan, selected: Iterable[str]) -> set[str]:
    """The orders doit must see to run `selected`: their own, and, going back along each
    recipe's chain, every earlier order whose artefacts are missing (doit builds those
    first; an order whose artefacts exist is to its followers just a set of files)."""
    nodes = plan.by_id
    out = {name.partition(":")[2] for name in selected if ":" in name} & nodes.keys()
    for order_id in sorted(out):
        node = nodes[order_id]
        while node.previous is not None and node.previous not in out:
            before = nodes[node.previous]
            if all(
                os.path.exists(layout.root / p) for p in (before.mint, before.rituals, before.chain)
            ):
                break
            out.add(before.order_id)
            node = before
    return out


# --------------------------------------------------------------------------- one cycle


@dataclass
class CycleResult:
    """What one cycle saw and did; `started`/`finished` are `time.monotonic()` readings."""

    trigger: str
    started: float
    finished: float = 0.0
    changes: list[Change] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)
    deferred: bool = False
    full: bool = False
    build: GraphRun | None = None
    retry_after: float | None = None
    error: str | None = None

    @property
    def built(self) -> bool:
        return self.build is not None

    @property
    def ran(self) -> list[str]:
        """Tasks this cycle executed ([] when it did not build)."""
        return list(self.build.ran) if self.build is not None else []


def _short(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def describe(layout: Layout, result: CycleResult) -> str:
    """The one line a rebuild prints: what changed, what was rebuilt, how long it took."""
    changes = [
        f"{os.path.relpath(c.path, layout.exchange)} {c.what}"
        for c in sorted(result.changes, key=lambda c: c.path)
    ]
    what = _short(changes, 3) or "no input change"
    if result.full:
        what = f"start ({len(changes)} input(s))"
    build = result.build
    if build is None:
        return f"watch: {what}"
    seconds = result.finished - result.started
    if build.ran:
        done = f"rebuilt {len(build.ran)} of {build.total} task(s): {_short(build.ran, 8)}"
    else:
        done = f"all {build.total} task(s) up to date"
    line = f"watch: {what} -> {done} in {seconds:.2f}s"
    if build.failed:
        line += f"; FAILED {_short(build.failed, 8)}"
    elif build.code not in (0, 1):
        line += f"; doit exit code {build.code}"
    return line


# --------------------------------------------------------------------------- the watcher


class GraphWatcher:
    """The foundry's graph watcher: drive it with `run_cycle()` or run its loop with `run()`.

    `on_cycle` is called after every cycle (with or without a build) with its
    `CycleResult`; benchmarks time write-to-report latency from it. `source`
    makes the event source pluggable (a `ScriptedSource` in tests); by default
    it is watchdog's native observer on `exchange/`. doit runs from the project
    folder, so a build changes the process's working folder while it runs.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        dodo: Dodo | None = None,
        source: EventSource | None = None,
        quiet: float = 0.05,
        max_delay: float = 3.0,
        settle: float = 2.0,
        rescan: float = 10.0,
        max_pending: float = 30.0,
        initial_build: bool = True,
        on_cycle: Callable[[CycleResult], None] | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        # the graph's plan names files from the resolved working folder: compare like with like
        self.layout = layout = Layout(layout.root.resolve())
        self.dodo = dodo
        self.source: EventSource = source or WatchdogSource()
        self.rescan = rescan
        self.max_pending = max_pending
        self.initial_build = initial_build
        self.on_cycle = on_cycle
        self.out = out
        self.err = err
        self.clock = clock
        conf = settings(layout)
        self.scanner = StableScanner(
            quiet=quiet,
            settle=settle,
            check="json",
            max_bytes=conf.max_file_bytes,
            max_depth=conf.max_depth,
            clock=clock,
        )
        self.hints = Hints(quiet=quiet, max_delay=max_delay, accept=self.relevant, clock=clock)
        self.lock = FoundryLock(
            layout.lock_file, purpose="toyfoundry watch", wait_message=self._say
        )
        self.cycles = 0
        #: cycles finished so far: the mark `wait_for_cycle` counts from
        self.finished = 0
        self._done = threading.Condition()
        self._recent: deque[tuple[int, CycleResult]] = deque(maxlen=1024)
        self.builds = 0
        self._plan: planning.Plan | None = None
        self._unbuilt: list[Change] = []
        self._first_scan = True
        self._full = False
        self._deferred_since: float | None = None

    # --- output ---
    def _say(self, line: str) -> None:
        stream = self.out or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def _warn(self, line: str) -> None:
        stream = self.err or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    # --- what is watched ---
    def relevant(self, path: Path) -> bool:
        """True for paths that can change the graph's inputs; never the foundry's own outputs."""
        if path == self.layout.settings_file:
            return True
        try:
            parts = path.relative_to(self.layout.exchange).parts
        except ValueError:
            return False
        if not parts:
            return True
        if parts[0] not in INPUT_FOLDERS or self.layout.is_owned_output(path):
            return False
        return len(parts) == 1 or not safe_read.is_skipped_name(path.name)

    def inputs(self) -> list[Path]:
        """Every input file the graph reads (the same listing the graph's plan uses): the
        exchange's input folders and the settings (`[tool.toyfoundry]` in pyproject.toml,
        which experimental orders read); which orders a change affects is the plan's say."""
        found: list[Path] = []
        for folder in INPUT_FOLDERS:
            try:
                found += safe_read.list_json(self.layout.exchange / folder)
            except safe_read.ReadError:
                continue
        if planning.classify(self.layout.settings_file) != "missing":
            found.append(self.layout.settings_file)
        return found

    # --- cycles ---
    def run_cycle(self, trigger: str = "rescan") -> CycleResult:
        """Rescan the inputs and rebuild what changed; defers while an input is still being written."""
        self.cycles += 1
        result = CycleResult(trigger=trigger, started=self.clock())
        scan = self.scanner.scan(self.inputs())
        if self._first_scan:
            self._first_scan = False
            self._full = self.initial_build
            if not self.initial_build:
                # the state at start is the baseline, not a change
                scan = ScanResult([], scan.pending, scan.retry_after)
                self._plan = self._current_plan()
        self._unbuilt += scan.changes
        result.changes = list(self._unbuilt)
        result.pending = scan.pending
        result.retry_after = scan.retry_after
        if not (self._unbuilt or self._full):
            return self._finish(result)
        if scan.pending:
            # the graph would read a half-written file: wait, but not for ever
            if self._deferred_since is None:
                self._deferred_since = result.started
                names = [os.path.relpath(p, self.layout.exchange) for p in scan.pending]
                self._say(f"watch: waiting for {_short(names, 3)} to be complete")
            if result.started - self._deferred_since < self.max_pending:
                result.deferred = True
                return self._finish(result)
        result.full = self._full
        result.build = self._build(self._full)
        self._unbuilt = []
        self._full = False
        self._deferred_since = None
        return self._finish(result)

    def _current_plan(self) -> planning.Plan:
        """A fresh plan, from the same cache the graph's task creators read in this cycle."""
        from toyfoundry.graph import backend, tasks

        with contextlib.chdir(self.layout.root):
            tasks._plan.cache_clear()
            if self.dodo is not None:
                return tasks.current_plan()
            # with the dependency DB open, as doit has it: the plan's record and the file
            # hashes kept there make a cycle parse only the files that changed (a DB that
            # cannot be opened is left for doit's run to report)
            from doit.dependency import DatabaseException

            try:
                db = backend.FoundryDB(str(self.layout.dep_db), None)
            except (DatabaseException, OSError):
                return tasks.current_plan()
            try:
                return tasks.current_plan()
            finally:
                db.dump()

    def _build(self, full: bool) -> GraphRun | None:
        with self.lock, contextlib.chdir(self.layout.root):
            plan = self._current_plan()
            selected: list[str] | None = None
            if not full:
                names = namespace(self.dodo)
                selected = affected_tasks(self.layout, self._unbuilt, self._plan, plan, names)
                if not selected:
                    self._plan = plan
                    return None
            if self.dodo is None and selected is not None:
                from toyfoundry.graph import tasks

                with tasks.focus(focus_orders(self.layout, plan, selected)):
                    run = run_graph(self.layout, selected, dodo=self.dodo, err=self.err)
            else:
                run = run_graph(self.layout, selected, dodo=self.dodo, err=self.err)
            self._plan = plan
        self.builds += 1
        return run

    def _finish(self, result: CycleResult) -> CycleResult:
        result.finished = self.clock()
        if result.build is not None:
            self._say(describe(self.layout, result))
        with self._done:
            self.finished += 1
            self._recent.append((self.finished, result))
            self._done.notify_all()
        if self.on_cycle is not None:
            self.on_cycle(result)
        return result

    def wait_for_cycle(
        self,
        predicate: Callable[[CycleResult], bool],
        *,
        after: int,
        timeout: float,
    ) -> CycleResult:
        """The first cycle finished after mark `after` (a `finished` count) that satisfies
        `predicate`; raises TimeoutError. Take the mark before writing, so no cycle is missed:

            mark = watcher.finished
            write_order(...)
            result = watcher.wait_for_cycle(lambda r: "report:X" in r.ran, after=mark, timeout=60)
        """
        deadline = time.monotonic() + timeout
        with self._done:
            while True:
                for seq, result in self._recent:
                    if seq > after and predicate(result):
                        return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching watch cycle within {timeout}s")
                self._done.wait(remaining)

    @contextlib.contextmanager
    def background(self) -> Iterator[GraphWatcher]:
        """Run the loop in a thread for the `with` block (benchmarks, tests); stops it at the end."""
        thread = threading.Thread(target=self.run, name="toyfoundry-watch", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop()
            thread.join(60)

    def _safe_cycle(self, trigger: str) -> CycleResult:
        try:
            return self.run_cycle(trigger)
        except Exception as exc:
            # a watcher reports and keeps watching; the next cycle starts from a fresh scan
            self._warn(f"watch: cycle failed: {type(exc).__name__}: {exc}")
            result = CycleResult(trigger=trigger, started=self.clock(), error=str(exc))
            result.retry_after = self.rescan
            return self._finish(result)

    # --- the loop ---
    def run(self) -> int:
        """Watch until `stop()` or Ctrl-C (and SIGTERM under `stop_on_signals`); returns 0."""
        # the project folder itself for the settings file, without what lies below it
        roots = [WatchRoot(self.layout.exchange), WatchRoot(self.layout.root, recursive=False)]
        self.source.start(roots, self.hints.notify)
        try:
            result = self._safe_cycle("start")
            while not self.hints.stopped:
                deadline = self.clock() + self.rescan
                if result.retry_after is not None:
                    deadline = min(deadline, self.clock() + result.retry_after)
                batch = self.hints.next_batch(deadline)
                if self.hints.stopped:
                    break
                result = self._safe_cycle("event" if batch else "rescan")
        except KeyboardInterrupt:
            pass
        finally:
            self.source.stop()
        return 0

    def stop(self) -> None:
        """Make `run()` return after the current cycle (callable from any thread)."""
        self.hints.stop()
