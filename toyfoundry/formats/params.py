"""Parameter domains of a recipe: the values each parameter may take, and canonical value keys."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

from toyfoundry import caches
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


class Domain:
    """`value_at` and `index_of` of one domain, remembering what they have answered."""

    #: Most answers remembered each way; a domain past it answers without remembering more.
    LIMIT = 4096

    def __init__(self, spec: ParamSpecT) -> None:
        self.spec = spec
        self._values: dict[int, ParamValue] = {}
        self._indexes: dict[tuple[type, ParamValue], int | None] = {}

    def value_at(self, index: int) -> ParamValue:
        found = self._values.get(index)
        if found is None:
            found = value_at(self.spec, index)
            if len(self._values) < self.LIMIT:
                self._values[index] = found
        return found

    def index_of(self, value: ParamValue) -> int | None:
        # keyed by type as well, since 1 == 1.0; 0.0 and -0.0 are equal keys, so zero is not kept
        if value.__class__ is float and value == 0.0:
            return index_of(self.spec, value)
        key = (value.__class__, value)
        try:
            return self._indexes[key]
        except KeyError:
            pass
        except TypeError:  # not a hashable value: no domain holds it, `index_of` says so
            return index_of(self.spec, value)
        found = index_of(self.spec, value)
        if len(self._indexes) < self.LIMIT:
            self._indexes[key] = found
        return found


def domain_of(spec: ParamSpecT) -> Domain:
    """The `Domain` of a parameter definition, shared by every equal definition in this process."""
    key = (type(spec).__name__, spec.model_dump_json())
    domains: dict[tuple[str, str], Domain] = caches.current().table("domains")
    found = domains.get(key)
    if found is None:
        if len(domains) >= 256:
            domains.clear()
        found = domains[key] = Domain(spec)
    return found


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


def number_key(value: int | float) -> str:
    """`value_key(float(value))`, remembered: the key of a number taken as a float step."""
    # keyed by type as well, since 1 == 1.0; 0.0 and -0.0 are equal keys, so zero is not kept
    if value.__class__ is float and value == 0.0:
        return value_key(float(value))
    key = (value.__class__, value)
    number_keys: dict[tuple[type, int | float], str] = caches.current().table("number_keys")
    found = number_keys.get(key)
    if found is None:
        found = value_key(float(value))
        if len(number_keys) >= 4096:
            number_keys.clear()
        number_keys[key] = found
    return found


def same_value(a: ParamValue, b: ParamValue) -> bool:
    """Equal as recipe values: 2 and 2.0 are the same float step, "2" is not."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return value_key(float(a)) == value_key(float(b))


def matches(params: Mapping[str, ParamValue], partial: Mapping[str, ParamValue]) -> bool:
    """True when `params` has every value of the partial set (a forbidden combination, a defect rule)."""
    return all(name in params and same_value(params[name], v) for name, v in partial.items())


def weight_key_names_a_value(spec: ParamSpecT, key: str) -> bool:
    """Whether a scoring weight's key names a value of the parameter's domain, as Drill
    reads it (`value_key`; a float step also as any spelling of the same number): a key
    that names none would be ignored without a word."""
    if isinstance(spec, EnumParam):
        return key in spec.values
    if isinstance(spec, IntParam):
        try:
            value = int(key)
        except ValueError:
            return False
        return str(value) == key and spec.min <= value <= spec.max
    try:
        number = float(key)
    except ValueError:
        return False
    index = index_of(spec, number)
    return index is not None and value_key(float(value_at(spec, index))) == value_key(number)
