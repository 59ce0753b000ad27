"""The fast ledger reader says exactly what pydantic says, for every line.

`ledgers.Reader` checks lines in the foundry's own shape with regular expressions and
hands every other line to pydantic. These tests compare it with `check_line` (pydantic)
on real-looking records, on records with bad values, keys and types, on other
spellings of the same JSON, and on byte-level mutations of good lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_loom_support import append_raw, sample
from toyfoundry.formats.models import BatchMeta, MintRecord, RitualRecord
from toyfoundry.telemetry import ledgers, quilt
from toyfoundry.telemetry.lint import lint_paths

RUN = "20261207T053929Z-6728-1d0440"
TIME = "2026-12-07T05:39:29.813444Z"
MINT: dict[str, Any] = {
    "alfa_id": "2025-11-03-001.a000",
    "dry_run": True,
    "kind": "mint",
    "order_id": "2025-11-03-001",
    "outcome": "quarantined",
    "reasons": ["forbidden: matches forbidden combination 0 (colour=white, finish=raw)"],
    "recipe": "gear-golem",
    "recipe_version": "1.0.0",
    "run_id": RUN,
    "schema_version": 1,
    "seed": 1164115433906158532,
    "share": "novel",
    "time": TIME,
}
RITUAL: dict[str, Any] = {
    "batch": {"phase": "pilot", "recipe": "gear-golem", "size": 12},
    "counts": {"alfas": 12},
    "dry_run": True,
    "kind": "ritual",
    "order_id": "2025-11-03-001",
    "outcome": "stub",
    "ritual": "drill",
    "run_id": RUN,
    "schema_version": 1,
    "time": TIME,
}
RECORDS = {"mint": MINT, "ritual": RITUAL}

TEXTS = st.one_of(
    st.sampled_from(["", "a", "gear-golem", 'say "hi"', "back\\slash", "tab\there", "é", "\x7f"]),
    st.sampled_from(["\u2028", "\x00", "😀", "a" * 64, "a" * 65, "/", "\n"]),
    st.text(max_size=12),
)
INTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64, 10**24, 10**25 - 1, 10**25, 10**30]),
)
TIMES = st.sampled_from(
    [
        TIME,
        "2025-10-13T09:00:00+02:00",
        "2025-10-13T09:00:00.1-11:30",
        "2025-02-29T10:00:00Z",  # not a leap year
        "2024-02-29T10:00:00Z",
        "2025-04-31T10:00:00Z",
        "2025-12-31T24:00:00Z",
        "2025-12-31T23:59:60Z",
        "2025-13-01T00:00:00Z",
        "2025-01-01T00:00:00+24:00",
        "2025-01-01T00:00:00+23:59",
        "2025-01-01T00:00:00.1234567Z",
        "2025-01-01 00:00:00Z",
        "2025-01-01T00:00:00z",
        "0000-01-01T00:00:00Z",
        "2025-01-01T00:00:00",
        "",
    ]
)
ORDER_IDS = st.sampled_from(
    [
        *("2025-11-03-001", "2025-10-20-011", "2025-11-03-01", "2025-1O-03-001"),
        *("２０２５-11-03-001", "2025-11-03-001\n", "9999-99-99-999", ""),
    ]
)
ALFA_IDS = st.sampled_from(
    [
        *("2025-11-03-001.a000", "2025-11-03-001.a012r3", "2025-11-03-001.a012r1234"),
        *("2025-11-03-001.a12", "2025-11-03-001a000", "2025-11-03-001.a000\n", ""),
    ]
)
ANY = st.one_of(
    st.none(), st.booleans(), INTS, st.floats(allow_nan=False), TEXTS, st.just([]), st.just({})
)


def value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's kind, sometimes anything."""
    return st.one_of(good, good, good, ANY)


