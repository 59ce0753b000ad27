"""Which tasks a plain `doit` hands to doit: those not up to date, and everything downstream.

doit asks whether a task is stale only after it has turned every task dict into a
`Task`, wired the whole graph (implicit dependencies, the dispatcher's nodes) and
walked it, asking the DB about each file dep of each task: per task that costs
several times the stats the question needs, so a no-op grew with the graph far
above the floor of stat-ing its files (11x that floor at 10,000 orders). This module
asks the same question of the same task dicts before doit loads them: every task's
stamp (`backend`: its deps and the mtimes they were last found equal at) is read in
one query, each path of the graph is stat-ed once, a task whose stamp does not settle
it is checked against its whole record, and a task is *left out* only when doit would
find it up to date.
doit then loads and checks the rest as usual; on a no-op that is nothing.

What "up to date" means here is doit's own check (`Dependency.get_status`) with
every doubtful case left to doit: a task is left out only if it has file deps, no
`uptodate` entries and no keys beyond those the task creators use, a record written
by our checker that is not marked ignored, the same set of file deps as recorded,
every target present, and every file dep unchanged by `checker.modified`, the test
`FoundryChecker.check_modified` makes. Then the closure: a task that lists a target
of a kept task as a file dep is kept too, and so on downstream. A left-out task is
therefore up to date when the build starts, and stays so while it runs: its file
deps are inputs, stamps written before the check, or targets of left-out tasks,
none of which a kept task writes (the ledgers, which the mint and rituals append to,
are read by the quilt alone, and the quilt lists every mint and rituals artefact, so
it is kept whenever one of those tasks is). So the build runs the tasks doit would
run, in the order it would run them, and the graph's declared deps stay the one
source of truth: the check reads the dicts the task creators make, nothing else.

Only a plain run prunes: `doit` or `doit run` with no task named, no `--always`, on
our DB and with our reporter, which counts and lists the tasks left out as up to
date, so the output is what doit's check of every task would have printed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from toyfoundry.graph import backend
from toyfoundry.graph.checker import VANISHED, FoundryChecker, is_input, modified, not_hashed

Task = dict[str, Any]

#: Keys of a task dict whose meaning the check knows; any other key leaves the task to doit.
KNOWN_KEYS = frozenset(
    {"name", "basename", "actions", "file_dep", "targets", "uptodate", "clean", "doc",
     "verbosity", "watch"}
)  # fmt: skip
CHECKER = FoundryChecker.__name__


@dataclass
class Pruning:
    """One plain run's pruning: decided when the first task creator asks, for the whole load."""

    cmd: Any
    params: Any
    args: list[str]
    decided: bool = False
    #: per creator's basename, the task dicts drawn; None when this load does not prune
    drawn: dict[str, list[Task]] | None = None
    #: the full names of the tasks handed to doit
    kept: set[str] = field(default_factory=set)
    #: when the command started (`time.monotonic`), before doit loaded anything
    started: float = field(default_factory=time.monotonic)


_current: Pruning | None = None
#: The names the current run left out as up to date, in the order they were drawn.
_left_out: list[str] = []


@contextlib.contextmanager
def plain_run(cmd: Any, params: Any, args: list[str]) -> Iterator[None]:
    """Let the task creators prune while `cmd` (doit's `run`) loads its tasks in the block."""
    global _current, _left_out
    before = _current
    _current = Pruning(cmd, params, list(args))
    _left_out = []
    try:
        yield
    finally:
        _current = before
        _left_out = []


def left_out() -> list[str]:
    """The tasks the current run left out as up to date (empty when it did not prune)."""
    return _left_out


def started() -> float | None:
    """When the current run started, before the check that replaced doit's (None: no run)."""
    return _current.started if _current is not None else None


