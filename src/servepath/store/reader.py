"""Reading the prediction log back: recent records and per-model-version statistics.

Latency percentiles are over requests, not instances: a request's latency is stored once,
and only its first instance (``idx = 0``) counts it (a batch of 100 must not weigh 100
times). Cache hit rate and decision counts are over instances. A log still at schema
version 1 or 2 (not yet migrated by a server start) is read as it is: all its traffic is
ordinary.

Synthetic traffic (requests marked ``X-Servepath-Traffic``, see :mod:`servepath.traffic`)
is left out of the statistics by default, and the statistics say how much was left out; a
listing shows every request unless asked for one kind of traffic.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson

from servepath.errors import ConfigError, StoreUnavailable
from servepath.store.base import PredictionRecord
from servepath.store.compare import MAX_PAIRS, Comparison, compare
from servepath.store.rows import join_truncated
from servepath.traffic import TrafficFilter, traffic_kind

NO_DECISION = "(none)"
#: Rows of instances read at a time: large enough that fetching costs little per row, small
#: enough that a window of millions never sits in memory as text at once.
INSTANCE_CHUNK = 50_000

#: One instance as :meth:`LogReader.instances` reads it: model name, model version, the
#: version's label (None before schema version 4), the instance and the output as JSON text.
InstanceRow = tuple[str, str, str | None, str, str]
PERCENTILES = (0.5, 0.9, 0.99)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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
class LeftOut:
    """Requests of one kind of traffic the statistics did not count."""

    traffic: str  # a kind of synthetic traffic, or "ordinary"
    requests: int
    predictions: int  # instances

    def to_json(self) -> dict[str, int]:
        return {"requests": self.requests, "predictions": self.predictions}


@dataclass(frozen=True)
class LogStats:
    store: str
    since: float | None
    versions: tuple[VersionStats, ...]
    #: Which traffic the statistics count (``ordinary`` unless asked otherwise).
    traffic: TrafficFilter = "ordinary"
    #: What they did not count, by kind of traffic, largest first.
    left_out: tuple[LeftOut, ...] = ()

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

    @property
    def left_out_predictions(self) -> int:
        return sum(x.predictions for x in self.left_out)

    @property
    def left_out_requests(self) -> int:
        return sum(x.requests for x in self.left_out)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "since": self.since,
            "traffic": self.traffic,
            "predictions": self.predictions,
            "requests": self.requests,
            "cache_hit_rate": self.cache_hit_rate,
            "left_out": {
                "predictions": self.left_out_predictions,
                "requests": self.left_out_requests,
                "by_traffic": {x.traffic: x.to_json() for x in self.left_out},
            },
            "versions": [v.to_json() for v in self.versions],
        }


class LogReader(Protocol):
    target: str

    def recent(
        self,
        *,
        limit: int,
        since: float | None = None,
        request_id: str | None = None,
        traffic: TrafficFilter = "all",
    ) -> list[PredictionRecord]:
        """The newest ``limit`` records (at or after ``since``; of requests whose caller's
        request id or whose record id is ``request_id``; of ``traffic``), oldest first."""

    def stats(self, *, since: float | None = None, traffic: TrafficFilter = "ordinary") -> LogStats:
        """Per-version statistics of ``traffic`` at or after ``since``, and how many
        requests of other traffic they leave out."""

    def compare(
        self, *, since: float | None = None, traffic: TrafficFilter = "ordinary"
    ) -> Comparison:
        """Shadows against the primaries whose requests they copied, and the live split of
        requests between versions, of ``traffic`` at or after ``since``."""

    def instances(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        traffic: TrafficFilter = "ordinary",
        chunk: int = INSTANCE_CHUNK,
    ) -> Iterator[list[InstanceRow]]:
        """The instances and outputs answered in ``[since, until)`` of ``traffic`` (a
        shadow's copies left out), in chunks of at most ``chunk`` rows, as stored (JSON
        text): only the columns a drift needs are read."""

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
    traffic: TrafficFilter = "all",
    left_out: Iterable[tuple[str | None, int, int]] = (),
) -> LogStats:
    """Assemble :class:`LogStats` from per-version rows ``(name, version, predictions,
    cache_hits, requests, first_ts, last_ts)``, decision rows ``(name, version, decision,
    count)`` and the rows left out ``(traffic, predictions, requests)``, whatever database
    produced them."""
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
    out = [
        LeftOut(traffic_kind(kind) or "ordinary", int(requests or 0), int(predictions))
        for kind, predictions, requests in left_out
        if predictions
    ]
    out.sort(key=lambda x: (-x.predictions, x.traffic))
    return LogStats(
        store=target, since=since, versions=tuple(versions), traffic=traffic, left_out=tuple(out)
    )


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
        record_id=row[12],
        client_ip=row[13],
        truncated=join_truncated(row[14], row[15]),
        api_key=row[16],
        traffic=traffic_kind(row[17]),
        model_label=row[18],
        role=row[19],
        shadow_of=row[20],
        trace_id=row[21],
    )


@dataclass(frozen=True)
class _Layout:
    """Where a schema keeps each column: version 2 joins ``requests`` (r) and ``predictions``
    (p); version 1 (a log not yet migrated, read as it is) has one table."""

    tables: str
    record_id: str
    client_ip: str
    request_truncated: str
    instance_truncated: str
    api_key: str = "NULL"
    traffic: str = "NULL"  # before version 3 every request was ordinary
    versions: str = "NULL, NULL, NULL"  # before version 4: the primary, under no label
    trace_id: str = "NULL"  # before version 5: no request was traced

    @property
    def has_roles(self) -> bool:
        """Whether the log keeps the versions' roles (version 4 on): shadows apart."""
        return self.versions != _Layout.versions

    @property
    def label(self) -> str:
        """The version's label column (NULL before schema version 4)."""
        return self.versions.split(",")[0]

    def columns(self, ts: str, instance: str, output: str) -> str:
        return (
            f"r.request_id, p.idx, {ts}, r.route, r.model_name, r.model_version, {instance}, "
            f"{output}, r.latency_ms, p.cache_hit, r.client_addr, r.forwarded, "
            f"{self.record_id}, {self.client_ip}, {self.request_truncated}, "
            f"{self.instance_truncated}, {self.api_key}, {self.traffic}, {self.versions}, "
            f"{self.trace_id}"
        )