def literal(field: str, model: type[Any]) -> st.SearchStrategy[Any]:
    values, _, nullable = ledgers._hints(model, field)
    choices = [*values, *([None] if nullable else []), values[0].upper(), values[0] + " "]
    return value(st.sampled_from(choices))


MINT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "alfa_id": value(st.one_of(ALFA_IDS, st.none())),
    "dry_run": value(st.booleans()),
    "kind": literal("kind", MintRecord),
    "order_id": value(ORDER_IDS),
    "outcome": literal("outcome", MintRecord),
    "reasons": value(st.lists(TEXTS, max_size=3)),
    "recipe": value(st.one_of(TEXTS, st.none())),
    "recipe_version": value(st.one_of(TEXTS, st.none())),
    "run_id": value(TEXTS),
    "schema_version": value(st.sampled_from([1, 1, 1, 2, True, 1.0, "1"])),
    "seed": value(st.one_of(INTS, st.none())),
    "share": literal("share", MintRecord),
    "time": value(TIMES),
}
RITUAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "batch": value(
        st.fixed_dictionaries(
            {
                "phase": literal("phase", BatchMeta),
                "recipe": value(st.one_of(TEXTS, st.none())),
                "size": value(INTS),
            },
            optional={"extra": ANY},
        )
    ),
    "counts": value(st.dictionaries(TEXTS, value(INTS), max_size=3)),
    "dry_run": value(st.booleans()),
    "kind": literal("kind", RitualRecord),
    "order_id": value(ORDER_IDS),
    "outcome": literal("outcome", RitualRecord),
    "ritual": literal("ritual", RitualRecord),
    "run_id": value(TEXTS),
    "schema_version": value(st.sampled_from([1, 1, 1, 2, True, 1.0, "1"])),
    "time": value(TIMES),
}


@st.composite
def records(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A record of `kind` with some values drawn anew, some fields dropped or added."""
    fields = MINT_FIELDS if kind == "mint" else RITUAL_FIELDS
    record = dict(RECORDS[kind])
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=3)):
        record[name] = draw(fields[name])
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=1)):
        del record[name]
    if draw(st.integers(0, 9)) == 0:
        record[draw(st.sampled_from(["extra", "Kind", "time ", "kind"]))] = draw(ANY)
    return record


def encode(record: dict[str, Any], how: str) -> bytes:
    """The record as one ledger line: as the foundry writes it, or spelled otherwise."""
    if how == "canonical":  # as orjson with OPT_SORT_KEYS, for ints of any size too
        return json.dumps(
            record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    if how == "unsorted":
        return json.dumps(dict(reversed(record.items())), separators=(",", ":")).encode()
    if how == "ascii":  # \uXXXX escapes for everything outside ASCII
        return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps(record, sort_keys=True).encode()  # spaces after : and ,


def reference(kind: str, line: bytes) -> tuple[tuple[str, str, str] | None, str | None]:
    """What pydantic says: the record's order, time and run, or why the line is bad."""
    record, problem = ledgers.check_line(kind, line)
    if record is None:
        return None, problem
    return (record.order_id, record.time, record.run_id), None


def fast(kind: str, line: bytes) -> bool:
    """True when the line has the shape the reader checks without pydantic."""
    shape = ledgers._shape(kind)
    head = shape.head.match(line)
    return head is not None and shape.tail.fullmatch(line[head.end() :]) is not None


def same(kind: str, lines: list[bytes]) -> None:
    """One reader over `lines`, in order (its memory in play), and a fresh one per line,
    each agree with pydantic on every line."""
    reader = ledgers.Reader(kind)
    for line in lines:
        want = reference(kind, line)
        for got in (reader.read(line), ledgers.Reader(kind).read(line)):
            facts, problem = got
            assert (None if facts is None else tuple(facts), problem) == want, line


KINDS = st.sampled_from(["mint", "ritual"])
HOW = st.sampled_from(["canonical", "canonical", "canonical", "unsorted", "ascii", "spaced"])
DIFF = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_foundrys_lines_take_the_fast_path() -> None:
    for kind, record in RECORDS.items():
        line = encode(record, "canonical")
        assert line == orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        assert fast(kind, line)
        facts, problem = ledgers.Reader(kind).read(line)
        assert problem is None and facts == ("2025-11-03-001", TIME, RUN)
        assert not fast(kind, encode(record, "spaced"))


@DIFF
@given(KINDS, st.data())
def test_records_are_judged_as_pydantic_judges_them(kind: str, data: st.DataObject) -> None:
    lines = [
        encode(data.draw(records(kind)), data.draw(HOW))
        for _ in range(data.draw(st.integers(1, 4)))
    ]
    same(kind, lines)


MUTANT_BYTES = [
    b'"', b"\\", b" ", b",", b"}", b"{", b"]", b":", b"0", b"9", b"-", b".", b"e", b"\r",
    b"\t", b"\x00", b"\x7f", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\\u0041", b"\\ud800",
    b"\\ud83d\\ude00", b"\\n", b"\\/", b"null", b"true", b'"kind":"mint",', b'"x":1,',
]  # fmt: skip


@DIFF
@given(KINDS, st.data())
def test_mutated_lines_are_judged_as_pydantic_judges_them(kind: str, data: st.DataObject) -> None:
    line = encode(data.draw(records(kind)), "canonical")
    mutants = [line]
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.integers(0, 5)) == 0:  # cut short
            line = line[: data.draw(st.integers(0, len(line)))]
            mutants.append(line)
            continue
        at = data.draw(st.integers(0, len(line)))
        cut = data.draw(st.integers(0, 3))
        line = line[:at] + data.draw(st.sampled_from(MUTANT_BYTES)) + line[at + cut :]
        mutants.append(line)
    same(kind, mutants)


