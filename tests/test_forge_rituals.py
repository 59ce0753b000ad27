"""Rituals, the chain they hand on, the forge adapter's outbox and the doctrine archive."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import build, cli, make_project
from toyfoundry.forge.adapter import OutboxManifest
from toyfoundry.forge.doctrine import (
    DoctrineEntry,
    IndexLine,
    object_path,
    pack_folder,
    read_index,
    split_pack,
    stored_objects,
)
from toyfoundry.forge.mint import mint_order
from toyfoundry.forge.rituals import drill_score, run_rituals
from toyfoundry.formats.models import (
    RITUALS,
    Chain,
    MintArtefact,
    MintRecord,
    Recipe,
    RitualRecord,
    RitualsArtefact,
)
from toyfoundry.store.atomic import dumps_canonical, write_many_atomic
from toyfoundry.store.layout import Layout

SAMPLE = Path(__file__).resolve().parents[1] / "exchange"
ORDERS = ["2025-10-12-005", "2025-10-20-011", "2025-10-27-014", "2025-10-28-002"]
PILOT, EXPANSION, OPERATIONAL, BUNNY = ORDERS


def rituals_of(layout: Layout, order_id: str) -> RitualsArtefact:
    return RitualsArtefact.model_validate_json(layout.rituals_artefact(order_id).read_bytes())


@pytest.fixture
def built(tmp_path: Path) -> Layout:
    layout = make_project(tmp_path)
    build(layout, *ORDERS)
    return layout


def test_phase_defaults(built: Layout) -> None:
    ran = {o: {r for r, v in rituals_of(built, o).rituals.items() if v.ran} for o in ORDERS}
    assert ran[PILOT] == set()
    assert all(v.stub for v in rituals_of(built, PILOT).rituals.values())
    assert ran[EXPANSION] == {"drill", "parade"}
    assert ran[OPERATIONAL] == {"drill", "parade", "purge", "promote"}
    # Expansion drills and parades but promotes nothing: its chain's pool passes through.
    assert Chain.model_validate_json(built.chain_file(EXPANSION).read_bytes()).pool == []
    assert rituals_of(built, EXPANSION).promoted == []


def test_drill_parade_purge_promote_do_what_they_say(built: Layout) -> None:
    mint = MintArtefact.model_validate_json(built.mint_artefact(OPERATIONAL).read_bytes())
    recipe = Recipe.model_validate_json((SAMPLE / "recipes" / "sprocket-scout.json").read_bytes())
    art = rituals_of(built, OPERATIONAL)
    results = {r.alfa_id: r for r in art.results}
    eligible = [a for a in mint.alfas if a.outcome in ("passed", "waived")]
    assert list(results) == [a.alfa_id for a in eligible]
    for alfa in eligible:
        r = results[alfa.alfa_id]
        score, defects = drill_score(recipe, mint.seed or 0, alfa)
        assert (r.score, r.defects) == (score, defects)
        assert r.passed == (score >= recipe.pass_score and not defects)
        assert r.purged == (not r.passed)
        if r.purged:
            assert r.purge_reason and (
                "defect:" in r.purge_reason or "below pass_score" in r.purge_reason
            )
    ranks = sorted(results.values(), key=lambda r: r.rank or 0)
    assert [r.rank for r in ranks] == list(range(1, len(ranks) + 1))
    assert all((a.score or 0) >= (b.score or 0) for a, b in itertools.pairwise(ranks))
    assert art.roster == [a for a in results if not results[a].purged]
    promoted = [r for r in results.values() if r.promoted]
    assert 0 < len(promoted) <= recipe.promotion.max_per_order
    assert all(
        r.passed and (r.score or 0) >= recipe.promote_score and not r.purged for r in promoted
    )
    chain = Chain.model_validate_json(built.chain_file(OPERATIONAL).read_bytes())
    assert {e.alfa_id for e in chain.pool} == {r.alfa_id for r in promoted}
    assert [e.score for e in chain.pool] == sorted((e.score for e in chain.pool), reverse=True)
    outbox = json.loads(built.outbox_file(OPERATIONAL).read_text())
    assert [a["alfa_id"] for a in outbox["alfas"]] == art.promoted
    written = built.outbox_file(OPERATIONAL).read_bytes()
    # the manifest is written from plain data: the model of it dumps to the same bytes
    assert dumps_canonical(OutboxManifest.model_validate_json(written)) == written
    first = outbox["alfas"][0]["params"]["chassis"]
    assert first["definition"] == {"kind": "enum", "values": ["tin", "oak", "resin", "brass"]}
    assert first["value"] in first["definition"]["values"]
    assert outbox["recipe"]["version"] == "1.2.0"
    # an order that promoted nothing still gets its manifest: an empty one, with no recipe
    empty = OutboxManifest.model_validate_json(built.outbox_file(EXPANSION).read_bytes())
    assert empty.alfas == [] and empty.recipe is None


@pytest.mark.parametrize("ran", [{"drill"}, {"drill", "parade"}, set(RITUALS)])
def test_compute_hands_on_plain_data_equal_to_its_model(built: Layout, ran: set[str]) -> None:
    """rituals.json and the doctrine objects are written from `compute`'s plain data, not
    from its models: the two must dump alike for every set of rituals."""
    from toyfoundry.forge import doctrine
    from toyfoundry.forge.rituals import compute

    mint = MintArtefact.model_validate_json(built.mint_artefact(OPERATIONAL).read_bytes())
    recipe = Recipe.model_validate_json((SAMPLE / "recipes" / "sprocket-scout.json").read_bytes())
    computed = compute(mint, recipe, [], ran)
    assert dumps_canonical(computed.document) == dumps_canonical(computed.artefact)
    # the report takes the document for a parse of rituals.json (`parsed.remember_plain`)
    assert orjson.loads(dumps_canonical(computed.document)) == computed.document
    entries = [doctrine.DoctrineEntry.model_validate(e) for e in computed.promoted]
    assert [e.model_dump(mode="json") for e in entries] == computed.promoted
    assert computed.encoded == [doctrine.encode(e) for e in entries]
    results = {r.alfa_id: r for r in computed.artefact.results}
    assert all(results[e.alfa_id].doctrine == doctrine.digest_of(e) for e in entries)
    assert ("promote" in ran) == bool(entries)


def test_one_ritual_at_a_time_matches_a_full_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = make_project(tmp_path / "full")
    build(full, PILOT, EXPANSION, OPERATIONAL)
    step = make_project(tmp_path / "step")
    build(step, PILOT, EXPANSION)
    mint_order(step, OPERATIONAL)
    code, _, err = cli(capsys, step, "ritual", "parade", OPERATIONAL)
    assert code == 1 and "parade needs drill first" in err
    for ritual in ("drill", "parade", "purge"):
        code, out, err = cli(capsys, step, "ritual", ritual, OPERATIONAL)
        assert code == 0, err
        assert f"{OPERATIONAL}: {ritual}: ran" in out
    assert rituals_of(step, OPERATIONAL).promoted == []
    code, _, _ = cli(capsys, step, "ritual", "promote", OPERATIONAL)
    assert code == 0
    for name in ("rituals.json", "chain.json"):
        assert (step.order_build(OPERATIONAL) / name).read_bytes() == (
            full.order_build(OPERATIONAL) / name
        ).read_bytes()
    assert step.outbox_file(OPERATIONAL).read_bytes() == full.outbox_file(OPERATIONAL).read_bytes()
    # Re-running a single ritual keeps the others' results.
    code, _, _ = cli(capsys, step, "ritual", "drill", OPERATIONAL)
    assert rituals_of(step, OPERATIONAL) == rituals_of(full, OPERATIONAL)


def test_rituals_refuse_a_stale_mint(built: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = built.recipe_file("sprocket-scout")
    data = json.loads(recipe.read_text())
    data["pass_score"] = 40.0
    recipe.write_text(json.dumps(data))
    before = built.rituals_artefact(OPERATIONAL).read_bytes()
    code, _, err = cli(capsys, built, "ritual", "all", OPERATIONAL)
    assert code == 1 and "exchange/recipes/sprocket-scout.json" in err and "toyfoundry build" in err
    assert built.rituals_artefact(OPERATIONAL).read_bytes() == before


def test_rejected_and_unparseable_orders_pass_the_chain_on(built: Layout) -> None:
    later, broken = "2025-11-03-001", "2025-11-03-002"
    data = json.loads((SAMPLE / "orders" / f"{OPERATIONAL}.json").read_text())
    data.update(order_id=later, batch_size=48, phase="pilot", dry_run=True)
    built.order_file(later).write_text(json.dumps(data))
    built.order_file(broken).write_text("{ nope")
    assert mint_order(built, later).status == "rejected"
    run_rituals(built, later)
    assert built.chain_file(later).read_bytes() == built.chain_file(OPERATIONAL).read_bytes()
    assert mint_order(built, broken).status == "rejected"
    run_rituals(built, broken)
    assert not built.chain_file(broken).exists()
    records = [
        RitualRecord.model_validate_json(x) for x in built.ritual_ledger.read_bytes().splitlines()
    ]
    assert {r.outcome for r in records if r.order_id in (later, broken)} == {"skipped"}


def test_every_ledger_line_parses_against_its_schema(built: Layout) -> None:
    mint_lines = built.mint_ledger.read_bytes().splitlines()
    ritual_lines = built.ritual_ledger.read_bytes().splitlines()
    assert len(mint_lines) == 12 + 48 + 96 + 96
    assert len(ritual_lines) == 4 + 2 + 4 + 4
    for line in mint_lines:
        MintRecord.model_validate_json(line)
    for line in ritual_lines:
        record = RitualRecord.model_validate_json(line)
        assert record.batch.recipe and record.batch.phase and record.batch.size
    for line in built.doctrine_index.read_bytes().splitlines():
        IndexLine.model_validate_json(line)


# --------------------------------------------------------------------------- doctrine


def test_doctrine_is_content_addressed_and_archiving_twice_is_a_no_op(built: Layout) -> None:
    entries, problems = read_index(built)
    assert not problems and entries
    promoted = rituals_of(built, OPERATIONAL).promoted + rituals_of(built, BUNNY).promoted
    assert sorted(e.alfa_id for e in entries) == sorted(promoted)
    stored = stored_objects(built)
    assert sorted(stored) == sorted(e.sha256 for e in entries)
    for entry in entries:
        DoctrineEntry.model_validate_json(stored[entry.sha256])
    # one read-only pack an order, named by its bytes, its objects in digest order
    packs = sorted(built.doctrine.rglob("*.pack"))
    assert [p.parent.name for p in packs] == sorted({e.order_id for e in entries})
    for pack in packs:
        data = pack.read_bytes()
        assert pack.stem == hashlib.sha256(data).hexdigest()
        assert not os.access(pack, os.W_OK) or os.geteuid() == 0
        digests = [hashlib.sha256(o).hexdigest() for o in split_pack(data)]
        assert digests == sorted(digests) and b"".join(stored[d] for d in digests) == data
    assert not (built.doctrine / "objects").exists()
    index = built.doctrine_index.read_bytes()
    run_rituals(built, OPERATIONAL)
    run_rituals(built, OPERATIONAL, only="promote")
    assert built.doctrine_index.read_bytes() == index
    assert sorted(built.doctrine.rglob("*.pack")) == packs


def test_archive_indexes_each_object_once_and_repairs_a_lost_line(built: Layout) -> None:
    from toyfoundry.forge import doctrine

    entries, _ = read_index(built)
    stored = stored_objects(built)
    objects = [DoctrineEntry.model_validate_json(stored[e.sha256]) for e in entries[:3]]
    fresh = objects[0].model_copy(update={"score": objects[0].score + 1})
    before = len(entries)
    packs = sorted(built.doctrine.rglob("*.pack"))
    # stored and indexed: nothing new; a new entry twice in one call: one object, one line,
    # in a new pack of its order's
    doctrine.archive(built, [*objects, fresh, fresh])
    after, _ = read_index(built)
    assert len(after) == before + 1 and after[-1].sha256 == doctrine.digest_of(fresh)
    new = sorted(set(built.doctrine.rglob("*.pack")) - set(packs))
    assert new == [pack_folder(built, fresh.order_id) / f"{_sha(doctrine.encode(fresh))}.pack"]
    # an object stored but never indexed (a crash between the two): indexed on the next call
    lost = objects[1].model_copy(update={"score": objects[1].score + 2})
    digest = doctrine.digest_of(lost)
    staged = doctrine.stage(built, [lost.model_dump(mode="json")])
    write_many_atomic(staged.objects, mode=doctrine.OBJECT_MODE)
    doctrine.archive(built, [lost])
    final, problems = read_index(built)
    assert not problems and [e.sha256 for e in final[len(after) :]] == [digest]
    # an older archive's loose object counts as stored, and is verified as it is
    loose = objects[2].model_copy(update={"score": objects[2].score + 3})
    path = object_path(built, doctrine.digest_of(loose))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(doctrine.encode(loose))
    doctrine.archive(built, [loose])
    assert sorted(built.doctrine.rglob("*.pack")) == sorted([*packs, *new, *staged_paths(staged)])
    assert doctrine.verify(built) == (len(final) + 1, [])


def staged_paths(staged: Any) -> list[Path]:
    return [path for path, _ in staged.objects]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_doctrine_verify_catches_tampered_and_missing_entries(
    built: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, built, "doctrine", "verify")
    assert code == 0 and "entries verified" in out
    code, out, _ = cli(capsys, built, "doctrine", "list")
    assert code == 0 and len(out.splitlines()) == len(read_index(built)[0])
    entries = read_index(built)[0]
    orders = sorted({e.order_id for e in entries})
    assert len(orders) == 2
    (tampered,) = pack_folder(built, orders[0]).glob("*.pack")
    tampered.chmod(0o644)
    tampered.write_text(tampered.read_text().replace('"score": ', '"score": 1', 1))
    (gone,) = pack_folder(built, orders[1]).glob("*.pack")
    gone.unlink()
    code, _, err = cli(capsys, built, "doctrine", "verify")
    assert code == 1
    lines = err.strip().splitlines()
    rel = str(tampered.relative_to(built.root))
    assert any(line.startswith(f"{rel}: -: is tampered") for line in lines)
    missing = [e for e in entries if e.order_id == orders[1]]
    for entry in missing:
        assert any("is missing" in line and entry.alfa_id in line for line in lines)
    assert len(lines) == 1 + len(missing)


def test_a_ritual_on_an_order_with_no_file_says_so_rather_than_advise_a_build(
    tmp_path: Path, run_cli: Any
) -> None:
    layout = make_project(tmp_path / "project")
    result = run_cli("--root", layout.root, "ritual", "drill", "2099-01-01-001")
    assert result.code == 1
    assert result.err.strip() == "exchange/orders/2099-01-01-001.json: -: no such order"
    # an order that is there but not minted yet: the build mints it
    order_id = sorted(p.stem for p in (layout.exchange / "orders").glob("*.json"))[0]
    result = run_cli("--root", layout.root, "ritual", "drill", order_id)
    assert result.code == 1 and "not minted yet; run `toyfoundry build`" in result.err


def test_ritual_all_prints_the_rituals_in_the_order_they_run(tmp_path: Path, run_cli: Any) -> None:
    layout = make_project(tmp_path / "project")
    build(layout, PILOT, EXPANSION)
    assert run_cli("--root", layout.root, "mint", OPERATIONAL).code == 0
    result = run_cli("--root", layout.root, "ritual", "all", OPERATIONAL)
    assert result.code == 0, result.err
    ran = [line.split(": ")[1] for line in result.out.splitlines()]
    assert ran == ["drill", "parade", "purge", "promote"]


@pytest.mark.parametrize("base", [50.0, 0.0, -0.0, 1.5])
def test_batch_scores_add_the_weights_as_one_alfa_at_a_time(base: float) -> None:
    """Drill's batch scores equal an Alfa's own, bit for bit: mixed types in a column,
    signed zeros, a -0.0 base (where a parameter without weights adds 0.0 that counts),
    parameters in another order, a weighted parameter missing."""
    import random

    from toyfoundry.forge.rituals import _Scorer, _scorer
    from toyfoundry.formats.models import Alfa

    recipe = Recipe.model_validate(
        {
            "schema_version": 1,
            "recipe_id": "r",
            "version": "1",
            "parameters": {
                "c": {"kind": "enum", "values": ["a", "b", "z"]},
                "x": {"kind": "float", "min": -1.0, "max": 1.0, "step": 0.5},
                "n": {"kind": "int", "min": 0, "max": 3},
                "u": {"kind": "float", "min": 0.0, "max": 9.0, "step": 0.1},
            },
            "baselines": [{"c": "a", "x": 0.0, "n": 0, "u": 0.0}],
            "scoring": {
                "base": base,
                "noise": 3.0,
                "weights": {
                    "c": {"a": -0.0, "b": 0.1, "z": -0.2},
                    "x": {"0.0": 1.0, "-0.0": 5.0, "1": 2.0, "0.5": 0.3},
                    "n": {"1": 3.0, "2": -0.0, "3": 1e-17},
                },
            },
            "pass_score": 0.0,
            "promote_score": 0.0,
        }
    )
    draw = random.Random(5)
    for round_ in range(40):
        alfas = []
        for slot in range(30):
            params: dict[str, Any] = {
                "c": draw.choice(["a", "b", "z"]),
                "x": draw.choice([0.0, -0.0, 0.5, -0.5, 1.0, -1.0]),
                "n": draw.choice([0, 1, 2, 3]),
                "u": draw.choice([0.0, 0.1, 4.2]),
            }
            if round_ % 4 == 1:
                params["x"] = draw.choice([1, 0, params["x"]])  # ints among the floats
            if round_ % 4 == 2 and slot == 7:
                params = dict(reversed(list(params.items())))  # another order
            if round_ % 4 == 3 and slot == 4:
                del params["c"]  # a weighted parameter missing (a waived Alfa's, say)
            alfas.append(
                Alfa(
                    alfa_id=f"2025-01-01-001.a{slot:03d}",
                    slot=slot,
                    params=params,
                    share="novel",
                    outcome="passed",
                )
            )
        batch = _Scorer(recipe).scores(round_, alfas)
        one = [_Scorer(recipe).score(round_, a) for a in alfas]
        assert [orjson.dumps(s) for s, _ in batch] == [orjson.dumps(s) for s, _ in one]
        assert batch == one
        # the recipe's orders share one scorer (`_scorer`), with the weights it has seen
        again = _scorer(recipe).scores(round_, alfas)
        assert [orjson.dumps(s) for s, _ in again] == [orjson.dumps(s) for s, _ in one]
        assert again == one
    assert _scorer(recipe) is _scorer(recipe)


def test_a_fifo_among_an_orders_packs_is_never_waited_on(built: Layout) -> None:
    from toyfoundry.forge import doctrine

    entries, _ = read_index(built)
    fifo = pack_folder(built, entries[0].order_id) / f"{'0' * 64}.pack"
    os.mkfifo(fifo)
    stored = stored_objects(built)  # opened without blocking, and skipped
    assert sorted(stored) == sorted(e.sha256 for e in entries)
    entry = DoctrineEntry.model_validate_json(stored[entries[0].sha256])
    doctrine.archive(built, [entry])  # stored already: nothing written
    checked, problems = doctrine.verify(built)
    assert checked == len(entries)
    assert [(p.path, p.reason) for p in problems] == [
        (str(fifo.relative_to(built.root)), "cannot be read: is not a regular file")
    ]
