"""Prediction logs: SQLite by default, PostgreSQL when configured, with an on-disk spool."""

from __future__ import annotations

from servepath.errors import StoreUnavailable
from servepath.store.base import NoLog, PredictionLog, PredictionRecord, StoreStatus
from servepath.store.factory import open_log, open_reader, parse_store_url
from servepath.store.reader import LogReader, LogStats, parse_since

__all__ = [
    "LogReader",
    "LogStats",
    "NoLog",
    "PredictionLog",
    "PredictionRecord",
    "StoreStatus",
    "StoreUnavailable",
    "open_log",
    "open_reader",
    "parse_since",
    "parse_store_url",
]
