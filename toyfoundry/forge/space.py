"""A recipe's parameter space as integers, and the keyed permutation that orders novel draws.

Every complete parameter set of a recipe is one integer in [0, S): a mixed-radix
number whose digits are the parameters' domain indexes, in the recipe's
parameter order (the last parameter is the least significant digit).

Novel Alfas are drawn along a keyed pseudo-random permutation of [0, S): a
balanced Feistel network over the next even power of two, cycle-walked back into
[0, S). Position p of the sequence holds index `at(p)`; `position(i)` inverts it.
An order only has to remember how far along the sequence its recipe has got (the
chain's cursor) to know which permutations were never minted, without listing
them: the sequence visits every permutation exactly once, in an order that looks
random but depends only on the recipe.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import cast

import orjson

from toyfoundry import caches
from toyfoundry.formats.models import FloatParam, ParamValue, Recipe
from toyfoundry.formats.params import Domain, cardinality, domain_of

#: Feistel rounds (`Permutation._encrypt` and `_decrypt` write them out).
ROUNDS = 6
#: Widest half (in bits) whose round values a permutation remembers in full: 6 tables of
#: 2^14 eight-byte slots at most (768 KiB, each value one of `_halves()`'s ints); the recipes
#: seen have halves of 14 bits or less.
#: At most 16: `Permutation._fill` hashes a half as 6 zero bytes and two of its own, and
#: reads its round value from two bytes of the hash.
TABLE_BITS = 14
#: A round value not computed yet (every round value is below 2^TABLE_BITS).
_UNSET = (1 << 64) - 1
#: Widest domain whose values a `Space` lists in full (`params` then indexes a list).
LISTED_VALUES = 1024
#: Most (position, element) pairs a permutation remembers, then it starts afresh: enough
#: for the rituals to find what the mint of the same order drew, a few hundred pairs.
MEMO_LIMIT = 1 << 12
Params = dict[str, ParamValue]
Hasher = Callable[[bytes], "hashlib._Hash"]


def _one_block_hasher() -> Hasher:
    """CPython's own sha256 (`_sha256`; `_sha2` from 3.12) when there is one, else hashlib's:
    the same digests. For a message of one block (a round value, a generator's seed) the
    hashing is the lesser part: a copy and a digest of hashlib's allocate and free OpenSSL
    contexts, about 1,300 instructions of a round value's 5,000."""
    for name in ("_sha256", "_sha2"):
        try:
            return cast(Hasher, importlib.import_module(name).sha256)
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


#: sha256 for short messages: the rounds' values, the mint's generators' seeds.
one_block_sha256 = _one_block_hasher()


def space_key(recipe: Recipe) -> str:
    """sha256 of the recipe id and its parameter definitions, in order: the chain's `space`."""
    definitions = [[name, spec.model_dump(mode="json")] for name, spec in recipe.parameters.items()]
    payload = orjson.dumps([recipe.recipe_id, definitions], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


class Permutation:
    """A keyed bijection of [0, size): Feistel rounds on 2^bits, cycle-walked into range.

    Pairs already computed are remembered both ways (up to `MEMO_LIMIT` of them), so
    the position of an element `at` gave costs no rounds: the rituals and the chain
    ask for the positions the mint just drew. Each round's value of a half is a sha256
    of the key, the round and the half, so a half of at most `TABLE_BITS` bits takes
    few values, met again and again over a recipe's draws: each is hashed once and kept
    in that round's table.
    """

    def __init__(self, key: bytes, size: int) -> None:
        if size < 1:
            raise ValueError("a permutation needs at least one element")
        self.size = size
        bits = max(2, (size - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        # round r of value v: the first 8 bytes of sha256(key, r, v as 8 bytes), masked;
        # the hash state after key and r is kept, so a round only hashes its value
        keyed = one_block_sha256(key)
        self._rounds = []
        for number in range(ROUNDS):
            h = keyed.copy()
            h.update(bytes((number,)))
            self._rounds.append(h)
        self._element: dict[int, int] = {}
        self._position: dict[int, int] = {}
        # round r's value of each half, `_UNSET` until computed (None: halves too wide)
        # (lists, not arrays of 8-byte ints: a list's item is read without an int made, six
        # times a draw, and each value is an int of `_halves()`, so a slot costs 8 bytes alike)
        self._tables: list[list[int]] | None = (
            [[_UNSET] * (1 << self.half) for _ in range(ROUNDS)]
            if self.half <= TABLE_BITS
            else None
        )
        # a tabled half is below 2^16: its 8 bytes are 6 zeros, hashed into the tables' own
        # states, and two bytes, taken from a list made once a process (`_fill`)
        self._tabled = []
        self._pairs: list[bytes] = []
        self._halves: list[int] = []
        if self._tables is not None:
            for h in self._rounds:
                h = h.copy()
                h.update(bytes(6))
                self._tabled.append(h)
            self._pairs, self._halves = _halves()

    def _round(self, number: int, value: int) -> int:
        """Round `number`'s value of a half: the first 8 bytes of its hash, masked."""
        h = self._rounds[number].copy()
        h.update(value.to_bytes(8, "big"))
        return int.from_bytes(h.digest()[:8], "big") & self.mask

    def _fill(self, number: int, value: int) -> int:
        """`_round`, kept in its table: most of a build's rounds are first seen by a draw (a
        serial W(300) hashes about 3 in 4 of the rounds its draws take). A tabled half has at
        most `TABLE_BITS` bits, so its round value is the last two of the first 8 bytes,
        masked: two bytes read where an int was made of a slice of eight."""
        h = self._tabled[number].copy()
        h.update(self._pairs[value])
        digest = h.digest()
        found = self._halves[(digest[6] << 8 | digest[7]) & self.mask]
        self._tables[number][value] = found  # type: ignore[index]
        return found

    def _encrypt(self, x: int) -> int:
        half, mask, tables = self.half, self.mask, self._tables
        if tables is None:
            left, right = x >> half, x & mask
            for number in range(ROUNDS):
                left, right = right, left ^ self._round(number, right)
            return (left << half) | right
        # the six rounds written out, the halves taking turns: no pair made or unpacked a
        # round (a round value is at most `mask`; above it is `_UNSET`)
        t0, t1, t2, t3, t4, t5 = tables
        a, b = x >> half, x & mask
        v = t0[b]
        a ^= v if v <= mask else self._fill(0, b)
        v = t1[a]
        b ^= v if v <= mask else self._fill(1, a)
        v = t2[b]
        a ^= v if v <= mask else self._fill(2, b)
        v = t3[a]
        b ^= v if v <= mask else self._fill(3, a)
        v = t4[b]
        a ^= v if v <= mask else self._fill(4, b)
        v = t5[a]
        b ^= v if v <= mask else self._fill(5, a)
        return (a << half) | b

    def _decrypt(self, x: int) -> int:
        half, mask, tables = self.half, self.mask, self._tables
        if tables is None:
            left, right = x >> half, x & mask
            for number in reversed(range(ROUNDS)):
                left, right = right ^ self._round(number, left), left
            return (left << half) | right
        t0, t1, t2, t3, t4, t5 = tables  # `_encrypt`'s rounds undone, last first
        a, b = x >> half, x & mask
        v = t5[a]
        b ^= v if v <= mask else self._fill(5, a)
        v = t4[b]
        a ^= v if v <= mask else self._fill(4, b)
        v = t3[a]
        b ^= v if v <= mask else self._fill(3, a)
        v = t2[b]
        a ^= v if v <= mask else self._fill(2, b)
        v = t1[a]
        b ^= v if v <= mask else self._fill(1, a)
        v = t0[b]
        a ^= v if v <= mask else self._fill(0, b)
        return (a << half) | b

    def _remember(self, position: int, element: int) -> None:
        if len(self._element) >= MEMO_LIMIT:
            self._element.clear()
            self._position.clear()
        self._element[position] = element
        self._position[element] = position

    def at(self, position: int) -> int:
        """The element at `position` of the sequence."""
        x = self._element.get(position)  # only positions in range are remembered
        if x is not None:
            return x
        size = self.size
        if not 0 <= position < size:
            raise IndexError(position)
        encrypt = self._encrypt
        x = encrypt(position)
        while x >= size:
            x = encrypt(x)
        element = self._element  # `_remember`, inline: most of a build's draws are new
        if len(element) >= MEMO_LIMIT:
            element.clear()
            self._position.clear()
        element[position] = x
        self._position[x] = position
        return x

    def position(self, element: int) -> int:
        """Where `element` sits in the sequence: the inverse of `at`."""
        if not 0 <= element < self.size:
            raise IndexError(element)
        x = self._position.get(element)
        if x is not None:
            return x
        x = self._decrypt(element)
        while x >= self.size:
            x = self._decrypt(x)
        self._remember(x, element)
        return x


#: `_halves()`: every half below 2^TABLE_BITS as two big-endian bytes, and as an int.
_PAIRS: list[bytes] = []
_HALVES: list[int] = []


def _halves() -> tuple[list[bytes], list[int]]:
    """`_PAIRS` and `_HALVES`, made by the process's first permutation with tables (16,384
    small bytes and as many ints, 1.2 MB): a round value's hash takes its half's bytes from
    a list, and every table keeps the same int objects as its values."""
    if not _PAIRS:
        _HALVES.extend(range(1 << TABLE_BITS))
        _PAIRS.extend(value.to_bytes(2, "big") for value in _HALVES)
    return _PAIRS, _HALVES


def permutation(key: str, size: int) -> Permutation:
    """The permutation of a space key and size, shared by every `Space` of this process."""
    permutations: dict[tuple[str, int], Permutation] = caches.current().table("permutations")
    found = permutations.get((key, size))
    if found is None:
        if len(permutations) >= 64:
            permutations.clear()
        found = permutations[(key, size)] = Permutation(bytes.fromhex(key), size)
    return found


def space_of(recipe: Recipe) -> Space:
    """The `Space` of a recipe model, made once for this model while the `spaces` cache keeps
    it: the exchange gives the same model for the same recipe bytes, so the orders of a
    recipe share one (its space key, domains and value lists made once)."""
    spaces: dict[int, Space] = caches.current().table("spaces")
    found = spaces.get(id(recipe))
    if found is None or found.recipe is not recipe:  # an id is only unique while alive
        if len(spaces) >= 64:
            spaces.clear()
        found = spaces[id(recipe)] = Space(recipe)
    return found


def _fragment(name: str, value: ParamValue) -> bytes:
    """`"name":value` as `orjson.dumps` writes a dict's item (compact)."""
    return orjson.dumps(name) + b":" + orjson.dumps(value)


class _Unlisted:
    """A domain too wide to list, indexed as a list of its values is: `value_at` on demand."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain

    def __getitem__(self, index: int) -> ParamValue:
        return self.domain.value_at(index)


class Space:
    """The parameter space of one recipe: params <-> index <-> sequence position."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.names = list(recipe.parameters)
        self.specs = [recipe.parameters[n] for n in self.names]
        self.radices = [cardinality(s) for s in self.specs]
        self.domains = [domain_of(s) for s in self.specs]
        size = 1
        for radix in self.radices:
            size *= radix
        self.size = size
        self.key = space_key(recipe)
        self._names = frozenset(self.names)
        # each digit as (name, place value, radix, the value of a digit), in the recipe's order:
        # a domain of at most LISTED_VALUES values is listed, so a value is an index into it
        places = [1] * len(self.radices)
        for i in range(len(places) - 2, -1, -1):
            places[i] = places[i + 1] * self.radices[i + 1]
        self._ordered: list[tuple[str, int, int, list[ParamValue] | _Unlisted]] = [
            (
                name,
                place,
                radix,
                [domain.value_at(i) for i in range(radix)]
                if radix <= LISTED_VALUES
                else _Unlisted(domain),
            )
            for name, place, radix, domain in zip(
                self.names, places, self.radices, self.domains, strict=True
            )
        ]
        #: each digit as (name, place value, radix, its values), in the recipe's order
        self.digits = self._ordered
        self._digits = list(zip(self.names, self.domains, self.radices, strict=True))
        # the same digits by name: a parameter set in the sorted order JSON gives it
        self._by_name = sorted(self._ordered, key=lambda digit: digit[0])
        # and each listed value as its `"name":value` in compact JSON: a drawn set's canonical
        # bytes (None: a domain too wide to list)
        self._keyed: list[tuple[str, int, int, list[ParamValue], list[bytes]]] | None = None
        if all(isinstance(values, list) for *_, values in self._by_name):
            self._keyed = [
                (name, place, radix, values, [_fragment(name, v) for v in values])
                for name, place, radix, values in self._by_name
                if isinstance(values, list)
            ]

    @cached_property
    def permutation(self) -> Permutation:
        return permutation(self.key, self.size)

    def params(self, index: int) -> Params:
        """The parameter set of an index."""
        # a loop, not a comprehension: no function made and called for each parameter set
        out = {}
        for name, place, radix, values in self._ordered:
            out[name] = values[index // place % radix]
        return out

    def sorted_params(self, index: int) -> Params:
        """`params`, its names in sorted order (as an artefact holds them)."""
        out = {}
        for name, place, radix, values in self._by_name:
            out[name] = values[index // place % radix]
        return out

    def keyed_params(self, index: int) -> tuple[Params, bytes]:
        """`sorted_params` and its canonical bytes (`chain.canonical_params`: compact JSON,
        sorted keys), made in one pass from each value's JSON, where a dump of the set cost
        3,300 instructions."""
        keyed = self._keyed
        if keyed is None:
            params = self.sorted_params(index)
            return params, orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
        out = {}
        parts = []
        for name, place, radix, values, texts in keyed:
            digit = index // place % radix
            out[name] = values[digit]
            parts.append(texts[digit])
        return out, b"{" + b",".join(parts) + b"}"

    @cached_property
    def values_fit(self) -> bool:
        """Whether every value `params` makes lies in its domain by `index_of`: an int or enum
        value always does, a float value only when `value_at` gives it on its domain's grid
        (a step with more decimals than it rounds to may miss), so each listed float value is
        tried once; a domain too wide to list is not, and says False."""
        for spec, domain, radix in zip(self.specs, self.domains, self.radices, strict=True):
            if not isinstance(spec, FloatParam):
                continue
            if radix > LISTED_VALUES:
                return False
            if any(domain.index_of(domain.value_at(i)) is None for i in range(radix)):
                return False
        return True

    def index(self, params: Mapping[str, ParamValue]) -> int | None:
        """The index of a complete, in-bounds parameter set; None for anything else."""
        if params.keys() != self._names:
            return None
        index = 0
        for name, domain, radix in self._digits:
            digit = domain.index_of(params[name])
            if digit is None:
                return None
            index = index * radix + digit
        return index

    def at(self, position: int) -> int:
        return self.permutation.at(position)

    def position(self, params: Mapping[str, ParamValue], index: int | None = None) -> int | None:
        """The sequence position of a parameter set; None when it is not in the space.
        `index`: its index, when the caller knows it (a mutation's, `mint._Mutator.index`)."""
        if index is None:
            index = self.index(params)
        return None if index is None else self.permutation.position(index)
