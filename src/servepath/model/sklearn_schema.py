"""The input schema of a scikit-learn estimator (or XGBoost / LightGBM model), read from it.

The columns are ``feature_names_in_``. What each column is comes from what the model does
with it: the categories an encoder learned (one-hot, ordinal, target), an imputer's fill
value, a scaler's centre (the example), a column a ``ColumnTransformer`` drops (optional,
untyped), the categorical columns of XGBoost, LightGBM and HistGradientBoosting. Nested
pipelines and column transformers are followed as far as each column keeps its identity.

Pure: nothing here predicts. Which columns take a missing value is found by trying it, in
``model/loaded.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from servepath.model.schema import Category, Feature, FeatureKind, InputSchema, Value

#: How the reference engine builds each DataFrame column: ``float``, ``int``, ``object``, or
#: ``category`` (a pandas Categorical over the learned categories, for models that need one).
ColumnDtype = Literal["float", "int", "object", "category"]

NO_FEATURE_NAMES = (
    "the model was fitted on an array without column names, so the fields of a request "
    "cannot be matched to its inputs: fit it on a pandas DataFrame whose columns are the "
    "request's field names (model.fit(pd.DataFrame(X, columns=[...]), y)) and save it again"
)


@dataclass
class _Evidence:
    kind: FeatureKind | None = None
    categories: tuple[Category, ...] | None = None
    closed: bool = False
    example: Value = None
    nan_seen: bool = False  # the model learned a missing value as a category
    dtype: ColumnDtype | None = None
    used: bool = False  # some transformer reads it (a drop alone leaves it unused)
    dropped: bool = False
    #: element-wise functions applied to it so far (np.log1p, ...), in order: a centre
    #: learned after them is mapped back through their inverses
    functions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FramePlan:
    """How to turn clean rows back into the DataFrame the model was fitted on."""

    columns: tuple[str, ...]
    dtypes: tuple[ColumnDtype, ...]
    categories: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: numeric columns nothing in the model gave an example for (see examples_from_splits)
    unset_examples: tuple[str, ...] = ()
    #: per column, the element-wise functions the model applies to it before its estimator
    functions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def positive(self) -> frozenset[str]:
        """Columns only defined above zero for the model (a log or a square root of them)."""
        return frozenset(n for n, fs in self.functions.items() if set(fs) & _POSITIVE_ONLY)


#: Element-wise functions a ``FunctionTransformer`` may hold, and their inverses.
_INVERSES: dict[str, Any] = {
    "log1p": np.expm1,
    "log": np.exp,
    "log2": np.exp2,
    "log10": lambda v: np.power(10.0, v),
    "sqrt": np.square,
    "expm1": np.log1p,
    "exp": np.log,
}
_POSITIVE_ONLY = {"log1p", "log", "log2", "log10", "sqrt"}


def _function_name(step: Any) -> str | None:
    """The numpy function of a ``FunctionTransformer`` whose inverse is known, else None."""
    func = getattr(step, "func", None)
    name = getattr(func, "__name__", None)
    if name in _INVERSES and getattr(np, name, None) is func:
        return str(name)
    return None


def _invert(value: float, functions: Sequence[str]) -> float | None:
    for name in reversed(functions):
        with np.errstate(all="ignore"):
            value = float(_INVERSES[name](value))
    return value if math.isfinite(value) else None


def schema_from_sklearn(estimator: Any) -> InputSchema:
    return inspect_sklearn(estimator)[0]


def inspect_sklearn(estimator: Any) -> tuple[InputSchema, FramePlan]:
    """The schema of ``estimator`` and how to build its DataFrame; ``ValueError`` if unusable."""
    raw = getattr(estimator, "feature_names_in_", None)
    if raw is None or len(raw) == 0:
        raise ValueError(NO_FEATURE_NAMES)
    names = [str(n) for n in raw]
    if not all(isinstance(n, str) for n in raw):
        raise ValueError(
            f"the model's column names are not all strings ({list(raw)[:5]}): "
            "fit it on a DataFrame with string column names"
        )
    evidence = {n: _Evidence() for n in names}
    _trace(estimator, names, evidence)
    given = getattr(estimator, "servepath_example_", None) or {}
    features = []
    unset = []
    for name in names:
        ev = evidence[name]
        if ev.dropped and not ev.used:
            features.append(Feature(name, "any", None, None))
            continue
        kind: FeatureKind = ev.kind or "number"
        categories = ev.categories
        example = given.get(name, ev.example)
        if example is None and (ev.kind or "number") == "number" and not categories:
            unset.append(name)
        if example is None:
            if categories:
                example = categories[0]
            else:
                example = False if kind == "boolean" else ("" if kind == "category" else 0.0)
        if kind == "number" and isinstance(example, int | float) and not isinstance(example, bool):
            example = _round_example(float(example))
        features.append(
            Feature(name, kind, categories, example, ev.closed and bool(categories), ev.nan_seen)
        )
    plan = FramePlan(
        tuple(names),
        tuple(_dtype(evidence[n], f) for n, f in zip(names, features, strict=True)),
        {n: evidence[n].categories or () for n in names if evidence[n].dtype == "category"},
        tuple(unset),
        {n: tuple(evidence[n].functions) for n in names if evidence[n].functions},
    )
    return InputSchema(tuple(features)), plan


def examples_from_splits(estimator: Any, schema: InputSchema, plan: FramePlan) -> InputSchema:
    """Numeric examples, for the columns nothing else gave one, from where the model's trees
    split them: the median threshold (an ``age`` passed through to a forest gets ~43, not 0).
    Columns of a model without trees keep 0."""
    if not plan.unset_examples:
        return schema
    from sklearn.pipeline import Pipeline

    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    names = list(plan.columns)
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        try:
            names = [str(n) for n in estimator[:-1].get_feature_names_out()]
        except Exception:
            # a FunctionTransformer without feature_names_out: the columns keep their
            # places when every step maps each column to itself
            kept: list[str] | None = list(plan.columns)
            for _, step in estimator.steps[:-1]:
                if kept is not None and step not in (None, "passthrough"):
                    kept = _one_to_one(step, kept)
            if kept is None:
                return schema
            names = kept
    index: dict[str, int] = {}
    for column in plan.unset_examples:
        for j, out in enumerate(names):
            if out == column or out.endswith(f"__{column}"):
                index[column] = j
                break
    thresholds = _split_thresholds(final)
    if not index or not thresholds:
        return schema
    features = []
    for f in schema.features:
        position = index.get(f.name)
        if position is not None and thresholds.get(position):
            median = _invert(float(np.median(thresholds[position])), plan.functions.get(f.name, ()))
            if median is not None:
                example = _round_example(median)
                f = Feature(f.name, f.kind, f.categories, example, f.closed, f.nullable)
        features.append(f)
    return InputSchema(tuple(features))


def _split_thresholds(final: Any) -> dict[int, list[float]]:
    from sklearn.tree import BaseDecisionTree

    trees = (
        [final]
        if isinstance(final, BaseDecisionTree)
        else [
            t
            for t in np.ravel(np.asarray(getattr(final, "estimators_", []), dtype=object))
            if isinstance(t, BaseDecisionTree)
        ]
    )
    if trees:  # scikit-learn's own trees: their arrays, without a detour through treelite
        found: dict[int, list[float]] = {}
        for tree in trees:
            features, thresholds = tree.tree_.feature, tree.tree_.threshold
            for j in np.unique(features[features >= 0]):
                found.setdefault(int(j), []).extend(thresholds[features == j].tolist())
        return found
    booster = _xgboost_booster(final)
    if booster is not None:
        return _xgboost_thresholds(booster)
    try:
        import json

        import treelite
        import treelite.sklearn

        module = type(final).__module__.split(".")[0]
        if module == "lightgbm":
            model = treelite.frontend.from_lightgbm(final.booster_)
        else:
            model = treelite.sklearn.import_model(final)
        dump = json.loads(model.dump_as_json(pretty_print=False))
    except Exception:  # not a tree model treelite reads
        return {}
    out: dict[int, list[float]] = {}
    for tree in dump.get("trees", []):
        for node in tree.get("nodes", []):
            if node.get("node_type") == "numerical_test_node":
                out.setdefault(int(node["split_feature_id"]), []).append(float(node["threshold"]))
    return out


def _xgboost_thresholds(booster: Any) -> dict[int, list[float]]:
    """The numerical splits of an XGBoost model, read from its JSON form: treelite refuses
    a model with categorical splits (``enable_categorical=True``), the numbers beside them
    included."""
    import json

    try:
        trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"][
            "trees"
        ]
    except (KeyError, TypeError, ValueError):
        return {}
    out: dict[int, list[float]] = {}
    for tree in trees:
        kinds = tree.get("split_type") or [0] * len(tree["split_indices"])
        for left, feature, threshold, kind in zip(
            tree["left_children"],
            tree["split_indices"],
            tree["split_conditions"],
            kinds,
            strict=False,
        ):
            if left != -1 and kind == 0:  # an inner node splitting a number
                out.setdefault(int(feature), []).append(float(threshold))
    return out


def _dtype(ev: _Evidence, feature: Feature) -> ColumnDtype:
    if ev.dtype is not None:
        return ev.dtype
    if feature.kind in ("category", "any"):
        return "object"
    if feature.kind == "boolean":
        return "object"
    if feature.categories and all(
        isinstance(c, int | float) and float(c).is_integer() for c in feature.categories
    ):
        return "int"
    return "float"


def _round_example(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = max(0, 3 - math.floor(math.log10(abs(value))) - 1)
    return round(value, digits)


# --- following the columns --------------------------------------------------------------


def _trace(step: Any, columns: list[str] | None, evidence: dict[str, _Evidence]) -> None:
    """Record what ``step`` does with ``columns`` (the input column behind each of its
    inputs, or None where that identity is lost)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if columns is None:
        return
    if isinstance(step, Pipeline):
        current: list[str] | None = columns
        for _, sub in step.steps:
            if sub is None or sub == "passthrough":
                continue
            _trace(sub, current, evidence)
            current = _one_to_one(sub, current) if current is not None else None
            if current is None:
                break
        return
    if isinstance(step, FeatureUnion):
        for _, sub in step.transformer_list:
            if sub != "drop":
                _trace(sub, columns, evidence)
        return
    if isinstance(step, ColumnTransformer):
        for _, transformer, selector in step.transformers_:
            selected = _select(selector, columns)
            if transformer == "drop":
                for c in selected:
                    evidence[c].dropped = True
                continue
            for c in selected:
                evidence[c].used = True
            if transformer != "passthrough":
                _trace(transformer, selected, evidence)
        return
    for c in columns:
        evidence[c].used = True
    _leaf(step, columns, evidence)


