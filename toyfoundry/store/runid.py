"""Run ids and wall-clock stamps: these go into telemetry only, never into build artefacts."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from functools import cache


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with microseconds, as every ledger line carries."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@cache
def run_id() -> str:
    """One id per process: every attempt this process records shares it, a retry gets a new one."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
