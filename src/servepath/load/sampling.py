"""Fresh instances for a load run: realistic ones, drawn from the model's input schema.

A load test that repeats one instance measures the response cache, not the model. The
instances drawn here differ as real callers' do: every category from the schema's ``enum``
(or, for a category the model leaves open, the learned values it lists as ``examples``),
every number spread around the documented example (within the schema's ``minimum`` and
``maximum`` when it gives them), integers kept whole and counts kept non-negative. Without
a schema the space is read from the instances at hand: the categories seen in them, and
numbers spread around their values.

Pure: the caller gives the OpenAPI document (or the instances) and a ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from servepath.contract import request_schema

__all__ = ["FeatureSpace", "InstanceSpace", "instance_schema"]

Instance = dict[str, Any]
FeatureKind = Literal["number", "integer", "category", "boolean", "fixed"]

#: Spread of a number without bounds: the example times e^N(0, SPREAD), so two thirds of
#: the draws lie within about ×0.6 .. ×1.65 of it, ...
SPREAD = 0.5
#: ... and none beyond ×1/CLIP .. ×CLIP.
CLIP = 5.0


@dataclass(frozen=True)
class FeatureSpace:
    """Where one feature's values are drawn from."""

    name: str
    kind: FeatureKind
    center: float | None = None  # the documented (or observed) value numbers spread around
    low: float | None = None  # bounds; both set: drawn uniformly between them
    high: float | None = None
    choices: tuple[Any, ...] = ()  # categories
    decimals: int = 2  # places a drawn float is rounded to
    value: Any = None  # a fixed feature's one value

    def draw(self, rng: random.Random) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "category":
            return rng.choice(self.choices)
        if self.kind == "boolean":
            return rng.random() < 0.5
        number = self._draw_number(rng)
        if self.kind == "integer":
            return round(number)
        return round(number, self.decimals)

    def _draw_number(self, rng: random.Random) -> float:
        low, high = self.low, self.high
        if low is not None and high is not None:
            return rng.uniform(low, high)
        center = self.center if self.center is not None else 0.0
        if center == 0.0:
            # a count or an amount that is usually nothing: mostly small, never negative
            drawn = rng.expovariate(1.0 if self.kind == "integer" else 2.0)
            drawn = math.floor(drawn) if self.kind == "integer" else drawn
        else:
            factor = min(max(rng.lognormvariate(0.0, SPREAD), 1 / CLIP), CLIP)
            drawn = center * factor
        if low is not None:
            drawn = max(drawn, low)
        if high is not None:
            drawn = min(drawn, high)
        return drawn

    @property
    def varies(self) -> bool:
        return self.kind != "fixed" and not (self.kind == "category" and len(self.choices) < 2)

    @property
    def continuous(self) -> bool:
        return self.kind == "number"

    def describe(self) -> str:
        if self.kind == "category":
            return f"{self.name}: one of {len(self.choices)}"
        if self.kind == "fixed":
            return f"{self.name}: always {self.value!r}"
        if self.kind == "boolean":
            return f"{self.name}: true or false"
        if self.low is not None and self.high is not None:
            return f"{self.name}: {self.low:g} to {self.high:g}"
        return f"{self.name}: around {self.center:g}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "center": self.center,
            "low": self.low,
            "high": self.high,
            "choices": list(self.choices),
            "decimals": self.decimals,
            "value": self.value,
        }