def _select(selector: Any, columns: list[str]) -> list[str]:
    if isinstance(selector, str):
        return [selector] if selector in columns else []
    if isinstance(selector, slice):
        return columns[selector]
    items = list(selector) if hasattr(selector, "__iter__") else [selector]
    if items and all(isinstance(i, bool | np.bool_) for i in items):
        return [c for c, keep in zip(columns, items, strict=False) if keep]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int | np.integer) and -len(columns) <= int(item) < len(columns):
            out.append(columns[int(item)])
    return [c for c in out if c in columns]


def _one_to_one(step: Any, columns: list[str]) -> list[str] | None:
    """The columns behind ``step``'s outputs when each output is one input, else None."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        FunctionTransformer,
        MaxAbsScaler,
        MinMaxScaler,
        PowerTransformer,
        QuantileTransformer,
        RobustScaler,
        StandardScaler,
    )

    if isinstance(step, SimpleImputer):
        if getattr(step, "keep_empty_features", False) or getattr(step, "add_indicator", False):
            return columns if not step.add_indicator else None
        stats = getattr(step, "statistics_", None)
        if stats is None:
            return None
        # all-missing columns are dropped by default
        kept = [
            c
            for c, s in zip(columns, stats, strict=False)
            if not (isinstance(s, float) and math.isnan(s))
        ]
        return kept if len(kept) == len(columns) else None
    one_to_one = (
        StandardScaler,
        MinMaxScaler,
        MaxAbsScaler,
        RobustScaler,
        PowerTransformer,
        QuantileTransformer,
    )
    if isinstance(step, one_to_one):
        return columns
    if isinstance(step, FunctionTransformer) and (
        step.func is None or _function_name(step) is not None
    ):
        return columns
    return None


def _leaf(step: Any, columns: list[str], evidence: dict[str, _Evidence]) -> None:
    """Evidence from one fitted transformer or estimator about the columns it reads."""
    from sklearn.impute import KNNImputer, SimpleImputer
    from sklearn.preprocessing import (
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        RobustScaler,
        StandardScaler,
        TargetEncoder,
    )

    function = _function_name(step)
    if function is not None:
        for column in columns:
            evidence[column].functions.append(function)
        return
    if isinstance(step, OneHotEncoder | OrdinalEncoder | TargetEncoder):
        closed = getattr(step, "handle_unknown", "error") == "error" and not isinstance(
            step, TargetEncoder
        )
        for column, cats in zip(columns, getattr(step, "categories_", []), strict=False):
            _categories(evidence[column], list(cats), closed)
        return
    if isinstance(step, SimpleImputer):
        stats = getattr(step, "statistics_", None)
        if stats is None:
            return
        for column, value in zip(columns, stats, strict=False):
            ev = evidence[column]
            if isinstance(value, str):
                _weak(ev, "category", value)
            elif isinstance(value, bool | np.bool_):
                _weak(ev, "boolean", bool(value))
            elif isinstance(value, int | float | np.number) and not math.isnan(float(value)):
                _weak(ev, "number", _invert(float(value), ev.functions))
        return
    if isinstance(step, KNNImputer):
        for column in columns:
            _weak(evidence[column], "number", None)
        return
    centre = None
    if isinstance(step, StandardScaler) and getattr(step, "mean_", None) is not None:
        centre = step.mean_
    elif isinstance(step, MinMaxScaler) and getattr(step, "data_min_", None) is not None:
        centre = (step.data_min_ + step.data_max_) / 2
    elif isinstance(step, RobustScaler) and getattr(step, "center_", None) is not None:
        centre = step.center_
    if centre is not None:
        for column, value in zip(columns, centre, strict=False):
            ev = evidence[column]
            _weak(ev, "number", _invert(float(value), ev.functions))
        return
    _estimator_categoricals(step, columns, evidence)


def _weak(ev: _Evidence, kind: FeatureKind, example: Value) -> None:
    """Evidence that yields to an encoder's categories but fills what is still unknown."""
    if ev.kind is None:
        ev.kind = kind
    if ev.example is None and example is not None and ev.kind == kind:
        ev.example = example


