"""The dashboard's headline: the figures a commander reads first, and what needs attention.

Pure functions of the dashboard's view of the rollup (`dashboard.Batch`), so a
test or another page can compute them without writing anything. Each figure
is documented where it is computed; `docs/dashboard.md` lists them for readers.
The figures are plain data (`Figures`) so a day's set can be stored beside its
page and compared with the next day's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toyfoundry.telemetry.dashboard import Batch

#: Order statuses in the order the headline shows them: what needs a person first.
STATUSES = ("blocked", "rejected", "awaiting-review", "built", "dry-run")
#: Items of one kind the attention list names before it says "and N more".
ATTENTION_LIMIT = 8


def count_text(n: int) -> str:
    """A count for people: `13,613`, never `13.613k`."""
    return f"{n:,}"


def rate_text(rate: float | None) -> str:
    """A rate as a percentage with one decimal; a dash when there is none yet."""
    return "–" if rate is None else f"{100 * rate:.1f}%"


def delta_text(now: int, before: int | None) -> str:
    """A count's change, signed (`+3`, `−1`, `±0`); empty when there is nothing to compare."""
    if before is None:
        return ""
    change = now - before
    return f"+{change:,}" if change > 0 else f"−{-change:,}" if change < 0 else "±0"


def rate_delta_text(now: float | None, before: float | None) -> str:
    """A rate's change in percentage points; empty when either is missing."""
    if now is None or before is None:
        return ""
    points = round(100 * (now - before), 1)
    return f"+{points:.1f} pts" if points > 0 else f"−{-points:.1f} pts" if points < 0 else "±0 pts"


def pass_rate(passed: int, failed: int) -> float | None:
    """Drill's pass rate: passed over drilled with a verdict; None before any verdict."""
    judged = passed + failed
    return passed / judged if judged else None


@dataclass(frozen=True, slots=True)
class Backlog:
    """The review backlog: quarantined Alfas awaiting a decision, and the oldest order holding any."""

    alfas: int
    orders: int
    oldest_order: str | None
    oldest_day: str | None


def review_backlog(batches: Iterable[Batch]) -> Backlog:
    """Quarantined Alfas (not yet waived, rerolled or rejected by a review) over every order.

    The one place the backlog is computed: swap this function to take it from
    elsewhere. The oldest item is the earliest order (by id, which sorts in
    issue order) that still holds a quarantined Alfa.
    """
    alfas = orders = 0
    oldest: Batch | None = None
    for b in batches:
        if b.quarantined:
            alfas += b.quarantined
            orders += 1
            if oldest is None or b.order_id < oldest.order_id:
                oldest = b
    return Backlog(
        alfas,
        orders,
        oldest.order_id if oldest else None,
        oldest.day if oldest else None,
    )


@dataclass(frozen=True, slots=True)
class Figures:
    """The headline figures of one day's dashboard, as stored beside its page."""

    orders: int
    by_status: dict[str, int]
    minted: int
    passed: int
    failed: int
    promoted: int
    backlog_alfas: int
    backlog_orders: int

    @property
    def pass_rate(self) -> float | None:
        return pass_rate(self.passed, self.failed)

    def as_data(self) -> dict[str, object]:
        return {
            "orders": self.orders,
            "by_status": dict(sorted(self.by_status.items())),
            "minted": self.minted,
            "passed": self.passed,
            "failed": self.failed,
            "promoted": self.promoted,
            "backlog_alfas": self.backlog_alfas,
            "backlog_orders": self.backlog_orders,
        }

    @classmethod
    def from_data(cls, data: object) -> Figures | None:
        """A stored day's figures, or None when they are not figures (an old or hand-edited file)."""
        if not isinstance(data, dict):
            return None
        counts: tuple[str, ...] = ("orders", "minted", "passed", "failed", "promoted")
        counts += ("backlog_alfas", "backlog_orders")
        if any(type(data.get(k)) is not int for k in counts):
            return None
        by_status = data.get("by_status")
        if not isinstance(by_status, dict) or any(type(v) is not int for v in by_status.values()):
            return None
        return cls(
            by_status={str(k): v for k, v in by_status.items()}, **{k: data[k] for k in counts}
        )


