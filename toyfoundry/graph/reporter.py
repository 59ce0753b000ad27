"""The build's progress for people: a live status line on a terminal, plain lines elsewhere,
and one closing summary line either way (tasks run, orders by status, time)."""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import orjson
from doit.reporter import ConsoleReporter

from toyfoundry.graph import backend, stale
from toyfoundry.store.layout import Layout

#: Order statuses in the summary line, in the order people read them.
STATUSES: tuple[tuple[str, str], ...] = (
    ("built", "built"),
    ("dry-run", "dry run"),
    ("awaiting-review", "awaiting review"),
    ("blocked", "blocked"),
    ("rejected", "rejected"),
)


def order_counts(layout: Layout) -> str:
    """Orders by status, from the quilt rollup the build just wrote: one read of one file,
    so a no-op build stays cheap. Empty when there is no rollup to read."""
    try:
        rollup = orjson.loads(layout.rollup.read_bytes())
        found = Counter(str(b["status"]) for b in rollup["batches"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return ""
    return "orders: " + ", ".join(f"{found.get(key, 0)} {label}" for key, label in STATUSES)


def _rollup_key(layout: Layout) -> list[int] | None:
    try:
        st = os.stat(layout.rollup)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def remembered_counts(layout: Layout) -> str | None:
    """`order_counts`, kept in the dependency DB by the rollup's stat: a run that leaves the
    quilt out (a no-op) does not rewrite the rollup, and parsing it again to count statuses
    cost a twentieth of a no-op at 10,000 orders (10 MB). Needs the DB open."""
    db = backend.current()
    key = _rollup_key(layout)
    if db is None or key is None:
        return None
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
        kept = orjson.loads(db.get_meta("order_counts") or "null")
        if isinstance(kept, list) and len(kept) == 2 and kept[0] == key:
            return str(kept[1])
    counts = order_counts(layout)
    if counts:
        db.put_meta("order_counts", orjson.dumps([key, counts]).decode())
    return counts


def counted(task: Any) -> bool:
    """A task with actions of its own (not a group); `_actions` is the raw list, because
    `Task.actions` builds an action object per entry, for every task, on every run."""
    return bool(task._actions) and not task.name.startswith("_")


class FoundryReporter(ConsoleReporter):  # type: ignore[misc]
    """doit reporter (`--reporter toyfoundry`, the default in pyproject): tasks done of total,
    the current task, elapsed time and failures. Off a terminal it prints doit's usual
    `.  task` / `-- task` lines, so logs and tests read the same as with `console`."""

    desc = "progress line on a terminal, plain lines otherwise (toyfoundry)"
    #: doit's, set by its `__init__`: {"task": ..., "exception": ...} per failure to show at the end
    failures: list[dict[str, Any]]
    failure_verbosity: int

    def __init__(self, outstream: TextIO, options: dict[str, Any]) -> None:
        super().__init__(outstream, options)
        self.tty = bool(getattr(outstream, "isatty", lambda: False)())
        self.total = 0
        self.done = 0
        self.ran = 0
        #: tasks found up to date, and tasks never started (ignored, or after a failed dep)
        self.uptodate = 0
        self.not_run = 0
        self._started: set[str] = set()
        self.failed: list[str] = []
        self.started = time.monotonic()
        self._line = ""
        #: the order counts, when this run cannot change them (see `remembered_counts`)
        self._counts: str | None = None

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        # the progress line counts the tasks the selection reaches (`doit mint:X` is a few
        # of the graph's); the summary counts what the run met, so it needs no walk
        self.total = _reached(tasks, selected_tasks) if self.tty else 0
        self.started = time.monotonic()
        # what a plain run left out of doit's graph is up to date: said as doit would
        left_out = stale.left_out()
        if left_out:  # the check that settled them stands in for doit's: count its time too
            self.started = min(self.started, stale.started() or self.started)
        self._counts = remembered_counts(_layout()) if "quilt" in left_out else None
        self.done += len(left_out)
        self.uptodate += len(left_out)
        self.total += len(left_out)
        if not self.tty and left_out:
            self.write("".join(f"-- {name}\n" for name in left_out))

    def _status(self, current: str) -> None:
        elapsed = time.monotonic() - self.started
        failed = f", {len(self.failed)} failed" if self.failed else ""
        line = f"[{self.done}/{self.total}] {current}  {elapsed:5.1f}s{failed}"
        pad = max(0, len(self._line) - len(line))
        self.outstream.write("\r" + line + " " * pad)
        self.outstream.flush()
        self._line = line

    def _clear(self) -> None:
        if self._line:
            self.outstream.write("\r" + " " * len(self._line) + "\r")
            self._line = ""

    def execute_task(self, task: Any) -> None:
        if not counted(task):
            return
        self.ran += 1
        self._started.add(task.name)
        if self.tty:
            self._status(task.name)
        else:
            # doit's line; its own test (`task.actions`) makes an action object per action
            # of every task it reports, which the build process never runs
            self.write(f".  {task.title()}\n")

    def add_success(self, task: Any) -> None:
        if counted(task):
            self.done += 1

    def skip_uptodate(self, task: Any) -> None:
        if counted(task):
            self.done += 1
            self.uptodate += 1
        if not self.tty:
            super().skip_uptodate(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        self.done += 1
        if counted(task):  # a group (`report`) fails for its members; they are counted
            self.failed.append(task.name)
            if task.name not in self._started:
                self.not_run += 1
        if self.tty:
            self._clear()
            self.write(f"FAILED {task.name}: {fail.get_msg().strip().splitlines()[-1]}\n")
        super().add_failure(task, fail)

    def _write_failure(self, result: dict[str, Any], write_exception: bool = True) -> None:
        exc = result["exception"]
        name = exc.get_name()
        message = exc.get_msg().strip()
        if name == "TaskFailed":
            # a user-level failure: its one-line problems were already printed by the task
            self.write(f"{name} - taskid:{result['task'].name}\n")
            return
        self.write(f"{name} - taskid:{result['task'].name}\n{message}\n")

    def _told_already(self, result: dict[str, Any]) -> bool:
        """A failure (not an error) with nothing to show that was not on screen already:
        no captured stdout, and its stderr went out as it ran (doit shows it again only
        at verbosity 0 or with `--failure-verbosity`)."""
        task = result["task"]
        if result["exception"].get_name() != "TaskFailed":
            return False
        shows_err = task.verbosity < 1 or self.failure_verbosity > 0
        return not any(a.out or (shows_err and a.err) for a in task.actions)

    def skip_ignore(self, task: Any) -> None:
        if counted(task):
            self.not_run += 1
        super().skip_ignore(task)

    def complete_run(self) -> None:
        # doit ends with a block per failed task showing what it printed; a task that
        # failed on invalid input printed its one-line problems as it ran and captured
        # nothing, so its block would only repeat its name over an empty `<stdout>:`
        self.failures = [r for r in self.failures if not self._told_already(r)]
        if self.tty:
            self._clear()
        super().complete_run()
        # last, after doit's failure blocks, so a log's last line is the build's outcome
        self.write(self.summary() + "\n")

    def summary(self) -> str:
        """One line: tasks run and up to date, time, failed tasks, orders by status."""
        elapsed = time.monotonic() - self.started
        failed = f", {len(self.failed)} failed: {' '.join(self.failed)}" if self.failed else ""
        orders = self._counts if self._counts is not None else order_counts(_layout())
        total = self.ran + self.uptodate + self.not_run
        return (
            f"toyfoundry: {self.ran} task(s) run, {self.uptodate} up to date"
            f" of {total} in {elapsed:.1f}s{failed}" + (f"; {orders}" if orders else "")
        )


def _layout() -> Layout:
    return Layout(Path(os.getcwd()))


def _reached(tasks: dict[str, Any], selected: list[str]) -> int:
    """How many counted tasks the selected ones reach through their task deps."""
    seen: set[str] = set()
    todo = [name for name in selected if name in tasks]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        task = tasks[name]
        todo += [d for d in (*task.task_dep, *task.setup_tasks) if d in tasks and d not in seen]
    return sum(1 for name in seen if counted(tasks[name]))
