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
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from doit.dependency import MD5Checker, get_file_md5

from toyfoundry.graph import backend
from toyfoundry.store.layout import LEDGER_NAMES

SAMPLE = 64 * 1024
#: Length of an md5 hex digest: states recorded before the checker moved to sha256.
_MD5_HEX = 32


def is_ledger(path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return name in LEDGER_NAMES and folder.endswith(".toyfoundry/telemetry")


def sampled_hash(path: str, size: int) -> str:
    """sha256 of an append-only file's size, head and tail (see the module's docstring)."""
    digest = hashlib.sha256(f"append-only {size}\n".encode())
    with open(path, "rb") as f:
        digest.update(f.read(SAMPLE))
        if size > SAMPLE:
            f.seek(max(SAMPLE, size - SAMPLE))
            digest.update(f.read(SAMPLE))
    return digest.hexdigest()


#: Files up to this size are read in one piece and hashed at once; larger ones in chunks.
ONE_READ = 1 << 20


def whole_hash(path: str, size: int | None = None) -> str:
    """sha256 of a file's bytes; `size`, its size if known, picks the way to read it.

    Most files the graph hashes are build artefacts of tens of KB. For those one
    `read` and one `sha256` cost a fifth less than `hashlib.file_digest`, which
    allocates a 256 KiB buffer for every file; a large file is hashed in chunks,
    so its hashing never holds all of it in memory.
    """
    with open(path, "rb") as f:
        if size is None or size > ONE_READ:
            return hashlib.file_digest(f, "sha256").hexdigest()
        data = f.read(ONE_READ + 1)
        digest = hashlib.sha256(data)
        if len(data) > ONE_READ:  # it grew since its stat: the rest in chunks, not at once
            while chunk := f.read(ONE_READ):
                digest.update(chunk)
        return digest.hexdigest()


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
    if md5:
        digest = str(get_file_md5(path))
    else:
        digest = sampled_hash(path, st.st_size) if is_ledger(key) else whole_hash(path, st.st_size)
    if db is not None:
        db.remember_hash(key, st, digest)
    return digest


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
        st = os.stat(file_path)
        self._checked[file_path] = st
        return st

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        timestamp, size, digest = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        if isinstance(digest, str) and len(digest) == _MD5_HEX:
            # recorded by a release that hashed with md5: compare like with like
            return bool(digest != file_hash(file_path, file_stat, md5=True))
        return bool(digest != file_hash(file_path, file_stat))

    def get_state(self, dep: str, current_state: Any) -> Any:
        st = self._checked.pop(dep, None) or os.stat(dep)
        if current_state and current_state[0] == st.st_mtime:
            return None
        return st.st_mtime, st.st_size, file_hash(dep, st)
