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
from collections.abc import Mapping
from functools import cached_property

import orjson

from toyfoundry.formats.models import ParamValue, Recipe
from toyfoundry.formats.params import cardinality, index_of, value_at

ROUNDS = 6
Params = dict[str, ParamValue]


def space_key(recipe: Recipe) -> str:
    """sha256 of the recipe id and its parameter definitions, in order: the chain's `space`."""
    definitions = [[name, spec.model_dump(mode="json")] for name, spec in recipe.parameters.items()]
    payload = orjson.dumps([recipe.recipe_id, definitions], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


class Permutation:
    """A keyed bijection of [0, size): Feistel rounds on 2^bits, cycle-walked into range."""

    def __init__(self, key: bytes, size: int) -> None:
        if size < 1:
            raise ValueError("a permutation needs at least one element")
        self.size = size
        bits = max(2, (size - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        self._keyed = hashlib.sha256(key)

    def _round(self, number: int, value: int) -> int:
        h = self._keyed.copy()
        h.update(bytes((number,)) + value.to_bytes(8, "big"))
        return int.from_bytes(h.digest()[:8], "big") & self.mask

    def _encrypt(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for number in range(ROUNDS):
            left, right = right, left ^ self._round(number, right)
        return (left << self.half) | right

    def _decrypt(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for number in reversed(range(ROUNDS)):
            left, right = right ^ self._round(number, left), left
        return (left << self.half) | right

    def at(self, position: int) -> int:
        """The element at `position` of the sequence."""
        if not 0 <= position < self.size:
            raise IndexError(position)
        x = self._encrypt(position)
        while x >= self.size:
            x = self._encrypt(x)
        return x

    def position(self, element: int) -> int:
        """Where `element` sits in the sequence: the inverse of `at`."""
        if not 0 <= element < self.size:
            raise IndexError(element)
        x = self._decrypt(element)
        while x >= self.size:
            x = self._decrypt(x)
        return x


class Space:
    """The parameter space of one recipe: params <-> index <-> sequence position."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.names = list(recipe.parameters)
        self.specs = [recipe.parameters[n] for n in self.names]
        self.radices = [cardinality(s) for s in self.specs]
        size = 1
        for radix in self.radices:
            size *= radix
        self.size = size
        self.key = space_key(recipe)

    @cached_property
    def permutation(self) -> Permutation:
        return Permutation(bytes.fromhex(self.key), self.size)

    def params(self, index: int) -> Params:
        """The parameter set of an index."""
        digits = []
        for radix in reversed(self.radices):
            index, digit = divmod(index, radix)
            digits.append(digit)
        digits.reverse()
        return {n: value_at(s, d) for n, s, d in zip(self.names, self.specs, digits, strict=True)}

    def index(self, params: Mapping[str, ParamValue]) -> int | None:
        """The index of a complete, in-bounds parameter set; None for anything else."""
        if set(params) != set(self.names):
            return None
        index = 0
        for name, spec, radix in zip(self.names, self.specs, self.radices, strict=True):
            digit = index_of(spec, params[name])
            if digit is None:
                return None
            index = index * radix + digit
        return index

    def at(self, position: int) -> int:
        return self.permutation.at(position)

    def position(self, params: Mapping[str, ParamValue]) -> int | None:
        """The sequence position of a parameter set; None when it is not in the space."""
        index = self.index(params)
        return None if index is None else self.permutation.position(index)
