"""The loom: quilt rollup, reports and partitions agree with the ledgers, and rebuild incrementally."""

from __future__ import annotations

import copy
import csv
import hashlib
import math
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_loom_support import SAMPLE, Spec, append_raw, build, ledger_lines, sample
from toyfoundry.formats import schemas
from toyfoundry.formats.models import Outcomes, QuiltRollup, Report
from toyfoundry.store.atomic import dumps_canonical
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import exports, fingerprint, ledgers, parts, quilt, reports
from toyfoundry.telemetry.loom import run_loom

ORDERS = [s.order_id for s in SAMPLE]


def rollup_of(layout: Layout) -> QuiltRollup:
    return QuiltRollup.model_validate_json(layout.rollup.read_bytes())


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def from_ledgers(layout: Layout) -> dict[str, dict[str, int]]:
    """Per order, straight from the ledger lines: Alfas minted, quarantined, promoted, runs."""
    out: dict[str, dict[str, int]] = {}
    alfas: dict[str, set[str]] = {}
    quarantined: dict[str, set[str]] = {}
    runs: dict[str, set[str]] = {}
    for rec in ledger_lines(layout.mint_ledger):
        oid = str(rec["order_id"])
        runs.setdefault(oid, set()).add(str(rec["run_id"]))
        if rec["alfa_id"]:
            alfas.setdefault(oid, set()).add(str(rec["alfa_id"]))
        if rec["outcome"] == "quarantined":
            quarantined.setdefault(oid, set()).add(str(rec["alfa_id"]))
    promoted: Counter[str] = Counter()
    invocations: Counter[str] = Counter()
    for rec in ledger_lines(layout.ritual_ledger):
        oid = str(rec["order_id"])
        invocations[oid] += 1
        if rec["ritual"] == "promote":
            counts: Any = rec["counts"]
            promoted[oid] = counts.get("promoted", 0)
    for oid in runs:
        out[oid] = {
            "minted": len(alfas.get(oid, ())),
            "quarantined": len(quarantined.get(oid, ())),
            "promoted": promoted[oid],
            "runs": len(runs[oid]),
            "rituals": invocations[oid],
        }
    return out


