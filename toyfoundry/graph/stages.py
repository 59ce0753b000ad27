"""Code as a dependency: a fingerprint per stage over the source that makes its artefacts.

doit notices changed input files, not changed actions. Each task therefore carries a
`config_changed` over its stage's fingerprint: the package version plus the bytes of
the modules that produce that stage's outputs. Editing a module re-runs exactly the
stages built from it, and early cutoff stops the cascade where the bytes come out equal.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import toyfoundry

PACKAGE = Path(toyfoundry.__file__).resolve().parent

#: Modules every stage reads or writes through.
COMMON = ("formats", "store", "exchange", "errors.py", "__init__.py")

#: Stage -> the package-relative modules (files or folders) its artefacts depend on.
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "report": ("telemetry",),
    "quilt": ("telemetry",),
    "export": ("telemetry",),
    "dashboard": ("telemetry",),
    "validate": (),
}


def _files(entry: str) -> list[Path]:
    path = PACKAGE / entry
    if path.is_dir():
        return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return [path] if path.exists() else []


@cache
def fingerprint(stage: str) -> str:
    """sha256 over the version and the stage's source, by package-relative path.

    The forge knows its own stages best (mint also covers the validator plugins)."""
    if stage in ("mint", "rituals"):
        from toyfoundry import forge

        return forge.fingerprint(stage)
    digest = hashlib.sha256(f"toyfoundry {toyfoundry.__version__}\n".encode())
    for entry in (*COMMON, *STAGE_SOURCES[stage]):
        for path in _files(entry):
            digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()
