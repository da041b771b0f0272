"""Reading the prediction log back: recent records and per-model-version statistics.

Latency percentiles are over requests, not instances: every record of one request carries
the same request latency, so only the record with ``idx = 0`` counts (a batch of 100 must
not weigh 100 times). Cache hit rate and decision counts are over instances.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson

from servepath.errors import ConfigError, ServepathError
from servepath.store.base import PredictionRecord

NO_DECISION = "(none)"
PERCENTILES = (0.5, 0.9, 0.99)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class StoreUnavailable(ServepathError):
    """The prediction log cannot be read: no such file, no such database, or no answer."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"cannot read the prediction log at {target}: {reason}")
        self.target = target
        self.reason = reason


def parse_since(text: str, now: float) -> float:
    """Unix time for ``--since``: a duration back from ``now`` ("90s", "10m", "2h", "1d",
    "1w") or an ISO 8601 time (local time when it carries no offset)."""
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither a duration (30s, 10m, 2h, 1d, 1w) "
            "nor an ISO 8601 time (2026-01-31T14:00:00+00:00)"
        ) from None


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile by linear interpolation (PostgreSQL's ``percentile_cont``)."""
    if not sorted_values:
        return None
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True)
class Latency:
    p50: float | None
    p90: float | None
    p99: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}


@dataclass(frozen=True)
class VersionStats:
    """What one model version did: how often, which decisions, how fast, from cache or not."""

    model_name: str
    model_version: str
    predictions: int  # instances
    requests: int
    cache_hits: int
    decisions: dict[str, int]
    latency_ms: Latency
    first_ts: float
    last_ts: float

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.predictions if self.predictions else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "predictions": self.predictions,
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "cache_hit_rate": self.cache_hit_rate,
            "decisions": self.decisions,
            "latency_ms": self.latency_ms.to_json(),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
        }


@dataclass(frozen=True)
class LogStats:
    store: str
    since: float | None
    versions: tuple[VersionStats, ...]

    @property
    def predictions(self) -> int:
        return sum(v.predictions for v in self.versions)

    @property
    def requests(self) -> int:
        return sum(v.requests for v in self.versions)

    @property
    def cache_hit_rate(self) -> float:
        total = self.predictions
        return sum(v.cache_hits for v in self.versions) / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "since": self.since,
            "predictions": self.predictions,
            "requests": self.requests,
            "cache_hit_rate": self.cache_hit_rate,
            "versions": [v.to_json() for v in self.versions],
        }


class LogReader(Protocol):
    target: str

    def recent(self, *, limit: int, since: float | None = None) -> list[PredictionRecord]:
        """The newest ``limit`` records (at or after ``since``), oldest first."""

    def stats(self, *, since: float | None = None) -> LogStats: ...

    def close(self) -> None: ...

    def __enter__(self) -> LogReader: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def build_stats(
    target: str,
    since: float | None,
    groups: Iterable[tuple[str, str, int, int, int, float, float]],
    decisions: Iterable[tuple[str, str, Any, int]],
    latencies: dict[tuple[str, str], Latency],
) -> LogStats:
    """Assemble :class:`LogStats` from per-version rows ``(name, version, predictions,
    cache_hits, requests, first_ts, last_ts)`` and decision rows ``(name, version, decision,
    count)``, whatever database produced them."""
    by_version: dict[tuple[str, str], dict[str, int]] = {}
    for name, version, decision, count in decisions:
        label = NO_DECISION if decision is None else str(decision)
        counts = by_version.setdefault((name, version), {})
        counts[label] = counts.get(label, 0) + int(count)
    versions = [
        VersionStats(
            model_name=name,
            model_version=version,
            predictions=int(predictions),
            requests=int(requests),
            cache_hits=int(hits),
            decisions=dict(
                sorted(by_version.get((name, version), {}).items(), key=lambda kv: -kv[1])
            ),
            latency_ms=latencies.get((name, version), Latency(None, None, None)),
            first_ts=float(first),
            last_ts=float(last),
        )
        for name, version, predictions, hits, requests, first, last in groups
    ]
    versions.sort(key=lambda v: (v.first_ts, v.model_name, v.model_version))
    return LogStats(store=target, since=since, versions=tuple(versions))


def _record(row: Sequence[Any]) -> PredictionRecord:
    return PredictionRecord(
        request_id=row[0],
        index=int(row[1]),
        ts=float(row[2]),
        route=row[3],
        model_name=row[4],
        model_version=row[5],
        instance=orjson.loads(row[6]),
        output=orjson.loads(row[7]),
        latency_ms=float(row[8]),
        cache_hit=bool(row[9]),
        client_addr=row[10],
        forwarded=row[11],
    )


