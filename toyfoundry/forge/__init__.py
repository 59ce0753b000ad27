"""The forge: mint, validator hooks, rituals, the promotion pool (chain) and the doctrine archive."""

from __future__ import annotations

import hashlib
from pathlib import Path

from toyfoundry import __version__

_FORGE = Path(__file__).resolve().parent
_PACKAGE = _FORGE.parent
#: Source outside the forge that shapes its artefacts: formats, parameter domains, the loader's rules.
_SHAPING = (
    "formats/models.py",
    "formats/params.py",
    "exchange/loader.py",
    "exchange/rules.py",
    "store/atomic.py",
)
#: The forge modules each stage's artefacts come from (what each one imports, transitively).
STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "mint": ("__init__.py", "chain.py", "mint.py", "space.py", "validators.py"),
    "rituals": (
        "__init__.py",
        "adapter.py",
        "chain.py",
        "doctrine.py",
        "mint.py",
        "rituals.py",
        "space.py",
        "validators.py",
    ),
}


def fingerprint(stage: str | None = None) -> str:
    """Changes when the code that makes forge artefacts changes, or a validator plugin comes or goes.

    Covers the package version, the modules in `_SHAPING`, the forge's source (all
    of it, or only `STAGE_MODULES[stage]` for "mint" or "rituals", so editing the
    rituals does not re-mint) and, for mint, each registered `toyfoundry.validators`
    entry point with its distribution name and version (plugins are not imported).
    """
    from toyfoundry.forge.plugins import plugin_fingerprint

    if stage is not None and stage not in STAGE_MODULES:
        raise ValueError(f"unknown forge stage {stage!r}: one of {', '.join(STAGE_MODULES)}")
    digest = hashlib.sha256(f"toyfoundry {__version__}\n".encode())
    names = (
        STAGE_MODULES[stage] if stage is not None else sorted(p.name for p in _FORGE.glob("*.py"))
    )
    files = [_FORGE / name for name in names]
    files += [_PACKAGE / name for name in _SHAPING]
    for path in files:
        digest.update(f"{path.relative_to(_PACKAGE)}\n".encode())
        digest.update(path.read_bytes() if path.is_file() else b"(absent)")
    if stage != "rituals":
        digest.update(f"plugins {plugin_fingerprint()}\n".encode())
    return digest.hexdigest()
