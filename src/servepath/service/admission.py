"""Admission control: a bound on the work in the building, and a quick 503 past it.

Pure: no clock of its own, no I/O. The service tells it what happens (a request admitted, a
request done, a model call of ``n`` rows that took ``t`` seconds, how late the event loop
runs) and asks it one question per request: may this one come in?

A request may come in when both hold:

* **count** — fewer than ``max_in_flight`` requests are in the building (admitted and not
  yet answered), and fewer than ``max_body_bytes`` of their bodies;
* **expected wait** — the wait it can expect is at most ``max_wait``. Three estimates each
  bound it from below, and the largest is taken:

  - *the standing sojourn*, as CoDel measures a queue: the least time in the building of
    the requests answered in the last :data:`INTERVAL` (100 ms); when that least time is
    above the bound, every request waited longer, and the queue is standing, not a burst.
    A building in which nothing has been answered for an interval, with requests in it,
    has stood that long. This is what admitted requests experience, whatever makes them
    wait: the event loop (a fast model, where HTTP, JSON and validation dominate), the
    model, a backend. A request admitted on its head waits on its caller until its body has
    all arrived (:meth:`Admission.received`); its time in the building counts from then, so
    that a slow or stalled upload is never read as the server's queue.

  - *the event loop*: its standing lag, about what a request waits to be read at all,
    behind everything else that is ready: the queue still unread in the sockets, which the
    sojourn of admitted requests does not see. *Standing*, as in CoDel: the smallest lag of the
    last :data:`LAG_WINDOW` samples (about 100 ms), so that a burst that the loop works off
    (a closed-loop client's 64 requests arriving at once) is not taken for a queue that
    stays, which only overload makes.
  - *the model's queue*: the rest of the call in progress and the calls the rows ahead need
    before this request's rows run, timed by a least-squares fit of the model's own calls
    (``t = a + b·rows``, forgetting old calls; seeded at start from two timed calls on the
    model's example), so that a model whose cost is per call and one whose cost is per row
    are both predicted from what they did. The rows ahead are those queued for the model
    and one for each admitted request still on its way there: a burst read in one loop
    iteration is decided request by request, not all at once against an empty queue.

  A *stall* of the loop (one lag sample of at least :data:`STALL`: a garbage collection, a
  thread holding the interpreter, the machine's other work) is left to the standing lag to
  judge, and the two sojourn clocks do not count it: every request in the building waits
  out a stall alike, so that right after one, the least sojourn of an interval and "nothing
  answered for an interval" would both read a queue that is not there, and shed everything
  that arrives in the next moments. A loop that stalls again and again keeps its standing
  lag high, and is shed on that.

  (Little's law, in-flight count over the drain rate, is not one of them: when the loop is
  saturated by requests being shed, the admitted few drain slowly, the rate estimate falls,
  and the bound would shrink the building further, a spiral down to nothing.)

``max_wait`` is set by default from the measured service time: ten times what the model
takes for one row (from the fit above: the model's own time, which a busy event loop does
not inflate), and at least ``min_wait``. A request finding the building empty is always
admitted. Past the bound the answer is ``503`` (or ``429``: ``--shed-status``) at once, with
``Retry-After`` the time the building needs, at the rate it has been draining, to drain what
it holds and what it turned away in the last second (whole seconds, 1 to 60).

:meth:`Admission.saturation` is the same rule as a number: the expected wait over its bound,
0 to 1, and 1 exactly when a request arriving now would be shed (the scaling signal).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

Refusal = Literal["in_flight", "body_bytes", "wait"]
#: What :meth:`Admission.enter` hands out: (admitted at, or when its body was all read; body
#: bytes; sequence if alone; whether its body is still arriving).
Ticket = tuple[float, int, int, bool]

#: Default floor of the automatic wait bound, seconds.
DEFAULT_MIN_WAIT = 0.05
#: Default ceiling of the automatic wait bound, seconds.
DEFAULT_MAX_AUTO_WAIT = 2.0
#: The automatic wait bound is this many times the model's time for one row.
AUTO_WAIT_FACTOR = 10.0
#: Weight of a new sample in the exponentially weighted averages.
_ALPHA = 0.2
#: Forgetting factor of the model-call fit (about the last 50 calls count).
_FORGET = 0.98
#: Loop-lag samples whose minimum is the standing lag.
LAG_WINDOW = 10
#: The interval over which the least sojourn is the standing one, seconds (CoDel's 100 ms).
INTERVAL = 0.1
#: A loop-lag sample this long is a stall, which the sojourn clocks leave out, seconds.
STALL = INTERVAL / 2
#: The drain rate is sampled over windows of at least this much busy time, seconds.
_RATE_WINDOW = 0.25
#: The saturation of an empty building whose expected wait is past the bound (a lagging
#: loop): the next request is admitted all the same, so it stays below the shedding mark.
_EMPTY_CEILING = 0.99


@dataclass(frozen=True)
class AdmissionLimits:
    """The bounds; ``max_wait`` None means automatic (from the lone service time)."""

    max_in_flight: int = 512
    max_body_bytes: int = 256 * 1024 * 1024
    max_wait: float | None = None
    min_wait: float = DEFAULT_MIN_WAIT
    max_auto_wait: float = DEFAULT_MAX_AUTO_WAIT

    def to_json(self) -> dict[str, Any]:
        return {
            "max_in_flight": self.max_in_flight,
            "max_body_bytes": self.max_body_bytes,
            "max_wait_s": self.max_wait,
            "min_wait_s": self.min_wait,
        }


@dataclass(frozen=True)
class Decision:
    """The answer for one request: admitted, or refused with a reason and a retry time."""

    admitted: bool
    reason: Refusal | None = None
    expected_wait: float = 0.0
    retry_after: int = 0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "admitted": self.admitted,
            "reason": self.reason,
            "expected_wait_s": round(self.expected_wait, 6),
            "retry_after": self.retry_after,
            "detail": self.detail,
        }


ADMIT = Decision(True)


@dataclass(frozen=True)
class AdmissionSnapshot:
    """What the admission controller knows, for the health body and the metrics."""

    in_flight: int
    body_bytes: int
    max_wait: float
    expected_wait: float
    loop_lag: float
    standing_sojourn: float
    drain_rate: float | None
    lone_service: float | None
    call_fixed: float
    call_per_row: float
    admitted: int
    refused: dict[str, int]
    saturated: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "body_bytes": self.body_bytes,
            "max_wait_s": round(self.max_wait, 6),
            "expected_wait_s": round(self.expected_wait, 6),
            "loop_lag_s": round(self.loop_lag, 6),
            "standing_sojourn_s": round(self.standing_sojourn, 6),
            "drain_rate": None if self.drain_rate is None else round(self.drain_rate, 1),
            "lone_service_s": None if self.lone_service is None else round(self.lone_service, 6),
            "model_call_s": {
                "fixed": round(self.call_fixed, 6),
                "per_row": round(self.call_per_row, 9),
            },
            "admitted": self.admitted,
            "refused": dict(self.refused),
            "saturated": self.saturated,
        }


class CallFit:
    """Least squares ``t = a + b·n`` over model calls, older calls weighing less."""

    def __init__(self, forget: float = _FORGET) -> None:
        self.forget = forget
        self._w = self._n = self._t = self._nn = self._nt = 0.0
        # Solved once per observed call, read on every admission decision.
        self._ab = (0.0, 0.0)

    def observe(self, rows: int, seconds: float) -> None:
        f = self.forget
        n = float(rows)
        self._w = self._w * f + 1.0
        self._n = self._n * f + n
        self._t = self._t * f + seconds
        self._nn = self._nn * f + n * n
        self._nt = self._nt * f + n * seconds
        self._ab = self._solve()

    @property
    def known(self) -> bool:
        return self._w > 0

    def coefficients(self) -> tuple[float, float]:
        """``(a, b)``, both at least 0. With one batch size seen, all the cost is per row
        (the larger estimate of a bigger batch's time, so the safer one)."""
        return self._ab

    def _solve(self) -> tuple[float, float]:
        if self._w == 0 or self._n == 0:
            return 0.0, 0.0
        mean_n = self._n / self._w
        mean_t = self._t / self._w
        var = self._nn / self._w - mean_n * mean_n
        if var <= 1e-9 * max(1.0, mean_n * mean_n):
            return 0.0, mean_t / mean_n
        b = (self._nt / self._w - mean_n * mean_t) / var
        a = mean_t - b * mean_n
        if b < 0:
            return mean_t, 0.0
        if a < 0:
            return 0.0, mean_t / mean_n
        return a, b

    def predict(self, rows: int) -> float:
        a, b = self._ab
        return a + b * rows if rows > 0 else 0.0


class Admission:
    """The bound on work in the building. Times are seconds on one monotonic clock."""

    def __init__(self, limits: AdmissionLimits | None = None, *, max_batch: int = 256) -> None:
        self.limits = limits or AdmissionLimits()
        self.max_batch = max(1, max_batch)
        self.in_flight = 0
        # Of those, admitted on their heads with their bodies still arriving: they wait on
        # their callers, not on the server.
        self.receiving = 0
        self.body_bytes = 0
        self.loop_lag = 0.0
        self._lags: deque[float] = deque(maxlen=LAG_WINDOW)
        # Seconds the event loop stood still in stalls: the sojourn clocks run without them.
        self._stalled = 0.0
        self.fit = CallFit()
        self.admitted = 0
        self.refused: dict[str, int] = {}
        self._lone: float | None = None
        self._rate: float | None = None
        self._busy_since: float | None = None
        self._busy = 0.0
        self._completions = 0
        # CoDel: the least sojourn of the interval in progress, and of the last one.
        self._interval_end = -math.inf
        self._interval_min = math.inf
        self.standing = 0.0
        self._last_answer = 0.0
        self._ready_since = 0.0
        # Refusals in the last second, in tenths of a second: (tenth, count) per slot.
        self._tenths = [(-1, 0)] * 10
        # What the model queue holds, as the batcher last said.
        self._queued_rows = 0
        self._queued_requests = 0
        self._call_rows = 0
        self._call_requests = 0
        self._call_started: float | None = None

    # --- what happens ----------------------------------------------------------------

    def observe_lag(self, lag: float) -> None:
        """How late the event loop ran a timer (seconds, >= 0)."""
        lag = max(0.0, lag)
        self._lags.append(lag)
        self.loop_lag = min(self._lags)
        if lag >= STALL:
            self._stalled += lag

    def observe_call(self, rows: int, seconds: float) -> None:
        """A model call of ``rows`` rows took ``seconds``."""
        if rows > 0 and seconds >= 0:
            self.fit.observe(rows, seconds)

    def observe_queue(
        self,
        queued_rows: int,
        queued_requests: int,
        call_rows: int,
        call_requests: int,
        call_started: float | None,
    ) -> None:
        """The batcher's state: rows (and requests) waiting, rows (and requests) in the call
        in progress, and when it started."""
        self._queued_rows = queued_rows
        self._queued_requests = queued_requests
        self._call_rows = call_rows
        self._call_requests = call_requests
        self._call_started = call_started

    def enter(self, now: float, body_bytes: int = 0, *, receiving: bool = False) -> Ticket:
        """A request was admitted; hand the ticket back to :meth:`leave`. ``receiving``: its
        body is still to be read (hand the ticket to :meth:`received` once it is)."""
        now -= self._stalled
        alone = self.in_flight == 0
        if alone:
            self._busy_since = now
        if receiving:
            self.receiving += 1
        elif self.in_flight == self.receiving:
            self._ready_since = now
        self.in_flight += 1
        self.body_bytes += body_bytes
        self.admitted += 1
        return (now, body_bytes, self.admitted if alone else -1, receiving)

    def received(self, now: float, ticket: Ticket) -> Ticket:
        """The body of the request ``ticket`` has all arrived: from now on it waits on the
        server. The new ticket times its sojourn from here: a caller that takes its time to
        send (a slow link, a stalled upload) neither reads as a queue nor holds others back."""
        started, body_bytes, alone_seq, receiving = ticket
        if not receiving:
            return ticket
        now -= self._stalled
        self.receiving = max(0, self.receiving - 1)
        if self.in_flight - self.receiving == 1:
            self._ready_since = now
        return (max(started, now), body_bytes, alone_seq, False)

    def leave(self, now: float, ticket: Ticket) -> None:
        """The request ``ticket`` was answered."""
        started, body_bytes, alone_seq, receiving = ticket
        now -= self._stalled
        if receiving:
            self.receiving = max(0, self.receiving - 1)
        self.in_flight = max(0, self.in_flight - 1)
        self.body_bytes = max(0, self.body_bytes - body_bytes)
        if not receiving:
            # (A request answered before its body all arrived, refused or timed out on its
            # caller, spent its time waiting on the caller: it says nothing of the server's
            # queue or service time.)
            self._completions += 1
            sojourn = max(0.0, now - started)
            if now >= self._interval_end:
                # The interval that just ended says what stands; one that ended long ago (the
                # building was idle since) says nothing any more.
                recent = now - self._interval_end < INTERVAL
                self.standing = self._interval_min if recent else sojourn
                self._interval_end = now + INTERVAL
                self._interval_min = sojourn
            elif sojourn < self._interval_min:
                self._interval_min = sojourn
            self._last_answer = now
            # Alone all along: nothing was in flight when it came in, and nothing came in since.
            if alone_seq == self.admitted and self.in_flight == 0:
                took = max(0.0, now - started)
                lone = self._lone
                if lone is None:
                    self._lone = took
                else:
                    # Falls at once, rises slowly: a lone request that waited out a stall (a
                    # collection, a neighbour's burst) says little about the service time.
                    weight = _ALPHA if took < lone else _ALPHA / 10
                    self._lone = lone + weight * (took - lone)
        if self._busy_since is not None:
            self._busy += now - self._busy_since
            self._busy_since = now if self.in_flight else None
        if self._busy >= _RATE_WINDOW:
            sample = self._completions / self._busy
            self._rate = sample if self._rate is None else self._rate + 0.5 * (sample - self._rate)
            self._busy = 0.0
            self._completions = 0

    # --- the question ----------------------------------------------------------------

    @property
    def max_wait(self) -> float:
        limits = self.limits
        if limits.max_wait is not None:
            return limits.max_wait
        if not self.fit.known:
            return limits.min_wait
        auto = AUTO_WAIT_FACTOR * self.fit.predict(1)
        return min(max(auto, limits.min_wait), limits.max_auto_wait)

    def expected_wait(self, now: float, rows: int = 1) -> float:
        """The wait a new request of ``rows`` rows can expect (see the module docstring)."""
        # Measured over the last interval, or it is stale (answers stopped, or the building
        # went idle); on the clock without the loop's stalls, as enter and leave keep it.
        running = now - self._stalled
        standing = self.standing if running - self._interval_end < INTERVAL else 0.0
        if self.in_flight > self.receiving:
            # Nothing answered for a whole interval while requests wait on the server (not on
            # their callers' bodies): it has stood so long.
            stood = running - max(self._last_answer, self._ready_since)
            if stood > INTERVAL:
                standing = max(standing, stood)
        return max(standing, self.loop_lag, self.model_wait(now, rows))

    def model_wait(self, now: float, rows: int = 1) -> float:
        """What runs on the model before a new request's ``rows`` can."""
        fit = self.fit
        if not fit.known:
            return 0.0
        wait = 0.0
        if self._call_started is not None:
            remaining = fit.predict(self._call_rows) - (now - self._call_started)
            wait += max(0.0, remaining)
        # Admitted requests that have not reached the model yet (their bodies are being read
        # and validated) will queue there too: a row each, as far as is known before parsing.
        on_the_way = self.in_flight - self._queued_requests - self._call_requests
        queued = self._queued_rows + max(0, on_the_way)
        if queued:
            # The queued rows run first, in full batches, then this request's rows join the
            # last partial batch: what it waits for is the queue's calls plus the difference
            # its own rows make to the last one.
            batch = self.max_batch
            full, rest = divmod(queued, batch)
            wait += full * fit.predict(batch)
            if rest:
                wait += fit.predict(rest + rows) - fit.predict(rows)
        return wait

    def saturation(self, now: float) -> float:
        """The expected wait over its bound, 0 to 1: the scaling signal. 1 exactly when a
        request arriving now would be shed for its wait or for the count (the rule of
        :meth:`decide`); an empty building never sheds, so it reads below 1 whatever the loop
        lag says. In hundredths, rounded down: an idle loop's lag (tens of microseconds
        against a bound of tens of milliseconds) reads 0, and nothing short of the bound 1."""
        if self.in_flight >= self.limits.max_in_flight:
            return 1.0
        ratio = self.expected_wait(now) / self.max_wait
        if ratio >= 1.0:
            return 1.0 if ratio > 1.0 and self.in_flight > 0 else _EMPTY_CEILING
        return math.floor(ratio * 100) / 100

    def decide(self, now: float, *, body_bytes: int = 0, rows: int = 1) -> Decision:
        """Whether a request may come in now (it is not counted until :meth:`enter`)."""
        limits = self.limits
        if self.in_flight >= limits.max_in_flight:
            return self._refuse(
                now, "in_flight", 0.0, f"{self.in_flight} requests in flight (the limit)"
            )
        if body_bytes and self.body_bytes + body_bytes > limits.max_body_bytes:
            return self._refuse(
                now,
                "body_bytes",
                0.0,
                f"{self.body_bytes} bytes of request bodies in flight, limit "
                f"{limits.max_body_bytes}",
            )
        wait = self.expected_wait(now, rows)
        bound = self.max_wait
        if wait > bound and self.in_flight > 0:
            return self._refuse(
                now,
                "wait",
                wait,
                f"expected wait {wait * 1000:.0f} ms exceeds {bound * 1000:.0f} ms",
            )
        return ADMIT

    def _refuse(self, now: float, reason: Refusal, wait: float, detail: str) -> Decision:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        tenth = int(now * 10)
        slot = tenth % 10
        seen, count = self._tenths[slot]
        self._tenths[slot] = (tenth, count + 1 if seen == tenth else 1)
        return Decision(False, reason, wait, self.retry_after(now), detail)

    def turned_away(self, now: float) -> int:
        """Requests refused in the last second."""
        tenth = int(now * 10)
        return sum(count for seen, count in self._tenths if tenth - seen < 10)

    def retry_after(self, now: float) -> int:
        """Seconds for the building to drain what it holds and what it turned away in the
        last second, at the rate it has been draining; 1 to 60."""
        rate = self._rate
        if rate is None or rate <= 0:
            return 1
        return max(1, min(60, math.ceil((self.in_flight + self.turned_away(now)) / rate)))

    def snapshot(self, now: float) -> AdmissionSnapshot:
        a, b = self.fit.coefficients()
        wait = self.expected_wait(now)
        return AdmissionSnapshot(
            in_flight=self.in_flight,
            body_bytes=self.body_bytes,
            max_wait=self.max_wait,
            expected_wait=wait,
            loop_lag=self.loop_lag,
            standing_sojourn=self.standing,
            drain_rate=self._rate,
            lone_service=self._lone,
            call_fixed=a,
            call_per_row=b,
            admitted=self.admitted,
            refused=dict(self.refused),
            saturated=wait > self.max_wait or self.in_flight >= self.limits.max_in_flight,
        )


# --- the diagnostic routes ----------------------------------------------------------------

DiagnosticRefusal = Literal["overloaded", "rate"]


@dataclass(frozen=True)
class DiagnosticDecision:
    """Admitted, or refused with why, when to come back and the words for it."""

    admitted: bool
    reason: DiagnosticRefusal | None = None
    retry_after: int = 0
    detail: str = ""


DIAGNOSTIC_ADMIT = DiagnosticDecision(True)


@dataclass(frozen=True)
class RateLimits:
    """A token bucket: ``rate`` requests a second sustained, ``burst`` at once."""

    rate: float
    burst: int


#: The live page's data and the path echo, per worker: a viewer polls once a second, so
#: twenty viewers a worker, with room for a page load's burst.
DIAGNOSTIC_LIMITS = RateLimits(rate=20.0, burst=40)


class RateBudget:
    """A token bucket, pure: :meth:`take` with the time, and it says when to come back."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self.tokens = float(limits.burst)
        self._at: float | None = None

    def take(self, now: float) -> int:
        """0 when a token was taken; else the whole seconds until one is there (at least 1)."""
        limits = self.limits
        if self._at is not None:
            self.tokens = min(float(limits.burst), self.tokens + (now - self._at) * limits.rate)
        self._at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self.tokens) / limits.rate))


class Diagnostics:
    """Admission of the routes that serve people and tools rather than predictions.

    The live page's data and the path echo are optional work: none is taken on while the
    predictions' building is saturated (:class:`Admission`'s own bound), and past their
    budget they are refused at once, so that a flood of them is turned away cheaply and
    never counts against predictions. The handlers answer without awaiting anything, so a
    count of those in flight would say nothing; what a flood costs is its rate.

    ``/metrics`` is not admitted here at all: the operator's scraper must see an overload
    when there is one, and any budget a flood of page polls (or of scrapes) could spend is
    one the scraper would lose. A scrape costs what its fixed label set costs, like health,
    and a flood of them is bounded by the connection limits like a flood of 404s.
    """

    def __init__(self, admission: Admission, limits: RateLimits = DIAGNOSTIC_LIMITS) -> None:
        self.admission = admission
        self.budget = RateBudget(limits)

    def decide(self, now: float) -> DiagnosticDecision:
        adm = self.admission
        wait = adm.expected_wait(now)
        if adm.in_flight and (wait > adm.max_wait or adm.in_flight >= adm.limits.max_in_flight):
            # Predictions come first: diagnostic work waits until they are under their bound.
            return _refused_diagnostic(
                "overloaded", adm.retry_after(now), "predictions are at their bound"
            )
        retry = self.budget.take(now)
        if retry:
            return _refused_diagnostic("rate", retry, "diagnostic requests past their budget")
        return DIAGNOSTIC_ADMIT


def _refused_diagnostic(
    reason: DiagnosticRefusal, retry_after: int, detail: str
) -> DiagnosticDecision:
    return DiagnosticDecision(False, reason, retry_after, detail)
