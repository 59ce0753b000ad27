"""Pydantic models of every Toyfoundry file format: strict, closed, and versioned."""

import datetime as dt
import math
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

SCHEMA_VERSION: Literal[1] = 1
PHASE_CAPS: dict[str, int] = {"pilot": 12, "expansion": 48, "operational": 96}
RITUALS: tuple[str, ...] = ("drill", "parade", "purge", "promote")
#: The plan's default rituals per phase; pilot rituals run as stubs.
PHASE_RITUALS: dict[str, tuple[str, ...]] = {
    "pilot": RITUALS,
    "expansion": ("drill", "parade"),
    "operational": RITUALS,
}
DEFAULT_DIVERSITY = (0.6, 0.2, 0.2)

OrderId = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{3}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
ParamName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
AlfaId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{3}\.a[0-9]{3}(r[0-9]{1,3})?$"),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(max_length=4000)]


def _calendar_time(value: str) -> str:
    """The pattern admits `2025-02-30T25:61:61Z`; a timestamp must also be a real time."""
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not a real calendar date and time") from None
    return value


Timestamp = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
    ),
    AfterValidator(_calendar_time),
    Field(json_schema_extra={"format": "date-time"}),
]
#: A score, a threshold or one term of a score. Bounded so that a score (the base, one
#: weight per parameter, at most 16, and noise of at most 10) is finite by construction.
ScoreTerm = Annotated[float, Field(ge=-1e6, le=1e6)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
ParamValue = int | float | str
Phase = Literal["pilot", "expansion", "operational"]
Ritual = Literal["drill", "parade", "purge", "promote"]
Share = Literal["novel", "carryover", "baseline"]
OrderStatus = Literal["built", "dry-run", "blocked", "rejected", "awaiting-review"]


def _not_a_boolean(value: object) -> object:
    """`true` is not `1`: a `Literal[1]` alone lets a boolean through, the schema does not."""
    if isinstance(value, bool):
        raise ValueError(f"Input should be 1 (got {value!r})")
    return value


Version = Annotated[Literal[1], BeforeValidator(_not_a_boolean)]


class Strict(BaseModel):
    """Base of every format: strict types (no "12" for 12), unknown fields refused, immutable.

    Each model's validator is built when first used (`defer_build`): a build that touches
    one new order uses two thirds of the models, and building the rest cost it ~8 ms.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)


# --------------------------------------------------------------------------- exchange inputs


class Mutation(Strict):
    """How carryover Alfas are mutated from their promoted parents."""

    rate: Fraction = 0.5
    max_changes: Annotated[int, Field(ge=1, le=16)] = 1


class Diversity(Strict):
    """Target shares of a batch; novel never below the plan's 60%."""

    novel: Annotated[float, Field(ge=0.6, le=1.0)]
    carryover: Fraction
    baseline: Fraction

    @model_validator(mode="after")
    def _sums_to_one(self) -> Self:
        if not math.isclose(self.novel + self.carryover + self.baseline, 1.0, abs_tol=1e-9):
            raise ValueError("novel + carryover + baseline must sum to 1")
        return self


def phase_rules_schema() -> list[dict[str, Any]]:
    """The phase rules as JSON Schema (`if` phase `then` ...), so the committed schema
    refuses what `toyfoundry validate` refuses: each phase's cap, and pilots dry runs only."""
    rules: list[dict[str, Any]] = []
    for phase, cap in PHASE_CAPS.items():
        then: dict[str, Any] = {"batch_size": {"maximum": cap}}
        if phase == "pilot":
            then["dry_run"] = {"const": True}
        rules.append(
            {
                "if": {"properties": {"phase": {"const": phase}}, "required": ["phase"]},
                "then": {"properties": then},
            }
        )
    return rules


def _order_schema(schema: dict[str, Any]) -> None:
    schema["allOf"] = phase_rules_schema()


class Order(Strict):
    """A manufacturing order dropped into `exchange/orders/<order_id>.json`."""

    model_config = ConfigDict(json_schema_extra=_order_schema)

    schema_version: Version
    order_id: OrderId
    phase: Phase
    recipe: Slug
    batch_size: Annotated[int, Field(ge=1, le=96)]
    seed: Seed
    dry_run: bool
    rituals: Annotated[list[Ritual], Field(max_length=4)] | None = None
    mutation: Mutation | None = None
    diversity: Diversity | None = None
    issued_by: Name
    notes: Note = ""

    def effective_rituals(self) -> tuple[str, ...]:
        """The rituals this order runs, in ritual order: its own list or the phase default."""
        chosen = set(self.rituals) if self.rituals is not None else set(PHASE_RITUALS[self.phase])
        return tuple(r for r in RITUALS if r in chosen)

    def shares(self) -> tuple[float, float, float]:
        d = self.diversity
        return (d.novel, d.carryover, d.baseline) if d else DEFAULT_DIVERSITY


class IntParam(Strict):
    kind: Literal["int"]
    min: int
    max: int


class FloatParam(Strict):
    kind: Literal["float"]
    min: float
    max: float
    step: Annotated[float, Field(gt=0)]


class EnumParam(Strict):
    kind: Literal["enum"]
    values: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=256),
    ]


