"""The installed distributions' entry points: scanned once while the import path stays the same.

Scanning the installed distributions reads every one's metadata, 3-4 ms here, and
a build asked for it four times: doit looks up its command, backend and reporter
plugins in three scans, and the mint its validator plugins in a fourth. A warm
watcher did all four on every cycle, on the path from a new order to its report.
One scan serves every group, and it is kept (the `entry_points` cache, carried by
every build of the process) while each import path folder keeps its stats:
installing, upgrading or removing a distribution adds or removes its `.dist-info`
folder, which changes the folder's mtime and link count. This is the rule the
stage fingerprints already use for plugins (`graph.stages`). A folder changed in
the last seconds may change again within its clock's tick, so a scan that sees
one is not kept.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoints, entry_points
from typing import Any

from toyfoundry import caches

#: A folder whose mtime is this recent may change again under the same mtime.
RACY_SECONDS = 2.0


def _path_key() -> tuple[tuple[str, int, int, int] | tuple[str], ...]:
    """Each import path entry with its folder's stats (just its name when it is not one)."""
    key: list[tuple[str, int, int, int] | tuple[str]] = []
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
        except (OSError, ValueError):
            key.append((entry,))
            continue
        key.append((entry, st.st_mtime_ns, st.st_ino, st.st_nlink))
    return tuple(key)


def _racy(key: tuple[tuple[str, int, int, int] | tuple[str], ...]) -> bool:
    newest = max((k[1] for k in key if len(k) == 4), default=0)
    return newest / 1e9 > time.time() - RACY_SECONDS


def _scan() -> Any:
    """Every installed entry point, of every group: what `entry_points()` gives (groups on
    Python 3.11, a flat list later), to `select` from."""
    table = caches.current().table("entry_points")
    key = _path_key()
    found = table.get(key)
    if found is None:
        found = entry_points()
        table.clear()  # one state of the import path at a time
        if not _racy(key):
            table[key] = found
    return found


def select(group: str) -> EntryPoints:
    """The entry points of one group, in the order the distributions were found.

    Kept with the scan it came from: a `select` reads every entry point of the scan
    (0.1-0.4 ms), and the mint asks for its validator plugins once an order."""
    scan = _scan()
    table = caches.current().table("entry_points")  # beside the scan, cleared with it
    known = table.get(("select", group))
    if known is not None and known[0] is scan:
        selected: EntryPoints = known[1]
        return selected
    selected = scan.select(group=group)
    if any(found is scan for found in table.values()):  # only a kept scan's
        table[("select", group)] = (scan, selected)
    return selected


@contextlib.contextmanager
def for_doit() -> Iterator[None]:
    """doit's plugin lookups (commands, backends, reporters) read the one scan for the block."""
    import doit.plugin

    before: Callable[[], Callable[..., EntryPoints]] = doit.plugin.entry_points_impl
    doit.plugin.entry_points_impl = lambda: select
    try:
        yield
    finally:
        doit.plugin.entry_points_impl = before
