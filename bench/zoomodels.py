"""A zoo of models as people fit them: applicant data in a DataFrame (5 numeric, 2 categorical
columns), seeded, trained here and now (nothing is downloaded).

Used by ``bench/zoo.py`` (``size="bench"``: the sizes people serve) and by the tests
(``size="test"``: small and quick). Each entry says what it covers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Size = Literal["test", "bench"]
NUMERIC = ("income", "age", "loan_amount", "debt_to_income", "credit_years")
CATEGORICAL = ("home", "purpose")
HOMES = ("rent", "mortgage", "own")
PURPOSES = ("car", "home_improvement", "education", "business", "medical")


def applicants(n: int = 2000, seed: int = 0, missing: float = 0.0) -> tuple[Any, dict[str, Any]]:
    """``n`` applicants and their targets: ``decision`` (approve/review/decline), ``approved``
    (bool), ``grade`` (int 0-2), ``segment`` (one of 12 strings), ``amount`` (a number).
    ``missing``: the share of numeric and categorical values set to NaN / None."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.7, 0.4, n).round(-2)
    age = rng.integers(21, 70, n).astype(float)
    loan = np.clip(rng.lognormal(9.2, 0.6, n), 1000, 150_000).round(-1)
    dti = rng.beta(2, 5, n).round(3)
    history = (rng.random(n) * (age - 18)).round(1)
    home = rng.choice(HOMES, n, p=[0.45, 0.4, 0.15])
    purpose = rng.choice(PURPOSES, n)
    score = (
        1.2 * (np.log(income) - 10.7)
        - 3.0 * (dti - 0.3)
        + 0.04 * history
        - 0.8 * (loan / income - 0.2)
        + 0.3 * (home == "own")
        - 0.3 * (purpose == "business")
        + rng.logistic(0, 0.4, n)
    )
    frame = pd.DataFrame(
        {
            "income": income,
            "age": age,
            "loan_amount": loan,
            "debt_to_income": dti,
            "credit_years": history,
            "home": home,
            "purpose": purpose,
        }
    )
    if missing:
        for column in ("income", "credit_years", "purpose"):
            holes = rng.random(n) < missing
            frame.loc[holes, column] = np.nan  # as pandas reads an empty field of a CSV
    decision = np.where(score > 0.3, "approve", np.where(score > -0.4, "review", "decline"))
    segments = np.array([f"s{i:02d}" for i in range(12)])
    segment = segments[np.clip(((score + 2) * 3).astype(int), 0, 11)]
    targets = {
        "decision": decision,
        "approved": score > 0,
        "grade": np.where(score > 0.3, 2, np.where(score > -0.4, 1, 0)),
        "segment": segment,
        "amount": (income * 0.3 * (1 + 0.1 * rng.normal(size=n))).round(2),
    }
    return frame, targets


def _ct(num: Any, cat: Any, **kw: Any) -> Any:
    from sklearn.compose import ColumnTransformer

    return ColumnTransformer([("num", num, list(NUMERIC)), ("cat", cat, list(CATEGORICAL))], **kw)


def _onehot(**kw: Any) -> Any:
    from sklearn.preprocessing import OneHotEncoder

    return OneHotEncoder(sparse_output=False, **kw)


def _scaler() -> Any:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler()


def _pipe(pre: Any, model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    return Pipeline([("pre", pre), ("model", model)])


@dataclass(frozen=True)
class ZooModel:
    name: str
    covers: str
    target: str
    build: Callable[[Size], Any]
    #: the data has missing values; the model takes them
    missing: bool = False
    #: categorical columns as pandas Categorical (as XGBoost / LightGBM want them)
    pandas_categories: bool = False
    #: the MLServer runtime that serves it (None: none of its runtimes can)
    mlserver: str | None = "sklearn"
    #: the columns it is fitted on (None: all seven)
    columns: tuple[str, ...] | None = None


def _n(size: Size, test: int, bench: int) -> int:
    return bench if size == "bench" else test


def random_forest(size: Size) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return _pipe(
        _ct(_scaler(), _onehot(handle_unknown="ignore")),
        RandomForestClassifier(
            _n(size, 20, 200), max_depth=_n(size, 6, 10), random_state=0, n_jobs=1
        ),
    )


def extra_trees(size: Size) -> Any:
    from sklearn.ensemble import ExtraTreesClassifier

    return _pipe(
        _ct("passthrough", _onehot(handle_unknown="ignore")),
        ExtraTreesClassifier(_n(size, 20, 150), max_depth=12, random_state=0, n_jobs=1),
    )


def logistic_multiclass(size: Size) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", MinMaxScaler())])
    cat = Pipeline(
        [("impute", SimpleImputer(strategy="most_frequent")), ("onehot", _onehot())]
    )  # handle_unknown="error": the categories are closed
    return _pipe(_ct(num, cat), LogisticRegression(max_iter=500))


def xgboost_pipeline(size: Size) -> Any:
    from xgboost import XGBClassifier

    return _pipe(
        _ct("passthrough", _onehot(handle_unknown="ignore")),
        XGBClassifier(
            n_estimators=_n(size, 20, 300),
            max_depth=6,
            learning_rate=0.1,
            n_jobs=1,
            tree_method="hist",
            random_state=0,
        ),
    )


def lightgbm_categorical(size: Size) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        n_estimators=_n(size, 20, 300), num_leaves=31, n_jobs=1, verbose=-1, random_state=0
    )


