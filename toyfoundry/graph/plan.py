"""The exchange as the graph sees it: orders, their recipes and chains, and the input files.

Drawing the graph needs one look at every order (its recipe and phase decide its
chain and its inputs). Parsing a thousand orders through the models on every
`doit` costs more than checking the whole graph, so the plan is kept in the
dependency DB with a key over everything it was read from (every exchange input
and the settings file, plus the code that draws it): the *stat key* (name, type,
size, mtime, inode). A no-op run stats the files and reuses the plan without
hashing or parsing anything.

When it does not match (an edit, or a copy of the project with new mtimes and
inodes, as a CI checkout with a restored cache is), the plan is drawn again, but
only the files whose bytes changed are parsed: the few facts the plan takes from each order (recipe and
phase) and recipe (experimental or not) are remembered per content hash. A new
order therefore costs one parse, not a thousand.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import operator
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import orjson

from toyfoundry import caches
from toyfoundry.forge.inputs import InputView, OrderFacts, mint_input_paths
from toyfoundry.store import safe_read
from toyfoundry.store.layout import (
    INPUT_FOLDERS,
    ORDER_ID_RE,
    Layout,
    check_order_id,
)

if TYPE_CHECKING:
    from toyfoundry.exchange.loader import Exchange
    from toyfoundry.graph.backend import FoundryDB

#: Bumped when the cached record's shape changes (5: an order's own paths are not stored).
RECORD_VERSION = 5


@dataclass(frozen=True, slots=True)
class OrderNode:
    """An order as the graph sees it: its place in its recipe's chain, what it reads, what it makes.

    Paths are project-relative strings, as doit records them. What the order's tasks write
    follows from its id (`OrderPaths`): the record keeps none of it, and of its outputs the
    node keeps only the three files other tasks read, so each is one string however many
    tasks name it.
    """

    order_id: str
    recipe: str | None
    phase: str | None
    previous: str | None
    #: every file the mint reads, present or optional (a review that may appear)
    inputs: tuple[str, ...] = ()
    #: the inputs that are regular files now: the mint task's file deps
    deps: tuple[str, ...] = ()
    #: inputs that are links, FIFOs and the like, as `path:kind` (never hashed)
    odd: tuple[str, ...] = ()
    #: the order's own recipe file when it is a regular file (the rituals read it too)
    recipe_dep: tuple[str, ...] = ()
    #: whether its recipe is experimental (its mint then reads its sprint's orders)
    experimental: bool = False
    mint: str = ""
    rituals: str = ""
    chain: str = ""


#: The fields of `OrderNode` the record keeps, in order: the rest follow from the order id.
RECORDED = 9


#: An order id that stands for every order in `OrderPaths`' templates.
_PROBE = "0000-00-00-000"


class OrderPaths:
    """The files an order's tasks write, from its id: each path as the text around the id in
    the path made for a probe id, so that 10,000 orders cost string joins, not path joins,
    and no record has to keep 17 paths per order."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        mint, rituals, chain, outputs = _outputs(layout, _PROBE)
        parts = [_around(p) for p in (mint, rituals, chain, *outputs)]
        self._parts: list[tuple[str, str]] | None = (
            None if None in parts else [p for p in parts if p is not None]
        )

    def _paths(self, order_id: str, first: int, last: int | None) -> list[str]:
        if self._parts is None:  # the id shows more than once in a path: join them
            mint, rituals, chain, outputs = _outputs(self.layout, order_id)
            return [mint, rituals, chain, *outputs][first:last]
        check_order_id(order_id)
        return [f"{head}{order_id}{tail}" for head, tail in self._parts[first:last]]

    def own(self, order_id: str) -> tuple[str, str, str]:
        """Its mint and rituals artefacts and the chain it hands on."""
        mint, rituals, chain = self._paths(order_id, 0, 3)
        return mint, rituals, chain

    def outputs(self, order_id: str) -> list[str]:
        """What its report task writes."""
        return self._paths(order_id, 3, None)


class Outputs(Sequence[str]):
    """What an order's report task writes, made from its id each time it is read: doit
    keeps each task's targets until it finishes, and 14 paths of every order's report
    are 15 MB at 10,000 orders that no task reads as a file dep (see `tasks.slim_targets`)."""

    __slots__ = ("order_id", "paths")

    def __init__(self, paths: OrderPaths, order_id: str) -> None:
        self.paths = paths
        self.order_id = order_id

    def _all(self) -> list[str]:
        return self.paths.outputs(self.order_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._all()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Outputs):
            return self._all() == other._all()
        return isinstance(other, list | tuple) and self._all() == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._all())


