"""One `servepath load` as a typed call: a :class:`LoadRequest` in, a :class:`LoadResult` out.

:func:`prepare` checks the request, asks the server (its OpenAPI document) what to send and
where, and builds the :class:`~servepath.load.generator.LoadPlan`; :func:`run` carries the
plan out as one run, a closed-loop sweep or a capacity search. The command line parses
flags into a request and renders the result; nothing here prints.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from servepath.client import Trust, auth_headers, fetch_spec, names_no_route
from servepath.config import ProxyEnv
from servepath.errors import ClientFailure, ExampleUnavailable, ProblemFound, UsageError
from servepath.load.capacity import DEFAULT_HEADROOM, SLO
from servepath.load.generator import (
    LoadPlan,
    Progress,
    StepCallback,
    check_url,
    find_max,
    predict_url,
    run_load,
    sweep_concurrency,
)
from servepath.load.locust import LocustScenario
from servepath.load.payloads import Instance, example_from_openapi
from servepath.load.report import FindMaxReport, RunReport, SweepReport
from servepath.load.sampling import InstanceSpace, instance_schema
from servepath.load.schedule import DEFAULT_MAX_INFLIGHT
from servepath.net.proxy import choose_proxy
from servepath.output import percent
from servepath.traffic import header_for

__all__ = [
    "LoadReport",
    "LoadRequest",
    "LoadResult",
    "ServerDocumentUnavailable",
    "describe_sending",
    "locust_scenario",
    "prepare",
    "run",
]

#: What one load produces: a run, a capacity search, or a closed-loop sweep.
LoadReport = RunReport | FindMaxReport | SweepReport

#: A run with neither --rate nor --concurrency is a closed loop at this concurrency.
DEFAULT_CONCURRENCY = 10
#: The rate a capacity search starts from when none is given.
DEFAULT_START_RATE = 10.0
#: Measured seconds when neither a duration nor a request count is given.
DEFAULT_DURATION = 10.0


class ServerDocumentUnavailable(ProblemFound):
    """The server's OpenAPI document, which the run needs before it starts, did not come."""

    def __init__(self, failure: str, message: str, hints: tuple[str, ...]) -> None:
        super().__init__(message)
        self.failure = failure
        self.hints = hints

    def details(self) -> dict[str, Any]:
        return {"stage": "openapi"}


@dataclass(frozen=True)
class LoadRequest:
    """What the user asked of a load run, flags already read into values.

    ``concurrency``: closed loop, one level or a sweep; ``rate``: open loop. ``instances``:
    the instances given (``--data``), else the server's example is sent. ``unique``: the
    share of requests carrying fresh instances (``None``: all fresh without ``instances``,
    none with them); ``repeat`` is ``unique=0``.
    """

    url: str
    trust: Trust
    proxy_env: ProxyEnv = field(default_factory=ProxyEnv)
    proxy: str | None = None
    api_key: str | None = None
    rate: float | None = None
    concurrency: tuple[int, ...] = ()
    duration: float | None = None
    requests: int | None = None
    warmup: float = 0.0
    instances: tuple[Instance, ...] | None = None
    unique: float | None = None
    repeat: bool = False
    batch: int = 1
    timeout: float = 10.0
    processes: int = 1
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    slo: SLO | None = None
    find_max: bool = False
    max_rate: float | None = None
    target_rps: float | None = None
    headroom: float = DEFAULT_HEADROOM

    def check(self) -> None:
        """Raise :class:`~servepath.errors.UsageError` for options that do not go together."""
        check_url(self.url)
        levels = self.concurrency
        if self.rate is not None and levels:
            raise UsageError("give --rate (open loop) or --concurrency, not both")
        if any(level < 1 for level in levels):
            raise UsageError("concurrency must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be above zero")
        if len(levels) > 1 and self.find_max:
            raise UsageError("--find-max steps a rate; it does not take a concurrency list")
        if (self.find_max or self.target_rps is not None) and self.slo is None:
            raise UsageError("--find-max and --target-rps need --slo, e.g. p99=50ms")
        if self.target_rps is not None and not (self.find_max or levels):
            raise UsageError("--target-rps needs --find-max or closed-loop runs to measure")
        if self.repeat and self.unique is not None:
            raise UsageError("give --repeat (all repeated) or --unique SHARE, not both")
        if self.unique is not None and not 0 <= self.unique <= 1:
            raise UsageError("--unique is a share from 0 to 1")

    @property
    def fresh_share(self) -> float:
        """The share of requests carrying fresh instances."""
        if self.repeat:
            return 0.0
        if self.unique is not None:
            return self.unique
        return 0.0 if self.instances is not None else 1.0


