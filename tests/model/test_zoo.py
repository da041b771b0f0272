"""Every model of the zoo serves the answers of its own library, with a schema read from it.

The zoo (bench/zoomodels.py) covers forests, extra trees, the three kinds of gradient
boosting, XGBoost and LightGBM (in a pipeline and on pandas categories), linear and logistic
models, an SVM, k-NN, an MLP, a calibrated classifier; imputers, scalers, one-hot (ignore and
error), ordinal and target encoders, FunctionTransformer, remainder="drop" and "passthrough",
nested pipelines; str, int and bool labels, 2, 3 and 12 classes, regressors, missing values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import zoomodels

from servepath.model.race import TOLERANCE
from tests.model.conftest import Served

NAMES = [z.name for z in zoomodels.ZOO]


def fresh_rows(served: Served, n: int = 150) -> tuple[Any, list[dict[str, Any]]]:
    """Applicants the model never saw (another seed), as the frame and as JSON instances."""
    import pandas as pd

    data, _ = zoomodels.applicants(n, seed=12345, missing=0.05 if served.entry.missing else 0.0)
    data = data[[str(c) for c in served.estimator.feature_names_in_]]
    rows = [{k: _json(v) for k, v in r.items()} for r in data.astype(object).to_dict("records")]
    # the model's own answer to a request: its predict on a DataFrame of the JSON instances
    frame = pd.DataFrame.from_records(rows)
    if served.entry.pandas_categories:
        for column in zoomodels.CATEGORICAL:
            frame[column] = pd.Categorical(frame[column], categories=data[column].dropna().unique())
    return frame, rows


def _json(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def clean(served: Served, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the service would pass them on: validated by the model's own schema."""
    return served.model.schema.validate_many(rows)


