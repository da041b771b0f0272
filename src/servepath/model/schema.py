"""A model's input schema and the validator compiled from it.

The schema is read from the model (``model/sklearn_schema.py``, ``model/onnx_schema.py``) or
from a JSON file beside it; this module only holds it and checks instances against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from servepath.errors import MAX_ERRORS, FieldError, InvalidInput, clip, shown

#: ``number``: a JSON number; ``category``: a string; ``boolean``: true/false; ``any``: a column
#: the model never reads (a ColumnTransformer drops it): optional, any value, ignored.
FeatureKind = Literal["number", "category", "boolean", "any"]
Value = float | str | bool | None
Category = str | float | bool


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    #: the values the model learned for this column (strings, or numbers for integer codes)
    categories: tuple[Category, ...] | None = None
    example: Value = 0.0
    #: a value outside ``categories`` is refused (the encoder was fitted with
    #: ``handle_unknown="error"``); otherwise the categories are only the values it learned
    closed: bool = True
    #: JSON null is accepted and reaches the model as a missing value (NaN / None)
    nullable: bool = False

    @property
    def required(self) -> bool:
        return self.kind != "any"

    def json_schema(self) -> dict[str, Any]:
        if self.kind == "any":
            return {"description": "not used by the model: optional, any value, ignored"}
        base = {"number": "number", "category": "string", "boolean": "boolean"}[self.kind]
        schema: dict[str, Any] = {"type": [base, "null"] if self.nullable else base}
        if self.categories is not None:
            values: list[Any] = list(self.categories)
            if self.closed:
                schema["enum"] = [*values, None] if self.nullable else values
            else:
                schema["examples"] = values
        schema["example"] = self.example
        return schema

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "categories": list(self.categories) if self.categories is not None else None,
            "closed": self.closed,
            "nullable": self.nullable,
            "example": self.example,
        }


# Codes of the validator's fast path, one per feature.
_NUMBER, _STRING, _BOOL = 0, 1, 2


@dataclass(frozen=True)
class InputSchema:
    features: tuple[Feature, ...]
    _by_name: dict[str, Feature] = field(init=False, repr=False, compare=False)
    _plan: tuple[tuple[str, int, frozenset[Any] | None, bool], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.features})
        codes = {"number": _NUMBER, "category": _STRING, "boolean": _BOOL}
        plan = tuple(
            (
                f.name,
                codes[f.kind],
                frozenset(f.categories) if f.closed and f.categories is not None else None,
                f.nullable,
            )
            for f in self.features
            if f.kind != "any"
        )
        object.__setattr__(self, "_plan", plan)

    @property
    def names(self) -> tuple[str, ...]:
        """Every column the model was fitted on, in order (dropped ones included)."""
        return tuple(f.name for f in self.features)

    @property
    def used(self) -> tuple[Feature, ...]:
        """The features a prediction depends on (the clean rows' keys)."""
        return tuple(f for f in self.features if f.kind != "any")

    def example(self) -> dict[str, Value]:
        return {f.name: f.example for f in self.features if f.kind != "any"}

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.features},
            "required": [f.name for f in self.features if f.required],
            "additionalProperties": False,
            "example": self.example(),
        }

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.features]

    def validate(
        self, instance: Any, loc: tuple[str | int, ...] = ()
    ) -> tuple[dict[str, Value] | None, list[FieldError]]:
        """Check one instance; returns the clean row (used features in order) or the errors."""
        # Fast path for the common, valid instance; any doubt goes to the full check below.
        if type(instance) is dict and len(instance) == len(self._plan):
            row: dict[str, Value] = {}
            try:
                for name, code, allowed, nullable in self._plan:
                    value = instance[name]
                    kind = type(value)
                    if value is None and nullable:
                        row[name] = None
                        continue
                    if code == _NUMBER:
                        if kind is float and value - value == 0:  # false for NaN and inf
                            pass
                        elif kind is int and -(2**53) < value < 2**53:
                            value = float(value)
                        else:
                            break
                    elif code == _STRING:
                        if kind is not str:
                            break
                    elif kind is not bool:
                        break
                    if allowed is not None and value not in allowed:
                        break
                    row[name] = value
                else:
                    return row, []
            except KeyError:
                pass
        row_or_none, errors, _ = self._validate_each(instance, loc, MAX_ERRORS)
        return row_or_none, errors

    def validate_one(self, instance: Any, loc: tuple[str | int, ...] = ()) -> dict[str, Value]:
        """The clean row of one instance, or :class:`InvalidInput` (bounded, with a count)."""
        row, errors = self.validate(instance, loc)
        if row is not None:
            return row
        if len(errors) < MAX_ERRORS:
            raise InvalidInput(errors)
        _, errors, more = self._validate_each(instance, loc, MAX_ERRORS)
        raise InvalidInput(errors, more)

    def _validate_each(
        self, instance: Any, loc: tuple[str | int, ...], limit: int
    ) -> tuple[dict[str, Value] | None, list[FieldError], int]:
        """The row or the errors: at most ``limit`` of them built, the rest only counted."""
        if not isinstance(instance, Mapping):
            kind = type(instance).__name__ if instance is not None else "null"
            return (
                None,
                [FieldError(loc, f"expected a JSON object of features, got {kind}", "type")],
                0,
            )
        errors: list[FieldError] = []
        row: dict[str, Value] = {}
        for feature in self.features:
            if feature.kind == "any":
                continue
            where = (*loc, feature.name)
            if feature.name not in instance:
                errors.append(FieldError(where, "field required", "missing"))
                continue
            value, error = _check(feature, instance[feature.name])
            if error is not None:
                errors.append(FieldError(where, *error))
            else:
                row[feature.name] = value
        more = max(0, len(errors) - limit)
        del errors[limit:]
        known = self._by_name
        for name in instance:
            if name not in known:
                if len(errors) < limit:
                    errors.append(FieldError((*loc, clip(str(name))), "unknown field", "extra"))
                else:
                    more += 1
        return (row if not errors else None), errors, more

    def validate_many(
        self, instances: Sequence[Any], loc: tuple[str | int, ...] = ("instances",)
    ) -> list[dict[str, Value]]:
        """Every instance's clean row, or :class:`InvalidInput` listing at most
        :data:`MAX_ERRORS` errors: validation stops at the instance that reaches them."""
        rows: list[dict[str, Value]] = []
        errors: list[FieldError] = []
        more = 0
        for i, instance in enumerate(instances):
            row, errs = self.validate(instance, (*loc, i))
            if row is not None:
                rows.append(row)
                continue
            room = MAX_ERRORS - len(errors)
            if len(errs) >= room:
                # This instance fills the answer: count the rest of its errors, stop here.
                _, errs, more = self._validate_each(instance, (*loc, i), room)
                errors.extend(errs)
                raise InvalidInput(errors, more, stopped=i < len(instances) - 1)
            errors.extend(errs)
        if errors:
            raise InvalidInput(errors)
        return rows


