"""Any model of the zoo (bench/zoo.py) as a BentoML service, with its adaptive batching on.

``POST /predict`` takes ``{"applicants": [applicant, ...]}``; BentoML merges concurrent
requests' lists, up to 64 applicants, into one ``predict_proba`` (or ``predict``) call on a
DataFrame. One worker. Columns the model wants as pandas categories (``ZOO_CATEGORIES``) are
cast as its training data had them.

    MODEL_PATH=model.joblib BENTOML_DO_NOT_TRACK=True \
        bentoml serve bentoml_zoo:ZooModel --host 127.0.0.1 --port 8092
"""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml
import joblib
import pandas as pd
from pydantic import BaseModel


class Applicant(BaseModel):
    income: float
    age: float | None = None
    loan_amount: float | None = None
    debt_to_income: float | None = None
    credit_years: float | None = None
    home: str | None = None
    purpose: str | None = None


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@bentoml.service(workers=1)
class ZooModel:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ.get("MODEL_PATH", "model.joblib"))
        self.categories = json.loads(os.environ.get("ZOO_CATEGORIES", "{}"))
        self.columns = [str(c) for c in self.model.feature_names_in_]

    @bentoml.api(batchable=True, max_batch_size=64)
    def predict(self, applicants: list[Applicant]) -> list[dict[str, Any]]:
        frame = pd.DataFrame([a.model_dump() for a in applicants])[self.columns]
        for column, cats in self.categories.items():
            frame[column] = pd.Categorical(frame[column], categories=cats)
        if hasattr(self.model, "predict_proba"):
            proba = self.model.predict_proba(frame)
            best = proba.argmax(axis=1)
            classes = self.model.classes_
            return [
                {"decision": _plain(classes[j]), "probability": float(proba[i, j])}
                for i, j in enumerate(best)
            ]
        return [{"prediction": float(v)} for v in self.model.predict(frame)]