@pytest.mark.parametrize(
    ("kind", "old", "new"),
    [
        ("mint", b'"kind":"mint"', b'"kind":"mint","kind":"mint"'),
        ("mint", b'"kind":"mint"', b'"kind":"x","kind":"mint"'),
        ("mint", b'"kind":"mint"', b'"kind":"mint","kind":"x"'),
        ("mint", b"1164115433906158532", b"9" * 25),
        ("mint", b"1164115433906158532", b"9" * 26),
        ("mint", b"1164115433906158532", b"-0"),
        ("mint", b"1164115433906158532", b"1e3"),
        ("mint", b"gear-golem", b"gear\\ud800"),
        ("mint", b"gear-golem", b"gear\\\\"),
        ("mint", b"gear-golem", b'gear\\"'),
        ("mint", TIME.encode(), b"2025-02-29T10:00:00Z"),
        ("mint", b"}", b"} "),
        ("ritual", b'{"alfas":12}', b'{"alfas":12,"alfas":-1}'),
        ("ritual", b'{"alfas":12}', b'{"alfas":-1,"alfas":12}'),
        ("ritual", b'{"alfas":12}', b'{"a":1,"a\\"b":2,"":0}'),
        ("ritual", b'"size":12', b'"size":' + b"9" * 25),
        ("ritual", b'"phase":"pilot"', b'"phase":null'),
    ],
)
def test_edge_lines(kind: str, old: bytes, new: bytes) -> None:
    good = encode(RECORDS[kind], "canonical")
    assert old in good
    same(kind, [good, good.replace(old, new, 1), good])


@pytest.mark.parametrize("kind", ["mint", "ritual"])
def test_every_prefix_of_a_good_line_is_judged_as_pydantic_judges_it(kind: str) -> None:
    """Down to a head without its tail: the reader cuts lines in two (`ledgers._Shape`)."""
    good = encode(RECORDS[kind], "canonical")
    for end in range(len(good) + 1):
        same(kind, [good[:end]])
        same(kind, [good, good[:end], good[:end] + b"}"])


