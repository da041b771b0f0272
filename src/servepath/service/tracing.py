"""Traces out of the process: a bounded queue of traced requests and the thread that sends
their spans to an OTLP/HTTP receiver with OpenTelemetry's standard exporter.

The request path only appends a finished :class:`~servepath.service.tracecontext.Trace`
to a deque (or, when the queue is full, counts its spans as dropped): it never waits for
the exporter, the network or a lock. The thread wakes every :data:`EXPORT_INTERVAL` (or
when a batch's worth has queued), encodes the requests' spans (:mod:`servepath.service.otlp`)
and hands the bytes to ``OTLPSpanExporter``'s HTTP client, with its retries and TLS
(uncompressed: gzip would cost the process more CPU than the bytes cost the network). Spans
it could not deliver are counted as dropped too.

The SDK is imported here, and this module only when ``--otlp-endpoint`` is set, so a
server without tracing loads none of it. The thread starts in the app's lifespan: with
``--workers N`` each worker starts its own after the fork.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Protocol

from servepath import __version__
from servepath.config import Settings
from servepath.service.metrics import Metrics
from servepath.service.otlp import SpanEncoder, spans_in, wall_offset_ns
from servepath.service.tracecontext import Trace

log = logging.getLogger(__name__)

#: Seconds between exports when fewer than a batch's worth of requests are queued.
EXPORT_INTERVAL = 1.0
#: Traced requests per export request (about six spans each, some 350 KB). One export costs
#: the exporter's HTTP client about a millisecond of CPU whatever its size: fewer, larger
#: ones are what keeps tracing every request cheap.
EXPORT_BATCH = 512
#: Traced requests encoded between two releases of the GIL (about 0.2 ms of work).
ENCODE_CHUNK = 128
#: Seconds one export may take, retries included, before its spans count as dropped.
EXPORT_TIMEOUT = 5.0
#: Seconds shutdown gives the last spans to go out.
SHUTDOWN_TIMEOUT = 2.0


class Sender(Protocol):
    """Sends one encoded ``ExportTraceServiceRequest``; True when the receiver took it."""

    #: The last attempt to reach the receiver failed (an export may be in its retries).
    failing: bool

    def send(self, data: bytes) -> bool: ...

    def shutdown(self) -> None: ...


class OTLPSender:
    """The standard OTLP/HTTP exporter's client, fed bytes already encoded."""

    def __init__(self, endpoint: str, timeout: float = EXPORT_TIMEOUT) -> None:
        import requests
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        sender = self
        self.failing = False

        class Session(requests.Session):
            """Notes whether the receiver answered, attempt by attempt (the exporter's client
            retries within one export, and shutdown need not wait for a dead receiver)."""

            def request(self, *args: Any, **kwargs: Any) -> requests.Response:
                try:
                    response = super().request(*args, **kwargs)
                except Exception:
                    sender.failing = True
                    raise
                sender.failing = not response.ok
                return response

        session = Session()
        # Nor requests' (proxy variables, .netrc): looked up at every export, they were half
        # of its cost, and the receiver is reached directly.
        session.trust_env = False
        # Every option given, so that the exporter's own environment variables do not
        # override what the settings say (config.py reads the environment).
        self.exporter = OTLPSpanExporter(
            endpoint=endpoint,
            timeout=timeout,
            compression=Compression.NoCompression,
            headers={},
            session=session,
        )

    def send(self, data: bytes) -> bool:
        # The exporter's export() takes SDK spans and encodes them itself (the cost that
        # otlp.py avoids); its client takes the encoded request with the same retries.
        result = self.exporter._client.export(data)
        return bool(result.success)

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]


