"""Every path the foundry reads or writes, in one place, with ids checked before they touch a path."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from toyfoundry import caches

# `\Z`, not `$`: in Python `$` also matches before a trailing newline, and a file named
# "2025-10-12-005\n.json" must not pass for an order id.
ORDER_ID_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{3}\Z")
SLUG_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")
ALFA_ID_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{3}\.a[0-9]{3}(r[0-9]{1,3})?\Z")
PHASES = ("pilot", "expansion", "operational")
#: Exchange folders holding inputs from other systems and people, in the order they are read.
INPUT_FOLDERS = ("recipes", "checkpoints", "orders", "reviews")
#: The per-order export partitions: `exports/<dataset>/<order_id>.<format>`.
EXPORT_DATASETS = ("alfas", "alfa_params", "alfa_notes", "rituals", "ritual_counts")
EXPORT_FORMATS = ("csv", "jsonl")
#: The telemetry ledgers (under `.toyfoundry/telemetry/`): append-only, never rewritten.
LEDGER_NAMES = ("forge_mint_alfa.jsonl", "forge_rituals.jsonl")
#: Exchange folders the foundry writes to; everything else under exchange/ is input only.
OWNED_EXCHANGE_AREAS = ("reports", "outbox")


def _join(parent: Path, name: str) -> Path:
    """`parent / name`, remembered: a build asks for each order's paths several times per
    task, and joining paths is most of what pathlib costs (a few percent of a full build).
    A few hundred orders' paths: each is a few hundred bytes, kept for the whole process."""
    return parent / name


child = lru_cache(maxsize=4096)(_join) if caches.current().on("paths") else _join


def shared(layout: Layout) -> Layout:
    """The first `Layout` of this root in the build, equal to `layout`: each task makes its
    own, and a new one joins its folders' paths again, then hashes each to look up the
    order's files (`child`): about 265,000 instructions a task, 2,800 an Alfa of the
    rituals. Kept in the `paths` cache."""
    layouts: dict[tuple[str, Path], Layout] = caches.current().table("paths")
    key = ("layout", layout.root)
    found = layouts.get(key)
    if found is None:
        if len(layouts) >= 64:  # a process that works on many projects (tests) keeps few
            layouts.clear()
        found = layouts[key] = layout
    return found


class UnsafeIdError(ValueError):
    """An id failed its whitelist and must not become part of a path."""


#: Why a linked folder of the foundry's own is refused, and what allows it.
LINKED_REASON = (
    "is a symbolic link; the foundry writes only into real folders"
    " (set allow_symlinked_folders = true under [tool.toyfoundry] to follow it)"
)


def check_order_id(value: str) -> str:
    if not isinstance(value, str) or not ORDER_ID_RE.match(value):
        raise UnsafeIdError(f"not an order id (YYYY-MM-DD-NNN): {value!r:.80}")
    return value


def check_slug(value: str) -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise UnsafeIdError(f"not a lower-case slug: {value!r:.80}")
    return value


def check_phase(value: str) -> str:
    if value not in PHASES:
        raise UnsafeIdError(f"not a phase ({', '.join(PHASES)}): {value!r:.80}")
    return value


