"""The review queue: decisions keyed by what was reviewed, bulk decisions, undo, safe rerolls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import workload
from tests.support import build, cli, load, make_project
from toyfoundry.forge.mint import mint_order
from toyfoundry.forge.rituals import run_rituals
from toyfoundry.forge.validators import matches
from toyfoundry.formats.review_key import is_replacement
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry.backlog import backlog

PILOT, EXPANSION, OPERATIONAL = "2025-10-12-005", "2025-10-20-011", "2025-10-27-014"
HELD = f"{EXPANSION}.a036"  # legs=5, paint=white: forbidden by sprocket-scout


@pytest.fixture
def minted(tmp_path: Path) -> Layout:
    layout = make_project(tmp_path)
    build(layout, PILOT)
    mint_order(layout, EXPANSION)
    return layout


def _review(layout: Layout, order_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(layout.review_file(order_id).read_text())
    return data


def _outcome(layout: Layout, alfa_id: str) -> str:
    order_id = alfa_id.split(".a")[0]
    return next(a.outcome for a in load(layout, order_id).alfas if a.alfa_id == alfa_id)


def test_a_decision_follows_what_was_reviewed_not_the_slot(
    minted: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, minted, "review", "decide", EXPANSION, HELD, "waive", "--by", "QA")
    assert code == 0, err
    review = _review(minted, EXPANSION)
    key = review["decisions"][0]["key"]
    assert key["recipe"] == "sprocket-scout" and key["finding"][0].startswith("forbidden:")
    # the slot had another number when it was reviewed: the key still finds the Alfa
    review["decisions"][0]["alfa_id"] = f"{EXPANSION}.a000"
    minted.review_file(EXPANSION).write_text(json.dumps(review))
    assert mint_order(minted, EXPANSION).status == "built"
    assert _outcome(minted, HELD) == "waived"
    # what was reviewed changed (other parameters): the decision lapses, nothing is rejected
    review["decisions"][0]["key"]["params"]["legs"] = 6
    minted.review_file(EXPANSION).write_text(json.dumps(review))
    artefact = mint_order(minted, EXPANSION)
    assert artefact.status == "awaiting-review" and _outcome(minted, HELD) == "quarantined"


def test_review_list_shows_an_applied_decision_that_was_undone(
    minted: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `undo` of a decision a build applied, the list says the Alfa comes back."""
    assert cli(capsys, minted, "review", "decide", EXPANSION, HELD, "waive", "--by", "QA")[0] == 0
    mint_order(minted, EXPANSION)  # the build applies it
    code, out, _ = cli(capsys, minted, "review", "list", EXPANSION)
    assert code == 0 and "undone" not in out
    assert cli(capsys, minted, "review", "undo")[0] == 0
    code, out, _ = cli(capsys, minted, "review", "list", EXPANSION)
    assert code == 0
    assert out.splitlines()[0] == (
        "1 decided Alfa(s) in 1 order(s) no longer have a decision (undone):"
        " they await review again after `toyfoundry build`"
    )
    assert f"{HELD}: was waived: forbidden:" in out
    mint_order(minted, EXPANSION)
    code, out, _ = cli(capsys, minted, "review", "list", EXPANSION, "--brief")
    assert "undone" not in out and out.startswith("1 quarantined Alfa(s) await review")


