"""The example model as a BentoML service, with its adaptive batching on.

``POST /predict`` takes ``{"applicants": [applicant, ...]}`` (the API is batchable, so its input
is a list); BentoML's dispatcher merges concurrent requests' lists, up to 64 applicants, into
one ``predict_proba`` call on a DataFrame. One worker.

    MODEL_PATH=model.joblib BENTOML_DO_NOT_TRACK=True \
        bentoml serve bentoml_service:LoanDecisions --host 127.0.0.1 --port 8092
"""

from __future__ import annotations

import os

import bentoml
import joblib
import pandas as pd
from pydantic import BaseModel


class Applicant(BaseModel):
    income: float
    age: int
    employment_years: float
    loan_amount: float
    term_months: int
    debt_to_income: float
    credit_history_years: float
    past_defaults: int
    home_ownership: str
    purpose: str


class Decision(BaseModel):
    decision: str
    probability: float
    model_version: str


@bentoml.service(workers=1)
class LoanDecisions:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ.get("MODEL_PATH", "model.joblib"))

    @bentoml.api(batchable=True, max_batch_size=64)
    def predict(self, applicants: list[Applicant]) -> list[Decision]:
        frame = pd.DataFrame([a.model_dump() for a in applicants])
        proba = self.model.predict_proba(frame)
        best = proba.argmax(axis=1)
        return [
            Decision(
                decision=str(self.model.classes_[j]),
                probability=round(float(proba[i, j]), 6),
                model_version="bentoml",
            )
            for i, j in enumerate(best)
        ]
