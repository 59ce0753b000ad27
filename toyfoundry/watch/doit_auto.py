"""`doit auto [TASK ...]`: re-run doit tasks whenever their inputs change, on watchdog.

doit's own `auto` moved to the doit-auto1 plugin, built on pyinotify, which no
longer imports on Python 3.12+. This command takes its place for any dodo.py
project once Toyfoundry is installed (entry point group `doit.COMMAND`).

Like the original, each cycle runs in a forked child and the parent never loads
the tasks: every cycle imports the dodo afresh, so a new input file that adds
tasks (a new order) is in the next task list, and no module cache of one run
leaks into the next. The child runs the tasks, prints one line, then watches
the folders of the selected tasks' file deps (so a new file in them is seen),
the folders a task lists in `watch`, and the dodo file itself. It ignores the
tasks' targets, the dependency DB, hidden and temporary names, and the
`--ignore` patterns (by default the foundry's own outputs). After a quiet
period without events it reports what changed to the parent and exits, and the
parent starts the next cycle. A periodic rescan catches events that never came.

In a foundry project (a task list drawn from its plan) the plan alone says what
to watch and what a change is, as for `toyfoundry watch` (`PlanWatchSet`): the
files it names, settings included, new files in the folders it lists, each
compared with the content the plan read.
"""

from __future__ import annotations

import contextlib
import fnmatch
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from doit.cmd_base import DoitCmdBase, tasks_and_deps_iter
from doit.cmd_run import Run
from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask

from toyfoundry.store.safe_read import is_skipped_name
from toyfoundry.watch.observer import Wake, WatchLoop, WatchRoot, stop_on_signals

#: The foundry's own outputs; harmless in other projects, and replaceable with `--ignore`.
DEFAULT_IGNORE = [".toyfoundry/*", "exchange/reports/*", "exchange/outbox/*"]
#: A file's mtime comes from the kernel's coarse clock, which may lag `time.time_ns()` this much.
_CLOCK_SLACK_NS = 20_000_000
_SHOWN = 3

opt_quiet = {
    "name": "quiet_period",
    "short": "",
    "long": "quiet-period",
    "type": float,
    "default": 0.2,
    "help": "re-run once no change came for this many seconds [default: %(default)s]",
}
opt_max_delay = {
    "name": "max_delay",
    "short": "",
    "long": "max-delay",
    "type": float,
    "default": 2.0,
    "help": "re-run at the latest this many seconds after the first change [default: %(default)s]",
}
opt_rescan = {
    "name": "rescan",
    "short": "",
    "long": "rescan",
    "type": float,
    "default": 5.0,
    "help": "compare the watched files this often, in case an event was missed "
    "[default: %(default)s]",
}
opt_ignore = {
    "name": "ignore",
    "short": "",
    "long": "ignore",
    "type": list,
    "default": DEFAULT_IGNORE,
    "help": "comma-separated patterns (relative to the dodo folder, `*` spans folders) "
    "whose changes never trigger a run [default: %(default)s]",
}
opt_success = {
    "name": "success_callback",
    "short": "",
    "long": "success",
    "type": str,
    "default": "",
    "help": "shell command to run after a cycle whose tasks all succeeded",
}
opt_failure = {
    "name": "failure_callback",
    "short": "",
    "long": "failure",
    "type": str,
    "default": "",
    "help": "shell command to run after a cycle with a failed task",
}


Entry = tuple[int, int, int] | None
#: How an entry of a watched folder that is no file dep is remembered: only that it exists.
_PRESENT: Entry = (0, 0, 0)


#: `run`'s options, with doit's old `auto` default of printing only the tasks that ran.
_RUN_OPTIONS = tuple(
    {**opt, "default": "executed-only"} if opt["name"] == "reporter" else opt
    for opt in Run.cmd_options
)


