"""Validator hooks, the plan's safety budget: every minted Alfa passes all of them or is quarantined.

Built-in hooks, in this order:

- `bounds`: every recipe parameter is present, with a value in its domain, and nothing else;
- `forbidden`: the parameters match none of the recipe's forbidden combinations;
- `duplicate`: no earlier novel or carryover Alfa of the same batch has the same parameters.
  Baselines are exempt: they repeat the recipe's canonical patterns on purpose
  (regression coverage), so a batch may hold a baseline several times.

Plugins. Another installed distribution adds a hook by declaring an entry point in
the group `toyfoundry.validators`, e.g. in its pyproject.toml::

    [project.entry-points."toyfoundry.validators"]
    no-red-brass = "my_package.hooks:no_red_brass"

The entry point loads a callable `(params, recipe) -> Iterable[str]`: `params`
maps each parameter name to its value (int, float or str), `recipe` is the
`toyfoundry.formats.models.Recipe`. It returns the reasons the Alfa fails, and
nothing when it passes. It must be deterministic (mint artefacts are
byte-for-byte reproducible) and must not write anything. Plugins run after the
built-in hooks, sorted by entry-point name; their reasons are prefixed with the
entry-point name. A plugin that raises fails the Alfa with the exception as
reason; a plugin that cannot even be loaded stops the mint (a safety hook is
never skipped silently). Installing, removing or upgrading a plugin changes
`toyfoundry.forge.fingerprint()`, so the graph re-mints.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from toyfoundry import caches
from toyfoundry.errors import FoundryError
from toyfoundry.forge.plugins import GROUP as GROUP
from toyfoundry.forge.plugins import registered
from toyfoundry.formats.models import FloatParam, ParamValue, Recipe
from toyfoundry.formats.params import Domain, describe, domain_of, index_of, number_key
from toyfoundry.formats.params import matches as matches
from toyfoundry.formats.params import same_value as same_value

Hook = Callable[[Mapping[str, ParamValue], Recipe], Iterable[str]]


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin hook and where it came from."""

    name: str
    distribution: str
    version: str
    hook: Hook


def load_plugins() -> list[Plugin]:
    """Every registered plugin hook, loaded; a plugin that fails to load stops the mint.

    Looked up once a build while the import path reads the same (the `validator_plugins`
    cache): a build mints against the plugins its stage fingerprint saw when it started,
    and each look-up stats every import path folder (a scan of the installed
    distributions, 3-4 ms, in the first seconds after the project folder changed, which a
    fresh build's own `.toyfoundry/` does). A plugin installed meanwhile counts from the
    next build, as `plugins.registered` says; one added to the path counts at once.
    """
    table: dict[tuple[str, ...], list[Plugin]] = caches.current().table("validator_plugins")
    key = tuple(sys.path)
    found = table.get(key)
    if found is None:
        found = _load_plugins()
        table.clear()
        table[key] = found
    return list(found)


def _load_plugins() -> list[Plugin]:
    plugins = []
    for ep in registered():
        try:
            hook = ep.load()
        except Exception as exc:
            raise FoundryError(
                f"validator plugin {ep.name!r} ({ep.value}) cannot be loaded:"
                f" {type(exc).__name__}: {exc}"
            ) from None
        if not callable(hook):
            raise FoundryError(f"validator plugin {ep.name!r} ({ep.value}) is not callable")
        dist = ep.dist
        plugins.append(
            Plugin(
                ep.name,
                dist.name if dist is not None else "?",
                dist.version if dist is not None else "?",
                hook,
            )
        )
    return plugins


