"""`toyfoundry watch`: a warm process that rebuilds only what a change of the graph's inputs affects.

Unlike `doit auto`, which restarts doit and re-checks the whole graph for every
event, the watcher keeps what it knows between events: a snapshot of every
input (path -> size, mtime, sha256), the listing of the input folders and the last
plan. It watches what the plan names (the files it is read from, settings included,
and every file an order reads), and keeps no rules of its own about what a change
affects: each cycle looks at the files its events named (the whole input folders
at start, after an overflow and at least every `rescan` seconds: see `_trusts`),
patches its listing and its plan with them, asks the plan which orders the
changed files feed (`plan.orders_fed_by`: from the inputs each order's tasks
declare, and down its recipe's chain), and runs doit in-process on those orders'
tasks and the global ones, under the foundry lock. doit's early cutoff skips
what did not change; the global tasks list every order's artefacts as file
deps, so doit still checks (stats) those, but rebuilds nothing it does not have to."""

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
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from toyfoundry import caches, installed
from toyfoundry.errors import FoundryError
from toyfoundry.exchange.loader import settings
from toyfoundry.graph import plan as planning
from toyfoundry.graph.reporter import counted
from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout
from toyfoundry.store.lock import FoundryLock

if TYPE_CHECKING:
    from toyfoundry.graph.backend import FoundryDB

from toyfoundry.watch.listing import Listing
from toyfoundry.watch.observer import (
    Change,
    Clock,
    EventSource,
    ScanResult,
    StableScanner,
    Wake,
    WatchLoop,
    WatchRoot,
)

#: Per-order stages and global tasks of the graph, in the order the line lists them.
ORDER_STAGES = ("mint", "rituals", "report")
GLOBAL_TASKS = ("quilt", "export", "dashboard", "validate")

Dodo = ModuleType | Mapping[str, Any]

#: A cycle's listing of the inputs serves its plan unless it is older than this when the
#: foundry is the cycle's (another build held it): then the plan lists them again.
LISTING_AGE = 0.25


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
    with contextlib.chdir(layout.root), installed.for_doit():
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


def affected_tasks(
    layout: Layout,
    changes: Iterable[Change],
    old: planning.Plan | None,
    new: planning.Plan,
    names: Mapping[str, Any],
) -> list[str]:
    """Task names to run for `changes`: the stages of the orders the plan says the changed
    files feed (see `plan.orders_fed_by`), then the global tasks."""
    changed = [planning.rel(layout, c.path) for c in changes]
    orders = sorted(planning.orders_fed_by(new, changed, old))
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


def named_files(layout: Layout, plan: planning.Plan) -> frozenset[Path]:
    """Every file the plan names (`plan.named_paths`), as absolute paths."""
    return frozenset(layout.root / p for p in planning.named_paths(plan))


def watched(path: Path, named: AbstractSet[Path], listed: AbstractSet[Path]) -> bool:
    """True for a file the plan names, or a new file in a folder it lists; the foundry's
    own outputs are neither, nor are hidden and temporary names. `toyfoundry watch` and
    `doit auto` both ask this."""
    if path in named:
        return True
    return path.parent in listed and not safe_read.is_skipped_name(path.name)


def plan_inputs(layout: Layout, named: AbstractSet[Path]) -> list[Path]:
    """The files the plan is read from now (its input folders' files and the settings in
    `pyproject.toml`) and every file the last plan names (an optional one may appear)."""
    listing = planning.scan_inputs(layout)
    found = {layout.root / e.rel for e in listing if e.kind != planning.UNLISTED}
    return sorted(found | named)


def plan_roots(listed: AbstractSet[Path], named: Iterable[Path]) -> list[WatchRoot]:
    """The folders to get events from: those the plan lists, and those of its named files."""
    return folder_roots(set(listed) | {p.parent for p in named})


def folder_roots(folders: Iterable[Path]) -> list[WatchRoot]:
    """Each folder once, sorted, watched without its subfolders."""
    return [WatchRoot(folder, recursive=False) for folder in sorted(set(folders))]


