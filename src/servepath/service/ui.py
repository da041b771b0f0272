"""What the live page (``GET /_ui``) shows: a bounded ring of the last prediction requests,
and throughput, error rate and percentiles over the last minutes. Pure but for the clock.

The request path pays for one call that appends two tuples (:meth:`SeenRing.note`); all the
work — who the caller was, the forwarded chain, the cache and the time split — is done when
the page asks, from the very inputs the prediction log's record is made of (the TCP peer, the
forwarded headers, through :func:`~servepath.service.pathecho.meta_for_log`, and the
request's ``Server-Timing`` entries), so the page and the log cannot disagree. Each worker
process keeps its own ring; with several, the page merges them
(:mod:`servepath.service.ui_share`).

Synthetic traffic (requests marked ``X-Servepath-Traffic``: the doctor's, load's, a monitor's)
stays in the list, tagged, but out of the numbers and the chart, which count only what real
callers sent and say how many marked requests they left out.

Any caller can fill the ring with long forwarded chains, so rendering is bounded twice: an
entry is rendered once in its life (the ring remembers what it made of each entry it still
holds), and only the last :data:`RENDER_CHAIN_CHARS` of each forwarded header are read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from servepath.net.forwarded import MAX_CLAIMED_BYTES, TrustedProxies
from servepath.service.pathecho import client_view, meta_for_log
from servepath.service.request import Head, RequestContext, RequestMeta
from servepath.service.tracecontext import current as current_trace

#: Requests the page lists (the newest).
RING_SIZE = 200
#: Seconds the throughput, error rate and percentiles cover.
WINDOW_S = 300.0
#: Requests the statistics keep (time, status, seconds): past this many in the window, they
#: cover fewer seconds than WINDOW_S and say so.
MAX_SAMPLES = 50_000
#: Seconds of per-second throughput the page draws.
SERIES_S = 60
#: Characters of a forwarded header an entry is rendered from (its end, from an element
#: boundary): the claimed chain shown is at most MAX_CLAIMED_BYTES, and this leaves room
#: for the trusted hops nearer the server. Past this the page marks the chain as cut; only
#: a chain with more than ~500 bytes of trusted proxies could be read differently by the
#: prediction log, which reads more.
RENDER_CHAIN_CHARS = MAX_CLAIMED_BYTES + 512

#: One request as the ring keeps it: (unix time, status, seconds, route template, request
#: id, ASGI client, request headers, Server-Timing entries). Nothing is copied on the hot
#: path: the headers list and the timings list are the request's own.
Entry = tuple[float, int, float, str, str, Any, list[tuple[bytes, bytes]], list[Any]]


@dataclass(frozen=True, slots=True)
class Stats:
    """Throughput, errors and server-time percentiles over the window."""

    window_s: float  # the window asked for
    covered_s: float  # the seconds the samples actually span (less when they overflowed)
    requests: int
    errors_4xx: int
    errors_5xx: int
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    #: Requests and errors (4xx and 5xx) per second, oldest first, the last SERIES_S seconds.
    per_second: tuple[tuple[int, int], ...]
    #: Marked (synthetic) requests in the window, which none of the numbers above count.
    synthetic: int = 0

    @property
    def error_rate(self) -> float:
        return (self.errors_4xx + self.errors_5xx) / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "covered_s": round(self.covered_s, 3),
            "requests": self.requests,
            "errors_4xx": self.errors_4xx,
            "errors_5xx": self.errors_5xx,
            "error_rate": round(self.error_rate, 6),
            "throughput_rps": round(self.throughput_rps, 3),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "per_second": [{"requests": n, "errors": e} for n, e in self.per_second],
            "synthetic_left_out": self.synthetic,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q ≤ 100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil without floats drifting
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def stats_of(
    samples: Iterable[tuple[float, int, float]],
    now: float,
    *,
    window: float = WINDOW_S,
    series: int = SERIES_S,
    synthetic: Iterable[float] = (),
) -> Stats:
    """Aggregate ``(unix time, status, seconds)`` samples of the last ``window`` seconds;
    ``synthetic``: the times of marked requests, only counted as left out."""
    since = now - window
    recent = [s for s in samples if since < s[0] <= now]
    latencies = sorted(s[2] * 1000 for s in recent)
    errors_4xx = sum(1 for s in recent if 400 <= s[1] < 500)
    errors_5xx = sum(1 for s in recent if s[1] >= 500)
    # A full window when the samples reach back that far; else from the oldest one kept.
    covered = window if not recent or len(recent) < MAX_SAMPLES else now - recent[0][0]
    last = int(now)
    buckets = [[0, 0] for _ in range(series)]
    for t, status, _ in recent:
        slot = series - 1 - (last - int(t))
        if 0 <= slot < series:
            buckets[slot][0] += 1
            buckets[slot][1] += status >= 400
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return Stats(
        window_s=window,
        covered_s=covered,
        requests=len(recent),
        errors_4xx=errors_4xx,
        errors_5xx=errors_5xx,
        throughput_rps=len(recent) / covered if covered > 0 else 0.0,
        p50_ms=None if p50 is None else round(p50, 3),
        p99_ms=None if p99 is None else round(p99, 3),
        per_second=tuple((n, e) for n, e in buckets),
        synthetic=sum(1 for t in synthetic if since < t <= now),
    )


def split_of(timings: Sequence[tuple[str, float, str | None]], total_ms: float) -> dict[str, Any]:
    """The request's server time split, from its ``Server-Timing`` entries: cache lookup,
    model call, and the rest (HTTP, parsing, validation, queueing, the log)."""
    split: dict[str, Any] = {"cache_ms": None, "cache": None, "model_ms": None}
    for name, dur, desc in timings:
        if name == "cache":
            split["cache_ms"], split["cache"] = round(dur, 3), desc
        elif name == "model":
            split["model_ms"] = round(dur, 3)
    inside = (split["cache_ms"] or 0.0) + (split["model_ms"] or 0.0)
    split["other_ms"] = round(max(0.0, total_ms - inside), 3)
    split["total_ms"] = round(total_ms, 3)
    return split


def _last_chars(values: list[str] | None) -> tuple[list[str] | None, bool]:
    """The end of a forwarded header's values, at most RENDER_CHAIN_CHARS, cut at a comma."""
    if values is None:
        return None, False
    text = ",".join(values)
    if len(text) <= RENDER_CHAIN_CHARS:
        return values, False
    tail = text[-RENDER_CHAIN_CHARS:]
    return [tail[tail.find(",") + 1 :] if "," in tail else ""], True