def figures(batches: Sequence[Batch]) -> Figures:
    """Orders by status; Alfas minted, passed (by Drill) and promoted; the review backlog."""
    backlog = review_backlog(batches)
    return Figures(
        orders=len(batches),
        by_status=dict(Counter(b.status for b in batches)),
        minted=sum(b.minted for b in batches),
        passed=sum(b.passed for b in batches),
        failed=sum(b.failed for b in batches),
        promoted=sum(b.promoted for b in batches),
        backlog_alfas=backlog.alfas,
        backlog_orders=backlog.orders,
    )


@dataclass(frozen=True, slots=True)
class Item:
    """One thing that needs a person: what, which orders (their reports), and the command."""

    kind: str
    text: str
    orders: list[str]
    more: int
    command: str

    @property
    def status(self) -> str:
        """The order status the orders table filters by to show every order of the item."""
        return "awaiting-review" if self.kind == "review" else self.kind


def _checkpoint_phase(b: Batch) -> str | None:
    """The phase whose missing checkpoint blocks `b`, as the mint's reason names it."""
    if b.phase and b.phase != "pilot" and "checkpoint" in b.reason:
        return b.phase
    return None


def _item(kind: str, text: str, found: list[Batch], command: str) -> Item:
    ids = sorted(b.order_id for b in found)
    return Item(kind, text, ids[:ATTENTION_LIMIT], max(len(ids) - ATTENTION_LIMIT, 0), command)


def attention(batches: Sequence[Batch], skipped: int) -> list[Item]:
    """What needs a person, most blocking first, grouped so 5,000 orders stay a short list.

    Blocked orders group by phase when a missing checkpoint blocks them (one
    approval clears them all), else by reason; rejected orders by reason; the
    review backlog is one item, oldest order first.
    """
    items: list[Item] = []
    blocked: dict[tuple[str, str], list[Batch]] = {}
    rejected: dict[str, list[Batch]] = {}
    waiting: list[Batch] = []
    for b in batches:
        if b.status == "blocked":
            phase = _checkpoint_phase(b)
            key = ("phase", phase) if phase else ("reason", b.reason or "no reason recorded")
            blocked.setdefault(key, []).append(b)
        elif b.status == "rejected":
            rejected.setdefault(b.reason or "no reason recorded", []).append(b)
        if b.quarantined:
            waiting.append(b)
    for (how, what), found in sorted(blocked.items()):
        if how == "phase":
            text = f"{len(found):,} order(s) blocked: the {what} phase has no approved checkpoint"
            command = f"toyfoundry checkpoint approve {what} --by NAME"
        else:
            text = f"{len(found):,} order(s) blocked: {what}"
            command = "resolve the block (see the report), then toyfoundry build"
        items.append(_item("blocked", text, found, command))
    for reason, found in sorted(rejected.items()):
        items.append(
            _item(
                "rejected",
                f"{len(found):,} order(s) rejected: {reason}",
                found,
                "fix exchange/orders/ORDER.json, then toyfoundry build",
            )
        )
    if waiting:
        alfas = sum(b.quarantined for b in waiting)
        items.append(
            _item(
                "review",
                f"{alfas:,} quarantined Alfa(s) in {len(waiting):,} order(s) await review",
                waiting,
                "toyfoundry review list, then toyfoundry review decide ORDER ALFA"
                " {waive|reroll|reject} --by NAME; then toyfoundry build",
            )
        )
    if skipped:
        items.append(
            Item(
                "telemetry",
                f"{skipped:,} ledger or part entries were skipped by the loom",
                [],
                0,
                "toyfoundry lint-telemetry",
            )
        )
    return items
