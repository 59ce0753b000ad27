"""Load exchange files into models or one-line problems; every exchange reader comes through here."""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from toyfoundry import caches
from toyfoundry.errors import FoundryError, Problem
from toyfoundry.exchange import rules
from toyfoundry.forge.inputs import OrderFacts, display_path
from toyfoundry.formats.models import (
    EXCHANGE_INPUTS,
    SCHEMA_KEY,
    Checkpoint,
    Order,
    Recipe,
    Report,
    Review,
    Settings,
)
from toyfoundry.store import safe_read
from toyfoundry.store.layout import (
    LINKED_REASON,
    Layout,
    UnsafeIdError,
    check_order_id,
    check_phase,
    check_slug,
)

M = TypeVar("M", bound=BaseModel)

#: Problems listed per file; the rest are counted in one more line.
MAX_PROBLEMS = 20

#: Which format a file has, from the exchange folder it sits in.
KIND_BY_FOLDER: dict[str, str] = {
    "orders": "order",
    "recipes": "recipe",
    "checkpoints": "checkpoint",
    "reviews": "review",
    "reports": "report",
}
MODEL_BY_KIND: dict[str, type[BaseModel]] = {
    "order": Order,
    "recipe": Recipe,
    "checkpoint": Checkpoint,
    "review": Review,
    "report": Report,
}


#: The kinds whose model and rule findings depend on the file's bytes alone (an order's
#: depend on its recipe, a review's on its order).
SELF_CONTAINED = frozenset({"recipe", "checkpoint"})


@dataclass
class Loaded(Generic[M]):
    """A model, or the problems that kept the file from becoming one."""

    model: M | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.model is not None and not self.problems

    def require(self) -> M:
        if self.model is None or self.problems:
            raise FoundryError("", self.problems)
        return self.model


def display(layout: Layout, path: Path) -> str:
    """A path as people should read it: relative to the project when inside it (from the
    paths' text when both are absolute, as the layout's are: the mint shows several an order)."""
    return display_path(layout.root, path)


def kind_for(layout: Layout, path: Path) -> str | None:
    """The format of an exchange file, from its folder; None for files outside the known folders."""
    parent = path.absolute().parent
    if parent.parent != layout.exchange.absolute():
        return None
    return KIND_BY_FOLDER.get(parent.name)


