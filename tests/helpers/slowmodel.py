"""A real scikit-learn-compatible classifier whose predict takes a set time: used to hold
requests in flight (SIGTERM drain) and to make server time dominate (doctor, load)."""

from __future__ import annotations

import os
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


#: A row with ``x`` at least this makes :class:`HoldingClassifier` hold its call.
HOLD_X = 1000.0
#: Milliseconds of every call: above the time under which a model runs on the event loop
#: (model/loaded.py's INLINE_BATCH_MS), so that a held call holds the model thread only.
_BASE_DELAY = 0.0015


class HoldingClassifier(SlowClassifier):
    """A few milliseconds a call, except for a batch holding a row with ``x >= HOLD_X``: that
    call waits until the file ``release`` exists (at most ``limit`` seconds). Loading,
    verifying and timing the model on its example stay quick, and a test holds the server's
    building for exactly as long as it needs, however slow the machine."""

    def __init__(self, release: str = "", limit: float = 60.0) -> None:
        super().__init__(delay=_BASE_DELAY)
        self.release = release
        self.limit = limit

    def predict_proba(self, X):
        proba = super().predict_proba(X)
        if (X["x"] >= HOLD_X).any():
            deadline = time.monotonic() + self.limit
            while not os.path.exists(self.release) and time.monotonic() < deadline:
                time.sleep(0.005)
        return proba


def write_holding_model(path, release) -> None:  # type: ignore[no-untyped-def]
    import joblib
    import pandas as pd

    frame = pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 2.0]})
    model = HoldingClassifier(str(release)).fit(frame, np.array(["no", "yes"]))
    joblib.dump(model, path)
