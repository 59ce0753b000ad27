"""Mint: diversity quotas, determinism, checkpoints, experimental quotas and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.support import build, cli, load, make_project, write_json
from toyfoundry.forge.mint import mint_order, plan_shares
from toyfoundry.forge.rituals import run_rituals
from toyfoundry.formats.models import Alfa, MintArtefact, MintRecord, RitualRecord
from toyfoundry.store.layout import Layout

SAMPLE = Path(__file__).resolve().parents[1] / "exchange"
SAMPLE_ORDERS = ["2025-10-12-005", "2025-10-20-011", "2025-10-27-014", "2025-10-28-002"]


def order(layout: Layout, order_id: str, **fields: Any) -> None:
    data: dict[str, Any] = {
        "schema_version": 1,
        "order_id": order_id,
        "phase": "operational",
        "recipe": "sprocket-scout",
        "batch_size": 96,
        "seed": int(order_id.replace("-", "")),
        "dry_run": False,
        "issued_by": "tests",
    }
    data.update(fields)
    write_json(layout.order_file(order_id), data)


# --------------------------------------------------------------------------- shares


@given(
    n=st.integers(min_value=1, max_value=96),
    carry=st.integers(min_value=0, max_value=40),
    pool=st.booleans(),
)
def test_shares_sum_to_batch_and_novel_never_below_sixty_percent(
    n: int, carry: int, pool: bool
) -> None:
    c = carry / 100
    b = round(0.4 - c, 2)
    counts = plan_shares(n, (1 - c - b, c, b), pool)
    assert counts.novel + counts.carryover + counts.baseline == n
    assert counts.novel >= 0.6 * n
    assert counts.carryover == (int(n * c + 1e-9) if pool else 0)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(12, (10, 0, 2)), (48, (39, 0, 9)), (96, (77, 0, 19))],
)
def test_achieved_shares_exact_without_pool(
    tmp_path: Path, size: int, expected: tuple[int, ...]
) -> None:
    layout = make_project(tmp_path, orders=False)
    order(layout, "2025-11-03-001", batch_size=size)
    artefact = mint_order(layout, "2025-11-03-001")
    got = (artefact.achieved.novel, artefact.achieved.carryover, artefact.achieved.baseline)
    assert got == expected
    assert artefact.achieved == artefact.target
    assert sum(1 for a in artefact.alfas if a.share == "novel") >= 0.6 * size


def test_achieved_shares_exact_with_pool(tmp_path: Path) -> None:
    layout = make_project(tmp_path)
    build(layout, *SAMPLE_ORDERS)
    expected = {12: (8, 2, 2), 48: (30, 9, 9), 96: (58, 19, 19)}
    for number, size in enumerate((12, 48, 96), start=1):
        order_id = f"2025-11-03-00{number}"
        order(layout, order_id, batch_size=size)
        artefact = mint_order(layout, order_id)
        run_rituals(layout, order_id)
        a = artefact.achieved
        assert (a.novel, a.carryover, a.baseline) == expected[size]
        assert artefact.achieved == artefact.target
        carry = [x for x in artefact.alfas if x.share == "carryover"]
        chain = json.loads(
            layout.chain_file(
                SAMPLE_ORDERS[2] if number == 1 else f"2025-11-03-00{number - 1}"
            ).read_text()
        )
        pool_ids = {e["alfa_id"] for e in chain["pool"]}
        assert carry and all(x.parent_id in pool_ids for x in carry)
        for child in carry:
            parent = next(e for e in chain["pool"] if e["alfa_id"] == child.parent_id)
            changed = [k for k in child.params if child.params[k] != parent["params"][k]]
            assert 1 <= len(changed) <= 2  # sprocket-scout: max_changes 2


def test_novel_never_repeats_a_permutation_of_the_recipe(tmp_path: Path) -> None:
    layout = make_project(tmp_path)
    build(layout, *SAMPLE_ORDERS)
    for number in range(1, 4):
        order(layout, f"2025-11-03-00{number}")
        build(layout, f"2025-11-03-00{number}")
    seen: set[str] = set()
    for order_id in [
        "2025-10-20-011",
        "2025-10-27-014",
        "2025-11-03-001",
        "2025-11-03-002",
        "2025-11-03-003",
    ]:
        artefact = load(layout, order_id)
        minted = {
            json.dumps(a.params, sort_keys=True) for a in artefact.alfas if a.share != "baseline"
        }
        novel = {json.dumps(a.params, sort_keys=True) for a in artefact.alfas if a.share == "novel"}
        assert not novel & seen, order_id
        assert len(novel) == sum(1 for a in artefact.alfas if a.share == "novel")
        seen |= minted


# --------------------------------------------------------------------------- determinism


def test_two_builds_in_different_folders_are_byte_identical(tmp_path: Path) -> None:
    trees = []
    for name in ("one", "two"):
        layout = make_project(tmp_path / name)
        build(layout, *SAMPLE_ORDERS)
        files = {
            str(p.relative_to(layout.root)): p.read_bytes()
            for folder in (layout.build, layout.outbox_dir, layout.doctrine / "packs")
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        trees.append(files)
    assert trees[0] == trees[1]
    assert len([k for k in trees[0] if k.endswith("mint.json")]) == 4
    for path, data in trees[0].items():
        if path.endswith("mint.json"):
            text = data.decode()
            assert str(tmp_path) not in text and "T0" not in text and "run_id" not in text


def test_remint_rewrites_identical_bytes_and_logs_a_new_attempt(tmp_path: Path) -> None:
    layout = make_project(tmp_path)
    build(layout, "2025-10-12-005")
    mint_order(layout, "2025-10-20-011")
    path = layout.mint_artefact("2025-10-20-011")
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    lines = layout.mint_ledger.read_bytes().count(b"\n")
    mint_order(layout, "2025-10-20-011")
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert layout.mint_ledger.read_bytes().count(b"\n") == lines + 48


def test_the_model_the_mint_hands_on_equals_a_parse_of_its_file(tmp_path: Path) -> None:
    """The Alfas' models are made from the batch's data unchecked: the same as validating
    the file, field for field, and as frozen."""
    layout = make_project(tmp_path)
    build(layout, *SAMPLE_ORDERS[:3])
    artefact = mint_order(layout, SAMPLE_ORDERS[3])
    data = layout.mint_artefact(SAMPLE_ORDERS[3]).read_bytes()
    parsed = MintArtefact.model_validate_json(data)
    assert artefact.alfas and artefact == parsed
    assert artefact.model_dump() == parsed.model_dump()
    assert artefact.model_dump_json() == parsed.model_dump_json()
    for mine, theirs in zip(artefact.alfas, parsed.alfas, strict=True):
        assert isinstance(mine, Alfa) and mine == theirs
        assert mine.model_fields_set == theirs.model_fields_set
    with pytest.raises(ValidationError):
        artefact.alfas[0].slot = 1  # type: ignore[misc]


def test_an_input_refused_at_the_read_is_recorded_as_refused_not_as_it_is_later(
    tmp_path: Path,
) -> None:
    """A mint that found its order a link records no digest for it, even if the file is a
    regular one by the time the digests are taken: the rituals then see it changed."""
    from toyfoundry.exchange.loader import Exchange
    from toyfoundry.forge.mint import input_digests, mint_inputs

    layout = make_project(tmp_path)
    order_id = SAMPLE_ORDERS[0]
    path = layout.order_file(order_id)
    good = path.read_bytes()
    path.unlink()
    path.symlink_to("/dev/zero")
    exchange = Exchange(layout)
    assert exchange.order(order_id).model is None  # refused: a link
    path.unlink()
    path.write_bytes(good)
    inputs = mint_inputs(layout, exchange, order_id)
    recorded = input_digests(layout, inputs, exchange.max_bytes, exchange)
    shown = f"exchange/orders/{order_id}.json"
    assert recorded[shown] is None
    assert input_digests(layout, inputs, exchange.max_bytes)[shown] is not None


# --------------------------------------------------------------------------- dry runs


def test_dry_run_leaves_roster_pool_and_doctrine_untouched_but_both_ledgers_record_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    build(layout, *SAMPLE_ORDERS)
    snapshot = {
        p: p.read_bytes()
        for folder in (layout.build, layout.doctrine, layout.outbox_dir)
        for p in folder.rglob("*")
        if p.is_file()
    }
    order(layout, "2025-11-03-001", dry_run=True)
    artefact = mint_order(layout, "2025-11-03-001")
    rituals = run_rituals(layout, "2025-11-03-001").artefact
    assert artefact.status == "dry-run" and len(artefact.alfas) == 96
    assert rituals.dry_run and rituals.roster == [] and rituals.promoted == []
    assert all(o.stub and not o.ran for o in rituals.rituals.values())
    assert (
        layout.chain_file("2025-11-03-001").read_bytes()
        == layout.chain_file("2025-10-27-014").read_bytes()
    )
    # a dry run promotes nothing: its manifest says so
    assert json.loads(layout.outbox_file("2025-11-03-001").read_bytes())["alfas"] == []
    # The CLI's --dry-run on a built order: logged, but the build is left as it was.
    code, out, _ = cli(capsys, layout, "mint", "2025-10-27-014", "--dry-run")
    assert code == 0 and "dry-run" in out
    code, out, _ = cli(capsys, layout, "ritual", "promote", "2025-10-27-014", "--dry-run")
    assert code == 0 and "stub" in out
    after = {
        p: p.read_bytes()
        for folder in (layout.build, layout.doctrine, layout.outbox_dir)
        for p in folder.rglob("*")
        if p.is_file() and "2025-11-03-001" not in str(p)
    }
    assert after == snapshot
    mint_lines = [
        MintRecord.model_validate_json(x) for x in layout.mint_ledger.read_bytes().splitlines()
    ]
    ritual_lines = [
        RitualRecord.model_validate_json(x) for x in layout.ritual_ledger.read_bytes().splitlines()
    ]
    assert sum(1 for r in mint_lines if r.order_id == "2025-11-03-001" and r.dry_run) == 96
    assert sum(1 for r in mint_lines if r.order_id == "2025-10-27-014" and r.dry_run) == 96
    assert {r.ritual for r in ritual_lines if r.order_id == "2025-11-03-001" and r.dry_run} == {
        "drill",
        "parade",
        "purge",
        "promote",
    }
    assert any(
        r.order_id == "2025-10-27-014" and r.dry_run and r.outcome == "stub" for r in ritual_lines
    )


def test_pilot_orders_are_always_dry_runs(tmp_path: Path) -> None:
    layout = make_project(tmp_path)
    build(layout, "2025-10-12-005")
    artefact = load(layout, "2025-10-12-005")
    assert artefact.status == "dry-run" and artefact.dry_run and len(artefact.alfas) == 12
    records = [
        RitualRecord.model_validate_json(x) for x in layout.ritual_ledger.read_bytes().splitlines()
    ]
    assert {(r.ritual, r.outcome, r.dry_run) for r in records} == {
        (r, "stub", True) for r in ("drill", "parade", "purge", "promote")
    }


# --------------------------------------------------------------------------- checkpoints


def test_expansion_is_blocked_until_its_checkpoint_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    layout.checkpoint_file("expansion").unlink()
    build(layout, "2025-10-12-005")
    code, out, _ = cli(capsys, layout, "mint", "2025-10-20-011")
    assert code == 0
    assert "blocked" in out and "exchange/checkpoints/expansion.json" in out
    artefact = load(layout, "2025-10-20-011")
    assert artefact.status == "blocked" and artefact.alfas == []
    code, out, _ = cli(capsys, layout, "ritual", "all", "2025-10-20-011")
    assert code == 0
    assert (
        layout.chain_file("2025-10-20-011").read_bytes()
        == layout.chain_file("2025-10-12-005").read_bytes()
    )
    records = [
        RitualRecord.model_validate_json(x) for x in layout.ritual_ledger.read_bytes().splitlines()
    ]
    assert {r.outcome for r in records if r.order_id == "2025-10-20-011"} == {"blocked"}

    code, out, _ = cli(
        capsys, layout, "checkpoint", "approve", "expansion", "--by", "High Command", "--note", "ok"
    )
    assert code == 0 and "approved" in out
    saved = json.loads(layout.checkpoint_file("expansion").read_text())
    assert saved["approved_by"] == "High Command" and saved["phase"] == "expansion"
    code, out, _ = cli(capsys, layout, "mint", "2025-10-20-011")
    assert code == 0
    assert load(layout, "2025-10-20-011").status in ("built", "awaiting-review")
    assert len(load(layout, "2025-10-20-011").alfas) >= 48


def test_checkpoint_approve_keeps_an_existing_approval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    before = layout.checkpoint_file("operational").read_bytes()
    code, out, _ = cli(capsys, layout, "checkpoint", "approve", "operational", "--by", "someone")
    assert code == 0 and "already approved" in out
    assert layout.checkpoint_file("operational").read_bytes() == before


# --------------------------------------------------------------------------- too few permutations


def tiny_recipe(layout: Layout) -> None:
    write_json(
        layout.recipe_file("tiny"),
        {
            "schema_version": 1,
            "recipe_id": "tiny",
            "version": "1.0",
            "parameters": {
                "size": {"kind": "int", "min": 1, "max": 3},
                "tone": {"kind": "enum", "values": ["dark", "light"]},
            },
            "baselines": [{"size": 1, "tone": "dark"}],
            "scoring": {"base": 10.0},
            "pass_score": 5.0,
            "promote_score": 8.0,
        },
    )


def test_order_is_rejected_when_the_recipe_runs_out_of_unseen_permutations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path, orders=False)
    tiny_recipe(layout)
    order(layout, "2025-11-03-001", recipe="tiny", batch_size=12)
    code, _, err = cli(capsys, layout, "mint", "2025-11-03-001")
    assert code == 1
    assert err.strip() == (
        "exchange/orders/2025-11-03-001.json: batch_size:"
        " recipe tiny has 5 unseen permutations, order needs 10"
    )
    assert load(layout, "2025-11-03-001").status == "rejected"
    # The chain remembers: 4 of the 5 go to the first order, so the second is short.
    order(layout, "2025-11-03-002", recipe="tiny", batch_size=4)
    order(layout, "2025-11-03-003", recipe="tiny", batch_size=4)
    run_rituals(layout, "2025-11-03-001")
    build(layout, "2025-11-03-002")
    assert load(layout, "2025-11-03-002").achieved.novel == 4
    code, _, err = cli(capsys, layout, "mint", "2025-11-03-003")
    assert code == 1 and "recipe tiny has 1 unseen permutations, order needs 4" in err


# --------------------------------------------------------------------------- experimental recipes


def test_experimental_recipe_only_within_the_sprint_quota(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    order(layout, "2025-10-29-003", recipe="marble-mech", batch_size=48)
    order(layout, "2025-10-30-004", recipe="marble-mech", batch_size=12)
    first = mint_order(layout, "2025-10-29-003")
    assert first.status in ("built", "awaiting-review")
    run_rituals(layout, "2025-10-29-003")
    code, out, _ = cli(capsys, layout, "mint", "2025-10-30-004")
    assert code == 0
    assert "blocked" in out
    second = load(layout, "2025-10-30-004")
    assert second.status == "blocked"
    assert "sprint 2025-W44 has 252 Alfas" in second.reason and "allows 50" in second.reason
    assert "took 48, this order needs 12" in second.reason
    (layout.root / "pyproject.toml").write_text("[tool.toyfoundry]\nexperimental_quota = 0.5\n")
    assert mint_order(layout, "2025-10-30-004").status in ("built", "awaiting-review")
    order(layout, "2025-10-31-005", recipe="marble-mech", phase="expansion", batch_size=12)
    code, _, err = cli(capsys, layout, "mint", "2025-10-31-005")
    assert code == 1 and "experimental: only operational orders may use it" in err


# --------------------------------------------------------------------------- bad input


def _ledger_bytes(layout: Layout) -> bytes:
    return layout.mint_ledger.read_bytes() if layout.mint_ledger.exists() else b""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown", "exchange/orders/2025-12-01-001.json: -: no such order"),
        ("unsafe", "../../etc/passwd: order_id: not an order id"),
        (
            "invalid",
            "exchange/orders/2025-11-03-001.json: batch_size: 48 is over the pilot cap of 12",
        ),
        (
            "wrong-type",
            "exchange/orders/2025-11-03-001.json: seed: Input should be a valid integer",
        ),
        ("missing-recipe", "exchange/orders/2025-11-03-001.json: recipe: recipe 'nope' not found"),
        (
            "bad-baseline",
            "exchange/recipes/sprocket-scout.json: baselines.0.gear_teeth: 99 is not an integer",
        ),
        (
            "forbidden-baseline",
            "exchange/recipes/sprocket-scout.json: baselines.0: matches forbidden combination 2",
        ),
        ("bad-checkpoint", "exchange/checkpoints/operational.json: -: is not valid JSON"),
        (
            "bad-review",
            "exchange/reviews/2025-11-03-001.json: decisions.0.decision: Input should be",
        ),
    ],
)
def test_bad_input_is_one_line_exit_1_and_keeps_earlier_telemetry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    layout = make_project(tmp_path, orders=False)
    order(layout, "2025-11-02-001", batch_size=12)
    mint_order(layout, "2025-11-02-001")
    order(layout, "2025-11-03-001", recipe="bolt-bunny", batch_size=12)
    earlier = _ledger_bytes(layout)
    order_id = "2025-11-03-001"
    recipe_path = layout.recipe_file("sprocket-scout")
    review = {"schema_version": 1, "order_id": order_id, "decisions": []}
    decision = {
        "alfa_id": f"{order_id}.a001",
        "decision": "waive",
        "by": "t",
        "at": "2025-11-03T10:00:00Z",
    }
    if case == "unknown":
        order_id = "2025-12-01-001"
    elif case == "unsafe":
        order_id = "../../etc/passwd"
    elif case == "invalid":
        order(layout, order_id, phase="pilot", dry_run=True, batch_size=48)
    elif case == "wrong-type":
        order(layout, order_id, seed="12")
    elif case == "missing-recipe":
        order(layout, order_id, recipe="nope")
    elif case in ("bad-baseline", "forbidden-baseline"):
        recipe = json.loads(recipe_path.read_text())
        if case == "bad-baseline":
            recipe["baselines"][0]["gear_teeth"] = 99
        else:
            recipe["forbidden"].append({"chassis": "tin", "legs": 4})
        write_json(recipe_path, recipe)
        order(layout, order_id, batch_size=12)
    elif case == "bad-checkpoint":
        layout.checkpoint_file("operational").write_text("{ not json")
    elif case == "bad-review":
        write_json(
            layout.review_file(order_id),
            {**review, "decisions": [{**decision, "decision": "keep"}]},
        )
    code, _out, err = cli(capsys, layout, "mint", order_id)
    assert code == 1
    lines = err.strip().splitlines()
    assert any(line.startswith(expected) for line in lines), err
    assert all(line.count(": ") >= 2 for line in lines)
    assert _ledger_bytes(layout).startswith(earlier)
    assert not [p for p in layout.root.rglob("*.tmp")]
    if case not in ("unknown", "unsafe"):
        artefact = load(layout, order_id)
        assert artefact.status == "rejected" and artefact.alfas == [] and artefact.problems
        records = [
            MintRecord.model_validate_json(x)
            for x in _ledger_bytes(layout)[len(earlier) :].splitlines()
        ]
        assert [r.outcome for r in records] == ["rejected"]
    else:
        assert _ledger_bytes(layout) == earlier
