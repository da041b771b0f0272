"""The load engine: aiohttp on uvloop, open loop or closed loop, in one or several processes.

Open loop: request ``i`` is due at a fixed time whatever the server does, and its latency is
counted from that time, so a stalled server cannot hide the requests it held up (no
coordinated omission). Closed loop: ``C`` workers each send, wait, send again.

Requests go through the forward proxy :func:`~servepath.net.proxy.choose_proxy` picks
(as for `request`, `http` and `doctor`), trust what :class:`~servepath.client.Trust` says,
and a failed one is named with the shared failure kinds (refused, dns, proxy, tls, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psutil
import uvloop

from servepath.client import Trust
from servepath.contract import predict_url as contract_predict_url
from servepath.errors import ConfigError, LoadError
from servepath.load.capacity import SLO, ReplicaEstimate, estimate_replicas, fit_usl
from servepath.load.payloads import Instance, PayloadSource
from servepath.load.recorder import Recorder, RunShape, build_report
from servepath.load.report import (
    ErrorClass,
    FindMaxReport,
    FindMaxStep,
    Mode,
    RunReport,
    SweepReport,
)
from servepath.load.sampling import InstanceSpace
from servepath.load.schedule import (
    DEFAULT_MAX_INFLIGHT,
    FindMaxPlan,
    OpenLoopSchedule,
    interleaved_share,
    split_count,
    split_open_loop,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_LATE_THRESHOLD = 0.010
PROGRESS_INTERVAL = 0.5
#: The open loop's timer resolution: uvloop rounds timers to the nearest millisecond.
TICK = 0.001
#: Time the processes of a multi-process run get to start before the common start time.
PROCESS_START_MARGIN = 0.3


@dataclass(frozen=True)
class LoadPlan:
    """Everything one load run does. Exactly one of ``rate`` (open loop) and ``concurrency``
    (closed loop); at least one of ``duration`` and ``requests``."""

    url: str
    instances: tuple[Instance, ...]
    rate: float | None = None
    concurrency: int | None = None
    duration: float | None = None
    requests: int | None = None
    warmup: float = 0.0
    unique: float = 0.0
    batch: int = 1
    timeout: float = DEFAULT_TIMEOUT
    processes: int = 1
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    late_threshold: float = DEFAULT_LATE_THRESHOLD
    #: Seeds the fresh instances; give each run against one server a different one (a
    #: random one per invocation) so that its "fresh" instances are not cached already.
    salt: int = 0
    slo: SLO | None = None
    #: Where fresh instances are drawn from (None: the space ``instances`` span).
    space: InstanceSpace | None = None
    #: The forward proxy requests go through (choose_proxy's pick), and why.
    proxy: str | None = None
    proxy_reason: str = "no proxy variable applies"
    trust: Trust = field(default_factory=Trust)
    #: Sent with every request (the API key's Authorization header).
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.concurrency is None):
            raise ConfigError("give exactly one of --rate (open loop) and --concurrency")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"--rate must be above zero, got {self.rate:g}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.duration is None and self.requests is None:
            raise ConfigError("give --duration or --requests")
        if self.requests is not None and self.requests < 1:
            raise ConfigError("--requests must be at least 1")
        if self.warmup < 0:
            raise ConfigError("--warmup cannot be negative")
        if self.processes < 1:
            raise ConfigError("--processes must be at least 1")
        if self.concurrency is not None and self.processes > self.concurrency:
            raise ConfigError("--processes cannot exceed --concurrency")
        if self.timeout <= 0:
            raise ConfigError("--timeout must be above zero")
        if self.max_inflight < 1:
            raise ConfigError("the in-flight limit must be at least 1")
        PayloadSource(self.instances, unique=self.unique, batch=self.batch, space=self.space)
        if self.proxy is not None and not self.proxy.startswith("http://"):
            raise ConfigError(
                f"the load generator goes through http:// proxies only, not {self.proxy}"
            )

    @property
    def mode(self) -> Mode:
        return "open" if self.rate is not None else "closed"

    def shape(self) -> RunShape:
        window: float | None = self.duration
        if self.mode == "open" and self.duration is None:
            assert self.rate is not None and self.requests is not None
            window = self.requests / self.rate
        if self.mode == "closed":
            window = None
        return RunShape(
            url=self.url,
            mode=self.mode,
            target_rate=self.rate,
            concurrency=self.concurrency,
            processes=self.processes,
            window_s=window,
            inflight_limit=self.max_inflight if self.mode == "open" else None,
        )


@dataclass(frozen=True)
class Progress:
    """A live view of a running load test."""

    elapsed_s: float
    warming_up: bool
    sent: int
    succeeded: int
    failed: int
    inflight: int
    p99_ms: float


ProgressCallback = Callable[[Progress], None]


# --- request classification (pure) -------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """What one failed request ran into: its coarse class and the shared failure kind."""

    error: ErrorClass
    kind: str  # one of servepath.net.http_errors's HttpErrorKind
    message: str


_CLASS_OF_KIND: dict[str, ErrorClass] = {
    "dns": "connect",
    "refused": "connect",
    "unreachable": "connect",
    "connect_timeout": "connect",
    "proxy": "connect",
    "tls": "connect",
    "read_timeout": "timeout",
    "write_timeout": "timeout",
    "pool_timeout": "timeout",
    "reset": "disconnect",
    "protocol": "disconnect",
}


def classify_exception(exc: BaseException, *, proxy: str | None = None) -> Failure:
    """What an exception from the HTTP client (aiohttp) means, in the words every other
    servepath client uses (``proxy``: the forward proxy the request went through)."""
    from servepath.net.http_errors import classify_http_error

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        if proxy:
            return Failure("connect", "proxy", f"no answer from the forward proxy {proxy} in time")
        return Failure(
            "connect",
            "connect_timeout",
            "no answer to the connection attempt in time: packets dropped by a firewall, or "
            "the host is down",
        )
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return Failure(
            "timeout",
            "read_timeout",
            "connected, but no response in time: the server (or a proxy) accepted the request "
            "and is slow or stuck",
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Failure("disconnect", "reset", "the server closed the connection without answering")
    if isinstance(exc, ConnectionResetError):
        who = f"the forward proxy {proxy}" if proxy else "the server"
        return Failure("disconnect", "reset", f"{who} closed or reset the connection: {exc}")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return Failure(
            "connect", "proxy", f"the forward proxy {proxy or ''} refused: {exc.message}"
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Failure("disconnect", "protocol", f"the answer broke off: {exc}")
    # The socket and TLS errors behind aiohttp's own say what happened; read them as every
    # servepath client does.
    cause = exc.__cause__ if isinstance(exc, aiohttp.ClientConnectorCertificateError) else exc
    kind, message = classify_http_error(cause or exc, proxy=proxy)
    return Failure(_CLASS_OF_KIND.get(kind, "other"), kind, message)


def check_url(url: str) -> None:
    """Refuse what is not an http(s) URL, before anything is sent."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{url!r} is not an http:// or https:// URL")


