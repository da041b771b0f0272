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


def test_loader_uses_the_compiled_engine_and_says_so(example_model_path: Path) -> None:
    model = load_model(example_model_path)
    assert model.engine == "compiled"
    assert "max |Δp|" in model.engine_note
    assert load_model(example_model_path, compile=False).engine == "sklearn"


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


def test_unsupported_estimator_stays_on_scikit_learn_with_the_reason(
    applicants: pd.DataFrame, tmp_path: Path
) -> None:
    pipe = _pipeline(RandomForestClassifier(n_estimators=5, random_state=0))
    pipe.fit(applicants[COLUMNS], applicants["decision"])
    with pytest.raises(NotCompilable, match="RandomForestClassifier"):
        compile_pipeline(pipe)
    path = tmp_path / "forest.joblib"
    joblib.dump(pipe, path)
    model = load_model(path)
    assert model.engine == "sklearn"
    assert "RandomForestClassifier" in model.engine_note
    assert model.predict_rows(applicants[COLUMNS].iloc[:3].to_dict("records"))
