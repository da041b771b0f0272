"""Probing a model at load: rows it can take, of the sign and size it learned, quietly."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from servepath.model.loaded import load_model
from servepath.model.race import probe_rows
from servepath.model.sklearn_schema import examples_from_splits, inspect_sklearn


def _frame(n: int = 300) -> tuple[pd.DataFrame, Any]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"income": rng.normal(3000, 500, n).round(), "age": rng.integers(20, 70, n).astype(float)}
    )
    return frame, (frame.income > 3000).astype(int)


def _log1p_then(estimator: Any) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame, y = _frame()
    return make_pipeline(FunctionTransformer(np.log1p), estimator).fit(frame, y)


def test_loading_a_log1p_pipeline_prints_no_warnings(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "log1p.joblib"
    joblib.dump(_log1p_then(LogisticRegression()), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(path, race_budget_s=0.1)
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []


def test_probes_of_a_logged_column_without_an_example_stay_positive() -> None:
    from sklearn.linear_model import LogisticRegression

    schema, plan = inspect_sklearn(_log1p_then(LogisticRegression()))
    assert plan.positive == {"income", "age"}
    rows = probe_rows(schema, positive=plan.positive)
    assert all(float(r["income"] or 0) > 0 and float(r["age"] or 0) > 0 for r in rows[1:])


def test_a_split_learned_after_log1p_is_mapped_back_to_the_raw_scale() -> None:
    from sklearn.ensemble import RandomForestClassifier

    model = _log1p_then(RandomForestClassifier(n_estimators=5, random_state=0))
    schema, plan = inspect_sklearn(model)
    schema = examples_from_splits(model, schema, plan)
    example = schema.example()
    assert 2000 < float(example["income"] or 0) < 4000  # not log1p(3000) ~ 8
    rows = probe_rows(schema, positive=plan.positive)
    assert all(float(r["income"] or 0) > 0 for r in rows)


def test_a_scaler_mean_learned_after_log_is_mapped_back() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    frame, y = _frame()
    model = make_pipeline(FunctionTransformer(np.log), StandardScaler(), LogisticRegression())
    schema, _ = inspect_sklearn(model.fit(frame, y))
    assert float(schema.example()["income"] or 0) == pytest.approx(3000, rel=0.1)