def _stat_key(path: Path) -> Entry:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _names(folders: Iterable[Path]) -> dict[Path, set[str]]:
    out = {}
    for folder in folders:
        try:
            out[folder] = set(os.listdir(folder))
        except OSError:
            out[folder] = set()
    return out


@dataclass
class WatchSet:
    """What one cycle watches, and which paths under it never count as a change.

    A file dep counts when it changes at all; another entry of a file dep's folder
    counts only when it appears or disappears (a new input file), so a log file
    that merely grows next to the inputs does not start a run.
    """

    root: Path
    files: set[Path] = field(default_factory=set)
    folders: set[Path] = field(default_factory=set)
    trees: set[Path] = field(default_factory=set)
    targets: set[Path] = field(default_factory=set)
    dep_file: Path | None = None
    ignore: Sequence[str] = ()
    baseline: dict[Path, Entry] = field(default_factory=dict)

    def add_file(self, path: Path, *, folder: bool = True) -> None:
        if self.ignored(path):
            return
        self.files.add(path)
        if folder:
            self.folders.add(path.parent)

    def dirs(self) -> set[Path]:
        return self.folders | {f.parent for f in self.files}

    def ignored(self, path: Path) -> bool:
        if is_skipped_name(path.name) or "__pycache__" in path.parts or path in self.targets:
            return True
        if self.dep_file is not None and str(path).startswith(str(self.dep_file)):
            return True
        try:
            rel = path.relative_to(self.root).as_posix()
        except ValueError:
            return False
        return any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.ignore)

    def relevant(self, path: Path) -> bool:
        """A change here may change the task list or a task's inputs."""
        if self.ignored(path) or path in self.folders or path in self.trees:
            # a folder's own "modified" event also fires for ignored entries (targets)
            return False
        if path in self.files:
            return True
        if path.parent in self.folders:
            return (path in self.baseline) != os.path.lexists(path)
        return any(path.is_relative_to(tree) for tree in self.trees)

    def roots(self) -> list[WatchRoot]:
        return [WatchRoot(f, recursive=False) for f in sorted(self.dirs())] + [
            WatchRoot(t, recursive=True) for t in sorted(self.trees)
        ]

    def listing(self) -> dict[Path, Entry]:
        """File deps by (mtime, size, inode), other entries by presence: compared on rescans."""
        seen: dict[Path, Entry] = {p: _stat_key(p) for p in self.files}
        for folder, names in _names(self.folders).items():
            for name in names:
                path = folder / name
                if path not in seen and not self.ignored(path):
                    seen[path] = _PRESENT
        return seen

    def changed_since(self, started_ns: int, before: Mapping[Path, set[str]]) -> list[Path]:
        """What changed while the tasks ran: file deps written since `started_ns`, and
        entries that appeared in or left a folder listed in `before`."""
        limit = started_ns - _CLOCK_SLACK_NS
        out = [p for p in self.files if (key := _stat_key(p)) is not None and key[0] >= limit]
        for folder, names in _names(f for f in self.folders if f in before).items():
            for name in names ^ before[folder]:
                if not self.ignored(folder / name):
                    out.append(folder / name)
        return sorted(set(out))

    def describe(self) -> str:
        trees = f" and {len(self.trees)} tree(s)" if self.trees else ""
        return f"watching {len(self.files)} file(s) in {len(self.dirs())} folder(s){trees}"

    def remembered(self) -> tuple[list[str], list[str]]:
        """Files and folders for the next cycle, should its tasks fail to load."""
        return sorted(map(str, self.files)), sorted(map(str, self.folders))

    # --- what `Auto._wait` asks: each returns the changed paths and when to look again ---
    def begin(self, started_ns: int, before: Mapping[Path, set[str]]) -> Found:
        """The baseline, and what changed while the tasks ran."""
        self.baseline = self.listing()
        return self.changed_since(started_ns, before), None

    def hinted(self, hints: Sequence[Path | None]) -> Found:
        """A debounced batch of relevant events: each is a change (see `events_are_changes`)."""
        return [p for p in hints if p is not None], None

    #: whether a relevant event ends the wait by itself, as a change of unknown paths
    events_are_changes = True

    def rescan(self) -> Found:
        """Every watched entry compared with the baseline."""
        now, start = self.listing(), self.baseline
        return [p for p in now.keys() | start.keys() if now.get(p) != start.get(p)], None