@dataclass(frozen=True)
class Layout:
    """The foundry's folders, rooted at the project folder that holds `exchange/` and `.toyfoundry/`."""

    root: Path

    @classmethod
    def discover(cls, root: str | os.PathLike[str] | None = None) -> Layout:
        """Root from the argument, else `$TOYFOUNDRY_ROOT`, else the working folder, or the
        nearest folder above it that holds `exchange/` or `.toyfoundry/` (a command run in
        `exchange/orders/` works on its project, not on an empty foundry of its own)."""
        chosen = root if root is not None else os.environ.get("TOYFOUNDRY_ROOT") or None
        if chosen is not None:
            return cls(Path(chosen).absolute())
        here = Path.cwd().absolute()
        for folder in (here, *here.parents):
            if (folder / "exchange").is_dir() or (folder / ".toyfoundry").is_dir():
                return cls(folder)
        return cls(here)

    # --- the exchange (inputs, plus the areas the foundry owns) ---
    @cached_property
    def exchange(self) -> Path:
        return self.root / "exchange"

    @cached_property
    def orders_dir(self) -> Path:
        return self.exchange / "orders"

    @cached_property
    def recipes_dir(self) -> Path:
        return self.exchange / "recipes"

    @cached_property
    def checkpoints_dir(self) -> Path:
        return self.exchange / "checkpoints"

    @cached_property
    def reviews_dir(self) -> Path:
        return self.exchange / "reviews"

    @cached_property
    def reports_dir(self) -> Path:
        return self.exchange / "reports"

    @cached_property
    def outbox_dir(self) -> Path:
        return self.exchange / "outbox" / "toysoldiers"

    def order_file(self, order_id: str) -> Path:
        return child(self.orders_dir, f"{check_order_id(order_id)}.json")

    def recipe_file(self, recipe_id: str) -> Path:
        return child(self.recipes_dir, f"{check_slug(recipe_id)}.json")

    def checkpoint_file(self, phase: str) -> Path:
        return child(self.checkpoints_dir, f"{check_phase(phase)}.json")

    def review_file(self, order_id: str) -> Path:
        return child(self.reviews_dir, f"{check_order_id(order_id)}.json")

    def report_json(self, order_id: str) -> Path:
        return child(self.reports_dir, f"{check_order_id(order_id)}.json")

    def report_md(self, order_id: str) -> Path:
        return child(self.reports_dir, f"{check_order_id(order_id)}.md")

    def report_html(self, order_id: str) -> Path:
        return child(self.reports_dir, f"{check_order_id(order_id)}.html")

    @cached_property
    def summary_md(self) -> Path:
        return self.reports_dir / "summary.md"

    def outbox_file(self, order_id: str) -> Path:
        return child(self.outbox_dir, f"{check_order_id(order_id)}.json")

    # --- the foundry's own state ---
    @cached_property
    def state(self) -> Path:
        return self.root / ".toyfoundry"

    @cached_property
    def lock_file(self) -> Path:
        return self.state / "lock"

    @cached_property
    def dep_db(self) -> Path:
        return self.state / "doit.sqlite"

    @cached_property
    def logs_dir(self) -> Path:
        return self.state / "logs"

    @cached_property
    def build(self) -> Path:
        return self.state / "build"

    def order_build(self, order_id: str) -> Path:
        return child(self.build, check_order_id(order_id))

    def mint_artefact(self, order_id: str) -> Path:
        return child(self.order_build(order_id), "mint.json")

    def rituals_artefact(self, order_id: str) -> Path:
        return child(self.order_build(order_id), "rituals.json")

    def chain_file(self, order_id: str) -> Path:
        """What an order hands on to the next order of its recipe: cursor, history digest, pool."""
        return child(self.order_build(order_id), "chain.json")

    @cached_property
    def doctrine(self) -> Path:
        return self.state / "doctrine"

    @cached_property
    def doctrine_index(self) -> Path:
        return self.doctrine / "index.jsonl"

    @cached_property
    def telemetry(self) -> Path:
        return self.state / "telemetry"

    @cached_property
    def mint_ledger(self) -> Path:
        return self.telemetry / LEDGER_NAMES[0]

    @cached_property
    def ritual_ledger(self) -> Path:
        return self.telemetry / LEDGER_NAMES[1]

    @cached_property
    def watcher_state(self) -> Path:
        return self.telemetry / "exchange_watcher_state.json"

    @cached_property
    def order_watcher_state(self) -> Path:
        return self.telemetry / "order_watcher_state.json"

    @cached_property
    def quilt_dir(self) -> Path:
        return self.telemetry / "quilt"

    @cached_property
    def quilt_parts(self) -> Path:
        """Per-order summaries, each made once per change of its order."""
        return self.quilt_dir / "parts"

    def quilt_part(self, order_id: str) -> Path:
        return child(self.quilt_parts, f"{check_order_id(order_id)}.json")

    def partition(self, dataset: str, order_id: str, fmt: str) -> Path:
        """`exports/<dataset>/<order_id>.<fmt>`, the id checked before it becomes a path."""
        if dataset not in EXPORT_DATASETS or fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown partition {dataset}/{fmt}")
        return child(child(self.exports, dataset), f"{check_order_id(order_id)}.{fmt}")

    def order_outputs(self, order_id: str) -> list[Path]:
        """What an order's report task writes: its report, its quilt part, its partitions."""
        return [
            self.report_json(order_id),
            self.report_md(order_id),
            self.report_html(order_id),
            self.quilt_part(order_id),
            *(self.partition(d, order_id, f) for d in EXPORT_DATASETS for f in EXPORT_FORMATS),
        ]

    @cached_property
    def rollup(self) -> Path:
        return self.quilt_dir / "quilt_rollup_all.json"

    @cached_property
    def exports(self) -> Path:
        return self.quilt_dir / "exports"

    @cached_property
    def dashboard(self) -> Path:
        return self.quilt_dir / "dashboard.html"

    @cached_property
    def settings_file(self) -> Path:
        return self.root / "pyproject.toml"

    def is_owned_output(self, path: Path) -> bool:
        """True for the foundry's own outputs: watchers must never react to these."""
        try:
            rel = path.absolute().relative_to(self.root)
        except ValueError:
            return False
        parts = rel.parts
        if not parts:
            return False
        if parts[0] == ".toyfoundry":
            return True
        return len(parts) >= 2 and parts[0] == "exchange" and parts[1] in OWNED_EXCHANGE_AREAS

    # --- the folders the foundry writes into ---
    def owned_folders(self) -> tuple[Path, ...]:
        """The folders every write of the foundry lands in (or under)."""
        outbox = self.exchange / "outbox"
        return (self.reports_dir, outbox, self.outbox_dir, self.state)

    def linked_folders(self) -> list[Path]:
        """The foundry's own folders that are symbolic links.

        Everything the foundry writes goes to `.toyfoundry/`, `exchange/reports/` and
        `exchange/outbox/`; a link there sends every artefact, report and manifest
        somewhere else, so it is refused unless the project allows it.
        """
        return [folder for folder in self.owned_folders() if folder.is_symlink()]