def _around(path: str) -> tuple[str, str] | None:
    head, found, tail = path.partition(_PROBE)
    return (head, tail) if found and _PROBE not in tail else None


@dataclass
class Plan:
    """Every order in issue order, and the exchange's input files split by how doit can watch them."""

    layout: Layout
    orders: list[OrderNode] = field(default_factory=list)
    regular_inputs: list[str] = field(default_factory=list)
    odd_inputs: list[tuple[str, str]] = field(default_factory=list)
    #: each input's content identity as the plan read it (its sha256 for a regular file):
    #: the snapshot every task checks its reads against (see `forge.snapshot`)
    contents: dict[str, str] = field(default_factory=dict)
    #: when this plan was patched from another (see `patch`): what changed between them
    delta: Delta | None = None

    @cached_property
    def by_id(self) -> dict[str, OrderNode]:
        return {n.order_id: n for n in self.orders}

    @cached_property
    def paths(self) -> OrderPaths:
        return OrderPaths(self.layout)


@dataclass(frozen=True)
class Delta:
    """How a patched plan differs from the plan it was patched from (`base`)."""

    base: Plan
    #: the inputs that changed (project-relative): order files only
    paths: frozenset[str]
    #: the orders whose nodes differ from the base's: new, redrawn or gone
    orders: frozenset[str]
    #: every recipe's orders in issue order, as in the patched plan
    chains: dict[str, list[str]]


def classify(path: str | os.PathLike[str]) -> str:
    """`regular` for a plain file doit may hash; otherwise what it is (never followed or read)."""
    try:
        return safe_read.file_kind(os.lstat(path).st_mode)
    except OSError:
        return "missing"


class Entry(NamedTuple):
    """One input as the plan saw it: its lstat, and its content once someone asked for it.
    A tuple: a plan reads a thousand of them on every change a watcher sees."""

    rel: str
    kind: str
    st: os.stat_result


def scan_inputs(layout: Layout) -> list[Entry]:
    """Every input the plan is read from: the exchange's input folders and the settings file.

    Names are joined as text, not as `Path`s: at a thousand orders that was most of a
    watcher's cost of seeing one new order."""
    out: list[Entry] = []
    listed: list[tuple[str, str, list[str]]] = []
    for folder in INPUT_FOLDERS:
        path = layout.exchange / folder
        try:
            listed.append((os.fspath(path), rel(layout, path), safe_read.list_json_names(path)))
        except safe_read.ReadError:
            # not a folder, or unreadable (the validate task says so): tracked as a
            # whole, so every task that looks inside runs again once it can be listed
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                out.append(Entry(rel(layout, path), UNLISTED, st))
    kind, lstat, regular, new = safe_read.file_kind, os.lstat, stat.S_ISREG, Entry._make
    for folder_path, folder_rel, names in listed:
        for name in names:
            try:
                st = lstat(f"{folder_path}/{name}")
            except OSError:
                continue
            mode = st.st_mode
            out.append(
                new((f"{folder_rel}/{name}", "regular" if regular(mode) else kind(mode), st))
            )
    with contextlib.suppress(OSError):
        st = os.lstat(layout.settings_file)
        out.append(Entry(rel(layout, layout.settings_file), kind(st.st_mode), st))
    return out


#: The kind of an input folder that cannot be listed (mode 000, or not a folder).
UNLISTED = "unlisted"


def content_of(layout: Layout, entry: Entry) -> str:
    """The hash doit's checker keeps for the file (computed once per mtime, size and inode, and
    shared with the checker); links and other odd entries are not read: kind, mtime and
    inode stand in."""
    from toyfoundry.graph.checker import file_hash

    st = entry.st
    if entry.kind == "regular":
        try:
            return file_hash(os.path.join(layout.root, entry.rel), st, key=entry.rel)
        except OSError:
            return f"{UNREAD}{st.st_mtime_ns} {st.st_ino}"
    return f"{st.st_mtime_ns} {st.st_ino}"


#: How a regular file's content starts when it could not be hashed (see `unread`).
UNREAD = "unreadable "


def unread(entry: Entry, content: str) -> bool:
    """Whether a regular input's content stands for a file that was not read (refused,
    unreadable): a chmod or a swap back keeps its stats, so it is never reused by stat."""
    from toyfoundry.graph.checker import not_hashed

    return entry.kind == "regular" and (content.startswith(UNREAD) or not_hashed(content))


def _content(layout: Layout, entry: Entry, recorded: list[Any] | None) -> str:
    st = entry.st
    if (
        recorded is not None
        and recorded[1] == st.st_mtime_ns
        and recorded[0] == st.st_size
        and recorded[2] == st.st_ino
        and not unread(entry, content := str(recorded[3]))
    ):
        return content
    return content_of(layout, entry)


