"""doit's dependency DB for the foundry: SQLite, committed as tasks finish, under the lock.

Why not doit's own backends: `json` and `dbm` keep the whole DB in memory and write it
when the run ends, so a killed build forgets every task it finished, and two processes
that meet overwrite each other's records. doit's `sqlite3` backend stores in SQLite but
also only at the end. This backend takes a task's record the moment doit saves it (the
`deps:` key is the last one `Dependency.save_success` writes) and commits it within
`COMMIT_EVERY` records or `COMMIT_WITHIN` seconds, whichever comes first, in one
transaction with the records that finished meanwhile: a commit per task cost a full
build one SQLite transaction per task, a tenth of the build process's work. A killed
build therefore resumes with the unfinished tasks and at most those few finished ones
left, and a record is only ever written after doit saved it, which is after the task's
outputs were written whole and flushed: a task is never recorded as done on outputs
that are not on disk. The file is plain SQLite holding JSON text: the same bytes on
every machine and Python version, so a CI cache can carry it.

The backend also holds the foundry lock from the moment doit opens the DB until it
closes it, so every doit command that reads or writes state (run, list, info, forget,
clean, auto) waits for a watcher or another build instead of colliding with it.

Beside each task's record the backend keeps its *stamp*: a digest of the task's file
deps and the mtimes recorded for them, written with the record in one transaction,
when the record is one a check can settle by mtimes alone (our checker's, not
ignored, every dep hashed). A plain `doit` (`graph/stale.py`) reads every stamp in
one query and compares each with the digest of the deps' current mtimes, instead of
decoding every record (26 MB of JSON at 10,000 orders). A task that check finds up to
date from its record although its deps' mtimes moved (a fresh copy: equal by size and
hash) is stamped again at the current mtimes, in one transaction for the run. Triggers
on the `doit` table drop a task's stamp whenever its record is written or deleted by anything, an older
release or a hand-run `sqlite3` included, so a stamp never outlives its record.

SQLite's own storage failures (a full disk, an I/O error, a read-only file) are raised
as the `OSError` they are, so the build ends with the same one line as any other
failed write (`toyfoundry: error: ENOSPC: ...`) instead of a traceback, and the
next build resumes from the last committed record.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from toyfoundry.errors import FoundryError
from toyfoundry.store import atomic, fsio
from toyfoundry.store.lock import FoundryLock

#: The DB currently open in this process; the file checker shares its connection.
_current: FoundryDB | None = None

SCHEMA = """
create table if not exists doit (task_id text primary key, task_data text not null);
create table if not exists meta (key text primary key, value text not null);
create table if not exists hashes (
    path text primary key, mtime_ns integer not null, size integer not null,
    inode integer not null, digest text not null
);
create table if not exists stamps (task_id text primary key, stamp text not null);
create trigger if not exists stamp_gone_on_insert after insert on doit
    begin delete from stamps where task_id = new.task_id; end;
create trigger if not exists stamp_gone_on_update after update on doit
    begin delete from stamps where task_id in (old.task_id, new.task_id); end;
create trigger if not exists stamp_gone_on_delete after delete on doit
    begin delete from stamps where task_id = old.task_id; end;
"""


def stamp_of(deps: list[str], mtimes: list[float]) -> str:
    """A digest of a task's file deps, sorted and distinct, and their mtimes in that order:
    their count, the mtimes as doubles (equal floats give equal bytes), the paths."""
    digest = hashlib.blake2b(len(deps).to_bytes(8, "little"), digest_size=16)
    digest.update(array("d", mtimes).tobytes())
    digest.update("\0".join(deps).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def record_stamp(data: dict[str, Any]) -> str | None:
    """The stamp of a task's record (`stamp_of` its deps and their recorded mtimes), or None
    when a check of the record needs more than equal mtimes: a record of another checker,
    an ignored task, no file deps, or a dep recorded as refused or gone (see `stamps`)."""
    from toyfoundry.graph.checker import CHECKER_NAME, not_hashed

    deps = data.get("deps:")
    if not deps or data.get("checker:") != CHECKER_NAME or data.get("ignore:"):
        return None
    names = sorted(set(deps))
    mtimes = []
    for dep in names:
        state = data.get(dep)
        if not isinstance(state, list | tuple) or len(state) != 3:
            return None
        mtime, _, digest = state
        if not isinstance(mtime, float) or not isinstance(digest, str) or not_hashed(digest):
            return None
        mtimes.append(mtime)
    return stamp_of(names, mtimes)


def _decode(text: str) -> Any:
    """JSON text, as doit's own codec writes it, parsed by orjson (several times faster)."""
    return orjson.loads(text)