_V2 = _Layout(
    "predictions p JOIN requests r ON r.record_id = p.record_id",
    "r.record_id",
    "r.client_ip",
    "r.truncated",
    "p.truncated",
    "r.api_key",
)
_V3 = dataclasses.replace(_V2, traffic="r.traffic")
_V4 = dataclasses.replace(_V3, versions="r.model_label, r.role, r.shadow_of")
_V5 = dataclasses.replace(_V4, trace_id="r.trace_id")
# Version 1's rows carry their request's fields themselves: one table under both names.
_V1 = _Layout("predictions p JOIN predictions r ON r.request_id = p.request_id AND r.idx = p.idx",
              "r.request_id", "NULL", "NULL", "NULL")  # fmt: skip


#: A shadow's rows and the rows of the request it copied, instance by instance (the shadow's
#: request is ``r``, so that the usual filters apply to it).
_PAIRS = (
    "SELECT pr.model_label, pr.model_version, r.model_label, r.model_version, pr.record_id, "
    "sp.idx, pp.output, sp.output, pr.latency_ms, r.latency_ms "
    "FROM requests r JOIN predictions sp ON sp.record_id = r.record_id "
    "JOIN requests pr ON pr.record_id = r.shadow_of "
    "JOIN predictions pp ON pp.record_id = pr.record_id AND pp.idx = sp.idx "
)


#: The shadows' requests, and the requests a caller was answered by.
SHADOWS = "r.role = 'shadow'"
ANSWERED = "coalesce(r.role, '') <> 'shadow'"