def _dumps(data: object) -> bytes:
    """orjson, or the stdlib for file names that are not UTF-8 (kept as surrogate escapes,
    which it writes as `\\udcxx` and reads back intact)."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode("ascii")


def _loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _key(*parts: object) -> str:
    from toyfoundry.graph.stages import fingerprint

    digest = hashlib.sha256(fingerprint("plan").encode())
    digest.update(f"{RECORD_VERSION}".encode())
    for part in parts:
        digest.update(_dumps(part))
    return digest.hexdigest()


def stat_key(entries: list[Entry]) -> str:
    return _key([(e.rel, e.kind, e.st.st_size, e.st.st_mtime_ns, e.st.st_ino) for e in entries])


# --------------------------------------------------------------------------- drawing the plan

#: A file's facts as remembered: [content, facts] where facts is [recipe, phase] or None for
#: an order, a bool (experimental) for a recipe.
Facts = dict[str, list[Any]]


class FactsView(InputView):
    """The exchange as the input list needs it, answered from remembered facts where the file's
    bytes are unchanged and from a real read (models and all) where they are not."""

    def __init__(self, layout: Layout, contents: dict[str, str], known: Facts) -> None:
        self.layout = layout
        self.contents = contents
        self.known = known
        self.facts: Facts = {}
        #: a file was read with other bytes than the plan hashed: the plan is right for this
        #: build at most, and is not to be reused by its stats
        self.mixed = False
        self._exchange: Exchange | None = None
        self._orders = rel(layout, layout.orders_dir) + "/"
        self._recipes = rel(layout, layout.recipes_dir) + "/"

    @property
    def exchange(self) -> Exchange:
        if self._exchange is None:
            from toyfoundry.exchange.loader import Exchange

            self._exchange = Exchange(self.layout)
        return self._exchange

    def _fact(self, rel: str, read: Any) -> Any:
        content = self.contents.get(rel)
        if content is None:  # not an input file (missing): ask the exchange, remember nothing
            return read()
        old = self.known.get(rel) or self.facts.get(rel)
        if old is not None and old[0] == content:
            value = old[1]
        else:
            value = read()
            if self.exchange.digests.get(self.layout.root / rel) != content:
                # the read took other bytes than the plan hashed (the file changed, or was a
                # FIFO for a moment): right for this build at most, never to be remembered
                # under this content, or every later build would plan the file from them
                self.mixed = True
                return value
        self.facts[rel] = [content, value]
        return value

    @cached_property
    def _ids(self) -> list[str]:
        orders, is_id = self._orders, ORDER_ID_RE.match
        return sorted(
            stem
            for rel in self.contents
            if rel.startswith(orders) and is_id(stem := _stem(rel)) is not None
        )

    def order_ids(self) -> list[str]:
        return list(self._ids)

    def order_facts(self, order_id: str) -> OrderFacts | None:
        rel = f"{self._orders}{order_id}.json"

        def read() -> list[str] | None:
            facts = self.exchange.order_facts(order_id)
            # the recipe and phase are all the plan keeps of the order's model
            self.exchange.forget("order", self.layout.order_file(order_id))
            return None if facts is None else [facts.recipe, facts.phase]

        value = self._fact(rel, read)
        return None if value is None else OrderFacts(value[0], value[1])

    def recipe_experimental(self, recipe_id: str) -> bool:
        rel = f"{self._recipes}{recipe_id}.json"
        return bool(self._fact(rel, lambda: self.exchange.recipe_experimental(recipe_id)))


def _stem(rel: str) -> str:
    return rel.rsplit("/", 1)[-1].removesuffix(".json")


def rel(layout: Layout, path: os.PathLike[str] | str) -> str:
    """A path as doit records it: relative to the project, so a relocated copy matches.

    A prefix cut where it can (this runs for every input of every order), `relpath` else.
    """
    text, root = os.fspath(path), str(layout.root)
    if text.startswith(root) and text[len(root) : len(root) + 1] == "/":
        return text[len(root) + 1 :]
    return os.path.relpath(text, root)


def _outputs(layout: Layout, order_id: str) -> tuple[str, str, str, tuple[str, ...]]:
    return (
        rel(layout, layout.mint_artefact(order_id)),
        rel(layout, layout.rituals_artefact(order_id)),
        rel(layout, layout.chain_file(order_id)),
        tuple(rel(layout, p) for p in layout.order_outputs(order_id)),
    )


class _DrawAll(Exception):
    """An order drawn again reads other orders (an experimental one): draw every order."""


def draw(
    layout: Layout,
    entries: list[Entry],
    contents: list[str],
    known: Facts | None = None,
    old: Plan | None = None,
    redrawn: AbstractSet[str] | None = None,
) -> tuple[Plan, Facts, bool]:
    """The plan from the inputs, parsing only files whose content is not in `known`;
    the facts it used, to remember for next time; whether a file changed under it.

    `redrawn`: when the only inputs that changed since `old` was drawn are these orders'
    files (see `_orders_changed`), the other orders keep their nodes unless the order
    before them in their recipe's chain moved; None draws every order. Raises
    `_DrawAll` when such an order is experimental (its inputs are other orders)."""
    view = FactsView(
        layout, {e.rel: c for e, c in zip(entries, contents, strict=True)}, known or {}
    )
    kinds = {e.rel: e.kind for e in entries}
    plan = Plan(layout)
    for e in entries:
        if not e.rel.startswith("exchange/"):
            continue
        if e.kind == "regular":
            plan.regular_inputs.append(e.rel)
        else:
            plan.odd_inputs.append((e.rel, e.kind))
    made = old.by_id if old is not None else {}
    # one string per path, however many orders read it (a recipe, a checkpoint)
    drawer = _Drawer(layout, view, kinds, {e.rel: e.rel for e in entries}, plan.paths)
    drawer.strict = redrawn is not None
    last_of_recipe: dict[str, str] = {}
    for order_id in view.order_ids():
        before = made.get(order_id)
        if (
            redrawn is not None
            and before is not None
            and order_id not in redrawn
            and (before.recipe is None or last_of_recipe.get(before.recipe) == before.previous)
        ):
            # nothing it reads changed, and the same order comes before it: the same node
            if before.recipe is not None:
                last_of_recipe[before.recipe] = order_id
            plan.orders.append(before)
            continue
        facts = view.order_facts(order_id)
        recipe = facts.recipe if facts is not None else None
        previous = last_of_recipe.get(recipe) if recipe else None
        if recipe:
            last_of_recipe[recipe] = order_id
        plan.orders.append(drawer.node(order_id, facts, previous, before))
    return plan, view.facts, view.mixed


class _Drawer:
    """Draws one order's node from the inputs' kinds and facts: for `draw`, which draws
    them all, and `patch`, which draws those a change touched."""

    def __init__(
        self,
        layout: Layout,
        view: FactsView,
        kinds: dict[str, str],
        names: dict[str, str],
        paths: OrderPaths,
    ) -> None:
        self.layout = layout
        self.view = view
        self.kinds = kinds
        self.names = names
        self.paths = paths
        #: raise `_DrawAll` for an experimental order (its inputs are other orders)
        self.strict = False
        self.recipe_files: dict[str, str] = {}
        self.experimental: dict[str, bool] = {}

    def kind_of(self, path: str) -> str:
        """An input's kind; one in a folder that cannot be listed is `unlisted` too."""
        kinds = self.kinds
        found = kinds.get(path)
        if found is None and kinds.get(path.rpartition("/")[0]) == UNLISTED:
            return UNLISTED
        return found or "regular"

    def node(
        self,
        order_id: str,
        facts: OrderFacts | None,
        previous: str | None,
        before: OrderNode | None,
    ) -> OrderNode:
        layout, view, kinds = self.layout, self.view, self.kinds
        recipe = facts.recipe if facts is not None else None
        if recipe and recipe not in self.recipe_files:
            self.recipe_files[recipe] = rel(layout, layout.recipe_file(recipe))
        own = self.recipe_files[recipe] if recipe else None
        experimental = False
        if recipe:
            if recipe not in self.experimental:
                self.experimental[recipe] = view.recipe_experimental(recipe)
            experimental = self.experimental[recipe]
            if experimental and self.strict:
                raise _DrawAll
        if (
            before is not None
            and not experimental
            and not before.experimental
            and (before.recipe, before.phase) == (recipe, facts.phase if facts else None)
            and (own in kinds) == (own in before.inputs)
        ):
            # the inputs of an order outside the experimental quota are a function of its
            # id, recipe, phase and whether the recipe file is there: unchanged, reuse them
            inputs = before.inputs
        else:
            found = mint_input_paths(layout, view, order_id, previous)
            names = self.names
            inputs = tuple(
                names.setdefault(path, path)
                for path in (rel(layout, p) for p in (*found.present, *found.optional))
            )
        files = (
            (before.mint, before.rituals, before.chain)
            if before is not None
            else self.paths.own(order_id)
        )
        # the inputs present as regular files, and those of another kind, in one pass
        regular: list[str] = []
        odd: list[str] = []
        for p in inputs:
            kind = kinds.get(p)
            if kind == "regular":
                regular.append(p)
            elif (kind := self.kind_of(p)) != "regular":
                odd.append(f"{p}:{kind}")
        node = OrderNode(
            order_id,
            recipe,
            facts.phase if facts is not None else None,
            previous,
            inputs,
            tuple(regular),
            tuple(odd),
            (own,) if own is not None and kinds.get(own) == "regular" else (),
            experimental,
            *files,
        )
        # an unchanged order keeps the node it had: a warm watcher's plans share them
        return before if node == before else node


