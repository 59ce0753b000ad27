"""doit's content file checker, with each file hashed once per (mtime, size, inode), not once a run.

doit's `MD5Checker` trusts an unchanged mtime and otherwise re-hashes. When every mtime
is new but no byte is (a fresh CI checkout with a restored `.toyfoundry/` cache), it
finds every task up to date, yet saves nothing, so it re-hashes every input on every
later run too. This checker keeps the hashes it computes in the dependency DB, so the
first run after a restore hashes each file once and later runs hash nothing.

The hash is sha256, not doit's md5: with the CPU's SHA instructions OpenSSL's sha256
runs at more than twice md5's speed, and a restored cache hashes every artefact once.

The telemetry ledgers are the exception to hashing whole files: they only grow
(tens of MB at a thousand orders) and the quilt lists them, so hashing them after
every build would cost more than the build of one order. For them the hash is a
digest of the size and the first and last 64 KiB: an append changes the size, a
copy keeps all three, and a rewrite that keeps the size, the head and the tail
is not something the foundry does.

Every file is opened through `safe_read.open_regular` (no link followed, no FIFO
waited on, the descriptor checked to be a regular file) and read no further than
its size when opened: an input swapped for a FIFO or a link to `/dev/zero`
between the plan's scan and its hashing cannot hang a build that holds the lock.
Such a file, or one that cannot be read, gets a digest that names why
(`refused: ...`): never remembered, never equal to a real one, so its task runs
and its reader reports the file in one line.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from doit.dependency import MD5Checker, get_file_md5

from toyfoundry.graph import backend
from toyfoundry.store import safe_read
from toyfoundry.store.layout import LEDGER_NAMES

SAMPLE = 64 * 1024
#: Length of an md5 hex digest: states recorded before the checker moved to sha256.
_MD5_HEX = 32


#: What `info` gives for an input that is gone: no file has a size of -1.
VANISHED = os.stat_result((0, 0, 0, 0, 0, 0, -1, 0, 0, 0))
VANISHED_DIGEST = "vanished"
REFUSED_PREFIX = "refused: "


def is_input(path: str) -> bool:
    """Whether a file dep is an exchange input (untrusted: it may vanish at any moment)."""
    return path.startswith("exchange/")


def is_ledger(path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return name in LEDGER_NAMES and folder.endswith(".toyfoundry/telemetry")


def sampled_hash(path: str, size: int) -> str:
    """sha256 of an append-only file's size, head and tail (see the module's docstring)."""
    digest = hashlib.sha256(f"append-only {size}\n".encode())
    fd, _ = safe_read.open_regular(path)
    try:
        digest.update(os.pread(fd, SAMPLE, 0))
        if size > SAMPLE:
            digest.update(os.pread(fd, SAMPLE, max(SAMPLE, size - SAMPLE)))
    finally:
        os.close(fd)
    return digest.hexdigest()


def whole_hash(path: str, size: int | None = None) -> str:
    """sha256 of a regular file's bytes (`safe_read.sha256_regular`: no link followed, no FIFO
    waited on, read no further than its size when opened plus one chunk). `size` is
    kept for callers that know it; the descriptor's own size bounds the read.
    Raises `safe_read.ReadError` for anything but a regular file.
    """
    return safe_read.sha256_regular(path)


def not_hashed(digest: object) -> bool:
    """Whether a recorded digest stands for a file that was refused or gone, not for bytes."""
    return isinstance(digest, str) and (
        digest == VANISHED_DIGEST or digest.startswith(REFUSED_PREFIX)
    )


def refused_digest(error: safe_read.ReadError) -> str:
    """The stand-in digest of a file that is not hashed: it names why, so it never matches."""
    return f"{REFUSED_PREFIX}{error.problem.reason}"


def file_hash(
    path: str, st: os.stat_result | None = None, *, key: str | None = None, md5: bool = False
) -> str:
    """A file's content hash, computed once per (mtime, size, inode); `key` is doit's name for it.

    `md5` asks for the hash releases before the move to sha256 recorded, cached apart.
    """
    st = st or os.stat(path)
    key = key or path
    if md5:
        key = f"md5:{key}"
    db = backend.current()
    if db is not None:
        known = db.cached_hash(key, st)
        if known is not None:
            return known
    try:
        if md5:
            fd, _ = safe_read.open_regular(path)  # doit's md5 reads with a plain open
            os.close(fd)
            digest = str(get_file_md5(path))
        elif is_ledger(key):
            digest = sampled_hash(path, st.st_size)
        else:
            digest = whole_hash(path, st.st_size)
    except safe_read.ReadError as refused:
        return refused_digest(refused)
    if db is not None:
        db.remember_hash(key, st, digest)
    return digest


def stat_dep(path: str) -> os.stat_result | None:
    """A file dep's stat as `FoundryChecker.info` takes it: `VANISHED` for an input that is
    gone, None for a missing build artefact (doit's error to report)."""
    try:
        return os.stat(path)
    except OSError:
        return VANISHED if is_input(path) else None


def modified(path: str, st: os.stat_result, state: Any) -> bool:
    """Whether a file dep changed since doit recorded `state` (mtime, size, digest) for it:
    an unchanged mtime is trusted, a changed one is settled by the content hash."""
    timestamp, size, digest = state
    if st is VANISHED:
        return bool(digest != VANISHED_DIGEST)
    if not_hashed(digest):
        # refused or gone last time: a chmod or a rename back keeps the mtime, so look again
        return bool(digest != file_hash(path, st))
    if st.st_mtime == timestamp:
        return False
    if st.st_size != size:
        return True
    if isinstance(digest, str) and len(digest) == _MD5_HEX:
        # recorded by a release that hashed with md5: compare like with like
        return bool(digest != file_hash(path, st, md5=True))
    return bool(digest != file_hash(path, st))


class FoundryChecker(MD5Checker):  # type: ignore[misc]
    """Content-checked file dependencies (early cutoff) with a persistent hash cache.

    doit stats every file dep when it checks a task and again when it saves the task
    after running it; the global tasks list every order's artefacts (thousands of
    files). The stat taken for the check is kept and used for the save: the deps are
    inputs or other tasks' outputs, finished before the check, so nothing the build
    runs writes them in between. (A dep edited by hand meanwhile is recorded with the
    older stat, which the next run sees as a change when the size moved; doit's own
    second stat would hide it either way.)
    """

    def __init__(self) -> None:
        super().__init__()
        self._checked: dict[str, os.stat_result] = {}

    def info(self, file_path: str) -> os.stat_result:
        try:
            st = os.stat(file_path)
        except OSError:
            if not is_input(file_path):
                raise  # a missing build artefact is doit's to report
            # an input deleted, or made unreachable, since the plan was drawn: its task
            # runs and its reader says so in one line, instead of doit ending the build
            st = VANISHED
        self._checked[file_path] = st
        return st

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        return modified(file_path, file_stat, state)

    def get_state(self, dep: str, current_state: Any) -> Any:
        st = self._checked.pop(dep, None)
        if st is None or st is VANISHED:
            try:
                st = os.stat(dep)
            except OSError:
                if not is_input(dep):
                    raise
                # gone by the time the task is recorded: recorded as gone, so a file
                # that comes back is seen as changed (doit would end the build here)
                return None, -1, VANISHED_DIGEST
        if current_state and current_state[0] == st.st_mtime:
            return None
        return st.st_mtime, st.st_size, file_hash(dep, st)


#: The checker's name as doit records it with each task (`checker:`).
CHECKER_NAME = FoundryChecker.__name__
