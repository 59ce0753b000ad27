"""Subcommands: each parses its own arguments and returns an exit code."""

from __future__ import annotations

import argparse
import math


def seconds(text: str) -> float:
    """A duration option: a finite number of seconds, zero or more (else exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A period to wait between checks: more than zero, so a loop never spins."""
    value = seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value