@contextlib.contextmanager
def _checkpoint_once(layout: Layout) -> Iterator[None]:
    """Hold the dependency DB open while a cycle plans and builds, so that the plan's and
    doit's connections close without a checkpoint each: SQLite checkpoints the WAL into
    the DB (and syncs it) when the last connection closes, and this one closes last,
    after the build's outputs are written."""
    import sqlite3

    if not layout.dep_db.is_file():
        yield
        return
    try:
        # read-write, or its close could not checkpoint; the read, run to its end so no
        # snapshot stays open, maps the WAL index: only now does it count as a connection
        keeper = sqlite3.connect(layout.dep_db, isolation_level=None, timeout=60.0)
        keeper.execute("select count(*) from sqlite_master").fetchall()
    except sqlite3.Error:
        yield  # doit's own run reports a DB it cannot open
        return
    try:
        yield
    finally:
        keeper.close()


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

    Every build starts with fresh caches (`caches.next_build()` in the run
    command), but the watcher's set keeps the tables whose entries are checked
    against the bytes they were made from: the `plan_record` (each cycle reads the
    record the previous one wrote, a megabyte at 1,000 orders, compared whole), the
    parsed artefacts and exchange files, the recipes' frontiers (by chain digest),
    the rollup last written (by its bytes), the settings, and the pure functions of
    a definition (permutations, domains, number keys). A file changed by anyone
    else no longer matches and is read again; nothing is trusted by its stat. Of
    each table a cycle carries only the entries the cycle before used. The cycle's
    plan is drawn before its build starts, so the `plan` snapshot is carried into the
    build too, and forgotten when the next cycle begins.
    """

    #: The caches kept from one cycle's build to the next (see the class docstring).
    KEPT = (
        "plan_record",
        "parsed",
        "exchange_files",
        "frontiers",
        "rollup",
        "settings",
        "permutations",
        "domains",
        "number_keys",
        "plan",
    )

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
        caches.fresh(keep=self.KEPT)
        self.loop = WatchLoop(
            source,
            quiet=quiet,
            max_delay=max_delay,
            rescan=rescan,
            accept=self.relevant,
            clock=clock,
        )
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
        self._named: frozenset[Path] = frozenset()
        self._named_rels: frozenset[str] = frozenset()
        #: the named files as paths, by project-relative name (made once per name)
        self._paths: dict[str, Path] = {}
        #: the named files by folder: those of a folder that was listed need no `lstat`
        self._by_folder: dict[str, list[str]] = {}
        self._roots: list[WatchRoot] = []
        #: the inputs as this cycle's scan saw them, for its plan (see `_scan`)
        self._entries: list[planning.Entry] | None = None
        #: the inputs as last listed, patched from events since (see `Listing`), and when
        #: the last full listing was made
        self._listing: Listing | None = None
        self._listed_at = 0.0
        #: something events may not have reported: the next cycle lists everything
        self._doubt = False
        self._listed = frozenset(planning.listed_folders(layout))
        self._listed_rels = frozenset(planning.rel(layout, f) for f in self._listed)
        self._unbuilt: list[Change] = []
        #: what the last plan left to write once the watcher is idle (see `write_record`)
        self._unwritten: list[Callable[[FoundryDB], None]] = []
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

    # --- what is watched: what the plan names ---
    def relevant(self, path: Path) -> bool:
        """See `watched`."""
        return watched(path, self._named, self._listed)

    def inputs(self) -> list[Path]:
        """See `plan_inputs`: the files the plan is read from now and every file the last
        plan names, sorted."""
        return sorted((path for path, _ in self._scan()[0]), key=str)

    def _scan(
        self, hinted: Iterable[Path] | None = None
    ) -> tuple[list[tuple[Path, os.stat_result | None]], list[planning.Entry], set[Path] | None]:
        """`inputs`, each with its `lstat` when the listing of its folder made one, and the
        listing itself.

        One listing of the input folders serves the scan and the cycle's plan (kept in
        `_entries`): a named file in a folder that was listed is in the listing or
        absent, so only named files elsewhere are looked up one by one (a thousand
        orders name a thousand optional reviews, almost none of them there).

        `hinted`: the paths the events since the last scan named, when they are trusted
        (see `_trusts`): only those are looked at, and the third item is the set of them
        (the scan's verdict on every other input is the last one); None lists everything."""
        if hinted is not None and self._listing is not None:
            return self._scan_hinted(self._listing, hinted)
        root = self.layout.root
        listing = entries = planning.scan_inputs(self.layout)
        last, self._listing = self._listing, Listing(self.layout, listing)
        if last is not None:
            # what changed since the last plan: what was patched since, and what the
            # events missed (the plan is then patched, not drawn whole, if it can be)
            self._listing.touched = last.changes_to(self._listing)
        self._listed_at = self.clock()
        self._doubt = False
        paths = self._paths
        unlisted = [e.rel for e in entries if e.kind == planning.UNLISTED]
        if unlisted:
            entries = [e for e in entries if e.kind != planning.UNLISTED]
        items: list[tuple[Path, os.stat_result | None]] = [
            (paths.get(e.rel) or root / e.rel, e.st) for e in entries
        ]
        # a listed folder that is missing holds none of its named files either
        listed = self._listed_rels.difference(unlisted)
        found: set[str] | None = None
        for folder, rels in self._by_folder.items():
            if folder not in listed:
                found = found if found is not None else {e.rel for e in entries}
                items += [(paths[rel], None) for rel in rels if rel not in found]
        return items, listing, None

    def _scan_hinted(
        self, listing: Listing, hinted: Iterable[Path]
    ) -> tuple[list[tuple[Path, os.stat_result | None]], list[planning.Entry], set[Path]]:
        """`_scan` of the hinted paths only: the listing kept is patched with each."""
        layout, paths = self.layout, self._paths
        items: list[tuple[Path, os.stat_result | None]] = []
        looked: set[Path] = set()
        for hint in hinted:
            rel = planning.rel(layout, hint)
            path = paths.get(rel) or hint
            if path in looked:
                continue
            held, st = listing.look(rel)
            if held:
                looked.add(path)
                if st is not None:
                    items.append((path, st))
            elif path in self._named:
                # a named file outside the listed folders (`scan_stats` `lstat`s it)
                looked.add(path)
                items.append((path, None))
        return items, listing.entries(), looked

    def _trusts(self, hints: Sequence[Path | None] | None) -> bool:
        """Whether a cycle may look only at the paths its events named: not at start, not
        after a hint that stands for anything (an overflow, a new folder), not once the
        last full listing is `rescan` seconds old, not when its listing was not whole."""
        return (
            hints is not None
            and None not in hints
            and self._listing is not None
            and self._listing.trusted
            and not self._doubt
            and self.clock() - self._listed_at < self.rescan
        )

    def roots(self) -> list[WatchRoot]:
        """The folders to get events from: those the plan lists, and those of its named files."""
        if self._roots:
            return self._roots
        # before the first plan: what the loop starts watching
        self._roots = plan_roots(self._listed, self.inputs())
        return self._roots

    def _adopt(self, plan: planning.Plan) -> None:
        """Take `plan` as the last one: what the next change is compared with, what is watched."""
        last, self._plan = self._plan, plan
        delta = plan.delta
        if delta is not None and delta.base is last and self._roots:
            self._name_more(plan, delta)
            return
        rels = planning.named_paths(plan)
        if rels != self._named_rels or not self._roots:
            root = self.layout.root
            before = self._paths
            self._named_rels = frozenset(rels)
            self._paths = {rel: before.get(rel) or root / rel for rel in rels}
            self._named = frozenset(self._paths.values())
            by_folder: dict[str, list[str]] = {}
            for rel in rels:
                by_folder.setdefault(rel.rpartition("/")[0], []).append(rel)
            self._by_folder = by_folder
            # `plan_roots`, from the folders' names rather than a parent per named file
            roots = folder_roots([*self._listed, *(root / f for f in by_folder)])
            if self._roots and not set(roots) <= set(self._roots):
                # a folder watched from now on may have changed before its watch began
                self._doubt = True
            self._roots = roots
        self.loop.add(self._roots)

    def _name_more(self, plan: planning.Plan, delta: planning.Delta) -> None:
        """`_adopt` for a plan patched for a few orders: what they name now is added to
        what is named (what a removed order named stays named until a plan is drawn
        whole: at most a hint too many)."""
        nodes = plan.by_id
        new = {p for o in delta.orders if o in nodes for p in nodes[o].inputs}
        new.update(delta.paths)
        new.difference_update(self._named_rels)
        if not new:
            return
        root, paths, by_folder = self.layout.root, self._paths, self._by_folder
        folders = len(by_folder)
        for rel in new:
            paths[rel] = root / rel
            by_folder.setdefault(rel.rpartition("/")[0], []).append(rel)
        self._named_rels = self._named_rels | new
        self._named = self._named | {paths[rel] for rel in new}
        if len(by_folder) != folders:
            # a folder watched from now on may have changed before its watch began
            self._doubt = True
            self._roots = folder_roots([*self._listed, *(root / f for f in by_folder)])
            self.loop.add(self._roots)

    # --- cycles ---
    def run_cycle(
        self, trigger: str = "rescan", hints: Sequence[Path | None] | None = None
    ) -> CycleResult:
        """Rescan the inputs and rebuild what changed; defers while an input is still being written.

        `hints`: the paths the events since the last cycle named ([] for none); the scan
        then looks only at those and at files still being written, unless a full listing
        is due (see `_trusts`). None rescans every input."""
        self.cycles += 1
        result = CycleResult(trigger=trigger, started=self.clock())
        if self._trusts(hints):
            assert hints is not None
            pending = self.scanner.pending
            items, self._entries, looked = self._scan([*pending, *(h for h in hints if h)])
        else:
            items, self._entries, looked = self._scan()
        scan = self.scanner.scan_stats(items, only=looked)
        if self._first_scan:
            self._first_scan = False
            self._full = self.initial_build
            if not self.initial_build:
                # the state at start is the baseline, not a change
                scan = ScanResult([], scan.pending, scan.retry_after)
                self._adopt(self._current_plan())
                if self.dodo is None:
                    self._warm()
        self._unbuilt += scan.changes
        result.changes = list(self._unbuilt)
        result.pending = scan.pending
        result.retry_after = scan.retry_after
        if not (self._unbuilt or self._full):
            if trigger == "rescan" and self._unwritten and not scan.pending:
                self.write_record()
            return self._finish(result)
        if scan.pending:
            # the graph would read a half-written file: wait, but not for ever
            if self._deferred_since is None:
                self._deferred_since = result.started
                names = sorted(os.path.relpath(p, self.layout.exchange) for p in scan.pending)
                self._say(f"watch: waiting for {_short(names, 3)} to be complete")
            if result.started - self._deferred_since < self.max_pending:
                result.deferred = True
                return self._finish(result)
        result.full = self._full
        result.build = self._build(self._full)
        if result.full and self.dodo is None:
            self._warm()
        self._unbuilt = []
        self._full = False
        self._deferred_since = None
        return self._finish(result)

    def _current_plan(
        self, later: list[Callable[[FoundryDB], None]] | None = None
    ) -> planning.Plan:
        """A fresh plan, from the same cache the graph's task creators read in this cycle,
        and from the listing this cycle's scan made (once: a later plan lists again).
        `later`: see `plan.load` (the caller leaves it to `write_record`)."""
        from toyfoundry.graph import backend, tasks

        entries, self._entries = self._entries, None
        changed = None
        if entries is None:
            # listed again (see `_build`): the listing kept is not the plan's
            self._doubt = True
            self._listing = None
        elif self._listing is not None:
            # what changed since the last plan, when it was drawn from this listing too
            changed = self._listing.take_touched()
        with contextlib.chdir(self.layout.root):
            tasks.forget_plan()
            if self.dodo is not None:
                return tasks.current_plan(entries, later, changed)
            # with the dependency DB open, as doit has it: the plan's record and the file
            # hashes kept there make a cycle parse only the files that changed (a DB that
            # cannot be opened is left for doit's run to report)
            from doit.dependency import DatabaseException

            try:
                db = backend.FoundryDB(str(self.layout.dep_db), None)
            except (DatabaseException, OSError):
                return tasks.current_plan(entries, later, changed)
            try:
                return tasks.current_plan(entries, later, changed)
            finally:
                db.dump()

    def _warm(self) -> None:
        """Gather each recipe's carried positions for its next order (`graph.frontiers`),
        so that the first new order of a recipe does not walk its chain back."""
        from toyfoundry.graph import frontiers

        if self._plan is not None:
            with contextlib.chdir(self.layout.root):
                frontiers.warm(self._plan)

    def write_record(self) -> None:
        """Write what the last plan left for later (its record, for the next process: 7 MB
        at 10,000 orders, which a warm watcher does not read back), under the foundry lock.

        A cycle that changes nothing once events went quiet for `rescan` seconds writes
        it, and so does the end of `run`, so a stream of changes pays for one record, not
        one each; a watcher killed before leaves the record of an older plan, which the
        next process finds does not match the inputs' stats, and draws the plan again."""
        later, self._unwritten = self._unwritten, []
        if not later:
            return
        from toyfoundry.graph import backend

        with self.lock, contextlib.chdir(self.layout.root):
            db = backend.FoundryDB(str(self.layout.dep_db), None)
            try:
                for write in later:
                    write(db)
            finally:
                db.dump()

    def _build(self, full: bool) -> GraphRun | None:
        asked = self.clock()
        later: list[Callable[[FoundryDB], None]] = []
        with self.lock, contextlib.chdir(self.layout.root), _checkpoint_once(self.layout):
            if self.clock() - asked > LISTING_AGE:
                # another build held the foundry: the scan's listing is old, list again
                self._entries = None
            # the plan's record is written after the build, which does not read it (a build
            # that does not end leaves the record before it, which the next plan starts from)
            plan = self._current_plan(later)
            selected: list[str] | None = None
            if not full:
                names = namespace(self.dodo)
                selected = affected_tasks(self.layout, self._unbuilt, self._plan, plan, names)
                if not selected:
                    self._unwritten = later
                    self._adopt(plan)
                    return None
            if self.dodo is None and selected is not None:
                from toyfoundry.graph import tasks

                with tasks.focus(focus_orders(self.layout, plan, selected)):
                    run = run_graph(self.layout, selected, dodo=self.dodo, err=self.err)
            else:
                run = run_graph(self.layout, selected, dodo=self.dodo, err=self.err)
            self._unwritten = later
            self._adopt(plan)
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

    def _safe_cycle(self, trigger: str, hints: Sequence[Path | None] = ()) -> CycleResult:
        try:
            return self.run_cycle(trigger, list(hints) if trigger != "start" else None)
        except Exception as exc:
            # a watcher reports and keeps watching; the next cycle starts from a fresh scan
            self._warn(f"watch: cycle failed: {type(exc).__name__}: {exc}")
            # the next cycle lists everything, and draws its plan whole
            self._doubt = True
            self._listing = None
            result = CycleResult(trigger=trigger, started=self.clock(), error=str(exc))
            result.retry_after = self.rescan
            return self._finish(result)

    # --- the loop ---
    def run(self) -> int:
        """Watch until `stop()` or Ctrl-C (and SIGTERM under `stop_on_signals`); returns 0."""
        try:
            with contextlib.suppress(KeyboardInterrupt):
                self.loop.run(self.roots(), self._loop_cycle)
        finally:
            try:
                self.write_record()
            except (KeyboardInterrupt, Exception) as exc:
                # a record not written is one the next process draws again: say so, and end
                self._warn(f"watch: the plan's record was not written: {exc!r}")
        return 0

    def _loop_cycle(self, wake: Wake) -> float | None:
        return self._safe_cycle(wake.trigger, wake.hints).retry_after

    def stop(self) -> None:
        """Make `run()` return after the current cycle (callable from any thread)."""
        self.loop.stop()