def predict_url(url: str, spec: Mapping[str, Any] | None = None) -> str:
    """:func:`servepath.contract.predict_url` for a URL :func:`check_url` accepts."""
    check_url(url)
    return contract_predict_url(url, spec)


# --- one process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Share:
    """One process's part of a plan."""

    index: int
    processes: int
    schedule: OpenLoopSchedule | None
    concurrency: int
    requests: int | None


def _shares(plan: LoadPlan) -> list[_Share]:
    n = plan.processes
    if plan.mode == "open":
        assert plan.rate is not None
        schedules = split_open_loop(plan.rate, n)
        return [
            _Share(
                j,
                n,
                schedules[j],
                0,
                interleaved_share(plan.requests, j, n) if plan.requests else None,
            )
            for j in range(n)
        ]
    assert plan.concurrency is not None
    workers = split_count(plan.concurrency, n)
    budgets = split_count(plan.requests, n) if plan.requests else [None] * n
    return [_Share(j, n, None, workers[j], budgets[j]) for j in range(n)]


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class _Engine:
    """Drives one process's share of a plan against the server."""

    def __init__(
        self,
        plan: LoadPlan,
        share: _Share,
        start: float | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.plan = plan
        self.share = share
        self._start = start
        self.progress = progress
        self.payloads = PayloadSource(
            plan.instances,
            unique=plan.unique,
            batch=plan.batch,
            salt=plan.salt,
            space=plan.space,
            stream=share.index,
        )
        self.payloads.prepare()
        self.inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def start_at(self, start: float) -> None:
        """Send the first request at ``start`` (``time.monotonic()``), shared by processes."""
        self._start = start

    async def run(self) -> Recorder:
        proc = psutil.Process()
        # One connection per request in flight at most: a burst after a stall reuses the
        # pool instead of opening thousands of sockets the server then has to accept.
        limit = self.plan.max_inflight if self.plan.mode == "open" else self.share.concurrency
        tls = self.plan.trust.context() if urlsplit(self.plan.url).scheme == "https" else None
        # A forward proxy may close the connection after each answer without saying so
        # (tinyproxy does), and a request written to such a connection is lost: through a
        # proxy every request gets a connection of its own.
        connector = aiohttp.TCPConnector(
            limit=limit,
            ttl_dns_cache=300,
            ssl=tls if tls is not None else True,
            force_close=self.plan.proxy is not None,
        )
        timeout = aiohttp.ClientTimeout(total=self.plan.timeout)
        headers = {"Content-Type": "application/json", **dict(self.plan.headers)}
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=headers,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        ) as session:
            self.session = session
            # The schedule starts once the client is ready, or the first requests would be
            # late by the set-up time; several processes share a start time given to them.
            self.start = self._start if self._start is not None else time.monotonic() + 0.01
            self.measure_from = self.start + self.plan.warmup
            self.recorder = Recorder(self.measure_from, late_threshold=self.plan.late_threshold)
            delay = self.start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            cpu0 = proc.cpu_times()
            wall0 = time.monotonic()
            ticker = asyncio.create_task(self._tick()) if self.progress else None
            try:
                if self.plan.mode == "open":
                    await self._open_loop()
                else:
                    await self._closed_loop()
            finally:
                if ticker:
                    ticker.cancel()
            cpu1 = proc.cpu_times()
            wall = max(time.monotonic() - wall0, 1e-9)
        busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        self.recorder.cpu_percent.append(100.0 * busy / wall)
        return self.recorder

    async def _send(
        self, index: int, intended: float, *, started: float | None, waited: bool
    ) -> None:
        body, _ = self.payloads.body(index)
        status: int | None = None
        failure: Failure | None = None
        server_timing = x_cache = None
        self.inflight += 1
        sent_at = time.monotonic()
        try:
            async with self.session.post(
                self.url, data=body, allow_redirects=False, proxy=self.plan.proxy
            ) as resp:
                await resp.read()
                status = resp.status
                server_timing = resp.headers.get("Server-Timing")
                x_cache = resp.headers.get("X-Cache")
        except Exception as exc:
            failure = classify_exception(exc, proxy=self.plan.proxy)
            log.debug("request %d failed: %r", index, exc)
        finally:
            self.inflight -= 1
        self.recorder.record(
            intended,
            sent_at,
            time.monotonic(),
            status=status,
            error=failure.error if failure else None,
            kind=failure.kind if failure else None,
            message=failure.message if failure else "",
            server_timing=server_timing,
            x_cache=x_cache,
            waited=waited,
            started=started,
        )

    @property
    def url(self) -> str:
        return self.plan.url

    async def _open_loop(self) -> None:
        schedule = self.share.schedule
        assert schedule is not None
        n_procs = self.share.processes
        warm = schedule.count_before(self.plan.warmup)
        if self.share.requests is not None:
            total = warm + self.share.requests
        else:
            assert self.plan.duration is not None
            total = schedule.count_before(self.plan.warmup + self.plan.duration)
        slots = asyncio.Semaphore(self.plan.max_inflight)
        i = 0
        while i < total:
            now = time.monotonic()
            due = self.start + schedule.intended(i)
            if due > now:
                # uvloop rounds timers to the nearest millisecond and may fire one early;
                # sleeping at least a tick sends the requests due by then together.
                await asyncio.sleep(max(due - now, TICK))
                continue
            while i < total and self.start + schedule.intended(i) <= now:
                intended = self.start + schedule.intended(i)
                # Request i of process j is request j + i*N of the whole run.
                index = self.share.index + i * n_procs
                task = asyncio.create_task(self._open_request(slots, index, intended))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                i += 1
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def _open_request(self, slots: asyncio.Semaphore, index: int, intended: float) -> None:
        started = time.monotonic()
        waited = slots.locked()
        async with slots:
            await self._send(index, intended, started=started, waited=waited)

    async def _closed_loop(self) -> None:
        end = self.measure_from + self.plan.duration if self.plan.duration is not None else None
        budget = self.share.requests
        counter = 0
        measured = 0

        async def worker() -> None:
            nonlocal counter, measured
            while True:
                now = time.monotonic()
                if end is not None and now >= end:
                    return
                if budget is not None and now >= self.measure_from:
                    if measured >= budget:
                        return
                    measured += 1
                index = self.share.index + counter * self.share.processes
                counter += 1
                await self._send(index, now, started=None, waited=False)

        await asyncio.gather(*(worker() for _ in range(self.share.concurrency)))

    async def _tick(self) -> None:
        assert self.progress is not None
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            self.progress(self.snapshot())

    def snapshot(self) -> Progress:
        rec = self.recorder
        now = time.monotonic()
        return Progress(
            elapsed_s=now - self.start,
            warming_up=now < self.measure_from,
            sent=rec.sent,
            succeeded=rec.succeeded,
            failed=rec.failed,
            inflight=self.inflight,
            p99_ms=rec.latency.percentile_ms(99),
        )