def entry_json(entry: Entry, trusted: TrustedProxies) -> dict[str, Any]:
    """One ring entry as the page shows it; the caller fields are the prediction log's,
    read from the last :data:`RENDER_CHAIN_CHARS` of each forwarded header."""
    ts, status, seconds, route, request_id, client, headers, timings = entry
    scope = {"client": client, "headers": headers}
    head = Head.of(headers)
    head.forwarded, cut_fwd = _last_chars(head.forwarded)
    head.x_forwarded_for, cut_xff = _last_chars(head.x_forwarded_for)
    view = client_view(scope, trusted, head)
    meta = RequestMeta(request_id, 0.0)
    meta_for_log(meta, scope, RequestContext(request_id, 0.0, view=view), trusted)
    forwarded = meta.forwarded
    if (cut_fwd or cut_xff) and not (forwarded or "").startswith("…"):
        forwarded = "…" + (" " + forwarded if forwarded else "")
    return {
        "time": round(ts, 3),
        "request_id": request_id,
        "route": route,
        "status": status,
        "client_ip": meta.client_ip,
        "client_addr": meta.client,
        "forwarded": forwarded,
        "proxies": list(view.proxies),
        "traffic": head.traffic,
        "trace_id": trace_id_of(headers),
        **split_of(timings, seconds * 1000),
    }


#: Where a traced request's entry keeps its trace id: among its request headers, under a
#: name no HTTP/1.1 request can carry (a colon is not a token character), so no caller can
#: put one there.
TRACE_ID_KEY = b":trace-id"


def trace_id_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The trace id a traced request's entry was kept with (see :class:`TracedRing`)."""
    if headers and headers[-1][0] == TRACE_ID_KEY:
        return headers[-1][1].decode()
    return None


