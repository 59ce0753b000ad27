"""An order's build artefacts as the telemetry reads them: parsed once, digested for change.

rituals.json is read as plain data (`RitualsData`): the rituals of this process leave
the data they wrote (`parsed.remember_plain`), so the report of a build validates
nothing it made itself. Bytes this process did not write are validated by the model,
which says what is wrong with a damaged file in one line; its fields are the data.
Checking orjson's parse of them in Python instead (exact fields and types, the ids'
patterns) would cost more than the model: for a batch of 94 results, 0.60M
instructions to parse and 1.34M to check, against 1.60M for the model's validation.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple, cast

from pydantic import ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.forge.inputs import display_path
from toyfoundry.formats import parsed
from toyfoundry.formats.models import NO_RESULT, MintArtefact, RitualsArtefact
from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout, UnsafeIdError, check_order_id

#: rituals.json as plain data, the values of a `RitualsArtefact`'s fields: shared by every
#: reader in the process (`parsed.recall_plain`), so read it, never change it.
RitualsData = dict[str, Any]
_ALFA_ID = operator.attrgetter("alfa_id")
_RESULT_ID = operator.itemgetter("alfa_id")


class ResultColumns(NamedTuple):
    """The results of the mint's Alfas (`OrderArtefacts.results`) a field at a time."""

    score: tuple[float | None, ...]
    passed: tuple[bool | None, ...]
    defects: tuple[list[str], ...]
    rank: tuple[int | None, ...]
    purged: tuple[bool, ...]
    purge_reason: tuple[str | None, ...]
    promoted: tuple[bool, ...]
    doctrine: tuple[str | None, ...]


_RESULT_FIELDS = operator.itemgetter(*ResultColumns._fields)


class AlfaColumns(NamedTuple):
    """The mint's Alfas a field at a time (those the summary and the partitions read)."""

    slot: tuple[int, ...]
    share: tuple[str, ...]
    parent_id: tuple[str | None, ...]
    outcome: tuple[str, ...]
    reasons: tuple[list[str], ...]


_ALFA_FIELDS = operator.attrgetter(*AlfaColumns._fields)


@dataclass(frozen=True)
class OrderArtefacts:
    """mint.json and (when the forge got that far) rituals.json of one order."""

    order_id: str
    mint: MintArtefact
    rituals: RitualsData | None
    source: str

    @property
    def day(self) -> str:
        return order_day(self.order_id)

    @cached_property
    def alfa_ids(self) -> list[str]:
        """The mint's Alfas' ids, in slot order."""
        return list(map(_ALFA_ID, self.mint.alfas))

    @cached_property
    def alfa_columns(self) -> AlfaColumns:
        """The mint's Alfas a field at a time: one step an Alfa for all the fields."""
        if not self.mint.alfas:
            return AlfaColumns((), (), (), (), ())
        return AlfaColumns(*zip(*map(_ALFA_FIELDS, self.mint.alfas), strict=True))

    @cached_property
    def results(self) -> list[dict[str, Any]]:
        """The rituals' result of each of the mint's Alfas, in slot order (`NO_RESULT` for an
        Alfa without one); results of other Alfas are left out. Made once for the summary,
        the report and the partitions, which read it as columns; shared, never changed."""
        ids = self.alfa_ids
        results = self.rituals["results"] if self.rituals else []
        if len(results) == len(ids) and list(map(_RESULT_ID, results)) == ids:
            return list(results)
        by_id = dict(zip(map(_RESULT_ID, results), results, strict=True))
        return list(map(by_id.get, ids, repeat(NO_RESULT)))

    @cached_property
    def columns(self) -> ResultColumns:
        """`results` a field at a time, for the summary's counts and the partitions' columns:
        one step an Alfa for all the fields."""
        if not self.results:
            return ResultColumns((), (), (), (), (), (), (), ())
        return ResultColumns(*zip(*map(_RESULT_FIELDS, self.results), strict=True))


def order_day(order_id: str) -> str:
    """The day an order belongs to: its id's date part, so grouping by day needs no clock."""
    return order_id[:10]


def source_digest(mint: bytes, rituals: bytes | None) -> str:
    """sha256 over both files' bytes, each length-prefixed so no two pairs digest alike."""
    digest = hashlib.sha256()
    for part in (mint, rituals):
        if part is None:
            digest.update(b"-\n")
        else:
            digest.update(f"{len(part)}\n".encode())
            digest.update(part)
    return digest.hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FoundryError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def read_source(layout: Layout, order_id: str) -> tuple[bytes | None, bytes | None]:
    """The raw bytes of mint.json and rituals.json (None for a missing file)."""
    return _read(layout.mint_artefact(order_id)), _read(layout.rituals_artefact(order_id))


def load(layout: Layout, order_id: str) -> OrderArtefacts:
    """Both artefacts of `order_id`; a missing rituals.json means no ritual has run yet."""
    mint_path = layout.mint_artefact(order_id)
    mint_bytes, rituals_bytes = read_source(layout, order_id)
    if mint_bytes is None:
        raise FoundryError(
            f"{display(layout, mint_path)}: missing; the order has not been minted yet"
        )
    try:
        mint = parsed.parse(MintArtefact, mint_path, mint_bytes)
    except ValidationError as exc:
        raise FoundryError(
            f"{display(layout, mint_path)}: not a valid mint artefact: {_first(exc)}"
        ) from None
    rituals = None
    if rituals_bytes is not None:
        rituals = read_rituals(layout, order_id, rituals_bytes)
        if rituals["order_id"] != order_id:
            path = display(layout, layout.rituals_artefact(order_id))
            raise FoundryError(f"{path}: belongs to order {rituals['order_id']}, not {order_id}")
    if mint.order_id != order_id:
        raise FoundryError(
            f"{display(layout, mint_path)}: belongs to order {mint.order_id}, not {order_id}"
        )
    return OrderArtefacts(order_id, mint, rituals, source_digest(mint_bytes, rituals_bytes))


def read_rituals(layout: Layout, order_id: str, data: bytes) -> RitualsData:
    """rituals.json's bytes as plain data; FoundryError, in one line, for an invalid file."""
    path = layout.rituals_artefact(order_id)
    known = parsed.recall_plain(path, data)
    if known is not None:
        return cast(RitualsData, known)
    try:
        model = RitualsArtefact.model_validate_json(data)
    except ValidationError as exc:
        shown = display(layout, path)
        raise FoundryError(f"{shown}: not a valid rituals artefact: {_first(exc)}") from None
    # a model keeps its fields' values in its __dict__: the plain data, without a dump
    document = {
        **model.__dict__,
        "rituals": {name: o.__dict__ for name, o in model.rituals.items()},
        "results": [r.__dict__ for r in model.results],
    }
    parsed.remember_plain(path, data, document)
    return document


def _first(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "-"
    return f"{where}: {error.get('msg', 'invalid')}"


def exchange_order_ids(layout: Layout) -> list[str]:
    """Ids of the order files in the exchange, in issue order; other names are ignored."""
    out = []
    for path in safe_read.list_json(layout.orders_dir):
        try:
            out.append(check_order_id(path.name[: -len(".json")]))
        except UnsafeIdError:
            continue
    return sorted(out)


def display(layout: Layout, path: Path) -> str:
    """A path as people should read it: relative to the project when inside it."""
    return display_path(layout.root, path)


def is_built(layout: Layout, order_id: str) -> bool:
    return layout.mint_artefact(order_id).is_file()
