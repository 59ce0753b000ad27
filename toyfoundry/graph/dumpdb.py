"""`doit dumpdb` on the foundry's dependency DB: doit's own command reads only dbm files.

The DB is SQLite holding JSON text (see `graph.backend`), so doit's `dumpdb`, which
opens the file with `dbm`, stops with a traceback. This command prints the same
`task -> record` lines from the SQLite tables, and hands any other file to doit's.
"""

from __future__ import annotations

import contextlib
import os
import pprint
import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson
from doit.cmd_dumpdb import DumpDB
from doit.exceptions import InvalidCommand

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


class FoundryDumpDB(DumpDB):  # type: ignore[misc]
    """doit command plugin: `doit dumpdb`, for the foundry's SQLite DB as well as dbm files."""

    def execute(self, opt_values: dict[str, Any], pos_args: list[str]) -> int | None:
        path = Path(opt_values["dep_file"])
        if not _is_sqlite(path):
            result: int | None = super().execute(opt_values, pos_args)
            return result
        try:
            # read-only: a dump never writes, and a build holding the lock is not disturbed
            with contextlib.closing(
                sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            ) as conn:
                tables = {r[0] for r in conn.execute("select name from sqlite_master")}
                # doit's own `sqlite3` backend keeps the same `doit` table, without `meta`
                kind = "toyfoundry" if "meta" in tables else "sqlite3"
                print(f"DB type is '{kind}' (SQLite holding JSON text)")
                rows = conn.execute("select task_id, task_data from doit order by task_id")
                for key, text in rows:
                    value = pprint.pformat(orjson.loads(text), indent=4, width=100)
                    print(f"{key} -> {value}")
        except (sqlite3.Error, orjson.JSONDecodeError) as exc:
            raise InvalidCommand(f"{path}: cannot be dumped: {exc}") from None
        except BrokenPipeError:  # `doit dumpdb | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
