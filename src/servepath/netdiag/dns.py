"""DNS answers from the system resolver and from named resolvers, side by side: do they agree?

The pure part turns a DNS response (or the exception a query ended in) into an
:class:`ResolverAnswer` with one outcome from a closed vocabulary, and decides whether a set
of answers agrees. The driver sends one query per nameserver, concurrently, with dnspython
doing the protocol, and asks ``getaddrinfo`` what the C library (``/etc/hosts`` included)
makes of the name.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset

from servepath.errors import EndpointError, ResolverSpecError, UsageError
from servepath.net.endpoints import host_port, is_ip_literal, parse_host_port

__all__ = [
    "DEFAULT_RESOLV_CONF",
    "DnsReport",
    "Nameserver",
    "Outcome",
    "Record",
    "ResolverAnswer",
    "ResolverSpecError",
    "agreement",
    "answer_from_addrinfo",
    "answer_from_error",
    "answer_from_response",
    "parse_nameserver",
    "parse_rrtype",
    "probe_dns",
    "query_getaddrinfo",
    "query_nameserver",
    "system_nameservers",
]

log = logging.getLogger(__name__)

Outcome = Literal["ok", "nxdomain", "no_answer", "servfail", "refused", "timeout", "error"]
Source = Literal["getaddrinfo", "resolv.conf", "named", "rfc6761"]

#: Outcomes that are an answer about the name; the rest say the resolver failed to give one.
ANSWERED: frozenset[Outcome] = frozenset({"ok", "nxdomain", "no_answer"})
DEFAULT_RESOLV_CONF = Path("/etc/resolv.conf")
_MAX_CHAIN = 16

_OUTCOME_MEANING: dict[Outcome, str] = {
    "ok": "answered",
    "nxdomain": "the name does not exist (NXDOMAIN)",
    "no_answer": "the name exists but has no record of this type",
    "servfail": "the resolver failed to resolve the name (SERVFAIL)",
    "refused": "the resolver refused to answer (REFUSED: not its zone, or not for this client)",
    "timeout": "no answer in time",
    "error": "the query failed",
}


@dataclass(frozen=True)
class Nameserver:
    address: str
    port: int = 53

    @property
    def label(self) -> str:
        if self.port == 53:
            return self.address
        return host_port(self.address, self.port)


def parse_nameserver(spec: str) -> Nameserver:
    """``IP``, ``IP:PORT``, ``IPv6`` or ``[IPv6]:PORT``: a resolver is named by its address."""
    try:
        host, port = parse_host_port(spec, 53)
    except EndpointError as exc:
        raise ResolverSpecError(spec, exc.reason) from None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ResolverSpecError(spec, f"{host!r} is not an IP address") from None
    return Nameserver(address, port)


def parse_rrtype(text: str) -> dns.rdatatype.RdataType:
    try:
        return dns.rdatatype.RdataType.make(text.upper())
    except dns.rdatatype.UnknownRdatatype:
        raise UsageError(f"unknown record type {text!r}") from None


@dataclass(frozen=True)
class Record:
    name: str
    type: str
    ttl: int
    value: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "value": self.value}


@dataclass(frozen=True)
class ResolverAnswer:
    """One resolver's answer to one question."""

    resolver: str
    source: Source
    outcome: Outcome
    values: tuple[str, ...] = ()  # the records of the asked type, sorted
    cname_chain: tuple[str, ...] = ()  # from the asked name to the canonical one; () if none
    records: tuple[Record, ...] = ()  # the answer section as received (CNAMEs included)
    elapsed_ms: float = 0.0
    detail: str = ""
    ttl: int | None = None  # of the records that answer the question (None from getaddrinfo)

    def key(self) -> tuple[Outcome, frozenset[str]]:
        return (self.outcome, frozenset(self.values) if self.outcome == "ok" else frozenset())

    def to_json(self) -> dict[str, Any]:
        return {
            "resolver": self.resolver,
            "source": self.source,
            "outcome": self.outcome,
            "values": list(self.values),
            "ttl": self.ttl,
            "cname_chain": list(self.cname_chain),
            "records": [r.to_json() for r in self.records],
            "elapsed_ms": round(self.elapsed_ms, 3),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class DnsReport:
    name: str
    rrtype: str
    literal: bool
    answers: tuple[ResolverAnswer, ...]
    agree: bool
    verdict: str
    search: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Every resolver gave an answer, and the same one."""
        return self.literal or (self.agree and bool(self.answers))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.rrtype,
            "literal": self.literal,
            "ok": self.ok,
            "agree": self.agree,
            "verdict": self.verdict,
            "answers": [a.to_json() for a in self.answers],
            "search": list(self.search),
            "notes": list(self.notes),
        }


# --- pure: responses and errors to answers -------------------------------------------


def _find(
    rrsets: Sequence[dns.rrset.RRset], name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    for rrset in rrsets:
        if rrset.name == name and rrset.rdtype == rdtype:
            return rrset
    return None


def _follow(
    rrsets: Sequence[dns.rrset.RRset], qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> tuple[list[dns.name.Name], dns.rrset.RRset | None]:
    """The CNAME chain from ``qname``, and the RRset of ``rdtype`` at its end (if any)."""
    chain = [qname]
    current = qname
    for _ in range(_MAX_CHAIN):
        found = _find(rrsets, current, rdtype)
        if found is not None or rdtype == dns.rdatatype.CNAME:
            return chain, found
        cname = _find(rrsets, current, dns.rdatatype.CNAME)
        if cname is None:
            return chain, None
        current = cname[0].target
        if current in chain:  # a loop: a CNAME pointing back up the chain
            return chain, None
        chain.append(current)
    return chain, None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def answer_from_response(
    resolver: str,
    source: Source,
    response: dns.message.Message,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    elapsed_ms: float,
) -> ResolverAnswer:
    """The outcome, values, TTLs and CNAME chain that ``response`` gives for the question."""
    rcode = response.rcode()
    records = tuple(
        Record(_text(rrset.name), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rd.to_text())
        for rrset in response.answer
        for rd in rrset
    )
    chain, final = _follow(response.answer, qname, rdtype)
    chain_text = tuple(_text(n) for n in chain) if len(chain) > 1 else ()
    common: dict[str, Any] = {
        "records": records,
        "cname_chain": chain_text,
        "elapsed_ms": elapsed_ms,
    }
    if rcode == dns.rcode.NXDOMAIN:
        where = f" ({_text(chain[-1])}, at the end of the CNAME chain)" if chain_text else ""
        return ResolverAnswer(
            resolver, source, "nxdomain", detail=_OUTCOME_MEANING["nxdomain"] + where, **common
        )
    if rcode == dns.rcode.SERVFAIL:
        return ResolverAnswer(
            resolver, source, "servfail", detail=_OUTCOME_MEANING["servfail"], **common
        )
    if rcode == dns.rcode.REFUSED:
        return ResolverAnswer(
            resolver, source, "refused", detail=_OUTCOME_MEANING["refused"], **common
        )
    if rcode != dns.rcode.NOERROR:
        return ResolverAnswer(
            resolver, source, "error", detail=f"rcode {dns.rcode.to_text(rcode)}", **common
        )
    if final is None:
        detail = _OUTCOME_MEANING["no_answer"]
        if chain_text:
            detail += f" (at {_text(chain[-1])}, the end of the CNAME chain)"
        return ResolverAnswer(resolver, source, "no_answer", detail=detail, **common)
    values = tuple(sorted(rd.to_text() for rd in final))
    flags = "authoritative" if response.flags & dns.flags.AA else "not authoritative"
    return ResolverAnswer(
        resolver, source, "ok", values=values, detail=flags, ttl=final.ttl, **common
    )


def answer_from_error(
    resolver: str, source: Source, exc: BaseException, elapsed_ms: float, timeout: float
) -> ResolverAnswer:
    """What a query that raised instead of returning a response means."""
    if isinstance(exc, dns.exception.Timeout | TimeoutError | socket.timeout):
        return ResolverAnswer(
            resolver, source, "timeout", elapsed_ms=elapsed_ms, detail=f"no answer in {timeout:g}s"
        )
    if isinstance(exc, ConnectionRefusedError):
        detail = "ICMP port unreachable: nothing listens on that UDP port"
    elif isinstance(exc, OSError):
        detail = f"{exc.strerror or exc}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return ResolverAnswer(resolver, source, "error", elapsed_ms=elapsed_ms, detail=detail)


_EAI_NODATA = getattr(socket, "EAI_NODATA", None)


def answer_from_addrinfo(
    result: list[tuple[Any, ...]] | socket.gaierror,
    rdtype: dns.rdatatype.RdataType,
    canonical: str | None,
    qname: str,
    elapsed_ms: float,
) -> ResolverAnswer:
    """What ``getaddrinfo`` said, in the same outcome vocabulary as a DNS response."""
    label = "system (getaddrinfo)"
    if isinstance(result, socket.gaierror):
        code = result.errno
        message = result.strerror or str(result)
        if code == socket.EAI_NONAME:
            outcome: Outcome = "nxdomain"
        elif _EAI_NODATA is not None and code == _EAI_NODATA:
            outcome = "no_answer"
        else:
            outcome = "error"
            if code == socket.EAI_AGAIN:
                message += " (the nameservers timed out, refused, or answered SERVFAIL)"
        return ResolverAnswer(
            label, "getaddrinfo", outcome, elapsed_ms=elapsed_ms, detail=f"{message} ({code})"
        )
    family = socket.AF_INET6 if rdtype == dns.rdatatype.AAAA else socket.AF_INET
    values = tuple(sorted({str(info[4][0]) for info in result if info[0] == family}))
    chain: tuple[str, ...] = ()
    if canonical and canonical.rstrip(".").lower() != qname.rstrip(".").lower():
        chain = (qname.rstrip("."), canonical.rstrip("."))
    if not values:
        return ResolverAnswer(
            label,
            "getaddrinfo",
            "no_answer",
            cname_chain=chain,
            elapsed_ms=elapsed_ms,
            detail=_OUTCOME_MEANING["no_answer"],
        )
    return ResolverAnswer(
        label,
        "getaddrinfo",
        "ok",
        values=values,
        cname_chain=chain,
        elapsed_ms=elapsed_ms,
        detail="from the C library: /etc/hosts, then DNS (nsswitch.conf); no TTLs",
    )


def _label(answer: ResolverAnswer) -> str:
    return f"{answer.resolver} (resolv.conf)" if answer.source == "resolv.conf" else answer.resolver


def agreement(answers: Sequence[ResolverAnswer]) -> tuple[bool, str]:
    """Whether every resolver answered, and the same way; and a sentence saying so."""
    if not answers:
        return False, "no resolver to ask"
    failed = [a for a in answers if a.outcome not in ANSWERED]
    groups: dict[tuple[Outcome, frozenset[str]], list[str]] = {}
    for a in answers:
        groups.setdefault(a.key(), []).append(_label(a))
    if failed:
        names = ", ".join(f"{_label(a)} ({a.outcome})" for a in failed)
        return False, f"not every resolver answered: {names}"
    if len(groups) == 1:
        ((outcome, values),) = groups
        what = ", ".join(sorted(values)) if outcome == "ok" else _OUTCOME_MEANING[outcome]
        if len(answers) == 1:
            return True, f"one resolver asked: {what}"
        return True, f"all {len(answers)} resolvers agree: {what}"
    parts = []
    for (outcome, values), who in groups.items():
        what = ", ".join(sorted(values)) if outcome == "ok" else outcome
        parts.append(f"{' + '.join(who)} {'say' if len(who) > 1 else 'says'} {what}")
    verdict = "resolvers disagree: " + "; ".join(parts)
    if any(a.source == "getaddrinfo" for a in answers):
        verdict += " (getaddrinfo also reads /etc/hosts, which can differ from DNS)"
    return False, verdict


# --- thin drivers ----------------------------------------------------------------------


def query_nameserver(
    nameserver: Nameserver,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    timeout: float,
    source: Source = "named",
) -> ResolverAnswer:
    """Ask one nameserver over UDP (TCP when the answer is truncated)."""
    query = dns.message.make_query(qname, rdtype)
    family = socket.AF_INET6 if ":" in nameserver.address else socket.AF_INET
    start = time.perf_counter()
    try:
        # A connected socket hears the ICMP port-unreachable an unconnected one never sees, so
        # "nothing listens" is told apart from "no answer".
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((nameserver.address, nameserver.port))
            try:
                response = dns.query.udp(
                    query,
                    nameserver.address,
                    timeout=timeout,
                    port=nameserver.port,
                    sock=sock,
                    raise_on_truncation=True,
                )
            except dns.message.Truncated:
                remaining = max(0.1, timeout - (time.perf_counter() - start))
                response = dns.query.tcp(
                    query, nameserver.address, timeout=remaining, port=nameserver.port
                )
    except (dns.exception.DNSException, OSError) as exc:
        elapsed = (time.perf_counter() - start) * 1000
        return answer_from_error(nameserver.label, source, exc, elapsed, timeout)
    elapsed = (time.perf_counter() - start) * 1000
    return answer_from_response(nameserver.label, source, response, qname, rdtype, elapsed)


def query_getaddrinfo(
    name: str, rdtype: dns.rdatatype.RdataType, *, timeout: float
) -> ResolverAnswer:
    """Ask the C library, as most programs do; it has no timeout of its own, so wait at most
    ``timeout`` for it in a daemon thread."""
    family = socket.AF_INET6 if rdtype == dns.rdatatype.AAAA else socket.AF_INET
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["result"] = socket.getaddrinfo(
                name, None, family, socket.SOCK_STREAM, 0, socket.AI_CANONNAME
            )
        except socket.gaierror as exc:
            box["result"] = exc
        except (OSError, UnicodeError) as exc:  # IDNA encoding fails with a UnicodeError
            box["error"] = exc
        done.set()

    start = time.perf_counter()
    threading.Thread(target=run, name="getaddrinfo", daemon=True).start()
    finished = done.wait(timeout)
    elapsed = (time.perf_counter() - start) * 1000
    if not finished:
        return ResolverAnswer(
            "system (getaddrinfo)",
            "getaddrinfo",
            "timeout",
            elapsed_ms=elapsed,
            detail=f"getaddrinfo did not return in {timeout:g}s",
        )
    if "error" in box:
        return answer_from_error(
            "system (getaddrinfo)", "getaddrinfo", box["error"], elapsed, timeout
        )
    result = box["result"]
    canonical = None
    if isinstance(result, list) and result:
        canonical = result[0][3] or None
    return answer_from_addrinfo(result, rdtype, canonical, name, elapsed)


def system_nameservers(resolv_conf: Path) -> tuple[list[Nameserver], tuple[str, ...], str]:
    """The nameservers and search domains of a resolv.conf, as dnspython reads it; and a note
    when it cannot be read."""
    try:
        resolver = dns.resolver.Resolver(filename=str(resolv_conf), configure=True)
    except (dns.resolver.NoResolverConfiguration, OSError) as exc:
        return [], (), f"cannot read {resolv_conf}: {exc}"
    servers = [Nameserver(str(ns), resolver.port) for ns in resolver.nameservers]
    search = tuple(_text(n) for n in resolver.search)
    return servers, search, ""


def probe_dns(
    name: str,
    rrtype: str = "A",
    *,
    resolvers: Sequence[Nameserver] = (),
    system: bool = True,
    resolv_conf: Path = DEFAULT_RESOLV_CONF,
    timeout: float = 2.0,
) -> DnsReport:
    """Ask every resolver at once and compare.

    ``system`` adds ``getaddrinfo`` (for A and AAAA) and each nameserver of ``resolv_conf``.
    """
    rdtype = parse_rrtype(rrtype)
    type_text = dns.rdatatype.to_text(rdtype)
    if is_ip_literal(name):
        return DnsReport(
            name,
            type_text,
            True,
            (),
            True,
            f"{name} is an IP address literal: nothing to resolve, it is used as it is",
        )
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise UsageError(f"{name!r} is not a valid DNS name: {exc}") from None
    notes: list[str] = []
    search: tuple[str, ...] = ()
    tasks: list[Callable[[], ResolverAnswer]] = []
    if is_localhost_name(name):
        return _probe_localhost(name, rdtype, resolvers=resolvers, system=system, timeout=timeout)
    if system:
        servers, search, note = system_nameservers(resolv_conf)
        if note:
            notes.append(note)
        for ns in servers:
            tasks.append(
                partial(query_nameserver, ns, qname, rdtype, timeout=timeout, source="resolv.conf")
            )
        if len(qname.labels) <= 2 and search:  # a single label, plus the root
            notes.append(
                f"{name} has no dot: programs using the system resolver try the search "
                f"domains ({', '.join(search)}) first; the nameserver rows ask for {name} as is"
            )
    for ns in resolvers:
        tasks.append(partial(query_nameserver, ns, qname, rdtype, timeout=timeout))
    with ThreadPoolExecutor(max_workers=max(1, len(tasks))) as pool:
        futures = [pool.submit(task) for task in tasks]
        # getaddrinfo runs alongside, on its own daemon thread, so a stuck C resolver cannot
        # hold the process at exit.
        gai = (
            query_getaddrinfo(name, rdtype, timeout=timeout)
            if system and rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            else None
        )
        answers = ([gai] if gai else []) + [f.result() for f in futures]
    if system and rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
        notes.append(f"getaddrinfo only resolves addresses; it is not asked for {type_text}")
    agree, verdict = agreement(answers)
    log.debug("dns %s %s: %s", name, type_text, verdict)
    return DnsReport(name, type_text, False, tuple(answers), agree, verdict, search, tuple(notes))


def is_localhost_name(name: str) -> bool:
    """``localhost`` and every name under it: RFC 6761 §6.3 reserves them for loopback."""
    label = name.lower().rstrip(".")
    return label == "localhost" or label.endswith(".localhost")


def localhost_answer(name: str, rdtype: dns.rdatatype.RdataType) -> ResolverAnswer:
    """The answer RFC 6761 prescribes: loopback, given without asking any DNS server."""
    value = "::1" if rdtype == dns.rdatatype.AAAA else "127.0.0.1"
    if rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return ResolverAnswer(
            "local (RFC 6761)", "rfc6761", "no_answer", detail=f"{name} has only addresses"
        )
    return ResolverAnswer(
        "local (RFC 6761)",
        "rfc6761",
        "ok",
        (value,),
        detail=f"{name} is answered locally with loopback (RFC 6761)",
    )


def _probe_localhost(
    name: str,
    rdtype: dns.rdatatype.RdataType,
    *,
    resolvers: Sequence[Nameserver],
    system: bool,
    timeout: float,
) -> DnsReport:
    """``localhost`` is never sent to a DNS server: what a DNS server says of it (many answer
    NXDOMAIN) is not how programs resolve it. Explicitly named resolvers are still asked and
    shown, but they do not count against the agreement."""
    type_text = dns.rdatatype.to_text(rdtype)
    notes = [
        f"{name} is answered locally (RFC 6761: /etc/hosts, or loopback): the nameservers of "
        "resolv.conf are not asked"
    ]
    local: list[ResolverAnswer] = []
    # Only the bare name is looked up in /etc/hosts (through getaddrinfo): the C library
    # would send a name under .localhost to the DNS servers, which RFC 6761 rules out.
    bare = name.lower().rstrip(".") == "localhost"
    if system and bare and rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        gai = query_getaddrinfo(name, rdtype, timeout=timeout)
        if gai.outcome == "ok":
            local.append(gai)
        else:
            notes.append(f"getaddrinfo gave {gai.outcome} for {name}; loopback is what it means")
    if not local:
        local.append(localhost_answer(name, rdtype))
    asked: list[ResolverAnswer] = []
    if resolvers:
        qname = dns.name.from_text(name)
        with ThreadPoolExecutor(max_workers=len(resolvers)) as pool:
            asked = list(
                pool.map(lambda ns: query_nameserver(ns, qname, rdtype, timeout=timeout), resolvers)
            )
        notes.append(
            "the --resolver answers are shown, but a DNS server's word on localhost does not "
            "change how this machine resolves it"
        )
    agree, verdict = agreement(local)
    return DnsReport(name, type_text, False, tuple(local + asked), agree, verdict, (), tuple(notes))
