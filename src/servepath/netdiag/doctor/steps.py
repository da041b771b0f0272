"""The doctor's steps: each probe the plan can call for, as a frozen value with a ``kind``
(what :func:`~servepath.netdiag.doctor.plan.next_step` returns and
:mod:`~servepath.netdiag.doctor.observe` runs). Values only: no logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from servepath.netdiag.doctor.plan import AppPlan

__all__ = [
    "METHOD_CHANGING_REDIRECTS",
    "METHOD_KEEPING_REDIRECTS",
    "REPEAT_BUDGET_S",
    "DialEvery",
    "FindServices",
    "HttpKind",
    "HttpStep",
    "InspectAddress",
    "LocateMtuHop",
    "LookInside",
    "NarrowMtu",
    "PlanApp",
    "ProbeTls",
    "Repeat",
    "Resolve",
    "ResolveProxy",
    "Sniff",
    "Step",
    "Transport",
    "TryNames",
]


REPEAT_BUDGET_S = 1.0


#: The request the doctor sends in each HTTP step, and where observe() records its answer.
HttpKind = Literal[
    "health", "health route", "openapi", "predict", "redirect", "large", "echo", "clock"
]

#: Redirects a client follows with GET (most do, for a POST), and those that keep the method.
METHOD_CHANGING_REDIRECTS = (301, 302, 303)
METHOD_KEEPING_REDIRECTS = (307, 308)


@dataclass(frozen=True)
class Resolve:
    """Ask DNS for the target's name: A, then AAAA (a caller may dial either family)."""

    name: str
    rdtype: Literal["A", "AAAA"]

    @property
    def kind(self) -> str:
        return f"dns {self.rdtype}"


@dataclass(frozen=True)
class InspectAddress:
    """Whether the address is this machine's own, and the kernel's route to it."""

    address: str
    kind: str = "address"


@dataclass(frozen=True)
class ResolveProxy:
    """The forward proxy's address: the transport is probed there, not at the target."""

    host: str
    port: int
    kind: str = "proxy address"


@dataclass(frozen=True)
class Transport:
    """The trace and the port scan at once, so that a filtered port costs one timeout."""

    address: str
    port: int
    ports: tuple[int, ...]  # the asked one first, then the neighbours
    kind: str = "transport"


@dataclass(frozen=True)
class DialEvery:
    """Connect to the name's other addresses (every A and AAAA answer) at once: a caller may
    dial any of them, and many try IPv6 first."""

    addresses: tuple[str, ...]
    port: int
    kind: str = "every address"


@dataclass(frozen=True)
class LookInside:
    """On this machine's own address: the mapping into a container (an open port), or the
    containers that listen with nothing published (a closed one)."""

    port: int
    reachable: bool
    kind: str = "containers"


@dataclass(frozen=True)
class FindServices:
    """Ask the open neighbour ports whether a model API answers there instead."""

    address: str
    ports: tuple[int, ...]
    kind: str = "other services"


@dataclass(frozen=True)
class ProbeTls:
    """A TLS handshake with the target (``on_plain``: on an http:// URL's port)."""

    address: str
    port: int
    servername: str
    cafile: str | None
    on_plain: bool = False

    @property
    def kind(self) -> str:
        return "tls on plain" if self.on_plain else "tls"


@dataclass(frozen=True)
class Sniff:
    """Read the port's first bytes: what it speaks, when HTTP or TLS failed."""

    address: str
    port: int
    server_name: str
    kind: str = "sniff"


@dataclass(frozen=True)
class HttpStep:
    """One request as the plan has it (proxy, --resolve, --host-header, key, trust)."""

    what: HttpKind
    url: str
    method: str = "GET"
    content: bytes | None = None
    follow: bool = True
    timeout: float | None = None  # None: --http-timeout
    keep_body: int | None = None  # None: the whole body, to the driver's limit
    #: Look past the certificate whatever --insecure says: only the answer's Date is read.
    unverified: bool = False

    @property
    def kind(self) -> str:
        return self.what


@dataclass(frozen=True)
class Repeat:
    """Send each request ``count`` times — half over fresh connections at once, half one
    after another over one kept-alive connection — within ``budget_s``."""

    requests: tuple[HttpStep, ...]
    count: int
    budget_s: float = REPEAT_BUDGET_S
    kind: str = "repeat"


@dataclass(frozen=True)
class PlanApp:
    """The app stage's requests, decided from the OpenAPI document: nothing to send."""

    app: AppPlan
    kind: str = "app plan"


@dataclass(frozen=True)
class TryNames:
    """Ask the same address for the health route under other names (a web server's default
    site answered); the names come from :func:`candidate_names`."""

    url: str
    port: int
    after: Literal["health", "predict"]

    @property
    def kind(self) -> str:
        return f"names after {self.after}"


@dataclass(frozen=True)
class NarrowMtu:
    """Repeat a smaller request at shrinking segment sizes: where the large one stalled."""

    address: str
    port: int
    request: bytes
    wait: float
    tls_name: str | None = None  # an https:// URL: TLS on each connection, this name in SNI
    kind: str = "mtu narrowing"


@dataclass(frozen=True)
class LocateMtuHop:
    """The hop after which packets of ``size`` bytes are lost."""

    address: str
    size: int
    kind: str = "mtu hop"


Step = (
    Resolve
    | InspectAddress
    | ResolveProxy
    | Transport
    | DialEvery
    | LookInside
    | FindServices
    | ProbeTls
    | Sniff
    | HttpStep
    | PlanApp
    | TryNames
    | NarrowMtu
    | LocateMtuHop
    | Repeat
)