def _encode(data: Any, codec: Any) -> str:
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # a value only doit's codec knows how to write
        return str(codec.encode(data))


#: Lookups (of hashes, of task records) answered one query each before the whole table is loaded.
_POINT_LOOKUPS = 64
#: Remembered hashes are written to the DB in one transaction per this many.
_HASH_BATCH = 512
#: Task records committed in one transaction once this many wait (see the module's docstring).
COMMIT_EVERY = 16
#: Seconds a finished task's record waits for its commit at most while the build goes on.
COMMIT_WITHIN = 0.2


def current() -> FoundryDB | None:
    return _current


#: SQLite's primary result codes for a failure of the storage under it, as errno values.
_STORAGE_ERRORS = {
    13: errno.ENOSPC,  # SQLITE_FULL: "database or disk is full"
    10: errno.EIO,  # SQLITE_IOERR: "disk I/O error"
    8: errno.EROFS,  # SQLITE_READONLY
    14: errno.EACCES,  # SQLITE_CANTOPEN
}


def storage_error(exc: sqlite3.Error, path: str) -> OSError | None:
    """The `OSError` a SQLite storage failure stands for, or None for any other error."""
    code = getattr(exc, "sqlite_errorcode", None)
    number = _STORAGE_ERRORS.get(code & 0xFF) if isinstance(code, int) else None
    if number is None:
        return None
    return OSError(number, f"{os.strerror(number)} (SQLite: {exc})", path)


@contextlib.contextmanager
def _storage(path: str) -> Iterator[None]:
    """Let SQLite's storage failures out as `OSError`s naming the DB."""
    try:
        yield
    except sqlite3.Error as exc:
        mapped = storage_error(exc, path)
        if mapped is None:
            raise
        raise mapped from None


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=60.0)
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=normal")
    conn.executescript(SCHEMA)
    return conn


def _refuse_linked_folders(db: Path) -> None:
    """Refuse to open the DB of a project whose own folders are links (see
    `Layout.linked_folders`): every doit command that writes opens it first."""
    state = db.absolute().parent
    if state.name != ".toyfoundry":
        return  # a DB somewhere else: not a project layout to check
    from toyfoundry.store.layout import Layout

    layout = Layout(state.parent)
    if not layout.linked_folders():
        return  # four lstats; the settings (and pydantic) only when there is a link
    from doit.exceptions import InvalidDodoFile

    from toyfoundry.errors import FoundryError
    from toyfoundry.exchange.loader import linked_folder_problems

    problems = linked_folder_problems(layout)
    if problems:
        refused = FoundryError("", problems)
        raise InvalidDodoFile(str(refused)) from refused