def _categories(ev: _Evidence, cats: list[Any], closed: bool) -> None:
    values: list[Category] = []
    for c in cats:
        if c is None or (isinstance(c, float | np.floating) and math.isnan(c)):
            ev.nan_seen = True
            continue
        plain = c.item() if isinstance(c, np.generic) else c
        values.append(plain)
    if not values:
        return
    if all(isinstance(v, bool) for v in values):
        kind: FeatureKind = "boolean"
    elif all(isinstance(v, str) for v in values):
        kind = "category"
    elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        kind = "number"
    else:
        kind = "category"
        values = [str(v) for v in values]
    if ev.categories is not None and ev.kind == kind:
        closed = closed or ev.closed  # the strictest consumer decides
    ev.kind = kind
    ev.categories = tuple(values)
    ev.closed = closed
    if ev.example not in values:  # an imputer's most frequent value is a good example
        ev.example = values[0]


def _estimator_categoricals(step: Any, columns: list[str], evidence: dict[str, _Evidence]) -> None:
    """Categorical inputs of estimators that encode categories themselves."""
    preprocessor = getattr(step, "_preprocessor", None)  # HistGradientBoosting, from_dtype
    if preprocessor is not None and hasattr(preprocessor, "transformers_"):
        is_cat = getattr(step, "is_categorical_", None)
        _trace(preprocessor, columns, evidence)
        if is_cat is not None:
            for column, flag in zip(columns, is_cat, strict=False):
                if flag and evidence[column].kind == "category":
                    evidence[column].dtype = "category"
        return
    booster = _xgboost_booster(step)
    if booster is not None:
        _xgboost_categoricals(booster, columns, evidence)
        return
    lgb_booster = getattr(step, "booster_", None) if hasattr(step, "feature_name_") else None
    if lgb_booster is not None and getattr(lgb_booster, "pandas_categorical", None):
        indices = _lightgbm_categorical_indices(lgb_booster)
        for index, cats in zip(indices, lgb_booster.pandas_categorical, strict=False):
            if 0 <= index < len(columns):
                ev = evidence[columns[index]]
                _categories(ev, list(cats), closed=False)
                ev.dtype = "category"


