"""`toyfoundry validate`: the sample passes, and each bad input is one clear line with exit 1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from toyfoundry.exchange.loader import Exchange
from toyfoundry.store.layout import Layout

GOOD: dict[str, Any] = {
    "schema_version": 1,
    "order_id": "2025-11-03-001",
    "phase": "operational",
    "recipe": "bolt-bunny",
    "batch_size": 96,
    "seed": 7,
    "dry_run": False,
    "issued_by": "High Command",
}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_sample_exchange_is_valid(project: Layout, run_cli: Any) -> None:
    result = run_cli("--root", project.root, "validate")
    assert result.code == 0, result.out + result.err
    assert result.out == ""


def test_json_format(project: Layout, run_cli: Any) -> None:
    (project.orders_dir / "2025-11-03-001.json").write_text("{")
    result = run_cli("--root", project.root, "validate", "--format", "json")
    assert result.code == 1
    data = json.loads(result.out)
    assert data["ok"] is False
    assert data["problems"][0]["path"] == "exchange/orders/2025-11-03-001.json"


def _order(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


CASES: list[tuple[str, bytes, str]] = [
    ("malformed", b'{"schema_version": 1,', "-: is not valid JSON"),
    ("empty", b"", "-: is empty"),
    (
        "string for int",
        _order(batch_size="12"),
        "batch_size: Input should be a valid integer (got '12')",
    ),
    ("unknown field", _order(colour="red"), "colour: is not a known field"),
    ("missing field", _order(seed=...), "seed: is required"),
    (
        "over the cap",
        _order(phase="expansion", batch_size=96),
        "batch_size: 96 is over the expansion cap of 48",
    ),
    ("unknown recipe", _order(recipe="no-such-toy"), "recipe: recipe 'no-such-toy' not found"),
    (
        "id differs",
        _order(order_id="2025-11-03-002"),
        "order_id: is '2025-11-03-002' but the file is named '2025-11-03-001'",
    ),
    (
        "dotdot recipe",
        _order(recipe="../../etc/passwd"),
        "recipe: String should match pattern '^[a-z][a-z0-9_-]{0,62}$' (got '../../etc/passwd')",
    ),
    (
        "absolute recipe",
        _order(recipe="/etc/passwd"),
        "recipe: String should match pattern '^[a-z][a-z0-9_-]{0,62}$' (got '/etc/passwd')",
    ),
    ("invalid utf-8", b'{"schema_version": 1, "notes": "\xff\xfe"}', "-: is not valid UTF-8"),
    (
        "duplicate keys",
        b'{"schema_version": 1, "seed": 1, "seed": 2}',
        "seed: duplicate key 'seed'",
    ),
    (
        "30-digit integer",
        _order(seed=123456789012345678901234567890),
        "seed: integer 123456789012345678901234567890 does not fit in 64 bits",
    ),
    ("deep nesting", b"[" * 10000 + b"]" * 10000, "-: nests deeper than 64 levels"),
    (
        "pilot not dry",
        _order(phase="pilot", batch_size=12),
        "dry_run: pilot orders must be dry runs",
    ),
]


@pytest.mark.parametrize(("name", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_order(project: Layout, run_cli: Any, name: str, content: bytes, expected: str) -> None:
    path = project.orders_dir / "2025-11-03-001.json"
    path.write_bytes(content)
    before = snapshot(project.root)
    result = run_cli("--root", project.root, "validate", path)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines, result.err
    assert all(line.startswith("exchange/orders/2025-11-03-001.json: ") for line in lines)
    assert any(expected in line for line in lines), lines
    assert "Traceback" not in result.out + result.err
    assert snapshot(project.root) == before


def test_symlink_outside(project: Layout, run_cli: Any, tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_bytes(_order())
    link = project.orders_dir / "2025-11-03-001.json"
    link.symlink_to(outside)
    result = run_cli("--root", project.root, "validate")
    assert result.code == 1
    assert result.out.strip() == (
        "exchange/orders/2025-11-03-001.json: -: is a symbolic link; links are not followed"
    )


def test_fifo_does_not_block(project: Layout, run_cli: Any) -> None:
    os.mkfifo(project.orders_dir / "2025-11-03-001.json")
    result = run_cli("--root", project.root, "validate")
    assert result.code == 1
    assert "2025-11-03-001.json: -: is a FIFO" in result.out


def test_oversized_file(project: Layout, run_cli: Any) -> None:
    path = project.orders_dir / "2025-11-03-001.json"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    result = run_cli("--root", project.root, "validate", path)
    assert result.code == 1
    assert "over the 1048576-byte limit" in result.out


def test_recipe_baseline_out_of_bounds(project: Layout, run_cli: Any) -> None:
    path = project.recipes_dir / "bolt-bunny.json"
    doc = json.loads(path.read_text())
    doc["baselines"][0]["ear_length"] = 99
    path.write_text(json.dumps(doc))
    result = run_cli("--root", project.root, "validate", path)
    assert result.code == 1
    assert (
        "exchange/recipes/bolt-bunny.json: baselines.0.ear_length: 99 is not an integer from 3 to 12"
        in result.out
    )


def test_file_outside_exchange_folders(project: Layout, run_cli: Any, tmp_path: Path) -> None:
    stray = tmp_path / "stray.json"
    stray.write_text("{}")
    result = run_cli("--root", project.root, "validate", stray)
    assert result.code == 1
    assert "is not in a known exchange folder" in result.out


def test_usage_error_exit_2(run_cli: Any) -> None:
    result = run_cli("validate", "--no-such-flag")
    assert result.code == 2
    assert "unrecognized arguments" in result.err


def test_pre_commit_style_call(
    project: Layout, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pre-commit passes the changed files as arguments from the repo root."""
    monkeypatch.delenv("TOYFOUNDRY_ROOT")
    monkeypatch.chdir(project.root)
    files = sorted(str(p.relative_to(project.root)) for p in project.orders_dir.glob("*.json"))
    result = run_cli("validate", *files)
    assert result.code == 0, result.out