def test_a_checkpoint_withdrawn_and_restored_keeps_the_decision(
    minted: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = cli(capsys, minted, "review", "decide", EXPANSION, HELD, "reroll", "--by", "QA")
    assert code == 0
    assert mint_order(minted, EXPANSION).status == "built"
    checkpoint = minted.checkpoint_file("expansion")
    saved = checkpoint.read_bytes()
    checkpoint.unlink()
    assert mint_order(minted, EXPANSION).status == "blocked"
    checkpoint.write_bytes(saved)
    assert mint_order(minted, EXPANSION).status == "built"
    assert _outcome(minted, HELD) == "rerolled" and _outcome(minted, f"{HELD}r1") == "passed"


def test_a_review_file_naming_slots_is_still_read_and_gets_keys_when_added_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    build(layout, PILOT, EXPANSION)
    held = [a.alfa_id for a in mint_order(layout, OPERATIONAL).alfas if a.outcome == "quarantined"]
    assert len(held) >= 2
    old = {
        "schema_version": 1,
        "order_id": OPERATIONAL,
        "decisions": [
            {"alfa_id": held[0], "decision": "waive", "by": "QA", "at": "2025-10-28T09:00:00Z"},
            # a slot that is not quarantined (any more): left alone, the order is not rejected
            {
                "alfa_id": f"{OPERATIONAL}.a000",
                "decision": "reject",
                "by": "QA",
                "at": "2025-10-28T09:00:01Z",
            },
        ],
    }
    layout.review_file(OPERATIONAL).write_text(json.dumps(old))
    artefact = mint_order(layout, OPERATIONAL)
    assert artefact.status in ("built", "awaiting-review")
    assert _outcome(layout, held[0]) == "waived"
    assert _outcome(layout, f"{OPERATIONAL}.a000") == "passed"
    code, _, err = cli(
        capsys, layout, "review", "decide", OPERATIONAL, held[1], "reject", "--by", "QA"
    )
    assert code == 0, err
    decisions = _review(layout, OPERATIONAL)["decisions"]
    assert [d["alfa_id"] for d in decisions] == [held[0], f"{OPERATIONAL}.a000", held[1]]
    assert decisions[0]["key"]["params"] and decisions[1].get("key") is None
    mint_order(layout, OPERATIONAL)
    assert _outcome(layout, held[0]) == "waived" and _outcome(layout, held[1]) == "rejected"


def test_bulk_decisions_and_undo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = make_project(tmp_path)
    build(layout, PILOT, EXPANSION)
    held = [a.alfa_id for a in mint_order(layout, OPERATIONAL).alfas if a.outcome == "quarantined"]
    code, _, err = cli(capsys, layout, "review", "decide", "waive", "--by", "QA")
    assert code == 2 and "--all" in err  # no selection is a usage error, never "everything"
    code, out, _ = cli(capsys, layout, "review", "list", "--brief")
    assert code == 0 and out.startswith(f"{len(held) + 1} quarantined Alfa(s) await review")
    assert "by finding:" in out and f"  {EXPANSION} sprocket-scout: 1 waiting" in out
    assert out.index(EXPANSION) < out.index(OPERATIONAL)  # the oldest first

    code, out, err = cli(
        capsys, layout, "review", "decide", OPERATIONAL, "reroll", "--by", "QA", "--note", "n"
    )
    assert code == 0, err
    assert f"reroll recorded on {len(held)} Alfa(s) in 1 order(s)" in out
    assert "toyfoundry build" in out
    code, _, err = cli(capsys, layout, "review", "decide", OPERATIONAL, "waive", "--by", "QA")
    assert code == 1 and "nothing pending matches" in err
    code, out, _ = cli(capsys, layout, "review", "undo")
    assert code == 0 and f"{len(held)} decision(s) removed in 1 order(s)" in out
    assert _review(layout, OPERATIONAL)["decisions"] == []

    code, out, _ = cli(
        capsys, layout, "review", "decide", "reject", "--rule", "forbidden", "--by", "QA"
    )
    assert code == 0 and "in 2 order(s)" in out
    code, out, _ = cli(capsys, layout, "review", "undo", EXPANSION)
    assert code == 0 and "1 decision(s) removed in 1 order(s)" in out
    code, out, _ = cli(
        capsys, layout, "review", "decide", "waive", "--recipe", "sprocket-scout", "--by", "QA"
    )
    assert code == 0 and "waive recorded on 1 Alfa(s) in 1 order(s)" in out
    code, _, _ = cli(capsys, layout, "review", "decide", "waive", "--all", "--by", "QA")
    assert code == 1  # nothing left pending
    mint_order(layout, EXPANSION)
    mint_order(layout, OPERATIONAL)
    assert _outcome(layout, HELD) == "waived"
    code, out, _ = cli(capsys, layout, "review", "list")
    assert out.strip() == "nothing awaits review" or "0 quarantined" in out


def test_a_reroll_never_draws_a_forbidden_combination(tmp_path: Path) -> None:
    forbidden: list[dict[str, Any]] = [
        {"colour": "white"},
        {"finish": "raw"},
        {"colour": "ochre", "legs": 8},
    ]
    root = tmp_path / "factory"
    ids = workload.write(root, 14, forbidden=forbidden)
    layout = Layout(root)
    for order_id in ids[:-1]:
        mint_order(layout, order_id)
        run_rituals(layout, order_id)
    last = ids[-1]
    artefact = mint_order(layout, last)
    held = [a for a in artefact.alfas if a.outcome == "quarantined"]
    assert len(held) > 20 and {a.share for a in held} >= {"novel", "carryover"}
    review = {
        "schema_version": 1,
        "order_id": last,
        "decisions": [
            {"alfa_id": a.alfa_id, "decision": "reroll", "by": "QA", "at": "2025-11-04T09:00:00Z"}
            for a in held
        ],
    }
    layout.review_file(last).write_text(json.dumps(review))
    after = mint_order(layout, last)
    replacements = [a for a in after.alfas if is_replacement(a.alfa_id)]
    assert len(replacements) == len(held)
    for alfa in replacements:
        assert not any(matches(alfa.params, rule) for rule in forbidden), alfa
    assert after.status == "built"


def test_the_backlog_in_nightly_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = make_project(tmp_path)
    build(layout, PILOT, EXPANSION, OPERATIONAL)
    queue = backlog(layout)
    held = [a for a in load(layout, OPERATIONAL).alfas if a.outcome == "quarantined"]
    assert queue.pending == len(held) + 1 and queue.orders == 2 and queue.decided == 0
    assert queue.oldest_day == EXPANSION[:10] and sum(queue.by_finding.values()) == queue.pending
    assert queue.age_days("2025-10-30") == 10
    code, out, _ = cli(capsys, layout, "nightly")
    assert code == 0
    assert (
        f"review backlog: {queue.pending} quarantined Alfa(s) await review in 2 order(s),"
        f" oldest from {EXPANSION[:10]}"
    ) in out
    summary = layout.summary_md.read_text()
    assert f"{queue.pending} quarantined Alfas in 2 orders, the oldest from 2025-10-20" in summary
    code, _, _ = cli(capsys, layout, "review", "decide", "waive", "--all", "--by", "QA")
    assert code == 0
    after = backlog(layout)
    assert after.pending == 0 and after.decided == queue.pending
    assert after.lines()[0].startswith("review backlog: 0 quarantined Alfa(s)")