ParamSpec = Annotated[IntParam | FloatParam | EnumParam, Field(discriminator="kind")]
PartialParams = Annotated[dict[ParamName, ParamValue], Field(max_length=32)]


class DefectRule(Strict):
    """A partial parameter set that, when an Alfa matches it, gives that Alfa a named defect."""

    when: Annotated[PartialParams, Field(min_length=1)]
    defect: Slug


class Scoring(Strict):
    """Drill scoring as data: base + weight of each parameter value + seeded noise."""

    base: ScoreTerm = 0.0
    weights: dict[ParamName, dict[Annotated[str, StringConstraints(max_length=64)], ScoreTerm]] = {}
    noise: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    defects: Annotated[list[DefectRule], Field(max_length=256)] = []


class Promotion(Strict):
    """Promotion criteria beyond promote_score: how many a batch may promote and the pool's size."""

    max_per_order: Annotated[int, Field(ge=0, le=96)] = 96
    pool_limit: Annotated[int, Field(ge=1, le=1024)] = 64


class Recipe(Strict):
    """A recipe pack in `exchange/recipes/<recipe_id>.json`: data only, nothing in it is executed."""

    schema_version: Version
    recipe_id: Slug
    version: Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+){0,2}$")]
    title: Annotated[str, StringConstraints(max_length=200)] = ""
    experimental: bool = False
    parameters: Annotated[dict[ParamName, ParamSpec], Field(min_length=1, max_length=16)]
    baselines: Annotated[list[PartialParams], Field(min_length=1, max_length=64)]
    forbidden: Annotated[list[PartialParams], Field(max_length=256)] = []
    scoring: Scoring
    pass_score: ScoreTerm
    promote_score: ScoreTerm
    mutation: Mutation = Mutation.model_construct()
    promotion: Promotion = Promotion.model_construct()


class Checkpoint(Strict):
    """A human approval of a phase in `exchange/checkpoints/<phase>.json`."""

    schema_version: Version
    phase: Phase
    approved_by: Name
    approved_at: Timestamp
    note: Note = ""


class ReviewKey(Strict):
    """What a reviewer saw: the recipe, the Alfa's parameters and the validators' finding.

    A decision keyed by it follows the Alfa when upstream changes renumber the slots,
    and lapses when what was reviewed changed.
    """

    recipe: Slug
    params: Annotated[dict[ParamName, ParamValue], Field(max_length=32)]
    finding: Annotated[
        list[Annotated[str, StringConstraints(max_length=4000)]], Field(max_length=64)
    ]


class Decision(Strict):
    """A human decision on one quarantined Alfa: `key` says which (older files name only
    `alfa_id`, the slot's id at the time, and are matched by it)."""

    alfa_id: AlfaId
    key: ReviewKey | None = None
    decision: Literal["waive", "reroll", "reject"]
    by: Name
    at: Timestamp
    note: Note = ""