def _enabled(pruning: Pruning) -> bool:
    from toyfoundry.graph.reporter import FoundryReporter

    params = pruning.params
    reporter = params.get("reporter")
    ours = reporter == "toyfoundry" or (
        isinstance(reporter, type) and issubclass(reporter, FoundryReporter)
    )
    # doit re-runs every task whose record names another checker: the run's must be ours
    checker = getattr(getattr(pruning.cmd, "dep_manager", None), "checker", None)
    return (
        not pruning.args
        and not params.get("always")
        and ours
        and type(checker).__name__ == CHECKER
        and isinstance(checker, FoundryChecker)
        and backend.current() is not None
        and isinstance(getattr(pruning.cmd, "sel_tasks", None), list)
    )


def kept(base: str, draw: Callable[[], list[tuple[str, Task]]]) -> list[Task] | None:
    """The task dicts of creator `base` to hand doit, or None when this load does not prune
    (the creator then makes its tasks as usual). `draw` makes every task of the graph as
    (basename, dict); it is called once per load, by the first creator doit calls."""
    pruning = _current
    if pruning is None:
        return None
    if not pruning.decided:
        pruning.decided = True
        db = backend.current()
        # a DB without records (a first build) leaves every task stale: nothing to prune,
        # and each creator's dicts become doit's tasks one by one instead of all at once
        if _enabled(pruning) and db is not None and db.has_records():
            _decide(pruning, draw())
    if pruning.drawn is None:
        return None
    # each creator asks once per load: its dicts are handed over, not kept for the whole
    # build beside the tasks doit makes of them (20 MB at 10,000 orders)
    return [t for t in pruning.drawn.pop(base, ()) if _full(base, t) in pruning.kept]


def _decide(pruning: Pruning, drawn: list[tuple[str, Task]]) -> None:
    global _left_out
    named = [(base, _full(base, task), task) for base, task in drawn]
    pruning.kept = kept = stale_closure(named)
    pruning.drawn = {}
    for base, _, task in named:
        pruning.drawn.setdefault(base, []).append(task)
    _left_out = [name for _, name, _ in named if name not in kept]
    # a creator with nothing kept is not selected: doit would only record its group again
    selected = {base for base, name, _ in named if name in kept}
    cmd = pruning.cmd
    cmd.sel_tasks = [n for n in cmd.sel_tasks if n in selected or n not in pruning.drawn]


def _full(base: str, task: Task) -> str:
    name = task.get("name")
    return base if name is None else f"{base}:{name}"


#: A path not stat-ed yet (None stands for one that could not be).
_UNSEEN: Any = object()


def stale_closure(named: list[tuple[str, str, Task]]) -> set[str]:
    """The tasks doit may find stale, and every task downstream of one (by file dep on a target).

    `named`: every task as (basename, full name, dict).
    """
    db = backend.current()
    assert db is not None
    stamps = db.stamps()
    # each path of the graph is stat-ed once: its mtime, or None when it cannot be stat-ed
    mtimes: dict[str, float | None] = {}
    seen = mtimes.get

    def mtime(path: str) -> float | None:
        try:
            found: float | None = os.stat(path).st_mtime
        except (OSError, ValueError):
            found = None
        mtimes[path] = found
        return found

    stale: set[str] = set()
    unstamped: list[tuple[str, str]] = []
    verified: Verified = {}
    with _no_collection():
        for _, name, task in named:
            if not _checkable(task):
                stale.add(name)
                continue
            stamp = stamps.get(name)
            if stamp is not None:
                # the stamp settles it when the deps' mtimes are the recorded ones (`stamps`)
                deps = sorted(set(task["file_dep"]))
                now = []
                for dep in deps:
                    found = seen(dep, _UNSEEN)
                    if found is _UNSEEN:
                        found = mtime(dep)
                    if found is None:
                        break
                    now.append(found)
                else:
                    stamped = backend.stamp_of(deps, now) == stamp
                    if stamped and _targets_present(task, mtime, seen):
                        continue
            fresh = _up_to_date(task, db.record(name), mtime, seen, verified)
            if fresh is None:
                stale.add(name)
            elif fresh and fresh != stamp:
                unstamped.append((name, fresh))
    if unstamped:
        db.add_stamps(unstamped)  # found equal by hash (a fresh copy): the next run trusts mtimes
    if not stale:
        return stale
    made_by = {target: name for _, name, task in named for target in task.get("targets", ())}
    readers: dict[str, list[str]] = {}
    for _, name, task in named:
        for dep in task.get("file_dep", ()):
            maker = made_by.get(dep)
            if maker is not None:
                readers.setdefault(maker, []).append(name)
    todo = list(stale)
    while todo:
        for reader in readers.get(todo.pop(), ()):
            if reader not in stale:
                stale.add(reader)
                todo.append(reader)
    return stale