def hist_gradient_boosting(size: Size) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import OrdinalEncoder

    pre = _ct(
        "passthrough",
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
        verbose_feature_names_out=False,
    )
    return _pipe(
        pre,
        HistGradientBoostingClassifier(
            max_iter=_n(size, 20, 150),
            categorical_features=[len(NUMERIC), len(NUMERIC) + 1],
            random_state=0,
        ),
    )


def gradient_boosting(size: Size) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    return _pipe(
        _ct(_scaler(), _onehot(handle_unknown="ignore")),
        GradientBoostingClassifier(n_estimators=_n(size, 20, 150), max_depth=3, random_state=0),
    )


def svm(size: Size) -> Any:
    from sklearn.svm import SVC

    return _pipe(_ct(_scaler(), _onehot()), SVC(probability=True, random_state=0))


def knn(size: Size) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return _pipe(_ct(_scaler(), _onehot(handle_unknown="ignore")), KNeighborsClassifier(15))


def mlp(size: Size) -> Any:
    from sklearn.neural_network import MLPClassifier

    return _pipe(
        _ct(_scaler(), _onehot(handle_unknown="ignore")),
        MLPClassifier((32, 16), max_iter=_n(size, 200, 400), random_state=0),
    )


def calibrated(size: Size) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return _pipe(
        _ct(_scaler(), _onehot(handle_unknown="ignore")), CalibratedClassifierCV(LinearSVC())
    )


def ridge_regression(size: Size) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    num = Pipeline([("log", FunctionTransformer(np.log1p)), ("scale", _scaler())])
    return _pipe(_ct(num, _onehot(handle_unknown="ignore")), Ridge(alpha=1.0))


def forest_regression(size: Size) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return _pipe(
        _ct("passthrough", _onehot(handle_unknown="ignore")),
        RandomForestRegressor(_n(size, 20, 100), max_depth=10, random_state=0, n_jobs=1),
    )


def target_encoded(size: Size) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import TargetEncoder

    return _pipe(_ct(_scaler(), TargetEncoder(random_state=0)), LogisticRegression(max_iter=500))


def dropped_and_passthrough(size: Size) -> Any:
    """Only some columns used: ``home`` is dropped, ``age`` passes through untouched."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier

    pre = ColumnTransformer(
        [
            ("num", _scaler(), ["income", "loan_amount", "debt_to_income", "credit_years"]),
            ("purpose", _onehot(), ["purpose"]),
            ("age", "passthrough", ["age"]),
        ],
        remainder="drop",
    )
    return _pipe(pre, RandomForestClassifier(_n(size, 20, 100), max_depth=8, random_state=0))


def nested_many_classes(size: Size) -> Any:
    """Pipelines inside pipelines, 12 classes."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    num = Pipeline(
        [
            ("inner", Pipeline([("impute", SimpleImputer()), ("robust", RobustScaler())])),
            ("scale", _scaler()),
        ]
    )
    cat = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="none")),
            ("oh", _onehot(handle_unknown="ignore")),
        ]
    )
    return _pipe(_ct(num, cat), LogisticRegression(max_iter=1000))


def xgboost_categorical(size: Size) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=_n(size, 20, 300),
        max_depth=6,
        enable_categorical=True,
        tree_method="hist",
        n_jobs=1,
        random_state=0,
    )


