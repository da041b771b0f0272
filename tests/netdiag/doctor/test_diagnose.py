"""diagnose() on hand-built observations: one case per cause of the vocabulary, one per pair
of findings that can meet, no network and no root."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from servepath.config import ProxyEnv
from servepath.net.listeners import PortListenReport
from servepath.netdiag.doctor import CAUSES, DoctorOptions, Observations, diagnose
from servepath.netdiag.doctor.causes import HTTP_EVIDENCE, PORT_EVIDENCE
from servepath.netdiag.doctor.local import diagnose_local
from servepath.netdiag.mtu import MssOutcome, MtuHop, summarise
from servepath.netdiag.protocols import ProtocolGuess
from servepath.netdiag.tls import TlsReport
from tests.netdiag.doctor.builders import (
    NOW,
    ROUTER,
    VM,
    chain,
    dns_report,
    healthy,
    nginx,
    nothing_after_transport,
    port,
    redirect,
    reply,
    scan,
)

PROXY = "http://10.20.1.1:3128"


def _closed(obs: Observations, **kw: Any) -> Observations:
    return nothing_after_transport(obs)


def case_ok() -> Observations:
    return healthy()


def case_dns_nxdomain() -> Observations:
    obs = healthy("http://nope.test:8080/decisions", address=None)
    obs.dns = dns_report("nope.test", ("10.20.3.53", "nxdomain", ()))
    return nothing_after_transport(obs)


def case_dns_no_answer() -> Observations:
    obs = healthy("http://api.test:8080/decisions", address=None)
    obs.dns = dns_report("api.test", ("10.20.3.53", "no_answer", ()))
    return nothing_after_transport(obs)


def case_dns_timeout() -> Observations:
    obs = healthy("http://api.test:8080/decisions", address=None)
    obs.dns = dns_report("api.test", ("10.20.3.53", "timeout", ()))
    return nothing_after_transport(obs)


def case_dns_disagree() -> Observations:
    obs = healthy("http://api.test:8080/decisions")
    obs.dns = dns_report(
        "api.test", ("10.20.3.53", "ok", (VM,)), ("10.20.4.53", "ok", ("10.9.9.9",))
    )
    return obs


def case_private_address() -> Observations:
    from servepath.net.routes import RouteLookup

    obs = healthy("http://10.99.0.5:8080/decisions", address="10.99.0.5")
    obs.route = RouteLookup("10.99.0.5", "via-default", obs.gateway)
    obs.ports = scan("10.99.0.5", port(8080, "filtered"), port(80, "filtered"))
    return nothing_after_transport(obs)


def case_no_route() -> Observations:
    obs = healthy()
    obs.ports = scan(VM, port(8080, "unreachable", offender=ROUTER, icmp=(3, 1)))
    return nothing_after_transport(obs)


OTHER_ROUTER = "10.20.5.1"


def _looping_trace(*hops: str | None) -> Any:
    from servepath.netdiag.trace import Hop, Trace

    built = tuple(Hop(ttl, a, (1.0,) if a else (), 0 if a else 1) for ttl, a in enumerate(hops, 1))
    return Trace(VM, VM, 8080, "tcp", "tcp-connect", False, built, "TTL exceeded")


def case_routing_loop() -> Observations:
    obs = healthy()
    obs.ports = scan(VM, port(8080, "unreachable", offender=ROUTER, icmp=(11, 0)))
    obs.trace = _looping_trace("10.20.1.1", OTHER_ROUTER, "10.20.1.1", OTHER_ROUTER)
    return nothing_after_transport(obs)


def case_family(broken: str, state: str = "closed") -> Observations:
    """api.test has A and AAAA; one family's address answers on 8080, the other's not."""
    obs = healthy("http://api.test:8080/decisions")
    obs.name_addresses = (VM, "fd20:2::2")
    if broken == "IPv6":
        obs.dialled = {"fd20:2::2": port(8080, state)}
        return obs
    obs.ports = scan(VM, port(8080, state))
    obs.dialled = {"fd20:2::2": port(8080)}
    return nothing_after_transport(obs)


def case_port_filtered() -> Observations:
    obs = healthy()
    obs.ports = scan(VM, port(8080, "filtered"), port(80, "filtered"))
    return nothing_after_transport(obs)


def case_port_rejected() -> Observations:
    obs = healthy()
    obs.ports = scan(VM, port(8080, "unreachable", offender=VM, icmp=(3, 3)))
    return nothing_after_transport(obs)


def case_port_closed() -> Observations:
    obs = healthy()
    obs.ports = scan(VM, port(8080, "closed"), port(80, "closed"))
    return nothing_after_transport(obs)


def case_service_on_other_port() -> Observations:
    obs = healthy(f"http://{VM}/decisions")
    obs.ports = scan(VM, port(80, "closed"), port(8080))
    obs.other_services = {8080: f"http://{VM}:8080/"}
    return nothing_after_transport(obs)


def _tls(failure: str | None, **kw: Any) -> TlsReport:
    return TlsReport("api.test", 8443, "api.test", "ca.pem", NOW, address=VM, failure=failure,  # type: ignore[arg-type]
                     detail=f"{failure} detail", **kw)  # fmt: skip


def _https(failure: str) -> Observations:
    obs = healthy("https://api.test:8443/decisions")
    obs.tls = _tls(failure)
    obs.health = reply(error=("tls", "TLS handshake failed"), url="https://api.test:8443/")
    obs.app = obs.large = obs.echo = None
    return obs


def case_tls_handshake_failed() -> Observations:
    return _https("handshake_failed")


def case_tls_untrusted() -> Observations:
    return _https("unknown_issuer")


def _leaf_without_issuer(issuer_url: str | None, trusted: bool | None) -> Observations:
    from servepath.netdiag.chain import ChainCheck

    obs = _https("unknown_issuer")
    chain = ChainCheck(("CN=api.test",), "CN=Servepath Intermediate", issuer_url, trusted)
    obs.tls = _tls("unknown_issuer", protocol="TLSv1.3", chain=chain)
    return obs


def case_tls_chain_incomplete() -> Observations:
    return _leaf_without_issuer("http://ca.test/int.der", True)


def case_tls_expired() -> Observations:
    return _https("expired")


def _dated_cert(not_before: datetime, not_after: datetime) -> Any:
    from servepath.netdiag.tls import Certificate

    return Certificate("CN=api.test", "api.test", ("api.test",), (), "CN=ca", "01", not_before,
                       not_after, False, False, "EC 256", "ecdsa-with-SHA256", "ab")  # fmt: skip


def _future_cert(skew_s: float | None) -> Observations:
    """A certificate valid from tomorrow; this machine's clock ``skew_s`` from the server's."""
    obs = _https("not_yet_valid")
    cert = _dated_cert(NOW + timedelta(days=1), NOW + timedelta(days=90))
    obs.tls = _tls("not_yet_valid", protocol="TLSv1.3", certificate=cert,
                   problems=("not_yet_valid",))  # fmt: skip
    obs.clock_skew_s = skew_s
    obs.server_date = "Tue, 01 Dec 2026 00:00:03 GMT" if skew_s is not None else None
    return obs


def case_tls_not_yet_valid() -> Observations:
    return _future_cert(2.0)


def case_clock_skew() -> Observations:
    return _future_cert(-3 * 86400.0)  # this clock three days behind: there it is valid


def case_tls_hostname_mismatch() -> Observations:
    return _https("hostname_mismatch")


def case_plain_http_on_tls_port() -> Observations:
    return _https("plain_http")


def case_tls_on_plain_port() -> Observations:
    obs = healthy()
    obs.health = reply(error=("protocol", "the server broke HTTP"))
    obs.tls_on_plain = _tls(None, protocol="TLSv1.3")
    obs.app = obs.large = obs.echo = obs.spec = None
    return obs


def case_not_http() -> Observations:
    obs = healthy("http://10.20.2.2:6379/")
    obs.health = reply(error=("reset", "the server reset the connection"))
    obs.protocol = ProtocolGuess("redis", 'answered "-ERR wrong number of arguments"', b"-ERR")
    obs.app = obs.large = obs.echo = obs.spec = None
    obs.app_plan = None
    return obs


def _proxied(**changes: Any) -> Observations:
    options = DoctorOptions(proxy_env=ProxyEnv(http=PROXY))
    obs = healthy(options=options)
    obs.probe_target = ("10.20.1.1", 3128)
    obs.ports = scan("10.20.1.1", port(3128))
    for key, value in changes.items():
        setattr(obs, key, value)
    return obs


def case_proxy_failed() -> Observations:
    obs = _proxied()
    obs.ports = scan("10.20.1.1", port(3128, "closed"))
    return nothing_after_transport(obs)


def case_proxy_denied() -> Observations:
    page = "<html><head><title>Access denied</title></head><body>Filtered</body></html>"
    obs = _proxied(
        health=reply(403, headers=(("server", "tinyproxy/1.11.1"),), body=page, proxy=PROXY)
    )
    obs.app = obs.large = obs.echo = obs.spec = None
    return obs


def case_virtual_host() -> Observations:
    obs = healthy()
    obs.health = nginx(404, "404 Not Found")
    obs.app = obs.large = obs.echo = obs.spec = None
    return obs


def case_upstream_error() -> Observations:
    obs = healthy()
    obs.health = nginx(502, "502 Bad Gateway")
    obs.app = obs.large = obs.echo = obs.spec = None
    return obs


def case_upstream_timeout() -> Observations:
    obs = healthy()
    obs.app = nginx(504, "504 Gateway Time-out")
    obs.large = None
    return obs


def case_overloaded() -> Observations:
    obs = healthy()
    obs.health = reply(503, headers=(("retry-after", "7"),), body='{"error": "busy"}')
    obs.app = obs.large = obs.echo = obs.spec = None
    return obs


def case_no_response() -> Observations:
    obs = healthy()
    obs.health = reply(error=("read_timeout", "connected, but no response in time"))
    obs.app = obs.large = obs.echo = obs.spec = None
    return obs


def case_http_error() -> Observations:
    obs = healthy()
    obs.app = reply(500, body={"error": "the model raised"}, method="POST")
    obs.large = None
    return obs


def case_route_not_found() -> Observations:
    obs = healthy(f"http://{VM}:8080/predict")
    obs.app = reply(
        404, body={"error": "no route", "routes": ["POST /decisions", "GET /"]}, method="POST"
    )
    obs.large = None
    return obs


def case_bad_payload() -> Observations:
    obs = healthy()
    obs.app = reply(422, body={"error": "invalid input: age: expected a number"}, method="POST")
    obs.large = None
    return obs


def case_unauthorized() -> Observations:
    obs = healthy()
    obs.app = reply(401, body={"error": "an API key is needed"}, method="POST")
    obs.large = None
    return obs


def _mtu(*passing: int, stalling: tuple[int, ...] = (1460, 1440)) -> Any:
    outcomes = [MssOutcome(m, "answered", sent_mss=m) for m in passing]
    outcomes += [MssOutcome(m, "stalled", sent_mss=m) for m in stalling]
    return summarise(outcomes, 4, elapsed_s=1.0, timeout=1.0)


HTTPS_TARGET = f"https://{VM}/decisions"


def case_redirected() -> Observations:
    obs = healthy()
    obs.app = redirect(301, HTTPS_TARGET)
    obs.redirect = chain((f"http://{VM}:8080/decisions", 301), (HTTPS_TARGET, 405))
    obs.large = None
    return obs


def _repetition(route: str, *answers: tuple[str, str], method: str = "POST") -> Any:
    from servepath.netdiag.doctor.evidence import Attempt, Repetition

    built = tuple(
        Attempt(conn, answer, not answer.startswith("200"), f"{VM}:8080")  # type: ignore[arg-type]
        for conn, answer in answers
    )
    return Repetition(method, route, built)


ONE_BAD_REPLICA = (
    ("first", "200"),
    *((("fresh", "502 from nginx/1.22.1"), ("fresh", "200")) * 2),
    ("fresh", "200"),
    *((("reused", "502 from nginx/1.22.1"), ("reused", "200")) * 2),
    ("reused", "502 from nginx/1.22.1"),
)


def case_intermittent() -> Observations:
    obs = healthy()
    obs.repeats = [
        _repetition("/", *((("fresh", "200"),) * 11), method="GET"),
        _repetition("/decisions", *ONE_BAD_REPLICA),
    ]
    return obs


def case_mtu_blackhole() -> Observations:
    obs = healthy()
    obs.large = reply(error=("read_timeout", "connected, but no response in time"), method="POST")
    obs.mtu = _mtu(1360, 1340, 1240)
    obs.mtu_hop = MtuHop(VM, 2, 1, ROUTER, "10.20.5.2", 1440, 64)
    return obs


def _published(inside: tuple[tuple[str, int], ...], container_port: int = 8080) -> Observations:
    from servepath.net.listeners import PortMapping
    from servepath.netdiag.netns import NamespaceListeners, Socket

    obs = healthy("http://127.0.0.1:18080/decisions", address="127.0.0.1")
    obs.own_address = True
    obs.health = reply(error=("reset", "the server closed the connection without answering"))
    obs.app = obs.large = obs.echo = obs.spec = None
    obs.app_plan = None
    obs.protocol = ProtocolGuess("silent", "accepted the connection and closed it", b"")
    obs.mapping = PortMapping("docker-proxy", "tcp", 18080, container_port, "127.0.0.1",
                              "172.17.0.2")  # fmt: skip
    listeners = tuple(Socket(a, p) for a, p in inside)
    obs.container = NamespaceListeners("net:[9]", 77, "servepath", ("127.0.0.1", "172.17.0.2"),
                                       listeners)  # fmt: skip
    return obs


def case_container_not_listening() -> Observations:
    return _published((("127.0.0.1", 8080),))


def case_slow_server() -> Observations:
    obs = healthy(slow_ms=500.0)
    obs.app = reply(200, body={"decision": "approve"}, method="POST", total_ms=800, server_ms=760)
    return obs


def case_slow_network() -> Observations:
    obs = healthy(slow_ms=500.0)
    obs.app = reply(200, body={"decision": "approve"}, method="POST", total_ms=800, server_ms=1.0)
    return obs


HOP2 = "10.20.2.1"


def _lossy_path(missed: int = 27, *, hop2_lost: int = 2, state: str = "open") -> Any:
    """client -> ROUTER -> HOP2 -> VM, 5 probes a hop; ``missed`` of 80 burst probes lost
    their first try, and HOP2 lost ``hop2_lost`` of its 5 (ROUTER none)."""
    from servepath.netdiag.quality import Burst
    from servepath.netdiag.trace import Hop, Trace

    hops = (
        Hop(1, ROUTER, (0.4,) * 5, 0),
        Hop(2, HOP2, (0.8,) * (5 - hop2_lost), hop2_lost),
        Hop(3, VM, (1.1,) * 4, 1),
    )
    trace = Trace(VM, VM, 8080, "tcp", "tcp-connect", True, hops, "reached", "open")
    answered = 80 - missed
    opened, closed = (answered, 0) if state == "open" else (0, answered)
    burst = Burst(VM, 8080, 80, opened, closed, 0, missed // 3, missed - missed // 3,
                  (1.1,) * answered)  # fmt: skip
    return trace, burst


def _lossy(obs: Observations, **kw: Any) -> None:
    obs.trace, obs.burst = _lossy_path(**kw)


def case_packet_loss() -> Observations:
    obs = healthy()
    _lossy(obs)
    # the walk ends once the health route answered through the loss
    obs.app = obs.large = obs.echo = obs.spec = None
    obs.app_plan = None
    return obs


CASES: dict[str, tuple[Callable[[], Observations], str | None]] = {
    "ok": (case_ok, None),
    "dns_nxdomain": (case_dns_nxdomain, "dns"),
    "dns_no_answer": (case_dns_no_answer, "dns"),
    "dns_timeout": (case_dns_timeout, "dns"),
    "dns_disagree": (case_dns_disagree, "dns"),
    "private_address": (case_private_address, "transport"),
    "no_route": (case_no_route, "transport"),
    "ipv4_unreachable": (lambda: case_family("IPv4"), "transport"),
    "ipv6_unreachable": (lambda: case_family("IPv6"), "transport"),
    "routing_loop": (case_routing_loop, "transport"),
    "port_filtered": (case_port_filtered, "transport"),
    "port_rejected": (case_port_rejected, "transport"),
    "port_closed": (case_port_closed, "transport"),
    "service_on_other_port": (case_service_on_other_port, "transport"),
    "tls_handshake_failed": (case_tls_handshake_failed, "tls"),
    "tls_untrusted": (case_tls_untrusted, "tls"),
    "tls_expired": (case_tls_expired, "tls"),
    "tls_chain_incomplete": (case_tls_chain_incomplete, "tls"),
    "tls_not_yet_valid": (case_tls_not_yet_valid, "tls"),
    "clock_skew": (case_clock_skew, "tls"),
    "tls_hostname_mismatch": (case_tls_hostname_mismatch, "tls"),
    "tls_on_plain_port": (case_tls_on_plain_port, "tls"),
    "plain_http_on_tls_port": (case_plain_http_on_tls_port, "tls"),
    "not_http": (case_not_http, "http"),
    "proxy_failed": (case_proxy_failed, "transport"),
    "proxy_denied": (case_proxy_denied, "http"),
    "virtual_host": (case_virtual_host, "http"),
    "upstream_error": (case_upstream_error, "http"),
    "upstream_timeout": (case_upstream_timeout, "app"),
    "overloaded": (case_overloaded, "http"),
    "no_response": (case_no_response, "http"),
    "http_error": (case_http_error, "app"),
    "unauthorized": (case_unauthorized, "app"),
    "route_not_found": (case_route_not_found, "app"),
    "bad_payload": (case_bad_payload, "app"),
    "redirected": (case_redirected, "app"),
    "intermittent": (case_intermittent, "repeat"),
    "mtu_blackhole": (case_mtu_blackhole, "large request"),
    "packet_loss": (case_packet_loss, "transport"),
    "slow_server": (case_slow_server, "latency"),
    "slow_network": (case_slow_network, "latency"),
    "container_not_listening": (case_container_not_listening, "http"),
}
LOCAL_CAUSES = {
    "not_listening",
    "bound_to_loopback",
    "conntrack_full",
    "accept_queue_overflow",
    "published_past_firewall",
}


def test_every_cause_of_the_vocabulary_has_a_case() -> None:
    assert set(CASES) | LOCAL_CAUSES == set(CAUSES)


@pytest.mark.parametrize("cause", sorted(CASES))
def test_each_cause_from_its_evidence_with_every_fact_filled(cause: str) -> None:
    build, stage = CASES[cause]
    report = diagnose(build(), strict=True)  # strict: a missing fact raises
    assert (report.failed_stage, report.cause) == (stage, cause), [
        (s.name, s.status, s.summary) for s in report.stages
    ]
    text = " ".join([report.explanation.meaning, *report.explanation.fix])
    assert "(unknown)" not in text and "?" not in report.explanation.meaning
    assert "\n" not in text
    assert report.ok == (cause == "ok")


@pytest.mark.parametrize("cause", sorted(set(CASES) - {"ok"}))
def test_stages_after_the_broken_one_say_why_they_were_not_tried(cause: str) -> None:
    report = diagnose(CASES[cause][0]())
    names = [s.name for s in report.stages]
    broken = names.index(report.failed_stage or "")
    for later in report.stages[broken + 1 :]:
        if later.status == "skip" and later.summary.startswith("not tried"):
            assert "the port is not open" not in later.summary or cause.startswith("port")


# --- precedence: which evidence outranks which ------------------------------------------------


def _with_8080_answering(obs: Observations) -> Observations:
    obs.other_services = {8080: f"http://{VM}:8080/"}
    return obs


def _on_port_80(result_80: Any) -> Observations:
    obs = healthy(f"http://{VM}/decisions")
    obs.ports = scan(VM, result_80, port(8080))
    return nothing_after_transport(_with_8080_answering(obs))


@pytest.mark.parametrize(
    ("asked", "cause", "owner", "offender"),
    [
        (port(80, "unreachable", offender=ROUTER, icmp=(3, 13)), "port_rejected",
         "firewall (network or cloud admin)", ROUTER),
        (port(80, "unreachable", offender=ROUTER, icmp=(3, 3)), "port_rejected",
         "firewall (network or cloud admin)", ROUTER),
        (port(80, "unreachable", offender=VM, icmp=(3, 3)), "port_rejected",
         "firewall (network or cloud admin)", VM),
        (port(80, "unreachable", offender=VM, icmp=(3, 10)), "port_rejected",
         "firewall (network or cloud admin)", VM),
        (port(80, "filtered"), "port_filtered", "firewall (network or cloud admin)", None),
        (port(80, "unreachable", offender=ROUTER, icmp=(3, 1)), "no_route", "network admin",
         ROUTER),
        (port(80, "closed"), "service_on_other_port", "caller", None),
    ],
)  # fmt: skip
def test_a_refusal_or_a_drop_outranks_another_port_that_answers(
    asked: Any, cause: str, owner: str, offender: str | None
) -> None:
    report = diagnose(_on_port_80(asked), strict=True)
    assert report.cause == cause and report.explanation.owner == owner
    fix = " ".join(report.explanation.fix)
    assert f"http://{VM}:8080/decisions" in fix  # the neighbour is still named, as a hint
    if offender is not None:
        assert offender in report.explanation.meaning
    if cause != "service_on_other_port":
        assert "it answers on 8080" in fix


def test_a_private_address_that_answers_on_another_port_is_reachable_after_all() -> None:
    obs = case_private_address()
    obs.ports = scan("10.99.0.5", port(8080, "filtered"), port(80))
    obs.other_services = {80: "http://10.99.0.5:80/"}
    assert diagnose(obs, strict=True).cause == "port_filtered"


def test_the_proxy_own_refusal_outranks_what_it_says_of_the_service() -> None:
    obs = case_proxy_denied()
    headers = (("server", "tinyproxy/1.11.1"), ("retry-after", "5"))
    page = "<html><title>Unable to connect</title></html>"
    obs.health = reply(503, headers=headers, body=page, proxy=PROXY)
    assert diagnose(obs, strict=True).cause == "proxy_denied"


def test_a_proxy_passing_on_the_services_own_403_is_not_a_proxy_refusal() -> None:
    obs = _proxied()
    relayed = (("via", "1.1 tinyproxy (tinyproxy/1.11.1)"), *reply().final.headers)
    obs.app = reply(403, headers=relayed, body={"error": "forbidden"}, method="POST", proxy=PROXY)
    obs.large = None
    report = diagnose(obs, strict=True)
    assert report.cause == "bad_payload" and report.explanation.owner == "caller"


def test_a_proxy_asking_for_credentials_says_how_to_give_them() -> None:
    headers = (("proxy-authenticate", 'Basic realm="corp"'),)
    page = "<html><title>Proxy auth</title></html>"
    obs = _proxied(health=reply(407, headers=headers, body=page, proxy=PROXY))
    obs.app = obs.large = None
    report = diagnose(obs, strict=True)
    assert report.cause == "proxy_denied"
    assert "HTTPS_PROXY=http://USER:PASS@10.20.1.1:3128" in " ".join(report.explanation.fix)


def test_tls_on_a_plain_url_outranks_the_protocol_error_it_causes() -> None:
    obs = case_tls_on_plain_port()
    obs.protocol = ProtocolGuess("tls", "TLS record", b"\x15\x03")
    assert diagnose(obs, strict=True).cause == "tls_on_plain_port"


def test_a_port_that_closes_without_a_word_is_an_http_error_that_says_so() -> None:
    obs = case_not_http()
    obs.protocol = ProtocolGuess("silent", "accepted the connection and closed it", b"")
    report = diagnose(obs, strict=True)
    assert report.cause == "http_error"
    assert "closed it" in report.explanation.meaning
    assert "<request_id>" not in " ".join(report.explanation.fix)


def test_an_https_url_on_a_redis_port_is_not_http_not_a_tls_failure() -> None:
    obs = _https("handshake_failed")
    obs.protocol = ProtocolGuess("redis", 'answered "-ERR"', b"-ERR")
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("tls", "not_http")


@pytest.mark.parametrize(
    ("report", "cause"),
    [
        (nginx(504, "504 Gateway Time-out"), "upstream_timeout"),
        (nginx(503, "503 Service Temporarily Unavailable", **{"retry-after": "30"}), "overloaded"),
        (nginx(503, "503 Service Temporarily Unavailable"), "upstream_error"),
        (nginx(502, "502 Bad Gateway"), "upstream_error"),
        (nginx(429, "429 Too Many Requests"), "overloaded"),
        (reply(503, body={"error": "the model is loading"}), "overloaded"),
        (reply(503, headers=(("retry-after", "3"),), body="busy"), "overloaded"),
        (reply(503, headers=(), body="Service Unavailable"), "overloaded"),
        (nginx(404, "404 Not Found"), "virtual_host"),
        (nginx(421, "421 Misdirected Request"), "virtual_host"),
        (reply(404, headers=(("server", "Apache/2.4"),), body="<!DOCTYPE html><title>x</title>"),
         "virtual_host"),
        (reply(404, headers=(), body={"detail": "Not Found"}), "route_not_found"),
        (reply(404, body={"error": "no route", "routes": ["POST /decisions"]}), "route_not_found"),
        (reply(401, headers=(), body={"detail": "no key"}), "http_error"),
    ],
)  # fmt: skip
def test_http_answers_by_who_sent_them(report: Any, cause: str) -> None:
    obs = healthy()
    obs.health = report
    obs.app = obs.large = obs.echo = obs.spec = None
    assert diagnose(obs, strict=True).cause == cause


def test_the_504_from_nginx_names_the_server_and_the_time_it_waited() -> None:
    report = diagnose(case_upstream_timeout(), strict=True)
    assert "nginx/1.22.1" in report.explanation.meaning
    assert "504" in report.explanation.meaning


def test_overloaded_says_who_and_when_to_retry() -> None:
    report = diagnose(case_overloaded(), strict=True)
    assert "the service (servepath)" not in report.explanation.meaning
    assert "retry after 7 s" in " ".join(report.explanation.fix)
    obs = case_overloaded()
    obs.health = nginx(503, "503", **{"retry-after": "30"})
    assert "reverse proxy" in diagnose(obs, strict=True).explanation.meaning


def test_a_raw_multiline_error_page_is_one_line_in_the_stage() -> None:
    report = diagnose(case_upstream_error())
    summary = report.stage("http").summary  # type: ignore[union-attr]
    assert "\n" not in summary and "<" not in summary
    assert summary.endswith("502 Bad Gateway")


def test_a_virtual_host_names_the_name_that_works_and_how_to_try_it() -> None:
    from servepath.netdiag.doctor.evidence import VhostTrial

    obs = case_virtual_host()
    obs.vhost_trials = [VhostTrial("api.test", "reverse DNS", 200, True)]
    report = diagnose(obs, strict=True)
    fix = " ".join(report.explanation.fix)
    assert "servepath answers when asked for the name api.test" in fix
    assert f"curl --resolve api.test:8080:{VM} http://api.test:8080/decisions" in fix
    assert "--host-header" in fix
    obs.vhost_trials = [VhostTrial("www.test", "the certificate", 404, False)]
    fix = " ".join(diagnose(obs, strict=True).explanation.fix)
    assert "names that may work (from the certificate): www.test" in fix


def test_no_response_says_how_long_it_waited_and_no_question_marks() -> None:
    report = diagnose(case_no_response(), strict=True)
    assert "within 10 s" in report.explanation.meaning
    assert "?" not in report.explanation.meaning


def test_the_large_request_that_stalls_without_the_path_to_blame_is_a_warning() -> None:
    obs = case_mtu_blackhole()
    obs.mtu = _mtu(stalling=(1460, 1360, 536))  # smaller segments stall too: the server
    obs.mtu_hop = None
    report = diagnose(obs, strict=True)
    assert report.ok
    assert report.stage("large request").status == "warn"  # type: ignore[union-attr]


def test_mtu_blackhole_names_the_size_and_the_hop() -> None:
    report = diagnose(case_mtu_blackhole(), strict=True)
    assert "about 1400" in report.explanation.meaning
    assert f"hop 1 ({ROUTER})" in " ".join(report.explanation.fix)
    assert report.explanation.owner == "network admin"


def test_localhost_is_healthy_whatever_a_dns_server_says_of_it() -> None:
    from servepath.netdiag.dns import DnsReport, localhost_answer, probe_dns

    obs = healthy("http://localhost:8080/decisions", address="127.0.0.1")
    answer = localhost_answer("localhost", probe_dns.__globals__["dns"].rdatatype.A)
    obs.dns = DnsReport("localhost", "A", False, (answer,), True, "one resolver asked: 127.0.0.1")
    obs.own_address = True
    report = diagnose(obs, strict=True)
    assert report.ok, report.cause
    assert "this machine" in report.stage("address").summary  # type: ignore[union-attr]


def test_an_address_of_this_machine_is_not_called_from_outside() -> None:
    from servepath.net.routes import RouteLookup

    obs = healthy("http://10.99.0.1:8080/", address="10.99.0.1")
    obs.route = RouteLookup("10.99.0.1", "via-default", obs.gateway)
    obs.own_address = True
    stage = diagnose(obs).stage("address")
    assert stage is not None and stage.status == "ok" and "default gateway" not in stage.summary


def test_port_closed_on_ipv6_suggests_a_host_that_listens_on_ipv6() -> None:
    obs = healthy("http://[fd20:2::2]:8088/decisions", address="fd20:2::2")
    obs.ports = scan("fd20:2::2", port(8088, "closed"))
    report = diagnose(nothing_after_transport(obs), strict=True)
    assert "--host :: --port 8088" in " ".join(report.explanation.fix)
    assert "fd20:2::2 answers" in report.explanation.meaning


def test_after_nxdomain_later_stages_blame_dns_not_the_port() -> None:
    report = diagnose(case_dns_nxdomain())
    for name in ("address", "route", "transport", "http", "app"):
        summary = report.stage(name).summary  # type: ignore[union-attr]
        assert "port is not open" not in summary, (name, summary)
        assert "dns failed" in summary, (name, summary)


def test_the_evidence_tables_name_only_causes_of_the_vocabulary() -> None:
    for _, cause, _ in PORT_EVIDENCE + HTTP_EVIDENCE:
        assert cause in CAUSES


@pytest.mark.parametrize(
    ("listeners", "cause", "stage"),
    [
        ((), "not_listening", "listening"),
        ((("127.0.0.1", "loopback"),), "bound_to_loopback", "bind"),
        ((("::1", "loopback"),), "bound_to_loopback", "bind"),
        ((("0.0.0.0", "unspecified"),), "ok", None),
    ],
)
def test_local_causes(
    listeners: tuple[tuple[str, str], ...], cause: str, stage: str | None
) -> None:
    from servepath.net.listeners import Listener

    built = tuple(Listener("tcp", a, 8080, k, 42, "app", "python3") for a, k in listeners)  # type: ignore[arg-type]
    listen = PortListenReport(8080, built)
    health = (200, "GET http://127.0.0.1:8080/ -> 200") if listeners else (None, "not asked")
    report = diagnose_local(8080, listen, {"in_container": False}, health, 0.01)
    assert (report.failed_stage, report.cause) == (stage, cause)
    assert "(unknown)" not in report.explanation.meaning


def test_the_explanations_hold_no_unfilled_placeholder_in_any_case() -> None:
    for cause, (build, _) in CASES.items():
        report = diagnose(build(), strict=True)
        for line in report.explanation.fix:
            assert "{" not in line and "<request_id>" not in line, (cause, line)


def test_the_evidence_order_in_the_docs_is_the_order_in_the_code() -> None:
    from tests.support import TESTS_DIR

    page = (TESTS_DIR.parent / "docs" / "doctor.md").read_text()
    for table in (PORT_EVIDENCE, HTTP_EVIDENCE):
        rows = [line for line in page.splitlines() if line.startswith("| ") and "`" in line]
        listed = [
            (line.split("|")[2].strip(), line.split("|")[3].strip().strip("`"))
            for line in rows
            if line.split("|")[1].strip().isdigit()
        ]
        expected = [(evidence, cause) for evidence, cause, _ in table]
        positions = [listed.index(row) for row in expected]
        assert positions == sorted(positions)
    for cause in CAUSES:
        assert f"| `{cause}` |" in page


def test_a_container_bound_to_loopback_inside_is_named_with_the_fix() -> None:
    report = diagnose(case_container_not_listening(), strict=True)
    assert "docker-proxy publishes 127.0.0.1:18080 to the container's 172.17.0.2:8080" in (
        report.explanation.meaning
    )
    assert "127.0.0.1:8080 (loopback only)" in report.explanation.meaning
    assert "--host 0.0.0.0" in " ".join(report.explanation.fix)


def test_a_published_port_80_with_the_service_on_8080_inside_names_8080() -> None:
    report = diagnose(_published((("0.0.0.0", 8080),), container_port=80), strict=True)
    assert report.cause == "container_not_listening"
    assert "docker run -p 127.0.0.1:18080:8080" in " ".join(report.explanation.fix)


def test_a_container_listening_with_nothing_published_is_named_on_a_closed_port() -> None:
    from servepath.netdiag.netns import NamespaceListeners, Socket

    obs = healthy("http://127.0.0.1:18080/decisions", address="127.0.0.1")
    obs.own_address = True
    obs.ports = scan("127.0.0.1", port(18080, "closed"))
    obs.unpublished = [
        NamespaceListeners(
            "net:[9]",
            77,
            "servepath",
            ("127.0.0.1", "172.17.0.2"),
            (Socket("0.0.0.0", 8080),),
            "docker",
        )
    ]
    report = diagnose(nothing_after_transport(obs), strict=True)
    assert report.cause == "port_closed"
    fix = " ".join(report.explanation.fix)
    assert "a container at 172.17.0.2 (servepath) listens on 8080" in fix
    assert "docker run -p 18080:8080" in fix


def test_a_401_asks_for_the_key_and_says_whether_one_was_sent() -> None:
    report = diagnose(case_unauthorized())
    assert report.cause == "unauthorized" and report.explanation.owner == "caller"
    assert "the request carried none" in report.explanation.meaning
    assert any("--api-key KEY" in line for line in report.explanation.fix)
    obs = case_unauthorized()
    obs.api_key_sent = True
    sent = diagnose(obs)
    assert "the key sent was refused" in sent.explanation.meaning
    assert any("--api-key-file" in line for line in sent.explanation.fix)
    assert not any("--api-key KEY" in line for line in sent.explanation.fix)


# --- redirects on the predict route ---------------------------------------------------------


def test_a_301_on_the_predict_route_names_the_target_and_what_a_follower_gets() -> None:
    report = diagnose(case_redirected(), strict=True)
    assert (report.failed_stage, report.cause) == ("app", "redirected")
    assert report.explanation.owner == "caller"
    assert HTTPS_TARGET in report.explanation.meaning
    assert "as a GET" in report.explanation.meaning
    assert f"GET {HTTPS_TARGET} got 405" in report.explanation.meaning
    fix = " ".join(report.explanation.fix)
    assert f"call the URL the redirect names directly: {HTTPS_TARGET}" in fix
    assert "--post301" in fix
    assert report.stage("large request").summary == "not tried: app failed"  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [301, 302, 303])
def test_every_method_changing_redirect_is_a_failure(status: int) -> None:
    obs = healthy(large=None, redirect=None)
    obs.app = redirect(status, HTTPS_TARGET)
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("app", "redirected")


@pytest.mark.parametrize("status", [307, 308])
def test_a_method_keeping_redirect_is_a_warning_and_the_walk_is_healthy(status: int) -> None:
    obs = healthy(large=None)
    obs.app = redirect(status, HTTPS_TARGET)
    obs.redirect = chain((f"http://{VM}:8080/decisions", status), (HTTPS_TARGET, 200))
    report = diagnose(obs, strict=True)
    assert report.ok
    app = report.stage("app")
    assert app is not None and app.status == "warn"
    assert f"{status} to {HTTPS_TARGET}" in app.summary and "keeps the method" in app.summary


def test_a_redirect_loop_is_named_even_with_307() -> None:
    here = f"http://{VM}:8080/decisions"
    there = f"http://{VM}:8080/v1/decisions"
    obs = healthy(large=None)
    obs.app = redirect(307, there)
    obs.redirect = chain((here, 307), (there, 307), (here, 307),
                         error=("too_many_redirects", "more than 10 redirects"))  # fmt: skip
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("app", "redirected")
    assert f"a loop ({here} -> {there} -> {here})" in " ".join(report.explanation.fix)
    assert not any("directly" in line for line in report.explanation.fix)


def test_a_redirect_to_another_host_is_named() -> None:
    obs = healthy(large=None, redirect=None)
    obs.app = redirect(302, "https://login.example.com/sso?next=/decisions")
    report = diagnose(obs, strict=True)
    assert report.cause == "redirected"
    fix = " ".join(report.explanation.fix)
    assert "another host, login.example.com" in fix


# --- the large request's own failures -----------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_on_the_large_request_is_a_failure_named_for_who_answered(status: int) -> None:
    page = nginx(status, f"{status} Error")
    obs = healthy(large=page)
    report = diagnose(obs, strict=True)
    assert not report.ok
    assert report.failed_stage == "large request"
    assert "nginx/1.22.1" in report.explanation.meaning
    assert "KB batch of" in report.explanation.meaning or report.cause != "http_error"
    if report.cause == "http_error":
        assert "nginx/1.22.1 answered, not the app" in " ".join(report.explanation.fix)


def test_a_500_from_servepath_on_the_large_request_points_at_its_request_id() -> None:
    obs = healthy(large=reply(500, body={"error": "batch failed"}, method="POST"))
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("large request", "http_error")
    assert report.explanation.meaning.startswith("the service (servepath) answered 500")
    assert any("0190b2c4" in line for line in report.explanation.fix)


# --- routing loops, and the port evidence's order read from its table ---------------------------


def test_a_routing_loop_names_the_two_routers_that_bounce_it() -> None:
    report = diagnose(case_routing_loop(), strict=True)
    assert (report.failed_stage, report.cause) == ("transport", "routing_loop")
    assert report.explanation.owner == "network admin"
    assert f"between {ROUTER} and {OTHER_ROUTER}" in report.explanation.meaning
    assert f"each of {ROUTER} and {OTHER_ROUTER} sends {VM}" in report.explanation.fix[0]


def test_a_routing_loop_without_a_trace_names_the_router_that_said_so() -> None:
    obs = case_routing_loop()
    obs.trace = None
    report = diagnose(obs, strict=True)
    assert report.cause == "routing_loop"
    assert f"between {ROUTER} and the router it sends" in report.explanation.meaning


def _private_via_default(obs: Observations) -> None:
    from servepath.net.routes import RouteLookup

    obs.route = RouteLookup(VM, "via-default", obs.gateway)


def _another_port_answers(obs: Observations) -> None:
    obs.other_services = {80: f"http://{VM}:80/"}


VM6 = "fd20:2::2"


def _ipv6_answers(obs: Observations) -> None:
    obs.dialled = {VM6: port(8080)}


def _ipv6_refuses(obs: Observations) -> None:
    obs.dialled = {VM6: port(8080, "closed")}


#: Each row of PORT_EVIDENCE as observations: the asked port's result, and what else holds.
_PORT_FINDINGS: dict[str, tuple[Callable[[], Any], Callable[[Observations], None] | None]] = {
    "a router or firewall on the way refuses": (
        lambda: port(8080, "unreachable", offender=ROUTER, icmp=(3, 13)),
        None,
    ),
    "the target's own firewall refuses": (
        lambda: port(8080, "unreachable", offender=VM, icmp=(3, 3)),
        None,
    ),
    "a router says the packets' time ran out": (
        lambda: port(8080, "unreachable", offender=ROUTER, icmp=(11, 0)),
        None,
    ),
    "a router says there is no route": (
        lambda: port(8080, "unreachable", offender=ROUTER, icmp=(3, 1)),
        None,
    ),
    "a private address reached only through the default gateway": (
        lambda: port(8080, "filtered"),
        _private_via_default,
    ),
    "many connections opened in a burst": (lambda: port(8080), _lossy),
    "no answer at all": (lambda: port(8080, "filtered"), None),
    "the target itself resets (RST), and the service answers": (
        lambda: port(8080, "closed"),
        _another_port_answers,
    ),
    "the target itself resets (RST)": (lambda: port(8080, "closed"), None),
    "the name's other address family answers": (lambda: port(8080, "closed"), _ipv6_answers),
    "the asked address answers, and every IPv6 address": (lambda: port(8080), _ipv6_refuses),
}


def _finding(evidence: str) -> tuple[Callable[[], Any], Callable[[Observations], None] | None]:
    # the longest matching start: "... resets (RST), and ..." before "... resets (RST)"
    key = max((k for k in _PORT_FINDINGS if evidence.startswith(k)), key=len)
    return _PORT_FINDINGS[key]


def test_every_row_of_the_port_evidence_table_has_a_finding() -> None:
    for evidence, _, _ in PORT_EVIDENCE:
        assert any(evidence.startswith(k) for k in _PORT_FINDINGS), evidence


def _can_hold_together(stronger: int, weaker: int) -> bool:
    """Whether two rows' findings can be true of one path at once: another port answering
    (or to some of the burst's connections) proves the address reachable, so it is never also
    a private one behind the gateway."""
    pair = {_finding(PORT_EVIDENCE[stronger][0])[1], _finding(PORT_EVIDENCE[weaker][0])[1]}
    # an answer to the burst proves it as well
    return not (_private_via_default in pair and ({_another_port_answers, _lossy} & pair))


@pytest.mark.parametrize(
    ("stronger", "weaker"),
    [
        (i, j)
        for i in range(len(PORT_EVIDENCE))
        for j in range(i + 1, len(PORT_EVIDENCE))
        if _can_hold_together(i, j)
    ],
)
def test_the_port_verdict_follows_the_order_of_the_table_in_causes(
    stronger: int, weaker: int
) -> None:
    """The asked port's result is the stronger row's; what else the weaker row holds (a
    private address behind the default gateway, another port answering) holds as well: the
    stronger row's cause wins, as PORT_EVIDENCE (and so docs/doctor.md) orders them."""
    evidence, cause, _ = PORT_EVIDENCE[stronger]
    weak_evidence = PORT_EVIDENCE[weaker][0]
    result, context = _finding(evidence)
    _, weak_context = _finding(weak_evidence)
    obs = healthy()
    obs.ports = scan(VM, result(), port(80, "open" if weak_context else "closed"))
    obs.trace = None
    for extra in (weak_context, context):
        if extra is not None:
            extra(obs)
    report = diagnose(nothing_after_transport(obs), strict=True)
    assert (report.failed_stage, report.cause) == ("transport", cause), (evidence, weak_evidence)


# --- failures that come and go ----------------------------------------------------------------


def test_intermittent_counts_the_failures_and_names_who_answered_them() -> None:
    report = diagnose(case_intermittent(), strict=True)
    assert report.explanation.owner == "server operator"
    assert (
        f"5 of 11 POST /decisions answered 502 from nginx/1.22.1 at {VM}:8080"
        in report.explanation.meaning
    )
    assert "reused connections 3 of 5, on fresh ones 2 of 6" in report.explanation.meaning
    fix = " ".join(report.explanation.fix)
    assert "one replica or upstream behind nginx/1.22.1 fails" in fix
    assert "keep-alive race" not in fix


def test_failures_only_on_reused_connections_are_the_keep_alive_race() -> None:
    obs = healthy()
    obs.repeats = [
        _repetition(
            "/decisions",
            ("first", "200"),
            *((("fresh", "200"),) * 5),
            ("fresh", "200"),
            ("reused", "reset"),
            ("reused", "200"),
            ("reused", "reset"),
            ("reused", "200"),
        ),
    ]
    report = diagnose(obs, strict=True)
    assert report.cause == "intermittent"
    assert "2 of 11 POST /decisions got reset" in report.explanation.meaning
    assert "keep-alive race" in " ".join(report.explanation.fix)


def test_a_peer_that_closes_each_connection_is_a_warning_not_the_keep_alive_race() -> None:
    """tinyproxy closes each connection after its answer without `Connection: close`: a
    request sent at once over the kept connection is reset, and the next one, finding it
    closed, opens another. No request is answered over a reused connection."""
    obs = healthy()
    obs.repeats = [
        _repetition(
            "/decisions",
            ("first", "200"),
            *((("fresh", "200"),) * 6),
            *((("reused", "reset"), ("fresh", "200")) * 2),
        ),
    ]
    report = diagnose(obs, strict=True)
    assert report.ok and report.cause == "ok"
    repeat = report.stage("repeat")
    assert repeat is not None and repeat.status == "warn"
    assert "closes each connection after its answer" in repeat.summary
    assert "the 2 resets came on reused connections" in repeat.summary
    # one answer over a reused connection: the peer keeps connections, and drops some
    obs.repeats = [
        _repetition(
            "/decisions",
            ("first", "200"),
            *((("fresh", "200"),) * 6),
            ("reused", "200"),
            ("reused", "reset"),
        ),
    ]
    assert diagnose(obs, strict=True).cause == "intermittent"
    # a 502 beside the resets is not explained by the closes
    obs.repeats = [
        _repetition(
            "/decisions",
            ("first", "200"),
            ("fresh", "502 from nginx/1.22.1"),
            *((("fresh", "200"),) * 5),
            ("reused", "reset"),
            ("fresh", "200"),
        ),
    ]
    assert diagnose(obs, strict=True).cause == "intermittent"


def test_a_failed_prediction_that_passes_when_repeated_is_intermittent_not_upstream_error() -> None:
    obs = case_intermittent()
    obs.app = nginx(502, "502 Bad Gateway")
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("app", "intermittent")


def test_a_prediction_that_always_fails_is_not_intermittent() -> None:
    obs = healthy()
    obs.app = nginx(502, "502 Bad Gateway")
    obs.repeats = [_repetition("/decisions", *((("fresh", "502 from nginx/1.22.1"),) * 11))]
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("app", "upstream_error")
    repeat = report.stage("repeat")
    assert repeat is not None and repeat.status == "warn"
    assert "11 502 from nginx/1.22.1" in repeat.summary  # every time: not a 1-in-N failure


def test_a_healthy_repetition_says_what_it_counted() -> None:
    obs = healthy()
    obs.repeats = [_repetition("/decisions", *((("fresh", "200"),) * 11))]
    report = diagnose(obs, strict=True)
    assert report.ok
    assert report.stage("repeat").summary == (  # type: ignore[union-attr]
        "POST /decisions 11x: 11 200 (fresh and reused connections)"
    )


def test_a_502_on_the_openapi_document_is_a_finding_never_a_server_without_one() -> None:
    obs = healthy(spec=None, app=None, large=None, echo=None)
    obs.spec_refused = nginx(502, "502 Bad Gateway")
    from servepath.netdiag.doctor.plan import plan_app

    obs.app_plan = plan_app(obs.plan.target, None, None)
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("app", "upstream_error")
    assert "publishes no OpenAPI" not in " ".join(s.summary for s in report.stages)
    obs.repeats = [
        _repetition(
            "/openapi.json", ("first", "502 from nginx/1.22.1"), ("fresh", "200"), method="GET"
        ),
    ]
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("app", "intermittent")
    assert "1 of 2 GET /openapi.json answered 502" in report.explanation.meaning


def test_the_latency_on_loopback_blames_no_network() -> None:
    obs = healthy("http://127.0.0.1:8080/decisions", address="127.0.0.1", own_address=True)
    latency = diagnose(obs, strict=True).stage("latency")
    assert latency is not None and latency.summary.endswith("client and HTTP overhead dominates")
    remote = diagnose(healthy(), strict=True).stage("latency")
    assert remote is not None and remote.summary.endswith("network and proxies dominates")


def test_docker_proxy_holding_loopback_is_fixed_by_the_publish_address_not_host() -> None:
    from servepath.net.listeners import Listener, PortMapping

    proxy = Listener("tcp", "127.0.0.1", 18090, "loopback", 4242, "root", "docker-proxy",  # type: ignore[arg-type]
                     forwarder="docker-proxy")  # fmt: skip
    mapping = PortMapping("docker-proxy", "tcp", 18090, 8080, "127.0.0.1", "172.17.0.2")  # type: ignore[arg-type]
    listen = PortListenReport(18090, (proxy,), (mapping,))
    health = (200, "GET http://127.0.0.1:18090/ -> 200")
    report = diagnose_local(18090, listen, {"in_container": False}, health, 0.01)
    assert (report.failed_stage, report.cause) == ("bind", "bound_to_loopback")
    fix = " ".join(report.explanation.fix)
    assert "docker run -p 18090:8080" in fix
    assert "--host 0.0.0.0" not in fix
    assert "outside the container" not in report.explanation.meaning
    assert "not from other hosts" in report.explanation.meaning


def test_a_host_process_bound_to_loopback_is_told_to_bind_every_interface() -> None:
    from servepath.net.listeners import Listener

    app = Listener("tcp", "127.0.0.1", 8080, "loopback", 42, "app", "python3")  # type: ignore[arg-type]
    report = diagnose_local(8080, PortListenReport(8080, (app,)), {"in_container": False},
                            (200, "ok"), 0.01)  # fmt: skip
    assert "servepath serve --host 0.0.0.0" in " ".join(report.explanation.fix)
    assert "outside the container" not in report.explanation.meaning


# --- both address families ----------------------------------------------------------------------


def test_an_ipv4_only_listener_behind_an_aaaa_record_is_ipv6_unreachable_for_its_operator() -> None:
    report = diagnose(case_family("IPv6"), strict=True)
    assert (report.failed_stage, report.cause) == ("transport", "ipv6_unreachable")
    assert report.explanation.owner == "server operator"
    assert f"answers on {VM} but is refused (RST) on fd20:2::2" in report.explanation.meaning
    fix = " ".join(report.explanation.fix)
    assert "listens on IPv4 only" in fix and "servepath serve --host ::" in fix
    assert "remove the AAAA record of api.test" in fix


def test_a_silent_ipv6_path_is_the_network_admins() -> None:
    report = diagnose(case_family("IPv6", "filtered"), strict=True)
    assert report.cause == "ipv6_unreachable"
    assert report.explanation.owner == "network admin"
    assert "waits until its connect timeout" in report.explanation.meaning
    assert "ip6tables -I INPUT -p tcp --dport 8080" in " ".join(report.explanation.fix)


def test_the_ipv4_twin_when_only_ipv6_answers() -> None:
    report = diagnose(case_family("IPv4"), strict=True)
    assert (report.failed_stage, report.cause) == ("transport", "ipv4_unreachable")
    assert "servepath serve --host 0.0.0.0" in " ".join(report.explanation.fix)


# --- a certificate's dates, by whose clock ------------------------------------------------------


def test_a_certificate_not_yet_valid_is_never_called_expired() -> None:
    report = diagnose(case_tls_not_yet_valid(), strict=True)
    assert report.cause == "tls_not_yet_valid" and report.explanation.owner == "server operator"
    assert "expired" not in report.explanation.meaning
    assert "clock agrees with the server's" in report.explanation.meaning
    assert "renew" not in report.explanation.fix[0].split("reissue")[0]


def test_a_clock_days_behind_the_servers_is_the_callers_clock_skew() -> None:
    report = diagnose(case_clock_skew(), strict=True)
    assert report.explanation.owner == "caller"
    assert "3 days behind the server's" in report.explanation.meaning
    assert "looks not yet valid only by this clock" in report.explanation.meaning
    assert "timedatectl set-ntp true" in report.explanation.fix[0]


def test_a_clock_ahead_makes_a_valid_certificate_look_expired() -> None:
    obs = _https("expired")
    cert = _dated_cert(NOW - timedelta(days=90), NOW - timedelta(days=1))
    obs.tls = _tls("expired", protocol="TLSv1.3", certificate=cert, problems=("expired",))
    obs.clock_skew_s, obs.server_date = 5 * 86400.0, "Thu, 26 Nov 2026 00:00:00 GMT"
    report = diagnose(obs, strict=True)
    assert report.cause == "clock_skew" and "5 days ahead of" in report.explanation.meaning


def test_without_the_servers_date_the_certificate_is_judged_by_its_dates() -> None:
    report = diagnose(_future_cert(None), strict=True)
    assert report.cause == "tls_not_yet_valid"


# --- incomplete chains -----------------------------------------------------------------------


def test_a_leaf_sent_without_its_intermediate_is_an_incomplete_chain_not_a_private_ca() -> None:
    report = diagnose(case_tls_chain_incomplete(), strict=True)
    assert report.explanation.owner == "server operator"
    assert "without the CA certificate that issued it (CN=Servepath Intermediate)" in (
        report.explanation.meaning
    )
    fix = " ".join(report.explanation.fix)
    assert "serve the full chain" in fix and "http://ca.test/int.der" in fix
    assert "private CA" not in report.explanation.meaning


def test_without_an_aia_url_it_stays_untrusted_and_names_the_missing_issuer() -> None:
    report = diagnose(_leaf_without_issuer(None, None), strict=True)
    assert report.cause == "tls_untrusted"
    assert (
        "sends no certificate for its issuer CN=Servepath Intermediate"
        in (report.explanation.fix[0])
    )


def test_localhost_refused_on_ipv6_by_a_server_on_127_0_0_1_is_only_a_warning() -> None:
    obs = healthy("http://localhost:8080/decisions", address="127.0.0.1", own_address=True)
    obs.name_addresses = ("127.0.0.1", "::1")
    obs.dialled = {"::1": port(8080, "closed")}
    report = diagnose(obs, strict=True)
    assert report.ok
    transport = report.stage("transport")
    assert transport is not None and transport.status == "warn"
    assert "fall back at once" in transport.summary


def test_a_private_address_the_gateway_has_no_route_for_is_private_not_no_route() -> None:
    from servepath.net.routes import RouteLookup

    obs = healthy("http://10.99.0.5:8080/decisions", address="10.99.0.5")
    obs.route = RouteLookup("10.99.0.5", "via-default", obs.gateway)
    obs.ports = scan("10.99.0.5", port(8080, "unreachable", offender=ROUTER, icmp=(3, 0)))
    report = diagnose(nothing_after_transport(obs), strict=True)
    assert report.cause == "private_address"
    obs.route = RouteLookup("10.99.0.5", "via-route", obs.gateway)  # a route of its own
    assert diagnose(obs, strict=True).cause == "no_route"


def test_a_trusted_certificate_about_to_expire_warns_at_the_threshold_serve_and_tls_use() -> None:
    from servepath.net.certificates import EXPIRY_WARNING_DAYS

    for days, status in ((EXPIRY_WARNING_DAYS - 4, "warn"), (EXPIRY_WARNING_DAYS + 30, "ok")):
        obs = healthy("https://api.test:8443/decisions")
        cert = _dated_cert(NOW - timedelta(days=60), NOW + timedelta(days=days))
        obs.tls = _tls(
            None,
            protocol="TLSv1.3",
            cipher="TLS_AES_128_GCM_SHA256",
            certificate=cert,
            trusted=True,
        )
        report = diagnose(obs)
        tls = next(s for s in report.stages if s.name == "tls")
        assert tls.status == status, tls
        assert report.ok, report.cause  # a warning, not a broken path


# --- doctor --local: what the kernel says ---------------------------------------------------------


def _kernel_readings(
    *,
    queued: int = 0,
    backlog: int = 4096,
    overflows: int = 0,
    count: int = 900,
    maximum: int = 262144,
    drop: int = 0,
    insert_failed: int = 0,
    logged: int | None = 0,
    input_rules: str | None = None,
    mappings: tuple[Any, ...] = (),
    somaxconn: int = 4096,
) -> Any:
    from servepath.net.conntrack import ConntrackTable
    from servepath.net.firewall import input_verdict, parse_iptables_save, published_past_firewall
    from servepath.net.kernel import ListenCounters, ListenQueue
    from servepath.netdiag.doctor.kernel_stages import KernelReadings, KernelSample

    before = KernelSample(10.0, ListenCounters(100, 100), {"drop": 5, "insert_failed": 1,
                                                           "early_drop": 0})  # fmt: skip
    after = KernelSample(
        10.5,
        ListenCounters(100 + overflows, 100 + overflows),
        {"drop": 5 + drop, "insert_failed": 1 + insert_failed, "early_drop": 0},
    )
    rules = parse_iptables_save(input_rules) if input_rules is not None else None
    return KernelReadings(
        before=before,
        after=after,
        queues=(ListenQueue("0.0.0.0", 8080, queued, backlog, 77),),
        somaxconn=somaxconn,
        table=ConntrackTable(count, maximum),
        table_full_logged=logged,
        input=input_verdict(rules, 8080) if rules is not None else None,
        bypasses=tuple(published_past_firewall(rules, mappings, 8080)) if rules else (),
        firewall_note=None if rules is not None else "the firewall's rules need root to read",
    )


def _local_report(kernel: Any, *, listening: bool = True, mappings: tuple[Any, ...] = ()) -> Any:
    from servepath.net.listeners import Listener

    app = Listener("tcp", "0.0.0.0", 8080, "unspecified", 42, "app", "python3")  # type: ignore[arg-type]
    listen = PortListenReport(8080, (app,) if listening else (), mappings)
    health = (200, "GET http://127.0.0.1:8080/ -> 200") if listening else (None, "not asked")
    return diagnose_local(8080, listen, {"in_container": False}, health, 0.01, kernel,
                          strict=True)  # fmt: skip


_UFW_DENY = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:ufw-before-input - [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-before-input
-A INPUT -j ufw-user-input
-A DOCKER-USER -j RETURN
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 8080 -j DROP
COMMIT
"""


def _docker_publish(host_ip: str | None = None) -> Any:
    from servepath.net.listeners import PortMapping

    return PortMapping("docker-proxy", "tcp", 8080, 80, host_ip, "172.17.0.2")  # type: ignore[arg-type]


def test_a_healthy_kernel_adds_three_ok_stages_and_no_warning() -> None:
    report = _local_report(_kernel_readings(input_rules="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"))
    assert report.ok and report.warnings == ()
    for name in ("conntrack", "firewall", "accept queue"):
        stage = report.stage(name)
        assert stage is not None and stage.status == "ok", stage
    names = [s.name for s in report.stages]
    assert names.index("conntrack") < names.index("accept queue") < names.index("health")


def test_the_ports_own_full_queue_is_accept_queue_overflow_with_backlog_and_somaxconn() -> None:
    report = _local_report(_kernel_readings(queued=128, backlog=128, overflows=37, somaxconn=128))
    assert (report.failed_stage, report.cause) == ("accept queue", "accept_queue_overflow")
    e = report.explanation
    assert e.owner == "server operator"
    assert "128 of 128 connections wait for accept()" in e.meaning
    assert "37 dropped handshakes" in e.meaning and "python3 (pid 42)" in e.meaning
    fix = " ".join(e.fix)
    assert "servepath serve --backlog 4096" in fix and "--workers" in fix
    assert "ss -ltnp" not in fix  # the port's own queue: no other listener to look for
    assert "net.core.somaxconn (now 128)" in fix


def test_a_full_queue_is_named_even_before_a_drop_is_counted() -> None:
    report = _local_report(_kernel_readings(queued=2, backlog=1))
    assert report.cause == "accept_queue_overflow"
    # a backlog far under the kernel's cap: raising somaxconn is not part of the fix
    assert "somaxconn" not in " ".join(report.explanation.fix)


def test_drops_counted_in_the_namespace_while_the_ports_queue_has_room_only_warn() -> None:
    report = _local_report(_kernel_readings(queued=0, backlog=4096, overflows=12))
    assert report.ok
    stage = report.stage("accept queue")
    assert stage is not None and stage.status == "warn"
    assert "another listener's" in stage.summary
    (warning,) = report.warnings
    assert warning.cause == "accept_queue_overflow"
    assert "whole network namespace" in warning.explanation.meaning
    assert "or another listener" in warning.explanation.meaning
    assert "ss -ltnp" in " ".join(warning.explanation.fix)


def test_a_nearly_full_table_is_conntrack_full_for_the_network_admin() -> None:
    report = _local_report(_kernel_readings(count=240000, maximum=262144, queued=2, backlog=1))
    # the table comes before the socket on a packet's way: it is the verdict
    assert (report.failed_stage, report.cause) == ("conntrack", "conntrack_full")
    e = report.explanation
    assert e.owner == "network admin"
    assert "240000 of 262144 entries (92%)" in e.meaning
    assert "nf_conntrack_max=524288" in " ".join(e.fix)
    assert "on the host" not in " ".join(e.fix)


def test_drops_in_the_window_are_conntrack_full_below_the_threshold() -> None:
    report = _local_report(_kernel_readings(count=1000, drop=3))
    assert report.cause == "conntrack_full"
    assert "3 new connections dropped in 0.5 s" in report.explanation.meaning


def test_the_kernels_log_alone_warns_and_says_it_is_the_machines() -> None:
    report = _local_report(_kernel_readings(logged=4))
    assert report.ok
    (warning,) = report.warnings
    assert warning.cause == "conntrack_full"
    assert "some network namespace of this machine" in warning.explanation.meaning


def test_failed_insertions_alone_are_not_a_full_table() -> None:
    report = _local_report(_kernel_readings(insert_failed=5))
    assert report.ok and report.warnings == ()
    stage = report.stage("conntrack")
    assert stage is not None and stage.status == "warn" and "not a full table" in stage.summary


def test_docker_publishing_a_port_ufw_denies_warns_with_the_docker_user_fix() -> None:
    published = _docker_publish()
    report = _local_report(
        _kernel_readings(input_rules=_UFW_DENY, mappings=(published,)), mappings=(published,)
    )
    assert report.ok  # the path works: the firewall's rule is what is wrong
    (warning,) = report.warnings
    assert (warning.stage, warning.cause) == ("firewall", "published_past_firewall")
    e = warning.explanation
    assert "--dport 8080 -j DROP" in e.meaning
    fix = " ".join(e.fix)
    assert "docker run -p 127.0.0.1:8080:80" in fix
    assert "DOCKER-USER" in fix and "--ctorigdstport 8080" in fix
    assert "ufw route deny proto tcp from any to any port 80" in fix


def test_a_port_published_on_loopback_or_closed_in_docker_user_is_no_bypass() -> None:
    loopback = _docker_publish("127.0.0.1")
    assert (
        _local_report(_kernel_readings(input_rules=_UFW_DENY, mappings=(loopback,))).warnings == ()
    )
    closed = _UFW_DENY.replace(
        "-A DOCKER-USER -j RETURN",
        "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 8080 -j DROP\n-A DOCKER-USER -j RETURN",
    )
    published = _docker_publish()
    report = _local_report(_kernel_readings(input_rules=closed, mappings=(published,)))
    assert report.warnings == ()
    firewall = report.stage("firewall")
    assert firewall is not None and "drops new connections to tcp:8080" in firewall.summary


def test_nothing_listening_outranks_the_kernels_findings() -> None:
    report = _local_report(_kernel_readings(count=250000), listening=False)
    assert report.cause == "not_listening"
    stage = report.stage("accept queue")
    assert stage is not None and stage.status == "skip"


def test_unread_rules_skip_the_firewall_stage_and_say_why() -> None:
    stage = _local_report(_kernel_readings()).stage("firewall")
    assert stage is not None and stage.status == "skip" and "root" in stage.summary


def test_the_local_evidence_table_is_in_the_docs_in_its_order() -> None:
    from servepath.netdiag.doctor.causes import LOCAL_EVIDENCE
    from tests.support import TESTS_DIR

    page = (TESTS_DIR.parent / "docs" / "doctor.md").read_text()
    rows = [f"| {e} | `{c}` | {w} |" for e, c, w in LOCAL_EVIDENCE]
    positions = [page.index(row) for row in rows]
    assert positions == sorted(positions)
    assert all(c in CAUSES for _, c, _ in LOCAL_EVIDENCE)


# --- the path's quality -----------------------------------------------------------------------


def test_packet_loss_names_the_hop_where_it_starts_and_the_share_lost() -> None:
    report = diagnose(case_packet_loss(), strict=True)
    assert "27 of 80 connections" in report.explanation.meaning
    assert f"starting at hop 2 ({HOP2})" in report.explanation.meaning
    assert report.explanation.owner == "network admin"
    assert any(f"hop 2 ({HOP2})" in line for line in report.explanation.fix)
    route = report.stage("route")
    assert route is not None and f"from hop 2 ({HOP2})" in route.summary


def test_a_lost_syn_on_a_private_address_is_packet_loss_not_private_or_filtered() -> None:
    from servepath.net.routes import RouteLookup

    obs = healthy()
    obs.route = RouteLookup(VM, "via-default", obs.gateway)  # private, behind the gateway
    obs.ports = scan(VM, port(8080, "filtered"), port(80, "filtered"))  # its one SYN lost
    _lossy(obs)
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("transport", "packet_loss")
    transport = report.stage("transport")
    assert transport is not None and "open" in transport.summary


def test_a_lost_syn_on_a_path_that_loses_little_is_no_finding_at_all() -> None:
    obs = healthy()
    obs.ports = scan(VM, port(8080, "filtered"), port(80, "closed"))
    obs.trace, obs.burst = _lossy_path(4, hop2_lost=0)  # 5 % of first tries
    report = diagnose(obs, strict=True)
    assert report.ok, (report.cause, report.explanation.meaning)


def test_connections_the_target_alone_leaves_unanswered_are_a_warning_not_packet_loss() -> None:
    obs = healthy()
    obs.trace, obs.burst = _lossy_path(60, hop2_lost=0)  # a full accept queue looks the same
    report = diagnose(obs, strict=True)
    assert report.ok, (report.cause, report.explanation.meaning)
    route = report.stage("route")
    assert route is not None and route.status == "warn" and "accept queue" in route.summary


def test_a_closed_port_on_a_lossy_path_is_the_loss_first() -> None:
    obs = nothing_after_transport(healthy())
    obs.ports = scan(VM, port(8080, "closed"))
    _lossy(obs, state="closed")
    report = diagnose(obs, strict=True)
    assert (report.failed_stage, report.cause) == ("transport", "packet_loss")


def test_a_slow_network_names_the_hop_where_the_time_jumps() -> None:
    from servepath.netdiag.trace import Hop, Trace

    obs = case_slow_network()
    hops = (Hop(1, ROUTER, (0.5,) * 5, 0), Hop(2, HOP2, (160.0,) * 5, 0), Hop(3, VM, (161.0,), 0))
    obs.trace = Trace(VM, VM, 8080, "tcp", "tcp-connect", True, hops, "reached", "open")
    report = diagnose(obs, strict=True)
    assert report.cause == "slow_network"
    jump = f"the time jumps at hop 2 ({HOP2}): +159.5 ms over hop 1 ({ROUTER})"
    assert jump in report.explanation.fix
    latency = report.stage("latency")
    assert latency is not None and jump in latency.summary