def _and(where: str, condition: str) -> str:
    return f"{where} AND {condition}" if where else f"WHERE {condition}"


def _layout(
    has_requests: bool, has_traffic: bool, has_versions: bool, has_trace: bool = False
) -> _Layout:
    """The layout of a log at whichever schema version it is."""
    if not has_requests:
        return _V1
    if has_trace:
        return _V5
    if has_versions:
        return _V4
    return _V3 if has_traffic else _V2


class _ReaderBase:
    target: str
    _layout: _Layout
    #: How a query marks a parameter, and a timestamp parameter (unix seconds).
    _mark = "?"
    _ts_mark = "?"

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def compare(
        self, *, since: float | None = None, traffic: TrafficFilter = "ordinary"
    ) -> Comparison:
        lay = self._layout
        mark = self._mark
        where, params = _where(since, None, lay, mark, self._ts_mark, traffic)
        if not lay.has_roles:
            return compare(self.target, since, [], [])
        pairs = self._query(
            f"{_PAIRS}{_and(where, SHADOWS)} ORDER BY r.ts DESC LIMIT {mark}",
            (*params, MAX_PAIRS),
        )
        live = self._query(
            "SELECT r.model_label, r.model_version, r.role, r.latency_ms FROM requests r "
            f"{_and(where, ANSWERED)} ORDER BY r.ts DESC LIMIT {mark}",
            (*params, MAX_PAIRS),
        )
        return compare(self.target, since, pairs, live)

    def instances(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        traffic: TrafficFilter = "ordinary",
        chunk: int = INSTANCE_CHUNK,
    ) -> Iterator[list[InstanceRow]]:
        lay = self._layout
        where, params = _where(since, None, lay, self._mark, self._ts_mark, traffic, until=until)
        if lay.has_roles:  # a shadow's answers reached no caller
            where = _and(where, ANSWERED)
        # No ORDER BY: the window is read in whatever order the index gives, once.
        return self._stream(
            f"SELECT r.model_name, r.model_version, {lay.label}, {self._text('p.instance')}, "
            f"{self._text('p.output')} FROM {lay.tables} {where}",
            params,
            chunk,
        )

    def _text(self, column: str) -> str:
        return column

    def _stream(self, sql: str, params: Sequence[Any], chunk: int) -> Iterator[list[Any]]:
        raise NotImplementedError

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
            has_requests = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests'"
            ).fetchall()
            has_traffic = self._conn.execute(
                "SELECT 1 FROM pragma_table_info('requests') WHERE name = 'traffic'"
            ).fetchall()
            has_versions = self._conn.execute(
                "SELECT 1 FROM pragma_table_info('requests') WHERE name = 'model_label'"
            ).fetchall()
            has_trace = self._conn.execute(
                "SELECT 1 FROM pragma_table_info('requests') WHERE name = 'trace_id'"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.target, str(exc)) from exc
        self._layout = _layout(
            bool(has_requests), bool(has_traffic), bool(has_versions), bool(has_trace)
        )

    def recent(
        self,
        *,
        limit: int,
        since: float | None = None,
        request_id: str | None = None,
        traffic: TrafficFilter = "all",
    ) -> list[PredictionRecord]:
        lay = self._layout
        where, params = _where(since, request_id, lay, "?", "?", traffic)
        rows = self._query(
            f"SELECT {lay.columns('r.ts', 'p.instance', 'p.output')} FROM {lay.tables} {where} "
            f"ORDER BY r.ts DESC, {lay.record_id} DESC, p.idx DESC LIMIT ?",
            (*params, limit),
        )
        return [_record(row) for row in reversed(rows)]

    def stats(self, *, since: float | None = None, traffic: TrafficFilter = "ordinary") -> LogStats:
        lay = self._layout
        where, params = _where(since, None, lay, "?", "?", traffic)
        if lay.has_roles:  # a shadow's answers reached no caller: `log compare` reads them
            where = _and(where, ANSWERED)
        groups = self._query(
            "SELECT r.model_name, r.model_version, count(*), sum(p.cache_hit), "
            f"sum(p.idx = 0), min(r.ts), max(r.ts) FROM {lay.tables} {where} GROUP BY 1, 2",
            params,
        )
        decisions = self._query(
            "SELECT r.model_name, r.model_version, json_extract(p.output, '$.decision'), "
            f"count(*) FROM {lay.tables} {where} GROUP BY 1, 2, 3",
            params,
        )
        and_where = f"{where} AND p.idx = 0" if where else "WHERE p.idx = 0"
        latencies: dict[tuple[str, str], list[float]] = {}
        for name, version, latency in self._query(
            f"SELECT r.model_name, r.model_version, r.latency_ms FROM {lay.tables} {and_where} "
            "ORDER BY 1, 2, 3",
            params,
        ):
            latencies.setdefault((name, version), []).append(float(latency))
        left_out: list[Any] = []
        if traffic != "all":
            other, other_params = _where(since, None, lay, "?", "?", traffic, leave_out=True)
            left_out = self._query(
                f"SELECT {lay.traffic}, count(*), sum(p.idx = 0) FROM {lay.tables} {other} "
                "GROUP BY 1",
                other_params,
            )
        return build_stats(
            self.target,
            since,
            groups,
            decisions,
            {
                key: Latency(*(percentile(values, q) for q in PERCENTILES))
                for key, values in latencies.items()
            },
            traffic,
            left_out,
        )

    def close(self) -> None:
        self._conn.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:

        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.target, str(exc)) from exc

    def _stream(self, sql: str, params: Sequence[Any], chunk: int) -> Iterator[list[Any]]:
        try:
            cursor = self._conn.execute(sql, params)
            while rows := cursor.fetchmany(chunk):
                yield rows
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.target, str(exc)) from exc


