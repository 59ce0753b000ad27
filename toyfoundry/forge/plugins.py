"""Finding validator plugins: the `toyfoundry.validators` entry points, without importing them.

Kept apart from the hooks themselves so the graph can fingerprint the installed
plugins on every run without loading the models the hooks work on.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import EntryPoint

from toyfoundry import installed

GROUP = "toyfoundry.validators"


def registered() -> list[EntryPoint]:
    """The registered plugin entry points, sorted by name (none is loaded). From the one
    scan of the installed distributions (`installed`): a plugin installed under a
    watcher counts from its next build."""
    return sorted(installed.select(GROUP), key=lambda ep: (ep.name, ep.value))


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
