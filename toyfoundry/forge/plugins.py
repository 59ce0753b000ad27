"""Finding validator plugins: the `toyfoundry.validators` entry points, without importing them.

Kept apart from the hooks themselves so the graph can fingerprint the installed
plugins on every run without loading the models the hooks work on.
"""

from __future__ import annotations

import hashlib
import sys
from importlib.metadata import EntryPoint, entry_points

from toyfoundry import caches

GROUP = "toyfoundry.validators"


def registered() -> list[EntryPoint]:
    """The registered plugin entry points, sorted by name (none is loaded)."""
    return list(_entry_points_on(tuple(sys.path)))


def _entry_points_on(search_path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    """Scanning installed distributions costs milliseconds: once per build and import path
    (the `entry_points` cache); a plugin installed under a watcher counts from its next build."""
    table = caches.current().table("entry_points")
    found = table.get(search_path)
    if found is None:
        found = tuple(sorted(entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value)))
        table[search_path] = found
    return found


def plugin_signatures() -> list[str]:
    """`name=value dist==version` of each registered plugin, without importing any of them."""
    out = []
    for ep in registered():
        dist = ep.dist
        label = f"{dist.name}=={dist.version}" if dist is not None else "?"
        out.append(f"{ep.name}={ep.value} {label}")
    return out


def plugin_fingerprint() -> str:
    """sha256 over `plugin_signatures()`: changes when a plugin is installed, removed or upgraded."""
    text = "\n".join(plugin_signatures())
    return hashlib.sha256(text.encode()).hexdigest()
