"""A real scikit-learn-compatible classifier whose predict takes a set time: used to hold
requests in flight (SIGTERM drain) and to make server time dominate (doctor, load)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class SlowClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def predict_proba(self, X):
        time.sleep(self.delay)
        proba = np.zeros((len(X), len(self.classes_)))
        proba[:, 0] = 0.75
        proba[:, 1:] = 0.25 / max(1, len(self.classes_) - 1)
        return proba

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def write_slow_model(path, delay: float) -> None:  # type: ignore[no-untyped-def]
    import joblib
    import pandas as pd

    frame = pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 2.0]})
    model = SlowClassifier(delay).fit(frame, np.array(["no", "yes"]))
    # the first predict at load time should not stall startup
    model.delay = delay
    joblib.dump(model, path)