def _run_share(
    plan: LoadPlan, share: _Share, start: float | None, progress: ProgressCallback | None
) -> Recorder:
    _raise_fd_limit(plan.max_inflight if plan.mode == "open" else share.concurrency)
    engine = _Engine(plan, share, start, progress)
    return uvloop.run(engine.run())


def _worker_main(plan: LoadPlan, share: _Share, inbox: Any, outbox: Any) -> None:
    """Entry point of a generator process: get ready (its fresh values drawn), wait for the
    common start time, run, send back."""
    try:

        def report(p: Progress) -> None:
            outbox.put(("progress", share.index, p))

        _raise_fd_limit(plan.max_inflight if plan.mode == "open" else share.concurrency)
        engine = _Engine(plan, share, None, report)
        outbox.put(("ready", share.index, None))
        engine.start_at(inbox.get())
        recorder = uvloop.run(engine.run())
        outbox.put(("done", share.index, recorder))
    except BaseException as exc:
        outbox.put(("error", share.index, f"{type(exc).__name__}: {exc}"))


def _run_processes(plan: LoadPlan, progress: ProgressCallback | None) -> Recorder:
    ctx = multiprocessing.get_context("spawn")
    outbox = ctx.Queue()
    shares = _shares(plan)
    inboxes = [ctx.Queue() for _ in shares]
    procs = [
        ctx.Process(target=_worker_main, args=(plan, s, inboxes[s.index], outbox), daemon=True)
        for s in shares
    ]
    for p in procs:
        p.start()
    recorders: dict[int, Recorder] = {}
    latest: dict[int, Progress] = {}
    ready = 0
    try:
        limit = time.monotonic() + 60
        while ready < len(procs):
            kind, index, payload = _next_message(outbox, procs, limit)
            if kind == "error":
                raise LoadError(f"generator process {index} failed: {payload}")
            ready += kind == "ready"
        start = time.monotonic() + PROCESS_START_MARGIN
        for inbox in inboxes:
            inbox.put(start)
        run_for = (plan.warmup + (plan.duration or 0)) + plan.timeout * 2 + 120
        limit = time.monotonic() + run_for if plan.requests is None else float("inf")
        while len(recorders) < len(procs):
            kind, index, payload = _next_message(outbox, procs, limit)
            if kind == "error":
                raise LoadError(f"generator process {index} failed: {payload}")
            if kind == "done":
                recorders[index] = payload
            elif kind == "progress" and progress is not None:
                latest[index] = payload
                progress(_combine(list(latest.values())))
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    merged = recorders[0]
    for j in range(1, len(procs)):
        merged.merge(recorders[j])
    return merged