@dataclass(frozen=True)
class InstanceSpace:
    """Every feature of an instance and where its values come from."""

    features: tuple[FeatureSpace, ...]
    source: Literal["schema", "instances"]

    def draw(self, rng: random.Random) -> Instance:
        return {f.name: f.draw(rng) for f in self.features}

    def samplers(self, rng: random.Random) -> list[tuple[str, Callable[[], Any]]]:
        """Per feature, a function that draws one value per call, as :meth:`draw` does,
        compiled (no attribute lookups) for drawing many."""
        return [(f.name, _compiled(f, rng)) for f in self.features]

    @property
    def varies(self) -> bool:
        return any(f.varies for f in self.features)

    @property
    def distinct(self) -> float:
        """How many different instances can be drawn at most (inf with a continuous one)."""
        total = 1.0
        for f in self.features:
            if f.continuous:
                return math.inf
            if f.kind == "category":
                total *= len(f.choices)
            elif f.kind == "boolean":
                total *= 2
            elif f.kind == "integer":
                low = f.low if f.low is not None else 0.0
                high = f.high if f.high is not None else max((f.center or 0.0) * CLIP, 8.0)
                total *= max(high - low + 1, 1)
        return total

    def describe(self) -> str:
        """``fresh instances drawn from the server's input schema (8 numbers around the
        example, 2 categories: purpose of 7, home_ownership of 4)``."""
        where = "the server's input schema" if self.source == "schema" else "the instances given"
        numbers = [f for f in self.features if f.kind in ("number", "integer")]
        categories = [f for f in self.features if f.kind == "category" and f.varies]
        flags = [f for f in self.features if f.kind == "boolean"]
        fixed = [f for f in self.features if not f.varies]
        parts = []
        if numbers:
            bounded = sum(f.low is not None and f.high is not None for f in numbers)
            around = "within their bounds" if bounded == len(numbers) else "around the example"
            parts.append(f"{len(numbers)} number{'s' if len(numbers) != 1 else ''} {around}")
        if categories:
            each = ", ".join(f"{f.name} of {len(f.choices)}" for f in categories)
            parts.append(
                f"{len(categories)} categor{'ies' if len(categories) != 1 else 'y'}: {each}"
            )
        if flags:
            parts.append(f"{len(flags)} true/false")
        if fixed:
            parts.append(f"{len(fixed)} fixed")
        return f"fresh instances drawn from {where} ({'; '.join(parts)})"

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "features": [f.to_json() for f in self.features]}

    # --- building --------------------------------------------------------------------

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], example: Mapping[str, Any]) -> InstanceSpace:
        """The space an object schema (JSON Schema, as OpenAPI 3.1 writes it) describes, its
        numbers spread around ``example``'s values (or the property's own ``example``)."""
        properties = schema.get("properties")
        props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
        names = list(example) + [name for name in props if name not in example]
        features = []
        for name in names:
            prop = props.get(name)
            prop = prop if isinstance(prop, Mapping) else {}
            value = example.get(name, prop.get("example", prop.get("default")))
            features.append(_feature_from_schema(name, prop, value))
        return cls(tuple(features), "schema")

    @classmethod
    def from_instances(cls, instances: Sequence[Mapping[str, Any]]) -> InstanceSpace:
        """The space the given instances span: the categories seen, numbers around (or
        between) the values seen."""
        names: list[str] = []
        for instance in instances:
            names += [k for k in instance if k not in names]
        features = []
        for name in names:
            seen = [i[name] for i in instances if name in i]
            features.append(_feature_from_values(name, seen))
        return cls(tuple(features), "instances")


def _compiled(f: FeatureSpace, rng: random.Random) -> Callable[[], Any]:
    """``f.draw(rng)`` as a closure over its constants: the same values, several times
    faster (no attribute lookups, one Gaussian and one exponential per number)."""
    if f.kind == "fixed":
        value = f.value
        return lambda: value
    if f.kind == "category":
        choices, pick = list(f.choices), rng.choice
        return lambda: pick(choices)
    if f.kind == "boolean":
        unit = rng.random
        return lambda: unit() < 0.5
    low, high = f.low, f.high
    whole, places = f.kind == "integer", f.decimals
    if low is not None and high is not None:
        lo, hi, uniform = low, high, rng.uniform
        if whole:
            return lambda: round(uniform(lo, hi))
        return lambda: round(uniform(lo, hi), places)
    floor = -math.inf if low is None else low
    ceiling = math.inf if high is None else high
    center = f.center if f.center is not None else 0.0
    if center == 0.0:
        expo = rng.expovariate
        if whole:
            return lambda: min(max(math.floor(expo(1.0)), floor), ceiling)
        return lambda: round(min(max(expo(2.0), floor), ceiling), places)
    gauss, exp, bound = rng.gauss, math.exp, math.log(CLIP)

    def number() -> float:
        drawn = center * exp(min(max(gauss(0.0, SPREAD), -bound), bound))
        return min(max(drawn, floor), ceiling)

    if whole:
        return lambda: round(number())
    return lambda: round(number(), places)


def _decimals(value: float) -> int:
    text = repr(float(value))
    if "e" in text or "." not in text:
        return 2
    return max(2, len(text.split(".", 1)[1].rstrip("0")) + 1)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bound(prop: Mapping[str, Any], inclusive: str, exclusive: str) -> float | None:
    # an exclusive bound is close enough: drawn floats almost never land on it
    for key in (inclusive, exclusive):
        value = prop.get(key)
        if isinstance(value, int | float) and _is_number(value):
            return float(value)
    return None


