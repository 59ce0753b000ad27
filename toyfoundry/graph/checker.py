"""doit's md5 file checker, with each file hashed once per (mtime, size, inode), not once a run.

doit's `MD5Checker` trusts an unchanged mtime and otherwise re-hashes. When every mtime
is new but no byte is (a fresh CI checkout with a restored `.toyfoundry/` cache), it
finds every task up to date, yet saves nothing, so it re-hashes every input on every
later run too. This checker keeps the hashes it computes in the dependency DB, so the
first run after a restore hashes each file once and later runs hash nothing.
"""

from __future__ import annotations

import os
from typing import Any

from doit.dependency import MD5Checker, get_file_md5

from toyfoundry.graph import backend


def file_md5(path: str, st: os.stat_result | None = None, *, key: str | None = None) -> str:
    """md5 of a file, computed once per (mtime, size, inode); `key` is how doit names it."""
    st = st or os.stat(path)
    key = key or path
    db = backend.current()
    if db is not None:
        known = db.cached_md5(key, st)
        if known is not None:
            return known
    md5: str = get_file_md5(path)
    if db is not None:
        db.remember_md5(key, st, md5)
    return md5


class FoundryChecker(MD5Checker):  # type: ignore[misc]
    """Content-checked file dependencies (early cutoff) with a persistent hash cache."""

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        timestamp, size, md5 = state
        if file_stat.st_mtime == timestamp:
            return False
        if file_stat.st_size != size:
            return True
        return bool(md5 != file_md5(file_path, file_stat))

    def get_state(self, dep: str, current_state: Any) -> Any:
        st = os.stat(dep)
        if current_state and current_state[0] == st.st_mtime:
            return None
        return st.st_mtime, st.st_size, file_md5(dep, st)
