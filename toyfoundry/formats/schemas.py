"""JSON Schemas generated from the models: write them, check them for drift, validate against them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from toyfoundry import caches
from toyfoundry.formats.models import EXCHANGE_INPUTS, SCHEMA_KEY
from toyfoundry.formats.models import SCHEMA_MODELS as SCHEMA_MODELS

SCHEMA_BASE = "https://toyfoundry.dev/schemas/"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schema_id(name: str) -> str:
    return f"{SCHEMA_BASE}{name}.schema.json"


def generate(name: str) -> dict[str, Any]:
    """The schema of one format, as committed under `schemas/`."""
    schema = SCHEMA_MODELS[name].model_json_schema(mode="validation")
    if name in EXCHANGE_INPUTS:
        schema["properties"] = {
            SCHEMA_KEY: {
                "description": "the schema this file follows, for editors; not read otherwise",
                "type": "string",
            },
            **schema["properties"],
        }
    return {"$schema": DRAFT, "$id": schema_id(name), **schema}


def render(name: str) -> str:
    return json.dumps(generate(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schemas_dir() -> Path:
    """The committed schemas: beside the package in a checkout."""
    return Path(__file__).resolve().parents[2] / "schemas"


def drift(folder: Path | None = None) -> list[str]:
    """Names of schema files that are missing, stale or unexpected in `folder`."""
    folder = folder or schemas_dir()
    problems = []
    for name in sorted(SCHEMA_MODELS):
        path = folder / f"{name}.schema.json"
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != render(name):
            problems.append(f"{path}: differs from what the models generate")
    expected = {f"{n}.schema.json" for n in SCHEMA_MODELS}
    if folder.exists():
        for path in sorted(folder.glob("*.schema.json")):
            if path.name not in expected:
                problems.append(f"{path}: no model generates this schema")
    return problems


def write_all(folder: Path | None = None) -> list[Path]:
    from toyfoundry.store.atomic import write_atomic

    folder = folder or schemas_dir()
    written = []
    for name in sorted(SCHEMA_MODELS):
        path = folder / f"{name}.schema.json"
        if write_atomic(path, render(name).encode("utf-8")):
            written.append(path)
    return written


def _registry() -> Registry[Any]:
    """Only our own schemas: a remote `$ref` is an unresolvable error, never a fetch."""
    resources = [
        (schema_id(n), Resource.from_contents(generate(n), default_specification=DRAFT202012))
        for n in SCHEMA_MODELS
    ]
    return Registry().with_resources(resources)


def validator(name: str) -> Validator:
    """The compiled validator of a schema, kept for the build (`schema_validators` cache):
    generating a schema and its registry costs more than checking a file against it."""
    table = caches.current().table("schema_validators")
    found = table.get(name)
    if found is None:
        cls = jsonschema.Draft202012Validator
        registry = table.get(None)
        if registry is None:
            table[None] = registry = _registry()
        found = cls(generate(name), registry=registry, format_checker=cls.FORMAT_CHECKER)
        table[name] = found
    return found


_REQUIRED = re.compile(r"^'(?P<name>[^']{1,80})' is a required property$")
_EXTRA = re.compile(r"\('(?P<name>[^']{1,80})' (was|were) unexpected\)")


def _field_and_message(error: jsonschema.ValidationError) -> tuple[str, str]:
    """Name the offending field itself for missing and unknown properties, not their parent."""
    parts = [str(p) for p in error.absolute_path]
    message = error.message
    if error.validator == "required" and (m := _REQUIRED.match(message)):
        return ".".join([*parts, m["name"]]), "is required"
    if error.validator == "additionalProperties" and (m := _EXTRA.search(message)):
        return ".".join([*parts, m["name"]]), "is not a known field"
    if len(message) > 200:
        message = message[:197] + "..."
    return ".".join(parts) or "-", message


def _phase_rule(document: Any, error: jsonschema.ValidationError) -> tuple[str, str] | None:
    """A phase rule's violation in the words `toyfoundry validate` has always used."""
    if "then" not in error.schema_path or not isinstance(document, dict):
        return None
    phase = document.get("phase")
    if error.validator == "maximum":
        return "batch_size", f"{error.instance} is over the {phase} cap of {error.validator_value}"
    if error.validator == "const":
        return "dry_run", "pilot orders must be dry runs (set dry_run: true)"
    return None


def iter_errors(name: str, document: Any) -> Iterator[tuple[str, str]]:
    """(field path, message) for each schema violation, most specific first, in a stable order."""
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(map(str, e.path)))
    for error in errors:
        best = jsonschema.exceptions.best_match([error])
        yield _phase_rule(document, best) or _field_and_message(best)