def scan(layout: Layout) -> Plan:
    """Read every input afresh (no cache): the plan as the exchange is now."""
    entries = scan_inputs(layout)
    contents = [content_of(layout, e) for e in entries]
    plan = draw(layout, entries, contents)[0]
    plan.contents = {e.rel: c for e, c in zip(entries, contents, strict=True)}
    return plan


# --------------------------------------------------------------------------- patching the plan


@dataclass
class Drawn:
    """A plan and what it was drawn from, kept by a process that can name what changed
    before it draws again (a warm watcher, which trusts its events): `patch` then redraws
    only the orders a change touches, where `load` goes over every input and order."""

    plan: Plan
    #: every input's kind, by project-relative path
    kinds: dict[str, str]
    facts: Facts
    #: the settings file's content (the size and depth limits decide what parses)
    settings: str | None
    #: no order is experimental (one reads other orders) and no input is unread
    patchable: bool
    #: each recipe's orders in issue order (made on first use)
    chains: dict[str, list[str]] | None = None


def _chains(plan: Plan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for node in plan.orders:
        if node.recipe is not None:
            out.setdefault(node.recipe, []).append(node.order_id)
    return out


def _folder_rank(layout: Layout) -> Callable[[str], tuple[int, str]]:
    """The order `scan_inputs` lists inputs in: folder by folder, by name within each."""
    rank = {rel(layout, layout.exchange / f): i for i, f in enumerate(INPUT_FOLDERS)}
    return lambda path: (rank[path.rpartition("/")[0]], path)


def patch(
    layout: Layout, drawn: Drawn, changed: dict[str, Entry | None]
) -> tuple[Plan, Drawn, Facts] | None:
    """The plan `drawn.plan` becomes when only the inputs in `changed` did (path -> its
    entry now, None when gone), drawn again only for the orders whose files changed and
    those that now follow another order in their recipe's chain; with the new `Drawn`,
    and the facts asked for. None when that is not enough (a change to anything but an
    order's file, an experimental order, a file that was not or could not be read as
    hashed): `load` then draws every order, as it does in a fresh process."""
    old = drawn.plan
    if not drawn.patchable or any(k == UNLISTED for _, k in old.odd_inputs):
        return None
    prefix = rel(layout, layout.orders_dir) + "/"
    contents = dict(old.contents)
    kinds = dict(drawn.kinds)
    regular = list(old.regular_inputs)
    odd = list(old.odd_inputs)
    key = _folder_rank(layout)
    ids: dict[str, bool] = {}
    for path, entry in changed.items():
        stem = _stem(path)
        if path != f"{prefix}{stem}.json" or ORDER_ID_RE.match(stem) is None:
            return None
        was = kinds.pop(path, None)
        contents.pop(path, None)
        if was == "regular":
            del regular[bisect.bisect_left(regular, key(path), key=key)]
        elif was is not None:
            del odd[bisect.bisect_left(odd, key(path), key=lambda o: key(o[0]))]
        if entry is not None:
            content = content_of(layout, entry)
            if unread(entry, content):
                return None
            contents[path] = content
            kinds[path] = entry.kind
            if entry.kind == "regular":
                bisect.insort(regular, path, key=key)
            else:
                bisect.insort(odd, (path, entry.kind), key=lambda o: key(o[0]))
        ids[stem] = entry is not None
    view = FactsView(layout, contents, drawn.facts)
    plan = Plan(layout, [], regular, odd, contents)
    drawer = _Drawer(layout, view, kinds, {}, plan.paths)
    drawer.strict = True
    chains = drawn.chains if drawn.chains is not None else _chains(old)
    chains = dict(chains)
    made = old.by_id
    facts_of: dict[str, OrderFacts | None] = {}
    touched: set[str] = set()
    # each changed order leaves its old chain, and joins its new one
    for order_id, present in ids.items():
        before = made.get(order_id)
        if before is not None and before.recipe is not None:
            chain = chains[before.recipe] = list(chains[before.recipe])
            chain.pop(bisect.bisect_left(chain, order_id))
            touched.add(before.recipe)
        if present:
            facts = facts_of[order_id] = view.order_facts(order_id)
            if facts is not None and facts.recipe:
                chain = chains.setdefault(facts.recipe, [])
                if facts.recipe not in touched:
                    chain = chains[facts.recipe] = list(chain)
                    touched.add(facts.recipe)
                bisect.insort(chain, order_id)
    # the orders to draw: the changed ones, and the one after each place a change left or took
    redraw = {order_id for order_id, present in ids.items() if present}
    for order_id in ids:
        before = made.get(order_id)
        if before is not None and before.recipe is not None:
            _after(chains[before.recipe], order_id, redraw)
        facts = facts_of.get(order_id)
        if facts is not None and facts.recipe:
            _after(chains[facts.recipe], order_id, redraw)
    by_id = dict(made)
    orders = list(old.orders)
    at = operator.attrgetter("order_id")
    differ: set[str] = set()
    for order_id, present in ids.items():
        if not present and by_id.pop(order_id, None) is not None:
            del orders[bisect.bisect_left(orders, order_id, key=at)]
            differ.add(order_id)
    try:
        for order_id in sorted(redraw):
            before = by_id.get(order_id)
            facts = facts_of[order_id] if order_id in facts_of else view.order_facts(order_id)
            previous = None
            if facts is not None and facts.recipe:
                chain = chains[facts.recipe]
                index = bisect.bisect_left(chain, order_id)
                previous = chain[index - 1] if index else None
            node = drawer.node(order_id, facts, previous, before)
            if node is before:
                continue
            differ.add(order_id)
            by_id[order_id] = node
            index = bisect.bisect_left(orders, order_id, key=at)
            if before is None:
                orders.insert(index, node)
            else:
                orders[index] = node
    except _DrawAll:
        return None
    if view.mixed:
        return None
    plan.orders = orders
    plan.__dict__["by_id"] = by_id
    plan.delta = Delta(old, frozenset(changed), frozenset(differ), chains)
    known = dict(drawn.facts)
    for path in changed:
        known.pop(path, None)
    known.update(view.facts)
    return plan, Drawn(plan, kinds, known, drawn.settings, True, chains), view.facts


def _after(chain: list[str], order_id: str, out: set[str]) -> None:
    """Add the order after `order_id`'s place in `chain` (it is there or not)."""
    index = bisect.bisect_right(chain, order_id)
    if index < len(chain):
        out.add(chain[index])


# --------------------------------------------------------------------------- the cached record


def _encode(plan: Plan) -> list[Any]:
    recorded = operator.attrgetter(*(f.name for f in fields(OrderNode)[:RECORDED]))
    rows = [recorded(n) for n in plan.orders]
    return [rows, plan.regular_inputs, plan.odd_inputs]


def _decode(layout: Layout, data: list[Any]) -> Plan:
    orders, regular, odd = data
    plan = Plan(layout, [], list(regular), [(a, b) for a, b in odd])
    own = plan.paths.own
    for order_id, recipe, phase, previous, inputs, deps, odds, recipe_dep, experimental in orders:
        node = OrderNode(
            order_id,
            recipe,
            phase,
            previous,
            tuple(inputs),
            tuple(deps),
            tuple(odds),
            tuple(recipe_dep),
            experimental,
            *own(order_id),
        )
        plan.orders.append(node)
    return plan


# The `plan_record` cache (`toyfoundry.caches`): the record last read or written, parsed,
# project -> (text, record, plan). A warm watcher reads back, one change later, the record
# it wrote itself (a MB at 1,000 orders); the same text is not parsed and decoded again.
# Only a set of caches that carries it to the next build keeps it: a `doit` loads the plan
# once, and the text and the parsed record would stay until it ends (30 MB at 10,000 orders).
def _remember(layout: Layout, text: str, record: dict[str, Any], plan: Plan) -> None:
    if "plan_record" not in caches.current().keep:
        return
    last = caches.current().table("plan_record")
    drawn = _drawn(layout)
    last.clear()
    last[str(layout.root)] = (text, record, plan)
    if drawn is not None:
        _keep(layout, drawn)


def _read_record(layout: Layout, text: str | None) -> tuple[dict[str, Any] | None, Plan | None]:
    """The stored record, parsed, and its plan (None until asked for), if it is this version's."""
    if not text:
        return None, None
    last = caches.current().table("plan_record").get(str(layout.root))
    if last is not None and last[0] == text:
        return last[1], last[2]
    try:
        record = _loads(text)
    except ValueError:
        return None, None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None, None
    return record, None


def load(
    layout: Layout,
    entries: list[Entry] | None = None,
    later: list[Callable[[FoundryDB], None]] | None = None,
    changed: dict[str, Entry | None] | None = None,
) -> Plan:
    """The plan, from the dependency DB when nothing it was read from has changed.

    `entries`: the inputs as the caller has just listed them (`scan_inputs`), for a
    watcher that lists them anyway to see what changed. `later`: where to leave the
    writing of a new record (a call, given an open DB), for a watcher that writes it
    once the build it plans is done: the record serves the next process, not this
    build, and at 10,000 orders it is 7 MB.

    Each use of the stored record can be turned off (`toyfoundry.caches`):
    `plan_stat_key` (the record by the inputs' stats, and each input's hash by its
    stats), `plan_facts` (the facts per content hash, and the previous plan's inputs of an
    order whose facts held). With both off the plan is drawn from every input.

    `changed`: for a process that keeps its plans (the `plan_record` cache) and knows
    which inputs changed since the last one it drew, with `entries` (see `patch`):
    those paths, each with its entry now (None when gone).
    """
    from toyfoundry.graph import backend

    on = caches.current().on
    db = backend.current()
    if changed is not None and entries is not None and on("plan_stat_key") and on("plan_facts"):
        drawn = _drawn(layout)
        patched = patch(layout, drawn, changed) if drawn is not None else None
        if patched is not None:
            plan, drawn = patched[:2]
            _keep(layout, drawn)
            if db is not None:
                write = _writer(layout, entries, drawn, None)
                if later is not None:
                    later.append(write)
                else:
                    write(db)
            return plan
    if entries is None:
        entries = scan_inputs(layout)
    fast = stat_key(entries)
    record: dict[str, Any] | None = None
    stored: Plan | None = None
    if db is not None:
        text = db.get_meta("plan")
        record, stored = _read_record(layout, text)
        if (
            record is not None
            and on("plan_stat_key")
            and record.get("stat") == fast
            and not record.get("unread")
        ):
            if stored is None:
                stored = _decode(layout, record["plan"])
                stored.contents = {k: str(v[3]) for k, v in record.get("inputs", {}).items()}
                _remember(layout, text or "", record, stored)
            _keep_drawn(layout, stored, entries, record.get("facts") or {}, record["settings"])
            return stored
    # an input whose stats are the ones recorded keeps its recorded content: after a new
    # order only that order's file is looked up, not every input's hash
    seen: dict[str, list[Any]] = (
        record.get("inputs", {}) if record is not None and on("plan_stat_key") else {}
    )
    contents = [_content(layout, e, seen.get(e.rel)) for e in entries]
    now = {e.rel: c for e, c in zip(entries, contents, strict=True)}
    settings = _settings(entries, contents)
    kept = record if on("plan_facts") else None
    old = (stored or _decode(layout, kept["plan"])) if kept is not None else None
    known: Facts = kept["facts"] if kept is not None else {}
    if kept is not None and kept.get("settings") != settings:
        known = {}  # the size and depth limits decide what parses
    redrawn = None
    if kept is not None and old is not None and known and not kept.get("unread"):
        before = stored.contents if stored is not None else {}
        before = before or {k: str(v[3]) for k, v in seen.items()}
        redrawn = _orders_changed(layout, old, before, now)
    try:
        plan, facts, mixed = draw(layout, entries, contents, known, old, redrawn)
        if redrawn is not None:
            # the facts of the orders that kept their nodes were not asked for: keep them
            facts = {**{k: v for k, v in known.items() if k in now}, **facts}
    except _DrawAll:
        plan, facts, mixed = draw(layout, entries, contents, known, old)
    plan.contents = now
    # a file not read now may be readable next time under the same stats
    unread_now = mixed or any(unread(e, c) for e, c in zip(entries, contents, strict=True))
    drawn = Drawn(plan, {}, facts, settings, not unread_now)
    _keep_drawn(layout, plan, entries, facts, settings, unread_now)
    write_record = _writer(layout, entries, drawn, fast, unread_now)
    if db is not None and later is not None:
        later.append(write_record)
    elif db is not None:
        write_record(db)
    return plan


def _writer(
    layout: Layout, entries: list[Entry], drawn: Drawn, fast: str | None, unread: bool = False
) -> Callable[[FoundryDB], None]:
    """The writing of the record of `drawn`'s plan, drawn from `entries`: made when it is
    written (a warm watcher writes it once idle, see `graph_watcher`)."""

    def write_record(db: FoundryDB) -> None:
        plan = drawn.plan
        contents = plan.contents
        fresh = {
            "version": RECORD_VERSION,
            "stat": fast if fast is not None else stat_key(entries),
            "settings": drawn.settings,
            "unread": unread,
            "facts": drawn.facts,
            "inputs": {
                e.rel: [e.st.st_size, e.st.st_mtime_ns, e.st.st_ino, contents[e.rel]]
                for e in entries
            },
            "plan": _encode(plan),
        }
        text = _dumps(fresh).decode()
        db.put_meta("plan", text)
        _remember(layout, text, fresh, plan)

    return write_record


def _drawn(layout: Layout) -> Drawn | None:
    found = caches.current().table("plan_record").get(("drawn", str(layout.root)))
    return found if isinstance(found, Drawn) else None


def _keep(layout: Layout, drawn: Drawn) -> None:
    if "plan_record" in caches.current().keep:
        caches.current().table("plan_record")[("drawn", str(layout.root))] = drawn


def _keep_drawn(
    layout: Layout,
    plan: Plan,
    entries: list[Entry],
    facts: Facts,
    settings: str | None,
    unread: bool = False,
) -> None:
    """Keep what `patch` needs of a plan drawn (or read) whole, in a process that keeps it."""
    if "plan_record" not in caches.current().keep:
        return
    patchable = not unread and not any(n.experimental for n in plan.orders)
    _keep(layout, Drawn(plan, {e.rel: e.kind for e in entries}, facts, settings, patchable))


def _settings(entries: list[Entry], contents: list[str]) -> str | None:
    # the settings file is listed last (see `scan_inputs`)
    for e, c in zip(reversed(entries), reversed(contents), strict=True):
        if not e.rel.startswith("exchange/"):
            return c
    return None


def _orders_changed(
    layout: Layout, old: Plan, before: dict[str, str], now: dict[str, str]
) -> set[str] | None:
    """The orders whose files differ between two plans' inputs (`before`, `now`: path ->
    content), when nothing else differs and no order of `old` is experimental (one reads
    other orders); None when anything else changed: every order is drawn again."""
    orders = rel(layout, layout.orders_dir) + "/"
    moved = [p for p, c in now.items() if before.get(p) != c]
    moved += before.keys() - now.keys()
    ids: set[str] = set()
    for path in moved:
        stem = path[len(orders) :].removesuffix(".json")
        if not path.startswith(orders) or "/" in stem:
            return None
        ids.add(stem)
    if any(n.experimental for n in old.orders):
        return None
    return ids


# --------------------------------------------------------------------------- what a change feeds


def listed_folders(layout: Layout) -> list[Path]:
    """The folders the plan lists: each of their files is an input, a new one included."""
    return [layout.exchange / folder for folder in INPUT_FOLDERS]


def named_paths(plan: Plan) -> set[str]:
    """Every project-relative file the plan names as an input: the files it was read from
    (the exchange's inputs, the settings) and every file an order reads, present or not yet."""
    out = set(plan.contents) | set(plan.regular_inputs) | {p for p, _ in plan.odd_inputs}
    for node in plan.orders:
        out.update(node.inputs)
    return out


def orders_fed_by(plan: Plan, paths: Iterable[str], before: Plan | None = None) -> set[str]:
    """The orders whose tasks a change of `paths` (project-relative) may make stale, as the
    tasks declare their inputs: an order that reads a changed path (present or optional),
    an order whose declared inputs differ from those in `before` (new, moved in its chain,
    a file of it appeared or went), and every order that reads the chain file of one of
    those, and so on down its recipe's chain. doit's early cutoff skips what did not change."""
    changed = set(paths)
    delta = plan.delta
    if delta is not None and before is delta.base and changed <= delta.paths:
        return _fed_by_delta(plan, delta, changed)
    old = before.by_id if before is not None else {}
    out = {
        n.order_id
        for n in plan.orders
        if changed.intersection(n.inputs) or old.get(n.order_id) != n
    }
    followers: dict[str, list[str]] = {}
    for node in plan.orders:
        if node.previous is not None:
            followers.setdefault(node.previous, []).append(node.order_id)
    todo = list(out)
    while todo:
        for follower in followers.get(todo.pop(), []):
            if follower not in out:
                out.add(follower)
                todo.append(follower)
    return out


def _fed_by_delta(plan: Plan, delta: Delta, changed: set[str]) -> set[str]:
    """`orders_fed_by` for a plan patched from `before` for changes of order files only: no
    order is experimental, so an order file is read by its own order alone, and the orders
    that follow one are those after it in its recipe's chain."""
    nodes = plan.by_id
    out = {o for o in (*delta.orders, *(_stem(p) for p in changed)) if o in nodes}
    for order_id in list(out):
        recipe = nodes[order_id].recipe
        if recipe is not None:
            chain = delta.chains[recipe]
            out.update(chain[bisect.bisect_right(chain, order_id) :])
    return out
