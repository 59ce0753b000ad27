"""The four rituals on a minted batch: Drill, Parade, Purge, Promote; and the chain it hands on.

- Drill scores each Alfa in the roster (passed or waived by the validators):
  the recipe's `scoring.base`, plus the weight of each parameter value (added in
  the parameters' name order, the order a batch holds them in), plus noise uniform
  in [-noise, +noise] from sha256 of the order's seed and the Alfa id; each
  defect rule the parameters match gives a defect. An Alfa passes when its
  score >= `pass_score` and it has no defect.
- Parade ranks the drilled Alfas by score (ties by id) and records the line-up.
- Purge removes failed and defective Alfas from the roster, each with its reason.
- Promote: an Alfa is promoted when it passed Drill, its score >= the recipe's
  `promote_score`, and Purge (if the order runs it) kept it. At most the recipe's
  `promotion.max_per_order` are promoted, best first. They enter the promotion
  pool (best `promotion.pool_limit` entries of the recipe, the carryover parents
  of later orders), the doctrine archive, and the forge adapter's outbox
  `exchange/outbox/toysoldiers/<order>.json`, hydrated with the recipe's
  parameter definitions (every order gets a manifest, empty when nothing was
  promoted). All three criteria live in the recipe pack.

Phases (the plan's defaults, `Order.effective_rituals`): pilot orders are dry
runs, so their rituals run as stubs: logged with `dry_run: true`, nothing
changes. Expansion orders run Drill and Parade unless the order lists more;
operational orders run all four. Parade, Purge and Promote need Drill's scores,
so a full run adds Drill when an order lists one of them without it.

One ritual at a time (`only=`, the CLI's `toyfoundry ritual NAME ORDER`) updates
`rituals.json` ritual by ritual: everything is deterministic, so the earlier
rituals' results are recomputed and must equal the recorded ones (otherwise the
artefact is stale and the prerequisite ritual must run again first).

Whatever happens, the order hands on a chain (`build/<order>/chain.json`): dry-run,
blocked and rejected orders pass the previous chain on byte for byte, so the
graph's early cutoff stops there.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress, repeat
from operator import add, ge, itemgetter, not_
from typing import Any, NamedTuple, cast

from toyfoundry import caches
from toyfoundry.errors import FoundryError, Problem
from toyfoundry.exchange.loader import Exchange, display
from toyfoundry.forge import adapter, doctrine
from toyfoundry.forge import chain as chains
from toyfoundry.forge.mint import input_digests, mint_inputs, mint_order, read_mint
from toyfoundry.forge.space import space_key, space_of
from toyfoundry.forge.validators import Partial
from toyfoundry.formats import parsed
from toyfoundry.formats.models import (
    NO_RESULT,
    RITUALS,
    SCHEMA_VERSION,
    Alfa,
    Chain,
    ChainParent,
    FloatParam,
    MintArtefact,
    ParamValue,
    PoolEntry,
    Recipe,
    Ritual,
    RitualOutcome,
    RitualsArtefact,
)
from toyfoundry.formats.params import number_key, value_key
from toyfoundry.formats.review_key import reviewed
from toyfoundry.store import safe_read
from toyfoundry.store.atomic import (
    dumps_canonical,
    remove_file,
    write_atomic,
    write_json_atomic,
    write_many_atomic,
)
from toyfoundry.store.layout import Layout, UnsafeIdError, check_order_id, shared
from toyfoundry.store.ledger import Ledger
from toyfoundry.store.runid import run_id, utc_now

#: What each ritual needs to have run before it.
NEEDS: dict[str, tuple[str, ...]] = {
    "drill": (),
    "parade": ("drill",),
    "purge": ("drill",),
    "promote": ("drill",),
}
ROSTER_OUTCOMES = ("passed", "waived")


# --------------------------------------------------------------------------- pure scoring


def noise(seed: int, alfa_id: str, amplitude: float) -> float:
    """Deterministic noise in [-amplitude, +amplitude] from the order's seed and the Alfa id."""
    digest = hashlib.sha256(f"{seed}\ndrill\n{alfa_id}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return amplitude * (2.0 * unit - 1.0)


def _weight_table(recipe: Recipe) -> dict[str, dict[str, float]]:
    """Weights by canonical value key, so "3" and "3.0" name the same float step."""
    table: dict[str, dict[str, float]] = {}
    for name, weights in recipe.scoring.weights.items():
        spec = recipe.parameters.get(name)
        row: dict[str, float] = {}
        for key, weight in weights.items():
            if isinstance(spec, FloatParam):
                with contextlib.suppress(ValueError):
                    key = value_key(float(key))
            row[key] = weight
        table[name] = row
    return table


class _Scorer:
    """Drill's scoring data of one recipe, prepared once for every Alfa of a batch."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        #: the Alfas scored by `columns` (see `_scorer`)
        self.scored = 0
        self.base = recipe.scoring.base
        self.amplitude = recipe.scoring.noise
        self.table = _weight_table(recipe)
        self.floats = {n for n, s in recipe.parameters.items() if isinstance(s, FloatParam)}
        #: parameters without weights (often the numeric ones): each adds 0.0, whatever its
        #: value, with no key made or looked up for each new value
        self.unweighted = frozenset(n for n in recipe.parameters if not self.table.get(n))
        #: the parameters with weights, in name order: every other one adds 0.0
        self.weighted = sorted(n for n, row in self.table.items() if row)
        self.rules = [(rule.defect, Partial(rule.when)) for rule in recipe.scoring.defects]
        # by name, type and value, since 1 == 1.0 (zero floats are never kept: 0.0 == -0.0)
        self._weights: dict[tuple[str, type, ParamValue], float] = {}

    def _weight(self, name: str, value: ParamValue) -> float:
        key = (
            value_key(value)
            if isinstance(value, str) or name not in self.floats
            else number_key(value)
        )
        weight = self.table.get(name, {}).get(key, 0.0)
        if not (value.__class__ is float and value == 0.0):
            self._weights[(name, value.__class__, value)] = weight
        return weight

    def score(self, seed: int, alfa: Alfa) -> tuple[float, list[str]]:
        score = self._sum(alfa.params) + noise(seed, alfa.alfa_id, self.amplitude)
        defects = [defect for defect, when in self.rules if when.matches(alfa.params)]
        return round(score, 6), sorted(set(defects)) if defects else defects

    def scores(self, seed: int, alfas: Sequence[Alfa]) -> list[tuple[float, list[str]]]:
        """`score` of each Alfa of a batch (`columns`, as pairs)."""
        ids = [a.alfa_id for a in alfas]
        scores, defects = self.columns(seed, ids, [a.params for a in alfas])
        return [(score, defects.get(i, [])) for i, score in enumerate(scores)]

    def columns(
        self, seed: int, ids: Sequence[str], batch: Sequence[Mapping[str, ParamValue]]
    ) -> tuple[list[float], dict[int, list[str]]]:
        """`score` of each Alfa of a batch (ids and parameters), as a column of scores and
        the defects by place (of the Alfas with some): each defect rule matched over the
        batch at once (`Partial.matching`), the weights a parameter at a time (`_sums`),
        the noise's text made once but for the Alfa's id."""
        self.scored += len(ids)
        found: dict[int, list[str]] = {}
        for defect, when in self.rules:
            for i in when.matching(batch):
                found.setdefault(i, []).append(defect)
        amplitude, from_bytes = self.amplitude, int.from_bytes
        prefix, sha256 = f"{seed}\ndrill\n", hashlib.sha256
        # `noise`, its bytes the same, added to each sum as `score` adds it: 2.0 * (n / 2**64)
        # is n * 2**-63, the same float (n's nearest float scaled by a power of two, twice)
        scores = [
            round(
                total
                + amplitude
                * (from_bytes(sha256((prefix + i).encode()).digest()[:8], "big") * 2**-63 - 1.0),
                6,
            )
            for total, i in zip(self._sums(batch), ids, strict=True)
        ]
        return scores, {i: sorted(set(d)) for i, d in found.items()}

    def _sums(self, batch: Sequence[Mapping[str, ParamValue]]) -> list[float]:
        """`_sum` of each Alfa: a weighted parameter at a time when every Alfa has each
        (a batch as the mint makes it), else an Alfa at a time."""
        totals = [self.base] * len(batch)
        try:
            for name in self.weighted:
                column = list(map(itemgetter(name), batch))
                totals = list(map(add, totals, self._terms(name, column)))
        except KeyError:  # an Alfa without a parameter (one waived by a review can lack it)
            return [self._sum(params) for params in batch]
        if 0.0 in totals:
            # the other parameters add 0.0, which changes -0.0 alone (to 0.0), and a sum
            # past -0.0 never comes back to it: only a zero sum may differ, so each is made
            # again an Alfa at a time
            totals = [
                self._sum(params) if total == 0.0 else total
                for total, params in zip(totals, batch, strict=True)
            ]
        return totals

    def _terms(self, name: str, column: list[ParamValue]) -> Iterable[float]:
        """The weight of each value of a parameter's column."""
        classes = set(map(type, column))
        if len(classes) == 1 and not (float in classes and 0.0 in column):
            # one class and no float zero (0.0 and -0.0 are one key of a dict, two steps
            # of a weight table): a weight for each distinct value
            known, weight_of = self._weights, self._weight
            weights = {}
            for value in set(column):
                weight = known.get((name, value.__class__, value))
                weights[value] = weight_of(name, value) if weight is None else weight
            return map(weights.__getitem__, column)
        return [self._weight(name, value) for value in column]

    def _sum(self, params: Mapping[str, ParamValue]) -> float:
        """The base plus the weight of each parameter, added in the parameters' name order
        (a float sum depends on its order; a batch holds them in that order, from the
        mint's sorted drafts or mint.json's sorted keys)."""
        score = self.base
        weights, unweighted, weight_of = self._weights, self.unweighted, self._weight
        for name, value in sorted(params.items()):
            if name in unweighted:
                score += 0.0  # as the weight it has (-0.0 + 0.0 is 0.0)
                continue
            weight = weights.get((name, value.__class__, value))
            score += weight_of(name, value) if weight is None else weight
        return score


#: Alfas a recipe's `_Scorer` scores before it is made again: the weights and keys it
#: learns grow with the distinct numbers seen, which a float parameter need not bound
_SCORER_ALFAS = 10_000


def _scorer(recipe: Recipe) -> _Scorer:
    """The `_Scorer` of a recipe model, made once for this model while the `scorers` cache
    keeps it: the exchange gives the same model for the same recipe bytes, so the orders
    of a recipe share its weight table, its defect rules and the keys of the values seen."""
    scorers: dict[int, _Scorer] = caches.current().table("scorers")
    found = scorers.get(id(recipe))
    if found is None or found.recipe is not recipe or found.scored > _SCORER_ALFAS:
        if len(scorers) >= 64:
            scorers.clear()
        found = scorers[id(recipe)] = _Scorer(recipe)  # an id is only unique while alive
    return found


def drill_score(recipe: Recipe, seed: int, alfa: Alfa) -> tuple[float, list[str]]:
    """(score, defects) of one Alfa, from the recipe's scoring data."""
    return _Scorer(recipe).score(seed, alfa)


@dataclass
class Computed:
    """The rituals' results for one set of rituals that ran, before anything is written."""

    #: rituals.json as plain data, every field present: what a parse of its bytes gives
    #: (`artefact.model_dump(mode="json")`), made without a model per Alfa
    document: dict[str, Any]
    #: each promoted Alfa's doctrine entry as plain data, every field present: what
    #: `doctrine.DoctrineEntry(...).model_dump(mode="json")` gives, from validated models
    promoted: list[dict[str, Any]] = field(default_factory=list)
    pool: list[PoolEntry] = field(default_factory=list)
    #: each promoted entry's object bytes (`doctrine.encode`), made once for its digest
    encoded: list[bytes] = field(default_factory=list)
    #: each promoted entry's digest (the sha256 of its `encoded` bytes)
    digests: list[str] = field(default_factory=list)
    #: the promoted Alfas' rows of the document's results, by Alfa id (the manifest's)
    promoted_results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @cached_property
    def artefact(self) -> RitualsArtefact:
        """The document as a model, validated when first asked: a build never asks (the
        validation of a batch's results cost a tenth of the rituals), one ritual at a
        time compares it with the recorded one."""
        return RitualsArtefact.model_validate(self.document)


class _Promotion(NamedTuple):
    """A promoted Alfa the pool may take, ranked before its entry is made."""

    alfa_id: str
    score: float
    #: its place in the roster
    place: int


def _outcome(counts: dict[str, int]) -> dict[str, Any]:
    """A ritual that ran, as rituals.json holds it (`RitualOutcome`'s plain data)."""
    return {"ran": True, "stub": False, "counts": dict(sorted(counts.items()))}


#: The fields of a result most Alfas share (`compute`): the defaults, then the id.
_RESULT_ROW: dict[str, Any] = {**NO_RESULT, "alfa_id": None}


def compute(
    mint: MintArtefact, recipe: Recipe, previous_pool: Iterable[PoolEntry], ran: set[str]
) -> Computed:
    """The results of the rituals in `ran` on a really minted batch (a pure function).

    Plain data throughout: every value comes from the validated batch and recipe, so the
    document and the doctrine entries are valid by construction (`Computed.artefact` and
    the tests check them against the models). Each field of the results is made as a
    column, by place in the roster, and the rows once, at the end."""
    roster_alfas = [a for a in mint.alfas if a.outcome in ROSTER_OUTCOMES]
    ids = [a.alfa_id for a in roster_alfas]
    n = len(ids)
    outcomes: dict[str, dict[str, Any]] = {}
    scores: list[Any] = [None] * n
    passed: list[Any] = [None] * n
    found: dict[int, list[str]] = {}
    # the places in the roster by id; Parade's line-up (by score, best first, ties by id:
    # a stable sort by score of the places sorted by id)
    order = sorted(range(n), key=ids.__getitem__)
    drilled = "drill" in ran
    if drilled:
        scores, found = _scorer(recipe).columns(
            mint.seed or 0, ids, [a.params for a in roster_alfas]
        )
        passed = list(map(ge, scores, repeat(recipe.pass_score)))
        for i in found:
            passed[i] = False
        passed_count = passed.count(True)
        outcomes["drill"] = _outcome(
            {
                "drilled": n,
                "passed": passed_count,
                "failed": n - passed_count,
                "defective": len(found),
            }
        )
        order.sort(key=scores.__getitem__, reverse=True)  # stable: equal scores stay by id
    ranks: list[int | None] = [None] * n
    if "parade" in ran:
        for rank, i in enumerate(order, start=1):
            ranks[i] = rank
        outcomes["parade"] = _outcome({"ranked": n})
    purged = [False] * n
    reasons: dict[int, str] = {}  # the purged Alfas' reasons, by place
    if "purge" in ran:
        # an Alfa with a defect never passed; one that did not pass (or was not drilled)
        # failed its score
        below = f" below pass_score {recipe.pass_score}"
        for i in [i for i, p in enumerate(passed) if not p]:
            purged[i] = True
            defects = found.get(i)
            reasons[i] = "defect: " + ", ".join(defects) if defects else f"score {scores[i]}{below}"
        purge_count = len(reasons)
        outcomes["purge"] = _outcome({"purged": purge_count, "kept": n - purge_count})
    promoted: list[dict[str, Any]] = []
    encoded: list[bytes] = []
    entry_digests: list[str] = []
    pool = list(previous_pool)
    top: list[int] = []  # the promoted Alfas' places, best first
    if "promote" in ran:
        eligible: list[int] = []
        if drilled:  # an Alfa not drilled never passed
            promote_score = recipe.promote_score
            for i in order:  # best first: the rest score lower
                if scores[i] < promote_score:
                    break
                if passed[i] and not purged[i]:
                    eligible.append(i)
        limit = recipe.promotion.max_per_order
        top = eligible[:limit]
        for i in top:
            alfa = roster_alfas[i]
            entry = {
                "schema_version": SCHEMA_VERSION,
                "alfa_id": alfa.alfa_id,
                "order_id": mint.order_id,
                "recipe": recipe.recipe_id,
                "recipe_version": recipe.version,
                "params": alfa.params,
                "share": alfa.share,
                "parent_id": alfa.parent_id,
                "score": scores[i],
            }
            data = dumps_canonical(entry)  # `doctrine.encode` of its model: the same bytes
            promoted.append(entry)
            encoded.append(data)
            entry_digests.append(hashlib.sha256(data).hexdigest())
        # the pool takes the best Alfas that passed the validators unaided, the ones it took
        # before any review: a decision never changes a later order's carryover parents
        clean = [i for i in eligible if not reviewed(roster_alfas[i])][:limit]
        kept = chains.merge_pool(pool, [_Promotion(ids[i], scores[i], i) for i in clean], recipe)
        # an entry is made only for a promotion the pool keeps (most score below a pool's
        # last entry once the recipe has run a while), from the validated batch: not
        # validated again (the patterns of its ids and parameter names cost as much as the
        # rest of its promotion)
        pool = [
            PoolEntry.model_construct(
                alfa_id=e.alfa_id,
                order_id=mint.order_id,
                params=roster_alfas[e.place].params,
                score=e.score,
            )
            if isinstance(e, _Promotion)
            else cast(PoolEntry, e)
            for e in kept
        ]
        outcomes["promote"] = _outcome({"promoted": len(promoted), "pool": len(pool)})
    # `AlfaResult`'s plain data, every field present: a copy of the row of the fields most
    # Alfas share (a third cheaper than a dict made whole), the four each has its own set,
    # then those of the few that differ set in place. The rows share one empty list of
    # defects: the document is read, never changed (`parsed.recall_plain`)
    results = []
    new_row = _RESULT_ROW.copy
    for score, passed_i, rank_i, alfa_id in zip(scores, passed, ranks, ids, strict=True):
        row = new_row()
        row["score"], row["passed"], row["rank"], row["alfa_id"] = score, passed_i, rank_i, alfa_id
        results.append(row)
    for i, defects in found.items():
        results[i]["defects"] = defects
    for i, reason in reasons.items():
        row = results[i]
        row["purged"], row["purge_reason"] = True, reason
    for i, digest in zip(top, entry_digests, strict=True):
        row = results[i]
        row["promoted"], row["doctrine"] = True, digest
    # every field present, so the same data is what the file holds
    document = {
        "schema_version": SCHEMA_VERSION,
        "order_id": mint.order_id,
        "status": mint.status,
        "dry_run": False,
        "rituals": {
            name: outcomes.get(name) or {"ran": False, "stub": False, "counts": {}}
            for name in sorted(RITUALS)
        },
        "results": results,
        "roster": list(compress(ids, map(not_, purged))),
        "promoted": [e["alfa_id"] for e in promoted],
    }
    rows = {ids[i]: results[i] for i in top}
    return Computed(document, promoted, pool, encoded, entry_digests, rows)


# --------------------------------------------------------------------------- running them


def _stub_artefact(
    mint: MintArtefact, selected: Iterable[str], stub: bool, dry_run: bool
) -> RitualsArtefact:
    chosen = set(selected)
    counts = {"alfas": len(mint.alfas)} if stub else {}
    outcomes = {
        r: RitualOutcome(ran=False, stub=stub and r in chosen, counts=counts if r in chosen else {})
        for r in RITUALS
    }
    return RitualsArtefact(
        schema_version=SCHEMA_VERSION,
        order_id=mint.order_id,
        status=mint.status,
        dry_run=dry_run,
        rituals=cast(dict[Ritual, RitualOutcome], outcomes),
    )


def _closure(rituals: Iterable[str]) -> list[str]:
    chosen = set(rituals)
    for ritual in list(chosen):
        chosen.update(NEEDS[ritual])
    return [r for r in RITUALS if r in chosen]


def _records(
    mint: MintArtefact, document: Mapping[str, Any], invoked: Iterable[str], outcome: str
) -> list[dict[str, Any]]:
    """The ritual ledger lines, as the plain data of `RitualRecord`s (every field present),
    from rituals.json's plain data."""
    batch = {"size": mint.batch_size, "phase": mint.phase, "recipe": mint.recipe}
    now, rid = utc_now(), run_id()
    return [
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "ritual",
            "run_id": rid,
            "time": now,
            "ritual": ritual,
            "order_id": mint.order_id,
            "dry_run": document["dry_run"],
            "batch": dict(batch),
            "counts": dict(document["rituals"][ritual]["counts"]),
            "outcome": outcome,
        }
        for ritual in invoked
    ]


