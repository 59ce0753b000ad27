"""lint-telemetry: planted drift is found at the right lines; clean ledgers pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.test_loom_support import append_raw, sample
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.lint import lint_paths

MINT = ".toyfoundry/telemetry/forge_mint_alfa.jsonl"
RITUALS = ".toyfoundry/telemetry/forge_rituals.jsonl"


def first_record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(path.read_bytes().splitlines()[0])
    return record


def json_error(data: bytes) -> str:
    """orjson's own message (its wording varies between versions)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    raise AssertionError("expected invalid JSON")


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def plant(path: Path, record: dict[str, Any] | bytes) -> int:
    """Append one line; returns its line number."""
    data = record if isinstance(record, bytes) else orjson.dumps(record)
    append_raw(path, data + b"\n")
    return line_count(path)


def test_clean_ledgers_pass(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    result = lint_paths(layout)
    assert result.findings == []
    assert result.files == 2
    assert result.lines == line_count(layout.mint_ledger) + line_count(layout.ritual_ledger)
    assert result.lines_per_second > 0
    cli = run_cli("--root", layout.root, "lint-telemetry")
    assert (cli.code, cli.out) == (0, "")
    assert "0 errors, 0 warnings" in cli.err


def test_planted_drift_is_reported_at_its_line(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    mint, rituals = layout.mint_ledger, layout.ritual_ledger
    good = first_record(mint)
    expected: list[str] = []

    def planted(path: Path, shown: str, record: dict[str, Any] | bytes, problem: str) -> None:
        expected.append(f"{shown}:{plant(path, record)}: {problem}")

    planted(mint, MINT, {**good, "colour": "red"}, "unknown field colour")
    missing = {k: v for k, v in good.items() if k not in ("seed", "time")}
    planted(mint, MINT, missing, "missing fields seed, time")
    planted(mint, MINT, {**good, "schema_version": 2}, "schema_version is 2, expected 1")
    planted(mint, MINT, {**good, "kind": "teleport"}, "unknown record type 'teleport'")
    planted(mint, MINT, b"{not json", f"not valid JSON: {json_error(b'{not json')}")
    planted(mint, MINT, b"[1, 2]", "not a JSON object")
    planted(
        mint,
        MINT,
        {**good, "outcome": "exploded"},
        "outcome: Input should be 'minted', 'quarantined', 'waived', 'rerolled',"
        " 'rejected-by-review', 'blocked' or 'rejected' (got 'exploded')",
    )
    planted(mint, MINT, {**good, "seed": "7"}, "seed: Input should be a valid integer (got '7')")
    planted(rituals, RITUALS, good, "a mint record in the ritual ledger")
    ghost = {**good, "order_id": "2024-01-01-001", "alfa_id": "2024-01-01-001.a000"}
    append_raw(mint, orjson.dumps(ghost) + b"\n")  # a withdrawn order's line: history
    append_raw(mint, b'{"kind": "mint", "ti')
    expected.append(
        f"{MINT}:{line_count(mint) + 1}: torn last line: 20 bytes without a newline"
        " (a writer was killed; the next append sets it aside)"
    )
    torn = rituals.with_name("forge_rituals.jsonl.torn")
    torn.write_bytes(b'{"bytes": "{", "ledger": "forge_rituals.jsonl", "offset": 99}\n')
    expected.append(
        f"{RITUALS}.torn:1: torn fragment set aside by a repair (was at byte 99 of"
        " forge_rituals.jsonl); inspect it, then delete the .torn file to acknowledge it"
    )

    result = lint_paths(layout)
    assert sorted(str(f) for f in result.findings) == sorted(expected)
    assert (result.errors, result.warnings) == (len(expected), 0)
    assert result.history_lines == 1 and result.history_orders == {"2024-01-01-001"}
    cli = run_cli("--root", layout.root, "lint-telemetry")
    assert cli.code == 1
    assert sorted(cli.out.splitlines()) == sorted(expected)


def test_a_withdrawn_orders_lines_are_history_even_when_strict(
    tmp_path: Path, run_cli: Any
) -> None:
    layout = sample(tmp_path / "p")
    layout.order_file("2025-10-20-011").unlink()  # withdrawn: its ledger lines are history
    result = lint_paths(layout)
    assert result.errors == 0 and result.warnings == 0 and result.findings == []
    assert result.history_lines == 8 + 4 and result.history_orders == {"2025-10-20-011"}
    assert not result.failed() and not result.failed(strict=True)
    assert run_cli("--root", layout.root, "lint-telemetry").code == 0
    strict = run_cli("--root", layout.root, "lint-telemetry", "--strict")
    assert strict.code == 0 and strict.out == ""
    assert "12 lines of 1 withdrawn order(s) kept as history" in strict.err
    assert run_cli("--root", layout.root, "nightly", "--strict").code == 0


def test_no_ledgers_is_clean(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "empty")
    result = lint_paths(layout)
    assert (result.files, result.lines, result.findings) == (0, 0, [])


def test_watcher_snapshot_is_checked(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    layout.watcher_state.write_text('{"schema_version": 1, "target": "toyfoundry_ai_0"}')
    found = [str(f) for f in lint_paths(layout).findings]
    assert found == [
        ".toyfoundry/telemetry/exchange_watcher_state.json:1: updated_at: Field required"
    ]


def test_the_nightly_summary_collapses_a_problem_on_consecutive_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`lint-telemetry` prints every finding; the nightly's summary prints a run of one
    problem on consecutive lines once, and counts what its limit leaves out."""
    from toyfoundry.commands import lint_telemetry
    from toyfoundry.telemetry.lint import Finding, LintResult

    gone = "record for order 2025-10-31-001, which is not in the exchange"
    findings = [Finding("m.jsonl", n, gone, "warning") for n in range(354, 450)]
    findings += [
        Finding("m.jsonl", 451, gone, "warning"),  # not consecutive: a line of its own
        Finding("m.jsonl", 452, "order_id: Field required"),
        Finding("r.jsonl", 453, "order_id: Field required"),  # another file
    ]
    result = LintResult(findings=findings)
    assert lint_telemetry.collapsed(findings) == [
        (f"m.jsonl:354-449: {gone} (warning, 96 lines)", 96),
        (f"m.jsonl:451: {gone} (warning)", 1),
        ("m.jsonl:452: order_id: Field required", 1),
        ("r.jsonl:453: order_id: Field required", 1),
    ]
    lint_telemetry.report(result, limit=2)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"m.jsonl:354-449: {gone} (warning, 96 lines)",
        f"m.jsonl:451: {gone} (warning)",
        "... 2 more: run `toyfoundry lint-telemetry`",
    ]
    lint_telemetry.report(result)
    assert len(capsys.readouterr().out.splitlines()) == len(findings)


def test_one_finding_is_counted_in_the_singular(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    plant(layout.mint_ledger, {**first_record(layout.mint_ledger), "colour": "red"})
    cli = run_cli("--root", layout.root, "lint-telemetry")
    assert cli.code == 1
    assert "2 ledgers," in cli.err and ": 1 error, 0 warnings" in cli.err
