"""The watch core every watcher shares: event sources, debounced hints, one loop, and scans
that read only complete files.

Events are hints, never the whole truth: inotify queues overflow, editors replace
files in odd ways, and a network filesystem may send nothing at all. So a watcher
turns each debounced batch of hints (and a periodic timer) into a rescan, and the
rescan compares what is on disk with what it remembers; the graph watcher rescans
only the hinted files between full rescans, made at least every rescan period and
after an overflow (watchdog's "events lost", passed on as an "anything changed"
hint). A file enters that memory
only once it is complete: a JSON file once it parses (unchanged while it was read),
any other file once unchanged (size, mtime, inode) for a quiet period; a JSON
file that still does not parse after a longer settle period is taken as it is,
so a bad file gets reported instead of waited on for ever.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Literal, Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from toyfoundry.store import safe_read
from toyfoundry.store.safe_read import FileKind, file_kind

Notify = Callable[[Path | None], None]
Clock = Callable[[], float]

#: watchdog event types that can mean new bytes; opens and reads (our own scans) are not news.
_CHANGE_EVENTS = frozenset({"created", "modified", "deleted", "moved", "closed", "attrib"})
#: A hint inbox holds at most this many paths; past it, one "anything changed" hint stands for all.
_MAX_HINTS = 10_000
_CHUNK = 1 << 16


# --------------------------------------------------------------------------- event sources


@dataclass(frozen=True)
class WatchRoot:
    """A folder to watch; `recursive=False` sees only its direct entries."""

    path: Path
    recursive: bool = True


class EventSource(Protocol):
    """Where change hints come from. A hint is a path, or None for "anything may have changed"."""

    def start(self, roots: Sequence[WatchRoot], notify: Notify) -> None: ...

    def add(self, roots: Sequence[WatchRoot]) -> None:
        """Also watch these roots from now on (those already watched are left as they are)."""
        ...

    def repair(self, *, everything: bool = False) -> None:
        """Watch again any root that was removed or replaced since it was watched (called
        by the loop before each cycle, from the loop's thread); `everything`: check every
        root, not only those reported gone."""
        ...

    def stop(self) -> None: ...


class _Forward(FileSystemEventHandler):
    """Passes the paths of watchdog's change events on as hints; `lost` hears of the
    watched folder itself going away (its watch ends with it)."""

    def __init__(
        self,
        notify: Notify,
        root: Path | None = None,
        lost: Callable[[Path], None] | None = None,
    ) -> None:
        super().__init__()
        self._notify = notify
        self._root = root
        self._lost = lost

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind == "events_lost":
            # the kernel's queue overflowed: anything may have changed
            self._notify(None)
            return
        if kind not in _CHANGE_EVENTS:
            return
        for raw in (event.src_path, event.dest_path):
            if raw:
                path = Path(os.fsdecode(raw))
                if path == self._root and self._lost and kind in ("deleted", "moved"):
                    self._lost(path)
                self._notify(path)


class WatchdogSource:
    """Real filesystem events through watchdog's `Observer` (inotify on Linux), or its poller.

    A root that does not exist yet is waited for: its nearest existing ancestor is
    watched, and the root is scheduled (and announced as a hint) by the `repair` after
    it appears (the loop repairs before every cycle). A
    watch ends with the folder it watches, and a folder moved away takes its watch
    along, so a root removed, replaced or renamed (`rm -r orders && mkdir orders`, a
    sync tool swapping folders) is watched again by `repair`: at once when its removal
    was reported, otherwise once a rescan finds the folder at that path is not the one
    watched.
    """

    def __init__(self, *, polling: bool = False, poll_interval: float = 1.0) -> None:
        self.polling = polling
        self.poll_interval = poll_interval
        self._observer: BaseObserver | None = None
        self._notify: Notify | None = None
        self._missing: list[WatchRoot] = []
        #: (folder, recursive, waits for roots to appear) -> its watch and the folder's
        #: (device, inode) when it was watched
        self._scheduled: dict[tuple[Path, bool, bool], tuple[ObservedWatch, tuple[int, int]]] = {}
        #: roots reported removed since the last `repair`, under a lock of their own
        self._lost: set[Path] = set()
        self._lost_lock = threading.Lock()
        #: guards what is scheduled and awaited. Never taken by an event handler: watchdog
        #: holds its own lock while it calls them, and `add`/`repair` hold this one while
        #: they call watchdog
        self._lock = threading.RLock()

    def start(self, roots: Sequence[WatchRoot], notify: Notify) -> None:
        observer: BaseObserver = (
            PollingObserver(timeout=self.poll_interval) if self.polling else Observer()
        )
        observer.daemon = True
        self._observer = observer
        self._notify = notify
        with self._lock:
            for root in roots:
                self._schedule(root)
        observer.start()

    def add(self, roots: Sequence[WatchRoot]) -> None:
        with self._lock:
            for root in roots:
                if (root.path, root.recursive, False) not in self._scheduled and (
                    root not in self._missing
                ):
                    self._schedule(root)

    def repair(self, *, everything: bool = False) -> None:
        """Watch again each root reported removed, or (`everything`) each whose folder is
        gone or is no longer the one watched, and each awaited root that is there now; a
        root watched again is announced as an "anything changed" hint, since files may
        have come and gone meanwhile."""
        with self._lock:
            if self._missing:
                # each awaited root made since is watched (its parent's events said so, or
                # it appeared before the parent's watch began: watches start in their own
                # thread), and each still missing is awaited from its nearest folder now
                awaited, self._missing = self._missing, []
                for root in awaited:
                    self._schedule(root)
                if len(self._missing) < len(awaited):
                    # everything under the new root is new: let the watcher rescan
                    self._hint(None)
            with self._lost_lock:
                lost, self._lost = self._lost, set()
            if not (lost or everything) or self._observer is None:
                return
            broken: list[WatchRoot] = []
            for key, (watch, ident) in list(self._scheduled.items()):
                path, recursive, waiting = key
                if not (everything or path in lost) or _identity(path) == ident:
                    continue
                # one watch per folder: a root's and a waiting parent's share it
                with contextlib.suppress(Exception):
                    self._observer.unschedule(watch)
                for role in (False, True):
                    self._scheduled.pop((path, recursive, role), None)
                if not waiting:
                    broken.append(WatchRoot(path, recursive))
            if not broken and not lost:
                return
            waiting_roots, self._missing = self._missing, []
            for root in [*broken, *waiting_roots]:
                self._schedule(root)
            if broken:
                self._hint(None)

    def _watch(self, path: Path, recursive: bool, waiting: bool) -> None:
        key = (path, recursive, waiting)
        if key in self._scheduled or self._observer is None:
            return
        ident = _identity(path)
        handler = (
            _Forward(self._appeared, path, self._gone)
            if waiting
            else _Forward(self._hint, path, self._gone)
        )
        try:
            watch = self._observer.schedule(handler, str(path), recursive=recursive)
        except OSError:
            # gone between the check and the watch; the periodic rescan still covers it
            return
        # a folder gone meanwhile has no identity: the next full `repair` watches it again
        self._scheduled[key] = (watch, ident or (-1, -1))

    def _schedule(self, root: WatchRoot) -> None:
        if root.path.is_dir():
            self._watch(root.path, root.recursive, False)
            return
        self._missing.append(root)
        parent = root.path.parent
        while not parent.is_dir() and parent != parent.parent:
            parent = parent.parent
        self._watch(parent, False, True)

    def _gone(self, path: Path) -> None:
        with self._lost_lock:
            self._lost.add(path)
        self._hint(None)  # the watcher's next cycle repairs the watch, then rescans

    def _hint(self, path: Path | None) -> None:
        if self._notify is not None:
            self._notify(path)

    def _appeared(self, path: Path | None) -> None:
        """An event in the folder an awaited root is awaited from: when it names the root
        or a folder on the way to it, wake the watcher, whose `repair` watches the root
        or awaits it from nearer (not here: see `_lock`)."""
        for root in list(self._missing):
            if path is None or path == root.path or path in root.path.parents:
                self._hint(None)
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the observer; a shutdown stuck inside watchdog is abandoned after `timeout`."""
        observer, self._observer = self._observer, None
        self._notify = None
        if observer is None:
            return

        def shut() -> None:
            observer.stop()
            observer.join(timeout)

        # its threads are daemons: one left behind cannot keep the process alive
        stopper = threading.Thread(target=shut, name="watchdog-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)


def _identity(path: Path) -> tuple[int, int] | None:
    """A folder's (device, inode), or None when there is no folder at `path`."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class ScriptedSource:
    """An event source a test drives by hand: `emit(path)` delivers a hint as an observer would."""

    def __init__(self) -> None:
        self.roots: list[WatchRoot] = []
        self.started = threading.Event()
        self._notify: Notify | None = None

    def start(self, roots: Sequence[WatchRoot], notify: Notify) -> None:
        self.roots = list(roots)
        self._notify = notify
        self.started.set()

    def add(self, roots: Sequence[WatchRoot]) -> None:
        self.roots += [r for r in roots if r not in self.roots]

    def repair(self, *, everything: bool = False) -> None:
        return None

    def stop(self) -> None:
        self._notify = None

    def emit(self, path: Path | None = None) -> None:
        if self._notify is not None:
            self._notify(path)


# --------------------------------------------------------------------------- debounce


class Hints:
    """A thread-safe inbox of change hints, handed out in debounced batches.

    A batch closes after `quiet` seconds without a new hint, or `max_delay` seconds
    after its first hint, whichever comes first: a burst becomes one rescan, and a
    steady trickle still gets one every `max_delay` seconds.
    """

    def __init__(
        self,
        *,
        quiet: float,
        max_delay: float,
        accept: Callable[[Path], bool] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self.max_delay = max(max_delay, quiet)
        self.accept = accept
        self.clock = clock
        self._cond = threading.Condition()
        self._paths: list[Path | None] = []
        self._first = 0.0
        self._last = 0.0
        self._stopped = False

    def notify(self, path: Path | None) -> None:
        """Record a hint (from any thread); paths the filter rejects are dropped here."""
        if path is not None and self.accept is not None and not self.accept(path):
            return
        with self._cond:
            now = self.clock()
            if not self._paths:
                self._first = now
            self._last = now
            if len(self._paths) < _MAX_HINTS:
                self._paths.append(path)
            else:
                self._paths[-1] = None
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def next_batch(self, deadline: float | None = None) -> list[Path | None]:
        """Wait for hints, then for a quiet spell; [] when `deadline` (a clock time) passes first."""
        with self._cond:
            while not self._paths and not self._stopped:
                timeout = None if deadline is None else deadline - self.clock()
                if timeout is not None and timeout <= 0:
                    return []
                self._cond.wait(timeout)
            while not self._stopped:
                wake = min(self._last + self.quiet, self._first + self.max_delay)
                remaining = wake - self.clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, self._paths = self._paths, []
            return batch


# --------------------------------------------------------------------------- the loop

Trigger = Literal["start", "event", "rescan"]


@dataclass(frozen=True)
class Wake:
    """Why a cycle runs: at start, after a debounced batch of hints, or on the rescan timer."""

    trigger: Trigger
    #: the batch's hints (a path, or None for "anything may have changed"); [] on a rescan
    hints: list[Path | None] = field(default_factory=list)


#: One cycle of a watcher: it rescans and acts; it returns how soon it wants to run again
#: (a file still being written), or None to wait for hints or the rescan timer.
Cycle = Callable[[Wake], float | None]


class WatchLoop:
    """The loop every watcher runs: events from a source, debounced into batches, and a
    cycle at start, after every batch and every `rescan` seconds, so a missed event is
    caught by the next rescan. Ctrl-C propagates to the caller, after the source stops."""

    def __init__(
        self,
        source: EventSource | None = None,
        *,
        quiet: float,
        max_delay: float,
        rescan: float,
        accept: Callable[[Path], bool] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.source: EventSource = source or WatchdogSource()
        self.hints = Hints(quiet=quiet, max_delay=max_delay, accept=accept, clock=clock)
        self.rescan = rescan
        self.clock = clock
        #: whether the source is started: roots may be added to it
        self.running = False

    def run(self, roots: Sequence[WatchRoot], cycle: Cycle) -> None:
        """Run `cycle` until `stop()` (from any thread, or from a cycle)."""
        self.source.start(roots, self.hints.notify)
        self.running = True
        try:
            retry = cycle(Wake("start"))
            checked = self.clock()
            while not self.hints.stopped:
                wait = self.rescan if retry is None else min(self.rescan, retry)
                batch = self.hints.next_batch(self.clock() + wait)
                if self.hints.stopped:
                    break
                # a watched folder removed or replaced is watched again before the cycle
                # looks: those events reported at once, every folder at least every
                # `rescan` seconds (one renamed away reports nothing under its old name)
                everything = not batch or self.clock() - checked >= self.rescan
                if everything:
                    checked = self.clock()
                self.source.repair(everything=everything)
                retry = cycle(Wake("event", batch) if batch else Wake("rescan"))
        finally:
            self.running = False
            self.source.stop()

    def add(self, roots: Sequence[WatchRoot]) -> None:
        """Watch these roots too, from now on, when the loop runs."""
        if self.running:
            self.source.add(roots)

    def stop(self) -> None:
        self.hints.stop()

    @property
    def stopped(self) -> bool:
        return self.hints.stopped


# --------------------------------------------------------------------------- stable scans

Kind = FileKind
Check = Literal["json", "bytes"]


@dataclass(frozen=True)
class FileState:
    """What a watcher remembers of a file: enough to see a change without reading it again."""

    kind: Kind
    size: int
    mtime_ns: int
    inode: int
    sha256: str | None = None

    @classmethod
    def of(cls, st: os.stat_result, sha256: str | None = None) -> FileState:
        return cls(file_kind(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino, sha256)

    def same_stat(self, other: FileState) -> bool:
        return (self.kind, self.size, self.mtime_ns, self.inode) == (
            other.kind,
            other.size,
            other.mtime_ns,
            other.inode,
        )

    def same_content(self, other: FileState) -> bool:
        if self.kind != other.kind:
            return False
        if self.kind != "regular" or self.sha256 is None or other.sha256 is None:
            return self.same_stat(other)
        return self.sha256 == other.sha256


@dataclass(frozen=True)
class Change:
    """One file that is new, different or gone since the last scan that saw it complete."""

    path: Path
    what: Literal["added", "changed", "removed"]
    old: FileState | None
    new: FileState | None


@dataclass
class ScanResult:
    changes: list[Change] = field(default_factory=list)
    #: files seen changing but not yet complete: they are neither read nor remembered
    pending: list[Path] = field(default_factory=list)
    #: seconds until the earliest pending file could be complete; None when nothing is pending
    retry_after: float | None = None


@dataclass
class _Pending:
    state: FileState
    since: float


def sha256_file(path: Path) -> tuple[str, os.stat_result]:
    """sha256 of a regular file, streamed (no size limit), never following a link or opening a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        digest = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
        return digest.hexdigest(), st
    finally:
        os.close(fd)


class StableScanner:
    """Remembers a set of files between scans and reads each one only once it is complete.

    `check="json"` reads through `safe_read` (bounded, strict) and wants the bytes
    to parse; `check="bytes"` streams any regular file. Links, FIFOs and other odd
    entries are never opened: they are remembered by what they are.
    """

    def __init__(
        self,
        *,
        quiet: float,
        settle: float,
        check: Check = "json",
        max_bytes: int | None = None,
        max_depth: int | None = None,
        clock: Clock = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.quiet = quiet
        self.settle = max(settle, quiet)
        self.check = check
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.clock = clock
        self.wall_ns = wall_ns
        self.snapshot: dict[Path, FileState] = {}
        self._pending: dict[Path, _Pending] = {}

    def scan(self, present: Iterable[Path]) -> ScanResult:
        """Compare the files that exist now with the snapshot; complete ones update it."""
        return self.scan_stats((path, None) for path in present)

    def scan_stats(
        self,
        present: Iterable[tuple[Path, os.stat_result | None]],
        only: AbstractSet[Path] | None = None,
    ) -> ScanResult:
        """`scan`, for a caller that has just `lstat`ed some of the files itself (their
        `os.lstat` with the path; None for one to `lstat` here).

        `only`: the files the caller looked at, when not all of them (a watcher that trusts
        its events): one of those not `present` is gone, every other file is as it was."""
        result = ScanResult()
        now = self.clock()
        seen: set[Path] = set()
        waits: list[float] = []
        snapshot, pending = self.snapshot, self._pending
        for path, known in present:
            seen.add(path)
            st = known
            if st is None:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    seen.discard(path)
                    continue
                except OSError:
                    continue
            old = snapshot.get(path)
            if (
                old is not None
                and old.mtime_ns == st.st_mtime_ns
                and old.size == st.st_size
                and old.inode == st.st_ino
                and old.kind == file_kind(st.st_mode)
            ):
                # `same_stat` without a state made for each of a thousand unchanged files
                if pending:
                    pending.pop(path, None)
                continue
            observed = FileState.of(st)
            ready, wait = self._examine(path, observed, now)
            if ready is None:
                result.pending.append(path)
                waits.append(wait)
                continue
            self._pending.pop(path, None)
            self.snapshot[path] = ready
            if old is None:
                result.changes.append(Change(path, "added", None, ready))
            elif not old.same_content(ready):
                result.changes.append(Change(path, "changed", old, ready))
        gone: Iterable[Path] = self.snapshot if only is None else only
        for path in [p for p in gone if p not in seen and p in snapshot]:
            old = self.snapshot.pop(path)
            result.changes.append(Change(path, "removed", old, None))
        gone = self._pending if only is None else only
        for path in [p for p in gone if p not in seen and p in pending]:
            del self._pending[path]
        if waits:
            result.retry_after = max(0.05, min(waits))
        return result

    def _examine(
        self, path: Path, observed: FileState, now: float
    ) -> tuple[FileState | None, float]:
        """(state, 0) when complete; (None, seconds to wait) while it may still be written."""
        if observed.kind != "regular":
            # renames and link creation are atomic: there is nothing to wait for
            return observed, 0.0
        pending = self._pending.get(path)
        if pending is None or not pending.state.same_stat(observed):
            pending = _Pending(observed, now)
            self._pending[path] = pending
        age = (self.wall_ns() - observed.mtime_ns) / 1e9
        steady = max(age, now - pending.since)
        if steady < self.quiet and self.check != "json":
            return None, self.quiet - steady
        # JSON needs no quiet spell: a document cut short never parses (an object ends with
        # its last byte), so one that parses, unchanged while it was read, is complete
        sha, ok, after = self._read(path)
        if after is None or not after.same_stat(observed):
            # written to while we read: start the quiet period again
            self._pending.pop(path, None)
            return None, self.quiet
        if ok or steady >= self.settle:
            return replace(after, sha256=sha), 0.0
        if steady < self.quiet:
            return None, self.quiet - steady
        return None, self.settle - steady

    def _read(self, path: Path) -> tuple[str | None, bool, FileState | None]:
        """(sha256 or None, whether the check passed, the state right after reading)."""
        sha: str | None = None
        ok = False
        if self.check == "bytes":
            try:
                sha, _ = sha256_file(path)
                ok = True
            except OSError:
                pass
        else:
            try:
                data = safe_read.read_bytes(path, max_bytes=self.max_bytes)
            except safe_read.ReadError:
                data = None
            if data is not None:
                sha = hashlib.sha256(data).hexdigest()
                ok = self._parses(path, data)
        try:
            after = FileState.of(os.lstat(path))
        except OSError:
            return sha, ok, None
        return sha, ok, after

    def _parses(self, path: Path, data: bytes) -> bool:
        """The document is whole: JSON parses (the settings file, TOML, parses as TOML)."""
        if path.suffix == ".toml":
            try:
                tomllib.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError):
                return False
            return True
        try:
            safe_read.parse_json(data, source=str(path), max_depth=self.max_depth)
        except safe_read.ReadError:
            return False
        return True

    @property
    def pending(self) -> list[Path]:
        return sorted(self._pending)


# --------------------------------------------------------------------------- signals


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt inside the block, so watchers unwind cleanly.

    SIGINT is set explicitly because a process started in the background of a
    script inherits it ignored. Only the main thread may set handlers; elsewhere
    this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
