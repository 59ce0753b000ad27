"""Human review of quarantined Alfas: what awaits a decision, and recording one.

Decisions live in `exchange/reviews/<order>.json`, in the order they were made;
the next mint of the order applies them in that order (see `forge.mint`). Only a
quarantined Alfa of the order's current mint artefact can be decided, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from toyfoundry.errors import FoundryError, Problem
from toyfoundry.exchange.loader import Exchange, display, pydantic_problems
from toyfoundry.forge.mint import read_mint
from toyfoundry.formats.models import SCHEMA_VERSION, Alfa, Decision, Review
from toyfoundry.store.atomic import write_json_atomic
from toyfoundry.store.layout import Layout, UnsafeIdError, check_order_id
from toyfoundry.store.runid import utc_now

DecisionKind = Literal["waive", "reroll", "reject"]


@dataclass(frozen=True)
class Waiting:
    """A quarantined Alfa, and the decision already recorded for it (applied at the next mint)."""

    order_id: str
    alfa: Alfa
    dry_run: bool
    decided: str | None


def _review_of(exchange: Exchange, order_id: str) -> Review | None:
    loaded = exchange.review(order_id)
    if loaded is None:
        return None
    return loaded.require()


def awaiting_review(layout: Layout, exchange: Exchange) -> list[Waiting]:
    """Every quarantined Alfa of every minted order, in order-id and slot order."""
    out = []
    for order_id in exchange.order_ids():
        mint = read_mint(layout, order_id)
        if mint is None:
            continue
        quarantined = [a for a in mint.alfas if a.outcome == "quarantined"]
        if not quarantined:
            continue
        loaded = exchange.review(order_id)
        review = loaded.model if loaded is not None else None
        decided = {d.alfa_id: d.decision for d in review.decisions} if review else {}
        out += [Waiting(order_id, a, mint.dry_run, decided.get(a.alfa_id)) for a in quarantined]
    return out


def decide(
    layout: Layout,
    exchange: Exchange,
    order_id: str,
    alfa_id: str,
    decision: DecisionKind,
    *,
    by: str,
    note: str = "",
) -> Review:
    """Append one decision to the order's review file (atomically); the next mint applies it."""
    try:
        check_order_id(order_id)
    except UnsafeIdError as exc:
        raise FoundryError("", [Problem(order_id[:80], "order_id", str(exc))]) from None
    mint = read_mint(layout, order_id)
    shown = display(layout, layout.mint_artefact(order_id))
    if mint is None:
        raise FoundryError(f"{shown}: -: order {order_id} is not minted yet; nothing awaits review")
    current = {a.alfa_id: a for a in mint.alfas}
    alfa = current.get(alfa_id)
    if alfa is None or alfa.outcome != "quarantined":
        state = (
            "is not an Alfa of the order" if alfa is None else f"is {alfa.outcome}, not quarantined"
        )
        raise FoundryError(f"{shown}: alfas: {alfa_id!r} {state}")
    review = _review_of(exchange, order_id)
    decisions = list(review.decisions) if review else []
    if any(d.alfa_id == alfa_id for d in decisions):
        raise FoundryError(
            f"{display(layout, layout.review_file(order_id))}: decisions: {alfa_id} is already decided;"
            f" run `toyfoundry mint {order_id}` to apply it"
        )
    try:
        entry = Decision(alfa_id=alfa_id, decision=decision, by=by, at=utc_now(), note=note)
    except ValidationError as exc:
        shown_review = display(layout, layout.review_file(order_id))
        raise FoundryError("", pydantic_problems(shown_review, exc)) from None
    updated = Review(
        schema_version=SCHEMA_VERSION, order_id=order_id, decisions=[*decisions, entry]
    )
    write_json_atomic(layout.review_file(order_id), updated)
    return updated
