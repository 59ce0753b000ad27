"""Exports read back with the csv module and with DuckDB agree with the ledgers."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_loom_support import REPO, SAMPLE, ledger_lines, sample
from toyfoundry.errors import FoundryError
from toyfoundry.formats.models import (
    AlfaNoteRow,
    AlfaParamRow,
    AlfaRow,
    BatchRow,
    RitualCountRow,
    RitualEventRow,
)
from toyfoundry.store.layout import Layout
from toyfoundry.telemetry import exports, parts, render
from toyfoundry.telemetry.loom import run_loom

ORDERS = [s.order_id for s in SAMPLE]
DATASET_MODELS: list[tuple[str, type[Any]]] = [
    ("alfas", AlfaRow),
    ("alfa_params", AlfaParamRow),
    ("alfa_notes", AlfaNoteRow),
    ("rituals", RitualEventRow),
    ("ritual_counts", RitualCountRow),
]


@pytest.fixture
def exported(tmp_path: Path) -> Layout:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    return layout


def minted_alfas(layout: Layout) -> set[str]:
    return {str(r["alfa_id"]) for r in ledger_lines(layout.mint_ledger) if r["alfa_id"]}


def test_csv_and_jsonl_partitions_hold_the_same_rows(exported: Layout) -> None:
    seen: set[str] = set()
    for oid in ORDERS:
        for dataset, model in DATASET_MODELS:
            csv_path = exports.partition(exported, dataset, oid, "csv")
            with csv_path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                rows = list(reader)
            assert header == list(model.model_fields)
            jsonl = [
                orjson.loads(line)
                for line in exports.partition(exported, dataset, oid, "jsonl")
                .read_bytes()
                .splitlines()
            ]
            assert len(jsonl) == len(rows)
            for row, obj in zip(rows, jsonl, strict=True):
                assert list(obj) == header
                model.model_validate(obj)
                for cell, value in zip(row, obj.values(), strict=True):
                    expected = (
                        ""
                        if value is None
                        else str(value).lower()
                        if isinstance(value, bool)
                        else str(value)
                    )
                    assert cell == expected
            if dataset == "alfas":
                seen.update(r[1] for r in rows)
    assert seen == minted_alfas(exported)
    assert b"\r" not in exports.partition(exported, "alfas", ORDERS[1], "csv").read_bytes()


def test_batches_csv_and_json(exported: Layout) -> None:
    with exports.batches_csv(exported).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(BatchRow.model_fields)
        rows = list(reader)
    lines = exports.batches_jsonl(exported).read_bytes().splitlines()
    as_json = [orjson.loads(line) for line in lines]
    assert [r["order_id"] for r in rows] == [r["order_id"] for r in as_json] == ORDERS
    assert sum(int(r["minted"]) for r in rows) == len(minted_alfas(exported))
    assert sum(r["minted"] for r in as_json) == len(minted_alfas(exported))


def test_duckdb_reads_each_dataset_with_one_glob(exported: Layout) -> None:
    duckdb = pytest.importorskip("duckdb", reason="duckdb is a test dependency: pip install duckdb")

    def rows(sql: str) -> list[tuple[object, ...]]:
        found: list[tuple[object, ...]] = duckdb.sql(sql).fetchall()
        return found

    base = exported.exports
    alfas_csv = f"read_csv_auto('{base}/alfas/*.csv')"
    minted = len(minted_alfas(exported))
    assert rows(f"select count(*) from {alfas_csv}") == [(minted,)]
    assert rows(f"select count(*) from read_json_auto('{base}/alfas/*.jsonl')") == [(minted,)]
    ritual_lines = len(ledger_lines(exported.ritual_ledger))
    assert rows(f"select count(*) from read_csv_auto('{base}/rituals/*.csv')") == [(ritual_lines,)]
    per_order = rows(
        f"select order_id, count(*), sum(promoted::int), count(score)"
        f" from {alfas_csv} group by order_id order by order_id"
    )
    assert per_order == [
        ("2025-10-12-005", 4, 0, 0),
        ("2025-10-20-011", 8, 1, 8),
        ("2025-10-27-014", 10, 2, 8),
    ]
    batches = rows(f"select sum(minted), sum(promoted) from read_csv_auto('{base}/batches.csv')")
    assert batches == [(22, 3)]
    types = {str(r[0]): str(r[1]) for r in rows(f"describe select * from {alfas_csv}")}
    assert list(types) == list(AlfaRow.model_fields)
    assert types["dry_run"] == "BOOLEAN" and types["score"] == "DOUBLE"


def test_every_column_is_documented() -> None:
    text = (REPO / "docs" / "exports.md").read_text(encoding="utf-8")
    for title, model in [
        *((f"{dataset}/<order_id>.csv", model) for dataset, model in DATASET_MODELS),
        ("batches.csv", BatchRow),
    ]:
        start = text.index(f"## `{title}")
        section = text[start : text.find("\n## ", start + 1)]
        documented = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)
        assert documented == list(model.model_fields), title


def test_batch_records_are_batch_rows(exported: Layout) -> None:
    """The plain rows give the bytes the BatchRow model path gives, in csv and in json."""
    batches = exports.read_rollup_data(exported)["batches"]
    records = [exports.batch_record(b) for b in batches]
    rows = [BatchRow.model_validate(r) for r in records]
    assert [list(r) for r in records] == [list(BatchRow.model_fields)] * len(records)
    assert [r.model_dump(mode="json") for r in rows] == records
    assert exports.batches_files(records) == (
        exports.csv_bytes(BatchRow, rows),
        exports.jsonl_bytes(rows),
    )
    assert exports.batches_csv(exported).read_bytes() == exports.csv_bytes(BatchRow, rows)
    assert exports.batches_jsonl(exported).read_bytes() == exports.jsonl_bytes(rows)


def test_an_untrusted_rollup_is_validated_and_gives_the_same_bytes(exported: Layout) -> None:
    outputs = [exports.batches_csv(exported), exports.batches_jsonl(exported), exported.summary_md]
    before = [p.read_bytes() for p in outputs]
    parts.state_path(exported).unlink()  # no record: the rollup is validated by its model
    for p in outputs:
        p.unlink()
    exports.build_exports(exported, ORDERS)
    assert [p.read_bytes() for p in outputs] == before
    exported.rollup.write_bytes(b'{"schema_version": 1, "batches": [{}], "totals": {}}')
    with pytest.raises(FoundryError, match="not a valid rollup"):
        exports.build_exports(exported, ORDERS)


def test_stale_outputs_are_found_by_name(exported: Layout) -> None:
    stray = [
        exports.partition(exported, "alfas", "2024-01-01-002", "jsonl"),
        exports.partition(exported, "alfas", "2024-01-01-001", "csv"),
        exported.report_md("2024-01-01-001"),
        parts.part_path(exported, "2024-01-01-001"),
        exported.outbox_file("2024-01-01-001"),
    ]
    kept = [
        exported.exports / "alfas" / "notes.txt",
        exported.exports / "alfas" / "2024-01-01-001.txt",
        exported.reports_dir / "2024-01-01-001",
        exported.quilt_parts / "2024-01-01-001.md",
        exported.outbox_dir / "2024-01-01-001.txt",
    ]
    for path in stray + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    done = exports.build_exports(exported, ORDERS)
    assert done.removed == [stray[1], stray[0], stray[2], stray[3], stray[4]]
    assert not any(p.exists() for p in stray) and all(p.exists() for p in kept)
    assert exports.stale_outputs(exported, set(ORDERS)) == []
    # the first order's files: 3 reports, 1 part, 10 partitions
    assert len(exports.stale_outputs(exported, set(ORDERS[1:]))) == 14


def test_summary_rows_are_escaped_like_any_table(exported: Layout) -> None:
    batches = exports.read_rollup_data(exported)["batches"]
    batches[0]["reason"] = "a | b\n  c\t"
    batches[1]["recipe"] = None
    assert render.summary_md([]).endswith("\n\nNo orders have been built yet.\n")
    rows = [
        (
            f"[{b['order_id']}]({b['order_id']}.md)",
            b["recipe"] or "-",
            b["phase"] or "-",
            b["status"],
            *(b["outcomes"][k] for k in ("minted", "passed", "failed", "purged", "promoted")),
            b["outcomes"]["quarantined"],
            f"{b['achieved']['novel']} / {b['achieved']['carryover']} / {b['achieved']['baseline']}",
            b["reason"],
        )
        for b in batches
    ]
    page = render.summary_md(batches).splitlines()
    table = render.table(page[2].strip("| ").split(" | "), rows)
    assert page[2 : 2 + len(table)] == table
    assert "| a \\| b c |" in page[2 + 2]


def test_partitions_are_the_row_models_bytes(exported: Layout) -> None:
    from toyfoundry.telemetry import artefacts

    for oid in ORDERS:
        arts = artefacts.load(exported, oid)
        expected = []
        for model, values in (
            (AlfaRow, exports.alfa_values(arts)),
            (AlfaParamRow, exports.param_values(arts)),
            (AlfaNoteRow, exports.note_values(arts)),
            (RitualEventRow, exports.ritual_values(arts)),
            (RitualCountRow, exports.count_values(arts)),
        ):
            rows = [model(**dict(zip(model.model_fields, v, strict=True))) for v in values]
            expected += [exports.csv_bytes(model, rows), exports.jsonl_bytes(rows)]
        assert [data for _, data in exports.partition_files(exported, arts)] == expected


def test_rollup_data_is_the_callers_own(exported: Layout) -> None:
    """The parsed rollup is shared in-process (see `parts`): a caller's change stays its own."""
    outputs = [exports.batches_csv(exported), exports.batches_jsonl(exported), exported.summary_md]
    before = [p.read_bytes() for p in outputs]
    mine = exports.read_rollup_data(exported)
    mine["batches"][0]["status"] = "changed by the caller"
    mine["batches"].pop()
    assert exports.read_rollup_data(exported) != mine
    for p in outputs:
        p.unlink()
    exports.build_exports(exported, ORDERS)
    assert [p.read_bytes() for p in outputs] == before