def test_schemas_match_models(run_cli: Any) -> None:
    from tests.conftest import REPO

    result = run_cli("--root", REPO, "schemas", "--check")
    assert result.code == 0, result.out


def test_schemas_check_detects_drift(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / "schemas").mkdir()
    assert run_cli("--root", tmp_path, "schemas", "--write").code == 0
    (tmp_path / "schemas" / "order.schema.json").write_text("{}\n")
    result = run_cli("--root", tmp_path, "schemas", "--check")
    assert result.code == 1
    assert "order.schema.json: differs" in result.out


def test_each_read_of_the_exchange_sees_the_files_as_they_are(project: Layout) -> None:
    """A new `Exchange` reads the file again: an edit of the same size and a replacement
    by rename are both seen, and a broken file stays a problem."""
    path = project.order_file("2025-11-03-001")
    path.write_text(json.dumps(GOOD))
    reader = Exchange(project)
    first = reader.order("2025-11-03-001")
    first_digest = reader.digests[path]
    again = Exchange(project)
    assert again.order("2025-11-03-001").model == first.model
    assert again.digests[path] == first_digest
    edited = json.dumps({**GOOD, "seed": 8})  # same size as the seed 7 text
    assert len(edited) == len(json.dumps(GOOD))
    path.write_text(edited)
    changed = Exchange(project).order("2025-11-03-001").model
    assert changed is not None and changed.seed == 8
    temp = path.with_name(".swap.tmp")
    temp.write_text(json.dumps({**GOOD, "seed": 9}))
    os.replace(temp, path)
    assert Exchange(project).order("2025-11-03-001").model.seed == 9  # type: ignore[union-attr]
    path.write_text("{not json")
    broken = Exchange(project).order("2025-11-03-001")
    assert broken.model is None and broken.problems
    assert Exchange(project).order("2025-11-03-001").problems == broken.problems


def test_an_orders_rules_run_again_when_its_recipe_changes(project: Layout) -> None:
    """The rules' findings are kept with the parses they read: an edit of the recipe alone
    (the order's bytes unchanged) shows up in the order's problems, and goes away again."""
    path = project.order_file("2025-11-03-001")
    path.write_text(json.dumps({**GOOD, "phase": "expansion", "batch_size": 48}))
    assert Exchange(project).order("2025-11-03-001").problems == []
    assert Exchange(project).order("2025-11-03-001").problems == []  # kept, still none
    recipe = project.recipe_file("bolt-bunny")
    plain = recipe.read_text()
    recipe.write_text(json.dumps({**json.loads(plain), "experimental": True}))
    problems = Exchange(project).order("2025-11-03-001").problems
    assert [(p.field, "experimental" in p.reason) for p in problems] == [("recipe", True)]
    recipe.write_text(plain)
    assert Exchange(project).order("2025-11-03-001").problems == []


def test_a_folder_of_the_exchange_stands_for_its_files(project: Layout, run_cli: Any) -> None:
    bad = project.orders_dir / "2025-11-01-001.json"
    bad.write_text("{}")
    whole = run_cli("--root", project.root, "validate")
    assert whole.code == 1 and "2025-11-01-001.json: order_id: is required" in whole.out
    for named in (project.orders_dir, project.exchange, project.exchange / "orders/"):
        result = run_cli("--root", project.root, "validate", named)
        assert (result.code, result.out) == (1, whole.out), named
    recipes = run_cli("--root", project.root, "validate", project.recipes_dir)
    assert (recipes.code, recipes.out) == (0, "")
    other = run_cli("--root", project.root, "validate", project.root)
    assert other.code == 1 and "is not in a known exchange folder" in other.out
