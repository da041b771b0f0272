"""From what the probes saw to stages and one verdict. Pure: no I/O, no clock.

Each stage reads the observations and adds itself; the first failed stage that names a
cause is the verdict. Where several findings hold at once, the checks below weigh them in
the order :data:`~servepath.netdiag.doctor.causes.PORT_EVIDENCE` and
:data:`~servepath.netdiag.doctor.causes.HTTP_EVIDENCE` write out (strongest first), and a
weaker finding that still helps becomes a hint in the fix.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson

from servepath.contract import documented_routes
from servepath.net.addresses import AddressInfo, classify_address
from servepath.net.endpoints import host_port
from servepath.netdiag.doctor.causes import Cause
from servepath.netdiag.doctor.evidence import Observations, Repetition
from servepath.netdiag.doctor.plan import is_redirect
from servepath.netdiag.doctor.report import DoctorReport, Stage, StageStatus, Verdict
from servepath.netdiag.doctor.signs import (
    FORWARD_PROXIES,
    forward_proxy_page,
    from_servepath,
    header,
    looks_like_web_server,
    one_line,
    reverse_proxy_seen,
    server_name,
)
from servepath.netdiag.doctor.steps import METHOD_CHANGING_REDIRECTS
from servepath.netdiag.doctor.tls_stage import add_not_http, other_protocol, stage_tls
from servepath.netdiag.doctor.transport import (
    asked_port,
    container_silent,
    is_outside_private,
    not_tried,
    stage_transport,
)
from servepath.netdiag.http import HttpReport
from servepath.netdiag.quality import PathQuality, assess

__all__ = ["diagnose"]


def diagnose(obs: Observations, *, strict: bool = False) -> DoctorReport:
    """Stages and the verdict from what the probes saw.

    ``strict`` raises when a cause's text needs a fact the observations lack (the tests).
    """
    v = Verdict()
    base = _context(obs)
    for step in (
        _stage_local,
        _stage_dns,
        _stage_address,
        _stage_route,
        stage_transport,
        stage_tls,
        _stage_http,
        _stage_app,
        _stage_repeat,
        _stage_large,
        _stage_server_view,
        _stage_latency,
    ):
        step(obs, v)
    return v.report(obs.url, base, obs.elapsed_s, strict=strict)


def _context(obs: Observations) -> dict[str, Any]:
    proxy_endpoint = obs.plan.proxy_endpoint()
    return {
        "url": obs.url,
        "host": obs.host,
        "port": obs.port,
        "path": obs.path,
        "origin": obs.origin,
        "address": obs.address or obs.host,
        "gateway": obs.gateway.gateway if obs.gateway and obs.gateway.gateway else "none",
        "resolvers": ", ".join(obs.nameservers) or "none configured",
        "proxy": obs.proxy or "none",
        "proxy_endpoint": host_port(*proxy_endpoint) if proxy_endpoint else "none",
        "route": obs.predict_route,
        "method": "POST",
        "host_header": obs.plan.name_in_host_header,
    }


# --- local, dns, address, route ------------------------------------------------------------


def _stage_local(obs: Observations, v: Verdict) -> None:
    choice = obs.plan.proxy
    via = (
        f"via forward proxy {choice.proxy} ({choice.reason})"
        if choice.proxy
        else f"direct ({choice.reason})"
    )
    gateway = obs.gateway.gateway if obs.gateway and obs.gateway.gateway else "none"
    resolvers = ", ".join(obs.nameservers) or "none configured"
    summary = f"{via}; resolvers {resolvers}; default gateway {gateway}"
    data = {
        "proxy": choice.to_json(),
        "resolvers": obs.nameservers,
        "default_gateway": obs.gateway.to_json() if obs.gateway else None,
        "pin": obs.plan.pin.to_json() if obs.plan.pin else None,
        "host_header": obs.plan.host_header,
    }
    v.add(Stage("local", "ok", summary, data))


def _stage_dns(obs: Observations, v: Verdict) -> None:
    if obs.plan.pin is not None:
        pin = obs.plan.pin
        v.add(Stage("dns", "skip", f"--resolve: {pin.name} -> {pin.address}, DNS not asked"))
        return
    if obs.dns is None:
        v.add(Stage("dns", "skip", f"{obs.host} is an IP address: nothing to resolve"))
        return
    report = obs.dns
    data = report.to_json()
    if obs.address is not None and report.agree:
        v.add(Stage("dns", "ok", f"{obs.host} -> {obs.address}", data))
        return
    if obs.address is not None:
        v.add(
            Stage("dns", "fail", f"resolvers disagree on {obs.host}: {report.verdict}", data),
            "dns_disagree",
            disagreement=report.verdict,
        )
        return
    outcomes = {a.outcome for a in report.answers}
    cause: Cause = "dns_timeout"
    if "nxdomain" in outcomes:
        cause = "dns_nxdomain"
    elif "no_answer" in outcomes:
        cause = "dns_no_answer"
    status: StageStatus = "fail"
    summary = f"{obs.host} did not resolve: {report.verdict}"
    if obs.proxy is not None:
        status, summary = "warn", summary + " (the forward proxy resolves it instead)"
    v.add(Stage("dns", status, summary, data), cause)


def _stage_address(obs: Observations, v: Verdict) -> None:
    if obs.address is None:
        v.add(Stage("address", "skip", not_tried(v, "no address to classify")))
        return
    info: AddressInfo = classify_address(obs.address)
    data: dict[str, Any] = {
        **info.to_json(),
        "own": obs.own_address,
        "route": obs.route.to_json() if obs.route else None,
    }
    if obs.own_address:
        summary = f"{obs.address} is {info.kind}, an address of this machine itself"
        v.add(Stage("address", "ok", summary, data))
        return
    if is_outside_private(obs):
        v.add(
            Stage(
                "address",
                "warn",
                f"{obs.address} is {info.kind} ({info.meaning}), and this machine reaches it "
                "only through its default gateway",
                data,
            )
        )
        return
    v.add(Stage("address", "ok", f"{obs.address} is {info.kind}: {info.meaning}", data))


def _stage_route(obs: Observations, v: Verdict) -> None:
    if obs.probe_target is None:
        v.add(Stage("route", "skip", not_tried(v, "no address to trace")))
        return
    if obs.trace is None:
        v.add(Stage("route", "skip", f"trace not possible: {obs.trace_error}"))
        return
    t = obs.trace
    answered = [h for h in t.hops if h.address is not None]
    data = t.to_json()
    quality = assess(t, obs.burst)
    told = ""
    if quality is not None:
        data["quality"] = quality.to_json()
        told = _quality_text(quality)
    if t.reached:
        status: StageStatus = "warn" if quality is not None and quality.at_target else "ok"
        v.add(Stage("route", status, f"{t.detail} ({t.method}){told}", data))
        return
    last = f"; last answering hop {answered[-1].ttl}: {answered[-1].address}" if answered else ""
    v.add(Stage("route", "warn", f"{t.detail}{last}{told}", data))


def _quality_text(quality: PathQuality) -> str:
    """The path's loss and its time jump, as a clause of the route stage's summary."""
    parts: list[str] = []
    if quality.at_target:
        parts.append(
            f"{quality.loss_pct:g}% of connections to the service unanswered at the first "
            "try while no router before it loses: its accept queue overflows (a small listen "
            "backlog, or a busy server), or its last link loses packets"
        )
    elif quality.burst is not None and quality.burst.missed:
        start = f" from {quality.start.label}" if quality.lossy and quality.start else ""
        parts.append(f"{quality.loss_pct:g}% of first packets lost{start}")
    if quality.jump is not None:
        parts.append(_jump_text(quality))
    return "; " + "; ".join(parts) if parts else ""


def _jump_text(quality: PathQuality) -> str:
    assert quality.jump is not None
    before = quality.before_jump.label if quality.before_jump is not None else "this machine"
    return f"the time jumps at {quality.jump.label}: +{quality.jump_ms:g} ms over {before}"


# --- HTTP answers -----------------------------------------------------------------------------


def _body_json(report: HttpReport) -> Any:
    if not report.hops:
        return None
    raw = report.final.body if report.final.body is not None else report.final.body_preview
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _detail(report: HttpReport) -> str:
    body = _body_json(report)
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        return one_line(detail, 200)
    preview = report.final.body_preview if report.hops else None
    if preview is None and report.hops and report.final.body:
        preview = report.final.body[:1200].decode("utf-8", "replace")
    text = one_line(preview or "", 200)
    return text or f"HTTP {report.status} {report.final.reason if report.hops else ''}".strip()


def _who(obs: Observations, report: HttpReport) -> str:
    if from_servepath(report):
        return "the service (servepath)"
    proxy = reverse_proxy_seen(report)
    if proxy:
        return f"the reverse proxy or load balancer in front of it ({proxy})"
    server = server_name(report)
    return f"the server ({server})" if server else "the server"


def _retry_after(report: HttpReport) -> str | None:
    value = header(report, "retry-after")
    return value.strip() if value else None


def _http_failure(obs: Observations, report: HttpReport, route: str, v: Verdict, name: str,
                  on_4xx: Cause, method: str) -> None:  # fmt: skip
    """Add a failed stage for an HTTP exchange that did not return 2xx/3xx."""
    data = report.to_json()
    total_ms = round(report.final.phases.total_ms, 1) if report.hops else 0.0
    if report.error is not None:
        kind, message = report.error
        ctx: dict[str, Any] = {
            "detail": message,
            "status": kind,
            "route": route,
            "who": "the server",
        }
        cause: Cause
        inside = container_silent(obs) if kind in ("reset", "protocol") else None
        if inside is not None:
            v.add(Stage(name, "fail", f"{method} {route}: {message}", data),
                  "container_not_listening", **inside)  # fmt: skip
            return
        if kind == "proxy":
            proxy_reached = asked_port(obs) is not None and _asked_port_open(obs)
            denied = proxy_reached and not message.startswith("cannot reach")
            cause = "proxy_denied" if denied else "proxy_failed"
            ctx["status"] = "CONNECT refused"
        elif kind == "read_timeout":
            cause = "no_response"
            ctx.update(method_route=f"{method} {route}", waited_s=f"{obs.http_timeout:g}")
        elif kind in ("refused", "connect_timeout", "unreachable"):
            cause = "port_closed" if kind == "refused" else "port_filtered"
        elif kind == "tls":
            cause = "tls_handshake_failed"
        elif other_protocol(obs):
            add_not_http(obs, v, name)
            return
        else:
            cause = "http_error"
            ctx["no_request_id"] = True
            if obs.protocol is not None and obs.protocol.name == "silent":
                ctx["detail"] = f"{message} ({obs.protocol.evidence})"
        v.add(Stage(name, "fail", f"{method} {route}: {message}", data), cause, **ctx)
        return
    status = report.status
    detail = _detail(report)
    request_id = header(report, "x-request-id")
    ctx = {
        "status": status,
        "detail": detail,
        "route": route,
        "request_id": request_id,
        "no_request_id": request_id is None,
        "total_ms": total_ms,
        "server": server_name(report) or "a proxy",
        "who": _who(obs, report),
        "proxy_answered": None if from_servepath(report) else server_name(report),
    }
    summary = f"{method} {route} answered {status}: {detail}"
    stage = Stage(name, "fail", summary, data)
    if forward_proxy_page(report, obs.proxy):
        auth = header(report, "proxy-authenticate")
        v.add(stage, "proxy_denied", **ctx, auth=auth)
        return
    servepath = from_servepath(report)
    if status == 504 and not servepath:
        v.add(stage, "upstream_timeout", **ctx)
        return
    retry = _retry_after(report)
    if status == 429 or (status == 503 and (retry is not None or servepath)):
        retry_text = f"; it asks to retry after {retry} s" if retry else ""
        v.add(
            stage,
            "overloaded",
            **ctx,
            retry_after=retry,
            retry_text=retry_text,
        )
        return
    if status in (502, 503) and not servepath:
        if reverse_proxy_seen(report) or status == 502:
            v.add(stage, "upstream_error", **ctx)
        else:
            v.add(stage, "overloaded", **ctx, retry_after=None, retry_text="")
        return
    challenge = (header(report, "www-authenticate") or "").lower()
    if status == 401 and (from_servepath(report) or challenge.startswith("bearer")):
        sent = obs.api_key_sent
        key_text = "; the key sent was refused" if sent else "; the request carried none"
        v.add(stage, "unauthorized", **ctx, method=method, url=obs.url, key_text=key_text,
              key_sent=sent or None, no_key=not sent)  # fmt: skip
        return
    if not servepath and status in (400, 403, 404, 405, 421) and looks_like_web_server(report):
        v.add(stage, "virtual_host", **{**ctx, **_vhost_context(obs, report)})
        return
    if status == 404:
        body = _body_json(report)
        routes = body.get("routes") if isinstance(body, dict) else None
        if not routes:
            routes = documented_routes(obs.spec)
        ctx["routes"] = ", ".join(routes) if routes else "see the server's documentation"
        ctx["method"] = method
        v.add(stage, "route_not_found", **ctx)
        return
    if status is not None and 400 <= status < 500:
        v.add(stage, on_4xx, **ctx)
        return
    v.add(stage, "http_error", **ctx)


def _asked_port_open(obs: Observations) -> bool:
    asked = asked_port(obs)
    return asked is not None and asked.state == "open"


def _vhost_context(obs: Observations, report: HttpReport) -> dict[str, Any]:
    working = next((t for t in obs.vhost_trials if t.servepath), None)
    others = [t for t in obs.vhost_trials if not t.servepath]
    ctx: dict[str, Any] = {
        "server": server_name(report) or "a web server",
        "working_name": working.name if working else None,
        "working_endpoint": host_port(working.name, obs.port) if working else None,
        "candidates": ", ".join(t.name for t in others) if others and not working else None,
        "candidate_sources": ", ".join(sorted({t.source for t in others})) or None,
    }
    return ctx


def _stage_http(obs: Observations, v: Verdict) -> None:
    report = obs.health
    if report is None:
        if obs.tls_on_plain is None and other_protocol(obs) and v.failed is None:
            add_not_http(obs, v, "http")
            return
        v.add(Stage("http", "skip", not_tried(v, "the port is not open")))
        return
    route = report.hops[0].url.split(obs.origin, 1)[-1] if report.hops else "/"
    if report.ok:
        phases = report.final.phases
        proxy = reverse_proxy_seen(report)
        seen = f"; reverse proxy: {proxy}" if proxy else ""
        who = "" if from_servepath(report) else "; not servepath's answer"
        summary = f"GET {route or '/'} -> {report.status} in {phases.total_ms:.1f} ms{seen}{who}"
        v.add(Stage("http", "ok", summary, report.to_json()))
        return
    if v.failed is not None:  # e.g. TLS already failed: the HTTP error only repeats it
        v.add(Stage("http", "skip", not_tried(v, "")))
        return
    if _add_intermittent(obs, v, "http", f"GET {route or '/'}", report):
        return
    _http_failure(obs, report, route or "/", v, "http", "http_error", "GET")


def _stage_app(obs: Observations, v: Verdict) -> None:
    report = obs.app
    route = obs.predict_route
    if report is None and obs.spec_refused is not None and v.broken is None:
        refused = obs.spec_refused
        if _add_intermittent(obs, v, "app", "GET /openapi.json", refused):
            return
        _http_failure(obs, refused, "/openapi.json", v, "app", "http_error", "GET")
        return
    if report is None:
        if obs.health is not None and obs.health.ok and v.broken is None:
            if obs.app_plan is not None and not obs.app_plan.servepath and obs.spec is None:
                why = "the server publishes no OpenAPI document with an example; pass --data FILE"
            else:
                why = "no example instance in the server's OpenAPI; pass --data FILE"
            v.add(Stage("app", "skip", f"not tried: {why}"))
        else:
            v.add(Stage("app", "skip", not_tried(v, "the health route failed")))
        return
    source = obs.app_plan.payload_source if obs.app_plan else "--data"
    if is_redirect(report):
        _redirected(obs, report, v)
        return
    if report.ok:
        cache = header(report, "x-cache")
        body = _body_json(report)
        answer = ""
        if isinstance(body, dict) and "decision" in body:
            answer = f": {body['decision']} ({body.get('probability')})"
        elif isinstance(body, dict) and isinstance(body.get("predictions"), list):
            answer = f": {len(body['predictions'])} predictions"
        summary = (
            f"POST {route} -> {report.status}{answer}"
            f"{f', cache {cache}' if cache else ''} ({source})"
        )
        v.add(Stage("app", "ok", summary, report.to_json()))
        return
    if _add_intermittent(obs, v, "app", f"POST {route}", report):
        return
    _http_failure(obs, report, route, v, "app", "bad_payload", "POST")


# --- the same requests again: what one probe cannot see ------------------------------------


def _add_intermittent(
    obs: Observations, v: Verdict, name: str, what: str, report: HttpReport
) -> bool:
    """A failed answer that the repetition shows passing too: ``intermittent``, not the
    failure one try happened to see."""
    context = _intermittent(obs)
    if context is None:
        return False
    summary = f"{what}: {_detail(report) if report.error is None else report.error.message}; "
    v.add(Stage(name, "fail", summary + context["how"], report.to_json()), "intermittent",
          **context)  # fmt: skip
    return True


def _intermittent(obs: Observations) -> dict[str, Any] | None:
    mixed = [r for r in obs.repeats if r.mixed]
    if not mixed or _closes_each_connection(obs):
        return None
    parts = [_failure_count(r) for r in mixed]
    attempts = [a for r in mixed for a in r.attempts]
    reused = [a for a in attempts if a.connection == "reused"]
    fresh = [a for a in attempts if a.connection != "reused"]
    failed_reused = sum(a.failed for a in reused)
    failed_fresh = sum(a.failed for a in fresh)
    cluster = (
        f"failed on reused connections {failed_reused} of {len(reused)}, "
        f"on fresh ones {failed_fresh} of {len(fresh)}"
    )
    keepalive = failed_reused > 0 and failed_fresh == 0
    answerers = [a.answer.split(" from ", 1)[1] for a in attempts if " from " in a.answer]
    return {
        "how": "; ".join(parts),
        "cluster": cluster,
        "keepalive": keepalive,
        "replica": not keepalive,
        "answerer": answerers[0] if answerers else "the proxy or load balancer",
    }


def _closes_each_connection(obs: Observations) -> bool:
    """Every failure of the repetition was a reset on a reused connection, and no request
    was answered over one: the server (or the proxy the client talks to) closes each
    connection after its answer without saying ``Connection: close`` (tinyproxy does), and
    a request sent in the moment before that close arrives is reset. That is a connection
    not kept alive, not a failure that comes and goes: the keep-alive race's fix (a longer
    keep-alive on the server) would change nothing."""
    attempts = [a for r in obs.repeats for a in r.attempts]
    failures = [a for a in attempts if a.failed]
    return (
        bool(failures)
        and all(a.connection == "reused" and a.answer == "reset" for a in failures)
        and not any(a.connection == "reused" and not a.failed for a in attempts)
    )


def _failure_count(repetition: Repetition) -> str:
    """ "5 of 11 POST /decisions answered 502 from nginx at 10.0.0.5:80" """
    failures = repetition.failures
    kinds: dict[str, int] = {}
    for a in failures:
        kinds[a.answer] = kinds.get(a.answer, 0) + 1
    answers = ", ".join(
        (f"{n} " if len(kinds) > 1 else "") + _answered(k)
        for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])
    )
    remotes = sorted({a.remote for a in failures if a.remote})
    at = f" at {', '.join(remotes)}" if remotes else ""
    return (
        f"{len(failures)} of {len(repetition.attempts)} {repetition.method} {repetition.route} "
        f"{answers}{at}"
    )


def _answered(answer: str) -> str:
    return f"answered {answer}" if answer[:1].isdigit() else f"got {answer.replace('_', ' ')}"


def _stage_repeat(obs: Observations, v: Verdict) -> None:
    if not obs.repeats:
        count = obs.plan.options.repeat
        why = "--repeat 0" if count <= 0 else "no request answered to repeat"
        v.add(Stage("repeat", "skip", not_tried(v, why) if v.broken else f"not tried: {why}"))
        return
    data = {"repetitions": [r.to_json() for r in obs.repeats]}
    told = [
        f"{r.method} {r.route} {len(r.attempts)}x: "
        + ", ".join(f"{n} {answer}" for answer, n in r.counts().items())
        for r in obs.repeats
    ]
    summary = "; ".join(told) + " (fresh and reused connections)"
    context = _intermittent(obs)
    if context is None:
        failing = any(r.failures for r in obs.repeats)
        if failing and _closes_each_connection(obs):
            resets = sum(len(r.failures) for r in obs.repeats)
            summary += (
                f"; the {resets} reset{'s' if resets > 1 else ''} came on reused connections, "
                "and none was answered over one: the server or proxy closes each connection "
                "after its answer without `Connection: close`, so a client that reuses it at "
                "once is reset; clients should retry a request reset before any answer (or "
                "the proxy say `Connection: close`)"
            )
        v.add(Stage("repeat", "warn" if failing else "ok", summary, data))
        return
    v.add(Stage("repeat", "fail", context["how"], data), "intermittent", **context)


def _redirected(obs: Observations, report: HttpReport, v: Verdict) -> None:
    """POST on the predict route answered with a redirect: where to, and what a client that
    follows it gets."""
    status = report.status
    route = obs.predict_route
    assert status is not None and report.final.location is not None
    target = urljoin(report.final.url, report.final.location)
    parts = urlsplit(target)
    target_host = parts.hostname or obs.host
    cross_host = target_host.lower() != obs.host.lower()
    chain = obs.redirect
    urls = [h.url for h in chain.hops] if chain is not None else [report.final.url, target]
    looped = chain is not None and (
        (chain.error is not None and chain.error.kind == "too_many_redirects")
        or len(set(urls)) < len(urls)
    )
    loop = " -> ".join(dict.fromkeys(urls)) + f" -> {urls[0]}" if looped else None
    changes = status in METHOD_CHANGING_REDIRECTS
    after = ""
    if chain is not None and chain.hops and not looped:
        last = chain.final
        got = last.error.message if last.error else f"{last.status}"
        after = f"; following it, {last.method} {last.url} got {got}"
    if looped:
        consequence = f"the redirects go round in a loop and never reach the service{after}"
    elif changes:
        consequence = (
            "clients that follow a 301/302/303 send the prediction again as a GET, without "
            f"its body, and get an error from a route that exists{after}"
        )
    else:
        consequence = f"a {status} keeps the method and body, at the cost of a round trip{after}"
    summary = f"POST {route} -> {status} to {target}"
    if loop:
        summary += f" (a loop: {loop})"
    elif cross_host:
        summary += f" (another host: {target_host})"
    data = {"request": report.to_json(), "followed": chain.to_json() if chain else None}
    if not (changes or looped):
        v.add(Stage("app", "warn", f"{summary}: {consequence}", data))
        return
    v.add(
        Stage("app", "fail", summary, data),
        "redirected",
        status=status,
        target=target,
        target_host=target_host,
        consequence=consequence,
        loop=loop,
        direct=not looped,
        cross_host=cross_host and not looped,
        keeps_post=changes and not looped,
    )


def _stage_large(obs: Observations, v: Verdict) -> None:
    report = obs.large
    app = obs.app_plan
    if report is None or app is None or app.large is None:
        if v.broken:
            why = not_tried(v, "")
        elif obs.app is not None and is_redirect(obs.app):
            why = "not tried: the predict route redirects"
        elif obs.app is None or not obs.app.ok:
            why = "not tried: no small request passed first"
        elif app is not None and app.large_off:
            why = "not tried: --large-kb 0"
        else:
            why = "not tried: the server does not document servepath's batch form"
        v.add(Stage("large request", "skip", why))
        return
    size_kb = round(len(app.large) / 1000)
    data: dict[str, Any] = {
        "bytes": len(app.large),
        "instances": app.large_instances,
        "request": report.to_json(),
        "mtu": obs.mtu.to_json() if obs.mtu else None,
        "hop": obs.mtu_hop.to_json() if obs.mtu_hop else None,
    }
    if report.ok:
        ms = report.final.phases.total_ms
        summary = f"POST {obs.predict_route} with {app.large_instances} instances ({size_kb} KB)"
        v.add(Stage("large request", "ok", f"{summary} -> {report.status} in {ms:.1f} ms", data))
        return
    mtu = obs.mtu
    if mtu is not None and mtu.verdict == "blackhole" and mtu.smallest_stalling_mss:
        hop = obs.mtu_hop
        hop_text = ""
        hop_name = None
        if hop is not None:
            hop_name = f"hop {hop.before_ttl} ({hop.before})" if hop.before else "this machine"
            hop_text = f", between {hop_name} and {hop.after or 'the next hop'}"
        path_mtu = mtu.path_mtu
        summary = (
            f"{size_kb} KB stalled; segments of {mtu.largest_passing_mss} B pass, "
            f"{mtu.smallest_stalling_mss} B stall: path MTU about {path_mtu}{hop_text}"
        )
        v.add(
            Stage("large request", "fail", summary, data),
            "mtu_blackhole",
            large_kb=size_kb,
            mtu=path_mtu,
            mtu_text=f"about {path_mtu} bytes",
            hop=hop_name,
            hop_text=hop_text,
        )
        return
    if report.error is not None and report.error.kind in ("read_timeout", "write_timeout"):
        summary = (
            f"{size_kb} KB ({app.large_instances} instances) got no answer in time, though "
            "the small request passed; smaller segments did not help either: the server is "
            "slow with large batches, not the path"
        )
        v.add(Stage("large request", "warn", summary, data))
        return
    if report.status is not None and report.status >= 500:
        # batch callers fail on every such request, whoever answered it
        route = f"{obs.predict_route} (a {size_kb} KB batch of {app.large_instances})"
        _http_failure(obs, report, route, v, "large request", "bad_payload", "POST")
        return
    detail = report.error.message if report.error else f"{report.status}: {_detail(report)}"
    v.add(Stage("large request", "warn", f"{size_kb} KB request: {detail}", data))


# --- what the server saw, and where the time went -------------------------------------------


def _stage_server_view(obs: Observations, v: Verdict) -> None:
    echo = obs.echo
    if echo is None:
        why = "no path echo from the server"
        if v.broken:
            why = not_tried(v, why)
        v.add(Stage("server view", "skip", why))
        return
    server = echo.get("server") or {}
    peer = echo.get("peer") or {}
    chain = echo.get("chain") or []
    via = echo.get("via") or []
    dialled = host_port(obs.address or obs.host, obs.port)
    seen_at = host_port(str(server.get("address")), server.get("port"))
    notes: list[str] = []
    between: dict[str, Any] = {"reverse_proxies": 0, "nat": False, "forward_proxy": None}
    reverse_via = [x for x in via if not any(f in x.lower() for f in FORWARD_PROXIES)]
    forwarded = len(chain)
    if obs.proxy:
        between["forward_proxy"] = obs.proxy
        notes.append(f"forward proxy {obs.proxy}")
        # a forward proxy may add its caller to X-Forwarded-For too
        forwarded = max(0, forwarded - 1)
    reverse = max(forwarded, len(reverse_via))
    between["reverse_proxies"] = reverse
    if reverse:
        plural = "ies" if reverse > 1 else "y"
        notes.append(
            f"{reverse} reverse prox{plural} (forwarded chain: {', '.join(chain) or 'none'})"
        )
    elif seen_at != dialled and obs.proxy is None:
        between["nat"] = True
        notes.append(f"NAT / port mapping: dialled {dialled}, the server socket is {seen_at}")
    container = echo.get("container") or {}
    where = "in a container" if container.get("in_container") else "on a host"
    name = echo.get("hostname")
    who = f"server {name} ({where})" if name else f"the server ({where}; its name withheld)"
    summary = (
        f"{who} saw the caller as "
        f"{host_port(str(peer.get('address')), peer.get('port'))} on {seen_at}"
    )
    if notes:
        summary += "; between: " + "; ".join(notes)
    v.add(
        Stage("server view", "ok", summary, {"echo": echo, "between": between, "dialled": dialled})
    )


def _server_ms(report: HttpReport) -> float | None:
    if not report.hops:
        return None
    for entry in report.final.server_timing:
        if entry.name == "total" and entry.dur is not None:
            return float(entry.dur)
    return None


def _stage_latency(obs: Observations, v: Verdict) -> None:
    report = obs.app if obs.app is not None and obs.app.ok else obs.health
    if report is None or not report.ok:
        v.add(Stage("latency", "skip", "no successful request to split"))
        return
    p = report.final.phases
    total = p.total_ms
    server = _server_ms(report) or 0.0
    dns_ms, connect, tls = p.dns_ms or 0.0, p.connect_ms or 0.0, p.tls_ms or 0.0
    rest = max(0.0, total - dns_ms - connect - tls - server)
    network = connect + rest
    parts = {
        "dns_ms": dns_ms,
        "connect_ms": connect,
        "tls_ms": tls,
        "server_ms": server,
        "network_and_proxies_ms": rest,
        "total_ms": total,
    }
    # on this machine's own address there is no network and no proxy between: the rest is
    # the client's and HTTP's own overhead
    rest_name = (
        "client and HTTP overhead"
        if obs.own_address and obs.proxy is None
        else ("network and proxies")
    )
    dominant = max(
        ("dns", dns_ms),
        ("connect", connect),
        ("tls", tls),
        ("server", server),
        (rest_name, rest),
        key=lambda kv: kv[1],
    )[0]
    data = {
        "parts": {k: round(val, 3) for k, val in parts.items()},
        "dominant": dominant,
        "timing": list(e.to_json() for e in report.final.server_timing),
    }
    summary = (
        f"total {total:.1f} ms = dns {dns_ms:.1f} + connect {connect:.1f} + tls {tls:.1f} + "
        f"server {server:.1f} + rest {rest:.1f}; {dominant} dominates"
    )
    quality = assess(obs.trace, obs.burst)
    jump = _jump_text(quality) if quality is not None and quality.jump is not None else None
    if jump is not None:
        summary += f"; {jump}"
        data["jump"] = {
            "hop": quality.jump.to_json() if quality and quality.jump else None,
            "rise_ms": quality.jump_ms if quality else None,
        }
    ctx_extra = {
        "jump": jump,
        "total_ms": round(total, 1),
        "server_ms": round(server, 1),
        "server_share": round(100 * server / total) if total else 0,
        "network_ms": round(network, 1),
        "connect_ms": round(connect, 1),
    }
    if total > obs.slow_ms:
        cause: Cause = "slow_server" if server >= 0.5 * total else "slow_network"
        v.add(Stage("latency", "fail", summary, data), cause, **ctx_extra)
    elif total > obs.slow_ms / 2:
        v.add(Stage("latency", "warn", summary, data))
    else:
        v.add(Stage("latency", "ok", summary, data))