def _next_message(outbox: Any, procs: Sequence[Any], limit: float) -> tuple[str, int, Any]:
    while True:
        try:
            message: tuple[str, int, Any] = outbox.get(timeout=0.25)
            return message
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                code = dead[0].exitcode
                raise LoadError(f"a generator process exited with code {code}") from None
            if time.monotonic() > limit:
                raise LoadError("the generator processes did not finish in time") from None


def _combine(parts: list[Progress]) -> Progress:
    return Progress(
        elapsed_s=max(p.elapsed_s for p in parts),
        warming_up=any(p.warming_up for p in parts),
        sent=sum(p.sent for p in parts),
        succeeded=sum(p.succeeded for p in parts),
        failed=sum(p.failed for p in parts),
        inflight=sum(p.inflight for p in parts),
        p99_ms=max(p.p99_ms for p in parts),
    )


def run_load(plan: LoadPlan, progress: ProgressCallback | None = None) -> RunReport:
    """Run ``plan`` and report it. Blocks; starts its own event loop (and processes)."""
    if plan.processes == 1:
        recorder = _run_share(plan, _shares(plan)[0], None, progress)
    else:
        recorder = _run_processes(plan, progress)
    return build_report(plan.shape(), recorder, plan.slo)


# --- capacity ------------------------------------------------------------------------------


