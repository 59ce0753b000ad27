"""Code as a dependency: a fingerprint per stage over exactly the source that makes its artefacts.

doit notices changed input files, not changed actions. Each task therefore lists its
stage's code stamp (`.toyfoundry/code/<stage>.sha256`) as a file dep, holding the
stage's fingerprint: the package version plus the bytes of every package module its
action can reach, found by following `toyfoundry.*` imports from the stage's entry
module (imports inside functions included). Editing a module re-runs exactly the
stages built from it; early cutoff then stops the cascade where the bytes come out
equal. Mint also covers the installed validator plugins, the dashboard the asset
files (plotly.js and its template) each page embeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import toyfoundry
from toyfoundry import caches

PACKAGE = Path(toyfoundry.__file__).resolve().parent

#: Stage -> a package folder of files its artefacts embed (the dashboard's plotly.js).
STAGE_ASSETS: dict[str, str] = {"dashboard": "telemetry/assets"}

#: Stage -> the module its task's action calls into.
STAGE_ENTRY: dict[str, str] = {
    "mint": "toyfoundry.forge.mint",
    "rituals": "toyfoundry.forge.rituals",
    "report": "toyfoundry.telemetry.reports",
    "quilt": "toyfoundry.telemetry.quilt",
    "export": "toyfoundry.telemetry.exports",
    "dashboard": "toyfoundry.telemetry.dashboard",
    "validate": "toyfoundry.exchange.validate",
    "plan": "toyfoundry.graph.plan",
}


def _source(module: str) -> Path | None:
    parts = module.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(toyfoundry(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[\w \t,]+)"
    r"|import[ \t]+(toyfoundry(?:\.\w+)*))",
    re.MULTILINE,
)


def _imports(module: str, path: Path) -> frozenset[str]:
    """The `toyfoundry.*` modules a module imports (at any depth), with each package on the way.

    A regular expression over the source, not an AST walk: the package imports only
    absolutely, and this runs on every doit invocation. Kept in the `code` cache: the
    stages' closures share most modules.
    """
    table = caches.current().table("code")
    key = ("imports", module, path)
    if key in table:
        return table[key]  # type: ignore[no-any-return]
    found: set[str] = set()
    for match in _IMPORT.finditer(path.read_text(encoding="utf-8")):
        base, names, plain = match.groups()
        candidates = [plain] if plain else [base]
        if names:
            candidates += [
                f"{base}.{n.split()[0]}"  # `name as alias` -> name
                for n in names.replace("(", " ").replace(")", " ").split(",")
                if n.strip()
            ]
        for name in candidates:
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    table[key] = out = frozenset(found)
    return out


def closure(entry: str) -> tuple[Path, ...]:
    """Every package source file reachable from `entry` by imports, sorted."""
    table = caches.current().table("code")
    key = ("closure", entry)
    if key in table:
        return table[key]  # type: ignore[no-any-return]
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _source(module)
        if path is None:
            continue
        seen[module] = path
        todo.extend(_imports(module, path) - seen.keys())
    table[key] = out = tuple(sorted(set(seen.values())))
    return out


def _compute(stage: str) -> str:
    """sha256 over the version and the source the stage's action can reach."""
    digest = hashlib.sha256(f"toyfoundry {toyfoundry.__version__}\n".encode())
    for path in closure(STAGE_ENTRY[stage]):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(PACKAGE)}\0{len(data)}\0".encode())
        digest.update(data)
    if stage == "mint":
        from toyfoundry.forge.plugins import plugin_fingerprint

        digest.update(plugin_fingerprint().encode())
    if stage in STAGE_ASSETS:
        # files the stage's output embeds: replacing one redraws every page
        folder = PACKAGE / STAGE_ASSETS[stage]
        for path in sorted(folder.iterdir()):
            data = path.read_bytes()
            digest.update(f"{path.relative_to(PACKAGE)}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


def _code_key() -> str:
    """What the fingerprints are computed from, by stat: every package source and asset file,
    and each import path folder (installing, upgrading or removing a distribution, a
    validator plugin among them, changes its folder's listing and so its mtime)."""
    digest = hashlib.sha256(f"toyfoundry {toyfoundry.__version__}\n".encode())
    for folder, dirs, files in sorted(os.walk(PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py") or os.path.basename(folder) == "assets":
                st = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
        except OSError:
            continue
        digest.update(f"{entry}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return digest.hexdigest()


def fingerprints() -> dict[str, str]:
    """Every stage's fingerprint, kept in the dependency DB while the sources' stats hold.

    Reading the sources, following their imports and scanning the installed
    distributions for plugins costs more than the rest of a no-op's own work, and
    runs on every doit invocation; a stat of each source file and import folder
    says whether anything could have changed. The record is the `code_fingerprints`
    cache (`toyfoundry.caches`): turned off, every process computes them afresh. Within
    a process they are kept in the `code` cache, for the life of the process: they must
    describe the code it runs, even when the sources on disk change under a watcher.
    """
    table = caches.current().table("code")
    if "fingerprints" in table:
        return table["fingerprints"]  # type: ignore[no-any-return]
    table["fingerprints"] = out = _fingerprints()
    return out


def _fingerprints() -> dict[str, str]:
    from toyfoundry.graph import backend

    db = backend.current() if caches.current().on("code_fingerprints") else None
    key = _code_key() if db is not None else ""
    if db is not None:
        text = db.get_meta("code")
        record = json.loads(text) if text else None
        if isinstance(record, dict) and record.get("key") == key:
            cached = record.get("fingerprints")
            if isinstance(cached, dict) and set(cached) == set(STAGE_ENTRY):
                return {str(k): str(v) for k, v in cached.items()}
    out = {stage: _compute(stage) for stage in STAGE_ENTRY}
    if db is not None:
        db.put_meta("code", json.dumps({"key": key, "fingerprints": out}, sort_keys=True))
    return out


def fingerprint(stage: str) -> str:
    """The stage's fingerprint: what its task's code stamp holds."""
    return fingerprints()[stage]