class Review(Strict):
    """Human review decisions for one order, in `exchange/reviews/<order_id>.json`."""

    schema_version: Version
    order_id: OrderId
    decisions: Annotated[list[Decision], Field(max_length=4096)] = []


# --------------------------------------------------------------------------- build artefacts


class ProblemModel(Strict):
    path: str
    field: str
    reason: str


class ShareCounts(Strict):
    novel: Count = 0
    carryover: Count = 0
    baseline: Count = 0


class Alfa(Strict):
    """One minted toy: stable id, parameters, where it came from and what the validators said."""

    alfa_id: AlfaId
    slot: Annotated[int, Field(ge=0, le=95)]
    params: dict[ParamName, ParamValue]
    share: Share
    parent_id: AlfaId | None = None
    outcome: Literal["passed", "quarantined", "waived", "rerolled", "rejected"]
    reasons: list[str] = []


class HandOn(Strict):
    """Where a minted batch leaves the recipe's novel sequence, fixed before its review.

    `cursor`: past the batch's novel draws and the reserve kept for novel rerolls;
    `carried`: the batch's carryovers, and the mutations kept for carryover rerolls, at
    or beyond that cursor. Review decisions do not change either.
    """

    cursor: Count
    carried: list[Count] = []


class MintArtefact(Strict):
    """`.toyfoundry/build/<order>/mint.json`: the order's batch, byte-identical for the same inputs."""

    schema_version: Version
    order_id: OrderId
    recipe: str | None
    recipe_version: str | None
    phase: Phase | None
    status: OrderStatus
    reason: str = ""
    dry_run: bool
    seed: int | None
    batch_size: Count
    target: ShareCounts
    achieved: ShareCounts
    alfas: list[Alfa] = []
    problems: list[ProblemModel] = []
    inputs: dict[str, Sha256 | None] = {}
    hand_on: HandOn | None = None


class AlfaResult(Strict):
    """Every ritual's verdict on one Alfa."""

    alfa_id: AlfaId
    score: float | None = None
    passed: bool | None = None
    defects: list[str] = []
    rank: int | None = None
    purged: bool = False
    purge_reason: str | None = None
    promoted: bool = False
    doctrine: Sha256 | None = None


#: An Alfa's result with no ritual's verdict, `AlfaResult`'s defaults as plain data: what
#: an Alfa the rituals did not take has (a quarantined one, or every one before they ran),
#: and with its id the template of each result row the rituals make. Shared: read it,
#: never change it.
NO_RESULT: dict[str, Any] = {
    name: field.default for name, field in AlfaResult.model_fields.items() if name != "alfa_id"
}


class RitualOutcome(Strict):
    ran: bool
    stub: bool
    counts: dict[str, Count] = {}


class RitualsArtefact(Strict):
    """`.toyfoundry/build/<order>/rituals.json`: the four rituals' results for one order."""

    schema_version: Version
    order_id: OrderId
    status: OrderStatus
    dry_run: bool
    rituals: dict[Ritual, RitualOutcome]
    results: list[AlfaResult] = []
    roster: list[AlfaId] = []
    promoted: list[AlfaId] = []


class PoolEntry(Strict):
    """A promoted Alfa the next orders of its recipe may mutate (carryover)."""

    alfa_id: AlfaId
    order_id: OrderId
    params: dict[ParamName, ParamValue]
    score: float


class ChainParent(Strict):
    """The chain file an order's chain was advanced from: its order and the sha256 of its bytes."""

    order: OrderId
    sha256: Sha256