@pytest.mark.parametrize(
    "columns",
    [
        # a recipe's batch: the same names, each all texts or all numbers
        {"colour": ["ochre", 'say "hi", twice', "a\nb"], "size": [3, 4.5, -0.0], "n": [0, 7, 2]},
        # integers and floats in one column, zeros of both signs
        {"tension": [0.0, -0.0, 12], "z": [1e-7, 1e22, 3]},
        # a column of texts and numbers, and Alfas with other names: Alfa by Alfa
        {"mixed": ["x", 1, 2.5]},
        {"only_first": [1, None, None], "b": ["u", "v", "w"]},
    ],
)
def test_the_param_partition_is_the_row_models_bytes_for_any_batch(
    exported: Layout, columns: dict[str, list[Any]]
) -> None:
    from toyfoundry.telemetry import artefacts

    arts = artefacts.load(exported, "2025-10-27-014")
    alfas = [
        alfa.model_copy(
            update={
                "params": {
                    name: values[i] for name, values in columns.items() if values[i] is not None
                }
            }
        )
        for i, alfa in enumerate(arts.mint.alfas[:3])
    ]
    arts = artefacts.OrderArtefacts(
        arts.order_id, arts.mint.model_copy(update={"alfas": alfas}), arts.rituals, arts.source
    )
    values = exports.param_values(arts)
    rows = [AlfaParamRow(**dict(zip(AlfaParamRow.model_fields, v, strict=True))) for v in values]
    expected = (exports.csv_bytes(AlfaParamRow, rows), exports.jsonl_bytes(rows))
    assert exports._param_files(arts) == expected
    by_column = exports._param_columns(arts)
    assert by_column == (None if "mixed" in columns or "only_first" in columns else expected)