class Tracer:
    """See the module docstring. ``sender``: where the spans go (default: the OTLP/HTTP
    exporter for ``settings.otlp_endpoint``)."""

    def __init__(self, settings: Settings, metrics: Metrics, sender: Sender | None = None):
        assert settings.otlp_endpoint is not None or sender is not None
        self.settings = settings
        self.metrics = metrics
        self.max_queue = settings.trace_queue
        self._batch = min(EXPORT_BATCH, self.max_queue)
        self._queue: deque[Trace] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._sender = sender
        self._encoder = SpanEncoder(settings.trace_service_name, __version__, os.getpid())
        #: Spans handed to the receiver, and dropped (queue full, or the export failed).
        self.exported = 0
        self.dropped = 0
        #: The last export failed (or one is retrying after a failure).
        self._failing = False
        #: Traced requests taken off the queue and not yet exported or dropped.
        self._exporting = 0

    def start(self) -> None:
        """Start the export thread (in the lifespan: after a worker's fork)."""
        if self._sender is None:
            assert self.settings.otlp_endpoint is not None
            self._sender = OTLPSender(self.settings.otlp_endpoint)
        # The process that exports: a worker's own, after the fork.
        self._encoder = SpanEncoder(self.settings.trace_service_name, __version__, os.getpid())
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="servepath-traces", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Send what is queued (within :data:`SHUTDOWN_TIMEOUT`) and stop the thread."""
        thread = self._thread
        if thread is None:
            return
        sender = self._sender
        assert sender is not None
        self._failing = self._failing or sender.failing
        self._stopping = True
        if self._failing:
            # The receiver did not answer the last attempt: what is queued would fare no
            # better, and an export in its retries is abandoned rather than waited for.
            sender.shutdown()
        self._wake.set()
        thread.join(SHUTDOWN_TIMEOUT)
        if thread.is_alive():
            sender.shutdown()  # abandons an export still in its retries
            thread.join(SHUTDOWN_TIMEOUT)
        elif not self._failing:
            sender.shutdown()
        self._thread = None

    def submit(self, trace: Trace) -> None:
        """Queue a sampled request's spans for export (the request path: never waits)."""
        queue = self._queue
        if len(queue) >= self.max_queue:
            self._drop(spans_in(trace), "queue_full")
            return
        queue.append(trace)
        if len(queue) == self._batch:
            self._wake.set()

    def flush(self) -> None:
        """Have the thread export what is queued now rather than at its next interval."""
        self._wake.set()

    def _drop(self, spans: int, reason: str) -> None:
        self.dropped += spans
        self.metrics.count_trace_spans("dropped", reason, spans)

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(EXPORT_INTERVAL)
            self._wake.clear()
            stopping = self._stopping
            while queue:
                # Counted before taken, so that queued + exporting never reads 0 between.
                self._exporting = n = min(self._batch, len(queue))
                batch = [queue.popleft() for _ in range(n)]
                self._export(batch)
                self._exporting = 0
                if not stopping and len(queue) < self._batch:
                    break
            if stopping:
                return

    def _export(self, batch: list[Trace]) -> None:
        try:
            data, spans = self._encode(batch)
        except Exception:  # a span that cannot be encoded must not stop the thread
            log.exception("could not encode %d traced requests", len(batch))
            self._drop(sum(spans_in(t) for t in batch), "encode_failed")
            return
        assert self._sender is not None
        if self._stopping and self._failing:
            self._drop(spans, "export_failed")
            return
        try:
            sent = self._sender.send(data)
        except Exception as exc:
            log.warning("trace export failed: %s", exc)
            sent = False
        self._failing = not sent
        if sent:
            self.exported += spans
            self.metrics.count_trace_spans("exported", "", spans)
        else:
            self._drop(spans, "export_failed")

    def _encode(self, batch: list[Trace]) -> tuple[bytes, int]:
        """The export request of ``batch``, encoded a few requests at a time: between them
        the thread gives up the GIL (the event loop would otherwise wait for a whole batch,
        up to the interpreter's 5 ms switch interval)."""
        encoder = self._encoder
        offset = wall_offset_ns()
        pieces: list[bytes] = []
        count = 0
        for i in range(0, len(batch), ENCODE_CHUNK):
            data, spans = encoder.spans(batch[i : i + ENCODE_CHUNK], offset)
            pieces.append(data)
            count += spans
            time.sleep(0)
        return encoder.request(pieces), count

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.settings.otlp_endpoint,
            "sample": self.settings.trace_sample,
            "queued": len(self._queue) + self._exporting,
            "max_queue": self.max_queue,
            "exported_spans": self.exported,
            "dropped_spans": self.dropped,
        }
