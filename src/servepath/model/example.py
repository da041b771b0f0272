"""The example model: a credit decision classifier trained on a seeded applicant generator.

The generating process (also in docs/example-model.md):

* ``age``: uniform integer 21-70.
* ``employment_years``: ``min(age - 18, Gamma(2, 3))``, rounded to one decimal.
* ``income``: log-normal annual income, median ~48,000, rising with employment years.
* ``home_ownership``: rent 45%, mortgage 38%, own 12%, other 5%.
* ``purpose``: debt_consolidation 35%, home_improvement 15%, car 15%, education 8%,
  business 10%, medical 7%, other 10%.
* ``loan_amount``: log-normal around 12% of income (more for home_improvement and business),
  clipped to 1,000-150,000.
* ``term_months``: 12, 24, 36, 48 or 60, longer for larger loans.
* ``debt_to_income``: Beta(2, 5) × 0.8 plus the new loan's annual payment over income.
* ``credit_history_years``: uniform 0 to ``age - 18``.
* ``past_defaults``: Poisson(0.15), more likely with a short credit history.

The applicant is approved when a latent credit score is positive. The score rises with
income, employment and credit history and falls with debt-to-income, past defaults and the
loan's size relative to income, with logistic noise; renters and business loans carry a small
penalty. The label is ``approve`` or ``decline``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

NUMERIC_FEATURES = (
    "income",
    "age",
    "employment_years",
    "loan_amount",
    "term_months",
    "debt_to_income",
    "credit_history_years",
    "past_defaults",
)
CATEGORICAL_FEATURES = ("home_ownership", "purpose")
HOME_OWNERSHIP = ("rent", "mortgage", "own", "other")
PURPOSES = (
    "debt_consolidation",
    "home_improvement",
    "car",
    "education",
    "business",
    "medical",
    "other",
)
DEFAULT_SEED = 20261128
#: A typical applicant: the example instance the API documents and `servepath request` sends.
EXAMPLE_APPLICANT: dict[str, float | str] = {
    "income": 52000.0,
    "age": 38,
    "employment_years": 6.5,
    "loan_amount": 12000.0,
    "term_months": 36,
    "debt_to_income": 0.28,
    "credit_history_years": 12.0,
    "past_defaults": 0,
    "home_ownership": "mortgage",
    "purpose": "car",
}
DEFAULT_ROWS = 20_000


def generate_applicants(n: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """``n`` loan applicants and their ``decision`` label, deterministic for a seed."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(21, 71, size=n)
    employment = np.minimum(age - 18, rng.gamma(2.0, 3.0, size=n)).round(1)
    income = np.exp(rng.normal(np.log(42_000) + 0.02 * employment, 0.45, size=n)).round(-2)
    home = rng.choice(HOME_OWNERSHIP, size=n, p=[0.45, 0.38, 0.12, 0.05])
    purpose = rng.choice(PURPOSES, size=n, p=[0.35, 0.15, 0.15, 0.08, 0.10, 0.07, 0.10])
    size_factor = np.where(np.isin(purpose, ["home_improvement", "business"]), 0.2, 0.12)
    loan = np.clip(np.exp(rng.normal(np.log(income * size_factor), 0.5)), 1_000, 150_000).round(-2)
    term = np.select(
        [loan < 5_000, loan < 10_000, loan < 20_000, loan < 35_000],
        [12, 24, 36, 48],
        default=60,
    )
    term = np.where(rng.random(n) < 0.2, rng.choice([12, 24, 36, 48, 60], size=n), term)
    annual_payment = loan / (term / 12) * 1.08
    dti = (rng.beta(2, 5, size=n) * 0.8 + annual_payment / income).round(3)
    history = (rng.random(n) * (age - 18)).round(1)
    defaults = rng.poisson(0.15 + 0.3 * (history < 2), size=n)

    score = (
        1.2 * (np.log(income) - np.log(45_000))
        + 0.05 * employment
        + 0.06 * history
        - 4.0 * (dti - 0.35)
        - 1.3 * defaults
        - 2.0 * (loan / income - 0.15)
        - 0.25 * (home == "rent")
        - 0.3 * (purpose == "business")
        + 0.1
        + rng.logistic(0.0, 0.6, size=n)
    )
    return pd.DataFrame(
        {
            "income": income,
            "age": age,
            "employment_years": employment,
            "loan_amount": loan,
            "term_months": term,
            "debt_to_income": dti,
            "credit_history_years": history,
            "past_defaults": defaults,
            "home_ownership": home,
            "purpose": purpose,
            "decision": np.where(score > 0, "approve", "decline"),
        }
    )


def build_pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), list(NUMERIC_FEATURES)),
            (
                "cat",
                OneHotEncoder(
                    categories=[list(HOME_OWNERSHIP), list(PURPOSES)],
                    handle_unknown="error",
                    sparse_output=False,
                ),
                list(CATEGORICAL_FEATURES),
            ),
        ]
    )
    clf = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=0)
    return Pipeline([("pre", pre), ("clf", clf)])


def train_example(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> tuple[Any, float]:
    """Train the example pipeline; returns it with its accuracy on a held-out fifth."""
    data = generate_applicants(rows, seed)
    features = data[list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)]
    split = int(rows * 0.8)
    pipeline = build_pipeline()
    pipeline.fit(features.iloc[:split], data["decision"].iloc[:split])
    pipeline.servepath_example_ = dict(EXAMPLE_APPLICANT)
    # No applicant in the training data lacks a field: a null is a caller's mistake (422),
    # although HistGradientBoosting would route it somewhere.
    pipeline.servepath_nullable_ = ()
    accuracy = float(pipeline.score(features.iloc[split:], data["decision"].iloc[split:]))
    return pipeline, accuracy


def write_example(path: Path, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> float:
    """Train and write the example model to ``path`` atomically; returns held-out accuracy."""
    import joblib

    pipeline, accuracy = train_example(rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joblib.dump(pipeline, tmp)
    tmp.replace(path)
    log.info("wrote example model to %s (held-out accuracy %.3f)", path, accuracy)
    return accuracy


def ensure_example(path: Path) -> Path:
    """The example model at ``path``, trained once and cached on disk."""
    if not path.exists():
        write_example(path)
    return path