#: What a look at the watched files found: the changed paths, and seconds until a file
#: that is still being written should be looked at again (None: nothing pending).
Found = tuple[list[Path], float | None]


@dataclass
class PlanWatchSet(WatchSet):
    """A foundry project's watch set: what its plan names, as `toyfoundry watch` has it.

    The plan the cycle's tasks were drawn from names every file it was read from
    (settings included) and every file an order reads, present or not yet, and
    lists the input folders; `graph_watcher.watched` says what an event there is.
    A change is a file whose content differs from what the plan read (`Plan.contents`,
    the checker's sha256), a named file that appeared or went, or a new file in a
    listed folder: so a write during the run is seen, and a touch that keeps the
    bytes is not. Events are hints; each is checked by a scan of those files, which
    waits for a file still being written (`StableScanner`). The dodo file alone is
    compared by stat, as in other projects.
    """

    plan: Any = None
    named: frozenset[Path] = frozenset()
    listed: frozenset[Path] = frozenset()
    #: how long a file must stay unchanged before it is read (`--quiet-period`)
    quiet: float = 0.2
    scanner: Any = None

    def relevant(self, path: Path) -> bool:
        from toyfoundry.watch.graph_watcher import watched

        if self.ignored(path):
            return False
        return path in self.files or watched(path, self.named, self.listed)

    def roots(self) -> list[WatchRoot]:
        from toyfoundry.watch.graph_watcher import plan_roots

        return sorted(
            set(plan_roots(self.listed, [*self.named, *self.files])), key=lambda r: r.path
        )

    def _inputs(self) -> list[Path]:
        from toyfoundry.watch.graph_watcher import plan_inputs

        return [p for p in plan_inputs(self.plan.layout, self.named) if not self.ignored(p)]

    def begin(self, started_ns: int, before: Mapping[Path, set[str]]) -> Found:
        from toyfoundry.watch.observer import FileState, StableScanner

        self.baseline = {p: _stat_key(p) for p in self.files}
        limit = started_ns - _CLOCK_SLACK_NS
        dodo = [p for p in self.files if (k := self.baseline[p]) is not None and k[0] >= limit]
        self.scanner = scanner = StableScanner(quiet=self.quiet, settle=self.quiet, check="bytes")
        root = self.plan.layout.root
        for rel, content in self.plan.contents.items():
            path = root / rel
            if _is_sha256(content):
                # what the plan read: stats unknown, so the first scan compares the bytes
                scanner.snapshot[path] = FileState("regular", -1, -1, -1, content)
                continue
            with contextlib.suppress(OSError):  # a link or an odd entry: as it is now
                scanner.snapshot[path] = FileState.of(os.lstat(path))
        changed, retry = self._scan(first=True)
        return sorted({*changed, *dodo}), retry

    def _scan(self, first: bool = False) -> Found:
        scan = self.scanner.scan(self._inputs())
        changed = [
            c.path
            for c in scan.changes
            # a named file outside the listed folders that the plan did not read: the baseline
            if not (first and c.what == "added" and c.path.parent not in self.listed)
        ]
        return changed, scan.retry_after

    def hinted(self, hints: Sequence[Path | None]) -> Found:
        return self.rescan()

    events_are_changes = False

    def rescan(self) -> Found:
        changed, retry = self._scan()
        dodo = [p for p in self.files if _stat_key(p) != self.baseline.get(p)]
        return sorted({*changed, *dodo}), retry

    def describe(self) -> str:
        return (
            f"watching the {len(self.named)} file(s) the plan names"
            f" and {len(self.listed)} folder(s) it lists"
        )

    def remembered(self) -> tuple[list[str], list[str]]:
        return sorted(map(str, self.named | self.files)), sorted(map(str, self.listed))