class _ReaderBase:
    target: str

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> LogReader:
        return self  # type: ignore[return-value]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_SQLITE_COLUMNS = (
    "request_id, idx, ts, route, model_name, model_version, instance, output, "
    "latency_ms, cache_hit, client_addr, forwarded"
)


class SQLiteReader(_ReaderBase):
    """Reads the SQLite log read-only; it never creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = str(path)
        if not path.exists():
            raise StoreUnavailable(self.target, "no such file (nothing recorded yet?)")
        try:
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            self._conn.execute("SELECT 1 FROM predictions LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.target, str(exc)) from exc

    def recent(self, *, limit: int, since: float | None = None) -> list[PredictionRecord]:
        where, params = _sqlite_since(since)
        rows = self._query(
            f"SELECT {_SQLITE_COLUMNS} FROM predictions {where} "
            "ORDER BY ts DESC, request_id DESC, idx DESC LIMIT ?",
            (*params, limit),
        )
        return [_record(row) for row in reversed(rows)]

    def stats(self, *, since: float | None = None) -> LogStats:
        where, params = _sqlite_since(since)
        groups = self._query(
            "SELECT model_name, model_version, count(*), sum(cache_hit), "
            f"sum(idx = 0), min(ts), max(ts) FROM predictions {where} GROUP BY 1, 2",
            params,
        )
        decisions = self._query(
            "SELECT model_name, model_version, json_extract(output, '$.decision'), count(*) "
            f"FROM predictions {where} GROUP BY 1, 2, 3",
            params,
        )
        and_where = f"{where} AND idx = 0" if where else "WHERE idx = 0"
        latencies: dict[tuple[str, str], list[float]] = {}
        for name, version, latency in self._query(
            f"SELECT model_name, model_version, latency_ms FROM predictions {and_where} "
            "ORDER BY 1, 2, 3",
            params,
        ):
            latencies.setdefault((name, version), []).append(float(latency))
        return build_stats(
            self.target,
            since,
            groups,
            decisions,
            {
                key: Latency(*(percentile(values, q) for q in PERCENTILES))
                for key, values in latencies.items()
            },
        )

    def close(self) -> None:
        self._conn.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:

        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.target, str(exc)) from exc


def _sqlite_since(since: float | None) -> tuple[str, tuple[Any, ...]]:
    return ("WHERE ts >= ?", (since,)) if since is not None else ("", ())


_PG_COLUMNS = (
    "request_id, idx, extract(epoch FROM ts)::float8, route, model_name, model_version, "
    "instance::text, output::text, latency_ms, cache_hit, client_addr, forwarded"
)


class PostgresReader(_ReaderBase):
    def __init__(self, conninfo: str, *, connect_timeout: int = 5) -> None:
        # psycopg is imported where PostgreSQL is used, so that other commands start faster.
        import psycopg

        from servepath.store.postgres import describe_conninfo

        self.target = describe_conninfo(conninfo)
        try:
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
        except psycopg.Error as exc:
            raise StoreUnavailable(self.target, " ".join(str(exc).split())) from exc

    def recent(self, *, limit: int, since: float | None = None) -> list[PredictionRecord]:
        where, params = _pg_since(since)
        rows = self._query(
            f"SELECT {_PG_COLUMNS} FROM predictions {where} "
            "ORDER BY ts DESC, request_id DESC, idx DESC LIMIT %s",
            (*params, limit),
        )
        return [_record(row) for row in reversed(rows)]

    def stats(self, *, since: float | None = None) -> LogStats:
        where, params = _pg_since(since)
        rows = self._query(
            "SELECT model_name, model_version, count(*), count(*) FILTER (WHERE cache_hit), "
            "count(*) FILTER (WHERE idx = 0), extract(epoch FROM min(ts))::float8, "
            "extract(epoch FROM max(ts))::float8, "
            "percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY latency_ms) "
            f"FILTER (WHERE idx = 0) FROM predictions {where} GROUP BY 1, 2",
            (list(PERCENTILES), *params),
        )
        decisions = self._query(
            "SELECT model_name, model_version, output->>'decision', count(*) "
            f"FROM predictions {where} GROUP BY 1, 2, 3",
            params,
        )
        latencies = {(row[0], row[1]): Latency(*(row[7] or (None, None, None))) for row in rows}
        return build_stats(
            self.target, since, [tuple(row[:7]) for row in rows], decisions, latencies
        )

    def close(self) -> None:
        self._conn.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        import psycopg

        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(self.target, " ".join(str(exc).split())) from exc


def _pg_since(since: float | None) -> tuple[str, tuple[Any, ...]]:
    return ("WHERE ts >= to_timestamp(%s)", (since,)) if since is not None else ("", ())