def _where(
    since: float | None,
    request_id: str | None,
    layout: _Layout,
    mark: str,
    ts_mark: str,
    traffic: TrafficFilter = "all",
    *,
    leave_out: bool = False,
    until: float | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause for ``since`` (and before ``until``), a request id (the caller's or
    the record's) and a kind of traffic (with ``leave_out``: every other kind)."""
    conditions: list[str] = []
    params: list[Any] = []
    if since is not None:
        conditions.append(f"r.ts >= {ts_mark}")
        params.append(since)
    if until is not None:
        conditions.append(f"r.ts < {ts_mark}")
        params.append(until)
    if request_id is not None:
        conditions.append(f"(r.request_id = {mark} OR {layout.record_id} = {mark})")
        params += [request_id, request_id]
    column = layout.traffic
    if traffic == "ordinary":
        conditions.append(f"{column} IS {'NOT ' if leave_out else ''}NULL")
    elif traffic == "synthetic":
        conditions.append(f"{column} IS {'' if leave_out else 'NOT '}NULL")
    elif traffic != "all":
        # coalesce: NULL (ordinary) is another kind, not an unknown one.
        conditions.append(f"coalesce({column}, '') {'<>' if leave_out else '='} {mark}")
        params.append(traffic)
    elif leave_out:
        conditions.append("false")
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), tuple(params)


class PostgresReader(_ReaderBase):
    _mark = "%s"
    _ts_mark = "to_timestamp(%s)"

    def __init__(self, conninfo: str, *, connect_timeout: int = 5) -> None:
        # psycopg is imported where PostgreSQL is used, so that other commands start faster.
        import psycopg

        from servepath.store.postgres import describe_conninfo

        self.target = describe_conninfo(conninfo)
        try:
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
            found = self._conn.execute(
                "SELECT to_regclass('requests') IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute "
                "WHERE attrelid = to_regclass('requests') AND attname = 'traffic' "
                "AND NOT attisdropped), EXISTS (SELECT 1 FROM pg_attribute "
                "WHERE attrelid = to_regclass('requests') AND attname = 'model_label' "
                "AND NOT attisdropped), EXISTS (SELECT 1 FROM pg_attribute "
                "WHERE attrelid = to_regclass('requests') AND attname = 'trace_id' "
                "AND NOT attisdropped)"
            ).fetchone()
        except psycopg.Error as exc:
            raise StoreUnavailable(self.target, " ".join(str(exc).split())) from exc
        has_requests, has_traffic, has_versions, has_trace = found or (False,) * 4
        self._layout = _layout(has_requests, has_traffic, has_versions, has_trace)

    def recent(
        self,
        *,
        limit: int,
        since: float | None = None,
        request_id: str | None = None,
        traffic: TrafficFilter = "all",
    ) -> list[PredictionRecord]:
        lay = self._layout
        where, params = _where(since, request_id, lay, "%s", "to_timestamp(%s)", traffic)
        columns = lay.columns("extract(epoch FROM r.ts)::float8", "p.instance::text",
                              "p.output::text")  # fmt: skip
        rows = self._query(
            f"SELECT {columns} FROM {lay.tables} {where} "
            f"ORDER BY r.ts DESC, {lay.record_id} DESC, p.idx DESC LIMIT %s",
            (*params, limit),
        )
        return [_record(row) for row in reversed(rows)]

    def stats(self, *, since: float | None = None, traffic: TrafficFilter = "ordinary") -> LogStats:
        lay = self._layout
        where, params = _where(since, None, lay, "%s", "to_timestamp(%s)", traffic)
        if lay.has_roles:  # a shadow's answers reached no caller: `log compare` reads them
            where = _and(where, ANSWERED)
        rows = self._query(
            "SELECT r.model_name, r.model_version, count(*), "
            "count(*) FILTER (WHERE p.cache_hit), "
            "count(*) FILTER (WHERE p.idx = 0), extract(epoch FROM min(r.ts))::float8, "
            "extract(epoch FROM max(r.ts))::float8, "
            "percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY r.latency_ms) "
            f"FILTER (WHERE p.idx = 0) FROM {lay.tables} {where} GROUP BY 1, 2",
            (list(PERCENTILES), *params),
        )
        decisions = self._query(
            "SELECT r.model_name, r.model_version, p.output->>'decision', count(*) "
            f"FROM {lay.tables} {where} GROUP BY 1, 2, 3",
            params,
        )
        latencies = {(row[0], row[1]): Latency(*(row[7] or (None, None, None))) for row in rows}
        left_out: list[Any] = []
        if traffic != "all":
            other, other_params = _where(
                since, None, lay, "%s", "to_timestamp(%s)", traffic, leave_out=True
            )
            left_out = self._query(
                f"SELECT {lay.traffic}::text, count(*), count(*) FILTER (WHERE p.idx = 0) "
                f"FROM {lay.tables} {other} GROUP BY 1",
                other_params,
            )
        return build_stats(
            self.target,
            since,
            [tuple(row[:7]) for row in rows],
            decisions,
            latencies,
            traffic,
            left_out,
        )

    def _text(self, column: str) -> str:
        return f"{column}::text"  # jsonb's text, parsed once on this side

    def _stream(self, sql: str, params: Sequence[Any], chunk: int) -> Iterator[list[Any]]:
        import psycopg

        # A server-side cursor (it lives in a transaction): a client-side one would hold the
        # whole window in memory before the first row is read.
        try:
            with (
                self._conn.transaction(),
                self._conn.cursor(name="servepath_instances") as cursor,
            ):
                cursor.itersize = chunk
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(chunk):
                    yield rows
        except psycopg.Error as exc:
            raise StoreUnavailable(self.target, " ".join(str(exc).split())) from exc

    def close(self) -> None:
        self._conn.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        import psycopg

        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise StoreUnavailable(self.target, " ".join(str(exc).split())) from exc
