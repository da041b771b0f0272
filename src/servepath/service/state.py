"""What a scrape reports of the service's state: the prediction log, the cache, admission.

Read from its owners when asked (see :mod:`servepath.service.metrics` for when that is).
"""

from __future__ import annotations

from servepath.cache.base import Cache
from servepath.net.kernel import accept_queue, listen_counters
from servepath.service.admission import AdmissionSnapshot
from servepath.service.metrics import Sample
from servepath.store.base import PredictionLog


def state_samples(
    store: PredictionLog, cache: Cache, snap: AdmissionSnapshot, queued_rows: int
) -> list[Sample]:
    """The samples of one scrape."""
    status = store.status()
    backend = (("backend", status.backend),)
    samples = [
        Sample(
            "servepath_prediction_log_healthy",
            "1 while the prediction log's database takes writes, 0 while records spool.",
            "gauge",
            backend,
            1.0 if status.healthy else 0.0,
        ),
        Sample(
            "servepath_prediction_log_queued",
            "Prediction records waiting in memory for the database.",
            "gauge",
            backend,
            status.queued,
        ),
        Sample(
            "servepath_prediction_log_spool_pending",
            "Prediction records waiting on disk for the database to come back.",
            "gauge",
            backend,
            status.spooled,
        ),
        Sample(
            "servepath_prediction_log_write_wait_seconds",
            "How long the database write in progress has waited (0 when none is).",
            "gauge",
            backend,
            status.write_wait,
        ),
    ]
    stats = store.stats()
    if stats is not None:
        help_records = (
            "Prediction records by what became of them: committed to the database, "
            "spooled to disk, replayed from the spool, rejected for their content, or lost."
        )
        for outcome in ("committed", "spooled", "replayed", "rejected", "lost"):
            samples.append(
                Sample(
                    "servepath_prediction_log_records",
                    help_records,
                    "counter",
                    (*backend, ("outcome", outcome)),
                    getattr(stats, outcome),
                )
            )
        samples.append(
            Sample(
                "servepath_prediction_log_transactions",
                "Batched write transactions committed to the database.",
                "counter",
                backend,
                stats.transactions,
            )
        )
    cache_stats = cache.stats()
    if cache_stats is not None:
        samples += [
            Sample(
                "servepath_cache_entries",
                "Entries in the in-process response cache.",
                "gauge",
                (),
                cache_stats.entries,
            ),
            Sample(
                "servepath_cache_bytes",
                "Bytes the in-process response cache holds, as the allocator counts them.",
                "gauge",
                (),
                cache_stats.bytes,
            ),
        ]
    samples += [
        Sample(
            "servepath_requests_in_flight",
            "Requests admitted to the model's pipeline and not yet answered.",
            "gauge",
            (),
            snap.in_flight,
        ),
        Sample(
            "servepath_admission_expected_wait_seconds",
            "The wait a new prediction request can expect now (loop lag and model queue).",
            "gauge",
            (),
            snap.expected_wait,
        ),
        Sample(
            "servepath_admission_max_wait_seconds",
            "The expected wait past which requests are shed (503, or 429 with --shed-status).",
            "gauge",
            (),
            snap.max_wait,
        ),
        Sample(
            "servepath_event_loop_lag_seconds",
            "The event loop's standing lag: the least of its recent samples of how late a "
            "timer runs.",
            "gauge",
            (),
            snap.loop_lag,
        ),
        Sample(
            "servepath_model_queued_rows",
            "Rows waiting for the next model call.",
            "gauge",
            (),
            queued_rows,
        ),
    ]
    return samples


def listen_samples(fd: int, backlog: int) -> list[Sample]:
    """What the kernel says of the listening socket ``fd``: connections waiting for
    ``accept()`` (a wait no measure of the server's own sees), and the namespace's count of
    handshakes dropped because an accept queue was full."""
    samples = [
        Sample(
            "servepath_listen_backlog",
            "The listening socket's accept queue bound (--backlog; the kernel caps it at "
            "net.core.somaxconn).",
            "gauge",
            (),
            float(backlog),
        )
    ]
    queued = accept_queue(fd)
    if queued is not None:
        samples.append(
            Sample(
                "servepath_listen_queue",
                "Connections the kernel accepted that wait for the server to take them.",
                "gauge",
                (),
                float(queued),
            )
        )
    counters = listen_counters()
    if counters is not None:
        help_text = (
            "The network namespace's TcpExt {} counter as read at scrape time: handshakes "
            "dropped because a listening socket's accept queue was full."
        )
        samples += [
            Sample("servepath_kernel_listen_overflows", help_text.format("ListenOverflows"),
                   "gauge", (), float(counters.overflows)),
            Sample("servepath_kernel_listen_drops", help_text.format("ListenDrops"),
                   "gauge", (), float(counters.drops)),
        ]  # fmt: skip
    return samples
