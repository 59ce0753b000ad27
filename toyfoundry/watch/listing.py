"""The plan's inputs as last listed, kept up to date from the paths events name.

Listing the input folders and `lstat`ing every file in them is most of what a warm
watcher spends on a new order at 10,000 orders, and all of it grows with the
orders. Between periodic full listings the watcher trusts its events instead: it
`lstat`s only the files they name and patches the listing it keeps, which then
reads exactly as `plan.scan_inputs` would (same entries, same order), so the plan
and its stat key cannot tell the two apart. Whatever events can miss (a queue that
overflowed, a folder replaced under its watch, a filesystem that sends none) the
next full listing sees; a listing with a folder that could not be listed is never
trusted.
"""

from __future__ import annotations

import bisect
import os
import stat
from pathlib import Path

from toyfoundry.graph import plan as planning
from toyfoundry.graph.plan import Entry
from toyfoundry.store import safe_read
from toyfoundry.store.layout import INPUT_FOLDERS, Layout


class Listing:
    """`plan.scan_inputs`' entries, patched path by path (`look`) between full listings."""

    def __init__(self, layout: Layout, entries: list[Entry]) -> None:
        self.layout = layout
        #: every input folder was listed: patching it path by path gives what a listing would
        self.trusted = not any(e.kind == planning.UNLISTED for e in entries)
        self._settings = planning.rel(layout, layout.settings_file)
        #: folder -> (its names in listing order, its entries by name)
        self._folders: dict[str, tuple[list[str], dict[str, Entry]]] = {
            planning.rel(layout, layout.exchange / folder): ([], {}) for folder in INPUT_FOLDERS
        }
        self._last: Entry | None = None
        for entry in entries:
            folder, _, name = entry.rel.rpartition("/")
            held = self._folders.get(folder)
            if entry.rel == self._settings:
                self._last = entry
            elif held is not None and entry.kind != planning.UNLISTED:
                held[0].append(name)
                held[1][name] = entry
        self._entries: list[Entry] | None = list(entries)
        #: the paths patched since `take_touched` (each with its entry now, None when gone);
        #: None until then: what a fresh listing differs in from the last plan is not known
        self.touched: dict[str, Entry | None] | None = None

    def entries(self) -> list[Entry]:
        """The inputs as `scan_inputs` would list them now, had no event been missed."""
        if self._entries is None:
            out: list[Entry] = []
            for names, by_name in self._folders.values():
                out += [by_name[name] for name in names]
            if self._last is not None:
                out.append(self._last)
            self._entries = out
        return self._entries

    def changes_to(self, fresh: Listing) -> dict[str, Entry | None] | None:
        """The paths patched since `take_touched`, and those a fresh listing differs in from
        this one (by kind and `lstat`: size, mtime, inode), each with its entry in `fresh`."""
        if self.touched is None or not (self.trusted and fresh.trusted):
            return None
        out = dict(self.touched)
        mine = {e.rel: e for e in self.entries()}
        for entry in fresh.entries():
            was = mine.pop(entry.rel, None)
            if was is None or was.kind != entry.kind or _stat(was) != _stat(entry):
                out[entry.rel] = entry
        out.update(dict.fromkeys(mine))
        return out

    def take_touched(self) -> dict[str, Entry | None] | None:
        """The paths patched since the last call (None the first time), and start again."""
        touched, self.touched = self.touched, {}
        return touched

    def look(self, rel: str) -> tuple[bool, os.stat_result | None]:
        """`lstat` one project-relative path and patch the listing with it: (whether it is
        a file the listing holds or would hold, its `lstat` or None when it is not there)."""
        folder, _, name = rel.rpartition("/")
        held = self._folders.get(folder)
        if rel != self._settings and (
            held is None or not name.endswith(".json") or safe_read.is_skipped_name(name)
        ):
            return False, None
        try:
            st: os.stat_result | None = os.lstat(Path(self.layout.root, rel))
        except OSError:
            st = None  # a listing skips what it cannot `lstat`
        entry = None
        if st is not None:
            mode = st.st_mode
            kind = "regular" if stat.S_ISREG(mode) else safe_read.file_kind(mode)
            entry = Entry(rel, kind, st)
        self._entries = None
        if self.touched is not None:
            self.touched[rel] = entry
        if held is None:
            self._last = entry
            return True, st
        names, by_name = held
        if entry is None:
            if by_name.pop(name, None) is not None:
                del names[bisect.bisect_left(names, name)]
        else:
            if name not in by_name:
                bisect.insort(names, name)
            by_name[name] = entry
        return True, st


def _stat(entry: Entry) -> tuple[int, int, int]:
    st = entry.st
    return st.st_size, st.st_mtime_ns, st.st_ino
