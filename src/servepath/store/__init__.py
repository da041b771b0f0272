"""Prediction logs: SQLite by default, PostgreSQL when configured, with an on-disk spool."""

from __future__ import annotations

from servepath.store.base import NoLog, PredictionLog, PredictionRecord, StoreStatus

__all__ = ["NoLog", "PredictionLog", "PredictionRecord", "StoreStatus"]
