"""The plan on its own: what the doctor dials, and the next probe it asks for given what the
probes saw so far (next_step), walked on hand-fed answers with no network and no root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from servepath.config import ProxyEnv
from servepath.netdiag.doctor import DoctorOptions, Observations, make_plan
from servepath.netdiag.doctor.plan import (
    DialEvery,
    FindServices,
    HttpStep,
    LocateMtuHop,
    LookInside,
    NarrowMtu,
    Pin,
    PlanApp,
    ProbeTls,
    Repeat,
    Resolve,
    ResolveProxy,
    Sniff,
    Step,
    Transport,
    TryNames,
    candidate_names,
    large_wait,
    next_step,
    raw_request,
)
from servepath.netdiag.mtu import MssOutcome, summarise
from servepath.netdiag.tls import TlsReport
from tests.netdiag.doctor.builders import NOW, SPEC, VM, dns_report, nginx, port, reply, scan

Record = Callable[[Step, Observations], None]


def fresh(url: str = f"http://{VM}:8080/decisions", **options: Any) -> Observations:
    """Observations as observe() starts them: nothing seen yet."""
    plan = make_plan(url, DoctorOptions(**options))
    return Observations(plan, address=plan.pinned)


def walk(obs: Observations, answer: Record) -> list[str]:
    """Drive the plan as observe() does, with ``answer`` in place of the probes."""
    kinds: list[str] = []
    while (step := next_step(obs)) is not None:
        assert len(kinds) < 40, kinds  # a rule that never marks itself done
        answer(step, obs)
        obs.done.add(step.kind)
        kinds.append(step.kind)
    return kinds


def servepath_answers(**overrides: Callable[[Step, Observations], bool]) -> Record:
    """Every probe answers as a healthy servepath behind an open port would; an override
    records its own answer for a step kind (and returns True) or leaves it to the default."""

    def answer(step: Step, obs: Observations) -> None:
        if step.kind in overrides and overrides[step.kind](step, obs):
            return
        origin = obs.plan.target.origin
        match step:
            case Resolve():
                obs.dns = dns_report(step.name, ("10.20.3.53", "ok", (VM,)))
                obs.address = VM
            case Transport():
                obs.probe_target = (step.address, step.port)
                obs.ports = scan(step.address, *(port(p, "closed") for p in step.ports[1:]),
                                 port(step.port))  # fmt: skip
            case HttpStep(what="health" | "health route"):
                obs.health = reply(200, url=step.url)
            case HttpStep(what="openapi"):
                obs.spec = SPEC
            case HttpStep(what="predict"):
                obs.app = reply(200, body={"decision": "approve"}, method="POST", url=step.url)
            case HttpStep(what="large"):
                obs.large = reply(200, body={"predictions": []}, method="POST", url=step.url)
            case HttpStep(what="echo"):
                obs.echo = {"peer": {}, "server": {}, "url": origin}
            case PlanApp():
                obs.app_plan = step.app

    return answer


def _tls(
    failure: str | None, *, protocol: str | None = "TLSv1.3", trusted: bool = True
) -> TlsReport:
    return TlsReport("api.test", 8443, "api.test", "system", NOW, address=VM, protocol=protocol,  # type: ignore[arg-type]
                     failure=failure, trusted=trusted, detail=str(failure))  # fmt: skip


# --- what the plan holds ----------------------------------------------------------------------


def test_the_plan_carries_the_options_the_probes_need() -> None:
    options = DoctorOptions(timeout=0.5, http_timeout=3.0, api_key="k", large_bytes=0)
    plan = make_plan(f"http://{VM}:8080/", options)
    assert plan.options is options
    assert plan.neighbours == (80, 443, 8000, 8443)  # the asked port is not its own neighbour


def test_a_pin_dials_its_address_and_a_pin_for_another_port_is_refused() -> None:
    plan = make_plan("http://api.test:8080/", DoctorOptions(pins=(Pin("api.test", 8080, VM),)))
    assert plan.pinned == VM
    from servepath.netdiag.doctor import DoctorUsageError

    with pytest.raises(DoctorUsageError, match="the URL's port is 8080"):
        make_plan("http://api.test:8080/", DoctorOptions(pins=(Pin("api.test", 80, VM),)))


# --- the walk on a healthy path ---------------------------------------------------------------


def test_a_healthy_servepath_is_walked_from_dns_to_the_path_echo() -> None:
    obs = fresh("http://api.test:8080/decisions")
    kinds = walk(obs, servepath_answers())
    assert kinds == [
        "dns A", "dns AAAA", "address", "transport", "health", "openapi", "app plan", "predict",
        "repeat", "large", "echo",
    ]  # fmt: skip


def test_an_ip_literal_asks_no_dns_and_probes_the_asked_port_before_its_neighbours() -> None:
    obs = fresh()
    step = next_step(obs)
    assert step is not None and step.kind == "address"
    obs.done.add("address")
    step = next_step(obs)
    assert step == Transport(VM, 8080, (8080, 80, 443, 8000, 8443))


def test_aaaa_is_asked_too_and_an_ipv6_only_name_dials_its_aaaa() -> None:
    obs = fresh("http://v6.test/")
    assert next_step(obs) == Resolve("v6.test", "A")
    obs.done.add("dns A")
    obs.dns = dns_report("v6.test", ("10.20.3.53", "no_answer", ()))
    assert next_step(obs) == Resolve("v6.test", "AAAA")
    obs.done.add("dns AAAA")
    assert next_step(obs) is None  # no address: nothing to dial


def test_every_other_address_of_the_name_is_dialled_after_the_transport() -> None:
    obs = fresh("http://api.test:8080/")
    obs.done.update({"dns A", "dns AAAA", "address"})
    obs.address, obs.name_addresses = VM, (VM, "10.20.2.3", "fd20:2::2")
    step = next_step(obs)
    assert isinstance(step, Transport) and step.address == VM
    obs.done.add("transport")
    obs.probe_target, obs.ports = (VM, 8080), scan(VM, port(8080))
    assert next_step(obs) == DialEvery(("10.20.2.3", "fd20:2::2"), 8080)


def test_chosen_addresses_are_every_value_of_the_chosen_answer() -> None:
    from servepath.netdiag.doctor.plan import chosen_addresses

    report = dns_report("api.test", ("10.20.3.53", "ok", (VM, "10.20.2.3")))
    assert chosen_addresses(report) == (VM, "10.20.2.3")


def test_through_a_forward_proxy_the_transport_is_the_proxys_and_has_no_neighbours() -> None:
    obs = fresh("http://api.test:8080/", proxy_env=ProxyEnv(http="http://10.20.1.1:3128"))
    obs.done.update({"dns A", "dns AAAA"})  # the proxy resolves the name
    assert next_step(obs) == ResolveProxy("10.20.1.1", 3128)
    obs.done.add("proxy address")
    obs.probe_target = ("10.20.1.1", 3128)
    assert next_step(obs) == Transport("10.20.1.1", 3128, (3128,))
    obs.done.add("transport")
    obs.ports = scan("10.20.1.1", port(3128))
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "health"  # HTTP goes through the proxy


def test_a_proxy_that_does_not_resolve_still_gets_the_request_its_failure_is_the_news() -> None:
    obs = fresh("http://api.test:8080/", proxy_env=ProxyEnv(http="http://proxy.invalid:3128"))
    obs.done.update({"dns A", "dns AAAA", "proxy address"})
    obs.ports_error = "proxy.invalid does not resolve"
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "health"


# --- a port that is not open ------------------------------------------------------------------


def test_a_closed_port_asks_open_neighbours_for_the_service_and_sends_no_http() -> None:
    def closed(step: Step, obs: Observations) -> bool:
        assert isinstance(step, Transport)
        obs.probe_target = (step.address, step.port)
        obs.ports = scan(VM, port(80, "closed"), port(8080), port(8000, "filtered"))
        return True

    obs = fresh(f"http://{VM}/decisions")
    seen: list[Step] = []

    def answer(step: Step, obs: Observations) -> None:
        seen.append(step)
        servepath_answers(transport=closed)(step, obs)

    assert walk(obs, answer) == ["address", "transport", "other services"]
    assert seen[-1] == FindServices(VM, (8080,))


def test_this_machines_own_address_looks_inside_containers_first() -> None:
    def own(step: Step, obs: Observations) -> bool:
        obs.own_address = True
        return True

    obs = fresh("http://127.0.0.1:18080/")
    kinds = walk(obs, servepath_answers(address=own))
    assert kinds[:3] == ["address", "transport", "containers"]
    obs = fresh("http://127.0.0.1:18080/")
    obs.own_address = True
    obs.done.update({"address", "transport"})
    obs.probe_target = ("127.0.0.1", 18080)
    obs.ports = scan("127.0.0.1", port(18080, "closed"))
    assert next_step(obs) == LookInside(18080, reachable=False)


# --- TLS, and ports that speak something else -------------------------------------------------


def _https_after_transport(**options: Any) -> Observations:
    obs = fresh(f"https://{VM}:8443/decisions", **options)
    obs.done.update({"address", "transport"})
    obs.probe_target = (VM, 8443)
    obs.ports = scan(VM, port(8443))
    return obs


def test_https_shakes_hands_before_any_request() -> None:
    obs = _https_after_transport(cafile="ca.pem")
    assert next_step(obs) == ProbeTls(VM, 8443, VM, "ca.pem")


def test_a_certificates_dates_ask_the_servers_clock_once_past_the_certificate() -> None:
    obs = fresh(f"https://{VM}:8443/decisions")
    obs.done.update({"address", "transport", "tls"})
    obs.probe_target, obs.ports = (VM, 8443), scan(VM, port(8443))
    obs.tls = _tls("not_yet_valid", trusted=False)
    step = next_step(obs)
    assert isinstance(step, HttpStep) and (step.what, step.unverified) == ("clock", True)
    obs.done.add("clock")
    assert next_step(obs) is None  # no request over a certificate the caller would refuse


def test_a_failed_handshake_is_sniffed_once_and_no_request_follows() -> None:
    obs = _https_after_transport()
    obs.done.add("tls")
    obs.tls = _tls("handshake_failed", protocol=None, trusted=False)
    assert next_step(obs) == Sniff(VM, 8443, VM)
    obs.done.add("sniff")
    assert next_step(obs) is None


def test_an_untrusted_certificate_stops_the_walk_unless_insecure() -> None:
    for insecure, expected in ((False, None), (True, "health")):
        obs = _https_after_transport(insecure=insecure)
        obs.done.add("tls")
        obs.tls = _tls("self_signed", trusted=False)
        step = next_step(obs)
        assert (step.kind if step else None) == expected


def _health_failed(kind: str) -> Observations:
    obs = fresh()
    obs.done.update({"address", "transport", "health"})
    obs.probe_target = (VM, 8080)
    obs.ports = scan(VM, port(8080))
    obs.health = reply(error=(kind, "broken"))
    return obs


def test_http_broken_on_a_plain_port_asks_for_tls_then_sniffs_when_it_is_not() -> None:
    obs = _health_failed("protocol")
    assert next_step(obs) == ProbeTls(VM, 8080, VM, None, on_plain=True)
    obs.done.add("tls on plain")
    assert next_step(obs) == Sniff(VM, 8080, VM)
    obs.done.add("sniff")
    assert next_step(obs) is None


def test_tls_on_a_plain_port_ends_the_walk_without_a_sniff() -> None:
    obs = _health_failed("reset")
    obs.done.add("tls on plain")
    obs.tls_on_plain = _tls(None)
    assert next_step(obs) is None


def test_a_health_request_that_timed_out_is_the_end_of_the_walk() -> None:
    assert next_step(_health_failed("read_timeout")) is None


# --- the app stage ----------------------------------------------------------------------------


def _after_health(url: str = f"http://{VM}:8080/decisions", **options: Any) -> Observations:
    obs = fresh(url, **options)
    obs.done.update({"address", "transport", "health"})
    obs.probe_target = (VM, obs.plan.target.port)
    obs.ports = scan(VM, port(obs.plan.target.port))
    obs.health = reply(200)
    if obs.plan.tls:
        obs.done.add("tls")
        obs.tls = _tls(None)
    return obs


def test_the_app_plan_comes_from_the_document_the_doctor_read() -> None:
    obs = _after_health(data=b'{"age": 1}')
    assert next_step(obs) == HttpStep("openapi", f"http://{VM}:8080/openapi.json")
    obs.done.add("openapi")
    obs.spec = SPEC
    step = next_step(obs)
    assert isinstance(step, PlanApp)
    assert (step.app.route, step.app.payload, step.app.payload_source) == (
        "/decisions", b'{"age": 1}', "--data",
    )  # fmt: skip


def test_a_health_route_moved_by_the_server_is_asked_there() -> None:
    spec = {**SPEC, "x-servepath": {**SPEC["x-servepath"], "health_route": "/healthz"}}
    obs = walk_to_app_plan(_after_health(), spec)
    obs.health = reply(404, body={"error": "no route"})
    step = next_step(obs)
    assert step == HttpStep("health route", f"http://{VM}:8080/healthz")


def walk_to_app_plan(obs: Observations, spec: dict[str, Any]) -> Observations:
    obs.done.add("openapi")
    obs.spec = spec
    step = next_step(obs)
    assert isinstance(step, PlanApp)
    obs.app_plan = step.app
    obs.done.add("app plan")
    return obs


def test_a_web_servers_default_site_gets_other_names_tried_directly_not_through_a_proxy() -> None:
    obs = walk_to_app_plan(_after_health(), {})
    obs.health = nginx(404, "404 Not Found")
    assert next_step(obs) == TryNames(f"http://{VM}:8080/", 8080, "health")
    proxied = _after_health(proxy_env=ProxyEnv(http="http://10.20.1.1:3128"), data=b"{}")
    proxied.done.add("proxy address")
    proxied = walk_to_app_plan(proxied, {})
    proxied.health = nginx(404, "404 Not Found")
    step = next_step(proxied)
    assert isinstance(step, HttpStep) and step.what == "predict"


def test_without_an_example_nothing_is_posted_and_a_foreign_server_gets_no_echo() -> None:
    obs = walk_to_app_plan(_after_health(), {"openapi": "3.0.0", "paths": {}})
    step = next_step(obs)
    assert isinstance(step, Repeat)  # its health route is still repeated
    assert [r.what for r in step.requests] == ["health"]
    obs.done.add("repeat")
    assert next_step(obs) is None


def test_the_large_request_follows_only_a_small_one_that_passed() -> None:
    obs = walk_to_app_plan(_after_health(), SPEC)
    obs.done.update({"predict", "repeat"})
    obs.app = reply(422, body={"error": "age: missing"}, method="POST")
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "echo"
    obs.app = reply(200, method="POST", total_ms=300.0)
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "large" and step.method == "POST"
    assert step.timeout == 3.0  # ten times the lone request's 0.3 s


def test_a_redirected_prediction_is_followed_once_and_gets_no_large_request() -> None:
    from tests.netdiag.doctor.builders import redirect

    obs = walk_to_app_plan(_after_health(), SPEC)
    obs.done.add("predict")
    obs.app = redirect(301, f"https://{VM}/decisions")
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "redirect"
    assert (step.method, step.follow, step.content) == ("POST", True, obs.app_plan.payload)  # type: ignore[union-attr]
    obs.done.add("redirect")
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "echo"  # no large request after it


# --- the repetition ---------------------------------------------------------------------------


def test_the_prediction_and_the_health_route_are_repeated_before_the_large_request() -> None:
    obs = walk_to_app_plan(_after_health(), SPEC)
    obs.done.add("predict")
    obs.app = reply(502, method="POST")  # a failed prediction is repeated too
    step = next_step(obs)
    assert isinstance(step, Repeat) and step.count == 10 and step.budget_s == 1.0
    assert [(r.what, r.method, r.follow) for r in step.requests] == [
        ("health", "GET", False), ("predict", "POST", False),
    ]  # fmt: skip
    assert step.requests[1].content == obs.app_plan.payload  # type: ignore[union-attr]


def test_a_failed_openapi_fetch_is_repeated_not_skipped() -> None:
    obs = _after_health()
    obs.done.add("openapi")
    obs.spec_refused = nginx(502, "502 Bad Gateway")
    obs.app_plan = None
    step = next_step(obs)
    assert isinstance(step, PlanApp)
    obs.app_plan = step.app
    obs.done.add("app plan")
    step = next_step(obs)
    assert isinstance(step, Repeat)
    assert [r.url for r in step.requests] == [
        f"http://{VM}:8080/",
        f"http://{VM}:8080/openapi.json",
    ]


def test_repeat_zero_turns_the_repetition_off() -> None:
    obs = walk_to_app_plan(_after_health(repeat=0), SPEC)
    obs.done.add("predict")
    obs.app = reply(200, method="POST")
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "large"


def _stalled(url: str = f"http://{VM}:8080/decisions") -> Observations:
    obs = walk_to_app_plan(_after_health(url), SPEC)
    obs.done.update({"predict", "repeat", "large"})
    obs.app = reply(200, method="POST")
    obs.large = reply(error=("read_timeout", "no response in time"), method="POST")
    return obs


def test_a_stalled_large_request_is_narrowed_then_its_hop_located() -> None:
    obs = _stalled()
    step = next_step(obs)
    assert isinstance(step, NarrowMtu) and (step.address, step.port) == (VM, 8080)
    assert step.request.startswith(b"POST /decisions HTTP/1.1\r\nHost: 10.20.2.2:8080\r\n")
    obs.done.add("mtu narrowing")
    outcomes = [
        MssOutcome(1360, "answered", sent_mss=1360),
        MssOutcome(1400, "stalled", sent_mss=1400),
    ]
    obs.mtu = summarise(outcomes, 4, elapsed_s=1.0, timeout=1.0)
    assert next_step(obs) == LocateMtuHop(VM, 1440)
    obs.done.add("mtu hop")
    assert next_step(obs).kind == "echo"  # type: ignore[union-attr]


def test_a_stall_over_https_is_narrowed_over_tls_with_the_name_in_sni() -> None:
    obs = _stalled(f"https://{VM}:8443/decisions")
    step = next_step(obs)
    assert isinstance(step, NarrowMtu) and (step.address, step.port) == (VM, 8443)
    assert step.tls_name == VM
    assert step.request.startswith(f"POST /decisions HTTP/1.1\r\nHost: {VM}:8443\r\n".encode())


def test_a_stall_over_plain_http_is_narrowed_without_tls() -> None:
    step = next_step(_stalled())
    assert isinstance(step, NarrowMtu) and step.tls_name is None


def test_on_a_lossy_path_the_walk_ends_once_the_health_route_answered() -> None:
    from servepath.netdiag.quality import Burst
    from servepath.netdiag.trace import Hop, Trace

    obs = _after_health()
    hops = (Hop(1, "10.20.1.1", (0.5,) * 3, 2), Hop(2, VM, (1.0,) * 4, 1))
    obs.trace = Trace(VM, VM, 8080, "tcp", "tcp-connect", True, hops, "reached", "open")
    obs.burst = Burst(VM, 8080, 80, 53, 0, 0, 9, 18, (1.0,) * 53)
    assert next_step(obs) is None
    obs.burst = Burst(VM, 8080, 80, 76, 0, 0, 2, 2, (1.0,) * 76)  # 5 %: below the threshold
    step = next_step(obs)
    assert isinstance(step, HttpStep) and step.what == "openapi"


# --- the pure helpers of the follow-ups -------------------------------------------------------


def test_candidate_names_skip_the_asked_one_and_wildcards_and_keep_four() -> None:
    obs = fresh("http://api.test:8080/", host_header="other.test")
    names = candidate_names(obs, ["Other.test.", "a.test.", "b.test", "c.test", "d.test"])
    assert names == [
        ("api.test", "the URL"), ("a.test", "reverse DNS"), ("b.test", "reverse DNS"),
        ("c.test", "reverse DNS"),
    ]  # fmt: skip


def test_the_large_request_waits_at_least_a_probe_timeout_and_at_most_the_http_one() -> None:
    obs = fresh(timeout=2.0, http_timeout=10.0)
    assert large_wait(obs) == 2.0
    obs.app = reply(200, total_ms=5_000.0)
    assert large_wait(obs) == 10.0


def test_the_raw_request_sends_the_host_header_asked_for() -> None:
    plan = make_plan(f"http://{VM}:8080/", DoctorOptions(host_header="api.test"))
    request = raw_request(plan, "/decisions", b"{}")
    assert b"Host: api.test:8080\r\n" in request and request.endswith(b"\r\n\r\n{}")


def test_nothing_in_the_plan_reads_the_filesystem_or_network(tmp_path: Path) -> None:
    # resolv.conf is read by observe, never by the plan: a missing file changes no step
    obs = fresh(resolv_conf=tmp_path / "missing")
    assert next_step(obs) is not None
