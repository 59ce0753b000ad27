"""`check-jsonschema` with the committed schemas and `toyfoundry validate` agree on the hostile corpus.

Every rule about one file alone is in the schemas, the phase rules included (each phase's
cap, pilots dry runs only). What a schema cannot say is listed in `BEYOND_A_SCHEMA`, each
with why; on those cases only `toyfoundry validate` can refuse the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, make_project
from tests.support import cli
from toyfoundry.store.layout import Layout

HOSTILE = REPO / "tests" / "hostile"
SCHEMAS = REPO / "schemas"
KINDS = {"orders": "order", "recipes": "recipe", "checkpoints": "checkpoint", "reviews": "review"}

#: substrings of `toyfoundry validate`'s message -> why no JSON Schema can hold the rule
BEYOND_A_SCHEMA: dict[str, str] = {
    "lone surrogate": "JSON allows the escape; the foundry's reader refuses it",
    "duplicate key": "JSON parsers keep the last value; the foundry's reader refuses it",
    "byte order mark": "a reader may skip it; the foundry's reader refuses it",
    "not found in exchange/recipes/": "another file: the recipe must exist",
    "is experimental": "another file: the recipe's `experimental` flag",
    "is invalid (see": "another file: the recipe must be valid",
    "but the file is named": "the file's name",
    "is not a calendar date": "a calendar, beyond a pattern",
    "must sum to 1": "arithmetic over three fields",
    "lists a ritual more than once": "kept as the foundry's own message",
    "is not an Alfa of order": "another field's value inside a string",
    "is decided twice": "uniqueness of one field across a list",
    "empty range": "a comparison of two fields",
    "permutations, over 2^62": "arithmetic over the whole parameter space",
    "steps, over": "arithmetic over two fields",
    "is not a parameter of this recipe": "keys that must name other keys",
    "is below pass_score": "a comparison of two fields",
    "does not fit in 64 bits": "an integer's size, before any schema sees it",
    "valid integer (got 12.0)": "JSON Schema counts 12.0 as an integer; strict models do not",
}


def checker() -> str:
    path = Path(sys.executable).parent / "check-jsonschema"
    if not path.exists():
        pytest.skip("check-jsonschema is not installed (pip install -e '.[test]')")
    return str(path)


def schema_refuses(kind: str, files: list[Path]) -> set[str]:
    """The files check-jsonschema refuses with the committed schema of `kind`."""
    proc = subprocess.run(
        [checker(), "--schemafile", str(SCHEMAS / f"{kind}.schema.json"), "-o", "JSON"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return {e["filename"] for e in result.get("errors", []) + result.get("parse_errors", [])}


def test_check_jsonschema_and_validate_agree_on_the_hostile_corpus() -> None:
    entries = [
        e
        for e in json.loads((HOSTILE / "manifest.json").read_text())["entries"]
        if "source" in e and e["file"].split("/")[0] in KINDS
    ]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_kind.setdefault(KINDS[entry["file"].split("/")[0]], []).append(entry)
    disagree, beyond = [], set()
    for kind, group in sorted(by_kind.items()):
        files = [HOSTILE / e["source"] for e in group]
        refused = schema_refuses(kind, files)
        for entry, path in zip(group, files, strict=True):
            ours = entry["expected"] is not None
            theirs = str(path) in refused
            reason = next((k for k in BEYOND_A_SCHEMA if k in (entry["expected"] or "")), None)
            if reason is not None:
                beyond.add(reason)
                assert ours, entry  # the foundry refuses what no schema can
                continue
            if ours != theirs:
                disagree.append((entry["source"], entry["expected"], theirs))
    assert disagree == []
    assert beyond == set(BEYOND_A_SCHEMA), "a listed rule no case needs any more"


def test_the_phase_rules_and_schema_key_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout: Layout = make_project(tmp_path / "project")
    order: dict[str, Any] = json.loads(layout.order_file("2025-10-12-005").read_text())
    cases = {
        "2025-10-12-006": ({**order, "batch_size": 24}, False),  # a pilot of 24
        "2025-10-12-007": ({**order, "dry_run": False}, False),  # a pilot that is not dry
        "2025-10-12-008": (
            {**order, "phase": "expansion", "batch_size": 49, "dry_run": False},
            False,
        ),
        "2025-10-12-009": ({**order, "$schema": "../../schemas/order.schema.json"}, True),
        "2025-10-12-010": ({**order, "$schema": 7}, False),  # not a reference
    }
    files = []
    for order_id, (doc, _) in cases.items():
        path = layout.order_file(order_id)
        path.write_text(json.dumps({**doc, "order_id": order_id}))
        files.append(path)
    refused = schema_refuses("order", files)
    for path, (order_id, (_, valid)) in zip(files, cases.items(), strict=True):
        code, out, err = cli(capsys, layout, "validate", str(path))
        assert (code == 0) == valid, (order_id, out, err)
        assert (str(path) not in refused) == valid, order_id
    _, out, err = cli(capsys, layout, "validate", str(files[0]))
    assert "batch_size: 24 is over the pilot cap of 12" in out + err