class Chain(Strict):
    """What one order hands on to the next order of its recipe, so the graph stays O(orders).

    The novel sequence is a keyed permutation of the recipe's parameter space: `cursor`
    positions of it are used up. `carried` lists the positions at or beyond the cursor
    that this order took (see `HandOn`); those of earlier orders are in the chains
    `parent` leads back to (within the same parameter space: the first chain of a space
    has no parent), so the file stays the same size however long the chain.
    Together they are the exact history without listing every Alfa.
    """

    schema_version: Version
    recipe: Slug
    space: Sha256
    cursor: Count
    carried: list[Count] = []
    parent: ChainParent | None = None
    history: Sha256
    orders: Count
    last_order: OrderId | None = None
    pool: list[PoolEntry] = []


# --------------------------------------------------------------------------- telemetry


class BatchMeta(Strict):
    size: Count
    phase: Phase | None
    recipe: str | None


class MintRecord(Strict):
    """One line of `forge_mint_alfa.jsonl`: one mint attempt of one Alfa (or of a refused order)."""

    schema_version: Version
    kind: Literal["mint"]
    run_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    time: Timestamp
    order_id: OrderId
    alfa_id: AlfaId | None
    seed: int | None
    recipe: str | None
    recipe_version: str | None
    dry_run: bool
    share: Share | None = None
    outcome: Literal[
        "minted", "quarantined", "waived", "rerolled", "rejected-by-review", "blocked", "rejected"
    ]
    reasons: list[str] = []


class RitualRecord(Strict):
    """One line of `forge_rituals.jsonl`: one ritual invocation on one order."""

    schema_version: Version
    kind: Literal["ritual"]
    run_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    time: Timestamp
    ritual: Ritual
    order_id: OrderId
    dry_run: bool
    batch: BatchMeta
    counts: dict[str, Count] = {}
    outcome: Literal["ok", "stub", "skipped", "blocked"]


class SeenArtefact(Strict):
    path: str
    sha256: Sha256
    size: Count
    first_seen: Timestamp
    last_seen: Timestamp


class WatcherState(Strict):
    """`exchange_watcher_state.json`: the last-seen exchange artefacts addressed to a target."""

    schema_version: Version
    target: Slug
    updated_at: Timestamp
    artefacts: list[SeenArtefact] = []


PendingKind = Literal["new", "stale", "blocked", "awaiting-review"]


class OrderWatcherState(Strict):
    """`order_watcher_state.json`: the pending orders as last announced."""

    schema_version: Literal[1]
    updated_at: Timestamp
    pending: Annotated[dict[OrderId, PendingKind], Field(max_length=100_000)]


class Outcomes(Strict):
    minted: Count = 0
    drilled: Count = 0
    paraded: Count = 0
    passed: Count = 0
    failed: Count = 0
    purged: Count = 0
    promoted: Count = 0
    quarantined: Count = 0
    waived: Count = 0


class AttemptStats(Strict):
    """Telemetry about an order: how often it was tried, and when last. Not build-determined."""

    mint_attempts: Count = 0
    ritual_invocations: Count = 0
    last_attempt: Timestamp | None = None


class BatchSummary(Strict):
    """One order in the quilt: status, outcomes, defects and shares."""

    order_id: OrderId
    recipe: str | None
    phase: Phase | None
    day: str
    status: OrderStatus
    reason: str = ""
    dry_run: bool
    outcomes: Outcomes
    defects: dict[str, Count] = {}
    target: ShareCounts
    achieved: ShareCounts
    score_histogram: dict[str, Count] = {}
    source: Sha256 | None = None
    telemetry: AttemptStats = AttemptStats.model_construct()


class Totals(Strict):
    by_phase: dict[str, Outcomes] = {}
    by_recipe: dict[str, Outcomes] = {}
    by_day: dict[str, Outcomes] = {}
    by_status: dict[str, Count] = {}


class QuiltRollup(Strict):
    """`quilt/quilt_rollup_all.json`: one summary per order plus foundry totals (O(orders))."""

    schema_version: Version
    batches: list[BatchSummary]
    totals: Totals
    skipped: list[str] = []


