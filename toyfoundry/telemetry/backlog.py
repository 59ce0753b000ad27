"""The review backlog: how many quarantined Alfas wait, in which orders, since when, by finding.

The same queue `toyfoundry review list` shows, counted for the nightly run and the
dashboard: read from each present order's mint.json and review file, so an order that
was withdrawn leaves the backlog with it. An Alfa's age is its order's day (the date in
its id), so the figures need no clock and match on every machine.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from toyfoundry.exchange.loader import Exchange
from toyfoundry.formats.models import Review
from toyfoundry.formats.review_key import decides
from toyfoundry.store.layout import Layout

#: The command that works the queue, named wherever the backlog is shown.
REVIEW_COMMAND = "toyfoundry review list"


@dataclass(frozen=True)
class Backlog:
    """Quarantined Alfas without a decision (`pending`), and those decided but not yet built."""

    pending: int = 0
    decided: int = 0
    orders: int = 0
    oldest_day: str | None = None
    by_finding: dict[str, int] = field(default_factory=dict)
    by_day: dict[str, int] = field(default_factory=dict)

    def age_days(self, today: str) -> int | None:
        """Days from the oldest waiting order's day to `today` (YYYY-MM-DD)."""
        if self.oldest_day is None:
            return None
        return (dt.date.fromisoformat(today) - dt.date.fromisoformat(self.oldest_day)).days

    def lines(self, today: str | None = None) -> list[str]:
        """The backlog for people: a headline, then the count per finding, most first."""
        if not self.pending and not self.decided:
            return ["review backlog: nothing awaits review"]
        age = self.age_days(today) if today else None
        since = f", oldest from {self.oldest_day}" + (f" ({age} days)" if age is not None else "")
        out = [
            f"review backlog: {self.pending} quarantined Alfa(s) await review in"
            f" {self.orders} order(s){since if self.pending else ''};"
            f" {self.decided} decided, applied by `toyfoundry build`"
            + (f"; see `{REVIEW_COMMAND}`" if self.pending else "")
        ]
        out += [f"  {count:5d}  {finding}" for finding, count in self.by_finding.items()]
        return out


def _review(exchange: Exchange, order_id: str) -> Review | None:
    loaded = exchange.review(order_id)
    return loaded.model if loaded is not None else None


def backlog(layout: Layout, order_ids: Iterable[str] | None = None) -> Backlog:
    """The backlog over `order_ids` (default: every order in the exchange)."""
    exchange = Exchange(layout)
    findings: Counter[str] = Counter()
    days: Counter[str] = Counter()
    pending = decided = 0
    orders: set[str] = set()
    for order_id in exchange.order_ids() if order_ids is None else order_ids:
        try:
            mint = orjson.loads(layout.mint_artefact(order_id).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        held = [a for a in mint.get("alfas", []) if a.get("outcome") == "quarantined"]
        if not held:
            continue
        review = _review(exchange, order_id)
        recipe = mint.get("recipe") or ""
        for alfa in held:
            reasons = list(alfa.get("reasons", []))
            if review is not None and any(
                decides(d, recipe, alfa["alfa_id"], alfa["params"], reasons)
                for d in review.decisions
            ):
                decided += 1
                continue
            pending += 1
            orders.add(order_id)
            findings["; ".join(reasons)] += 1
            days[order_id[:10]] += 1
    return Backlog(
        pending=pending,
        decided=decided,
        orders=len(orders),
        oldest_day=min(days) if days else None,
        by_finding=dict(sorted(findings.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_day=dict(sorted(days.items())),
    )