def _xgboost_booster(step: Any) -> Any:
    if type(step).__module__.split(".")[0] != "xgboost" or not hasattr(step, "get_booster"):
        return None
    try:
        return step.get_booster()
    except Exception:  # not fitted
        return None


def _xgboost_categoricals(booster: Any, columns: list[str], evidence: dict[str, _Evidence]) -> None:
    types = booster.feature_types or []
    if "c" not in types:
        return
    learned = _xgboost_learned_categories(booster, columns)
    for column, kind in zip(columns, types, strict=False):
        if kind == "c":
            ev = evidence[column]
            if column in learned:
                _categories(ev, learned[column], closed=False)
            else:
                ev.kind = "category"
            ev.dtype = "category"


def _lightgbm_categorical_indices(booster: Any) -> list[int]:
    value = booster.params.get("categorical_column")
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    if isinstance(value, int):
        return [value]
    if isinstance(value, str) and value:
        return [int(v) for v in value.split(",") if v.strip().lstrip("-").isdigit()]
    return []


def _xgboost_learned_categories(booster: Any, columns: list[str]) -> dict[str, list[Any]]:
    """The categories XGBoost (3.1 and later) stores in the model, read from its JSON form
    (``get_categories`` would need pyarrow)."""
    import json

    try:
        model = json.loads(booster.save_raw("json"))
        encodings = model["learner"]["gradient_booster"]["model"]["cats"]["enc"]
    except (KeyError, TypeError, ValueError):
        return {}
    learned: dict[str, list[Any]] = {}
    for column, enc in zip(columns, encodings, strict=False):
        offsets, values = enc.get("offsets") or [], enc.get("values") or []
        if offsets:
            raw = bytes(values)
            learned[column] = [
                raw[a:b].decode() for a, b in zip(offsets, [*offsets[1:], len(raw)], strict=False)
            ]
            if learned[column] and learned[column][-1] == "" and offsets[-1] == len(raw):
                learned[column].pop()
        elif values:
            learned[column] = list(values)
    return learned
