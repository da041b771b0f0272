"""The compiled predictor reproduces scikit-learn exactly, or is not used."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from servepath.model.compiled import NotCompilable, compile_pipeline
from servepath.model.example import CATEGORICAL_FEATURES, NUMERIC_FEATURES, generate_applicants
from servepath.model.loaded import load_model

COLUMNS = list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)


@pytest.fixture(scope="module")
def applicants() -> pd.DataFrame:
    return generate_applicants(3000, seed=99)


def _pipeline(classifier, handle_unknown: str = "error") -> Pipeline:
    return Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), list(NUMERIC_FEATURES)),
                        (
                            "cat",
                            OneHotEncoder(handle_unknown=handle_unknown, sparse_output=False),
                            list(CATEGORICAL_FEATURES),
                        ),
                    ]
                ),
            ),
            ("clf", classifier),
        ]
    )


def test_example_model_compiles_and_matches_on_fresh_applicants(
    example_model_path: Path, applicants: pd.DataFrame
) -> None:
    pipeline = joblib.load(example_model_path)
    compiled = compile_pipeline(pipeline)
    features = applicants[COLUMNS]
    got = compiled.predict_proba(features.to_dict("records"))
    want = pipeline.predict_proba(features)
    assert np.abs(got - want).max() < 1e-9
    single = compiled.predict_proba(features.iloc[:1].to_dict("records"))
    assert np.abs(single - want[:1]).max() < 1e-9


def test_the_compiled_engine_is_one_candidate_and_reproduces_the_example_model(
    example_model_path: Path,
) -> None:
    model = load_model(example_model_path, race_budget_s=0.2)
    assert model.report is not None
    trials = {t.name: t for t in model.report.trials}
    assert trials["compiled"].agrees and trials["compiled"].disagreement is not None
    assert trials["compiled"].disagreement <= 1e-9
    assert "treelite" in trials  # a library engine it is measured against


def test_missing_values_follow_the_side_the_training_data_took(applicants: pd.DataFrame) -> None:
    data = applicants[COLUMNS].copy()
    data.loc[data.index[::7], "income"] = np.nan
    pipe = _pipeline(HistGradientBoostingClassifier(max_iter=30, random_state=0))
    pipe.fit(data, applicants["decision"])
    compiled = compile_pipeline(pipe)
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in data.iloc[:200].to_dict("records")
    ]
    got = compiled.predict_proba(rows)
    assert np.abs(got - pipe.predict_proba(data.iloc[:200])).max() < 1e-9


def test_a_passthrough_column_compiles(applicants: pd.DataFrame) -> None:
    pre = ColumnTransformer(
        [
            ("num", "passthrough", list(NUMERIC_FEATURES)),
            ("cat", OneHotEncoder(sparse_output=False), list(CATEGORICAL_FEATURES)),
        ]
    )
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=2000))])
    pipe.fit(applicants[COLUMNS], applicants["decision"])
    got = compile_pipeline(pipe).predict_proba(applicants[COLUMNS].iloc[:100].to_dict("records"))
    assert np.abs(got - pipe.predict_proba(applicants[COLUMNS].iloc[:100])).max() < 1e-9


def test_multiclass_gradient_boosting_matches(applicants: pd.DataFrame) -> None:
    labels = pd.cut(applicants["debt_to_income"], [-1, 0.25, 0.45, 9], labels=["lo", "mid", "hi"])
    pipe = _pipeline(HistGradientBoostingClassifier(max_iter=30, random_state=0))
    pipe.fit(applicants[COLUMNS], labels.astype(str))
    compiled = compile_pipeline(pipe)
    got = compiled.predict_proba(applicants[COLUMNS].to_dict("records"))
    assert np.abs(got - pipe.predict_proba(applicants[COLUMNS])).max() < 1e-9
    assert compiled.classes == ["hi", "lo", "mid"]


def test_logistic_regression_with_unknown_categories_ignored_matches(
    applicants: pd.DataFrame,
) -> None:
    pipe = _pipeline(LogisticRegression(max_iter=1000), handle_unknown="ignore")
    pipe.fit(applicants[COLUMNS], applicants["decision"])
    rows = applicants[COLUMNS].iloc[:50].copy()
    rows.loc[rows.index[:5], "purpose"] = "never-seen"
    compiled = compile_pipeline(pipe)
    got = compiled.predict_proba(rows.to_dict("records"))
    assert np.abs(got - pipe.predict_proba(rows)).max() < 1e-9


def test_an_estimator_it_does_not_know_is_refused_with_the_reason(
    applicants: pd.DataFrame,
) -> None:
    pipe = _pipeline(RandomForestClassifier(n_estimators=5, random_state=0))
    pipe.fit(applicants[COLUMNS], applicants["decision"])
    with pytest.raises(NotCompilable, match="RandomForestClassifier"):
        compile_pipeline(pipe)