#: Cells of one kind each, and few of them, so that columns repeat a value (and some hold
#: one value in every row): texts needing CSV quotes, JSON escapes or neither, and `%`.
_CELLS = [
    st.sampled_from(["a", "b,c", 'say "hi"', "x\ny", "back\\slash", "50%", "%s", "\x07", ""]),
    st.text(max_size=6),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 7]),
    st.floats(),
    st.sampled_from([0.0, -0.0, 1e-7, 1e22, 2.5, float("inf"), float("nan")]),
    st.booleans(),
    st.none(),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_CELLS), min_size=2, max_size=5), st.data())
def test_table_files_are_the_csv_and_json_modules_bytes(kinds: list[Any], data: Any) -> None:
    """Any rows, each column of one kind or mixed: the bytes the csv module and orjson give."""
    columns = [f"c{i}%" for i in range(len(kinds))]
    # a few rows are made a row at a time, more a column at a time
    n = data.draw(st.sampled_from([0, 1, 2, 5, exports.FEW_ROWS + 1, exports.FEW_ROWS + 6]))
    mixed = data.draw(st.booleans())
    rows = [
        tuple(data.draw(st.one_of(*_CELLS) if mixed else kind) for kind in kinds) for _ in range(n)
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([exports._cell(v) for v in row] for row in rows)
    jsonl = b"".join(orjson.dumps(dict(zip(columns, row, strict=True))) + b"\n" for row in rows)
    assert exports.table_files(exports.table(columns), rows) == (
        buffer.getvalue().encode("utf-8"),
        jsonl,
    )


@pytest.mark.parametrize(
    "column", [[1, True], [True, 1], [1, 1.0], [0, False, 0.0], [0.0, -0.0], ["1", 1], [None, ""]]
)
def test_equal_cells_of_other_types_are_not_one_value(column: list[Any]) -> None:
    """`1 == True == 1.0` and `0.0 == -0.0`, yet each has its own text."""
    rows = [(value, "x") for value in column]
    csv_data, jsonl = exports.table_files(exports.table(["a", "b"]), rows)
    assert csv_data.decode().splitlines()[1:] == [f"{exports._cell(v)},x" for v in column]
    assert jsonl.splitlines() == [orjson.dumps({"a": v, "b": "x"}) for v in column]


@pytest.mark.parametrize("text", ["plain", 'say "hi", twice', "a\nb", "ünï", "back\\slash", ""])
def test_the_small_partitions_are_the_row_models_bytes_for_any_text(
    exported: Layout, text: str
) -> None:
    """Notes and counters of any text: the lines made one at a time are the models' bytes."""
    from toyfoundry.telemetry import artefacts

    arts = artefacts.load(exported, "2025-10-27-014")
    assert arts.rituals is not None
    alfas = [alfa.model_copy(update={"reasons": [text, "x"]}) for alfa in arts.mint.alfas[:2]]
    rituals = {
        **arts.rituals,
        "rituals": {
            name: {**done, "counts": {text: 3, "z": 1}}
            for name, done in arts.rituals["rituals"].items()
        },
    }
    arts = artefacts.OrderArtefacts(
        arts.order_id, arts.mint.model_copy(update={"alfas": alfas}), rituals, arts.source
    )
    for files, model, values in (
        (exports._note_files, AlfaNoteRow, exports.note_values(arts)),
        (exports._count_files, RitualCountRow, exports.count_values(arts)),
        (exports._ritual_files, RitualEventRow, exports.ritual_values(arts)),
    ):
        rows = [model(**dict(zip(model.model_fields, v, strict=True))) for v in values]
        assert files(arts) == (exports.csv_bytes(model, rows), exports.jsonl_bytes(rows))


@pytest.mark.parametrize(
    ("column", "texts"),
    [
        ([1.5, None, 2.0], (["1.5", "", "2.0"], ["1.5", "null", "2.0"])),
        ([1.5, 2.0], (["1.5", "2.0"], ["1.5", "2.0"])),
        ([1.5, float("nan")], None),
        ([None, float("inf"), 2.0], None),
        ([1e-7, None], None),
    ],
)
def test_float_columns_texts_or_cells_when_orjson_and_repr_differ(
    column: list[float | None], texts: tuple[list[str], list[str]] | None
) -> None:
    """A nan or an inf (orjson's null) beside the column's own nulls, or a float whose repr
    differs, leaves the column to be written a cell at a time."""
    made = exports._floats(column)
    assert (made == column and made.__class__ is list) if texts is None else made == texts