@dataclass(frozen=True)
class LoadResult:
    """A finished load: the plan it carried out and what it measured."""

    plan: LoadPlan
    report: LoadReport

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def detail(self) -> RunReport | None:
        """The one run whose series and plots stand for the result (the best of several)."""
        if isinstance(self.report, RunReport):
            return self.report
        if isinstance(self.report, FindMaxReport):
            return self.report.best
        runs = self.report.runs
        return max(runs, key=lambda r: r.achieved_rate) if runs else None

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "sending": sending(self.plan)}


def prepare(request: LoadRequest) -> LoadPlan:
    """The plan for ``request``: checked, its target and instances from the server's document
    (unless ``--data`` and a URL naming its route make asking unnecessary), its proxy chosen."""
    request.check()
    if request.url.startswith("https://"):
        request.trust.context()  # a CA bundle that cannot be read is bad usage, before the run
    choice = choose_proxy(request.url, request.proxy_env, request.proxy)
    if choice.proxy is not None and not choice.proxy.startswith("http://"):
        raise UsageError(
            f"the load generator goes through http:// forward proxies only; {choice.proxy} "
            f"({choice.reason}) is not one"
        )
    # Every request of the run, the document's included, says it is load, so that the server
    # leaves it out of the numbers of real traffic.
    headers = {**auth_headers(request.api_key), **header_for("load")}
    target, instances, space = _target_and_instances(request, headers)
    choice = choose_proxy(target, request.proxy_env, request.proxy)
    rate, levels = request.rate, request.concurrency
    if rate is None and not levels:
        if request.find_max:
            rate = DEFAULT_START_RATE
        else:
            levels = (DEFAULT_CONCURRENCY,)
    seconds = request.duration
    if seconds is None and request.requests is None:
        seconds = DEFAULT_DURATION
    return LoadPlan(
        url=target,
        instances=tuple(instances),
        rate=rate,
        concurrency=levels[0] if levels and rate is None else None,
        duration=seconds,
        requests=request.requests,
        warmup=request.warmup,
        unique=request.fresh_share,
        batch=request.batch,
        timeout=request.timeout,
        processes=request.processes,
        max_inflight=request.max_inflight,
        slo=request.slo,
        salt=random.randrange(1 << 24),
        space=space,
        proxy=choice.proxy,
        proxy_reason=choice.reason,
        trust=request.trust,
        headers=tuple(headers.items()),
    )


def run(
    request: LoadRequest,
    plan: LoadPlan,
    *,
    progress: Callable[[Progress], None] | None = None,
    on_step: StepCallback | None = None,
) -> LoadResult:
    """Carry ``plan`` out as ``request`` asks: a capacity search (``find_max``), a sweep
    (several concurrencies, or a replica estimate), or one run. ``progress`` is called
    while a run goes on; ``on_step`` after each step of a capacity search."""
    levels = list(request.concurrency) or ([plan.concurrency] if plan.concurrency else [])
    report: LoadReport
    if request.find_max:
        assert request.slo is not None  # LoadRequest.check
        report = find_max(
            plan,
            request.slo,
            max_rate=request.max_rate,
            target_rps=request.target_rps,
            headroom=request.headroom,
            progress=progress,
            on_step=on_step,
        )
    elif len(levels) > 1 or request.target_rps is not None:
        report = sweep_concurrency(
            plan,
            levels,
            slo=request.slo,
            target_rps=request.target_rps,
            headroom=request.headroom,
            progress=progress,
        )
    else:
        report = run_load(plan, progress)
    return LoadResult(plan, report)