class SeenRing:
    """The last :data:`RING_SIZE` prediction requests of this process, and the samples the
    statistics are made of."""

    __slots__ = (
        "_recent", "_rendered", "_rendered_for", "_samples", "_synthetic", "capacity", "renders",
    )  # fmt: skip

    def __init__(self, capacity: int = RING_SIZE, max_samples: int = MAX_SAMPLES) -> None:
        self.capacity = capacity
        self._recent: deque[Entry] = deque(maxlen=capacity)
        self._samples: deque[tuple[float, int, float]] = deque(maxlen=max_samples)
        #: When each marked (synthetic) request came: counted apart, never in the numbers.
        self._synthetic: deque[float] = deque(maxlen=max_samples)
        #: What each entry still in the ring was rendered as, by the entry's id (the entry
        #: is kept beside it, so that an id is never mistaken for a later entry's).
        self._rendered: dict[int, tuple[Entry, dict[str, Any]]] = {}
        self._rendered_for: TrustedProxies | None = None
        #: Entries rendered so far (each once while it stays in the ring).
        self.renders = 0

    def note(
        self,
        status: int,
        seconds: float,
        route: str,
        request_id: str,
        client: Any,
        headers: list[tuple[bytes, bytes]],
        timings: list[Any],
        traffic: str | None = None,
    ) -> None:
        """Keep one answered request (the hot path: two appends); ``traffic``: the kind of
        synthetic traffic it was marked as, None for an ordinary request."""
        now = time.time()
        self._recent.append((now, status, seconds, route, request_id, client, headers, timings))
        if traffic is None:
            self._samples.append((now, status, seconds))
        else:
            self._synthetic.append(now)

    def __len__(self) -> int:
        return len(self._recent)

    def newest(self) -> Entry | None:
        """The last request kept (its identity says whether the ring changed)."""
        return self._recent[-1] if self._recent else None

    def entries(self, trusted: TrustedProxies, limit: int | None = None) -> list[dict[str, Any]]:
        """The kept requests, newest first, as the page shows them (the dicts are shared
        between calls: copy one before changing it)."""
        newest = list(self._recent)[::-1][:limit]
        if trusted != self._rendered_for:
            self._rendered, self._rendered_for = {}, trusted
        before = self._rendered
        now: dict[int, tuple[Entry, dict[str, Any]]] = {}
        for entry in newest:
            kept = before.get(id(entry))
            if kept is None or kept[0] is not entry:
                kept = (entry, entry_json(entry, trusted))
                self.renders += 1
            now[id(entry)] = kept
        self._rendered = now
        return [rendered for _, rendered in now.values()]

    def stats(self, now: float | None = None, window: float = WINDOW_S) -> Stats:
        return stats_of(
            list(self._samples),
            time.time() if now is None else now,
            window=window,
            synthetic=list(self._synthetic),
        )


def latest_from(entries: Sequence[dict[str, Any]], client_ip: str | None) -> dict[str, Any] | None:
    """The viewer's last prediction: the newest answered entry whose caller is ``client_ip``,
    else its newest refused one; None when the ring holds none of the viewer's."""
    if client_ip is None:
        return None
    mine = [e for e in entries if e["client_ip"] == client_ip]
    return next((e for e in mine if e["status"] < 400), mine[0] if mine else None)


def request_totals(families: Iterable[Any], routes: Iterable[str]) -> dict[str, Any]:
    """Requests to ``routes`` by status, summed over every worker, from parsed metric
    families (``prometheus_client.parser``) of ``servepath_http_requests_total``."""
    wanted = set(routes)
    by_status: dict[str, int] = {}
    for family in families:
        if family.name not in ("servepath_http_requests", "servepath_http_requests_total"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("route") in wanted:
                status = sample.labels.get("status", "")
                by_status[status] = by_status.get(status, 0) + int(sample.value)
    total = sum(by_status.values())
    errors = sum(n for status, n in by_status.items() if status[:1] in ("4", "5"))
    return {"requests": total, "errors": errors, "by_status": dict(sorted(by_status.items()))}


class TracedRing(SeenRing):
    """The ring when tracing is on: each entry also keeps its request's trace id, which
    the page shows beside the request id (chosen when the app is built: without tracing
    the request path is the plain ring's)."""

    __slots__ = ()

    def note(
        self,
        status: int,
        seconds: float,
        route: str,
        request_id: str,
        client: Any,
        headers: list[tuple[bytes, bytes]],
        timings: list[Any],
        traffic: str | None = None,
    ) -> None:
        trace = current_trace.get()
        if trace is not None:
            trace.request_id = request_id
            headers = [*headers, (TRACE_ID_KEY, trace.trace_hex.encode())]
        # SeenRing.note's two appends, written out: no second call per request.
        now = time.time()
        self._recent.append((now, status, seconds, route, request_id, client, headers, timings))
        if traffic is None:
            self._samples.append((now, status, seconds))
        else:
            self._synthetic.append(now)
