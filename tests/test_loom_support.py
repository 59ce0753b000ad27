"""Small, hand-made build artefacts and ledger lines for the loom tests (no forge needed)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from toyfoundry.formats.models import (
    Alfa,
    AlfaResult,
    BatchMeta,
    MintArtefact,
    MintRecord,
    RitualOutcome,
    RitualRecord,
    RitualsArtefact,
    ShareCounts,
)
from toyfoundry.store.atomic import dumps_canonical, write_atomic
from toyfoundry.store.layout import Layout
from toyfoundry.store.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
T0 = "2025-10-12T10:00:00.000000Z"


@dataclass
class Spec:
    """One order as the forge would have left it; slots are indexes into the batch."""

    order_id: str
    phase: str = "operational"
    recipe: str = "sprocket-scout"
    status: str = "built"
    dry_run: bool = False
    size: int = 6
    quarantined: tuple[int, ...] = ()
    waived: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    defects: dict[int, list[str]] = field(default_factory=dict)
    promoted: tuple[int, ...] = ()
    rituals: bool = True
    reason: str = ""


def new_project(root: Path) -> Layout:
    layout = Layout(root)
    layout.orders_dir.mkdir(parents=True, exist_ok=True)
    return layout


def order_document(spec: Spec) -> dict[str, object]:
    return {
        "schema_version": 1,
        "order_id": spec.order_id,
        "phase": spec.phase,
        "recipe": spec.recipe,
        "batch_size": max(spec.size, 1),
        "seed": 7,
        "dry_run": spec.dry_run,
        "issued_by": "High Command",
    }


def share_of(slot: int, size: int) -> str:
    return "novel" if slot < max(1, round(size * 0.8)) else "baseline"


def build(
    layout: Layout, spec: Spec, *, run_id: str = "run-a", time: str = T0
) -> tuple[MintArtefact, RitualsArtefact | None]:
    """Write the order file, mint.json, rituals.json and their ledger lines for `spec`."""
    oid = spec.order_id
    order_bytes = orjson.dumps(order_document(spec), option=orjson.OPT_INDENT_2)
    write_atomic(layout.order_file(oid), order_bytes)
    minted = spec.status not in ("blocked", "rejected")
    size = spec.size if minted else 0
    alfas = []
    for slot in range(size):
        outcome = (
            "quarantined"
            if slot in spec.quarantined
            else "waived"
            if slot in spec.waived
            else "passed"
        )
        alfas.append(
            Alfa(
                alfa_id=f"{oid}.a{slot:03d}",
                slot=slot,
                params={"legs": slot % 6, "paint": "olive" if slot % 2 else "white"},
                share=share_of(slot, size),  # type: ignore[arg-type]
                outcome=outcome,  # type: ignore[arg-type]
                reasons=["forbidden: legs and paint"] if outcome != "passed" else [],
            )
        )
    achieved = ShareCounts(
        novel=sum(a.share == "novel" for a in alfas),
        baseline=sum(a.share == "baseline" for a in alfas),
    )
    mint = MintArtefact(
        schema_version=1,
        order_id=oid,
        recipe=spec.recipe,
        recipe_version="1.2.0",
        phase=spec.phase,  # type: ignore[arg-type]
        status=spec.status,  # type: ignore[arg-type]
        reason=spec.reason,
        dry_run=spec.dry_run,
        seed=7,
        batch_size=size,
        target=achieved,
        achieved=achieved,
        alfas=alfas,
        inputs={f"exchange/orders/{oid}.json": hashlib.sha256(order_bytes).hexdigest()},
    )
    write_atomic(layout.mint_artefact(oid), dumps_canonical(mint))
    verdict = {"passed": "minted", "quarantined": "quarantined", "waived": "waived"}
    records: list[MintRecord | RitualRecord] = [
        MintRecord(
            schema_version=1,
            kind="mint",
            run_id=run_id,
            time=time,
            order_id=oid,
            alfa_id=a.alfa_id,
            seed=7,
            recipe=spec.recipe,
            recipe_version="1.2.0",
            dry_run=spec.dry_run,
            share=a.share,
            outcome=verdict[a.outcome],  # type: ignore[arg-type]
            reasons=list(a.reasons),
        )
        for a in alfas
    ]
    if not minted:
        records.append(
            MintRecord(
                schema_version=1,
                kind="mint",
                run_id=run_id,
                time=time,
                order_id=oid,
                alfa_id=None,
                seed=7,
                recipe=spec.recipe,
                recipe_version="1.2.0",
                dry_run=spec.dry_run,
                outcome=spec.status,  # type: ignore[arg-type]
                reasons=[spec.reason],
            )
        )
    Ledger(layout.mint_ledger).append(records)
    if not spec.rituals:
        layout.rituals_artefact(oid).unlink(missing_ok=True)
        return mint, None
    rituals = _rituals(layout, spec, mint, run_id, time)
    return mint, rituals


def _rituals(
    layout: Layout, spec: Spec, mint: MintArtefact, run_id: str, time: str
) -> RitualsArtefact:
    oid = spec.order_id
    drilled = [a for a in mint.alfas if a.outcome != "quarantined"]
    results = []
    if not spec.dry_run:
        ranked = sorted(drilled, key=lambda a: -(40.0 + 3.5 * a.slot))
        for rank, a in enumerate(ranked, 1):
            defects = spec.defects.get(a.slot, [])
            passed = a.slot not in spec.failed and not defects
            results.append(
                AlfaResult(
                    alfa_id=a.alfa_id,
                    score=40.0 + 3.5 * a.slot,
                    passed=passed,
                    defects=defects,
                    rank=rank,
                    purged=not passed,
                    purge_reason=None if passed else "failed or defective",
                    promoted=a.slot in spec.promoted,
                    doctrine=hashlib.sha256(a.alfa_id.encode()).hexdigest()
                    if a.slot in spec.promoted
                    else None,
                )
            )
    stub = spec.dry_run
    counts = {
        "drill": {
            "drilled": len(results),
            "passed": sum(bool(r.passed) for r in results),
            "failed": sum(r.passed is False for r in results),
        },
        "parade": {"ranked": len(results)},
        "purge": {"purged": sum(r.purged for r in results)},
        "promote": {"promoted": sum(r.promoted for r in results)},
    }
    outcomes = {
        name: RitualOutcome(ran=True, stub=stub, counts={} if stub else counts[name])
        for name in ("drill", "parade", "purge", "promote")
    }
    rituals = RitualsArtefact(
        schema_version=1,
        order_id=oid,
        status=mint.status,
        dry_run=spec.dry_run,
        rituals=outcomes,  # type: ignore[arg-type]
        results=results,
        roster=[r.alfa_id for r in results if not r.purged],
        promoted=[r.alfa_id for r in results if r.promoted],
    )
    write_atomic(layout.rituals_artefact(oid), dumps_canonical(rituals))
    Ledger(layout.ritual_ledger).append(
        [
            RitualRecord(
                schema_version=1,
                kind="ritual",
                run_id=run_id,
                time=time,
                ritual=name,  # type: ignore[arg-type]
                order_id=oid,
                dry_run=spec.dry_run,
                batch=BatchMeta(size=len(mint.alfas), phase=mint.phase, recipe=mint.recipe),
                counts=outcome.counts,
                outcome="stub" if stub else "ok",
            )
            for name, outcome in outcomes.items()
        ]
    )
    return rituals


#: A small foundry: a dry run, an order with quarantined and promoted Alfas, a blocked one.
SAMPLE = (
    Spec("2025-10-12-005", phase="pilot", status="dry-run", dry_run=True, size=4),
    Spec(
        "2025-10-20-011",
        phase="expansion",
        size=8,
        failed=(1,),
        defects={2: ["leg-shear"], 3: ["leg-shear", "gear-slip"]},
        promoted=(7,),
    ),
    Spec(
        "2025-10-27-014",
        status="awaiting-review",
        size=10,
        quarantined=(4, 5),
        waived=(6,),
        failed=(0,),
        defects={1: ["gear-slip"]},
        promoted=(8, 9),
    ),
    Spec(
        "2025-10-28-002",
        recipe="bolt-bunny",
        status="blocked",
        reason="no operational checkpoint",
        rituals=False,
    ),
)


def sample(root: Path, specs: Sequence[Spec] = SAMPLE) -> Layout:
    layout = new_project(root)
    for spec in specs:
        build(layout, spec)
    return layout


def append_raw(path: Path, data: bytes) -> None:
    """Bytes appended as is: drift and torn lines the Ledger class would never write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(data)


def ledger_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def cli_shim(folder: Path) -> Path:
    """An executable `toyfoundry` that runs this checkout, as the console script would."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "toyfoundry"
    shim.write_text(
        f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m toyfoundry "$@"\n',
        encoding="utf-8",
    )
    os.chmod(shim, 0o755)
    return shim