def _stale_inputs(
    layout: Layout, exchange: Exchange, mint: MintArtefact, previous: str | None
) -> list[str]:
    """The inputs that changed since the mint artefact was made from them (none: it is fresh)."""
    inputs = mint_inputs(layout, exchange, mint.order_id, previous=previous)
    current = input_digests(layout, inputs, exchange.max_bytes, exchange)
    return sorted(
        k for k in set(current) | set(mint.inputs) if current.get(k) != mint.inputs.get(k)
    )


@dataclass
class _Previous:
    """The chain an order starts from, as bytes to pass on untouched and as a model."""

    chain: Chain
    data: bytes
    #: the sha256 of `data` when it was read from the previous order's chain file
    digest: str | None = None


def _read_previous(layout: Layout, previous: str | None) -> _Previous | None:
    """The previous order's chain, read once for both its digest among the mint's inputs
    and the chain itself; None when there is none or it cannot be read (`_previous` then
    reads it again, and says why)."""
    if previous is None:
        return None
    try:
        chain, data = chains.read_chain_data(layout, previous)
    except FoundryError:
        return None
    return _Previous(chain, data, chains.digest_of(data, layout.chain_file(previous)))


def _previous(
    layout: Layout,
    exchange: Exchange,
    previous: str | None,
    recipe_id: str | None,
    read: _Previous | None = None,
) -> _Previous | None:
    """The chain the order starts from: the previous order's (`read`, when it was read
    already), else the recipe's first; None for an order in no chain (`recipe_id` None:
    its file did not parse when planned)."""
    if recipe_id is None:
        return None
    if previous is not None:
        if read is not None:
            return read
        chain, data = chains.read_chain_data(layout, previous)
        return _Previous(chain, data, chains.digest_of(data))
    recipe = exchange.recipe(recipe_id).model
    key = space_key(recipe) if recipe is not None else chains.orphan_space(recipe_id)
    chain = chains.genesis(recipe_id, key)
    return _Previous(chain, dumps_canonical(chain))


