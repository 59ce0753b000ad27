"""Human review of quarantined Alfas: the queue, decisions one at a time or in bulk, and undo.

Decisions live in `exchange/reviews/<order>.json`, in the order they were made;
the next mint of the order applies them in that order (see `forge.mint`). Each
decision is keyed by what the reviewer saw (recipe, parameters, finding), so it
still applies when an upstream change renumbers the slots, and lapses when what
was reviewed changed. Older files name Alfas by slot id only; they are read as
they are, and rewritten with keys the next time a decision is added to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from toyfoundry.errors import FoundryError, Problem
from toyfoundry.exchange.loader import Exchange, display, pydantic_problems
from toyfoundry.forge.mint import read_mint
from toyfoundry.formats.models import SCHEMA_VERSION, Alfa, Decision, MintArtefact, Review
from toyfoundry.formats.review_key import decides, key_of
from toyfoundry.store.atomic import write_json_atomic
from toyfoundry.store.layout import Layout, UnsafeIdError, check_order_id
from toyfoundry.store.runid import utc_now

DecisionKind = Literal["waive", "reroll", "reject"]


@dataclass(frozen=True)
class Waiting:
    """A quarantined Alfa, and the decision already recorded for it (applied at the next build)."""

    order_id: str
    recipe: str
    alfa: Alfa
    dry_run: bool
    decided: str | None

    @property
    def day(self) -> str:
        """The order's day (its id's date part): how long the Alfa has waited, with no clock."""
        return self.order_id[:10]

    @property
    def finding(self) -> str:
        """The validators' finding as one line: the group `review list` counts it under."""
        return "; ".join(self.alfa.reasons)


@dataclass(frozen=True)
class Selection:
    """Which Alfas a bulk decision or an undo is about; every given field must match."""

    order_id: str | None = None
    alfa_id: str | None = None
    finding: str | None = None
    recipe: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.order_id, self.alfa_id, self.finding, self.recipe))

    def _matches(self, order_id: str, alfa_id: str, recipe: str | None, finding: str) -> bool:
        return (
            (self.order_id is None or order_id == self.order_id)
            and (self.alfa_id is None or alfa_id == self.alfa_id)
            and (self.recipe is None or recipe == self.recipe)
            and (self.finding is None or self.finding in finding)
        )

    def waiting(self, item: Waiting) -> bool:
        return self._matches(item.order_id, item.alfa.alfa_id, item.recipe, item.finding)

    def decision(self, order_id: str, decision: Decision) -> bool:
        key = decision.key
        finding = "; ".join(key.finding) if key else ""
        return self._matches(order_id, decision.alfa_id, key.recipe if key else None, finding)


def _review_of(exchange: Exchange, order_id: str) -> Review | None:
    loaded = exchange.review(order_id)
    if loaded is None:
        return None
    return loaded.require()


def _decided(review: Review | None, recipe: str, alfa: Alfa) -> str | None:
    if review is None:
        return None
    for d in review.decisions:
        if decides(d, recipe, alfa.alfa_id, alfa.params, alfa.reasons):
            return d.decision
    return None


def _minted_with(
    layout: Layout, exchange: Exchange, only: str | None, outcomes: tuple[str, ...]
) -> Iterator[tuple[str, MintArtefact, Review | None, list[Alfa]]]:
    """Each minted order (or the order `only`) with its review and its Alfas of these outcomes,
    in order-id (oldest first) and slot order; orders with none are left out."""
    for order_id in [only] if only is not None else exchange.order_ids():
        mint = read_mint(layout, order_id)
        if mint is None:
            continue
        alfas = [a for a in mint.alfas if a.outcome in outcomes]
        if not alfas:
            continue
        loaded = exchange.review(order_id)
        yield order_id, mint, (loaded.model if loaded is not None else None), alfas


def awaiting_review(layout: Layout, exchange: Exchange, only: str | None = None) -> list[Waiting]:
    """Every quarantined Alfa of every minted order (or of the order `only`), in order-id
    (oldest first) and slot order."""
    return [
        Waiting(
            order_id,
            mint.recipe or "",
            a,
            mint.dry_run,
            _decided(review, mint.recipe or "", a),
        )
        for order_id, mint, review, alfas in _minted_with(layout, exchange, only, ("quarantined",))
        for a in alfas
    ]


def undone(layout: Layout, exchange: Exchange, only: str | None = None) -> list[Waiting]:
    """Alfas the last build decided (waived, rerolled, rejected) whose decision is no longer
    recorded: undone, or lapsed. The next build puts them back in the queue."""
    applied = ("waived", "rerolled", "rejected")
    return [
        Waiting(order_id, mint.recipe or "", a, mint.dry_run, None)
        for order_id, mint, review, alfas in _minted_with(layout, exchange, only, applied)
        for a in alfas
        if _decided(review, mint.recipe or "", a) is None
    ]


