"""The exports' column types, for their readers: one type per column, from the row models.

docs/exports.md documents the same types (a test holds the two together), and
`duckdb_columns` and `pandas_dtypes` give them in each reader's own words, so
a header-only partition (an order without rows) reads with the same types as
a full one and combining partitions never widens a column to text.
"""

from __future__ import annotations

import types
import typing
from typing import Literal

from pydantic import BaseModel

from toyfoundry.formats.models import (
    AlfaNoteRow,
    AlfaParamRow,
    AlfaRow,
    BatchRow,
    RitualCountRow,
    RitualEventRow,
)

#: Each dataset's row model: the per-order partitions, then `batches`.
DATASETS: dict[str, type[BaseModel]] = {
    "alfas": AlfaRow,
    "alfa_params": AlfaParamRow,
    "alfa_notes": AlfaNoteRow,
    "rituals": RitualEventRow,
    "ritual_counts": RitualCountRow,
    "batches": BatchRow,
}
DUCKDB = {"text": "VARCHAR", "integer": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN"}
PANDAS = {
    "text": "string[pyarrow]",
    "integer": "int64[pyarrow]",
    "double": "double[pyarrow]",
    "boolean": "bool[pyarrow]",
}


def _base(annotation: object) -> str:
    if typing.get_origin(annotation) is Literal or annotation is str:
        return "text"
    if annotation is bool:  # before int: a bool is an int to Python
        return "boolean"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "double"
    raise TypeError(f"no export type for {annotation!r}")


def column_type(annotation: object) -> str:
    """`text`, `integer`, `double` or `boolean`, with ` or null` when the column may be null."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return f"{_base(args[0])} or null"
    return _base(annotation)


def column_types(dataset: str) -> dict[str, str]:
    """Each column of a dataset and its documented type, in file order."""
    model = DATASETS[dataset]
    return {name: column_type(field.annotation) for name, field in model.model_fields.items()}


def _plain(kind: str) -> str:
    return kind.removesuffix(" or null")


def duckdb_columns(dataset: str) -> dict[str, str]:
    """For DuckDB's `read_csv(..., columns=...)`: each column's SQL type."""
    return {name: DUCKDB[_plain(kind)] for name, kind in column_types(dataset).items()}


def duckdb_text_columns(dataset: str) -> list[str]:
    """For DuckDB's `read_csv(..., force_not_null=...)`: the text columns, whose empty cell is
    the empty string (DuckDB reads an empty cell as NULL unless told)."""
    return [name for name, kind in column_types(dataset).items() if kind == "text"]


def pandas_dtypes(dataset: str) -> dict[str, str]:
    """For pandas' `read_csv(..., dtype=..., dtype_backend="pyarrow")`: each column's dtype."""
    return {name: PANDAS[_plain(kind)] for name, kind in column_types(dataset).items()}


def pandas_na_values(dataset: str) -> dict[str, list[str]]:
    """For `read_csv(..., keep_default_na=False, na_values=...)`: an empty cell is null only
    in a column that may be null; in a text column it is the empty string."""
    return {name: [""] for name, kind in column_types(dataset).items() if kind.endswith("or null")}
