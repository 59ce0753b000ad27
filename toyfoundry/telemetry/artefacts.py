"""An order's build artefacts as the telemetry reads them: parsed once, digested for change.

rituals.json is read as plain data (`RitualsData`): the report turns a batch's results
into rows and counts, and a model per result cost more than all of that. The foundry
wrote the file, so its data is taken as it is once a check of its shape passes (exact
fields, exact types, the ids' patterns: what the model would accept and give back
unchanged); a file that fails the check, edited or damaged, is validated by the
model, which says what is wrong in one line, or whose data is then used.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from toyfoundry.errors import FoundryError
from toyfoundry.formats import parsed
from toyfoundry.formats.models import RITUALS, MintArtefact, RitualsArtefact
from toyfoundry.store import safe_read
from toyfoundry.store.layout import Layout, UnsafeIdError, check_order_id

#: rituals.json as plain data, as `RitualsArtefact.model_dump(mode="json")` gives it: shared
#: by every reader in the process (`parsed.plain`), so read it, never change it.
RitualsData = dict[str, Any]


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
    try:
        document = parsed.plain(path, data, rituals_shaped)
    except ValueError:  # not JSON: the model says so as it does for any other fault
        document = None
    if document is not None:
        return cast(RitualsData, document)
    try:
        model = RitualsArtefact.model_validate_json(data)
    except ValidationError as exc:
        shown = display(layout, path)
        raise FoundryError(f"{shown}: not a valid rituals artefact: {_first(exc)}") from None
    # valid, in a shape the foundry does not write (a default left out, an integer score)
    document = model.model_dump(mode="json")
    parsed.remember_plain(path, data, document)
    return document


_TOP = frozenset(RitualsArtefact.model_fields)
_RESULT = frozenset(("alfa_id", "score", "passed", "defects", "rank"))
_RESULT |= {"purged", "purge_reason", "promoted", "doctrine"}
_OUTCOME = frozenset(("ran", "stub", "counts"))
_STATUSES = frozenset(("built", "dry-run", "blocked", "rejected", "awaiting-review"))
_ORDER_ID = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{3}")
#: every Alfa id of a file, one a line; the models' AlfaId pattern
_ALFA_IDS = re.compile(r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{3}\.a[0-9]{3}(?:r[0-9]{1,3})?\n)*")
_DIGESTS = re.compile(r"(?:[0-9a-f]{64}\n)*")
_NONE = type(None)
_columns = operator.itemgetter(
    "alfa_id", "score", "passed", "defects", "rank", "purged", "purge_reason", "promoted"
)


def _lines(pattern: re.Pattern[str], texts: Iterable[Any]) -> bool:
    """Every one of `texts` a string that matches `pattern`'s line, checked in one match."""
    items = list(texts)
    if not all(t.__class__ is str for t in items):
        return False
    text = "\n".join(items) + "\n" if items else ""
    return text.count("\n") == len(items) and pattern.fullmatch(text) is not None


def _kinds(values: Iterable[Any]) -> set[type]:
    return set(map(type, values))


def rituals_shaped(document: Any) -> bool:
    """True when `document` is what the foundry writes as rituals.json: every field there,
    each of its exact type and pattern, so that `RitualsArtefact` would accept it and dump
    it unchanged. A column at a time, as the partitions are made: a batch's results cost
    a few calls each rather than a model each."""
    if document.__class__ is not dict or document.keys() != _TOP:
        return False
    order_id, status, rituals = document["order_id"], document["status"], document["rituals"]
    results, roster, promoted = document["results"], document["roster"], document["promoted"]
    if (
        document["schema_version"].__class__ is not int
        or document["schema_version"] != 1
        or document["dry_run"].__class__ is not bool
        or order_id.__class__ is not str
        or _ORDER_ID.fullmatch(order_id) is None
        or status.__class__ is not str
        or status not in _STATUSES
        or rituals.__class__ is not dict
        or not rituals.keys() <= set(RITUALS)
        or results.__class__ is not list
        or roster.__class__ is not list
        or promoted.__class__ is not list
    ):
        return False
    for outcome in rituals.values():
        if outcome.__class__ is not dict or outcome.keys() != _OUTCOME:
            return False
        counts = outcome["counts"]
        if not _kinds((outcome["ran"], outcome["stub"])) <= {bool} or counts.__class__ is not dict:
            return False
        if not _kinds(counts) <= {str} or not _kinds(counts.values()) <= {int}:
            return False
        if any(n < 0 for n in counts.values()):
            return False
    if _kinds(results) - {dict} or any(r.keys() != _RESULT for r in results):
        return False
    columns: list[tuple[Any, ...]] = list(zip(*map(_columns, results), strict=True))
    ids, scores, passed, defects, ranks, purged, reasons, flags = columns or [()] * 8
    digests = [r["doctrine"] for r in results]
    return (
        _kinds(scores) <= {float, _NONE}
        # finite (JSON has no infinity, but 1e999 parses to one; the model dumps it as null)
        and math.isfinite(sum(s for s in scores if s is not None))
        and _kinds(passed) <= {bool, _NONE}
        and _kinds(ranks) <= {int, _NONE}
        and _kinds(purged) <= {bool}
        and _kinds(flags) <= {bool}
        and _kinds(reasons) <= {str, _NONE}
        and _kinds(defects) <= {list}
        and _kinds(chain.from_iterable(defects)) <= {str}
        and _lines(_ALFA_IDS, chain(ids, roster, promoted))
        and _lines(_DIGESTS, (d for d in digests if d is not None))
    )


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
    try:
        return str(path.absolute().relative_to(layout.root))
    except ValueError:
        return str(path)


def is_built(layout: Layout, order_id: str) -> bool:
    return layout.mint_artefact(order_id).is_file()