@pytest.mark.parametrize("name", NAMES)
def test_answers_are_the_libraries_own(zoo: dict[str, Served], name: str) -> None:
    served = zoo[name]
    frame, rows = fresh_rows(served)
    got = served.model.predict_rows(clean(served, rows))
    est = served.estimator
    if served.model.task == "regression":
        want = np.asarray(est.predict(frame), dtype=float)
        values = np.array([o["prediction"] for o in got])
        assert np.abs(values - want).max() <= TOLERANCE * max(1.0, np.abs(want).max())
        return
    labels = [v.item() if isinstance(v, np.generic) else v for v in est.predict(frame)]
    assert [o["decision"] for o in got] == labels
    if served.model.task == "proba":
        proba = est.predict_proba(frame)
        index = {c: i for i, c in enumerate(served.model.classes)}
        worst = max(
            abs(o["probability"] - proba[i, index[o["decision"]]]) for i, o in enumerate(got)
        )
        assert worst <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_one_row_at_a_time_answers_the_same_as_a_batch(zoo: dict[str, Served], name: str) -> None:
    served = zoo[name]
    _, rows = fresh_rows(served, 20)
    batch = served.model.predict_rows(clean(served, rows))
    singles = [served.model.predict_rows(clean(served, [r]))[0] for r in rows]
    for a, b in zip(batch, singles, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                assert abs(a[key] - b[key]) <= TOLERANCE
            else:
                assert a[key] == b[key]


@pytest.mark.parametrize("name", NAMES)
def test_the_serving_engine_reproduced_the_model_and_the_others_say_why_not(
    zoo: dict[str, Served], name: str
) -> None:
    report = zoo[name].model.report
    assert report is not None
    trials = {t.name: t for t in report.trials}
    assert "sklearn" in trials and trials["sklearn"].agrees
    for engine in {report.choice.small, report.choice.large}:
        assert trials[engine].agrees
        assert trials[engine].one_row_ms is not None and trials[engine].batch_ms is not None
    assert report.largest_difference <= TOLERANCE
    for trial in report.trials:
        assert trial.verdict  # agrees, or the reason it is not used
    lines = report.lines()
    assert lines[0].startswith("served by ") and "max |Δ|" in lines[0]
    assert lines[1].startswith("engine race: ")  # run now, or read from the cache
    assert len(lines) == 2 + len(report.trials)


@pytest.mark.parametrize("name", NAMES)
def test_schema_names_the_columns_and_learned_categories(zoo: dict[str, Served], name: str) -> None:
    served = zoo[name]
    schema = served.model.schema
    assert list(schema.names) == [str(c) for c in served.estimator.feature_names_in_]
    train = served.frame
    for f in schema.features:
        if f.kind == "category":
            learned = {v for v in train[f.name].dropna().unique()}
            assert f.categories is not None and set(f.categories) <= learned | {"none"}
            assert f.example in f.categories  # never an invented value
        elif f.kind == "number":
            assert isinstance(f.example, float) and math.isfinite(f.example)
    example = schema.example()
    row, errors = schema.validate(example)
    assert errors == [] and row is not None
    assert served.model.predict_rows([row])


def test_categorical_columns_are_categories_in_every_model(zoo: dict[str, Served]) -> None:
    for name, served in zoo.items():
        kinds = {f.name: f.kind for f in served.model.schema.features}
        if served.entry.columns is not None:
            continue  # fitted on the numeric columns only
        expected = {"home", "purpose"} - ({"home"} if name == "dropped_column" else set())
        assert {c for c in expected if kinds[c] == "category"} == expected, name


def test_a_dropped_column_is_optional_untyped_and_ignored(zoo: dict[str, Served]) -> None:
    served = zoo["dropped_column"]
    schema = served.model.schema
    home = next(f for f in schema.features if f.name == "home")
    assert home.kind == "any" and not home.required
    assert "home" not in schema.json_schema()["required"]
    assert "type" not in schema.json_schema()["properties"]["home"]
    example = schema.example()
    with_it = schema.validate({**example, "home": 17})
    without = schema.validate(example)
    assert with_it == without and without[1] == []


def test_a_passthrough_number_gets_an_example_from_the_model(zoo: dict[str, Served]) -> None:
    # "age" goes through untouched to a forest: its example comes from the trees' splits
    age = next(f for f in zoo["dropped_column"].model.schema.features if f.name == "age")
    assert 21 <= float(age.example) <= 70  # type: ignore[arg-type]


def test_closed_and_open_categories_follow_handle_unknown(zoo: dict[str, Served]) -> None:
    closed = {f.name: f.closed for f in zoo["svm"].model.schema.features if f.categories}
    opened = {f.name: f.closed for f in zoo["random_forest"].model.schema.features if f.categories}
    assert closed == {"home": True, "purpose": True}
    assert opened == {"home": False, "purpose": False}
    _, errors = zoo["svm"].model.schema.validate(
        {**zoo["svm"].model.schema.example(), "home": "castle"}
    )
    assert [e.type for e in errors] == ["enum"]
    row, errors = zoo["random_forest"].model.schema.validate(
        {**zoo["random_forest"].model.schema.example(), "home": "castle"}
    )
    assert errors == [] and zoo["random_forest"].model.predict_rows([row])


def test_missing_values_are_accepted_where_the_model_takes_them(zoo: dict[str, Served]) -> None:
    nullable = {f.name for f in zoo["logistic_3class"].model.schema.features if f.nullable}
    assert {"income", "credit_years", "purpose"} <= nullable  # imputed
    assert not any(f.nullable for f in zoo["svm"].model.schema.features)  # no imputer
    _, errors = zoo["svm"].model.schema.validate(
        {**zoo["svm"].model.schema.example(), "income": None}
    )
    assert [e.type for e in errors] == ["type"] and "null" in errors[0].msg


@pytest.mark.parametrize(
    ("name", "kind", "classes"),
    [
        ("random_forest", "string", ("approve", "decline", "review")),
        ("extra_trees", "boolean", (False, True)),
        ("xgboost", "integer", (0, 1, 2)),
        ("nested_12_classes", "string", tuple(f"s{i:02d}" for i in range(12))),
    ],
)
def test_decisions_keep_the_label_type(
    zoo: dict[str, Served], name: str, kind: str, classes: tuple[Any, ...]
) -> None:
    model = zoo[name].model
    assert model.output_kind == kind
    assert model.classes[: len(classes)] == classes or set(classes) <= set(model.classes)
    out = model.predict_rows([model.schema.example()])[0]
    assert type(out["decision"]) is type(classes[0])


def test_regressors_answer_a_prediction(zoo: dict[str, Served]) -> None:
    for name in ("ridge", "forest_regressor"):
        model = zoo[name].model
        assert model.outputs == ("prediction",) and model.task == "regression"
        assert isinstance(model.predict_rows([model.schema.example()])[0]["prediction"], float)