def _reason(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "missing":
        return "is required"
    message = str(error.get("msg", "is invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    value = error.get("input")
    if kind.endswith("_type") or kind in {"literal_error", "string_pattern_mismatch"}:
        shown = repr(value)
        message += f" (got {shown[:40]}{'...' if len(shown) > 40 else ''})"
    return message


def _capped(path: str, problems: Iterator[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS lines per file: a 1 MiB file of unknown keys must not become
    60,000 lines in every artefact, report and ledger record that carries its problems."""
    out = list(islice(problems, MAX_PROBLEMS))
    more = sum(1 for _ in problems)
    if more:
        out.append(Problem(path, "-", f"{more} more problem(s) not listed"))
    return out


def pydantic_problems(path: str, error: ValidationError) -> list[Problem]:
    problems = (
        Problem(path, ".".join(str(p) for p in item.get("loc", ())) or "-", _reason(item))
        for item in error.errors(include_url=False)
    )
    return _capped(path, problems)


def schema_problems(kind: str, path: str, document: Any) -> list[Problem]:
    # imported here: jsonschema costs more to import than a graph change costs to draw,
    # and only `validate` checks documents against the schemas
    from toyfoundry.formats import schemas

    return _capped(path, (Problem(path, f, m) for f, m in schemas.iter_errors(kind, document)))


def settings(layout: Layout) -> Settings:
    """Foundry settings from `[tool.toyfoundry]`; defaults when the project sets none.

    Read each time; parsed only when the bytes differ from the last parse of the same
    file (the `settings` cache): a TOML parse of a project's pyproject costs about
    0.8 ms, and a build makes two `Exchange`s an order (BENCHMARKS.md, "CPU per Alfa").
    """
    return _read_settings(layout, layout.settings_file)


def linked_folder_problems(layout: Layout) -> list[Problem]:
    """One line per folder of the foundry's own that is a link, unless the project allows it
    (`allow_symlinked_folders`); the settings are read only when there is such a link."""
    linked = layout.linked_folders()
    if not linked or settings(layout).allow_symlinked_folders:
        return []
    return [Problem(display(layout, folder), "-", LINKED_REASON) for folder in linked]


def _read_settings(layout: Layout, path: Path) -> Settings:
    try:
        raw = path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        raise FoundryError(f"{display(layout, path)}: -: cannot be read: {exc}") from None
    # the `settings` cache: path -> (bytes, their settings); a failed read is not kept
    known: dict[Path, tuple[bytes, Settings]] = caches.current().table("settings")
    seen = known.get(path)
    if seen is not None and seen[0] == raw:
        return seen[1]
    try:
        # as a text-mode read gives it: universal newlines
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FoundryError(f"{display(layout, path)}: -: cannot be read: {exc}") from None
    section = data.get("tool", {}).get("toyfoundry", {})
    try:
        conf = Settings.model_validate(section)
        known.clear()
        known[path] = (raw, conf)
        return conf
    except ValidationError as exc:
        problems = pydantic_problems(display(layout, path), exc)
        raise FoundryError(
            "", [Problem(p.path, f"tool.toyfoundry.{p.field}", p.reason) for p in problems]
        ) from None


class Exchange:
    """One consistent read of the exchange: files are read once and remembered."""

    def __init__(self, layout: Layout, *, schema_check: bool = False) -> None:
        self.layout = layout
        self.schema_check = schema_check
        conf = settings(layout)
        self.max_bytes = conf.max_file_bytes
        self.max_depth = conf.max_depth
        self.settings = conf
        self._cache: dict[tuple[str, Path], Loaded[Any]] = {}
        #: sha256 of the bytes each file had when this read took them: what a build used,
        #: even if the file changes before anyone hashes it again; None for a file the read
        #: refused (a link, a FIFO, too big, gone), which gave the build no bytes at all.
        self.digests: dict[Path, str | None] = {}

    def read_document(self, path: Path) -> tuple[Any, list[Problem]]:
        try:
            raw = safe_read.read_bytes(path, max_bytes=self.max_bytes)
        except safe_read.ReadError as exc:
            self.digests[path] = None
            p = exc.problem
            return None, [Problem(display(self.layout, path), p.field, p.reason)]
        return self._document(path, raw)

    def _document(self, path: Path, raw: bytes) -> tuple[Any, list[Problem]]:
        self.digests[path] = hashlib.sha256(raw).hexdigest()
        try:
            data = safe_read.parse_json(raw, source=str(path), max_depth=self.max_depth)
        except safe_read.ReadError as exc:
            p = exc.problem
            return None, [Problem(display(self.layout, path), p.field, p.reason)]
        return data, []

    def load(self, kind: str, path: Path) -> Loaded[Any]:
        """A file of a known kind, through safe reading, the schema (optional), the model and rules."""
        key = (kind, path)
        if key not in self._cache:
            self._cache[key] = self._load(kind, path)
        return self._cache[key]

    def _load_present(self, kind: str, path: Path) -> Loaded[Any] | None:
        """`load`, or None when there is no entry at `path` (a missing file is not kept).

        The load comes first and only a failed one asks whether the file is there: an
        `lstat` before every load cost a syscall per read of an order, its recipe and
        checkpoint, several times an order.
        """
        key = (kind, path)
        loaded = self._cache.get(key)
        if loaded is None:
            loaded = self._load(kind, path)
            if loaded.model is None and not safe_read.present(path):
                return None
            self._cache[key] = loaded
        return loaded

    def forget(self, kind: str, path: Path) -> None:
        """Drop a file's remembered load (the digest of its bytes stays): for a reader that
        keeps what it needs of it, as the graph's plan keeps an order's recipe and phase
        (10,000 order models would otherwise live until the plan is drawn)."""
        self._cache.pop((kind, path), None)

    def _load(self, kind: str, path: Path) -> Loaded[Any]:
        if kind in SELF_CONTAINED:
            return self._load_known(kind, path)
        return self._checked(kind, path, self._parse(kind, path))

    def _checked(self, kind: str, path: Path, parsed: Loaded[Any]) -> Loaded[Any]:
        if parsed.model is None:
            return parsed
        problems = self._rules(kind, parsed.model, path)
        return Loaded(parsed.model, problems)

    def _load_known(self, kind: str, path: Path) -> Loaded[Any]:
        """`_load` of a file whose findings depend on its bytes alone: read every time, then
        parsed, validated and checked only when the bytes differ from the last load of the
        same file in this process (the `exchange_files` cache). Every order of a recipe
        loads it twice (mint and rituals): 0.3-0.6 ms a load."""
        try:
            raw = safe_read.read_bytes(path, max_bytes=self.max_bytes)
        except safe_read.ReadError:
            return self._checked(kind, path, self._parse(kind, path))  # says why, as before
        known: dict[tuple[object, ...], tuple[bytes, str | None, Loaded[Any]]]
        known = caches.current().table("exchange_files")
        key = (
            kind,
            path,
            self.layout.root,
            self.max_depth,
            os.environ.get(safe_read.MAX_DEPTH_ENV),
            self.schema_check,
        )
        seen = known.get(key)
        if seen is not None and seen[0] == raw:
            self.digests[path] = seen[1]
            return Loaded(seen[2].model, list(seen[2].problems))
        loaded = self._checked(kind, path, self._parse(kind, path, raw))
        if len(known) >= 64 and key not in known:
            known.clear()
        known[key] = (raw, self.digests[path], Loaded(loaded.model, list(loaded.problems)))
        return loaded

    def _parse(self, kind: str, path: Path, raw: bytes | None = None) -> Loaded[Any]:
        shown = display(self.layout, path)
        data, problems = self.read_document(path) if raw is None else self._document(path, raw)
        if problems:
            return Loaded(None, problems)
        if not isinstance(data, dict):
            return Loaded(None, [Problem(shown, "-", "must be a JSON object")])
        if kind in EXCHANGE_INPUTS and isinstance(data.get(SCHEMA_KEY), str):
            data = {k: v for k, v in data.items() if k != SCHEMA_KEY}  # for editors only
        # the model first, with or without the schema: `validate` then prints the very
        # lines the build prints for the same file; the schema (generated from the model)
        # is a second opinion on what the model accepted
        try:
            model = MODEL_BY_KIND[kind].model_validate(data)
        except ValidationError as exc:
            return Loaded(None, pydantic_problems(shown, exc))
        if self.schema_check:
            found = schema_problems(kind, shown, data)
            if found:
                return Loaded(None, found)
        return Loaded(model)

    def _rules(self, kind: str, model: Any, path: Path) -> list[Problem]:
        shown = display(self.layout, path)
        stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.stem
        if kind == "order":
            recipe_problems = self._recipe_for(model.recipe, shown)
            recipe = None if recipe_problems else self.recipe(model.recipe).model
            return recipe_problems + rules.order_rules(model, shown, stem, recipe)
        if kind == "recipe":
            return rules.recipe_rules(model, shown, stem)
        if kind == "checkpoint":
            return rules.checkpoint_rules(model, shown, stem)
        if kind == "review":
            order = self.order(model.order_id).model
            return rules.review_rules(model, shown, stem, order.batch_size if order else None)
        return []

    def _recipe_for(self, recipe_id: str, shown: str) -> list[Problem]:
        path = self.layout.recipe_file(recipe_id)
        loaded = self._load_present("recipe", path)
        if loaded is None:
            return [
                Problem(shown, "recipe", f"recipe {recipe_id!r} not found in exchange/recipes/")
            ]
        if not loaded.ok:
            return [
                Problem(
                    shown,
                    "recipe",
                    f"recipe {recipe_id!r} is invalid (see {display(self.layout, path)})",
                )
            ]
        return []

    # --- typed accessors, ids checked before they become paths ---
    def order(self, order_id: str) -> Loaded[Order]:
        try:
            path = self.layout.order_file(check_order_id(order_id))
        except UnsafeIdError as exc:
            return Loaded(None, [Problem(order_id[:80], "order_id", str(exc))])
        loaded = self._load_present("order", path)
        if loaded is None:
            return Loaded(None, [Problem(display(self.layout, path), "-", "does not exist")])
        return loaded

    def recipe(self, recipe_id: str) -> Loaded[Recipe]:
        try:
            path = self.layout.recipe_file(check_slug(recipe_id))
        except UnsafeIdError as exc:
            return Loaded(None, [Problem(recipe_id[:80], "recipe_id", str(exc))])
        return self.load("recipe", path)

    def checkpoint(self, phase: str) -> Loaded[Checkpoint] | None:
        """None when the phase has no checkpoint file (the order is then blocked)."""
        return self._load_present("checkpoint", self.layout.checkpoint_file(check_phase(phase)))

    def review(self, order_id: str) -> Loaded[Review] | None:
        """None when no review was written for the order: its digest is then None, what this
        read took of it (the mint's inputs list the path; a second, failing read of it cost
        an exception and a `Problem` an order)."""
        path = self.layout.review_file(check_order_id(order_id))
        if not safe_read.present(path):
            self.digests[path] = None
            return None
        return self.load("review", path)

    # --- the view the mint's input list reads (toyfoundry.forge.inputs.InputView) ---
    def order_facts(self, order_id: str) -> OrderFacts | None:
        model = self.order(order_id).model
        return None if model is None else OrderFacts(model.recipe, model.phase)

    def recipe_experimental(self, recipe_id: str) -> bool:
        model = self.recipe(recipe_id).model
        return model is not None and model.experimental

    def order_ids(self) -> list[str]:
        """Ids of the order files whose names are valid order ids, in issue order."""
        out = []
        for path in safe_read.list_json(self.layout.orders_dir):
            stem = path.name[: -len(".json")]
            try:
                out.append(check_order_id(stem))
            except UnsafeIdError:
                continue
        return sorted(out)
