"""A catalogue of reports to draw: doctor reports from the diagnose cases (every cause, so
walks that end at every stage), IPv6 and hostile ones; load reports recorded from known
outcomes (open and closed loop, with and without errors, a capacity search with a replica
estimate, a sweep). No network."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from servepath.load.capacity import SLO, estimate_replicas, fit_usl
from servepath.load.recorder import Recorder, RunShape, build_report
from servepath.load.report import FindMaxReport, FindMaxStep, RunReport, SweepReport
from servepath.netdiag.doctor import DoctorReport, Stage, diagnose
from tests.netdiag.doctor.builders import healthy, nothing_after_transport, port, reply, scan
from tests.netdiag.doctor.test_diagnose import CASES

#: A string that would be markup if it were not escaped, with characters XML forbids.
HOSTILE = '<script>alert("x")</script><img src=http://198.51.100.9/x.png>&amp;\x00\x1b\'"'
IPV6_URL = "http://[fd20:2::2]:8088/decisions"


def doctor_case(cause: str) -> DoctorReport:
    """The diagnose test's case for ``cause``, diagnosed."""
    return diagnose(CASES[cause][0]())


def doctor_causes() -> list[str]:
    return sorted(CASES)


def doctor_ipv6_closed() -> DoctorReport:
    obs = healthy(IPV6_URL, address="fd20:2::2")
    obs.ports = scan("fd20:2::2", port(8088, "closed"))
    return diagnose(nothing_after_transport(obs))


def doctor_ipv6_healthy() -> DoctorReport:
    return diagnose(healthy(IPV6_URL, address="fd20:2::2"))


def doctor_hostile() -> DoctorReport:
    """A server whose error page, headers and names are hostile markup."""
    obs = healthy()
    obs.health = reply(502, headers=(("server", HOSTILE),), body=HOSTILE)
    obs.app = obs.large = obs.echo = obs.spec = None
    report = diagnose(obs)
    stages = tuple(
        replace(s, summary=s.summary + " " + HOSTILE, data={**s.data, "hostile": HOSTILE})
        if s.name == "http"
        else s
        for s in report.stages
    )
    return replace(report, url=f"http://[fd20:2::2]:8088/{HOSTILE}", stages=stages)


def doctor_with_hops() -> DoctorReport:
    """A healthy walk whose route stage traced three hops."""
    report = doctor_case("ok")
    hops = [
        {"ttl": 1, "address": "10.20.1.1", "rtt_ms": [0.21, 0.25], "name": "router"},
        {"ttl": 2, "address": None, "rtt_ms": [], "name": None},
        {"ttl": 3, "address": "10.20.2.2", "rtt_ms": [0.5, 0.61], "name": HOSTILE},
    ]
    route = Stage("route", "ok", "reached 10.20.2.2 in 3 hops (tcp)", {"hops": hops})
    stages = tuple(route if s.name == "route" else s for s in report.stages)
    return replace(report, stages=stages)


URL = "http://[2001:db8::7]:8080/decisions"