StepCallback = Callable[[FindMaxStep], None]


def find_max(
    plan: LoadPlan,
    slo: SLO,
    *,
    factor: float = 2.0,
    tolerance: float = 0.05,
    max_rate: float | None = None,
    cooldown: float = 1.0,
    target_rps: float | None = None,
    headroom: float = 0.3,
    progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
) -> FindMaxReport:
    """Step the open-loop rate up from ``plan.rate``, then bisect, to the highest rate that
    meets ``slo``. Each step runs ``plan`` (its duration or request count) at one rate."""
    if plan.rate is None:
        raise ConfigError("--find-max steps an open-loop rate; give --rate to start from")
    search = FindMaxPlan(plan.rate, factor=factor, tolerance=tolerance, max_rate=max_rate)
    steps: list[FindMaxStep] = []
    best: RunReport | None = None
    salt = plan.salt
    rate = search.next_rate()
    while rate is not None:
        run = run_load(replace(plan, rate=rate, slo=slo, salt=salt), progress)
        salt += run.sent + run.warmup_requests + plan.processes
        check = run.slo
        assert check is not None
        kept = bool(run.generator.kept_rate)
        server_failed = (
            check.service_ms is not None and check.service_ms > slo.threshold_ms
        ) or "errors" in check.failures
        if kept:
            outcome: str = "pass" if check.met else "fail"
            note = check.describe()
        elif server_failed:
            # Late sends inflate the latency from the intended time, but the server missed
            # the SLO on its own (service time or errors): the step fails either way.
            outcome = "fail"
            note = f"{check.describe()}; service time p{slo.percentile:g} {check.service_ms} ms"
        else:
            outcome = "inconclusive"
            note = run.problems[-1] if run.problems else "the generator fell behind"
        step = FindMaxStep(
            rate=rate,
            achieved_rate=run.achieved_rate,
            observed_ms=check.observed_ms,
            error_ratio=check.error_ratio,
            passed=outcome == "pass",
            kept_rate=kept,
            note=note,
            cache_hit_ratio=run.cache.hit_ratio,
        )
        steps.append(step)
        if on_step:
            on_step(step)
        if outcome == "inconclusive":
            # The generator could not keep this rate and the server did not fail on its own,
            # so this step says nothing about the server; a higher one would say even less.
            search.stop(f"the generator could not keep {rate:g} req/s")
        else:
            search.record(rate, "pass" if outcome == "pass" else "fail")
            if outcome == "pass" and (best is None or rate > (best.target_rate or 0)):
                best = run
        rate = search.next_rate()
        if rate is not None and cooldown > 0:
            time.sleep(cooldown)
    problems: list[str] = []
    if search.passed is None:
        problems.append(f"no rate tried met the SLO ({slo.label})")
    if search.stopped:
        problems.append(f"search stopped early: {search.stopped}; add --processes")
    replicas: ReplicaEstimate | None = None
    if target_rps is not None and search.passed is not None:
        replicas = estimate_replicas(
            target_rps,
            search.passed,
            headroom=headroom,
            cache_hit_ratio=best.cache.hit_ratio if best else None,
        )
    return FindMaxReport(
        url=plan.url,
        slo=slo,
        steps=tuple(steps),
        max_rate=search.passed,
        stopped=search.stopped,
        best=best,
        replicas=replicas,
        problems=tuple(problems),
    )


