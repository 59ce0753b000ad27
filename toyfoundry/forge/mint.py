"""Mint an order's batch under the diversity quotas: the plan's forge_mint_alfa.

A batch has three shares, in slot order: novel slots first, then carryover, then
baseline. Counts: carryover = floor(n * c) when the recipe's promotion pool is
non-empty (else 0), baseline = floor(n * b), novel = the rest, so novel never
drops below its share (at least 60%).

- novel: the next positions of the recipe's novel sequence (see `space`) from the
  chain's cursor, skipping positions already minted as carryover and the
  recipe's baselines: never minted by an earlier order nor earlier in the batch;
- carryover: slot j mutates pool entry j mod len(pool) (pool order: best first).
  The first parameter always changes; each further one, up to `max_changes`,
  changes with probability `rate` (the order's mutation settings, else the
  recipe's); the new value is drawn uniformly from the rest of its domain;
- baseline: slot j repeats the recipe's baseline j mod len(baselines).

Randomness comes only from generators seeded by sha256 of the order's seed and a
purpose, so the same order, recipe, review, checkpoint and chain give the same
bytes. Each Alfa then passes the validator hooks; a failure is quarantined until
a human review decides it (`exchange/reviews/<order>.json`, decisions applied in
file order, each to the Alfas whose recipe, parameters and finding it names):
waive keeps it as minted, reject empties its slot, reroll draws a replacement
`<alfa>r<k>` for the slot and validates it again. A replacement is never a
combination the recipe forbids, nor a duplicate in the batch. Novel: the next
position of the batch's reserve, else (the reserve used up) the last unseen
permutation of the sequence; carryover: a fresh mutation of the same parent, from
a generator seeded by the order seed and the rerolled Alfa's id; baseline: the
next baseline.

What the batch hands on to the next order of its recipe (`hand_on`: the cursor and
the carried positions) is fixed when the batch is composed, before its review:
after its novel draws the batch reserves `RESERVE_FACTOR` further positions per
quarantined novel Alfa, and keeps as carried the first `_KEPT_TRIES` mutations of
the first `_KEPT_LEVELS` rerolls of each quarantined carryover. So a decision
changes only its own order's outputs, unless a reroll goes beyond what was kept
(the reserve used up, or a later mutation): then that replacement is carried
too, and the recipe's later orders are minted again.

`achieved` counts the slots the batch fills (passed, waived or still quarantined
Alfas); a slot emptied by a reject decision is not counted.
"""

from __future__ import annotations

import math
from _random import Random as Generator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ValidationError

from toyfoundry.errors import FoundryError, Problem
from toyfoundry.exchange.loader import Exchange, display
from toyfoundry.forge import carried
from toyfoundry.forge import chain as chains
from toyfoundry.forge.carried import Positions
from toyfoundry.forge.inputs import (
    MintInputs,
    display_path,
    file_digest,
    mint_input_paths,
    sprint_of,
    sprint_orders,
)
from toyfoundry.forge.snapshot import CHANGED, changed_inputs
from toyfoundry.forge.space import Params, Space, one_block_sha256, space_of
from toyfoundry.forge.validators import Validators, load_plugins
from toyfoundry.formats import parsed
from toyfoundry.formats.models import (
    SCHEMA_VERSION,
    Alfa,
    Chain,
    HandOn,
    MintArtefact,
    MintRecord,
    Mutation,
    Order,
    OrderStatus,
    ParamValue,
    ProblemModel,
    Recipe,
    Review,
    Share,
    ShareCounts,
)
from toyfoundry.formats.review_key import decides
from toyfoundry.store import safe_read
from toyfoundry.store.atomic import dumps_canonical, read_whole, write_atomic
from toyfoundry.store.layout import Layout, UnsafeIdError, check_order_id
from toyfoundry.store.ledger import Ledger
from toyfoundry.store.runid import run_id, utc_now

Outcome = Literal["passed", "quarantined", "waived", "rerolled", "rejected"]
LEDGER_OUTCOME: dict[str, str] = {
    "passed": "minted",
    "quarantined": "quarantined",
    "waived": "waived",
    "rerolled": "rerolled",
    "rejected": "rejected-by-review",
}
_EPSILON = 1e-9
#: Positions a batch reserves for novel rerolls, per novel Alfa quarantined at compose time.
RESERVE_FACTOR = 3
#: Rerolls in a row of one carryover slot whose mutations are kept as carried in advance.
_KEPT_LEVELS = 3
#: Mutations kept per such reroll (a refused mutation is drawn again).
_KEPT_TRIES = 4
#: Draws a carryover reroll makes before it keeps a refused mutation (left quarantined).
_REROLL_TRIES = 64