Mtime = Callable[[str], "float | None"]
Seen = Callable[[str, Any], Any]
#: Per dep, a recorded state (mtime, size, digest) found unmodified this run, and the dep's
#: mtime then: an artefact is a dep of several tasks, recorded alike by each, and is
#: stat-ed and looked up in the hash cache once, not once per task that reads it.
Verified = dict[str, tuple[tuple[Any, ...], float]]


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """The check makes a few hundred thousand small objects, none of them in a cycle: the
    collector would only walk the graph again and again (a fifth of the check at 10,000
    orders)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _checkable(task: Task) -> bool:
    """Whether the task is one doit decides by file deps and targets alone: any other key,
    an `uptodate` entry or no file deps at all (always run) leaves it to doit."""
    deps = task.get("file_dep")
    return bool(deps) and not task.get("uptodate") and KNOWN_KEYS.issuperset(task)


def _targets_present(task: Task, mtime: Mtime, seen: Seen) -> bool:
    for target in task.get("targets", ()):
        found = seen(target, _UNSEEN)
        if found is _UNSEEN:
            found = mtime(target)
        if found is None:
            return False
    return True


def _up_to_date(
    task: Task, record: dict[str, Any], mtime: Mtime, seen: Seen, verified: Verified
) -> str | None:
    """Whether doit's check would find the task up to date, from its whole record: None when
    not, else the stamp of its deps at their current mtimes ("" when no stamp may vouch for
    it: a dep recorded as refused or gone, or a record in a shape stamps do not know).

    That stamp vouches for the task from now on, not only its record's mtimes: every dep
    at its current mtime was found equal to the record (by the mtime, or by size and hash
    when the mtime moved), and an mtime that holds is what doit trusts too. So the run
    after a fresh copy (every mtime new, every byte the same) settles each task by its
    stamp, without doit ever saving the task again."""
    if not record or record.get("ignore:") or record.get("checker:") != CHECKER:
        return None
    deps = task["file_dep"]
    recorded = record.get("deps:")
    if not recorded or set(recorded) != set(deps) or not _targets_present(task, mtime, seen):
        return None
    stampable = True
    now: dict[str, float] = {}
    for dep in deps:
        state = record.get(dep)
        if state is None or not isinstance(dep, str):
            return None
        key = tuple(state) if isinstance(state, list | tuple) else (state,)
        known = verified.get(dep)
        if known is not None and known[0] == key:
            now[dep] = known[1]
            continue
        try:
            st = os.stat(dep)  # the whole stat: a changed mtime is settled by size and hash
        except (OSError, ValueError):
            if not is_input(dep):
                return None  # a missing build artefact: doit's error to report
            st = VANISHED
        if modified(dep, st, state):
            return None
        if (
            st is VANISHED
            or len(key) != 3
            or not isinstance(key[0], float)
            or not isinstance(key[2], str)
            or not_hashed(key[2])
        ):
            stampable = False  # and looked at again for every task that reads it
        else:
            verified[dep] = (key, st.st_mtime)
        now[dep] = st.st_mtime
    if not stampable:
        return ""
    names = sorted(now)
    return backend.stamp_of(names, [now[dep] for dep in names])
