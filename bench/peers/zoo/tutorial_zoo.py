"""The FastAPI service a tutorial would write, for any model of the zoo (bench/zoo.py).

A pydantic request model of the zoo's applicant columns, a plain ``def`` endpoint that builds
a one-row DataFrame and calls the model's own ``predict_proba`` (or ``predict``), uvicorn with
one worker. Columns the model wants as pandas categories (``ZOO_CATEGORIES``, JSON) are cast
as its training data had them.

    MODEL_PATH=model.joblib uvicorn tutorial_zoo:app --host 127.0.0.1 --port 8091
"""

from __future__ import annotations

import json
import os
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.environ.get("MODEL_PATH", "model.joblib"))
CATEGORIES: dict[str, list[str]] = json.loads(os.environ.get("ZOO_CATEGORIES", "{}"))
COLUMNS = [str(c) for c in model.feature_names_in_]
app = FastAPI(title="Model zoo")


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


@app.get("/")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/decisions")
def decide(applicant: Applicant) -> dict[str, Any]:
    frame = pd.DataFrame([applicant.model_dump()])[COLUMNS]
    for column, cats in CATEGORIES.items():
        frame[column] = pd.Categorical(frame[column], categories=cats)
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(frame)[0]
        best = int(proba.argmax())
        return {"decision": _plain(model.classes_[best]), "probability": float(proba[best])}
    return {"prediction": float(model.predict(frame)[0])}
