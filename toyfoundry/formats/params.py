"""Parameter domains of a recipe: the values each parameter may take, and canonical value keys."""

from __future__ import annotations

import math
from fractions import Fraction

from toyfoundry.formats.models import EnumParam, FloatParam, IntParam, ParamValue

ParamSpecT = IntParam | FloatParam | EnumParam
#: Largest parameter space the forge enumerates (the novel sequence indexes it in 62 bits).
MAX_SPACE = 2**62
MAX_FLOAT_STEPS = 1_000_000


def float_count(spec: FloatParam) -> int:
    if spec.max < spec.min:
        return 0
    steps = (spec.max - spec.min) / spec.step
    if not math.isfinite(steps):
        # a range wider than a float can hold (say -1e308 to 1e308): count it exactly; it is
        # enormous, and the recipe rules refuse it by that count
        return math.floor((Fraction(spec.max) - Fraction(spec.min)) / Fraction(spec.step)) + 1
    return math.floor(steps + 1e-9) + 1


def cardinality(spec: ParamSpecT) -> int:
    if isinstance(spec, IntParam):
        return max(0, spec.max - spec.min + 1)
    if isinstance(spec, FloatParam):
        return float_count(spec)
    return len(spec.values)


def value_at(spec: ParamSpecT, index: int) -> ParamValue:
    """The index-th value of a domain, in ascending (or listed) order."""
    if isinstance(spec, IntParam):
        return spec.min + index
    if isinstance(spec, FloatParam):
        return round(spec.min + index * spec.step, 9)
    return spec.values[index]


def index_of(spec: ParamSpecT, value: ParamValue) -> int | None:
    """The position of a value in its domain, or None when the value lies outside it."""
    if isinstance(spec, IntParam):
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return value - spec.min if spec.min <= value <= spec.max else None
    if isinstance(spec, FloatParam):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value) or value < spec.min - 1e-9 or value > spec.max + 1e-9:
            return None
        position = (value - spec.min) / spec.step
        if not math.isfinite(position):
            return None
        nearest = round(position)
        return nearest if abs(position - nearest) < 1e-6 else None
    if not isinstance(value, str):
        return None
    try:
        return spec.values.index(value)
    except ValueError:
        return None


def describe(spec: ParamSpecT) -> str:
    if isinstance(spec, IntParam):
        return f"an integer from {spec.min} to {spec.max}"
    if isinstance(spec, FloatParam):
        return f"a number from {spec.min} to {spec.max} in steps of {spec.step}"
    return (
        "one of "
        + ", ".join(repr(v) for v in spec.values[:8])
        + (", ..." if len(spec.values) > 8 else "")
    )


def value_key(value: ParamValue) -> str:
    """The string a recipe's scoring weights use for a value: `3`, `0.5`, `red`."""
    if isinstance(value, float):
        return repr(round(value, 9))
    return str(value)
