"""rituals.json read as plain data: what the rituals of this process wrote is taken from
memory, anything else is what the model makes of it, its data or its one-line error."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from tests.test_loom_support import sample
from toyfoundry import caches
from toyfoundry.errors import FoundryError
from toyfoundry.formats import parsed
from toyfoundry.formats.models import RitualsArtefact
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import artefacts

ORDER = "2025-10-27-014"  # quarantined, failed, defective and promoted Alfas


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return sample(tmp_path_factory.mktemp("rituals-data") / "p")


def _model_says(data: bytes) -> dict[str, Any] | str:
    """What the model makes of these bytes: its data, or the start of the report's error."""
    try:
        return RitualsArtefact.model_validate_json(data).model_dump()
    except ValidationError:
        return "not a valid rituals artefact: "


def _read(layout: Layout, data: bytes) -> dict[str, Any] | str:
    caches.fresh()
    try:
        return artefacts.read_rituals(layout, ORDER, data)
    except FoundryError as exc:
        return str(exc)


def test_what_the_foundry_writes_is_its_json(layout: Layout) -> None:
    for order_id in ("2025-10-12-005", "2025-10-20-011", ORDER):
        data = layout.rituals_artefact(order_id).read_bytes()
        assert _read(layout, data) == orjson.loads(data) == _model_says(data)


def test_what_the_rituals_leave_is_read_without_a_model(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = layout.rituals_artefact(ORDER).read_bytes()
    caches.fresh()
    parsed.remember_plain(layout.rituals_artefact(ORDER), data, {"order_id": "left"})

    def refuse(*args: object) -> None:
        raise AssertionError("validated again")

    monkeypatch.setattr(RitualsArtefact, "model_validate_json", refuse)
    assert artefacts.read_rituals(layout, ORDER, data) == {"order_id": "left"}
    # other bytes are not what was left
    with pytest.raises(AssertionError):
        artefacts.read_rituals(layout, ORDER, data + b" ")


def _set(where: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        where(doc)[key] = value

    return change


def _drop(where: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Any:
    def change(doc: dict[str, Any]) -> None:
        del where(doc)[key]

    return change


def _top(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def _result(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["results"][0]  # type: ignore[no-any-return]


def _drill(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["rituals"]["drill"]  # type: ignore[no-any-return]


def _counts(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["rituals"]["drill"]["counts"]  # type: ignore[no-any-return]


CHANGES = {
    # valid, in a shape the foundry does not write: the model's data
    "integer score": _set(_result, "score", 80),
    "default defects left out": _drop(_result, "defects"),
    "default roster left out": _drop(_top, "roster"),
    "default counts left out": _drop(_drill, "counts"),
    # invalid: the model's error
    "text score": _set(_result, "score", "80.5"),
    "boolean rank": _set(_result, "rank", True),
    "float rank": _set(_result, "rank", 1.0),
    "bad alfa id": _set(_result, "alfa_id", "2025-10-27-014.x001"),
    "alfa id with a line end": _set(_result, "alfa_id", "2025-10-27-014.a001\n2025-10-27-014.a002"),
    "bad doctrine digest": _set(_result, "doctrine", "ABC"),
    "defect not text": _set(_result, "defects", [1]),
    "purged null": _set(_result, "purged", None),
    "unknown result field": _set(_result, "colour", "red"),
    "unknown ritual": _set(lambda d: d["rituals"], "polish", {"ran": True, "stub": False}),
    "negative count": _set(_counts, "drilled", -1),
    "count as float": _set(_counts, "drilled", 1.0),
    "ran as number": _set(_drill, "ran", 1),
    "bad status": _set(_top, "status", "done"),
    "bad order id": _set(_top, "order_id", "2025-10-27-14"),
    "version 2": _set(_top, "schema_version", 2),
    "version true": _set(_top, "schema_version", True),
    "dry_run as text": _set(_top, "dry_run", "no"),
    "results not a list": _set(_top, "results", {}),
    "a result not an object": _set(_top, "results", [1]),
    "roster id not text": _set(_top, "roster", [7]),
    "promoted id bad": _set(_top, "promoted", ["x"]),
    "no rituals": _drop(_top, "rituals"),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_file_the_foundry_would_not_write_gets_what_the_model_makes_of_it(
    layout: Layout, name: str
) -> None:
    document = orjson.loads(layout.rituals_artefact(ORDER).read_bytes())
    changed = copy.deepcopy(document)
    CHANGES[name](changed)
    data = orjson.dumps(changed, option=orjson.OPT_SORT_KEYS)
    expected, got = _model_says(data), _read(layout, data)
    if isinstance(expected, str):
        assert isinstance(got, str) and expected in got and "\n" not in got, got
    else:
        assert got == expected


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b"[]", b"null", b'{"score": NaN}', b'{"results": [{"score": 1e999}]}'],
)
def test_damaged_bytes_get_the_models_one_line_error(layout: Layout, data: bytes) -> None:
    got = _read(layout, data)
    assert isinstance(got, str) and "rituals.json: not a valid rituals artefact: " in got
    assert "\n" not in got


def test_an_infinite_score_is_what_the_model_makes_of_it(layout: Layout) -> None:
    data = layout.rituals_artefact(ORDER).read_bytes()
    huge = re.sub(rb'"score": [0-9.]+', b'"score": 1e999', data, count=1)
    assert huge != data
    expected, got = _model_says(huge), _read(layout, huge)
    assert got == expected
    assert isinstance(got, dict) and got["results"][0]["score"] == float("inf")


def test_the_report_of_a_valid_unusual_file_is_the_models(layout: Layout, tmp_path: Path) -> None:
    """An integer score (valid, never written by the foundry) reports as its float."""
    from toyfoundry.telemetry.exports import alfa_values

    path = layout.rituals_artefact(ORDER)
    original = path.read_bytes()
    document = orjson.loads(original)
    first = document["results"][0]
    first["score"] = 80
    try:
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_SORT_KEYS))
        caches.fresh()
        rows = alfa_values(artefacts.load(layout, ORDER))
    finally:
        path.write_bytes(original)
    row = next(r for r in rows if r[1] == first["alfa_id"])
    assert row[12] == 80.0 and isinstance(row[12], float)