def _keyed(decisions: Sequence[Decision], mint: MintArtefact) -> list[Decision]:
    """Older decisions named by slot id get the key of the Alfa they decided, when it is
    still in the artefact; the rest are kept as they are."""
    by_id = {a.alfa_id: a for a in mint.alfas}
    out = []
    for d in decisions:
        alfa = by_id.get(d.alfa_id)
        if d.key is None and alfa is not None and alfa.reasons and mint.recipe:
            d = d.model_copy(update={"key": key_of(mint.recipe, alfa.params, alfa.reasons)})
        out.append(d)
    return out


def _write(layout: Layout, order_id: str, decisions: list[Decision]) -> Review:
    try:
        review = Review.model_validate(
            {"schema_version": SCHEMA_VERSION, "order_id": order_id, "decisions": decisions}
        )
    except ValidationError as exc:
        shown = display(layout, layout.review_file(order_id))
        raise FoundryError("", pydantic_problems(shown, exc)) from None
    write_json_atomic(layout.review_file(order_id), review)
    return review


def record(
    layout: Layout,
    exchange: Exchange,
    items: Iterable[Waiting],
    decision: DecisionKind,
    *,
    by: str,
    note: str = "",
) -> list[Waiting]:
    """Record one decision on each item, one atomic write per order; every entry of one call
    carries the same time, which is how `undo` finds the last call. Returns what was recorded."""
    at = utc_now()
    by_order: dict[str, list[Waiting]] = {}
    for item in items:
        by_order.setdefault(item.order_id, []).append(item)
    for order_id, chosen in by_order.items():
        mint = read_mint(layout, order_id)
        review = _review_of(exchange, order_id)
        decisions = list(review.decisions) if review else []
        if mint is not None:
            decisions = _keyed(decisions, mint)
        try:
            entries = [
                Decision(
                    alfa_id=w.alfa.alfa_id,
                    key=key_of(w.recipe, w.alfa.params, w.alfa.reasons),
                    decision=decision,
                    by=by,
                    at=at,
                    note=note,
                )
                for w in chosen
            ]
        except ValidationError as exc:
            shown = display(layout, layout.review_file(order_id))
            raise FoundryError("", pydantic_problems(shown, exc)) from None
        _write(layout, order_id, [*decisions, *entries])
    return [w for chosen in by_order.values() for w in chosen]


def _checked(order_id: str) -> str:
    """An order id from the command line, before it becomes part of a path."""
    try:
        return check_order_id(order_id)
    except UnsafeIdError as exc:
        raise FoundryError("", [Problem(order_id[:80], "order_id", str(exc))]) from None


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
    """Record a decision on one named Alfa (atomically); the next build applies it."""
    _checked(order_id)
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
    recipe = mint.recipe or ""
    if _decided(review, recipe, alfa):
        raise FoundryError(
            f"{display(layout, layout.review_file(order_id))}: decisions: {alfa_id} is already"
            " decided; run `toyfoundry build` to apply it, or `toyfoundry review undo` first"
        )
    record(
        layout,
        exchange,
        [Waiting(order_id, recipe, alfa, mint.dry_run, None)],
        decision,
        by=by,
        note=note,
    )
    return _review_of(Exchange(layout), order_id) or Review(
        schema_version=SCHEMA_VERSION, order_id=order_id
    )


def decide_pending(
    layout: Layout,
    exchange: Exchange,
    selection: Selection,
    decision: DecisionKind,
    *,
    by: str,
    note: str = "",
) -> list[Waiting]:
    """Record `decision` on every quarantined Alfa the selection matches that has none yet."""
    if selection.order_id is not None:
        _checked(selection.order_id)
    queue = awaiting_review(layout, exchange, selection.order_id)
    chosen = [w for w in queue if w.decided is None and selection.waiting(w)]
    if not chosen:
        raise FoundryError(
            "review: nothing pending matches; `toyfoundry review list` shows the queue"
        )
    return record(layout, exchange, chosen, decision, by=by, note=note)


@dataclass(frozen=True)
class Undone:
    order_id: str
    decision: Decision


def undo(layout: Layout, exchange: Exchange, selection: Selection) -> list[Undone]:
    """Remove decisions: those the selection matches, or with no selection the whole of the
    last `decide` call (the entries with the latest time). The next build applies the change:
    an Alfa whose decision is removed awaits review again."""
    reviews: dict[str, Review] = {}
    for order_id in exchange.order_ids():
        if selection.order_id is not None and order_id != selection.order_id:
            continue
        review = _review_of(exchange, order_id)
        if review is not None and review.decisions:
            reviews[order_id] = review
    if selection:
        chosen = {
            oid: [d for d in r.decisions if selection.decision(oid, d)]
            for oid, r in reviews.items()
        }
    else:
        last = max((d.at for r in reviews.values() for d in r.decisions), default=None)
        chosen = {oid: [d for d in r.decisions if d.at == last] for oid, r in reviews.items()}
    out: list[Undone] = []
    for order_id, removed in chosen.items():
        if not removed:
            continue
        kept = [d for d in reviews[order_id].decisions if d not in removed]
        _write(layout, order_id, kept)
        out += [Undone(order_id, d) for d in removed]
    if not out:
        raise FoundryError("review: no recorded decision matches; nothing to undo")
    return out
