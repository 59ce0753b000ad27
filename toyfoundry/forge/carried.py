"""Carryover positions ahead of a recipe's novel cursor, gathered along its chain files.

A carryover Alfa lands anywhere in the recipe's novel sequence, usually far ahead of
the cursor, which reaches it only after thousands of orders. Novel draws must pass
over it, so every order has to know every such position its recipe's earlier orders
minted. Rather than hand the whole list on in each `chain.json` (a file that grew
with the recipe's history, read and rewritten by every order), each chain lists only
the positions its own order carried, and names the chain it was advanced from with
the sha256 of that file's bytes. The set an order needs is the union along those
links back to the recipe's first order, or to the last change of its parameter space.

The links make a hash chain: a chain file's bytes fix its parent's bytes, hence the
whole history before it, so a set gathered for some bytes is right for the same bytes
in any project. A process keeps the set of the last chain it gathered for each recipe
and extends it by one link per order in a serial build (and by a few in a worker that
gets every few orders of a recipe). Only the first order a process mints of a recipe
reads the earlier chain files, once: a cold build of one new order reads its recipe's
chain files, a small fixed-size file per order.
"""

from __future__ import annotations

import hashlib
import itertools
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass

import orjson

from toyfoundry import caches
from toyfoundry.errors import FoundryError
from toyfoundry.exchange.loader import display
from toyfoundry.forge.chain import digest_of
from toyfoundry.formats.models import Chain
from toyfoundry.store.atomic import read_whole
from toyfoundry.store.layout import Layout


class Positions(Set[int]):
    """A set of carried positions, held as a sorted array of 8-byte integers.

    A worker keeps one per recipe (`ahead`): at 10,000 orders some 43,000 positions each,
    about 3.4 MB as a Python set of int objects and 0.35 MB here, room for the build's
    third worker. New positions wait in a small set until there are `MERGE_AT` of them.
    The mint reads it in order from the cursor (`upcoming`), a step per position, not a
    search per position.
    """

    #: Positions added before they are merged into the sorted array.
    MERGE_AT = 2048

    def __init__(self) -> None:
        self._sorted = array("q")
        self._recent: set[int] = set()

    def __contains__(self, position: object) -> bool:
        if not isinstance(position, int):
            return False
        if position in self._recent:
            return True
        held = self._sorted
        at = bisect_left(held, position)
        return at < len(held) and held[at] == position

    def __iter__(self) -> Iterator[int]:
        self._merge()
        return iter(self._sorted)

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add_all(self, positions: Iterable[int]) -> None:
        recent = self._recent
        for position in positions:
            if position not in self:
                recent.add(position)
        if len(recent) >= self.MERGE_AT:
            self._merge()

    def drop_below(self, cursor: int) -> None:
        """Forget the positions the cursor has passed."""
        del self._sorted[: bisect_left(self._sorted, cursor)]
        self._recent = {p for p in self._recent if p >= cursor}

    def count_below(self, cursor: int) -> int:
        self._merge()
        return bisect_left(self._sorted, cursor)

    def upcoming(self, cursor: int) -> Iterator[int]:
        """The positions at or beyond `cursor`, in order."""
        self._merge()
        held = self._sorted
        return itertools.islice(held, bisect_left(held, cursor), None)

    def _merge(self) -> None:
        if self._recent:
            self._sorted = array("q", sorted(itertools.chain(self._sorted, self._recent)))
            self._recent = set()


#: An empty set of positions, for a chain that starts a parameter space (never changed).
NONE = Positions()


@dataclass
class _Frontier:
    """The carried positions at or beyond `cursor` of the chain whose bytes hash to `sha256`."""

    sha256: str
    space: str
    cursor: int
    positions: Positions


@dataclass
class _Ancestor:
    """The fields of an earlier chain file that the walk needs."""

    carried: list[int]
    parent: tuple[str, str] | None


#: The `frontiers` cache (`toyfoundry.caches`), of at most this many recipes: recipe ->
#: the set last gathered for one of its chains. Its set is extended in place, so a
#: caller reads the set it was given before it asks again for the same recipe.
_RECIPES_KEPT = 64


def ahead(layout: Layout, chain: Chain, data: bytes, digest: str | None = None) -> Positions:
    """Every position at or beyond `chain.cursor` minted as carryover by the chain's orders.

    `data` are the bytes `chain` was read from, `digest` their sha256 if at hand. The set
    is read-only and stays valid until the next call for the same recipe. Raises
    `FoundryError` when an earlier chain file is missing or no longer holds the bytes its
    successor was made from (the graph rebuilds such a successor before anything reads it).
    """
    if digest is None:
        digest = digest_of(data)
    frontiers: dict[str, _Frontier] = caches.current().table("frontiers")
    known = frontiers.get(chain.recipe)
    if known is not None and known.sha256 == digest and known.space == chain.space:
        return known.positions
    links = [chain.carried]
    base: _Frontier | None = None
    parent = None if chain.parent is None else (chain.parent.order, chain.parent.sha256)
    # the first chain of a parameter space has no parent: nothing before it counts
    while parent is not None:
        order_id, parent_sha256 = parent
        if known is not None and known.sha256 == parent_sha256 and known.space == chain.space:
            base = known
            break
        ancestor = _read_parent(layout, order_id, parent_sha256)
        links.append(ancestor.carried)
        parent = ancestor.parent
    cursor = chain.cursor
    if base is None:
        positions = Positions()
    else:
        # the cursor moves by about a batch an order: drop what it passed, in place
        positions = base.positions
        positions.drop_below(cursor)
    # one call: a cold walk's thousands of links then merge into the array once
    positions.add_all(p for carried in links for p in carried if p >= cursor)
    if len(frontiers) >= _RECIPES_KEPT and chain.recipe not in frontiers:
        frontiers.clear()
    frontiers[chain.recipe] = _Frontier(digest, chain.space, cursor, positions)
    return positions


#: Where the fields after the ones the walk reads begin in a canonical chain file: its
#: keys are sorted, so `carried` and `parent` come before the pool, most of its bytes.
_POOL = b'\n  "pool": '


def _read_parent(layout: Layout, order_id: str, sha256: str) -> _Ancestor:
    """An earlier chain file's links, checked against the digest its successor recorded.

    Written by the foundry and fixed by that digest, so a parse of the fields before
    the pool (the file's first lines, in the canonical form) serves where a model would
    validate the whole pool again.
    """
    path = layout.chain_file(order_id)
    try:
        data = read_whole(path)
    except OSError as exc:
        raise FoundryError(
            f"{display(layout, path)}: -: an earlier chain of the recipe cannot be read"
            f" ({exc.strerror or exc}); rebuild its orders (`toyfoundry build`)"
        ) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise FoundryError(
            f"{display(layout, path)}: -: has changed since the next order of its recipe was"
            " built from it; rebuild the recipe's later orders (`toyfoundry build`)"
        )
    end = data.find(_POOL)
    head = data if end < 0 else data[:end].rstrip(b",") + b"\n}"
    try:
        doc = orjson.loads(head)
        link = doc.get("parent")
        ancestor = _Ancestor(
            carried=doc.get("carried", []),
            parent=None if link is None else (link["order"], link["sha256"]),
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        ancestor = None
    if (
        ancestor is None
        or not isinstance(ancestor.carried, list)
        or not all(isinstance(p, int) for p in ancestor.carried)
        or not (ancestor.parent is None or all(isinstance(x, str) for x in ancestor.parent))
    ):
        raise FoundryError(f"{display(layout, path)}: -: is not a chain file")
    return ancestor