def locust_scenario(request: LoadRequest, plan: LoadPlan) -> LocustScenario:
    """The scenario of ``plan`` as a Locust file writes it (``--locustfile``)."""
    parts = urlsplit(plan.url)
    return LocustScenario(
        host=urlunsplit((parts.scheme, parts.netloc, "", "", "")),
        predict_path=parts.path + (f"?{parts.query}" if parts.query else ""),
        instances=plan.instances,
        unique=plan.unique,
        batch=plan.batch,
        slo=plan.slo,
        rate=request.rate,
        users=request.concurrency[0] if request.concurrency else DEFAULT_CONCURRENCY,
        timeout=plan.timeout,
        space=plan.space,
    )


def sending(plan: LoadPlan) -> dict[str, Any]:
    """What the run sends and how, as data (the ``sending`` key of ``--json``)."""
    return {
        "unique": plan.unique,
        "instances": len(plan.instances),
        "space": plan.space.to_json() if plan.space is not None else None,
        "proxy": plan.proxy,
        "proxy_reason": plan.proxy_reason,
        "trust": plan.trust.to_json(),
    }


def describe_sending(plan: LoadPlan) -> str:
    """What the run sends and how, in one sentence."""
    if plan.unique >= 1:
        space = plan.space or InstanceSpace.from_instances(plan.instances)
        what = space.describe()
    elif plan.unique <= 0:
        n = len(plan.instances)
        what = (
            "the same instance every time (cache hits after the first answer)"
            if n == 1
            else f"{n} instances, cycled (cache hits once each has been answered)"
        )
    else:
        what = f"{percent(plan.unique)} of requests with fresh instances, the rest repeated"
    via = f"; through the proxy {plan.proxy} ({plan.proxy_reason})" if plan.proxy else ""
    return f"sending {what}{via}"


def _server_document(
    request: LoadRequest, headers: dict[str, str], *, required: bool
) -> dict[str, Any] | None:
    """The server's OpenAPI document, read as `request` reads it (its proxy, its trust, its
    named failures); ``required``: without it the run cannot start."""
    try:
        return fetch_spec(
            request.url, proxy_env=request.proxy_env, proxy=request.proxy, trust=request.trust,
            timeout=5, headers=headers,
        )  # fmt: skip
    except ClientFailure as exc:
        if not required:  # the default route, and instances drawn around the data
            return None
        r = exc.result
        raise ServerDocumentUnavailable(
            r.failure or "other", f"GET {r.url} failed ({r.failure}): {r.message}", r.hints
        ) from exc
    except ExampleUnavailable as exc:
        if not required:
            return None
        hints = exc.result.hints if exc.result else ()
        raise ServerDocumentUnavailable(
            exc.failure, str(exc), (*hints, "or pass instances with --data FILE")
        ) from exc


def _target_and_instances(
    request: LoadRequest, headers: dict[str, str]
) -> tuple[str, tuple[Instance, ...], InstanceSpace | None]:
    """The URL the load goes to, the instances it repeats, and where fresh ones come from.

    The server's OpenAPI document says which route a bare origin means, which example to
    send and the schema fresh instances are drawn from, as it does for `request` and
    `doctor`; with instances given and a URL that names its route, nothing is asked of the
    server before the run (fresh instances are then drawn around the instances given).
    """
    given = request.instances
    spec = None
    if given is None or names_no_route(request.url):
        spec = _server_document(request, headers, required=given is None)
    target = predict_url(request.url, spec)
    route = urlsplit(target).path
    if given is not None:
        schema = instance_schema(spec, route) if spec is not None else None
        space = InstanceSpace.from_schema(schema, given[0]) if schema is not None else None
        return target, given, space
    assert spec is not None
    example = example_from_openapi(spec, route)
    schema = instance_schema(spec, route)
    space = (
        InstanceSpace.from_schema(schema, example)
        if schema is not None
        else InstanceSpace.from_instances([example])
    )
    return target, (example,), space
