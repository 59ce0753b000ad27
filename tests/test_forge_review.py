"""Quarantine and review: a failing Alfa stays out until a decision, and each decision does what it says."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support import cli, load, make_project
from toyfoundry.forge import mint as mint_module
from toyfoundry.forge.mint import mint_order
from toyfoundry.forge.rituals import run_rituals
from toyfoundry.forge.validators import Plugin
from toyfoundry.formats.models import Alfa, MintArtefact, MintRecord, ParamValue, Recipe
from toyfoundry.store.layout import Layout

SAMPLE = Path(__file__).resolve().parents[1] / "exchange"
PILOT, EXPANSION, OPERATIONAL = "2025-10-12-005", "2025-10-20-011", "2025-10-27-014"
HELD = f"{EXPANSION}.a036"  # legs=5, paint=white: forbidden by sprocket-scout


def by_id(artefact: MintArtefact) -> dict[str, Alfa]:
    return {a.alfa_id: a for a in artefact.alfas}


@pytest.fixture
def minted(tmp_path: Path) -> Layout:
    layout = make_project(tmp_path)
    mint_order(layout, PILOT)
    run_rituals(layout, PILOT)
    mint_order(layout, EXPANSION)
    return layout


def test_a_quarantined_alfa_stays_out_until_a_review_decides(
    minted: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    first = load(minted, EXPANSION)
    held = by_id(first)[HELD]
    assert held.outcome == "quarantined" and held.reasons[0].startswith("forbidden:")
    assert first.status == "awaiting-review"
    rituals = run_rituals(minted, EXPANSION).artefact
    assert HELD not in rituals.roster and HELD not in {r.alfa_id for r in rituals.results}
    mint_order(minted, EXPANSION)
    assert load(minted, EXPANSION) == first  # not retried without a decision
    code, out, _ = cli(capsys, minted, "review", "list")
    assert code == 0 and f"{HELD}: awaits review: forbidden:" in out


def _decide(capsys: pytest.CaptureFixture[str], layout: Layout, alfa_id: str, kind: str) -> None:
    code, out, err = cli(
        capsys, layout, "review", "decide", EXPANSION, alfa_id, kind, "--by", "QA", "--note", "t"
    )
    assert code == 0, err
    assert "recorded" in out


def test_waive_accepts_the_alfa_as_minted(
    minted: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    before = load(minted, EXPANSION)
    _decide(capsys, minted, HELD, "waive")
    _code, out, _ = cli(capsys, minted, "review", "list")
    assert "decided waive, applied at the next build" in out
    after = mint_order(minted, EXPANSION)
    assert after.status == "built"
    changed = {k for k, v in by_id(after).items() if by_id(before)[k] != v}
    assert changed == {HELD}
    assert (
        by_id(after)[HELD].outcome == "waived"
        and by_id(after)[HELD].params == by_id(before)[HELD].params
    )
    assert HELD in run_rituals(minted, EXPANSION).artefact.roster
    review = json.loads(minted.review_file(EXPANSION).read_text())
    assert review["decisions"][0]["by"] == "QA" and review["decisions"][0]["decision"] == "waive"


def test_reroll_draws_a_replacement_for_the_slot(
    minted: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    before = load(minted, EXPANSION)
    _decide(capsys, minted, HELD, "reroll")
    after = mint_order(minted, EXPANSION)
    alfas = by_id(after)
    assert alfas[HELD].outcome == "rerolled"
    replacement = alfas[f"{HELD}r1"]
    assert (
        replacement.slot == 36 and replacement.share == "novel" and replacement.outcome == "passed"
    )
    assert replacement.params != alfas[HELD].params
    assert {
        json.dumps(a.params, sort_keys=True) for a in before.alfas if a.share == "novel"
    }.isdisjoint({json.dumps(replacement.params, sort_keys=True)})
    assert [a for a in after.alfas if a.alfa_id != f"{HELD}r1" and a.alfa_id != HELD] == [
        a for a in before.alfas if a.alfa_id != HELD
    ]
    assert after.achieved == before.achieved
    assert mint_order(minted, EXPANSION) == after  # the same decisions give the same batch
    rituals = run_rituals(minted, EXPANSION).artefact
    assert f"{HELD}r1" in rituals.roster and HELD not in rituals.roster
    records = [
        MintRecord.model_validate_json(x) for x in minted.mint_ledger.read_bytes().splitlines()
    ]
    last_attempt = {r.alfa_id: r.outcome for r in records[-49:]}  # 48 slots + 1 replacement
    assert len(last_attempt) == 49
    assert last_attempt[HELD] == "rerolled" and last_attempt[f"{HELD}r1"] == "minted"


def test_reject_leaves_the_slot_empty(minted: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    _decide(capsys, minted, HELD, "reject")
    after = mint_order(minted, EXPANSION)
    assert by_id(after)[HELD].outcome == "rejected"
    assert after.achieved.novel == after.target.novel - 1
    assert after.status == "built" and "1 slot(s) left empty by review" in after.reason
    assert HELD not in run_rituals(minted, EXPANSION).artefact.roster


def test_a_later_decision_changes_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    for order_id in (PILOT, EXPANSION):
        mint_order(layout, order_id)
        run_rituals(layout, order_id)
    held = [a.alfa_id for a in mint_order(layout, OPERATIONAL).alfas if a.outcome == "quarantined"]
    assert len(held) >= 2
    code, _, _ = cli(
        capsys, layout, "review", "decide", OPERATIONAL, held[-1], "reroll", "--by", "QA"
    )
    assert code == 0
    first = by_id(mint_order(layout, OPERATIONAL))
    code, _, _ = cli(
        capsys, layout, "review", "decide", OPERATIONAL, held[0], "reroll", "--by", "QA"
    )
    assert code == 0
    second = by_id(mint_order(layout, OPERATIONAL))
    assert second[f"{held[-1]}r1"] == first[f"{held[-1]}r1"]
    assert set(second) - set(first) == {f"{held[0]}r1"}
    assert {k for k in first if first[k] != second[k]} == {held[0]}


def test_review_decide_refuses_what_is_not_quarantined(
    minted: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(
        capsys, minted, "review", "decide", EXPANSION, f"{EXPANSION}.a000", "waive", "--by", "QA"
    )
    assert code == 1 and "is passed, not quarantined" in err
    _decide(capsys, minted, HELD, "waive")
    code, _, err = cli(capsys, minted, "review", "decide", EXPANSION, HELD, "reject", "--by", "QA")
    assert code == 1 and "already decided" in err
    code, _, err = cli(
        capsys,
        minted,
        "review",
        "decide",
        OPERATIONAL,
        f"{OPERATIONAL}.a000",
        "waive",
        "--by",
        "QA",
    )
    assert code == 1 and "not minted yet" in err


def test_carryover_reroll_mutates_the_same_parent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    for order_id in (PILOT, EXPANSION, OPERATIONAL):
        mint_order(layout, order_id)
        run_rituals(layout, order_id)
    later = "2025-11-03-001"
    data: dict[str, Any] = json.loads((SAMPLE / "orders" / f"{OPERATIONAL}.json").read_text())
    data.update(order_id=later, batch_size=12, seed=7)
    layout.order_file(later).write_text(json.dumps(data))

    def no_carryover_slot_9(params: Mapping[str, ParamValue], recipe: Recipe) -> Iterable[str]:
        return ["slot 9 is held"] if params == held_params else []

    held_params: dict[str, ParamValue] = {}
    plain = mint_order(layout, later)
    held_params.update(by_id(plain)[f"{later}.a009"].params)
    assert by_id(plain)[f"{later}.a009"].share == "carryover"
    plugin = Plugin("hold-nine", "tests", "0", no_carryover_slot_9)
    monkeypatch.setattr(mint_module, "load_plugins", lambda: [plugin])
    held = by_id(mint_order(layout, later))[f"{later}.a009"]
    assert held.outcome == "quarantined" and held.reasons == ["hold-nine: slot 9 is held"]
    code, _, _ = cli(
        capsys, layout, "review", "decide", later, held.alfa_id, "reroll", "--by", "QA"
    )
    assert code == 0
    replacement = by_id(mint_order(layout, later))[f"{later}.a009r1"]
    assert replacement.share == "carryover" and replacement.parent_id == held.parent_id
    assert replacement.outcome == "passed" and replacement.params != held.params
