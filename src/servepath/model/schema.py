"""A model's input schema, derived from the model itself, and the validator compiled from it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from servepath.errors import FieldError, InvalidInput

FeatureKind = Literal["number", "category"]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    categories: tuple[str, ...] | None = None  # allowed values, when the model knows them
    example: float | str = 0.0

    def json_schema(self) -> dict[str, Any]:
        if self.kind == "number":
            return {"type": "number", "example": self.example}
        schema: dict[str, Any] = {"type": "string", "example": self.example}
        if self.categories is not None:
            schema["enum"] = list(self.categories)
        return schema

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "categories": list(self.categories) if self.categories is not None else None,
            "example": self.example,
        }


@dataclass(frozen=True)
class InputSchema:
    features: tuple[Feature, ...]
    _by_name: dict[str, Feature] = field(init=False, repr=False, compare=False)
    _plan: tuple[tuple[str, bool, frozenset[str] | None], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.features})
        plan = tuple(
            (
                f.name,
                f.kind == "number",
                frozenset(f.categories) if f.categories is not None else None,
            )
            for f in self.features
        )
        object.__setattr__(self, "_plan", plan)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def example(self) -> dict[str, float | str]:
        return {f.name: f.example for f in self.features}

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.features},
            "required": list(self.names),
            "additionalProperties": False,
            "example": self.example(),
        }

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.features]

    def validate(
        self, instance: Any, loc: tuple[str | int, ...] = ()
    ) -> tuple[dict[str, float | str] | None, list[FieldError]]:
        """Check one instance; returns the clean row (features in order) or the errors."""
        # Fast path for the common, valid instance; any doubt goes to the full check below.
        if type(instance) is dict and len(instance) == len(self._plan):
            row: dict[str, float | str] = {}
            try:
                for name, numeric, allowed in self._plan:
                    value = instance[name]
                    kind = type(value)
                    if numeric:
                        if kind is float and value - value == 0:  # false for NaN and inf
                            row[name] = value
                        elif kind is int and -(2**53) < value < 2**53:
                            row[name] = float(value)
                        else:
                            break
                    elif kind is str and (allowed is None or value in allowed):
                        row[name] = value
                    else:
                        break
                else:
                    return row, []
            except KeyError:
                pass
        return self._validate_each(instance, loc)

    def _validate_each(
        self, instance: Any, loc: tuple[str | int, ...]
    ) -> tuple[dict[str, float | str] | None, list[FieldError]]:
        if not isinstance(instance, Mapping):
            kind = type(instance).__name__ if instance is not None else "null"
            return None, [
                FieldError(loc, f"expected a JSON object of features, got {kind}", "type")
            ]
        errors: list[FieldError] = []
        row: dict[str, float | str] = {}
        for feature in self.features:
            where = (*loc, feature.name)
            if feature.name not in instance:
                errors.append(FieldError(where, "field required", "missing"))
                continue
            value = instance[feature.name]
            if feature.kind == "number":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    errors.append(
                        FieldError(where, f"expected a number, got {_describe(value)}", "type")
                    )
                elif isinstance(value, int) and abs(value) >= 2**53:
                    errors.append(
                        FieldError(where, "integer too large to be exact as a number", "range")
                    )
                elif not math.isfinite(value):
                    errors.append(
                        FieldError(where, f"expected a finite number, got {value}", "finite")
                    )
                else:
                    row[feature.name] = float(value)
            else:
                if not isinstance(value, str):
                    errors.append(
                        FieldError(where, f"expected a string, got {_describe(value)}", "type")
                    )
                elif feature.categories is not None and value not in feature.categories:
                    allowed = ", ".join(feature.categories)
                    errors.append(
                        FieldError(where, f"unknown category {value!r}; one of: {allowed}", "enum")
                    )
                else:
                    row[feature.name] = value
        for name in instance:
            if name not in self._by_name:
                errors.append(FieldError((*loc, str(name)), "unknown field", "extra"))
        return (row if not errors else None), errors

    def validate_many(
        self, instances: Sequence[Any], loc: tuple[str | int, ...] = ("instances",)
    ) -> list[dict[str, float | str]]:
        rows: list[dict[str, float | str]] = []
        errors: list[FieldError] = []
        for i, instance in enumerate(instances):
            row, errs = self.validate(instance, (*loc, i))
            errors.extend(errs)
            if row is not None:
                rows.append(row)
        if errors:
            raise InvalidInput(errors)
        return rows


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


# --- derivation from scikit-learn ------------------------------------------------------


def schema_from_sklearn(estimator: Any) -> InputSchema:
    """Derive the schema from ``feature_names_in_`` and the encoders a ColumnTransformer uses.

    Columns routed to a OneHotEncoder or OrdinalEncoder are categorical with the categories
    it learned; the rest are numbers. The example instance is the estimator's
    ``servepath_example_`` dict where it has one, else a StandardScaler's learned means.
    """
    names = [str(n) for n in getattr(estimator, "feature_names_in_", [])]
    if not names:
        raise ValueError("the estimator has no feature_names_in_ (fit it on a DataFrame)")
    categories: dict[str, tuple[tuple[str, ...], bool]] = {}  # known values, closed set?
    means: dict[str, float] = {}
    for transformer, columns in _column_transformers(estimator):
        _inspect(transformer, columns, categories, means)
    # A model may carry a realistic example of its own (the example model does).
    given = getattr(estimator, "servepath_example_", None) or {}
    features = []
    for name in names:
        if name in categories:
            known, closed = categories[name]
            example: float | str = given.get(name) or (known[0] if known else "value")
            features.append(Feature(name, "category", known if closed else None, example))
        else:
            example = given.get(name, _round_example(means.get(name, 0.0)))
            features.append(Feature(name, "number", None, example))
    return InputSchema(tuple(features))


def _round_example(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = max(0, 3 - math.floor(math.log10(abs(value))) - 1)
    return round(value, digits)


def _column_transformers(estimator: Any) -> list[tuple[Any, list[str]]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    found: list[tuple[Any, list[str]]] = []
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("", estimator)]
    for _, step in steps:
        if isinstance(step, ColumnTransformer):
            for _, transformer, columns in step.transformers_:
                if isinstance(columns, str):
                    columns = [columns]
                if transformer in ("drop", "passthrough") or not hasattr(columns, "__iter__"):
                    continue
                cols = [str(c) for c in columns]
                if cols and all(isinstance(c, str) for c in columns):
                    found.append((transformer, cols))
    return found


def _inspect(
    transformer: Any,
    columns: list[str],
    categories: dict[str, tuple[tuple[str, ...], bool]],
    means: dict[str, float],
) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    parts = (
        [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    )
    for part in parts:
        if isinstance(part, OneHotEncoder | OrdinalEncoder):
            unknown_ok = getattr(part, "handle_unknown", "error") != "error"
            for column, cats in zip(columns, part.categories_, strict=False):
                values = tuple(str(c) for c in cats if isinstance(c, str))
                if len(values) == len(cats):
                    categories[column] = (values, not unknown_ok)
        elif isinstance(part, StandardScaler) and getattr(part, "mean_", None) is not None:
            for column, mean in zip(columns, part.mean_, strict=False):
                means[column] = float(mean)


def schema_from_json(items: Sequence[Mapping[str, Any]]) -> InputSchema:
    """A schema stored beside a model (e.g. in ONNX metadata) as ``InputSchema.to_json()``."""
    features = []
    for item in items:
        cats = item.get("categories")
        features.append(
            Feature(
                name=str(item["name"]),
                kind="category" if item.get("kind") == "category" else "number",
                categories=tuple(cats) if cats is not None else None,
                example=item.get("example", 0.0),
            )
        )
    return InputSchema(tuple(features))
