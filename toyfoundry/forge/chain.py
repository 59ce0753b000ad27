"""History and pool per recipe: what each order hands on to the next order of its recipe.

The orders of one recipe form a chain in order-id order. Every order file that
parses into an `Order` belongs to its recipe's chain, even when the foundry's
rules then reject it (it passes the chain on unchanged); a file that does not
parse belongs to no chain. Order k's rituals write `build/<k>/chain.json`, which
order k+1's mint starts from, so each order depends on one small file instead of
every earlier artefact. The first order of a recipe starts from a genesis chain
computed from the recipe.

If a recipe's parameter definitions change, its space key changes and the novel
sequence starts again from position 0 (the pool and the history digest carry on):
novelty is defined within one parameter space.

Each chain names the chain file it was advanced from and the sha256 of its bytes
(`parent`), and lists only its own order's carryover positions ahead of the cursor
(`carried`): the file's size does not grow with the recipe's history, and the
positions of every earlier order are gathered along the links (`carried.py`).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Literal, Protocol

import orjson
from pydantic import ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.exchange.loader import Exchange, display
from toyfoundry.forge.space import Space
from toyfoundry.formats import parsed
from toyfoundry.formats.models import (
    SCHEMA_VERSION,
    Alfa,
    Chain,
    ChainParent,
    HandOn,
    PoolEntry,
    Recipe,
)
from toyfoundry.formats.review_key import is_replacement
from toyfoundry.store.atomic import read_whole
from toyfoundry.store.layout import Layout


class Auto(enum.Enum):
    """Marks "find the previous order yourself" apart from None ("this order is the first")."""

    AUTO = "auto"


AUTO = Auto.AUTO
#: `atomic.dumps_canonical`'s options: sorted keys, two-space indent
_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
#: A previous order id as the graph's plan knows it, None for a recipe's first order, or AUTO.
Previous = str | None | Literal[Auto.AUTO]


def resolve_previous(exchange: Exchange, order_id: str, previous: Previous) -> str | None:
    return previous_order(exchange, order_id) if previous is AUTO else previous


def previous_order(exchange: Exchange, order_id: str) -> str | None:
    """The chain member before `order_id` in its recipe's chain; None for the first or a non-member."""
    loaded = exchange.order(order_id)
    if loaded.model is None:
        return None
    recipe = loaded.model.recipe
    for other in reversed(exchange.order_ids()):
        if other >= order_id:
            continue
        model = exchange.order(other).model
        if model is not None and model.recipe == recipe:
            return other
    return None


def genesis(recipe_id: str, space: str) -> Chain:
    """The chain before a recipe's first order: nothing drawn, nothing promoted."""
    history = hashlib.sha256(f"genesis\n{recipe_id}\n{space}".encode()).hexdigest()
    return Chain(
        schema_version=SCHEMA_VERSION,
        recipe=recipe_id,
        space=space,
        cursor=0,
        history=history,
        orders=0,
    )


def orphan_space(recipe_id: str) -> str:
    """A stand-in space key for a recipe that cannot be loaded (its orders pass a chain on anyway)."""
    return hashlib.sha256(f"unknown recipe\n{recipe_id}".encode()).hexdigest()


def read_chain(layout: Layout, order_id: str) -> Chain:
    """The chain an order left; a missing or unreadable file is a foundry failure, not bad input."""
    return read_chain_data(layout, order_id)[0]


def read_chain_data(layout: Layout, order_id: str) -> tuple[Chain, bytes]:
    """`read_chain`, and the file's bytes.

    The next order's mint and rituals both read the chain: bytes already
    validated in this process give back the same (immutable) model.
    """
    path = layout.chain_file(order_id)
    try:
        data = read_whole(path)
        chain = parsed.parse(Chain, path, data)
    except FileNotFoundError:
        raise FoundryError(
            f"{display(layout, path)}: -: order {order_id} has not handed on its chain yet;"
            " run `toyfoundry build`"
        ) from None
    except (OSError, ValidationError, ValueError) as exc:
        raise FoundryError(f"{display(layout, path)}: -: cannot be read: {exc}") from None
    return chain, data


def start_chain(
    layout: Layout,
    exchange: Exchange,
    order_id: str,
    recipe_id: str,
    space: str,
    previous: Previous = AUTO,
) -> tuple[Chain, bytes | None]:
    """The chain an order starts from, and the bytes it was read from (None: genesis)."""
    previous = resolve_previous(exchange, order_id, previous)
    if previous is None:
        return genesis(recipe_id, space), None
    chain, data = read_chain_data(layout, previous)
    # the bytes the mint used, as the exchange's reads are: its inputs' digests take them
    path = layout.chain_file(previous)
    exchange.digests[path] = digest_of(data, path)
    return chain, data


def start_cursor(chain: Chain, space: str) -> int:
    """The novel sequence's cursor: back to 0 when the recipe's space changed."""
    return chain.cursor if chain.space == space else 0


def canonical_params(params: object) -> bytes:
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS)