def _is_sha256(content: str) -> bool:
    return len(content) == 64 and all(c in "0123456789abcdef" for c in content)


def _shown(root: Path, paths: Sequence[str]) -> str:
    if not paths or paths == ["?"]:
        return "a change"
    names = []
    for raw in paths[:_SHOWN]:
        try:
            names.append(os.path.relpath(raw, root))
        except ValueError:
            names.append(raw)
    more = f" (+{len(paths) - _SHOWN} more)" if len(paths) > _SHOWN else ""
    return ", ".join(names) + more


@dataclass
class CycleOutcome:
    code: int
    watch: WatchSet | None
    ran: int = 0
    total: int = 0
    seconds: float = 0.0
    error: str = ""


def runs_ours(config: Mapping[str, Any]) -> bool:
    """Whether the project's `run` command is the foundry's (named in its configuration,
    as `pyproject.toml` or `toyfoundry build` names it).

    A cycle runs doit's plain `run` (the foundry's would end the child process when the
    build is done), so with the foundry's it brings only its runners: a task skipped for
    a failed dependency leaves the cycle's exit code to that failure, 1 for an invalid
    order, as `doit` gives. Other projects keep doit's own.
    """
    location = config.get("COMMAND", {}).get("run")
    if not isinstance(location, str):
        return False
    from doit.plugin import PluginEntry

    from toyfoundry.graph.run import FoundryRun

    try:
        command = PluginEntry("COMMAND", "run", location).get()
    except Exception:  # a plugin that cannot be loaded is doit's to report, not ours
        return False
    return isinstance(command, type) and issubclass(command, FoundryRun)


