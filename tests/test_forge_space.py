"""The parameter space and the keyed permutation behind novel draws."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from toyfoundry import caches
from toyfoundry.forge.chain import canonical_params
from toyfoundry.forge.space import LISTED_VALUES, Permutation, Space, space_key, space_of
from toyfoundry.formats.models import Recipe


def recipe(**parameters: object) -> Recipe:
    return Recipe.model_validate(
        {
            "schema_version": 1,
            "recipe_id": "r",
            "version": "1",
            "parameters": parameters,
            "baselines": [{}],
            "scoring": {},
            "pass_score": 0.0,
            "promote_score": 0.0,
        }
    )


@given(size=st.integers(min_value=1, max_value=600), key=st.binary(min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_permutation_is_a_bijection_and_position_inverts_it(size: int, key: bytes) -> None:
    perm = Permutation(key, size)
    sequence = [perm.at(p) for p in range(size)]
    assert sorted(sequence) == list(range(size))
    assert all(perm.position(e) == p for p, e in enumerate(sequence))


def test_large_spaces_are_cheap_and_invertible() -> None:
    perm = Permutation(b"k", 2**62 - 3)
    gen = random.Random(1)
    for _ in range(200):
        p = gen.randrange(perm.size)
        assert perm.position(perm.at(p)) == p


def test_a_recipe_model_has_one_space_and_wide_domains_are_not_listed() -> None:
    r = recipe(
        wide={"kind": "int", "min": 0, "max": LISTED_VALUES + 10},
        paint={"kind": "enum", "values": ["red", "blue"]},
    )
    space = space_of(r)
    assert space_of(r) is space and space_of(r.model_copy()) is not space
    for index in (0, 1, 2 * LISTED_VALUES + 5, space.size - 1):
        assert space.params(index) == Space(r).params(index)
        assert space.index(space.params(index)) == index
    assert space.params(space.size - 1) == {"wide": LISTED_VALUES + 10, "paint": "blue"}
    caches.fresh(["spaces"])
    try:
        assert space_of(r) is not space_of(r)
    finally:
        caches.fresh()


def test_index_and_params_round_trip_in_recipe_order() -> None:
    r = recipe(
        teeth={"kind": "int", "min": 8, "max": 10},
        tension={"kind": "float", "min": 0.5, "max": 1.5, "step": 0.25},
        paint={"kind": "enum", "values": ["red", "blue"]},
    )
    space = Space(r)
    assert space.size == 3 * 5 * 2
    seen = set()
    for index in range(space.size):
        params = space.params(index)
        assert space.index(params) == index
        seen.add(tuple(params.items()))
    assert len(seen) == space.size
    assert space.params(0) == {"teeth": 8, "tension": 0.5, "paint": "red"}
    assert space.params(1) == {"teeth": 8, "tension": 0.5, "paint": "blue"}
    assert space.index({"teeth": 11, "tension": 0.5, "paint": "red"}) is None
    assert space.index({"teeth": 8, "tension": 0.6, "paint": "red"}) is None
    assert space.index({"teeth": 8, "paint": "red"}) is None


def test_space_key_depends_on_parameter_definitions_and_order() -> None:
    a = recipe(x={"kind": "int", "min": 0, "max": 3}, y={"kind": "enum", "values": ["p", "q"]})
    b = recipe(y={"kind": "enum", "values": ["p", "q"]}, x={"kind": "int", "min": 0, "max": 3})
    c = recipe(x={"kind": "int", "min": 0, "max": 4}, y={"kind": "enum", "values": ["p", "q"]})
    assert len({space_key(a), space_key(b), space_key(c)}) == 3
    assert space_key(a) == space_key(
        recipe(x={"kind": "int", "min": 0, "max": 3}, y={"kind": "enum", "values": ["p", "q"]})
    )


def _reference_at(key: bytes, size: int, position: int) -> int:
    """The keyed permutation written out round by round, with nothing remembered."""
    import hashlib

    bits = max(2, (size - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    mask = (1 << half) - 1

    def encrypt(x: int) -> int:
        left, right = x >> half, x & mask
        for number in range(6):
            h = hashlib.sha256(key + bytes((number,)) + right.to_bytes(8, "big"))
            left, right = right, left ^ (int.from_bytes(h.digest()[:8], "big") & mask)
        return (left << half) | right

    x = encrypt(position)
    while x >= size:
        x = encrypt(x)
    return x


@given(size=st.integers(min_value=1, max_value=300), key=st.binary(min_size=1, max_size=8))
@settings(max_examples=30, deadline=None)
def test_remembered_answers_equal_the_rounds(size: int, key: bytes) -> None:
    perm = Permutation(key, size)
    expected = [_reference_at(key, size, p) for p in range(size)]
    assert [perm.at(p) for p in range(size)] == expected
    assert [perm.at(p) for p in range(size)] == expected  # remembered
    fresh = Permutation(key, size)
    assert [fresh.position(e) for e in expected] == list(range(size))
    assert [fresh.at(p) for p in range(size)] == expected  # remembered by `position`


def test_spaces_of_one_recipe_share_answers_and_keep_types_apart() -> None:
    r = recipe(
        n={"kind": "int", "min": -2, "max": 3},
        x={"kind": "float", "min": -1.0, "max": 1.0, "step": 0.5},
        c={"kind": "enum", "values": ["a", "b"]},
    )
    first, second = Space(r), Space(r)
    assert first.permutation is second.permutation
    for index in range(first.size):
        params = first.params(index)
        assert second.index(params) == index
        assert second.params(index) == params
    assert first.index({"n": 1, "x": 0.5, "c": "a"}) is not None
    assert first.index({"n": 1.0, "x": 0.5, "c": "a"}) is None  # 1.0 is not an integer value
    assert first.index({"n": 1, "x": -0.0, "c": "a"}) == first.index({"n": 1, "x": 0.0, "c": "a"})
    assert first.index({"n": True, "x": 0.5, "c": "a"}) is None


def test_round_tables_change_no_element() -> None:
    """A permutation that keeps each round's values in tables draws exactly as one that
    hashes every round, both ways; so do the halves too wide for tables."""
    key = bytes(range(32))
    for size in (1, 2, 3, 97, 1 << 20, 258_560_000, (1 << 40) + 17):
        tabled, hashed = Permutation(key, size), Permutation(key, size)
        hashed._tables = None
        draws = random.Random(size)
        for x in [draws.randrange(size) for _ in range(500)] + list(range(min(size, 100))):
            assert tabled.at(x) == hashed.at(x)
            assert tabled.position(x) == hashed.position(x)
    # a half of 14 bits: tables; of 21: none
    assert Permutation(key, 258_560_000)._tables is not None
    assert Permutation(key, (1 << 40) + 17)._tables is None


def test_keyed_params_give_the_canonical_bytes_of_the_sorted_params() -> None:
    """A drawn set's key is the bytes `canonical_params` makes of it, floats, negative
    numbers and any text included."""
    r = recipe(
        z={"kind": "int", "min": -3, "max": 4},
        tension={"kind": "float", "min": -1.0, "max": 1e17, "step": 2.5e16},
        c={"kind": "enum", "values": ["é", 'a"b', "\\n", "x"]},
        a={"kind": "float", "min": 0.0, "max": 1.0, "step": 0.1},
    )
    space = Space(r)
    for index in range(0, space.size, 7):
        params, key = space.keyed_params(index)
        assert list(params) == sorted(params)
        assert params == space.sorted_params(index)
        assert key == canonical_params(params)