def load_run(
    mode: str = "open",
    *,
    n: int = 300,
    rate: float = 100.0,
    latency: float = 0.004,
    failures: bool = False,
    hit_every: int = 0,
    slo: SLO | None = None,
    url: str = URL,
    timing: bool = True,
) -> RunReport:
    """A run recorded from known outcomes: latency grows with ``i % 7``, a burst late in the
    run; with ``failures``, timeouts, refused connections, 503s and 422s among them."""
    shape = (
        RunShape(url, "open", rate, None, 1, n / rate, 100)
        if mode == "open"
        else RunShape(url, "closed", None, 4, 1, None, None)
    )
    rec = Recorder(0.0, late_threshold=0.01)
    for i in range(n):
        intended = i / rate
        slow = 1 + i % 7 + (12 if 0.6 * n < i < 0.7 * n else 0)
        done = intended + 0.0005 + latency * slow
        status: int | None = 200
        error = None
        kind, message = None, ""
        if failures and i % 23 == 5:
            status, error, kind, message = None, "timeout", "read_timeout", "no answer in 10 s"
        elif failures and i % 31 == 7:
            status, error, kind, message = None, "connect", "refused", "connection refused"
        elif failures and i % 17 == 3:
            status = 503
        elif failures and i % 41 == 9:
            status = 422
        rec.record(
            intended,
            intended + 0.0005,
            done,
            status=status,
            error=error,  # type: ignore[arg-type]
            server_timing=f"total;dur={latency * 1000 * slow * 0.6:.3f}" if timing else None,
            x_cache="HIT" if hit_every and i % hit_every == 0 else "MISS",
            started=intended + 0.0004 if mode == "open" else None,
            kind=kind,
            message=message,
        )
    rec.cpu_percent.append(30.0)
    return build_report(shape, rec, slo)


def find_max_report() -> FindMaxReport:
    slo = SLO(99, 50)
    best = load_run("open", rate=250, latency=0.0015, slo=slo)
    steps = (
        FindMaxStep(50, 49.9, 6.0, 0.0, True, True, "met", 0.0),
        FindMaxStep(100, 99.7, 8.0, 0.0, True, True, "met", 0.0),
        FindMaxStep(200, 199.0, 31.0, 0.0, True, True, "met", 0.0),
        FindMaxStep(400, 310.0, 420.0, 0.02, False, False, "missed: p99 420 ms", 0.0),
        FindMaxStep(300, 290.0, 95.0, 0.0, False, True, "missed: p99 95 ms", 0.0),
        FindMaxStep(250, 248.0, 44.0, 0.0, True, True, "met", 0.0),
    )
    replicas = estimate_replicas(3000, 250, cache_hit_ratio=0.0)
    return FindMaxReport(URL, slo, steps, 250.0, None, best, replicas, ())


def sweep_report() -> SweepReport:
    runs = []
    for c, lat in zip((1, 2, 4, 8, 16), (0.001, 0.0011, 0.0013, 0.002, 0.0038), strict=True):
        r = load_run("closed", latency=lat, n=200)
        runs.append(replace(r, concurrency=c, achieved_rate=c / (lat * 4)))
    usl = fit_usl([(float(r.concurrency or 1), r.achieved_rate) for r in runs])
    best = max(runs, key=lambda r: r.achieved_rate)
    replicas = estimate_replicas(3000, best.achieved_rate, usl=usl, cache_hit_ratio=0.0)
    return SweepReport(URL, SLO(99, 100), tuple(runs), usl, best.achieved_rate, replicas, (),
                       capacity_cache_hit_ratio=0.0)  # fmt: skip


class _Catalogue(Mapping[str, RunReport | FindMaxReport | SweepReport]):
    """Reports by name, each recorded when first asked for: collecting the tests that are
    parametrised by the names costs nothing (recording all of them takes seconds)."""

    def __init__(self, builders: dict[str, Callable[[], RunReport | FindMaxReport | SweepReport]]):
        self._builders = builders
        self._built: dict[str, RunReport | FindMaxReport | SweepReport] = {}

    def __getitem__(self, name: str) -> RunReport | FindMaxReport | SweepReport:
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


def load_catalogue() -> Mapping[str, RunReport | FindMaxReport | SweepReport]:
    return _Catalogue(
        {
            "open": lambda: load_run("open"),
            "open-errors": lambda: load_run("open", failures=True, slo=SLO(99, 20)),
            "closed": lambda: load_run("closed", hit_every=3),
            "closed-no-timing": lambda: load_run("closed", timing=False),
            "closed-errors": lambda: load_run("closed", failures=True),
            "find-max": find_max_report,
            "sweep": sweep_report,
            "hostile": lambda: load_run("open", url=f"http://[fd20::1]:8080/{HOSTILE}"),
        }
    )