def _feature_from_schema(name: str, prop: Mapping[str, Any], value: Any) -> FeatureSpace:
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        return FeatureSpace(name, "category", choices=tuple(enum))
    kind = prop.get("type")
    # An open category (an encoder with handle_unknown="ignore", a booster's categorical
    # column) lists what it learned as examples: those are the values real callers send.
    examples = prop.get("examples")
    strings = "string" in kind if isinstance(kind, list) else kind == "string"
    if strings and isinstance(examples, list):
        learned = tuple(dict.fromkeys(e for e in examples if isinstance(e, str)))
        if len(learned) > 1:
            return FeatureSpace(name, "category", choices=learned)
    if kind == "boolean" or isinstance(value, bool):
        return FeatureSpace(name, "boolean")
    if kind in ("number", "integer") or _is_number(value):
        low = _bound(prop, "minimum", "exclusiveMinimum")
        high = _bound(prop, "maximum", "exclusiveMaximum")
        center = float(value) if _is_number(value) else None
        if center is None and low is not None and high is not None:
            center = (low + high) / 2
        if center is not None and center >= 0 and low is None:
            low = 0.0  # what is documented as non-negative stays so
        integer = kind == "integer" or isinstance(value, int)
        return FeatureSpace(
            name,
            "integer" if integer else "number",
            center=center,
            low=low,
            high=high,
            decimals=_decimals(center) if center is not None else 2,
        )
    return FeatureSpace(name, "fixed", value=value)


def _feature_from_values(name: str, seen: list[Any]) -> FeatureSpace:
    numbers = [v for v in seen if _is_number(v)]
    if numbers and len(numbers) == len(seen):
        integer = all(isinstance(v, int) for v in numbers)
        ordered = sorted(float(v) for v in numbers)
        center = ordered[len(ordered) // 2]
        low: float | None = 0.0 if ordered[0] >= 0 else None
        high: float | None = None
        if ordered[-1] > ordered[0]:  # several values: between them, a little wider
            margin = (ordered[-1] - ordered[0]) * 0.1
            low = ordered[0] - margin if low is None else max(low, ordered[0] - margin)
            high = ordered[-1] + margin
        return FeatureSpace(
            name,
            "integer" if integer else "number",
            center=center,
            low=low,
            high=high,
            decimals=max(_decimals(v) for v in numbers),
        )
    if seen and all(isinstance(v, bool) for v in seen) and len(set(seen)) > 1:
        return FeatureSpace(name, "boolean")
    hashable = [v for v in seen if isinstance(v, str | int | float | bool) or v is None]
    distinct = list(dict.fromkeys(hashable))
    if len(hashable) == len(seen) and len(distinct) > 1:
        return FeatureSpace(name, "category", choices=tuple(distinct))
    return FeatureSpace(name, "fixed", value=seen[0] if seen else None)


def instance_schema(spec: Mapping[str, Any], route: str) -> Mapping[str, Any] | None:
    """The JSON Schema of one instance of ``POST route``'s request body, from an OpenAPI
    document: the object schema among its ``oneOf``/``anyOf`` alternatives, or the items of
    a Vertex-style ``instances`` array. None when the document does not say."""
    schema = request_schema(spec, route)
    return None if schema is None else _instance_in(spec, schema, depth=0)


def _resolve(spec: Mapping[str, Any], schema: Any) -> Any:
    for _ in range(16):  # a $ref chain, not a loop
        if not (isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str)):
            return schema
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return None
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node.get(part) if isinstance(node, Mapping) else None
        schema = node
    return None


def _instance_in(spec: Mapping[str, Any], schema: Any, depth: int) -> Mapping[str, Any] | None:
    schema = _resolve(spec, schema)
    if not isinstance(schema, Mapping) or depth > 4:
        return None
    for key in ("oneOf", "anyOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                found = _instance_in(spec, option, depth + 1)
                if found is not None:
                    return found
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return None
    instances = _resolve(spec, properties.get("instances"))
    if isinstance(instances, Mapping) and instances.get("type") == "array":
        return _instance_in(spec, instances.get("items"), depth + 1)
    return schema
