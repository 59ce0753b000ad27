"""Temp files left by killed writers, removed by the next process to take the foundry lock.

Every artefact is written to `.NAME.PID.N.tmp` beside its target and renamed into
place; a writer killed between the two leaves the temp file. Nobody reads it, but
nothing else would ever remove it. Every writer holds the foundry lock, and the lock
file keeps its holder's note until a clean release, so a note found by the next
holder means its predecessor died holding the lock: that holder sweeps every area
the foundry writes (`.toyfoundry/`, `exchange/reports/`, `exchange/outbox/`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from toyfoundry.store.layout import OWNED_EXCHANGE_AREAS, Layout

log = logging.getLogger(__name__)

#: `.NAME.PID.N.tmp`, as `atomic._open_temp` names a temp file.
TEMP_NAME = re.compile(r"\A\..+\.([0-9]+)\.[0-9]+\.tmp\Z")


def areas(layout: Layout) -> list[Path]:
    """The folders the foundry writes to."""
    return [layout.state, *(layout.exchange / area for area in OWNED_EXCHANGE_AREAS)]


def temp_files(layout: Layout) -> list[Path]:
    """Temp files of other processes in the foundry's areas (never this process's own)."""
    own = str(os.getpid())
    found: list[Path] = []
    for area in areas(layout):
        for folder, dirs, names in os.walk(area):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
            for name in names:
                match = TEMP_NAME.match(name)
                if match is not None and match.group(1) != own:
                    found.append(Path(folder, name))
    return sorted(found)


def sweep_temp_files(layout: Layout) -> list[Path]:
    """Remove what `temp_files` finds; the paths removed."""
    removed = []
    for path in temp_files(layout):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    if removed:
        log.info("removed %d temp file(s) left by a killed writer", len(removed))
    return removed