class AlfaRow(Strict):
    """A row of `exports/alfas/<order>.csv|.jsonl`: the consolidated per-Alfa view."""

    order_id: OrderId
    alfa_id: AlfaId
    recipe: str
    recipe_version: str
    phase: Phase
    day: str
    slot: Count
    share: Share
    parent_id: str
    validator: str
    reason_count: Count
    dry_run: bool
    score: float | None
    passed: bool | None
    defect_count: Count
    rank: int | None
    purged: bool
    purge_reason: str
    promoted: bool
    doctrine: str


class RitualEventRow(Strict):
    """A row of `exports/rituals/<order>.csv|.jsonl`: one ritual's effect on one order."""

    order_id: OrderId
    ritual: Ritual
    ran: bool
    stub: bool


class AlfaParamRow(Strict):
    """A row of `exports/alfa_params/<order>.csv|.jsonl`: one parameter of one Alfa."""

    order_id: OrderId
    alfa_id: AlfaId
    param: str
    number: float | None
    text: str


class AlfaNoteRow(Strict):
    """A row of `exports/alfa_notes/<order>.csv|.jsonl`: a validator's reason or a Drill defect."""

    order_id: OrderId
    alfa_id: AlfaId
    source: Literal["validator", "drill"]
    note: str


class RitualCountRow(Strict):
    """A row of `exports/ritual_counts/<order>.csv|.jsonl`: one thing a ritual counted."""

    order_id: OrderId
    ritual: Ritual
    counter: str
    count: Count


class BatchRow(Strict):
    """A row of `exports/batches.csv|.jsonl`: one order."""

    order_id: OrderId
    recipe: str
    phase: str
    day: str
    status: OrderStatus
    dry_run: bool
    minted: Count
    passed: Count
    failed: Count
    purged: Count
    promoted: Count
    quarantined: Count
    waived: Count
    novel: Count
    carryover: Count
    baseline: Count
    reason: str


class AwaitingReview(Strict):
    alfa_id: AlfaId
    reasons: list[str]


class Report(Strict):
    """`exchange/reports/<order>.json`: what happened to an order, for people and programs."""

    schema_version: Version
    order_id: OrderId
    recipe: str | None
    phase: Phase | None
    status: OrderStatus
    reason: str = ""
    dry_run: bool
    target: ShareCounts
    achieved: ShareCounts
    rituals: dict[str, RitualOutcome] = {}
    outcomes: Outcomes
    defects: dict[str, Count] = {}
    awaiting_review: list[AwaitingReview] = []
    promoted: list[AlfaId] = []
    next_steps: list[str] = []


class Settings(Strict):
    """Foundry settings from `[tool.toyfoundry]` in the project's pyproject.toml."""

    experimental_quota: Fraction = 0.2
    max_file_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    max_depth: Annotated[int, Field(ge=2, le=1000)] = 64
    #: follow `exchange/reports`, `exchange/outbox` or `.toyfoundry` when they are links
    allow_symlinked_folders: bool = False


#: Formats people and other programs write into the exchange: a file may name its schema
#: in a top-level `$schema` key, so an editor can attach it; the loader sets the key aside.
EXCHANGE_INPUTS: tuple[str, ...] = ("order", "recipe", "checkpoint", "review")
SCHEMA_KEY = "$schema"

#: The formats with a committed schema, by schema file name.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "order": Order,
    "recipe": Recipe,
    "checkpoint": Checkpoint,
    "review": Review,
    "mint_record": MintRecord,
    "ritual_record": RitualRecord,
    "watcher_state": WatcherState,
    "order_watcher_state": OrderWatcherState,
    "quilt_rollup": QuiltRollup,
    "alfa_row": AlfaRow,
    "alfa_param_row": AlfaParamRow,
    "alfa_note_row": AlfaNoteRow,
    "ritual_event_row": RitualEventRow,
    "ritual_count_row": RitualCountRow,
    "batch_row": BatchRow,
    "report": Report,
    "mint_artefact": MintArtefact,
    "rituals_artefact": RitualsArtefact,
    "chain": Chain,
}