def _load_recorded(layout: Layout, order_id: str) -> RitualsArtefact | None:
    try:
        return RitualsArtefact.model_validate_json(layout.rituals_artefact(order_id).read_bytes())
    except (OSError, ValueError):
        return None


def _ran_before(
    recorded: RitualsArtefact | None, mint: MintArtefact, recipe: Recipe, pool: list[PoolEntry]
) -> set[str]:
    """The rituals the recorded artefact shows as run, if recomputing them gives the same bytes."""
    if recorded is None or recorded.order_id != mint.order_id or recorded.dry_run:
        return set()
    ran: set[str] = {r for r, o in recorded.rituals.items() if o.ran}
    if compute(mint, recipe, pool, ran).artefact != recorded:
        return set()
    return ran


class Ran:
    """What `run_rituals` wrote to rituals.json: its plain data, and its model when asked.

    The graph asks for neither; the model of a batch's results is validated only for a
    caller that reads it (the CLI, tests), from the same data the file holds.
    """

    def __init__(self, document: dict[str, Any], model: RitualsArtefact | None = None) -> None:
        self.document = document
        self._model = model

    @property
    def artefact(self) -> RitualsArtefact:
        if self._model is None:
            self._model = RitualsArtefact.model_validate(self.document)
        return self._model


def run_rituals(
    layout: Layout,
    order_id: str,
    *,
    only: str | None = None,
    exchange: Exchange | None = None,
    force_dry_run: bool = False,
    previous: chains.Previous = chains.AUTO,
    remint_stale: bool = False,
    planned: Mapping[str, str] | None = None,
    planned_recipe: str | None = None,
) -> Ran:
    """Run the order's rituals (or just `only`) on its minted batch and hand on its chain.

    Writes `rituals.json`, `chain.json`, doctrine objects and the outbox manifest,
    and appends one ritual-ledger line per ritual invoked. With `force_dry_run`
    the rituals run as logged stubs and nothing is written but the ledger.
    `previous`: the previous order of the recipe's chain, when the caller knows it.
    A mint artefact older than its inputs is refused (the CLI's safety net), or,
    with `remint_stale` (the graph), minted again first: an input written while
    the build ran may already be recorded by doit as minted (it hashes file deps
    after the task), so refusing would fail every later build too.
    `planned`, `planned_recipe`: the plan's content identity of the inputs and the
    order's recipe (the graph, see `forge.snapshot`): an input changed since the
    mint is minted again against the plan, which rejects the order rather than mix
    snapshots, and the chain handed on is the planned recipe's, so an order deleted
    or rewritten mid-build passes on the chain it was given.
    """
    layout = shared(layout)
    ex = exchange or Exchange(layout)
    try:
        check_order_id(order_id)
    except UnsafeIdError as exc:
        raise FoundryError("", [Problem(order_id[:80], "order_id", str(exc))]) from None
    if only is not None and only not in RITUALS:
        raise FoundryError(f"unknown ritual {only!r}: one of {', '.join(RITUALS)}")
    mint = read_mint(layout, order_id)
    if mint is None and not safe_read.present(layout.order_file(order_id)):
        # no order file: a build would not mint it either, so say so instead
        order_path = display(layout, layout.order_file(order_id))
        raise FoundryError("", [Problem(order_path, "-", "no such order")])
    if mint is None:
        shown = display(layout, layout.mint_artefact(order_id))
        raise FoundryError(
            f"{shown}: -: order {order_id} is not minted yet; run `toyfoundry build`"
        )
    before = chains.resolve_previous(ex, order_id, previous)
    # the previous chain, read once: its digest among the inputs is that of the bytes the
    # order starts from (as the mint's is, `chains.start_chain`), not of a second read
    read = _read_previous(layout, before)
    if read is not None and before is not None:
        ex.digests[layout.chain_file(before)] = read.digest
    stale = _stale_inputs(layout, ex, mint, before)
    if stale and remint_stale:
        ex, read = Exchange(layout), None
        mint = mint_order(layout, order_id, exchange=ex, previous=before, planned=planned)
    elif stale:
        shown = display(layout, layout.mint_artefact(order_id))
        raise FoundryError(
            f"{shown}: inputs: is older than {', '.join(stale)}; run `toyfoundry build`"
        )
    order = ex.order(order_id).model
    effective = order.effective_rituals() if order is not None else RITUALS
    selected = [only] if only is not None else _closure(effective)
    # the graph hands on the chain its plan drew, whatever the order file holds now
    own_recipe = order.recipe if order is not None else None
    chain_recipe = planned_recipe if planned is not None else own_recipe
    start = _previous(layout, ex, before, chain_recipe, read)
    ledger = Ledger(layout.ritual_ledger)

    if mint.status in ("blocked", "rejected") or mint.dry_run or force_dry_run:
        stub = mint.status not in ("blocked", "rejected")
        artefact = _stub_artefact(mint, selected, stub, mint.dry_run or force_dry_run)
        outcome = "stub" if stub else "blocked" if mint.status == "blocked" else "skipped"
        if not force_dry_run:
            write_json_atomic(layout.rituals_artefact(order_id), artefact)
            _pass_on(layout, order_id, start)
            write_atomic(
                layout.outbox_file(order_id),
                dumps_canonical(adapter.empty_manifest(order_id)),
            )
        document = artefact.model_dump(mode="json")
        ledger.append(_records(mint, document, selected, outcome))
        return Ran(document, artefact)

    recipe = ex.recipe(mint.recipe or "").require()
    if start is None:  # a minted order always parses; a changed file is caught by _stale_inputs
        raise FoundryError(f"order {order_id} belongs to no chain")
    if only is None:
        ran = set(selected)
    else:
        ran = _ran_before(_load_recorded(layout, order_id), mint, recipe, start.chain.pool)
        needs = list(NEEDS[only])
        if only == "promote" and "purge" in effective:
            needs.append("purge")
        missing = [r for r in needs if r not in ran]
        if missing:
            raise FoundryError(
                f"{only} needs {' and '.join(missing)} first: run `toyfoundry build`"
            )
        ran.add(only)
    computed = compute(mint, recipe, start.chain.pool, ran)
    document = computed.document
    staged = doctrine.stage(layout, computed.promoted, computed.encoded, computed.digests)
    parent = (
        None
        if before is None
        else ChainParent(order=before, sha256=start.digest or chains.digest_of(start.data))
    )
    chain = chains.advance(
        start.chain, space_of(recipe), order_id, mint.alfas, parent, mint.hand_on, computed.pool
    )
    promoted = computed.promoted
    results = computed.promoted_results  # the only rows the manifest reads
    outbox = layout.outbox_file(order_id)
    # the doctrine objects, the artefact, the chain handed on and the outbox manifest: one
    # flush for the set (see `write_many_atomic`), the objects renamed first
    rituals_path = layout.rituals_artefact(order_id)
    rituals_data = dumps_canonical(document)
    modes = staged.modes  # the new doctrine packs, named by their bytes: created read-only
    chain_path, chain_data = layout.chain_file(order_id), chains.encode(chain)
    write_many_atomic(
        [
            *staged.objects,
            (rituals_path, rituals_data),
            (chain_path, chain_data),
            (
                outbox,
                dumps_canonical(
                    adapter.manifest(order_id, recipe, promoted, results)
                    if promoted
                    else adapter.empty_manifest(order_id)
                ),
            ),
        ],
        modes=modes,
        absent=modes,
    )
    # the report reads rituals.json next, as plain data; the recipe's next order reads
    # chain.json, whose model equals a parse of its bytes (sorted dicts; the pool's
    # parameters come from mint.json)
    parsed.remember_plain(rituals_path, rituals_data, document)
    parsed.remember(Chain, chain_path, chain_data, chain)
    doctrine.index(layout, staged)
    ledger.append(_records(mint, document, selected, "ok"))
    return Ran(document)


def _pass_on(layout: Layout, order_id: str, previous: _Previous | None) -> None:
    """Hand on the previous chain byte for byte; an order in no chain hands on nothing."""
    if previous is None:
        remove_file(layout.chain_file(order_id))
    else:
        write_atomic(layout.chain_file(order_id), previous.data)


def counts_line(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"