class Partial:
    """A partial parameter set prepared for many `matches` calls: its values' keys computed once."""

    def __init__(self, partial: Mapping[str, ParamValue]) -> None:
        self.partial = partial
        self.items: list[tuple[str, str | None, str]] | None
        try:
            self.items = [
                (name, v, "") if isinstance(v, str) else (name, None, number_key(v))
                for name, v in partial.items()
            ]
        except (OverflowError, ValueError):
            self.items = None  # `matches` says what such a value does
        #: a (name, text) the parameters must hold to match: a combination names few of a
        #: parameter's values, so most sets differ there and are told apart without a call
        #: of `matches` (None: the combination names no text)
        self.guard: tuple[str, str] | None = next(
            ((name, text) for name, text, _ in self.items or () if text is not None), None
        )
        # `number_key` of the numbers seen, by value: equal numbers have the same key (1 and
        # 1.0 alike), but for zero (0.0 and -0.0 differ), which is not kept
        self._keys: dict[int | float, str] = {}

    def matches(self, params: Mapping[str, ParamValue]) -> bool:
        """`matches(params, partial)`."""
        if self.items is None:
            return matches(params, self.partial)
        keys = self._keys
        for name, text, key in self.items:
            if name not in params:
                return False
            value = params[name]
            if text is not None:
                if value != text:
                    return False
            elif isinstance(value, str):
                return False
            else:
                found = keys.get(value)
                if found is None:
                    found = number_key(value)
                    if value != 0:
                        keys[value] = found
                if found != key:
                    return False
        return True

    def matching(self, batch: Sequence[Mapping[str, ParamValue]]) -> list[int]:
        """The places in `batch` of the parameter sets that `matches`, in order: an item at
        a time over the sets that matched the items before, as `matches` takes the items
        of one set, so a rule's first item (most often a text) leaves few to look at."""
        if self.items is None:
            return [i for i, params in enumerate(batch) if matches(params, self.partial)]
        chosen: list[int] = list(range(len(batch)))
        keys = self._keys
        for name, text, key in self.items:
            if not chosen:
                break
            if text is not None:
                # a missing name gives None, and a number is never equal to a text
                chosen = [i for i in chosen if batch[i].get(name) == text]
                continue
            kept = []
            for i in chosen:
                params = batch[i]
                if name not in params:
                    continue
                value = params[name]
                if isinstance(value, str):
                    continue
                found = keys.get(value)
                if found is None:
                    found = number_key(value)
                    if value != 0:
                        keys[value] = found
                if found == key:
                    kept.append(i)
            chosen = kept
        return chosen


def check_bounds(
    params: Mapping[str, ParamValue], recipe: Recipe, domains: Mapping[str, Domain] | None = None
) -> list[str]:
    """Every parameter present and in its domain; `domains`: the recipe's, by name, if at hand."""
    out = []
    for name, spec in recipe.parameters.items():
        if name not in params:
            out.append(f"bounds: {name} is missing")
        elif (
            domains[name].index_of(params[name]) if domains else index_of(spec, params[name])
        ) is None:
            out.append(f"bounds: {name}: {params[name]!r} is not {describe(spec)}")
    out += [
        f"bounds: {name} is not a parameter of the recipe"
        for name in params
        if name not in recipe.parameters
    ]
    return out


def check_forbidden(
    params: Mapping[str, ParamValue], recipe: Recipe, prepared: Iterable[Partial] | None = None
) -> list[str]:
    """No forbidden combination matched; `prepared`: the combinations as `Partial`s, if at hand."""
    out = []
    partials = prepared if prepared is not None else map(Partial, recipe.forbidden)
    for number, partial in enumerate(partials):
        if partial.matches(params):
            shown = ", ".join(f"{k}={v}" for k, v in partial.partial.items())
            out.append(f"forbidden: matches forbidden combination {number} ({shown})")
    return out


def run_plugins(
    plugins: Iterable[Plugin], params: Mapping[str, ParamValue], recipe: Recipe
) -> list[str]:
    out = []
    for plugin in plugins:
        try:
            reasons = [str(r) for r in plugin.hook(dict(params), recipe)]
        except Exception as exc:
            reasons = [f"raised {type(exc).__name__}: {exc}"]
        out += [f"{plugin.name}: {' '.join(r.split())}" for r in reasons]
    return out


