"""The gate: what a connection asks of the service before the app sees a request.

The server builds one :class:`Gate` and hands it to both sides: the HTTP layer
(:mod:`servepath.service.protocol`) consults it on every request head — which limits apply,
whether the request is liveness (answered on the spot) or a prediction (admitted or shed on
its head, before any ASGI task exists), whether the server drains — and the data plane
(:mod:`servepath.service.dataplane`) installs its admission control into it. The HTTP layer
therefore knows nothing of the app, and the app nothing of the connection.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from servepath.contract import DEFAULT_PREDICT_ROUTE
from servepath.errors import Overloaded
from servepath.service.routes import LIVE_ROUTE, V2_INFER

if TYPE_CHECKING:
    from servepath.config import Settings
    from servepath.service.admission import Decision, Ticket
    from servepath.service.metrics import Metrics

#: File descriptors kept free of connections for the database, cache, logs and the model.
FD_RESERVE = 128
#: The most connections ``max_connections: auto`` allows, whatever the descriptor limit.
AUTO_MAX_CONNECTIONS = 16384

#: What the gate says of a prediction's head: a ticket (admitted: hand it to the app with the
#: request), the refusal to answer at once, or None (nothing to decide here: the app says).
Admit = Callable[[int], "Ticket | Decision | None"]
#: (status, seconds, route template, request id, ASGI client, request headers, timings).
Seen = Callable[[int, float, str, str, Any, list[tuple[bytes, bytes]], list[Any]], None]


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may send, and for how long it may take."""

    max_url_bytes: int = 8192
    max_headers: int = 100
    max_header_bytes: int = 32768
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    request_timeout: float = 30.0
    send_timeout: float = 30.0
    max_connections: int = AUTO_MAX_CONNECTIONS

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_url_bytes=settings.max_url_bytes,
            max_headers=settings.max_headers,
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            request_timeout=settings.request_timeout,
            send_timeout=settings.send_timeout,
            max_connections=settings.max_connections or auto_max_connections(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "max_url_bytes": self.max_url_bytes,
            "max_headers": self.max_headers,
            "max_header_bytes": self.max_header_bytes,
            "header_timeout_s": self.header_timeout,
            "body_timeout_s": self.body_timeout,
            "request_timeout_s": self.request_timeout,
            "send_timeout_s": self.send_timeout,
            "max_connections": self.max_connections,
        }


def auto_max_connections() -> int:
    """Connections the file-descriptor limit allows, less a reserve, at most 16,384."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return AUTO_MAX_CONNECTIONS
    return max(16, min(AUTO_MAX_CONNECTIONS, soft - FD_RESERVE))


def refusal(decision: Decision) -> tuple[dict[str, Any], tuple[tuple[bytes, bytes], ...]]:
    """The body and headers for a request shed on its head (the app's words for it); the
    status is the gate's :attr:`Gate.shed_status`."""
    retry_after = decision.retry_after
    return (
        {
            "error": str(Overloaded(decision.detail, retry_after)),
            "reason": "overloaded",
            "retry_after": retry_after,
        },
        ((b"retry-after", str(retry_after).encode()),),
    )


def _undecided(body_bytes: int) -> None:
    return None


class Gate:
    """See the module docstring. ``metrics`` counts what the HTTP layer answers itself."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.limits = HttpLimits.from_settings(settings)
        self.metrics = metrics
        #: What a request shed for the load is answered with (``--shed-status``: 503 or 429).
        self.shed_status = settings.shed_status
        #: Paths whose POST runs the model: shed on the head when the building is full.
        self.predict_paths = frozenset({DEFAULT_PREDICT_ROUTE, settings.predict_route})
        #: The liveness route the HTTP layer answers itself ("" while it needs an API key).
        self.live_path = LIVE_ROUTE
        #: ``--health-port``: connections to it run no predictions and are bounded apart.
        self.health_port = settings.health_port
        #: The health port's open connections (not counted against ``max_connections``).
        self.health_connections: set[object] = set()
        self.draining = False
        #: Why the server cannot serve at all (the model did not load), once it says so.
        self.failed: str | None = None
        self.admit: Admit = _undecided
        #: Told of each prediction the HTTP layer refuses itself (the live page's ring notes
        #: it); None when nothing listens.
        self.seen: Seen | None = None
        self._on_drain: list[Callable[[], None]] = []
        self._on_reload: list[Callable[[], None]] = []
        self._on_fail: list[Callable[[str], None]] = []

    def predict_template(self, method: str, path: str) -> str | None:
        """The route template of a prediction request (POST to a predict route or a V2
        model's ``/infer``), None for anything else."""
        if method != "POST":
            return None
        if path in self.predict_paths:
            return path
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            return V2_INFER
        return None

    def install(self, admit: Admit) -> None:
        """The data plane's admission decides prediction heads from now on."""
        self.admit = admit

    def on_drain(self, callback: Callable[[], None]) -> None:
        self._on_drain.append(callback)

    def on_reload(self, callback: Callable[[], None]) -> None:
        self._on_reload.append(callback)

    def on_fail(self, callback: Callable[[str], None]) -> None:
        self._on_fail.append(callback)

    def fail(self, reason: str) -> None:
        """The service cannot serve (its model did not load): the server stops, non-zero."""
        self.failed = reason
        for callback in self._on_fail:
            callback(reason)

    def begin_drain(self) -> None:
        """The server stopped accepting: readiness says so; requests in the building finish."""
        self.draining = True
        for callback in self._on_drain:
            callback()

    def reload(self) -> None:
        """SIGHUP: whatever registered reads its files again (the API keys)."""
        for callback in self._on_reload:
            callback()
