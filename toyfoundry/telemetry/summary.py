"""One order's batch summary, computed from its build artefacts alone (no ledgers, no clock)."""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain, compress, repeat
from typing import Any, cast

from toyfoundry.formats.models import BatchSummary, Outcomes
from toyfoundry.telemetry.artefacts import OrderArtefacts

#: Width of a score histogram bin; a bin is keyed by its lower bound ("40" holds 40 <= s < 50).
SCORE_BIN = 10
_UNKNOWN = "unknown"


#: One Alfa's result in rituals.json, as plain data (the fields of `AlfaResult`).
Result = dict[str, Any]


def outcomes(arts: OrderArtefacts) -> Outcomes:
    """What happened to the batch's Alfas.

    `minted` counts every Alfa in mint.json; `quarantined` and `waived` come
    from the validators' verdicts; the rest from the rituals' per-Alfa results
    (only for Alfas of this batch): drilled = has a score, paraded = has a rank,
    passed/failed = Drill's verdict, purged and promoted as flagged.
    """
    return _outcomes(arts)


def _outcomes(arts: OrderArtefacts) -> Outcomes:
    # each count is a column of the results counted by builtins, not a Python step per
    # result (a batch has up to 96); the flags are booleans or null, as the model has them.
    # An Alfa without a result has `NO_RESULT`, which counts nowhere.
    verdicts = arts.alfa_columns.outcome
    c = arts.columns
    return Outcomes(
        minted=len(verdicts),
        drilled=len(c.score) - c.score.count(None),
        paraded=len(c.rank) - c.rank.count(None),
        passed=c.passed.count(True),
        failed=c.passed.count(False),
        purged=c.purged.count(True),
        promoted=c.promoted.count(True),
        quarantined=verdicts.count("quarantined"),
        waived=verdicts.count("waived"),
    )


def defects(arts: OrderArtefacts) -> dict[str, int]:
    return _defects(arts)


def _defects(arts: OrderArtefacts) -> dict[str, int]:
    found = Counter(chain.from_iterable(arts.columns.defects))
    return dict(sorted(found.items()))


def score_bin(score: float) -> str:
    return str(math.floor(score / SCORE_BIN) * SCORE_BIN)


def score_histogram(scores: Iterable[float | None]) -> dict[str, int]:
    """Counts by `score_bin`, in the bins' order; nulls and non-finite scores left out."""
    given = list(scores)
    present = cast(Iterator[float], compress(given, map(operator.is_not, given, repeat(None))))
    finite = filter(math.isfinite, present)
    # a bin's lower bound as `score_bin` makes it: floor(score / SCORE_BIN) * SCORE_BIN;
    # a batch's scores fall in a few bins, each counted by `list.count`
    lows = list(map(math.floor, map(operator.truediv, finite, repeat(SCORE_BIN))))
    return {str(low * SCORE_BIN): lows.count(low) for low in sorted(set(lows))}


def summarize(arts: OrderArtefacts) -> BatchSummary:
    """The order's quilt part: deterministic, so equal artefacts give equal bytes.

    The status is mint.json's: the mint decides built, dry-run, blocked,
    rejected or awaiting review, and the rituals only run on what it minted.
    `telemetry` is left empty here; the rollup fills it from the ledgers.
    """
    mint = arts.mint
    return BatchSummary(
        order_id=arts.order_id,
        recipe=mint.recipe,
        phase=mint.phase,
        day=arts.day,
        status=mint.status,
        reason=mint.reason,
        dry_run=mint.dry_run,
        outcomes=_outcomes(arts),
        defects=_defects(arts),
        target=mint.target,
        achieved=mint.achieved,
        score_histogram=score_histogram(arts.columns.score),
        source=arts.source,
    )


def group_key(value: str | None) -> str:
    """Totals key of a phase or recipe; "unknown" for orders rejected before either was known."""
    return value if value else _UNKNOWN