def xgboost_numeric(size: Size) -> Any:
    """A bare XGBClassifier on the numeric columns: what MLServer's xgboost runtime serves."""
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=_n(size, 20, 300), max_depth=6, tree_method="hist", n_jobs=1, random_state=0
    )


def lightgbm_numeric(size: Size) -> Any:
    """A bare LGBMClassifier on the numeric columns: what MLServer's lightgbm runtime serves."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=_n(size, 20, 300), n_jobs=1, verbose=-1, random_state=0)


def hgb_missing_values(size: Size) -> Any:
    """Missing values handled natively, boolean labels, pandas categories from the dtype."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=_n(size, 20, 100), categorical_features="from_dtype", random_state=0
    )


ZOO: tuple[ZooModel, ...] = (
    ZooModel(
        "random_forest",
        "RandomForest; scaler, one-hot (ignore); 3 str classes",
        "decision",
        random_forest,
    ),
    ZooModel(
        "extra_trees", "ExtraTrees; passthrough, one-hot; bool labels", "approved", extra_trees
    ),
    ZooModel(
        "logistic_3class",
        "LogisticRegression; imputers, MinMaxScaler, one-hot (error); NaN",
        "decision",
        logistic_multiclass,
        missing=True,
    ),
    ZooModel("xgboost", "XGBClassifier in a pipeline; int labels", "grade", xgboost_pipeline),
    ZooModel(
        "xgboost_numeric",
        "XGBClassifier on the numeric columns; int labels",
        "grade",
        xgboost_numeric,
        mlserver="xgboost",
        columns=NUMERIC,
    ),
    ZooModel(
        "lightgbm",
        "LGBMClassifier on pandas categories; str labels",
        "decision",
        lightgbm_categorical,
        pandas_categories=True,
        mlserver=None,
    ),
    ZooModel(
        "lightgbm_numeric",
        "LGBMClassifier on the numeric columns; int labels",
        "grade",
        lightgbm_numeric,
        mlserver="lightgbm",
        columns=NUMERIC,
    ),
    ZooModel(
        "hist_gb",
        "HistGradientBoosting with categorical features (ordinal)",
        "approved",
        hist_gradient_boosting,
    ),
    ZooModel(
        "gradient_boosting", "GradientBoostingClassifier; 3 classes", "decision", gradient_boosting
    ),
    ZooModel("svm", "SVC(probability=True); one-hot (error)", "approved", svm),
    ZooModel("knn", "KNeighborsClassifier(15)", "decision", knn),
    ZooModel("mlp", "MLPClassifier (32, 16)", "decision", mlp),
    ZooModel("calibrated", "CalibratedClassifierCV(LinearSVC)", "approved", calibrated),
    ZooModel("ridge", "Ridge regression; FunctionTransformer(log1p)", "amount", ridge_regression),
    ZooModel("forest_regressor", "RandomForestRegressor", "amount", forest_regression),
    ZooModel("target_encoder", "TargetEncoder + LogisticRegression", "approved", target_encoded),
    ZooModel(
        "dropped_column",
        "remainder=drop, passthrough, one-hot (error)",
        "decision",
        dropped_and_passthrough,
    ),
    ZooModel(
        "nested_12_classes",
        "pipelines in pipelines; 12 classes; NaN",
        "segment",
        nested_many_classes,
        missing=True,
    ),
    ZooModel(
        "xgboost_categorical",
        "XGBClassifier on pandas categories",
        "grade",
        xgboost_categorical,
        pandas_categories=True,
        mlserver=None,
    ),
    ZooModel(
        "hgb_missing",
        "HistGradientBoosting; NaN, pandas categories; bool labels",
        "approved",
        hgb_missing_values,
        missing=True,
        pandas_categories=True,
        mlserver=None,
    ),
)


def fit(
    entry: ZooModel, size: Size = "test", n: int | None = None, seed: int = 0
) -> tuple[Any, Any]:
    """The fitted model and the frame it was fitted on."""
    import pandas as pd

    rows = n or _n(size, 1200, 5000)
    frame, targets = applicants(rows, seed, missing=0.05 if entry.missing else 0.0)
    if entry.pandas_categories:
        for column in CATEGORICAL:
            frame[column] = pd.Categorical(frame[column])
    if entry.columns is not None:
        frame = frame[list(entry.columns)]
    model = entry.build(size)
    model.fit(frame, targets[entry.target])
    return model, frame


def by_name(name: str) -> ZooModel:
    return next(z for z in ZOO if z.name == name)
