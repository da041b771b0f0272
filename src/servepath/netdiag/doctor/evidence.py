"""Everything the doctor's probes saw: the input of :func:`diagnose`. Filled by
:func:`~servepath.netdiag.doctor.observe.observe`; tests build one by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from servepath.net.routes import KernelRoute, RouteLookup
from servepath.netdiag.dns import DnsReport
from servepath.netdiag.http import HttpReport
from servepath.netdiag.ports import PortResult, PortScan
from servepath.netdiag.tls import TlsReport
from servepath.netdiag.trace import Trace

if TYPE_CHECKING:
    # plan reads the observations to choose the next step: the types only, to avoid a cycle
    from servepath.net.listeners import PortMapping
    from servepath.netdiag.doctor.plan import AppPlan, Plan
    from servepath.netdiag.mtu import MtuHop, MtuNarrowing
    from servepath.netdiag.netns import NamespaceListeners
    from servepath.netdiag.protocols import ProtocolGuess
    from servepath.netdiag.quality import Burst


@dataclass
class VhostTrial:
    """A name sent in the Host header to the same address, and what answered."""

    name: str
    source: str  # where the name came from: "the URL", "the certificate", "reverse DNS"
    status: int | None
    servepath: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "status": self.status,
            "servepath": self.servepath,
        }


Connection = Literal["first", "fresh", "reused"]


@dataclass(frozen=True)
class Attempt:
    """One request of a repetition: over which connection, and what answered."""

    connection: Connection  # "first": the walk's own request
    answer: str  # "200", "502 from nginx/1.22.1", "reset", "read_timeout"
    failed: bool
    remote: str | None = None  # the address:port dialled

    def to_json(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "answer": self.answer,
            "failed": self.failed,
            "remote": self.remote,
        }


def attempt_of(report: HttpReport, connection: Connection) -> Attempt:
    """What one request's answer was, as a kind to count: the status and who sent it, or
    the failure's kind. A 5xx, a 429 and no answer at all are failures."""
    from servepath.netdiag.doctor.signs import from_servepath, server_name

    remote = next((h.remote for h in reversed(report.hops) if h.remote), None)
    if report.error is not None or report.status is None:
        kind = report.error.kind if report.error is not None else "no answer"
        return Attempt(connection, kind, True, remote)
    status = report.status
    who = "" if from_servepath(report) else server_name(report) or ""
    answer = f"{status} from {who}" if who else str(status)
    return Attempt(connection, answer, status >= 500 or status == 429, remote)


@dataclass(frozen=True)
class Repetition:
    """The same request sent again and again, over fresh and reused connections."""

    method: str
    route: str
    attempts: tuple[Attempt, ...]

    @property
    def failures(self) -> tuple[Attempt, ...]:
        return tuple(a for a in self.attempts if a.failed)

    @property
    def mixed(self) -> bool:
        """Some passed and some failed: a failure that comes and goes."""
        return 0 < len(self.failures) < len(self.attempts)

    def counts(self) -> dict[str, int]:
        """How many times each answer came, most frequent first."""
        counted: dict[str, int] = {}
        for a in self.attempts:
            counted[a.answer] = counted.get(a.answer, 0) + 1
        return dict(sorted(counted.items(), key=lambda kv: -kv[1]))

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "route": self.route,
            "counts": self.counts(),
            "attempts": [a.to_json() for a in self.attempts],
        }


#: Certificate problems that --insecure looks past; a failed handshake it cannot.
CERTIFICATE_PROBLEMS = frozenset(
    {"expired", "not_yet_valid", "hostname_mismatch", "self_signed", "unknown_issuer"}
)


def untrusted_only(tls: TlsReport) -> bool:
    """The handshake completed and only the certificate was not trusted."""
    failure = tls.failure or (tls.problems[0] if tls.problems else "handshake_failed")
    return tls.protocol is not None and failure in CERTIFICATE_PROBLEMS


@dataclass
class Observations:
    plan: Plan
    slow_ms: float = 1000.0
    timeout: float = 2.0
    http_timeout: float = 10.0
    insecure: bool = False
    api_key_sent: bool = False
    nameservers: list[str] = field(default_factory=list)
    gateway: KernelRoute | None = None
    dns: DnsReport | None = None
    address: str | None = None
    own_address: bool = False  # the address is one of this machine's own
    route: RouteLookup | None = None
    name_addresses: tuple[str, ...] = ()  # every A and AAAA answer for the name
    dialled: dict[str, PortResult] = field(default_factory=dict)  # the name's other addresses
    probe_target: tuple[str, int] | None = None  # the target, or the forward proxy
    trace: Trace | None = None
    trace_error: str | None = None
    ports: PortScan | None = None
    ports_error: str | None = None
    #: many connections to the asked port at once: the path's loss, and a lost SYN told
    #: apart from a filter (netdiag/quality.py)
    burst: Burst | None = None
    other_services: dict[int, str] = field(default_factory=dict)  # port -> URL that answered
    tls: TlsReport | None = None
    tls_on_plain: TlsReport | None = None
    #: this machine's clock minus the server's (its Date header), when a certificate's
    #: dates failed: a large difference is this machine's clock, not the certificate
    clock_skew_s: float | None = None
    server_date: str | None = None
    protocol: ProtocolGuess | None = None  # what the port speaks, when HTTP failed
    health: HttpReport | None = None
    spec: dict[str, Any] | None = None
    # GET /openapi.json failed (401, 5xx, no answer): a finding, not a server without one
    spec_refused: HttpReport | None = None
    app_plan: AppPlan | None = None
    app: HttpReport | None = None
    redirect: HttpReport | None = None  # the predict request again, its redirects followed
    vhost_trials: list[VhostTrial] = field(default_factory=list)
    large: HttpReport | None = None
    repeats: list[Repetition] = field(default_factory=list)  # --repeat, one per route
    mtu: MtuNarrowing | None = None
    mtu_hop: MtuHop | None = None
    echo: dict[str, Any] | None = None
    # an address of this machine: the port mapping (docker-proxy, DNAT) that covers the port,
    # the container's namespace it leads to, and containers listening with nothing published
    mapping: PortMapping | None = None
    container: NamespaceListeners | None = None
    unpublished: list[NamespaceListeners] = field(default_factory=list)
    elapsed_s: float = 0.0
    done: set[str] = field(default_factory=set)  # the kinds of the steps run so far

    # the plan's facts, under the names the stages use
    @property
    def url(self) -> str:
        return self.plan.target.url

    @property
    def scheme(self) -> str:
        return self.plan.target.scheme

    @property
    def host(self) -> str:
        return self.plan.target.host

    @property
    def port(self) -> int:
        return self.plan.target.port

    @property
    def path(self) -> str:
        return self.plan.target.path

    @property
    def origin(self) -> str:
        return self.plan.target.origin

    @property
    def proxy(self) -> str | None:
        return self.plan.proxy.proxy

    @property
    def predict_route(self) -> str:
        return self.app_plan.route if self.app_plan else self.plan.target.path