class Refused(Exception):
    """An order that is blocked or rejected: it gets an artefact with the reason, not a batch."""

    def __init__(self, status: OrderStatus, reason: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.problems = list(problems)


# --------------------------------------------------------------------------- pure helpers


def rng(seed: int, *purpose: str) -> Generator:
    """A generator seeded by sha256 of the order's seed and a purpose: never global state.

    The C generator `random.Random` is made on: the same Mersenne Twister seeded the same
    way from an int (its `seed` hands an int down to it), without the Python layer around
    it, which a batch's carryovers do not use (6,000 instructions of the 40,000 a seed
    costs). The seed's text is a short message (`space.one_block_sha256`)."""
    text = "\n".join([str(seed), *purpose]).encode()
    return Generator(int.from_bytes(one_block_sha256(text).digest(), "big"))


def plan_shares(
    batch_size: int, shares: tuple[float, float, float], pool_nonempty: bool
) -> ShareCounts:
    """Slot counts per share: they sum to the batch size and novel gets every rounding remainder."""
    _, carry, base = shares
    carryover = math.floor(batch_size * carry + _EPSILON) if pool_nonempty else 0
    baseline = math.floor(batch_size * base + _EPSILON)
    return ShareCounts(
        novel=batch_size - carryover - baseline, carryover=carryover, baseline=baseline
    )


class _Mutator:
    """A carryover child of a recipe's parameters: 1..max_changes parameters moved to another
    value of their domain, its parameters in sorted order (as the artefact holds them).

    `index`: the child's index in the recipe's space after each call, when its parent's is
    known (None: work it out from the parameters, `Space.index`): a mutation moves digits
    of the parent's index, so its carryover's position needs no look-up per parameter."""

    def __init__(self, recipe: Recipe, space: Space) -> None:
        self.space = space
        self.order = list(recipe.parameters)
        self.known = set(self.order)
        self.in_order = sorted(self.order)
        # the parameters a mutation may move, in the recipe's order: (name, size, domain,
        # its values as `Space` lists them, its place value in an index)
        self.movable = [
            (name, size, domain, values, place)
            for (name, place, size, values), domain in zip(space.digits, space.domains, strict=True)
            if size > 1
        ]
        #: each parent's index, by the identity of its parameters (kept alive by the pool)
        self._parents: dict[int, int | None] = {}
        self.index: int | None = None

    def __call__(
        self, params: Mapping[str, ParamValue], mutation: Mutation, gen: Generator
    ) -> Params:
        out = dict(params)
        index = self._parents.get(id(params), -1)
        if index == -1:
            index = self._parents[id(params)] = self.space.index(params)
        movable = self.movable
        if movable:
            # each draw from [0, n) is `min(int(random() * n), n - 1)`: built on `random()`
            # alone, the one method Python keeps stable across versions for a given seed
            # (`randrange` and `sample` may change), so cached artefacts stay reproducible
            random = gen.random
            changes = 1
            most, rate = min(mutation.max_changes, len(movable)), mutation.rate
            while changes < most and random() < rate:
                changes += 1
            if changes > 1:
                movable = list(movable)
            for _ in range(changes):
                n = len(movable)
                pick = min(int(random() * n), n - 1)
                name, size, domain, values, place = (
                    movable.pop(pick) if changes > 1 else movable[pick]
                )
                current = domain.index_of(out[name]) if name in out else None
                if current is None:
                    choice = min(int(random() * size), size - 1)
                    index = None
                else:
                    choice = min(int(random() * (size - 1)), size - 2)
                    choice += choice >= current
                    if index is not None:
                        index += (choice - current) * place
                out[name] = values[choice]
        self.index = index
        if out.keys() == self.known:  # the recipe's parameters, as a pool entry has them
            return {n: out[n] for n in self.in_order}
        return dict(sorted(out.items()))


def alfa_id(order_id: str, slot: int, reroll: int = 0) -> str:
    return f"{order_id}.a{slot:03d}" + (f"r{reroll}" if reroll else "")


#: A batch's slots as its Alfa ids write them (`{slot:03d}`; `Order.batch_size` is at most
#: 96): a format spec costs a `format` call an Alfa, an item of this tuple a subscript.
_SLOT_TEXT = tuple(f"{slot:03d}" for slot in range(96))


def experimental_block(exchange: Exchange, order: Order, order_id: str) -> str | None:
    """Why an experimental order is over its sprint's quota, or None when it fits.

    The sprint's Alfas are the batch sizes of its valid, non-dry-run orders of every
    recipe. Experimental orders take the quota in order-id order; one that does
    not fit is blocked and takes nothing.
    """
    total = 0
    experimental: list[tuple[str, int]] = []
    for other in sprint_orders(exchange, order_id):
        loaded = exchange.order(other)
        model = loaded.model
        if not loaded.ok or model is None or model.dry_run or model.phase == "pilot":
            continue
        total += model.batch_size
        recipe = exchange.recipe(model.recipe).model
        if recipe is not None and recipe.experimental:
            experimental.append((other, model.batch_size))
    quota = exchange.settings.experimental_quota
    allowed = math.floor(quota * total + _EPSILON)
    used = 0
    for other, size in experimental:
        fits = used + size <= allowed
        if other == order_id:
            if fits:
                return None
            return (
                f"experimental quota: sprint {sprint_of(order_id)} has {total} Alfas and"
                f" {quota:.0%} allows {allowed} experimental; earlier experimental orders"
                f" took {used}, this order needs {size}"
            )
        if fits:
            used += size
    return None


# --------------------------------------------------------------------------- inputs


def mint_inputs(
    layout: Layout, exchange: Exchange, order_id: str, *, previous: chains.Previous = chains.AUTO
) -> MintInputs:
    """The files `mint_order` reads; `previous` is the previous order of the recipe's chain
    when the caller already knows it (the graph's plan), by default it is looked up."""
    before = chains.resolve_previous(exchange, order_id, previous)
    return mint_input_paths(layout, exchange, order_id, before)


def input_digests(
    layout: Layout,
    inputs: MintInputs,
    max_bytes: int | None = None,
    exchange: Exchange | None = None,
) -> dict[str, str | None]:
    """Digests of the inputs as `exchange` read them (the bytes a mint used, None for a file
    it refused), else as they are: a file refused at the read and hashed later could be
    recorded with bytes the mint never saw, and the rituals would then take the refusal
    for fresh."""
    paths = [*inputs.present, *inputs.optional, *([inputs.chain] if inputs.chain else [])]
    read = exchange.digests if exchange is not None else {}
    return {
        display_path(layout.root, p): read[p] if p in read else file_digest(p, max_bytes)
        for p in paths
    }


# --------------------------------------------------------------------------- composing a batch


class _Draft(TypedDict):
    """An Alfa as the artefact holds it, its fields in the model's order and its parameters
    in sorted order: the batch builds each Alfa once, as the data the artefact is made of."""

    alfa_id: str
    slot: int
    params: Params
    share: Share
    parent_id: str | None
    outcome: Outcome
    reasons: list[str]


class _Sequence:
    """The unseen part of the novel sequence, consumed draw by draw.

    `carried`: the positions at or beyond `cursor` that earlier orders minted as
    carryover (read-only, see `carried.ahead`); this batch's carryovers join `own`.
    Parameter sets are made in sorted order (`Space.sorted_params`).
    """

    def __init__(
        self, space: Space, cursor: int, carried: Positions, baselines: list[Params]
    ) -> None:
        self.space = space
        self.start = cursor
        self.cursor = cursor
        self.carried = carried
        self.own: set[int] = set()
        self.baseline_index = {i for i in (space.index(b) for b in baselines) if i is not None}
        self.baseline_position = {space.permutation.position(i) for i in self.baseline_index}
        self.end = space.size - 1

    def unseen(self) -> int:
        cursor, carried = self.cursor, self.carried
        # every carried position is at or beyond the start, so before any draw all count
        behind = 0 if cursor == self.start else carried.count_below(cursor)
        extra = {p for p in self.own | self.baseline_position if p >= cursor and p not in carried}
        return self.space.size - cursor - (len(carried) - behind) - len(extra)

    def draw(self, count: int) -> list[int]:
        """The indexes of the next `count` unseen parameter sets (fewer when the sequence
        runs out)."""
        own, size, skip = self.own, self.space.size, self.baseline_index
        at = self.space.permutation.at
        out: list[int] = []
        cursor = self.cursor
        # the carried positions ahead, met in order: one step each, not a search a position
        upcoming = self.carried.upcoming(cursor)
        taken = next(upcoming, size)
        while len(out) < count and cursor < size:
            position = cursor
            cursor += 1
            if position == taken:
                taken = next(upcoming, size)
                continue
            if position in own:
                continue
            index = at(position)
            if index not in skip:
                out.append(index)
        self.cursor = cursor
        return out

    def draw_last(self) -> Params | None:
        """A novel reroll's draw once the batch's reserve is used up: the last unseen position
        of the sequence, so the cursor handed on stays the one the composed batch left (the
        replacement is carried instead, see `chain.advance`)."""
        while self.end >= self.cursor:
            position = self.end
            self.end -= 1
            if position in self.carried or position in self.own:
                continue
            index = self.space.at(position)
            if index in self.baseline_index:
                continue
            self.own.add(position)
            return self.space.sorted_params(index)
        return None

    def note_carryover(self, params: Params, index: int | None = None) -> int | None:
        """Skip a carryover's position in later draws; its position (None: not in the space).
        `index`: the parameters' index in the space, when known (`_Mutator.index`)."""
        position = self.space.position(params, index)
        if position is not None and position >= self.cursor:
            self.own.add(position)
        return position


def _canonical(params: Params) -> bytes:
    return chains.canonical_params(params)


def _draft(
    alfa: str, slot: int, params: Params, share: Share, parent: str | None, reasons: list[str]
) -> _Draft:
    return {
        "alfa_id": alfa,
        "slot": slot,
        "params": params,
        "share": share,
        "parent_id": parent,
        "outcome": "quarantined" if reasons else "passed",
        "reasons": reasons,
    }


class _Batch:
    """One order's batch while it is composed, validated and reviewed."""

    def __init__(
        self,
        order: Order,
        order_id: str,
        recipe: Recipe,
        chain: Chain,
        space: Space,
        carried_ahead: Positions,
    ) -> None:
        self.order = order
        self.order_id = order_id
        self.recipe = recipe
        self.chain = chain
        self.space = space
        cursor = chains.start_cursor(chain, space.key)
        # as the recipe lists them (the validators see them so), and sorted for the artefact
        self.baselines = [dict(b) for b in recipe.baselines]
        self.sorted_baselines = [dict(sorted(b.items())) for b in self.baselines]
        self.sequence = _Sequence(space, cursor, carried_ahead, self.baselines)
        self.validators = Validators(recipe, load_plugins(), space.domains)
        self.mutation = order.mutation or recipe.mutation
        self.mutate = _Mutator(recipe, space)
        self.slots: list[list[_Draft]] = []
        #: each composed carryover's sequence position, by slot (None: not in the space)
        self.positions: dict[int, int | None] = {}
        self.reserve: list[Params] = []
        self.hand_on: HandOn | None = None
        self.target = plan_shares(order.batch_size, order.shares(), bool(chain.pool))

    def compose(self, order_path: str) -> None:
        needed = self.target.novel
        unseen = self.sequence.unseen()
        if unseen < needed:
            raise Refused(
                "rejected",
                f"recipe {self.recipe.recipe_id} has too few unseen permutations",
                [
                    Problem(
                        order_path,
                        "batch_size",
                        f"recipe {self.recipe.recipe_id} has {unseen} unseen permutations,"
                        f" order needs {needed}",
                    )
                ],
            )
        seed, order_id, slots, check = (
            self.order.seed,
            self.order_id,
            self.slots,
            self.validators.check,
        )
        prefix = f"{order_id}.a"
        slots_text = _SLOT_TEXT
        canonical = chains.canonical_params
        novel = self.sequence.draw(needed)
        if len(novel) < needed:  # unseen() said there were enough; a bug if not
            raise FoundryError(f"order {order_id}: the novel sequence ran out early")
        # made from indexes of the recipe's space: the recipe's parameters exactly, each int or
        # enum value in its domain, float values too when `values_fit` (see `Validators.check`)
        fitting, keyed = self.validators.check_fitting, self.space.keyed_params
        if self.space.values_fit:
            for slot, index in enumerate(novel):
                alfa = prefix + slots_text[slot]
                params, key = keyed(index)
                reasons = fitting(alfa, params, key)
                # `_draft`, written out: a call less an Alfa
                draft: _Draft = {
                    "alfa_id": alfa,
                    "slot": slot,
                    "params": params,
                    "share": "novel",
                    "parent_id": None,
                    "outcome": "quarantined" if reasons else "passed",
                    "reasons": reasons,
                }
                slots.append([draft])
        else:
            for slot, index in enumerate(novel):
                alfa = prefix + slots_text[slot]
                params, key = keyed(index)
                reasons = check(alfa, "novel", params, key, drawn=True)
                slots.append([_draft(alfa, slot, params, "novel", None, reasons)])
        slot = needed
        waiting = sum(1 for chain in slots if chain[0]["outcome"] == "quarantined")
        self.reserve = list(
            map(self.space.sorted_params, self.sequence.draw(waiting * RESERVE_FACTOR))
        )
        pool, mutator, mutation, note = (
            self.chain.pool,
            self.mutate,
            self.mutation,
            self.sequence.note_carryover,
        )
        # its method called bound: calling the instance goes through its type's slot
        mutate = mutator.__call__
        # `rng(seed, "carryover", alfa)`: the seed's text up to the Alfa's id hashed once
        head = one_block_sha256(f"{seed}\ncarryover\n".encode())
        for j in range(self.target.carryover):
            parent = pool[j % len(pool)]
            alfa = prefix + slots_text[slot]
            h = head.copy()
            h.update(alfa.encode())
            params = mutate(parent.params, mutation, Generator(int.from_bytes(h.digest(), "big")))
            position = self.positions[slot] = note(params, mutator.index)
            # a position says the parameters are the recipe's, each in its domain
            if position is not None:
                reasons = fitting(alfa, params, canonical(params))
            else:
                reasons = check(alfa, "carryover", params, canonical(params))
            slots.append([_draft(alfa, slot, params, "carryover", parent.alfa_id, reasons)])
            slot += 1
        baselines, shown = self.sorted_baselines, self.baselines
        # a batch repeats its recipe's few baselines: each one's canonical bytes made once
        keys = [canonical(original) for original in shown] if self.target.baseline else []
        for j in range(self.target.baseline):
            alfa = prefix + slots_text[slot]
            original = shown[j % len(shown)]
            reasons = check(alfa, "baseline", original, keys[j % len(shown)])
            params = dict(baselines[j % len(baselines)])
            slots.append([_draft(alfa, slot, params, "baseline", None, reasons)])
            slot += 1
        self.hand_on = self._hand_on()

    def _hand_on(self) -> HandOn:
        """The cursor and carried positions handed on, whatever the review decides."""
        cursor = self.sequence.cursor
        positions: list[int | None] = []
        for slot, position in self.positions.items():
            positions.append(position)
            draft = self.slots[slot][0]
            if draft["outcome"] != "quarantined":
                continue
            parent = next(e for e in self.chain.pool if e.alfa_id == draft["parent_id"])
            rerolled = draft["alfa_id"]
            for k in range(1, _KEPT_LEVELS + 1):
                # the generator `_reroll` seeds for the k-th reroll of this slot
                gen = rng(self.order.seed, rerolled, "reroll")
                for _ in range(_KEPT_TRIES):
                    params = self.mutate(parent.params, self.mutation, gen)
                    positions.append(self.space.position(params, self.mutate.index))
                rerolled = alfa_id(self.order_id, slot, k)
        carried = sorted({p for p in positions if p is not None and p >= cursor})
        return HandOn(cursor=cursor, carried=carried)

    def apply_review(self, review: Review, review_path: str) -> None:
        """Apply each decision, in file order, to the quarantined Alfas it is about (see
        `review_key.decides`). A decision that matches none is left standing, unused: what
        it reviewed is not in this batch (an upstream change), so nothing is decided."""
        recipe_id = self.recipe.recipe_id
        for number, decision in enumerate(review.decisions):
            for chain in self.slots:
                current = chain[-1]
                if current["outcome"] != "quarantined" or not decides(
                    decision, recipe_id, current["alfa_id"], current["params"], current["reasons"]
                ):
                    continue
                if decision.decision == "waive":
                    current["outcome"] = "waived"
                elif decision.decision == "reject":
                    current["outcome"] = "rejected"
                else:
                    current["outcome"] = "rerolled"
                    chain.append(self._reroll(current, len(chain), review_path, number))

    def _reroll(self, current: _Draft, k: int, review_path: str, number: int) -> _Draft:
        slot, share = current["slot"], current["share"]
        new_id = alfa_id(self.order_id, slot, k)
        shown: Params | None = None
        if share == "novel":
            params = self._from_reserve()
            while params is not None and self.validators.refuses(params, _canonical(params)):
                params = self._from_reserve()
            if params is None:
                raise Refused(
                    "rejected",
                    "no unseen permutation is left for a reroll",
                    [
                        Problem(
                            review_path,
                            f"decisions.{number}.decision",
                            f"recipe {self.recipe.recipe_id} has no unseen permutation left"
                            f" to reroll {current['alfa_id']}",
                        )
                    ],
                )
        elif share == "carryover":
            parent = next(e for e in self.chain.pool if e.alfa_id == current["parent_id"])
            gen = rng(self.order.seed, current["alfa_id"], "reroll")
            params = self.mutate(parent.params, self.mutation, gen)
            for _ in range(_REROLL_TRIES):  # a forbidden or duplicate mutation is drawn again
                if not self.validators.refuses(params, _canonical(params)):
                    break
                params = self.mutate(parent.params, self.mutation, gen)
            self.sequence.note_carryover(params, self.mutate.index)
        else:
            first_baseline = self.target.novel + self.target.carryover
            which = (slot - first_baseline + k) % len(self.baselines)
            shown, params = self.baselines[which], dict(self.sorted_baselines[which])
        checked = params if shown is None else shown
        reasons = self.validators.check(new_id, share, checked, _canonical(checked))
        return _draft(new_id, slot, params, share, current["parent_id"], reasons)

    def _from_reserve(self) -> Params | None:
        """A novel reroll's draw: the reserve in order, then the sequence's last unseen position."""
        if self.reserve:
            return self.reserve.pop(0)
        return self.sequence.draw_last()

    def alfas(self) -> list[_Draft]:
        return [draft for chain in self.slots for draft in chain]

    def achieved(self) -> ShareCounts:
        counts = {"novel": 0, "carryover": 0, "baseline": 0}
        for chain in self.slots:
            if chain[-1]["outcome"] != "rejected":
                counts[chain[-1]["share"]] += 1
        return ShareCounts(**counts)


# --------------------------------------------------------------------------- the mint


def _problem_models(problems: Sequence[Problem]) -> list[ProblemModel]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(ProblemModel(path=p.path, field=p.field, reason=p.reason))
    return out


@dataclass
class _Context:
    """What is known about an order so far, for the artefact of a refused order."""

    order: Order | None = None
    recipe: Recipe | None = None
    dry_run: bool = False
    target: ShareCounts = field(default_factory=ShareCounts)


def _compose(
    layout: Layout,
    exchange: Exchange,
    order_id: str,
    force_dry_run: bool,
    ctx: _Context,
    previous: str | None,
) -> _Batch:
    loaded = exchange.order(order_id)
    order = loaded.model
    ctx.dry_run = force_dry_run
    if order is None:
        raise Refused("rejected", "the order file is invalid", loaded.problems)
    ctx.order = order
    ctx.dry_run = force_dry_run or order.dry_run or order.phase == "pilot"
    recipe_path = layout.recipe_file(order.recipe)
    recipe_loaded = exchange.recipe(order.recipe)
    if loaded.problems:
        # The order only says its recipe is invalid; the recipe's own lines say where.
        shown_recipe = safe_read.present(recipe_path) and not recipe_loaded.ok
        extra = recipe_loaded.problems if shown_recipe else []
        raise Refused("rejected", "the order is invalid", loaded.problems + extra)
    recipe = recipe_loaded.require()
    ctx.recipe = recipe
    space = space_of(recipe)
    chain, data = chains.start_chain(
        layout, exchange, order_id, recipe.recipe_id, space.key, previous
    )
    ahead = (
        carried.NONE
        if data is None or previous is None or chain.space != space.key
        # the chain's digest as `start_chain` took it for the inputs: hashed once
        else carried.ahead(layout, chain, data, exchange.digests.get(layout.chain_file(previous)))
    )
    batch = _Batch(order, order_id, recipe, chain, space, ahead)
    ctx.target = batch.target
    if order.phase != "pilot":
        checkpoint = exchange.checkpoint(order.phase)
        shown = display(layout, layout.checkpoint_file(order.phase))
        if checkpoint is None:
            raise Refused(
                "blocked",
                f"the {order.phase} phase needs its human checkpoint {shown}"
                f" (toyfoundry checkpoint approve {order.phase} --by NAME)",
            )
        if not checkpoint.ok:
            raise Refused(
                "rejected", f"the {order.phase} checkpoint is invalid", checkpoint.problems
            )
    if recipe.experimental and not ctx.dry_run:
        blocked = experimental_block(exchange, order, order_id)
        if blocked:
            raise Refused("blocked", blocked)
    review = exchange.review(order_id)
    if review is not None and not review.ok:
        raise Refused("rejected", "the order's review is invalid", review.problems)
    batch.compose(display(layout, layout.order_file(order_id)))
    if review is not None and review.model is not None:
        batch.apply_review(review.model, display(layout, layout.review_file(order_id)))
    return batch


def mint_order(
    layout: Layout,
    order_id: str,
    *,
    exchange: Exchange | None = None,
    force_dry_run: bool = False,
    previous: chains.Previous = chains.AUTO,
    planned: Mapping[str, str] | None = None,
) -> MintArtefact:
    """Mint one order: write `build/<order>/mint.json` and log every attempt to the mint ledger.

    Blocked and rejected orders return normally with their status; only an
    unknown order id or a foundry failure raises. With `force_dry_run` (the
    CLI's `--dry-run`) everything is computed and logged with `dry_run: true`,
    but no artefact is written, so the order's build is left as it was.
    `previous`: the previous order of the recipe's chain, when the caller knows it.
    `planned`: the content identity the graph's plan recorded for the inputs (see
    `forge.snapshot`): when an input was read with other bytes, the order is
    rejected with one line per such file instead of minted from a mix, its inputs
    recorded as unknown so the next build mints it again; an order file deleted
    since is rejected as missing.
    """
    ex = exchange or Exchange(layout)
    try:
        path = layout.order_file(check_order_id(order_id))
    except UnsafeIdError as exc:
        raise FoundryError("", [Problem(order_id[:80], "order_id", str(exc))]) from None
    if planned is None and not safe_read.present(path):
        raise FoundryError("", [Problem(display(layout, path), "-", "no such order")])
    before = chains.resolve_previous(ex, order_id, previous)
    inputs = mint_inputs(layout, ex, order_id, previous=before)
    ctx = _Context()
    try:
        batch = _compose(layout, ex, order_id, force_dry_run, ctx, before)
    except Refused as refused:
        doc = _refused_artefact(order_id, ctx, refused).model_dump(mode="json")
    else:
        doc = _built_artefact(order_id, ctx, batch)
    read = dict(sorted(input_digests(layout, inputs, ex.max_bytes, ex).items()))
    changed = changed_inputs(layout, planned, read) if planned is not None else []
    if changed:
        problems = [Problem(path, "-", CHANGED) for path in changed]
        mixed = Refused("rejected", "an input changed during the build", problems)
        doc = _refused_artefact(order_id, ctx, mixed).model_dump(mode="json")
        read = {k: None if k in changed else v for k, v in read.items()}
    doc["inputs"] = read
    # its bytes from the plain data: what `model_dump` would give, without a model per Alfa
    artefact = _artefact_model(doc)
    if not force_dry_run:
        path = layout.mint_artefact(order_id)
        data = dumps_canonical(doc)
        write_atomic(path, data)
        # every dict of `doc` is in sorted order, as a parse of `data` gives it: the model
        # equals that parse, and the rituals and the report read these bytes next
        parsed.remember(MintArtefact, path, data, artefact)
    Ledger(layout.mint_ledger).append(mint_record_data(artefact))
    return artefact


def _artefact_model(doc: dict[str, Any]) -> MintArtefact:
    """The model of the artefact `doc`, every field present: its fields validated, but for
    its Alfas, which the batch made each field of (ids from the order id and slots,
    parameters from the recipe's domains, literal shares and outcomes, text reasons): their
    models are made from the same data unchecked, a quarter of what validating them costs.
    A process that reads the file back validates it whole (`read_mint`)."""
    alfas = doc["alfas"]
    if not alfas:
        return MintArtefact.model_validate(doc)
    head = MintArtefact.model_validate({**doc, "alfas": []})
    return head.model_copy(update={"alfas": [_alfa_model(a) for a in alfas]})


#: What `Alfa.model_validate` of a whole Alfa notes as set: every field.
_ALFA_FIELDS = frozenset(Alfa.model_fields)


#: The slots a model instance keeps its state in (pydantic's `BaseModel.__slots__`), set
#: through their descriptors: `object.__setattr__` looks each name up on the type first.
_SET_DICT = BaseModel.__dict__["__dict__"].__set__
_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def _alfa_model(data: dict[str, Any]) -> Alfa:
    """`Alfa.model_construct(**data)` for data with every field, without its per-field loop:
    the instance attributes a validated model has, `data` itself as its fields."""
    alfa = object.__new__(Alfa)
    _SET_DICT(alfa, data)
    _SET_FIELDS_SET(alfa, set(_ALFA_FIELDS))
    _SET_EXTRA(alfa, None)
    _SET_PRIVATE(alfa, None)
    return alfa


def _refused_artefact(order_id: str, ctx: _Context, refused: Refused) -> MintArtefact:
    order, recipe = ctx.order, ctx.recipe
    return MintArtefact(
        schema_version=SCHEMA_VERSION,
        order_id=order_id,
        recipe=order.recipe if order else None,
        recipe_version=recipe.version if recipe else None,
        phase=order.phase if order else None,
        status=refused.status,
        reason=refused.reason,
        dry_run=ctx.dry_run,
        seed=order.seed if order else None,
        batch_size=order.batch_size if order else 0,
        target=ctx.target,
        achieved=ShareCounts(),
        problems=_problem_models(refused.problems),
    )


def _built_artefact(order_id: str, ctx: _Context, batch: _Batch) -> dict[str, Any]:
    """The artefact of a composed batch as plain data, every field present (see `mint_order`)."""
    alfas = batch.alfas()
    waiting = sum(1 for chain in batch.slots if chain[-1]["outcome"] == "quarantined")
    empty = sum(1 for chain in batch.slots if chain[-1]["outcome"] == "rejected")
    status: OrderStatus
    if ctx.dry_run:
        status, reason = "dry-run", "dry run: nothing enters the roster, the pool or the doctrine"
    elif waiting:
        status, reason = "awaiting-review", f"{waiting} quarantined Alfa(s) await review"
    else:
        status, reason = "built", ""
    if empty:
        reason = "; ".join(filter(None, [reason, f"{empty} slot(s) left empty by review"]))
    return {
        "schema_version": SCHEMA_VERSION,
        "order_id": order_id,
        "recipe": batch.recipe.recipe_id,
        "recipe_version": batch.recipe.version,
        "phase": batch.order.phase,
        "status": status,
        "reason": reason,
        "dry_run": ctx.dry_run,
        "seed": batch.order.seed,
        "batch_size": batch.order.batch_size,
        "target": batch.target.model_dump(),
        "achieved": batch.achieved().model_dump(),
        "alfas": alfas,
        "problems": [],
        "inputs": {},
        "hand_on": None if batch.hand_on is None else batch.hand_on.model_dump(),
    }


def mint_records(artefact: MintArtefact) -> list[MintRecord]:
    """The mint ledger lines of one attempt: one per Alfa, or one for a refused order."""
    return [MintRecord.model_validate(record) for record in mint_record_data(artefact)]


def mint_record_data(artefact: MintArtefact) -> list[dict[str, Any]]:
    """`mint_records` as the plain data the ledger writes, every field present.

    Made of the artefact's validated values, the run id and the time, so the
    ledger needs no model per line.
    """
    common: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "mint",
        "run_id": run_id(),
        "time": utc_now(),
        "order_id": artefact.order_id,
        "seed": artefact.seed,
        "recipe": artefact.recipe,
        "recipe_version": artefact.recipe_version,
        "dry_run": artefact.dry_run,
    }
    if artefact.status in ("blocked", "rejected"):
        reasons = [
            artefact.reason,
            *(f"{p.path}: {p.field}: {p.reason}" for p in artefact.problems),
        ]
        return [
            {
                **common,
                "alfa_id": None,
                "share": None,
                "outcome": artefact.status,
                "reasons": [r for r in reasons if r],
            }
        ]
    # each Alfa's line with its keys in sorted order, as the ledger writes them: its
    # encoder's sort then finds them in place (1,700 instructions a line less)
    run, time, dry_run = common["run_id"], common["time"], artefact.dry_run
    order_id, seed, recipe, version = (
        artefact.order_id,
        artefact.seed,
        artefact.recipe,
        artefact.recipe_version,
    )
    return [
        {
            "alfa_id": a["alfa_id"],
            "dry_run": dry_run,
            "kind": "mint",
            "order_id": order_id,
            "outcome": LEDGER_OUTCOME[a["outcome"]],
            "reasons": list(a["reasons"]),
            "recipe": recipe,
            "recipe_version": version,
            "run_id": run,
            "schema_version": SCHEMA_VERSION,
            "seed": seed,
            "share": a["share"],
            "time": time,
        }
        for a in map(vars, artefact.alfas)  # each model's fields, read as a dict's items
    ]


def read_mint(layout: Layout, order_id: str) -> MintArtefact | None:
    """The order's mint artefact, or None when it was never minted."""
    path = layout.mint_artefact(order_id)
    try:
        data = read_whole(path)
    except FileNotFoundError:
        return None
    try:
        return parsed.parse(MintArtefact, path, data)
    except (ValidationError, ValueError) as exc:
        raise FoundryError(f"{display(layout, path)}: -: cannot be read: {exc}") from None