#: Categories an error message lists.
_SHOWN_CATEGORIES = 20


def _check(feature: Feature, value: Any) -> tuple[Value, tuple[str, str] | None]:
    """The clean value, or (message, type tag)."""
    if value is None:
        if feature.nullable:
            return None, None
        return None, ("null is not accepted: the model cannot take a missing value here", "type")
    if feature.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, (f"expected a number, got {_describe(value)}", "type")
        if isinstance(value, int) and abs(value) >= 2**53:
            return None, ("integer too large to be exact as a number", "range")
        if not math.isfinite(value):
            return None, (f"expected a finite number, got {value}", "finite")
        value = float(value)
    elif feature.kind == "category":
        if not isinstance(value, str):
            return None, (f"expected a string, got {_describe(value)}", "type")
    elif not isinstance(value, bool):
        return None, (f"expected true or false, got {_describe(value)}", "type")
    if feature.closed and feature.categories is not None and value not in feature.categories:
        cats = feature.categories
        allowed = ", ".join(clip(c) for c in cats[:_SHOWN_CATEGORIES])
        if len(cats) > _SHOWN_CATEGORIES:
            allowed += f" (and {len(cats) - _SHOWN_CATEGORIES} more)"
        return None, (f"unknown category {shown(value)}; one of: {allowed}", "enum")
    return value, None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def schema_from_json(items: Any) -> InputSchema:
    """A schema stored beside a model (ONNX metadata, ``--schema FILE``): a list of
    ``{"name", "kind", "categories", "closed", "nullable", "example"}`` (only ``name`` and
    ``kind`` are required), as ``InputSchema.to_json()`` writes it.

    Raises ``ValueError`` naming the first item that is not a feature.
    """
    if not isinstance(items, list) or not items:
        raise ValueError("a schema is a non-empty JSON list of features")
    features = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f"schema item {i} is not an object with a string 'name'")
        kind = item.get("kind", "number")
        if kind not in ("number", "category", "boolean", "any"):
            raise ValueError(
                f"schema item {item['name']!r}: kind {kind!r} is not one of "
                "number, category, boolean, any"
            )
        cats = item.get("categories")
        if cats is not None and not isinstance(cats, list):
            raise ValueError(f"schema item {item['name']!r}: categories must be a list")
        categories = tuple(cats) if cats else None
        example = item.get("example")
        if example is None:
            example = _default_example(kind, categories)
            if example is None and kind == "category":
                raise ValueError(
                    f"schema item {item['name']!r}: a category needs 'categories' or an 'example'"
                )
        features.append(
            Feature(
                name=item["name"],
                kind=kind,
                categories=categories,
                example=example,
                closed=bool(item.get("closed", categories is not None and kind == "category")),
                nullable=bool(item.get("nullable", False)),
            )
        )
    return InputSchema(tuple(features))


def _default_example(kind: str, categories: tuple[Category, ...] | None) -> Value:
    if categories:
        return categories[0]
    return {"number": 0.0, "boolean": False}.get(kind)
