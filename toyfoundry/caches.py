"""The caches of one build, on one object: created for a build, passed down, dropped after.

Every cache is a second copy of the truth with an invalidation rule, so each one is
named here, can be turned off (`TOYFOUNDRY_NO_CACHE=name[,name]`, or `all`, read once
when the object is made) and has a row in BENCHMARKS.md that shows what it buys.
A test starts clean with `fresh()`; each build (`doit`, `toyfoundry build`, a
watcher's cycle) starts with `next_build()`, which drops every table but those the
set was made to keep (a watcher keeps its content-keyed tables, see `graph_watcher`),
and of those keeps only the entries the build before used: memory stays that of one
build's working set however long the process lives. Two kinds of table are not
dropped that way: the process's own (`PROCESS`: the code it runs), carried whole, and
the build's snapshots (`SNAPSHOTS`: its plan), which are not caches and have no switch.

Some entries name a record kept in the dependency DB or beside the rollup rather
than a table here: turning one off makes its readers ignore it and take the slow
path, which must give the same outputs.
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
    "parsed": "formats/parsed.py: models of mint/rituals/chain files (a chain's sha256) by their bytes",
    "frontiers": "forge/carried.py: a recipe's carried-over positions by chain digest",
    "permutations": "forge/space.py: a space's permutation by key and size",
    "spaces": "forge/space.py: a recipe model's Space (key, domains, values listed)",
    "domains": "formats/params.py: a parameter's Domain by its definition",
    "scorers": "forge/rituals.py: a recipe model's Drill scoring data and the weights seen",
    "number_keys": "formats/params.py: the weight key of a number",
    "doctrine_index": "forge/doctrine.py: digests in the doctrine index, read by its tail",
    "rollup": "telemetry/parts.py: the rollup last written or trusted, by its bytes",
    "plan_record": "graph/plan.py: the plan record last read or written, by its text",
    "plan_stat_key": "graph/plan.py, DB: the plan (and each input's hash) by the inputs' stats",
    "plan_facts": "graph/plan.py, DB: each order's and recipe's facts by content hash",
    "code_fingerprints": "graph/stages.py, DB: the stage fingerprints by the sources' stats",
    "rollup_vouching": "telemetry/parts.py: the rollup trusted while rollup_state.json vouches",
    "paths": "store/layout.py: joined paths (lru_cache)",
    "code": "graph/stages.py: each module's imports, each stage's closure and the fingerprints",
    "entry_points": "installed.py: every installed entry point, by the import path folders' stats",
    "schema_validators": "formats/schemas.py: the compiled JSON Schema validators, by name",
    "validator_plugins": "forge/validators.py: the build's loaded validator plugins, by import path",
}

#: Caches about the running process itself, which every build of the process carries
#: over: the code it runs does not change when its sources on disk do, and the
#: installed entry points are checked against the import path's stats on each use.
PROCESS = frozenset({"code", "entry_points"})

#: Kept tables carried whole rather than by use: each bounds its own size, and an entry
#: is worth keeping past builds that do not use it. `frontiers` holds one set per recipe
#: (at most 64): a watcher's next order is often of another recipe than the last one's,
#: and without its set it reads back every chain file of its recipe.
WHOLE = frozenset({"frontiers"})

#: Tables of a build that are not caches and cannot be turned off: the build's one read
#: of its inputs (the plan), which every task creator must share, since two reads of a
#: changing exchange could disagree. They live and die with the build's set all the same.
SNAPSHOTS: dict[str, str] = {
    "plan": "graph/tasks.py: the build's plan, by project folder",
}


class _Used(dict[Any, Any]):
    """A kept table: notes each key looked up or stored, so `next_build` carries only those."""

    def __init__(self) -> None:
        super().__init__()
        self.used: set[Any] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.used.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.used.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.used.add(key)
        return super().__contains__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.used.add(key)
        super().__setitem__(key, value)

    def values(self) -> Any:
        self.used.update(self.keys())
        return super().values()

    def items(self) -> Any:
        self.used.update(self.keys())
        return super().items()

    def clear(self) -> None:
        self.used.clear()
        super().clear()

    def carried(self) -> _Used:
        """A table for the next build: the entries this one used, none marked used yet."""
        out = _Used()
        for key in self.used:
            if dict.__contains__(self, key):
                dict.__setitem__(out, key, dict.__getitem__(self, key))
        return out


class Caches:
    """Which caches are on, and the caches themselves: one table each, by name."""

    def __init__(self, off: Iterable[str] | None = None, keep: Iterable[str] = ()) -> None:
        if off is None:
            off = os.environ.get(ENV, "").split(",")
        names = frozenset(n.strip() for n in off if n.strip())
        self.off = frozenset(NAMES) if "all" in names else names
        #: the tables `next_build` carries over to the next build's set
        self.keep = frozenset(keep)
        self._tables: dict[str, dict[Any, Any]] = {
            n: _Used() if n in self.keep else {} for n in NAMES if n not in self.off
        }
        self._tables.update((n, _Used() if n in self.keep else {}) for n in SNAPSHOTS)

    def on(self, name: str) -> bool:
        return name not in self.off

    def table(self, name: str) -> dict[Any, Any]:
        """The cache `name`; an empty table that nobody keeps when it is turned off."""
        found = self._tables.get(name)
        if found is None:
            if name not in NAMES:  # a snapshot is always there
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


def fresh(off: Iterable[str] | None = None, keep: Iterable[str] = ()) -> Caches:
    """Drop every cache and start a new set (for a test, or a watcher that names the tables
    its builds keep)."""
    global _current
    _current = Caches(off, keep)
    return _current


def next_build() -> Caches:
    """The set for a build about to start: the same switches, every table dropped but those
    the previous set was made to keep, and of those the entries it used since it was made
    (`WHOLE` ones whole), and the process's own (`PROCESS`) whole."""
    global _current
    before = current()
    _current = Caches(before.off, before.keep)
    for name in before.keep:
        table = before._tables.get(name)
        if isinstance(table, _Used) and name in _current._tables:
            _current._tables[name] = table if name in WHOLE else table.carried()
    for name in PROCESS:
        if name in before._tables and name in _current._tables:
            _current._tables[name] = before._tables[name]
    return _current
