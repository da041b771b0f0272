"""The PredictionLog protocol: every prediction the service makes, recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from servepath.traffic import Traffic

Route = Literal["decisions", "vertex", "v2"]


@dataclass(slots=True)
class PredictionRecord:
    """One prediction: one instance of one request. ``(record_id, index)`` is unique.

    ``record_id`` is the server's: it names the request's record whatever the caller sends.
    ``request_id`` is the ``X-Request-ID`` the response carried (the caller's, or, when it
    sent none, the server's own, equal to ``record_id``); many records may share one.
    The request's fields (everything but ``index``, ``instance``, ``output``, ``cache_hit``)
    are the same in every record of one request and are stored once per request.

    Made once per logged prediction on the request path, so not frozen (a frozen dataclass
    costs four times as much to build); nothing changes a record once it is made.
    """

    request_id: str
    index: int
    ts: float  # unix seconds, when the response was produced
    route: Route
    model_name: str
    model_version: str
    instance: dict[str, Any]
    output: dict[str, Any]
    latency_ms: float  # server time for the whole request
    cache_hit: bool
    client_addr: str | None  # the TCP peer as the server saw it, "host:port"
    #: The forwarded chain as claimed: the hops no trusted proxy vouches for, client first,
    #: at most 16 hops and 1 KB ("…(+N)" in front when cut).
    forwarded: str | None
    record_id: str = ""  # "" (records of older spool files): the request id is the key
    #: The client's address as the server believes it: the TCP peer, or the address a
    #: trusted proxy (--forwarded-allow-ips) vouches for.
    client_ip: str | None = None
    #: Comma-separated names of the fields that were cut to fit the bounds, or None.
    truncated: str | None = None
    #: The name of the API key the request carried (never the key); None without keys.
    api_key: str | None = None
    #: The synthetic traffic the request was marked as (``X-Servepath-Traffic``, one word of
    #: :data:`~servepath.traffic.TRAFFIC_KINDS`); None for ordinary traffic.
    traffic: Traffic | None = None
    #: The label of the version that answered (a repository folder; else its 12-hex version).
    model_label: str | None = None
    #: Which role the version had: None for the primary, "candidate", or "shadow" (a copy
    #: of a request answered after the caller's answer, never seen by the caller).
    role: str | None = None
    #: For a shadow's record: the ``record_id`` of the request it copies.
    shadow_of: str | None = None
    #: The W3C trace id (32 hex digits) of the request's trace, when the server traced it.
    trace_id: str | None = None

    @property
    def key(self) -> str:
        """The record's identity in the database: ``record_id``, else ``request_id``."""
        return self.record_id or self.request_id

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "index": self.index,
            "ts": self.ts,
            "route": self.route,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "instance": self.instance,
            "output": self.output,
            "latency_ms": self.latency_ms,
            "cache_hit": self.cache_hit,
            "client_addr": self.client_addr,
            "forwarded": self.forwarded,
            "record_id": self.record_id,
            "client_ip": self.client_ip,
            "truncated": self.truncated,
            "api_key": self.api_key,
            "traffic": self.traffic,
            "model_label": self.model_label,
            "role": self.role,
            "shadow_of": self.shadow_of,
            "trace_id": self.trace_id,
        }


@dataclass(frozen=True)
class StoreStatus:
    backend: str  # "sqlite", "postgresql", "off"
    healthy: bool  # the database takes writes (false while records spool or a write hangs)
    detail: str = ""
    queued: int = 0  # records in memory, not yet in the database or the spool
    spooled: int = 0  # records in the spool, waiting for the database
    #: Whether a record given now would be kept (by the database or the spool); false when
    #: both refuse, e.g. a full or read-only data directory with the database away.
    accepting: bool = True
    write_wait: float = 0.0  # seconds the database write in progress has waited

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "healthy": self.healthy,
            "detail": self.detail,
            "queued": self.queued,
            "spooled": self.spooled,
            "accepting": self.accepting,
            "write_wait_s": round(self.write_wait, 3),
        }


@dataclass(frozen=True)
class WriterStats:
    """Counters since start: what the writer has done with the records it was given."""

    transactions: int  # batches committed to the database (live and replayed)
    committed: int  # records those transactions carried
    spooled: int  # records written to the spool
    replayed: int  # records moved from the spool to the database
    rejected: int  # records the database refused for their content (kept in rejected-*.jsonl)
    lost: int  # records neither the database nor the spool would take

    def to_json(self) -> dict[str, int]:
        return {
            "transactions": self.transactions,
            "committed": self.committed,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "rejected": self.rejected,
            "lost": self.lost,
        }


class PredictionLog(Protocol):
    """Where the service sends its records. ``record`` must not block the event loop.

    ``enabled`` is false for a log that keeps nothing: the service then builds no records.
    """

    name: str
    enabled: bool

    async def start(self) -> None: ...

    def record(self, records: Sequence[PredictionRecord]) -> None:
        """Queue records for a batched write; returns at once."""

    async def record_durable(self, records: Sequence[PredictionRecord]) -> None:
        """Return only once the records are committed (``--durable``)."""

    async def close(self) -> None:
        """Flush every queued record, then release connections."""

    def status(self) -> StoreStatus: ...

    def stats(self) -> WriterStats | None:
        """What became of the records so far; None for a log that keeps none."""


class NoLog:
    """`--store off`: predictions are not recorded."""

    name = "off"
    enabled = False

    async def start(self) -> None:
        return None

    def record(self, records: Sequence[PredictionRecord]) -> None:
        return None

    async def record_durable(self, records: Sequence[PredictionRecord]) -> None:
        return None

    async def close(self) -> None:
        return None

    def status(self) -> StoreStatus:
        return StoreStatus(backend="off", healthy=True, detail="prediction log disabled")

    def stats(self) -> WriterStats | None:
        return None