class Auto(DoitCmdBase):  # type: ignore[misc]
    """doit command plugin: `doit auto [TASK ...]`."""

    name = "auto"
    doc_purpose = "automatically execute tasks when a dependency changes"
    doc_usage = "[TASK ...]"
    doc_description = (
        "Runs the tasks, then watches the folders of their file dependencies and runs them\n"
        "again after each change (the task list is reloaded every cycle, so new input\n"
        "files are picked up). Takes `run`'s options; config from [tool.doit.commands.run]\n"
        "applies, overridden by [tool.doit.commands.auto]. Stop with Ctrl-C or SIGTERM."
    )
    execute_tasks = True
    cmd_options = (
        *_RUN_OPTIONS,
        opt_quiet,
        opt_max_delay,
        opt_rescan,
        opt_ignore,
        opt_success,
        opt_failure,
    )

    #: whether cycles run with the foundry's runners (see `runs_ours`); set by `execute`
    foundry_runners = False

    def __init__(self, task_loader: Any = None, cmds: Any = None, **kwargs: Any) -> None:
        config = dict(kwargs.pop("config", None) or {})
        # `auto` runs `run`: the run command's settings apply unless auto's own override them
        config["auto"] = {**config.get("run", {}), **config.get("auto", {})}
        super().__init__(task_loader=task_loader, cmds=cmds, config=config, **kwargs)
        self.cmds = cmds

    # --- the parent: a loop of children ---
    def execute(self, params: Any, args: list[str]) -> int:
        """Loop: one forked child per cycle, until Ctrl-C or SIGTERM (exit 0)."""
        self.foundry_runners = runs_ours(self.config)  # once, before the children fork
        context = multiprocessing.get_context("fork")
        cycle = 0
        changed: list[str] = []
        previous: tuple[list[str], list[str]] = ([], [])
        child: Any = None
        with stop_on_signals():
            try:
                while True:
                    cycle += 1
                    reader, writer = context.Pipe(duplex=False)
                    child = context.Process(
                        target=self._child,
                        args=(params, args, cycle, changed, previous, writer),
                        name=f"doit-auto-{cycle}",
                    )
                    child.start()
                    writer.close()
                    message = self._receive(reader, child)
                    child.join()
                    reader.close()
                    if message is None:
                        print(
                            f"doit auto: cycle {cycle} ended unexpectedly"
                            f" (exit code {child.exitcode}); restarting",
                            file=sys.stderr,
                            flush=True,
                        )
                        if cycle == 1:
                            return 3
                        time.sleep(1.0)
                        continue
                    if message[0] == "fatal":
                        return int(message[1])
                    if message[0] == "stopped":
                        return 0
                    changed, previous = message[1], (message[2], message[3])
            except KeyboardInterrupt:
                while True:
                    # a second Ctrl-C or SIGTERM while the child ends is the same request
                    with contextlib.suppress(KeyboardInterrupt):
                        self._stop(child)
                        return 0

    @staticmethod
    def _receive(reader: Connection, child: Any) -> tuple[Any, ...] | None:
        while True:
            ready = wait([reader, child.sentinel])
            if reader in ready:
                try:
                    message: tuple[Any, ...] = reader.recv()
                except EOFError:
                    return None
                return message
            if not child.is_alive() and not reader.poll():
                return None

    @staticmethod
    def _stop(child: Any) -> None:
        if child is None or not child.is_alive():
            return
        child.terminate()
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()

    # --- the child: run once, watch, report the change ---
    def _child(
        self,
        params: Any,
        args: list[str],
        cycle: int,
        changed: list[str],
        previous: tuple[list[str], list[str]],
        conn: Connection,
    ) -> None:
        stop_once()
        try:
            started_ns = time.time_ns()
            before = _names(Path(f) for f in previous[1])
            outcome = self._run_once(params, args)
            root = Path.cwd()
            reason = "start" if cycle == 1 else f"after {_shown(root, changed)}"
            watch = outcome.watch
            if watch is None:
                print(f"doit auto: cycle {cycle} ({reason}): {outcome.error}", file=sys.stderr)
                if cycle == 1:
                    conn.send(("fatal", outcome.code))
                    return
                watch = WatchSet(root, ignore=params["ignore"])
                watch.files.update(Path(f) for f in previous[0])
                watch.folders.update(Path(f) for f in previous[1])
            else:
                status = "ok" if outcome.code == 0 else f"FAILED (exit {outcome.code})"
                print(
                    f"doit auto: cycle {cycle} ({reason}): ran {outcome.ran} of"
                    f" {outcome.total} task(s) in {outcome.seconds:.2f}s, {status};"
                    f" {watch.describe()}",
                    flush=True,
                )
                self._callback(params, outcome.code)
            sys.stdout.flush()
            paths = self._wait(params, watch, started_ns, before)
            files, folders = watch.remembered()
            conn.send(("changed", paths, files, folders))
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                conn.send(("stopped",))
        finally:
            conn.close()

    def _run_once(self, params: Any, args: list[str]) -> CycleOutcome:
        from toyfoundry.graph.run import our_runners

        runner = Run(task_loader=self.loader, config=self.config, bin_name=self.bin_name)
        defaults, _ = runner.cmdparser.parse([])
        params.add_defaults(defaults)
        started = time.perf_counter()
        try:
            # the cycle reads the tasks' file deps and targets once the run is over
            with our_runners(keep_tasks=True) if self.foundry_runners else contextlib.nullcontext():
                code = int(runner.execute(params, args))
        except (InvalidCommand, InvalidDodoFile, InvalidTask) as exc:
            return CycleOutcome(3, None, error=f"ERROR: {exc}")
        except Exception as exc:
            # a dodo that fails to import (a syntax error mid-edit) must not end the watch
            return CycleOutcome(3, None, error=f"could not load tasks: {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        control = runner.control
        selected = list(tasks_and_deps_iter(control.tasks, control.selected_tasks))
        root = Path.cwd()
        if _draws_from_plan(self.loader.namespace):
            watch: WatchSet = self._plan_watch(params, root)
        else:
            watch = WatchSet(
                root,
                targets={root / t for t in control.targets},
                dep_file=(root / params["dep_file"]),
                ignore=params["ignore"],
            )
            for task in selected:
                for dep in task.file_dep:
                    watch.add_file(root / dep)
                for entry in task.watch:
                    path = root / entry
                    if path.is_dir():
                        watch.trees.add(path)
                    else:
                        watch.add_file(path)
        watch.targets = {root / t for t in control.targets}
        dodo = self.loader.namespace.get("__file__") if self.loader.namespace else None
        if isinstance(dodo, str):
            watch.add_file(Path(dodo).absolute(), folder=False)
        with_actions = [t for t in selected if t.actions]
        ran = sum(1 for t in with_actions if t.executed)
        return CycleOutcome(code, watch, ran, len(with_actions), seconds)

    @staticmethod
    def _plan_watch(params: Any, root: Path) -> PlanWatchSet:
        """The watch set of a foundry project: from the plan this cycle's tasks were drawn
        from (kept for the process: no second read)."""
        from toyfoundry.graph import plan as planning
        from toyfoundry.graph import tasks
        from toyfoundry.store.layout import Layout
        from toyfoundry.watch.graph_watcher import named_files

        plan = tasks.current_plan()
        return PlanWatchSet(
            root,
            dep_file=(root / params["dep_file"]),
            ignore=params["ignore"],
            plan=plan,
            named=named_files(plan.layout, plan),
            listed=frozenset(planning.listed_folders(Layout(root))),
            quiet=params["quiet_period"],
        )

    @staticmethod
    def _callback(params: Any, code: int) -> None:
        command = params["success_callback"] if code == 0 else params["failure_callback"]
        if command:
            subprocess.call(command, shell=True)

    @staticmethod
    def _wait(
        params: Any, watch: WatchSet, started_ns: int, before: Mapping[Path, set[str]]
    ) -> list[str]:
        """Block until a relevant change has settled; the changed paths (or "?" if unknown)."""
        loop = WatchLoop(
            quiet=params["quiet_period"],
            max_delay=params["max_delay"],
            rescan=params["rescan"],
            accept=watch.relevant,
        )
        found: list[Path] = []

        def cycle(wake: Wake) -> float | None:
            if wake.trigger == "start":
                changed, retry = watch.begin(started_ns, before)
                found.extend(changed)
                if found:
                    # changed while the tasks ran: let the writer finish, then go again
                    loop.hints.notify(None)
                return retry
            if wake.trigger == "event":
                changed, retry = watch.hinted(wake.hints)
            else:
                changed, retry = watch.rescan()
            found.extend(changed)
            ended = found or (wake.trigger == "event" and watch.events_are_changes)
            if ended and retry is None:
                loop.stop()
            return retry

        loop.run(watch.roots(), cycle)
        return _paths(found) or ["?"]


def _draws_from_plan(namespace: Mapping[str, Any] | None) -> bool:
    """Whether the task list is the foundry's, drawn from its plan."""
    return any(
        getattr(value, "__module__", None) == "toyfoundry.graph.tasks"
        for value in (namespace or {}).values()
    )


def _paths(paths: Iterable[Path]) -> list[str]:
    return sorted({str(p) for p in paths})


def stop_once() -> None:
    """Ctrl-C or SIGTERM stops a cycle's child once (`_interrupt_once`), in place of the
    handlers it inherits from the loop, which raise on every signal."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt_once)


def _interrupt_once(signum: int, frame: object) -> None:
    """The first signal stops the child; a second one while it stops (a SIGTERM and a
    Ctrl-C to the loop together make the loop terminate the child twice) must not
    interrupt the stop with a traceback."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt
