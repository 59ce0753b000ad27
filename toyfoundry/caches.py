"""The caches of one build, on one object: created for a build, passed down, dropped after.

Every cache is a second copy of the truth with an invalidation rule, so each one is
named here, can be turned off (`TOYFOUNDRY_NO_CACHE=name[,name]`, or `all`, read once
when the object is made) and has a row in BENCHMARKS.md that shows what it buys.
A command, a test or a watcher starts clean with `fresh()`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

ENV = "TOYFOUNDRY_NO_CACHE"

#: Every cache that can be turned off, with what it keeps.
NAMES: dict[str, str] = {
    "settings": "exchange/loader.py: `[tool.toyfoundry]` parsed, by the file's bytes",
    "exchange_files": "exchange/loader.py: a recipe's or checkpoint's model and findings, by its bytes",
    "parsed": "formats/parsed.py: models of mint/rituals/chain files by their bytes",
    "frontiers": "forge/carried.py: a recipe's carried-over positions by chain digest",
    "permutations": "forge/space.py: a space's permutation by key and size",
    "domains": "formats/params.py: a parameter's Domain by its definition",
    "number_keys": "formats/params.py: the weight key of a number",
    "doctrine_index": "forge/doctrine.py: digests in the doctrine index, read by its tail",
    "rollup": "telemetry/parts.py: the rollup last written or trusted, by its bytes",
    "plan_record": "graph/plan.py: the plan record last read or written, by its text",
    "paths": "store/layout.py: joined paths (lru_cache)",
}


class Caches:
    """Which caches are on, and the caches themselves: one table each, by name."""

    def __init__(self, off: Iterable[str] | None = None) -> None:
        if off is None:
            off = os.environ.get(ENV, "").split(",")
        names = frozenset(n.strip() for n in off if n.strip())
        self.off = frozenset(NAMES) if "all" in names else names
        self._tables: dict[str, dict[Any, Any]] = {n: {} for n in NAMES if n not in self.off}

    def on(self, name: str) -> bool:
        return name not in self.off

    def table(self, name: str) -> dict[Any, Any]:
        """The cache `name`; an empty table that nobody keeps when it is turned off."""
        found = self._tables.get(name)
        if found is None:
            if name not in NAMES:
                raise KeyError(name)
            return {}
        return found


_current: Caches | None = None


def current() -> Caches:
    """The caches of the build under way (made on first use)."""
    global _current
    if _current is None:
        _current = Caches()
    return _current


def fresh(off: Iterable[str] | None = None) -> Caches:
    """Drop every cache and start a new set: for a new build, a test or a watcher."""
    global _current
    _current = Caches(off)
    return _current