def advance(
    prev: Chain,
    space: Space,
    order_id: str,
    alfas: Sequence[Alfa],
    parent: ChainParent | None,
    hand_on: HandOn | None = None,
    pool: list[PoolEntry] | None = None,
) -> Chain:
    """The chain after an order that minted for real: cursor, carried and history move on.

    `hand_on`: what the mint fixed before the batch's review (see `mint`): the cursor
    past the novel draws and their reroll reserve, and the carried positions ahead of
    it (carryovers and the mutations kept for their rerolls). Without it (an artefact
    from before), the cursor moves past every novel draw and the carryovers at or
    beyond it are carried. A reroll's replacement that lies at or beyond the cursor
    and was not kept (a novel one drawn from the end of the sequence once the reserve
    ran out, a carryover one past the kept mutations) is carried too: the one case
    where a review decision changes the chain. The earlier orders' carried positions
    are in the chains `parent` leads back to (see `carried`). The history digest
    covers the batch as composed, replacements left out, so it does not depend on the
    review either. Baselines move nothing: novel draws skip them by value. `parent`:
    the file `prev` was read from, None for a recipe's genesis chain. The link is kept
    only within one parameter space: the first chain of a new space has none, since
    nothing before it counts for novelty. `pool`: the pool handed on (the rituals'
    promotions merged in), by default `prev`'s.
    """
    cursor = start_cursor(prev, space.key)
    if prev.space != space.key:
        parent = None
    ids = [a.alfa_id for a in alfas]
    composed: Sequence[Alfa] = alfas
    replacements: list[Alfa] = []
    if "r" in "".join(ids):  # only a replacement's id has an "r" (most batches have none)
        composed = [a for a in alfas if not is_replacement(a.alfa_id)]
        replacements = [a for a in alfas if is_replacement(a.alfa_id)]
        ids = [a.alfa_id for a in composed]
    carried: set[int] = set()
    if hand_on is not None:
        new_cursor = max(cursor, hand_on.cursor)
        carried.update(p for p in hand_on.carried if p >= new_cursor)
    else:
        novel = [space.position(a.params) for a in composed if a.share == "novel"]
        drawn = [p for p in novel if p is not None]
        new_cursor = max([cursor, *(p + 1 for p in drawn)])
        for alfa in composed:
            if alfa.share == "carryover":
                position = space.position(alfa.params)
                if position is not None and position >= new_cursor:
                    carried.add(position)
    for alfa in replacements:
        if alfa.share != "baseline":
            position = space.position(alfa.params)
            if position is not None and position >= new_cursor:
                carried.add(position)
    digest = hashlib.sha256()
    digest.update(prev.history.encode() + b"\n" + order_id.encode() + b"\n")
    # [[alfa id, params], ...]: orjson writes a pair as the list it stands for
    digest.update(canonical_params(list(zip(ids, [a.params for a in composed], strict=True))))
    return Chain(
        schema_version=SCHEMA_VERSION,
        recipe=prev.recipe,
        space=space.key,
        cursor=new_cursor,
        carried=sorted(carried),
        parent=parent,
        history=digest.hexdigest(),
        orders=prev.orders + 1,
        last_order=order_id,
        pool=list(prev.pool) if pool is None else pool,
    )


def encode(chain: Chain) -> bytes:
    """A chain file's bytes: `atomic.dumps_canonical(chain)`, made by orjson from the
    models' fields (`vars`), without a dump of the model first (which cost four times the
    serialisation: the pool's parameters are a union of types, tried in turn)."""
    return orjson.dumps(chain, default=vars, option=_CANONICAL) + b"\n"


def parent_of(previous: str | None, data: bytes) -> ChainParent | None:
    """The link from an order's chain to the one it was advanced from (None: from genesis)."""
    if previous is None:
        return None
    return ChainParent(order=previous, sha256=digest_of(data))


def digest_of(data: bytes, path: Path | None = None) -> str:
    """sha256 of a chain file's bytes: its link, and its digest among the mint's inputs.
    With the `path` they were read from, remembered (`parsed.sha256_of`): the next order's
    mint and rituals both take it."""
    return hashlib.sha256(data).hexdigest() if path is None else parsed.sha256_of(path, data)


class Ranked(Protocol):
    """What the pool is ranked by: a `PoolEntry`, or a promotion not made one yet."""

    @property
    def alfa_id(self) -> str: ...

    @property
    def score(self) -> float: ...


def merge_pool(pool: Iterable[Ranked], promoted: Iterable[Ranked], recipe: Recipe) -> list[Ranked]:
    """The pool after a promotion: best first by (-score, alfa id), at most the recipe's limit."""
    merged = {e.alfa_id: e for e in pool}
    merged.update((e.alfa_id, e) for e in promoted)
    # by score, best first, ties by id: a stable sort by score of the entries sorted by id
    ranked = sorted(merged.values(), key=attrgetter("alfa_id"))
    ranked.sort(key=attrgetter("score"), reverse=True)
    return ranked[: recipe.promotion.pool_limit]