class Validators:
    """All hooks for one batch; remembers the novel and carryover parameter sets it has seen."""

    def __init__(
        self, recipe: Recipe, plugins: Iterable[Plugin], domains: Iterable[Domain] | None = None
    ) -> None:
        """`domains`: the recipe's parameters' domains in its order, if at hand (`Space`)."""
        self.recipe = recipe
        self.plugins = list(plugins)
        self._seen: dict[bytes, str] = {}
        # a baseline's bounds and forbidden reasons, by its canonical parameters
        self._baselines: dict[bytes, list[str]] = {}
        self._forbidden = [Partial(c) for c in recipe.forbidden]
        self._domains = dict(
            zip(
                recipe.parameters,
                domains if domains is not None else map(domain_of, recipe.parameters.values()),
                strict=True,
            )
        )
        self._bounds = list(self._domains.items())
        # a float value made from an index may still miss its domain's grid (a step with
        # more decimals than `value_at` rounds to); an int or enum value cannot
        self._floats = [
            (name, self._domains[name])
            for name, spec in recipe.parameters.items()
            if isinstance(spec, FloatParam)
        ]

    def _drawn_in_bounds(self, params: Mapping[str, ParamValue]) -> bool:
        """`_in_bounds` of parameters made from an index of the recipe's space: the recipe's
        parameters exactly, each int or enum value in its domain; only floats are looked at."""
        for name, domain in self._floats:  # noqa: SIM110 (a loop: no generator an Alfa)
            if domain.index_of(params[name]) is None:
                return False
        return True

    def _in_bounds(self, params: Mapping[str, ParamValue]) -> bool:
        """True when `check_bounds` finds nothing: the recipe's parameters exactly (as many,
        and each of them), each in its domain. The common case, without a list of reasons."""
        if len(params) != len(self._bounds):
            return False
        for name, domain in self._bounds:
            if name not in params or domain.index_of(params[name]) is None:
                return False
        return True

    def _rules(
        self, params: Mapping[str, ParamValue], drawn: bool, fits: bool | None = None
    ) -> list[str]:
        """The `bounds` and `forbidden` hooks' reasons; `fits`: `bounds` finds nothing, if known."""
        if fits is None:
            fits = self._drawn_in_bounds(params) if drawn else self._in_bounds(params)
        reasons = [] if fits else check_bounds(params, self.recipe, self._domains)
        return reasons + self._forbidden_reasons(params)

    def _forbidden_reasons(self, params: Mapping[str, ParamValue]) -> list[str]:
        """The `forbidden` hook's reasons (a new list)."""
        for partial in self._forbidden:
            guard = partial.guard  # a missing name gives None, which is never a text
            if guard is not None and params.get(guard[0]) != guard[1]:
                continue
            if partial.matches(params):
                return check_forbidden(params, self.recipe, self._forbidden)
        return []

    def refuses(self, params: Mapping[str, ParamValue], key: bytes) -> bool:
        """True when a forbidden combination of the recipe matches or the batch already holds
        these parameters (`key`: canonical): a reroll draws again instead of handing back an
        Alfa that fails the same way."""
        return key in self._seen or any(p.matches(params) for p in self._forbidden)

    def check(
        self,
        alfa_id: str,
        share: str,
        params: Mapping[str, ParamValue],
        key: bytes,
        *,
        drawn: bool = False,
        fits: bool | None = None,
    ) -> list[str]:
        """Every hook's reasons for one Alfa (empty: it passes, a new list each time); `key`
        is its canonical params.

        `drawn`: the parameters were made from an index of the recipe's space (the recipe's
        parameters exactly, each `value_at` of its domain): `bounds` looks at the floats only.
        `fits`: True when the caller knows `bounds` finds nothing (the recipe's parameters
        exactly, each value in its domain), so it looks at none.

        The plugins see a baseline's parameters as given, and any other Alfa's in the
        recipe's order, then any other names sorted (as the mint makes them)."""
        if share == "baseline":
            # a batch repeats its recipe's few baselines: their bounds and forbidden reasons
            # are worked out once (the plugins still see every Alfa)
            known = self._baselines.get(key)
            if known is None:
                known = self._baselines[key] = self._rules(params, drawn, fits)
            reasons = list(known)
        else:
            reasons = self._rules(params, drawn, fits)
            seen = self._seen
            earlier = seen.get(key)
            if earlier is not None:
                reasons.append(f"duplicate: same parameters as {earlier}")
            else:
                seen[key] = alfa_id
        if self.plugins:
            shown = params if share == "baseline" else self._in_recipe_order(params)
            reasons += run_plugins(self.plugins, shown, self.recipe)
        return reasons

    def check_fitting(
        self, alfa_id: str, params: Mapping[str, ParamValue], key: bytes
    ) -> list[str]:
        """`check` of a novel or carryover Alfa known to pass `bounds` (`fits`): the call the
        composing of a batch makes for most of its Alfas, without the branches it needs not
        (`_forbidden_reasons` written out: a call less an Alfa)."""
        reasons: list[str] = []
        for partial in self._forbidden:
            guard = partial.guard
            if guard is not None and params.get(guard[0]) != guard[1]:
                continue
            if partial.matches(params):
                reasons = check_forbidden(params, self.recipe, self._forbidden)
                break
        earlier = self._seen.setdefault(key, alfa_id)
        if earlier != alfa_id:
            reasons.append(f"duplicate: same parameters as {earlier}")
        if self.plugins:
            reasons += run_plugins(self.plugins, self._in_recipe_order(params), self.recipe)
        return reasons

    def _in_recipe_order(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        names = self.recipe.parameters
        extra = sorted(n for n in params if n not in names)
        return {n: params[n] for n in [*names, *extra] if n in params}
