"""Prepared partial parameter sets answer exactly as `matches` does."""

from __future__ import annotations

import itertools

from toyfoundry.forge.validators import Partial, matches
from toyfoundry.formats.models import ParamValue
from toyfoundry.formats.params import number_key, value_key

VALUES: list[ParamValue] = [0, 0.0, -0.0, 1, 1.0, 1.0000000001, 2.5, -3, "0", "1", "a", 10**400]


def test_partial_matches_like_matches() -> None:
    for a, b in itertools.product(VALUES, repeat=2):
        params = {"p": a, "q": "x"}
        for partial in ({"p": b}, {"p": b, "q": "x"}, {"q": "x", "p": b}, {"r": b}):
            try:
                expected: bool | type[Exception] = matches(params, partial)
            except OverflowError:
                expected = OverflowError
            try:
                got: bool | type[Exception] = Partial(partial).matches(params)
            except OverflowError:
                got = OverflowError
            assert got == expected, (a, b, partial)


def test_a_partial_reused_across_values_answers_as_matches() -> None:
    """A `Partial` remembers the keys of the numbers it has seen: 1 then 1.0, 0 then -0.0
    in turn must still answer as `matches` does."""
    for b in VALUES:
        prepared = Partial({"p": b})
        for a in [*VALUES, *reversed(VALUES)]:
            try:
                expected: bool | type[Exception] = matches({"p": a}, {"p": b})
            except OverflowError:
                expected = OverflowError
            try:
                got: bool | type[Exception] = prepared.matches({"p": a})
            except OverflowError:
                got = OverflowError
            assert got == expected, (a, b)


def test_validators_check_finds_what_each_hook_finds() -> None:
    """`Validators.check` skips building the bounds reasons when the parameters are in
    bounds: its reasons equal the hooks' own, in order, for good and bad parameters."""
    from toyfoundry.forge.validators import Validators, check_bounds, check_forbidden
    from toyfoundry.formats.models import Recipe

    recipe = Recipe.model_validate(
        {
            "schema_version": 1,
            "recipe_id": "r",
            "version": "1",
            "parameters": {
                "x": {"kind": "float", "min": -1.0, "max": 1.0, "step": 0.5},
                "n": {"kind": "int", "min": 0, "max": 3},
                "c": {"kind": "enum", "values": ["a", "b"]},
            },
            "baselines": [{"x": 0.0, "n": 0, "c": "a"}],
            "forbidden": [{"x": 0.0, "n": 1}, {"c": "b"}],
            "scoring": {"noise": 0.0, "weights": {}},
            "pass_score": 0.0,
            "promote_score": 0.0,
        }
    )
    cases: list[dict[str, ParamValue]] = [
        {"x": 0.5, "n": 2, "c": "a"},
        {"x": 0.0, "n": 1, "c": "a"},
        {"x": -0.0, "n": 1, "c": "b"},
        {"x": 0.25, "n": 1, "c": "a"},
        {"x": 0.5, "n": 2},
        {"x": 0.5, "n": 2, "c": "a", "extra": 1},
        {"x": 0.5, "c": "a", "extra": 1},
        {"x": 1, "n": 3.0, "c": "a"},
        {"x": 0.5, "n": 2, "c": "z"},
    ]
    validators = Validators(recipe, [])
    for number, params in enumerate(cases):
        expected = check_bounds(params, recipe) + check_forbidden(params, recipe)
        got = validators.check(f"a{number}", "baseline", params, str(number).encode())
        assert got == expected, params


def test_number_keys_keep_signed_zero_apart() -> None:
    assert number_key(-0.0) == value_key(-0.0) == "-0.0"
    assert number_key(0.0) == "0.0"
    assert number_key(0) == "0.0"
    assert number_key(-0.0) == "-0.0"
    assert number_key(1) == number_key(1.0) == "1.0"


def test_batch_scores_equal_one_alfa_scores() -> None:
    from toyfoundry.forge.rituals import compute, drill_score
    from toyfoundry.formats.models import Alfa, MintArtefact, Recipe, ShareCounts

    recipe = Recipe.model_validate(
        {
            "schema_version": 1,
            "recipe_id": "r",
            "version": "1",
            "parameters": {
                "x": {"kind": "float", "min": -1.0, "max": 1.0, "step": 0.5},
                "n": {"kind": "int", "min": 0, "max": 3},
            },
            "baselines": [{"x": 0.0, "n": 0}],
            "scoring": {
                "noise": 0.0,
                "weights": {"x": {"0.0": 1.0, "-0.0": 5.0, "1": 2.0}, "n": {"1": 3.0}},
            },
            "pass_score": 0.0,
            "promote_score": 0.0,
        }
    )
    values = [(0.0, 0), (-0.0, 1), (1.0, 1), (1, 1), (0.0, 1), (-0.0, 0), (0.5, 2)]
    alfas = [
        Alfa(
            alfa_id=f"2025-01-01-001.a{slot:03d}",
            slot=slot,
            params={"x": x, "n": n},
            share="novel",
            outcome="passed",
        )
        for slot, (x, n) in enumerate(values)
    ]
    mint = MintArtefact(
        schema_version=1,
        order_id="2025-01-01-001",
        recipe="r",
        recipe_version="1",
        phase="pilot",
        status="built",
        dry_run=False,
        seed=7,
        batch_size=len(alfas),
        target=ShareCounts(novel=len(alfas)),
        achieved=ShareCounts(novel=len(alfas)),
        alfas=alfas,
    )
    results = compute(mint, recipe, [], {"drill"}).artefact.results
    assert [r.score for r in results] == [drill_score(recipe, 7, a)[0] for a in alfas]
    # no noise: -0.0 and 0.0 are different steps of the weight table
    assert [r.score for r in results] == [1.0, 8.0, 5.0, 5.0, 4.0, 5.0, 0.0]