def test_loom_export_totals_agree_three_ways(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    result = run_cli("--root", layout.root, "loom", "--export")
    assert result.code == 0, result.err
    assert "4 orders in the quilt, 4 rebuilt" in result.out
    truth = from_ledgers(layout)
    rollup = rollup_of(layout)
    assert [b.order_id for b in rollup.batches] == ORDERS
    with exports.batches_csv(layout).open(newline="") as handle:
        batch_rows = {r["order_id"]: r for r in csv.DictReader(handle)}
    for b in rollup.batches:
        oid = b.order_id
        report = Report.model_validate_json(layout.report_json(oid).read_bytes())
        with exports.partition(layout, "alfas", oid, "csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        want = truth[oid]
        # minted: ledger == quilt == report == batches.csv == rows in the Alfa partition
        assert b.outcomes.minted == report.outcomes.minted == want["minted"] == len(rows)
        assert int(batch_rows[oid]["minted"]) == want["minted"]
        quarantined = sum(r["validator"] == "quarantined" for r in rows)
        assert b.outcomes.quarantined == len(report.awaiting_review) == quarantined
        assert want["quarantined"] == quarantined == int(batch_rows[oid]["quarantined"])
        promoted = sum(r["promoted"] == "true" for r in rows)
        assert b.outcomes.promoted == len(report.promoted) == want["promoted"] == promoted
        assert int(batch_rows[oid]["promoted"]) == promoted
        assert b.telemetry.mint_attempts == want["runs"] == 1
        assert b.telemetry.ritual_invocations == want["rituals"]
        assert b.telemetry.last_attempt == "2025-10-12T10:00:00.000000Z"
    totals = rollup.totals
    assert totals.by_status == {"awaiting-review": 1, "blocked": 1, "built": 1, "dry-run": 1}
    assert sum(o.minted for o in totals.by_day.values()) == sum(t["minted"] for t in truth.values())
    assert totals.by_phase["operational"].minted == 10
    assert totals.by_recipe["bolt-bunny"].minted == 0
    assert rollup.skipped == []


def test_summary_contents(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    by_id = {b.order_id: b for b in rollup_of(layout).batches}
    b = by_id["2025-10-20-011"]
    assert b.outcomes.model_dump() == {
        "minted": 8,
        "drilled": 8,
        "paraded": 8,
        "passed": 5,
        "failed": 3,
        "purged": 3,
        "promoted": 1,
        "quarantined": 0,
        "waived": 0,
    }
    assert b.defects == {"gear-slip": 1, "leg-shear": 2}
    assert b.status == "built" and b.day == "2025-10-20" and b.phase == "expansion"
    assert sum(b.score_histogram.values()) == 8
    waiting = by_id["2025-10-27-014"]
    assert (waiting.status, waiting.outcomes.quarantined, waiting.outcomes.waived) == (
        "awaiting-review",
        2,
        1,
    )
    blocked = by_id["2025-10-28-002"]
    assert (blocked.status, blocked.reason, blocked.outcomes.minted) == (
        "blocked",
        "no operational checkpoint",
        0,
    )


def test_outputs_match_their_schemas(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    docs: list[tuple[str, Any]] = [("quilt_rollup", orjson.loads(layout.rollup.read_bytes()))]
    docs += [("report", orjson.loads(layout.report_json(o).read_bytes())) for o in ORDERS]
    batches = exports.batches_jsonl(layout).read_bytes().splitlines()
    docs += [("batch_row", orjson.loads(line)) for line in batches]
    for oid in ORDERS:
        for dataset, kind in (
            ("alfas", "alfa_row"),
            ("alfa_params", "alfa_param_row"),
            ("alfa_notes", "alfa_note_row"),
            ("rituals", "ritual_event_row"),
            ("ritual_counts", "ritual_count_row"),
        ):
            path = exports.partition(layout, dataset, oid, "jsonl")
            docs += [(kind, orjson.loads(line)) for line in path.read_bytes().splitlines()]
    assert len(docs) > 30
    for kind, doc in docs:
        assert list(schemas.iter_errors(kind, doc)) == [], (kind, doc)


def test_report_markdown_tells_people_what_to_do(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    waiting = layout.report_md("2025-10-27-014").read_text(encoding="utf-8")
    assert "# Order 2025-10-27-014: awaiting-review" in waiting
    assert (
        "`toyfoundry review decide 2025-10-27-014 2025-10-27-014.a004 {waive|reroll|reject}"
        " --by NAME`" in waiting
    )
    assert "## Promoted (2)" in waiting and "2025-10-27-014.a009" in waiting
    assert "| novel |" in waiting and "| gear-slip | 1 |" in waiting
    blocked = layout.report_md("2025-10-28-002").read_text(encoding="utf-8")
    assert "- reason: no operational checkpoint" in blocked
    summary = layout.summary_md.read_text(encoding="utf-8")
    for oid in ORDERS:
        assert f"[{oid}]({oid}.md)" in summary


def test_outputs_are_byte_identical_and_rebuild_per_order(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    first = run_loom(layout, export=True, today="2025-10-28")
    assert first.rebuilt == ORDERS
    per_order = [layout.reports_dir, layout.quilt_parts, layout.exports / "alfas"]
    before = {k: v for f in per_order for k, v in mtimes(f).items()}
    again = run_loom(layout, export=True, today="2025-10-28")
    assert again.rebuilt == []
    assert {k: v for f in per_order for k, v in mtimes(f).items()} == before

    # Touching an artefact without changing its bytes: hashed, found current, not rebuilt.
    os.utime(layout.rituals_artefact("2025-10-12-005"), ns=(1, 1))
    assert run_loom(layout, export=True, today="2025-10-28").rebuilt == []

    # A changed order rewrites its own outputs and nobody else's.
    build(layout, Spec("2025-10-20-011", phase="expansion", size=9, promoted=(8,)), run_id="run-b")
    changed = run_loom(layout, export=True, today="2025-10-28")
    assert changed.rebuilt == ["2025-10-20-011"]
    after = {k: v for f in per_order for k, v in mtimes(f).items()}
    moved = sorted(Path(k).name for k in after if after[k] != before.get(k))
    assert moved == [
        "2025-10-20-011.csv",
        "2025-10-20-011.html",
        "2025-10-20-011.json",
        "2025-10-20-011.json",
        "2025-10-20-011.jsonl",
        "2025-10-20-011.md",
        "summary.md",
    ]
    b = {x.order_id: x for x in rollup_of(layout).batches}["2025-10-20-011"]
    assert (b.outcomes.minted, b.telemetry.mint_attempts) == (9, 2)


def test_part_is_deterministic_and_carries_its_source(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    summary = reports.build_order_outputs(layout, "2025-10-20-011")
    part = parts.part_path(layout, "2025-10-20-011").read_bytes()
    assert summary.telemetry.mint_attempts == 0 and b"last_attempt" in part
    assert summary.source is not None and len(summary.source) == 64
    other = sample(tmp_path / "q")
    reports.build_order_outputs(other, "2025-10-20-011")
    assert parts.part_path(other, "2025-10-20-011").read_bytes() == part
    assert reports.is_current(layout, "2025-10-20-011")


def test_ledgers_are_read_incrementally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout)
    index = orjson.loads(quilt.index_path(layout).read_bytes())["ledgers"]
    assert index["forge_mint_alfa.jsonl"]["offset"] == layout.mint_ledger.stat().st_size
    checked: list[bytes] = []
    real = ledgers.Reader.read

    def counting(self: ledgers.Reader, line: bytes) -> Any:
        checked.append(line)
        return real(self, line)

    monkeypatch.setattr(ledgers.Reader, "read", counting)
    run_loom(layout)
    assert checked == []
    build(
        layout,
        Spec("2025-10-12-005", phase="pilot", status="dry-run", dry_run=True, size=4),
        run_id="run-b",
        time="2025-10-13T09:00:00+02:00",
    )
    run_loom(layout)
    assert len(checked) == 4 + 4  # the new mint lines and the new ritual lines only
    b = {x.order_id: x for x in rollup_of(layout).batches}["2025-10-12-005"]
    assert b.telemetry.model_dump() == {
        "mint_attempts": 2,
        "ritual_invocations": 8,
        "last_attempt": "2025-10-13T09:00:00+02:00",
    }


def test_a_replaced_ledger_is_rescanned(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout)
    old = layout.mint_ledger.read_bytes()
    keep = [line for line in old.splitlines(keepends=True) if b"2025-10-20-011" in line]
    # Larger than before, so an offset check alone would read on from the old offset.
    new = b"".join(keep)
    copies = 0
    while len(new) <= len(old):
        copies += 1
        new += b"".join(line.replace(b"run-a", f"run-{copies}".encode()) for line in keep)
    replacement = layout.mint_ledger.with_suffix(".new")
    replacement.write_bytes(new)
    os.replace(replacement, layout.mint_ledger)
    run_loom(layout)
    by_id = {b.order_id: b for b in rollup_of(layout).batches}
    assert by_id["2025-10-20-011"].telemetry.mint_attempts == 1 + copies
    assert by_id["2025-10-27-014"].telemetry.mint_attempts == 0


def test_bad_ledger_lines_are_skipped_and_listed(tmp_path: Path, run_cli: Any) -> None:
    layout = sample(tmp_path / "p")
    good = layout.mint_ledger.read_bytes().splitlines()
    n = len(good)
    append_raw(layout.mint_ledger, b'{"kind": "teleport", "order_id": "2025-10-12-005"}\n')
    ghost = orjson.loads(good[0])
    ghost.update(order_id="2024-01-01-001", alfa_id="2024-01-01-001.a000")
    append_raw(layout.mint_ledger, orjson.dumps(ghost) + b"\n")
    append_raw(layout.mint_ledger, b'{"kind": "mint", "torn')
    result = run_cli("--root", layout.root, "loom")
    assert result.code == 0
    shown = ".toyfoundry/telemetry/forge_mint_alfa.jsonl"
    skipped = rollup_of(layout).skipped
    assert skipped == [
        f"{shown}:{n + 1}: unknown record type 'teleport'",
        f"{shown}:{n + 3}: torn last line (22 bytes without a newline), not read",
    ]
    for line in skipped:
        assert line in result.err
    assert [b.order_id for b in rollup_of(layout).batches] == ORDERS
    assert run_cli("--root", layout.root, "loom", "--strict").code == 1


def test_torn_fragments_and_broken_artefacts_are_listed(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    torn = layout.mint_ledger.with_name("forge_mint_alfa.jsonl.torn")
    torn.write_bytes(b'{"bytes": "{\\"ki", "ledger": "forge_mint_alfa.jsonl", "offset": 40}\n')
    layout.rituals_artefact("2025-10-20-011").write_bytes(b"{not json")
    result = run_loom(layout, export=True, today="2025-10-28")
    assert any(
        s.startswith(".toyfoundry/telemetry/forge_mint_alfa.jsonl.torn:1: torn fragment")
        and "byte 40" in s
        for s in result.skipped
    )
    assert any(
        "2025-10-20-011/rituals.json: not a valid rituals artefact" in s for s in result.skipped
    )
    assert rollup_of(layout).skipped == result.skipped
    built = [b.order_id for b in rollup_of(layout).batches]
    assert built == ["2025-10-12-005", "2025-10-27-014", "2025-10-28-002"]


def test_missing_rituals_and_blocked_orders(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    assert not layout.rituals_artefact("2025-10-28-002").exists()
    run_loom(layout, export=True, today="2025-10-28")
    header = exports.partition(layout, "rituals", "2025-10-28-002", "csv").read_text()
    assert header == "order_id,ritual,ran,stub\n"
    assert exports.partition(layout, "alfas", "2025-10-28-002", "jsonl").read_bytes() == b""
    report = Report.model_validate_json(layout.report_json("2025-10-28-002").read_bytes())
    assert report.rituals == {} and report.status == "blocked"
    assert any("resolve the block" in step for step in report.next_steps)


def test_deleted_order_loses_its_outputs(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    gone = "2025-10-20-011"
    owned = reports.outputs_of(layout, gone)
    assert all(p.exists() for p in owned)
    layout.order_file(gone).unlink()
    result = run_loom(layout, export=True, today="2025-10-28")
    assert not any(p.exists() for p in owned)
    assert result.exports is not None and set(owned) <= set(result.exports.removed)
    # and its build folder: no task makes it any more, and a clean build has none
    assert layout.order_build(gone) in result.exports.removed
    assert not layout.order_build(gone).exists()
    assert gone not in [b.order_id for b in rollup_of(layout).batches]
    assert gone not in exports.batches_csv(layout).read_text()
    assert not any(gone in s for s in result.skipped)  # its ledger lines are history


def test_unbuilt_orders_are_listed_not_fatal(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    (layout.orders_dir / "2025-11-01-001.json").write_text("{}")
    result = run_loom(layout)
    assert result.orders[-1] == "2025-11-01-001" and "2025-11-01-001" not in result.built
    assert any("parts/2025-11-01-001.json: missing" in s for s in result.skipped)


def test_graph_entry_points(tmp_path: Path) -> None:
    """The names the doit graph calls: build_quilt and write_report, build_exports with changes."""
    layout = sample(tmp_path / "p")
    summary = reports.write_report(layout, "2025-10-12-005")
    assert summary.status == "dry-run"
    stitched = quilt.build_quilt(layout, ORDERS, {"2025-10-20-011"})
    assert stitched.order_ids == ORDERS  # missing parts were built too
    assert not stitched.reused  # no previous rollup to start from
    done = exports.build_exports(layout, ORDERS, changed={"2025-10-20-011"})
    assert exports.batches_csv(layout) in done.written
    assert len(fingerprint()) == 64


# --------------------------------------------------------------------------- incremental rollup


def from_scratch(layout: Layout, order_ids: list[str], where: Path) -> bytes:
    """The rollup a full build writes for the same inputs, in a copy with no quilt state."""
    shutil.copytree(layout.root, where)
    copy = Layout(where)
    for name in ("quilt_rollup_all.json", "ledger_index.json", "rollup_state.json"):
        (copy.quilt_dir / name).unlink(missing_ok=True)
    assert not quilt.build_quilt(copy, order_ids).reused
    return copy.rollup.read_bytes()


def check_incremental(
    layout: Layout, order_ids: list[str], changed: set[str], where: Path
) -> quilt.Stitched:
    """Stitch with `changed`, and check the bytes are those of a full build from scratch."""
    stitched = quilt.build_quilt(layout, order_ids, changed)
    written = layout.rollup.read_bytes()
    assert written == from_scratch(layout, order_ids, where)
    # the plain-data bytes are the model's canonical bytes: what the pydantic path wrote
    model = QuiltRollup.model_validate_json(written)
    assert dumps_canonical(model) == written == dumps_canonical(stitched.model())
    return stitched


def test_incremental_rollup_is_byte_identical_to_a_full_one(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    ids = list(ORDERS)
    assert not quilt.build_quilt(layout, ids).reused

    # nothing changed: nothing read, the previous rollup is the base
    same = check_incremental(layout, ids, set(), tmp_path / "s0")
    assert same.reused and same.read == []

    # one order changed: only its part is read
    build(layout, Spec("2025-10-20-011", phase="expansion", size=9, promoted=(8,)), run_id="run-b")
    one = check_incremental(layout, ids, {"2025-10-20-011"}, tmp_path / "s1")
    assert one.reused and one.read == ["2025-10-20-011"]
    batch = {b["order_id"]: b for b in one.document["batches"]}["2025-10-20-011"]
    assert batch["outcomes"]["minted"] == 9 and batch["telemetry"]["mint_attempts"] == 2

    # an order removed: dropped, its ledger records kept as history, no part read
    layout.order_file("2025-10-27-014").unlink()
    ids.remove("2025-10-27-014")
    gone = check_incremental(layout, ids, set(), tmp_path / "s2")
    assert gone.read == [] and gone.order_ids == ids
    assert not any("2025-10-27-014" in s for s in gone.skipped)  # history, not skipped

    # an order added
    build(layout, Spec("2025-10-29-001", size=3, failed=(1,)))
    ids.append("2025-10-29-001")
    new = check_incremental(layout, ids, {"2025-10-29-001"}, tmp_path / "s3")
    assert new.read == ["2025-10-29-001"] and new.order_ids == ids

    # only the ledgers moved (a re-run with identical artefacts): telemetry follows them
    build(layout, Spec("2025-10-29-001", size=3, failed=(1,)), run_id="run-c")
    again = check_incremental(layout, ids, set(), tmp_path / "s4")
    assert again.read == []
    batch = {b["order_id"]: b for b in again.document["batches"]}["2025-10-29-001"]
    assert batch["telemetry"]["mint_attempts"] == 2


def test_a_part_rewritten_behind_the_graphs_back_is_read(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    quilt.build_quilt(layout, ORDERS)
    path = parts.part_path(layout, "2025-10-12-005")
    doc = orjson.loads(path.read_bytes())
    doc["reason"] = "edited by hand"
    path.write_bytes(dumps_canonical(doc))
    stitched = check_incremental(layout, ORDERS, set(), tmp_path / "s")
    assert stitched.reused and stitched.read == ["2025-10-12-005"]
    assert "edited by hand" in layout.rollup.read_text()


def test_totals_agree_with_the_model_sums(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    model = quilt.build_quilt(layout, ORDERS).model()
    for name, key in (("by_phase", "phase"), ("by_recipe", "recipe"), ("by_day", "day")):
        want: dict[str, dict[str, int]] = {}
        for b in model.batches:
            group = getattr(b, key) or "unknown"
            into = want.setdefault(group, dict.fromkeys(Outcomes.model_fields, 0))
            for field, value in b.outcomes.model_dump().items():
                into[field] += value
        got = {k: v.model_dump() for k, v in getattr(model.totals, name).items()}
        assert got == want, name


@pytest.mark.parametrize(
    "damage",
    [
        "rollup missing",
        "rollup not json",
        "rollup edited",
        "record missing",
        "record not json",
        "record from other code",
        "trusted but malformed",
    ],
)
def test_a_bad_previous_rollup_falls_back_to_a_full_build(tmp_path: Path, damage: str) -> None:
    layout = sample(tmp_path / "p")
    quilt.build_quilt(layout, ORDERS)
    record_path = parts.state_path(layout)
    record = orjson.loads(record_path.read_bytes())
    if damage == "rollup missing":
        layout.rollup.unlink()
    elif damage == "rollup not json":
        layout.rollup.write_bytes(b'{"batches": [')
    elif damage == "rollup edited":
        doc = orjson.loads(layout.rollup.read_bytes())
        doc["batches"][0]["outcomes"]["minted"] = 99
        layout.rollup.write_bytes(dumps_canonical(doc))
    elif damage == "record missing":
        record_path.unlink()
    elif damage == "record not json":
        record_path.write_bytes(b"\x00garbage")
    elif damage == "record from other code":
        record["code"] = "0" * 64
        record_path.write_bytes(orjson.dumps(record))
    else:
        # bytes the record vouches for, but not a rollup this code writes
        bad = b'{"batches": [1, {"order_id": 5}, {"order_id": "2025-10-12-005"}]}'
        layout.rollup.write_bytes(bad)
        record["rollup"] = hashlib.sha256(bad).hexdigest()
        record_path.write_bytes(orjson.dumps(record))
    stitched = check_incremental(layout, ORDERS, set(), tmp_path / "s")
    assert stitched.read == ORDERS
    assert stitched.reused == (damage == "trusted but malformed")
    assert orjson.loads(layout.rollup.read_bytes())["batches"][0]["outcomes"]["minted"] != 99


# --------------------------------------------------------------------------- rollup shared in-process


def test_readers_in_one_process_share_the_rollup_the_quilt_wrote(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    stitched = quilt.build_quilt(layout, ORDERS)
    stored = parts.load_rollup(layout)
    assert stored is not None and stored.document is stitched.document  # not parsed again
    assert stitched.document == orjson.loads(layout.rollup.read_bytes())  # the bytes, as data


def test_a_rollup_edited_in_place_is_read_again_whatever_its_stat_says(tmp_path: Path) -> None:
    """Same inode, same size, same mtime (as a coarse clock gives): other bytes all the same."""
    layout = sample(tmp_path / "p")
    quilt.build_quilt(layout, ORDERS)
    before = os.stat(layout.rollup)
    data = layout.rollup.read_bytes()
    edited = data.replace(b'"carryover": 0', b'"carryover": 1', 1)
    assert edited != data and len(edited) == len(data)
    with layout.rollup.open("r+b") as handle:
        handle.write(edited)
    os.utime(layout.rollup, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(layout.rollup)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert parts.load_rollup(layout) is None  # the record vouches for other bytes
    # a record that vouches for the edited bytes: they are parsed, not the remembered ones served
    record_path = parts.state_path(layout)
    record = orjson.loads(record_path.read_bytes())
    record["rollup"] = hashlib.sha256(edited).hexdigest()
    record_path.write_bytes(orjson.dumps(record))
    stored = parts.load_rollup(layout)
    assert stored is not None and stored.document == orjson.loads(edited)


def test_stitching_again_in_one_process_leaves_the_earlier_document_alone(tmp_path: Path) -> None:
    """The watcher stitches in one long process: the next run starts from the shared document."""
    layout = sample(tmp_path / "p")
    first = quilt.build_quilt(layout, ORDERS)
    kept = copy.deepcopy(first.document)
    # a re-run with identical artefacts: the batch is carried over, its telemetry moves
    build(layout, SAMPLE[0], run_id="run-b")
    second = check_incremental(layout, ORDERS, set(), tmp_path / "s")
    assert second.reused and second.read == []
    assert first.document == kept
    assert first.document["batches"][0]["telemetry"]["mint_attempts"] == 1
    assert second.document["batches"][0]["telemetry"]["mint_attempts"] == 2
    assert second.document == orjson.loads(layout.rollup.read_bytes())


def ledger_index(layout: Layout) -> dict[str, Any]:
    """The ledger index but each ledger's inode (a copy's differ)."""
    found: dict[str, Any] = orjson.loads(quilt.index_path(layout).read_bytes())["ledgers"]
    return {name: {k: v for k, v in state.items() if k != "inode"} for name, state in found.items()}


def test_ledgers_read_aside_give_the_same_rollup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big build reads the ledgers in a forked child (`quilt.aside`): same bytes, and a
    child that fails leaves the work to the caller, whose errors surface as before."""
    layout = sample(tmp_path / "p")
    expected = from_scratch(layout, list(ORDERS), tmp_path / "serial")
    index = ledger_index(Layout(tmp_path / "serial"))
    monkeypatch.setattr(quilt, "ASIDE_AT", 0)
    assert from_scratch(layout, list(ORDERS), tmp_path / "aside") == expected
    aside_layout = Layout(tmp_path / "aside")
    assert ledger_index(aside_layout) == index

    def fails(value: int) -> int:
        if os.getpid() != parent:
            raise RuntimeError("in the child")
        return value + 1

    parent = os.getpid()
    assert quilt.aside(fails, 1)() == 2

    def unpicklable() -> object:
        return (lambda: None) if os.getpid() != parent else "here"

    assert quilt.aside(unpicklable)() == "here"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a fork server needs fork")
def test_ledgers_read_aside_come_from_the_fork_server_when_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a parallel build the ledger reader is a child of the workers' fork server, not a
    fork of the build process and its graph: same index, same rollup."""
    from toyfoundry.graph import workers

    layout = sample(tmp_path / "p")
    expected = from_scratch(layout, list(ORDERS), tmp_path / "serial")
    index = ledger_index(Layout(tmp_path / "serial"))
    monkeypatch.setattr(quilt, "ASIDE_AT", 0)
    server = workers.server_pid()
    try:
        assert quilt.aside(os.getppid)() == server != os.getpid()
        assert from_scratch(layout, list(ORDERS), tmp_path / "aside") == expected
        assert ledger_index(Layout(tmp_path / "aside")) == index
        with pytest.raises(ValueError):  # the child's error surfaces as the caller's own
            quilt.aside(int, "not a number")()
    finally:
        workers.stop_server()


def test_a_failed_quilt_reaps_the_ledger_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quilt that fails while its ledgers are read aside leaves no child behind."""
    layout = sample(tmp_path / "p")
    monkeypatch.setattr(quilt, "ASIDE_AT", 0)
    made: list[Any] = []
    real = quilt.aside

    def spy(fn: Any, *args: Any) -> Any:
        made.append(real(fn, *args))
        return made[-1]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(quilt, "aside", spy)
    monkeypatch.setattr(quilt, "stitch", broken)
    with pytest.raises(OSError):
        quilt.build_quilt(layout, list(ORDERS))
    assert all(getattr(handle, "done", True) for handle in made) and made


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(), st.integers(-500, 500).map(float))))
def test_the_score_histogram_counts_each_finite_score_in_its_bin(scores: list[Any]) -> None:
    from toyfoundry.telemetry.summary import score_bin, score_histogram

    found = Counter(score_bin(s) for s in scores if s is not None and math.isfinite(s))
    expected = dict(sorted(found.items(), key=lambda kv: int(kv[0])))
    assert list(score_histogram(scores).items()) == list(expected.items())


def test_the_quilt_takes_the_parts_the_graph_just_made_as_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orders given as `current` (their report task succeeded in this build) are not checked
    against their artefacts again; the others are, and the rollup is the same."""
    layout = sample(tmp_path / "p")
    ids = sorted(ORDERS)
    for oid in ids:
        reports.build_order_outputs(layout, oid)
    checked: list[str] = []
    real = reports.is_current

    def counting(layout: Layout, oid: str) -> bool:
        checked.append(oid)
        return real(layout, oid)

    monkeypatch.setattr(reports, "is_current", counting)
    quilt.build_quilt(layout, ids, current=frozenset(ids[1:]))
    assert checked == ids[:1]
    trusted = layout.rollup.read_bytes()
    quilt.build_quilt(layout, ids)
    assert checked == ids[:1] + ids
    assert layout.rollup.read_bytes() == trusted
