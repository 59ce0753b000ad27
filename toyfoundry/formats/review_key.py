"""Which quarantined Alfa a review decision is about: what the reviewer saw, not the slot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from toyfoundry.formats.models import Alfa, Decision, ParamValue, ReviewKey


def key_of(recipe: str, params: Mapping[str, ParamValue], finding: Sequence[str]) -> ReviewKey:
    """The key a decision on this Alfa carries."""
    return ReviewKey(recipe=recipe, params=dict(sorted(params.items())), finding=list(finding))


def identity(recipe: str, params: Mapping[str, ParamValue], finding: Sequence[str]) -> bytes:
    """Comparable bytes of a key: `5` and `5.0` stay apart, parameter order does not matter."""
    return orjson.dumps([recipe, dict(params), list(finding)], option=orjson.OPT_SORT_KEYS)


def decides(
    decision: Decision,
    recipe: str,
    alfa_id: str,
    params: Mapping[str, ParamValue],
    finding: Sequence[str],
) -> bool:
    """True when `decision` is about this quarantined Alfa: its key matches, or, for a
    decision written before decisions carried a key, its Alfa id does."""
    key = decision.key
    if key is None:
        return decision.alfa_id == alfa_id
    return identity(key.recipe, key.params, key.finding) == identity(recipe, params, finding)


def is_replacement(alfa_id: str) -> bool:
    """A reroll's replacement (`<order>.a<slot>r<k>`), not a slot's first draw."""
    return "r" in alfa_id.rpartition(".a")[2]


def reviewed(alfa: Alfa) -> bool:
    """An Alfa that reached the roster through a review decision: waived, or a replacement.

    Such Alfas do not move the chain's cursor nor join the promotion pool, so what a
    later order of the recipe draws does not depend on review decisions.
    """
    return alfa.outcome == "waived" or is_replacement(alfa.alfa_id)
