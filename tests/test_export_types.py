"""Every export reads with DuckDB and pandas into the column types docs/exports.md documents."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.test_loom_support import REPO, sample
from toyfoundry.store.layout import EXPORT_DATASETS, Layout
from toyfoundry.telemetry import export_types, exports
from toyfoundry.telemetry.loom import run_loom


# Imported when a test runs, not when pytest collects this file: a pytest process that
# holds pandas and pyarrow from the start lends their memory to every child it forks
# (a child's peak RSS starts from its parent's), which other tests measure.
def _duckdb() -> Any:
    return pytest.importorskip("duckdb", reason="duckdb is a test dependency (.[test])")


def _pandas() -> Any:
    pytest.importorskip("pyarrow", reason="pyarrow is a test dependency (.[test])")
    return pytest.importorskip("pandas", reason="pandas is a test dependency (.[test])")


BLOCKED = "2025-10-28-002"  # the sample's blocked order: header-only partitions


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    layout = sample(tmp_path_factory.mktemp("types") / "p")
    run_loom(layout, export=True, today="2025-10-28")
    return layout


def _documented(dataset: str) -> dict[str, str]:
    text = (REPO / "docs" / "exports.md").read_text(encoding="utf-8")
    title = "batches.csv" if dataset == "batches" else f"{dataset}/<order_id>.csv"
    start = text.index(f"## `{title}")
    section = text[start : text.find("\n## ", start + 1)]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z ]+) \|", section, flags=re.M)
    return dict(rows)


@pytest.mark.parametrize("dataset", list(export_types.DATASETS))
def test_the_documented_types_are_the_row_models(dataset: str) -> None:
    assert _documented(dataset) == export_types.column_types(dataset)


def _files(layout: Layout, dataset: str, fmt: str) -> list[Path]:
    if dataset == "batches":
        return [exports.batches_csv(layout) if fmt == "csv" else exports.batches_jsonl(layout)]
    return sorted((layout.exports / dataset).glob(f"*.{fmt}"))


def _rows(sql: str) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = _duckdb().sql(sql).fetchall()
    return found


@pytest.mark.parametrize("dataset", list(export_types.DATASETS))
def test_duckdb_reads_every_export_with_the_documented_types(
    exported: Layout, dataset: str
) -> None:
    columns = export_types.duckdb_columns(dataset)
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    csv_glob = [str(p) for p in _files(exported, dataset, "csv")]
    json_glob = [str(p) for p in _files(exported, dataset, "jsonl")]
    text = export_types.duckdb_text_columns(dataset)
    as_csv = (
        f"read_csv({csv_glob}, header = true, auto_detect = false, columns = {spec},"
        f" force_not_null = {text})"
    )
    as_json = f"read_json({json_glob}, format = 'newline_delimited', columns = {spec})"
    for source in (as_csv, as_json):
        described = {str(r[0]): str(r[1]) for r in _rows(f"describe select * from {source}")}
        assert described == columns, source
    count = _rows(f"select count(*) from {as_csv}")[0][0]
    assert count == _rows(f"select count(*) from {as_json}")[0][0] > 0
    # the CSV and its JSON Lines twin hold the same typed values, nulls included
    assert _rows(f"select * from {as_csv} except all select * from {as_json}") == []
    assert _rows(f"select * from {as_json} except all select * from {as_csv}") == []


def test_json_lines_carry_their_types_without_being_told(exported: Layout) -> None:
    base = exported.exports
    found = _rows(f"describe select * from read_json_auto('{base}/alfas/*.jsonl')")
    described = {str(r[0]): str(r[1]) for r in found}
    # DuckDB's sniffer goes one step further than documented: `day` becomes a DATE
    assert described == export_types.duckdb_columns("alfas") | {"day": "DATE"}
    batches = _rows(f"describe select * from read_json_auto('{exports.batches_jsonl(exported)}')")
    assert {str(r[0]): str(r[1]) for r in batches} == export_types.duckdb_columns("batches") | {
        "day": "DATE"
    }


def _dtypes(frame: Any) -> dict[str, Any]:
    return dict(frame.dtypes.items())


def _wanted(dataset: str) -> dict[str, Any]:
    pd = _pandas()
    return {c: pd.api.types.pandas_dtype(t) for c, t in export_types.pandas_dtypes(dataset).items()}


def _read_csv(path: Path, dataset: str) -> Any:
    return _pandas().read_csv(
        path,
        dtype=export_types.pandas_dtypes(dataset),
        keep_default_na=False,
        na_values=export_types.pandas_na_values(dataset),
        dtype_backend="pyarrow",
    )


@pytest.mark.parametrize("dataset", list(export_types.DATASETS))
def test_pandas_reads_every_export_with_the_documented_types(
    exported: Layout, dataset: str
) -> None:
    pd = _pandas()
    wanted = export_types.pandas_dtypes(dataset)
    frames = [_read_csv(p, dataset) for p in _files(exported, dataset, "csv")]
    for frame in frames:  # header-only partitions too
        assert _dtypes(frame) == _wanted(dataset)
    combined = pd.concat(frames, ignore_index=True)
    assert _dtypes(combined) == _wanted(dataset)
    lines = [
        pd.read_json(p, lines=True, dtype=wanted, dtype_backend="pyarrow").astype(wanted)
        for p in _files(exported, dataset, "jsonl")
        if p.stat().st_size
    ]
    from_json = pd.concat(lines, ignore_index=True)[list(wanted)].astype(wanted)
    pd.testing.assert_frame_equal(from_json, combined)


def test_an_order_without_rows_keeps_every_partitions_types(exported: Layout) -> None:
    for dataset in EXPORT_DATASETS:
        path = exports.partition(exported, dataset, BLOCKED, "csv")
        frame = _read_csv(path, dataset)
        assert len(frame) == 0
        assert _dtypes(frame) == _wanted(dataset)
        assert exports.partition(exported, dataset, BLOCKED, "jsonl").read_bytes() == b""


def test_nested_data_has_its_own_rows(exported: Layout) -> None:
    base = exported.exports
    params = _rows(
        f"select count(distinct alfa_id), count(*) from read_json_auto('{base}/alfa_params/*.jsonl')"
    )
    alfas = _rows(f"select count(*) from read_json_auto('{base}/alfas/*.jsonl')")
    assert params[0][0] == alfas[0][0]
    notes = _rows(
        f"select sum(defect_count) from read_json_auto('{base}/alfas/*.jsonl')"
        f" union all select count(*) from read_json_auto('{base}/alfa_notes/*.jsonl')"
        " where source = 'drill'"
    )
    assert notes[0][0] == notes[1][0] > 0
    for path in _files(exported, "alfas", "csv") + _files(exported, "rituals", "csv"):
        text = path.read_text(encoding="utf-8")
        assert "{" not in text and ";" not in text  # no JSON or joined lists in a cell