def sweep_concurrency(
    plan: LoadPlan,
    concurrencies: Sequence[int],
    *,
    slo: SLO | None,
    target_rps: float | None = None,
    headroom: float = 0.3,
    cooldown: float = 0.5,
    progress: ProgressCallback | None = None,
    on_run: Callable[[RunReport], None] | None = None,
) -> SweepReport:
    """Closed-loop runs at each concurrency; a USL fit when three or more were measured."""
    runs: list[RunReport] = []
    salt = plan.salt
    for k, c in enumerate(concurrencies):
        if k and cooldown > 0:
            time.sleep(cooldown)
        run = run_load(replace(plan, concurrency=c, rate=None, slo=slo, salt=salt), progress)
        # The next run's fresh instances must not repeat this run's (the server cached them).
        salt += run.sent + run.warmup_requests + c + 1
        runs.append(run)
        if on_run:
            on_run(run)
    # Missing the SLO at some concurrencies is what a sweep is for; other problems stand.
    problems = [
        f"concurrency {r.concurrency}: {p}"
        for r in runs
        for p in r.problems
        if not p.startswith("SLO ")
    ]
    meeting = [r for r in runs if r.succeeded and (r.slo is None or r.slo.met)]
    best = max(meeting, key=lambda r: r.achieved_rate, default=None)
    capacity = best.achieved_rate if best is not None else None
    usl = None
    warnings: list[str] = []
    points = [(float(r.concurrency or 1), r.achieved_rate) for r in runs if r.achieved_rate > 0]
    if len({n for n, _ in points}) >= 3:
        usl = fit_usl(points)
        if not usl.good_fit and target_rps is None:  # else the replica estimate says so
            warnings.append(f"the USL fit: {usl.weakness}")
    replicas = None
    if target_rps is not None:
        if capacity is None:
            problems.append("no concurrency met the SLO, so no replica count can be estimated")
        else:
            replicas = estimate_replicas(
                target_rps,
                capacity,
                headroom=headroom,
                usl=usl,
                cache_hit_ratio=best.cache.hit_ratio if best else None,
            )
    if slo is not None and capacity is None:
        problems.append(f"no concurrency met the SLO ({slo.label})")
    return SweepReport(
        url=plan.url,
        slo=slo,
        runs=tuple(runs),
        usl=usl,
        capacity_rps=capacity,
        replicas=replicas,
        problems=tuple(dict.fromkeys(problems)),
        capacity_cache_hit_ratio=best.cache.hit_ratio if best else None,
        warnings=tuple(warnings),
    )
