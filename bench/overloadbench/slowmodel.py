"""A deliberately slow model for the overload benchmark: 2 ms per row, batched or not.

A real scikit-learn-compatible classifier (fitted, pickled with joblib, served by
``servepath serve``); its cost is per row, so batching does not raise its capacity (about
500 rows/s): admission control has to keep its queue short by shedding, not by batching.
The server imports it as ``overloadbench.slowmodel`` (``bench/`` on its ``PYTHONPATH``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

PER_ROW = 0.002


class PerRowSlow(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(self, per_row: float = PER_ROW) -> None:
        self.per_row = per_row

    def fit(self, X: Any, y: Any) -> PerRowSlow:
        self.classes_ = np.unique(y)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def predict_proba(self, X: Any) -> Any:
        time.sleep(self.per_row * len(X))
        proba = np.zeros((len(X), len(self.classes_)))
        proba[:, 0] = 0.75
        proba[:, 1:] = 0.25 / max(1, len(self.classes_) - 1)
        return proba

    def predict(self, X: Any) -> Any:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def write_slow_model(path: Path, per_row: float = PER_ROW) -> Path:
    import joblib
    import pandas as pd

    frame = pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 2.0]})
    joblib.dump(PerRowSlow(per_row).fit(frame, np.array(["no", "yes"])), path)
    return path
