"""The FastAPI service a tutorial would write: the baseline users start from.

A pydantic request model, a plain ``def`` endpoint (FastAPI runs it in its thread pool) that
builds a one-row DataFrame and calls ``model.predict_proba`` for every request, served by
uvicorn with one worker.

    MODEL_PATH=model.joblib uvicorn tutorial_fastapi:app --host 127.0.0.1 --port 8091
"""

from __future__ import annotations

import os

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.environ.get("MODEL_PATH", "model.joblib"))
app = FastAPI(title="Loan decisions")


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


@app.get("/")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/decisions")
def decide(applicant: Applicant) -> Decision:
    frame = pd.DataFrame([applicant.model_dump()])
    proba = model.predict_proba(frame)[0]
    best = int(proba.argmax())
    return Decision(
        decision=str(model.classes_[best]),
        probability=round(float(proba[best]), 6),
        model_version="tutorial",
    )