def test_a_bad_time_after_a_good_one_is_still_refused() -> None:
    """The reader remembers checked tails; a tail it refused stays refused."""
    good = encode(MINT, "canonical")
    bad = good.replace(TIME.encode(), b"2025-02-29T10:00:00Z")
    same("mint", [good, bad, good, bad, bad.replace(b"a000", b"a001")])


def test_the_shape_follows_the_models() -> None:
    """The shape spells out each field's type; a model change must revisit `ledgers._shape`."""
    seen = {
        model.__name__: {name: repr(f.annotation) for name, f in model.model_fields.items()}
        for model in (MintRecord, RitualRecord, BatchMeta)
    }
    assert seen == {
        "MintRecord": {
            "schema_version": "typing.Literal[1]",
            "kind": "typing.Literal['mint']",
            "run_id": "<class 'str'>",
            "time": "<class 'str'>",
            "order_id": "<class 'str'>",
            "alfa_id": seen["MintRecord"]["alfa_id"],
            "seed": "int | None",
            "recipe": "str | None",
            "recipe_version": "str | None",
            "dry_run": "<class 'bool'>",
            "share": "typing.Optional[typing.Literal['novel', 'carryover', 'baseline']]",
            "outcome": seen["MintRecord"]["outcome"],
            "reasons": "list[str]",
        },
        "RitualRecord": {
            "schema_version": "typing.Literal[1]",
            "kind": "typing.Literal['ritual']",
            "run_id": "<class 'str'>",
            "time": "<class 'str'>",
            "ritual": "typing.Literal['drill', 'parade', 'purge', 'promote']",
            "order_id": "<class 'str'>",
            "dry_run": "<class 'bool'>",
            "batch": "<class 'toyfoundry.formats.models.BatchMeta'>",
            "counts": "dict[str, typing.Annotated[int, FieldInfo(annotation=NoneType,"
            " required=True, metadata=[Ge(ge=0)])]]",
            "outcome": "typing.Literal['ok', 'stub', 'skipped', 'blocked']",
        },
        "BatchMeta": {
            "size": "<class 'int'>",
            "phase": "typing.Optional[typing.Literal['pilot', 'expansion', 'operational']]",
            "recipe": "str | None",
        },
    }
    assert seen["MintRecord"]["alfa_id"].startswith("typing.Optional[typing.Annotated[str, ")
    assert [repr(m) for m in BatchMeta.model_fields["size"].metadata] == ["Ge(ge=0)"]
    for model in (MintRecord, RitualRecord, BatchMeta):
        assert model.model_config.get("strict") and model.model_config.get("extra") == "forbid"


def test_the_quilt_and_the_lint_read_the_same_with_and_without_the_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger of good lines, planted bad ones, a withdrawn order's and a torn tail."""
    layout = sample(tmp_path / "p")
    good = encode(MINT, "canonical")
    spaced = good.replace(b"}", b" }")  # good, in another spelling
    for path, planted in [
        (layout.mint_ledger, [good.replace(b"mint", b"ritual", 1), spaced]),
        (layout.mint_ledger, [good, good.replace(TIME.encode(), b"2025-02-29T10:00:00Z")]),
        (layout.ritual_ledger, [encode(RITUAL, "canonical"), good, b"", b"[1]"]),
    ]:
        append_raw(path, b"\n".join(planted) + b"\n")
    append_raw(layout.mint_ledger, good[:40])

    def both() -> tuple[bytes, list[str], list[str], int]:
        index, notes = quilt.update_index(layout)
        lint = lint_paths(layout)
        return quilt.index_bytes(index), notes, [str(f) for f in lint.findings], lint.lines

    monkeypatch.setattr(ledgers, "FAST_FROM", 1 << 40)
    slow = both()
    monkeypatch.setattr(ledgers, "FAST_FROM", 0)
    assert both() == slow
    assert len(slow[2]) == 6 and len(slow[1]) == 1  # five bad lines, a torn tail; its note