class FoundryDB:
    """A doit DB backend (`backend = "toyfoundry"`): SQLite, committed as tasks finish, lock held."""

    desc = "SQLite, committed as each task finishes; holds the foundry lock (toyfoundry)"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        global _current
        self.name = name
        self.codec = codec
        path = Path(name)
        _refuse_linked_folders(path)
        self._lock = FoundryLock(path.parent / "lock", purpose=f"doit ({os.getpid()})")
        self._lock.acquire()
        try:
            self._conn = _connect(path)
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            mapped = storage_error(exc, name)
            if mapped is not None:  # a full disk or an I/O error: not the file's fault
                raise mapped from None
            from doit.dependency import DatabaseException

            if isinstance(exc, sqlite3.OperationalError):  # locked, a disk error: not its bytes
                raise DatabaseException(
                    f"dependency DB {name!r} cannot be opened ({exc})"
                ) from None
            raise DatabaseException(
                f"dependency DB {name!r} is not a Toyfoundry SQLite DB ({exc}); "
                "remove it to start afresh (every task will run once)"
            ) from None
        self._cache: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._raw: dict[str, str] | None = None
        #: tasks whose record was committed and dropped from memory (see `_commit`): the
        #: file holds it, and `_raw`, read earlier, does not
        self._gone: set[str] = set()
        self._hashes: dict[str, tuple[int, int, int, str]] | None = None
        self._new_hashes: dict[str, tuple[int, int, int, str]] = {}
        #: hashes build workers made of what they wrote (`offer_hashes`), not taken yet
        self._offered: dict[str, tuple[int, int, int, str]] = {}
        self._lookups = 0
        self._task_lookups = 0
        #: saved records not committed yet, as written: task -> (JSON text, stamp or None)
        self._pending: dict[str, tuple[str, str | None]] = {}
        #: when the oldest of them was saved (`time.monotonic`)
        self._pending_since = 0.0
        #: folders that build workers wrote to and left to flush before their tasks'
        #: records are committed (see `written`), and whether file data waits too
        self._unflushed: set[str] = set()
        self._unflushed_data = False
        _current = self

    # --- doit's backend interface ---
    def get(self, task_id: str, dependency: str) -> Any:
        data = self._cache.get(task_id)
        if data is None:
            data = self._task(task_id)
        return data.get(dependency)

    def _task(self, task_id: str) -> dict[str, Any]:
        data = self._cache.get(task_id)
        if data is not None:
            return data
        if task_id in self._gone or (self._raw is None and self._task_lookups < _POINT_LOOKUPS):
            # a watcher's rebuild asks about a few tasks: one query each, not every record
            if task_id not in self._gone:
                self._task_lookups += 1
            text = self._point(task_id)
        else:
            text = self._records().pop(task_id, None)
        data = self._cache[task_id] = _decode(text) if text is not None else {}
        return data

    def _point(self, task_id: str) -> str | None:
        pending = self._pending.get(task_id)
        if pending is not None:
            return pending[0]
        row = self._conn.execute("select task_data from doit where task_id = ?", (task_id,))
        found = row.fetchone()
        return str(found[0]) if found else None

    def record(self, task_id: str) -> dict[str, Any]:
        """A task's record, decoded but not kept: the stale check reads every record once,
        and doit then asks again only about the few tasks it is handed."""
        data = self._cache.get(task_id)
        if data is not None:
            return data
        if self._raw is None and self._task_lookups < _POINT_LOOKUPS:
            return self._task(task_id)
        text = self._point(task_id) if task_id in self._gone else self._records().get(task_id)
        return _decode(text) if text is not None else {}

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        self._task(task_id)[dependency] = value
        self._dirty.add(task_id)
        if dependency == "deps:" or dependency == "ignore:":
            self._commit(task_id)

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """One write transaction (autocommit), through the fault point and the error mapping."""
        with _storage(self.name):
            fsio.commit_point()
            self._conn.execute(sql, params)

    def _commit(self, task_id: str) -> None:
        """Take the task's saved record for the next commit (see the module's docstring)."""
        record = self._cache[task_id]
        if not self._waiting():
            self._pending_since = time.monotonic()
        self._pending[task_id] = (_encode(record, self.codec), record_stamp(record))
        self._dirty.discard(task_id)
        # doit asks nothing more of a record it has saved: a full build would otherwise
        # keep every task's record in memory (30 MB at 10,000 orders) until it ends;
        # asked again, it is read back from what waits for the commit or from the file
        del self._cache[task_id]
        self._gone.add(task_id)
        if len(self._pending) >= COMMIT_EVERY:
            self.commit()

    def written(self, folders: Iterable[str], *, data: bool) -> None:
        """A build worker's task renamed files into `folders` (and appended `data` to a
        ledger) and left their flush to the build: done before the next commit, which may
        hold its record, so a task is never recorded on outputs that are not durable;
        one flush for several tasks' folders (see `atomic.deferred_folder_syncs`)."""
        if not self._waiting():
            self._pending_since = time.monotonic()
        self._unflushed.update(folders)
        self._unflushed_data = self._unflushed_data or data

    def _waiting(self) -> bool:
        return bool(self._pending or self._unflushed or self._unflushed_data)

    def commit_due(self) -> float | None:
        """Seconds until the records waiting must be committed (0: now), None if none wait."""
        if not self._waiting():
            return None
        return max(0.0, self._pending_since + COMMIT_WITHIN - time.monotonic())

    def commit(self) -> None:
        """Flush the folders written for them, then commit the records waiting, with their
        stamps, in one transaction. They leave the queue first: if the flush or the commit
        fails, they are not recorded and their tasks run again."""
        pending, self._pending = self._pending, {}
        if self._unflushed or self._unflushed_data:
            folders, whole = self._unflushed, self._unflushed_data
            self._unflushed, self._unflushed_data = set(), False
            atomic.flush_deferred(folders, data=whole)
        if not pending:
            return
        records = [(task_id, data) for task_id, (data, _) in pending.items()]
        stamps = [(task_id, stamp) for task_id, (_, stamp) in pending.items() if stamp]

        def write(conn: sqlite3.Connection) -> None:
            # the records, then their stamps (each insert's trigger drops the old stamp)
            conn.executemany("insert or replace into doit values (?, ?)", records)
            if stamps:
                conn.executemany("insert or replace into stamps values (?, ?)", stamps)

        self._transaction(write)

    def done_with(self, task_id: str) -> None:
        """doit will ask nothing more of this task's record (found up to date): drop the
        decoded copy, as `_commit` does, unless it holds changes not yet written."""
        if task_id in self._cache and task_id not in self._dirty:
            del self._cache[task_id]
            self._gone.add(task_id)

    def stamps(self) -> dict[str, str]:
        """Every task's stamp (see `stamps` in the module's docstring), in one query."""
        return dict(self._conn.execute("select task_id, stamp from stamps"))

    def add_stamps(self, stamps: Iterable[tuple[str, str]]) -> None:
        """Store stamps made from records as read from the DB and unchanged since (a record of
        a release before stamps), in one transaction."""
        rows = [(task_id, stamp) for task_id, stamp in stamps if task_id not in self._dirty]
        if not rows:
            return
        self._transaction(
            lambda conn: conn.executemany("insert or replace into stamps values (?, ?)", rows)
        )

    def has_records(self) -> bool:
        """Whether any task has a record (one query, nothing decoded)."""
        if self._cache or self._gone or self._raw or self._pending:
            return True
        return self._conn.execute("select 1 from doit limit 1").fetchone() is not None

    def in_(self, task_id: str) -> bool:
        return bool(self._task(task_id))

    def recorded(self, task_id: str) -> bool:
        """`in_` without decoding the record (the run command asks about every task)."""
        if task_id in self._cache:
            return bool(self._cache[task_id])
        if task_id in self._pending:
            return True
        if task_id in self._gone or (self._raw is None and self._task_lookups < _POINT_LOOKUPS):
            if task_id not in self._gone:  # counted as `_task` counts them
                self._task_lookups += 1
            found = self._conn.execute("select 1 from doit where task_id = ?", (task_id,))
            return found.fetchone() is not None
        return task_id in self._records()

    def _records(self) -> dict[str, str]:
        """Every record's undecoded text, read with one query once more than a few were
        asked for (a no-op asks about every task); each is decoded when first asked for."""
        if self._raw is None:
            self._raw = dict(self._conn.execute("select task_id, task_data from doit"))
        return self._raw

    def dump(self) -> None:
        """Flush what is left and close; doit calls this once when a command ends."""
        global _current
        try:
            for task_id in sorted(self._dirty):
                self._commit(task_id)
            self.commit()
            self._write_hashes()
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            if _current is self:
                _current = None
            self._lock.release()

    def starting(self, task_id: str) -> None:
        """Delete the task's record from the file, not from memory, before its action runs.

        doit records a task after its action. An action killed after rewriting some of
        its targets would otherwise leave the task's older record behind, and once the
        inputs hold that record's bytes again (a review undone, a checkpoint restored)
        doit would trust targets it never recorded. With the record gone a killed task
        runs again; the copy in memory still spares `save_success` re-checking the deps
        that did not change, and its commit puts the whole record back.
        """
        due = self.commit_due()
        if due is not None and due <= 0:
            self.commit()  # a task runs next: what finished before it waited long enough
        waiting = self._pending.pop(task_id, None) is not None
        if waiting or self._cache.get(task_id) or task_id in self._gone:
            self._write("delete from doit where task_id = ?", (task_id,))

    def remove(self, task_id: str) -> None:
        self._pending.pop(task_id, None)
        self._cache.pop(task_id, None)
        self._gone.discard(task_id)
        if self._raw is not None:
            self._raw.pop(task_id, None)
        self._dirty.discard(task_id)
        self._write("delete from doit where task_id = ?", (task_id,))

    def remove_all(self) -> None:
        self._pending.clear()
        self._cache.clear()
        self._gone.clear()
        self._raw = {}
        self._dirty.clear()
        self._write("delete from doit")  # and, by its trigger, every stamp

    # --- the file-hash cache shared with FoundryChecker ---
    def offer_hashes(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None:
        """Hashes a build worker made of files it has just written, from the bytes it wrote:
        (path, mtime_ns, size, inode, digest). Each is taken, and remembered as if hashed
        here, when the checker first asks for that path at that (mtime, size, inode); the
        file's bytes are then never read back (see `workers`)."""
        for path, mtime_ns, size, inode, digest in rows:
            self._offered[path] = (mtime_ns, size, inode, digest)

    def cached_hash(self, path: str, st: os.stat_result) -> str | None:
        if self._offered:
            offered = self._offered.pop(path, None)
            if offered is not None and offered[:3] == (st.st_mtime_ns, st.st_size, st.st_ino):
                self.remember_hash(path, st, offered[3])
                return offered[3]
        if self._hashes is None and self._lookups < _POINT_LOOKUPS:
            # a few files (one new order): ask for each; many (a fresh copy): load them all
            self._lookups += 1
            found = (
                self._new_hashes.get(path)
                or self._conn.execute(
                    "select mtime_ns, size, inode, digest from hashes where path = ?", (path,)
                ).fetchone()
            )
            row = tuple(found) if found else None
        else:
            if self._hashes is None:
                self._hashes = {
                    r[0]: (r[1], r[2], r[3], r[4])
                    for r in self._conn.execute(
                        "select path, mtime_ns, size, inode, digest from hashes"
                    )
                }
                self._hashes.update(self._new_hashes)
            row = self._hashes.get(path)
        if row and row[:3] == (st.st_mtime_ns, st.st_size, st.st_ino):
            return str(row[3])
        return None

    def remember_hash(self, path: str, st: os.stat_result, digest: str) -> None:
        """Kept in memory and written in batches: the cache is worth one transaction, not
        one per file (a restored cache remembers thousands)."""
        row = (st.st_mtime_ns, st.st_size, st.st_ino, digest)
        if self._hashes is not None:
            self._hashes[path] = row
        self._new_hashes[path] = row
        if len(self._new_hashes) >= _HASH_BATCH:
            self._write_hashes()

    def _write_hashes(self) -> None:
        if not self._new_hashes:
            return
        rows = [(path, *row) for path, row in sorted(self._new_hashes.items())]
        self._new_hashes.clear()

        def write(conn: sqlite3.Connection) -> None:
            for row in rows:
                # a file name that is not UTF-8 cannot be a key: it is hashed again next run
                with contextlib.suppress(UnicodeEncodeError):
                    conn.execute("insert or replace into hashes values (?, ?, ?, ?, ?)", row)

        self._transaction(write)

    def _transaction(self, write: Callable[[sqlite3.Connection], object]) -> None:
        """`write`'s statements as one transaction, through the fault point and the error
        mapping; rolled back whole if any of them, or the commit, fails."""
        with _storage(self.name):
            self._conn.execute("begin")
            try:
                write(self._conn)
                fsio.commit_point()
                self._conn.execute("commit")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("rollback")
                raise

    # --- small cached facts of the foundry's own (the graph's plan) ---
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("select value from meta where key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def put_meta(self, key: str, text: str) -> None:
        self._write("insert or replace into meta values (?, ?)", (key, text))


def forget_tasks(dep_file: Path, task_names: list[str]) -> None:
    """Drop the records of tasks whose targets a manual command is about to write.

    doit trusts a recorded task's targets without reading them, so a file written
    outside the graph (`toyfoundry mint`, `toyfoundry ritual`) would be kept by every
    later build, whatever the graph would have made. Forgotten first, the task runs
    again at the next build and leaves the graph's bytes (the same bytes stop the
    rebuild there); a command killed between the two leaves a task to run, never a
    file to trust. Takes the foundry lock (reentrant: the caller may hold it).
    """
    if not dep_file.exists():
        return
    from doit.dependency import DatabaseException

    try:
        db = FoundryDB(str(dep_file), None)
    except DatabaseException as exc:
        raise FoundryError(str(exc)) from None
    try:
        for name in task_names:
            db.remove(name)
    finally:
        db.dump()
