"""The transport stage's verdict: the asked port weighed against its neighbours, the other
address family, the trace and the containers on this machine. Pure, like the rest of
:mod:`~servepath.netdiag.doctor.diagnose`, which calls :func:`stage_transport` in its walk."""

from __future__ import annotations

from typing import Any

from servepath.net.addresses import classify_address
from servepath.net.endpoints import host_port
from servepath.netdiag.doctor.causes import Cause
from servepath.netdiag.doctor.evidence import Observations
from servepath.netdiag.doctor.report import Stage, Verdict
from servepath.netdiag.ports import PortResult
from servepath.netdiag.quality import PathQuality, assess, settle_port

__all__ = [
    "asked_port",
    "container_silent",
    "is_outside_private",
    "not_tried",
    "packet_loss",
    "stage_transport",
    "transport_verdict",
]

_REFUSALS = ("admin-prohibited", "port-unreachable", "protocol-unreachable")


def not_tried(v: Verdict, fallback: str) -> str:
    return f"not tried: {v.broken}" if v.broken else f"not tried: {fallback}"


def is_outside_private(obs: Observations) -> bool:
    if obs.address is None or obs.route is None or obs.own_address:
        return False
    kind = classify_address(obs.address).kind
    return kind in ("private", "cgnat") and obs.route.kind in ("via-default", "none")


# --- transport: the asked port, weighed against its neighbours -------------------------------


def asked_port(obs: Observations) -> PortResult | None:
    if obs.ports is None or obs.probe_target is None:
        return None
    found = next((r for r in obs.ports.results if r.port == obs.probe_target[1]), None)
    # a port that answered some of the burst's connections lost a SYN; it is not filtered
    return settle_port(found, obs.burst) if found is not None else None


def stage_transport(obs: Observations, v: Verdict) -> None:
    asked = asked_port(obs)
    if asked is None:
        reason = obs.ports_error or "no address to probe"
        if obs.proxy is not None:
            v.add(
                Stage("transport", "fail", f"forward proxy unusable: {reason}"),
                "proxy_failed",
                detail=reason,
            )
            return
        v.add(Stage("transport", "skip", not_tried(v, reason)))
        return
    assert obs.ports is not None and obs.probe_target is not None
    data = {"ports": obs.ports.to_json(), "services_elsewhere": obs.other_services}
    where = host_port(*obs.probe_target)
    if obs.proxy is not None:
        if asked.state == "open":
            v.add(Stage("transport", "ok", f"forward proxy {where} accepts connections", data))
        else:
            v.add(
                Stage("transport", "fail", f"forward proxy {where} is {asked.state}", data),
                "proxy_failed",
                detail=f"{where} is {asked.state}: {asked.detail}",
            )
        return
    others = ", ".join(f"{r.port} {r.state}" for r in obs.ports.results if r.port != asked.port)
    others_text = f" (others: {others})" if others else ""
    if obs.dialled:
        data["every_address"] = {a: r.to_json() for a, r in obs.dialled.items()}
    if asked.state == "open":
        rtt = f" in {asked.rtt_ms:.2f} ms" if asked.rtt_ms is not None else ""
        loss = packet_loss(obs)
        if loss is not None:
            v.add(Stage("transport", "fail", f"{where} open{rtt}, {loss['summary']}", data),
                  "packet_loss", **loss)  # fmt: skip
            return
        gap = family_gap(obs, asked)
        if gap is not None:
            cause, context = gap
            summary = f"{where} open{rtt}, but {context['broken']} {context['broken_state']}"
            if obs.own_address and context["refused"]:
                # localhost on a server bound to 127.0.0.1: a caller on this machine is
                # refused on ::1 at once and dials 127.0.0.1 next; nothing waits
                v.add(Stage("transport", "warn", f"{summary}: callers fall back at once", data))
                return
            v.add(Stage("transport", "fail", summary, data), cause, **context)
            return
        v.add(Stage("transport", "ok", f"{where} open{rtt}{others_text}", data))
        return
    stage = Stage("transport", "fail", f"{where} {asked.state}: {asked.detail}{others_text}", data)
    cause, context = transport_verdict(obs, asked)
    v.add(stage, cause, **context)


def transport_verdict(obs: Observations, asked: PortResult) -> tuple[Cause, dict[str, Any]]:
    """The cause for an asked port that is not open, checked in the order
    :data:`~servepath.netdiag.doctor.causes.PORT_EVIDENCE` writes out."""
    hint: dict[str, Any] = {}
    if obs.other_services:
        other_port, other_url = sorted(obs.other_services.items())[0]
        hint = {"other_port": other_port, "other_url": other_url.rstrip("/") + obs.path}
    kind = asked.icmp.kind if asked.icmp is not None else None
    offender = asked.offender or "a router"
    at_target = asked.offender is not None and asked.offender == obs.address
    if asked.state == "unreachable":
        if kind in _REFUSALS or (kind == "host-unreachable" and at_target):
            role = "the target" if at_target else "the router/firewall"
            return "port_rejected", {
                "offender": offender,
                "offender_role": role,
                "detail": kind or asked.detail,
                **hint,
            }
        if kind == "time-exceeded":
            return "routing_loop", {
                "offender": offender,
                "routers": " and ".join(loop_routers(obs, offender)),
                **hint,
            }
    gap = family_gap(obs, asked)
    if gap is not None:
        return gap
    if asked.state == "unreachable":
        # the default gateway has no route to a private address: it is someone's internal
        # network, and the fix is the external address, not a route (PORT_EVIDENCE)
        if is_outside_private(obs) and not hint:
            return "private_address", {}
        return "no_route", {"offender": offender, "detail": asked.detail, **hint}
    loss = packet_loss(obs)
    if loss is not None:  # the target answers when its packets get through (PORT_EVIDENCE)
        return "packet_loss", loss
    if asked.state == "filtered":
        if is_outside_private(obs) and not hint:
            return "private_address", {}
        return "port_filtered", hint
    # closed: the target itself answered with a reset
    if hint:
        return "service_on_other_port", {
            **hint,
            "port_state": asked.state,
            **unpublished_hint(obs),
        }
    return "port_closed", unpublished_hint(obs)


def packet_loss(obs: Observations) -> dict[str, Any] | None:
    """The facts of ``packet_loss`` when the burst lost enough to matter, else None."""
    quality = assess(obs.trace, obs.burst)
    if quality is None or not quality.lossy or quality.burst is None:
        return None
    return _loss_context(quality)


def _loss_context(quality: PathQuality) -> dict[str, Any]:
    burst = quality.burst
    assert burst is not None
    # lossy means a router before the target loses: the start is that router
    start_hop = quality.start.label if quality.start is not None else None
    start_text = f", starting at {start_hop}" if start_hop else ""
    return {
        "missed": burst.missed,
        "sent": burst.sent,
        "loss_pct": f"{burst.loss_pct:g}",
        "start_hop": start_hop,
        "start_text": start_text,
        "summary": f"but {burst.missed} of {burst.sent} connections opened in a burst lost their "
        f"first packet ({burst.loss_pct:g}%){start_text}",
    }


def family_gap(obs: Observations, asked: PortResult) -> tuple[Cause, dict[str, Any]] | None:
    """One address family of the name answers on the port and the other does not at all."""
    if obs.address is None or not obs.dialled:
        return None
    results = {obs.address: asked, **obs.dialled}
    v6 = {a: r for a, r in results.items() if ":" in a}
    v4 = {a: r for a, r in results.items() if ":" not in a}
    if not v4 or not v6:
        return None
    v4_open = [a for a, r in v4.items() if r.state == "open"]
    v6_open = [a for a, r in v6.items() if r.state == "open"]
    if v4_open and not v6_open:
        broken, working, family, other = v6, v4_open, "IPv6", "IPv4"
    elif v6_open and not v4_open:
        broken, working, family, other = v4, v6_open, "IPv4", "IPv6"
    else:
        return None
    states = {r.state for r in broken.values()}
    refused = states == {"closed"}  # the target's own reset: nothing listens on that family
    state_text = {"closed": "is refused (RST)", "filtered": "gets no answer"}
    broken_state = " / ".join(sorted(state_text.get(s, f"is {s}") for s in states))
    listen_fix = (
        "bind IPv6 too: servepath serve --host :: (it takes IPv4 as well unless the system "
        "sets net.ipv6.bindv6only)"
        if family == "IPv6"
        else "bind IPv4 too: servepath serve --host 0.0.0.0 (or --host :: on a system that "
        "maps IPv4 into IPv6)"
    )
    tool = "ip6tables" if family == "IPv6" else "iptables"
    cause: Cause = "ipv6_unreachable" if family == "IPv6" else "ipv4_unreachable"
    return cause, {
        "working": ", ".join(working),
        "working_family": other,
        "broken": ", ".join(broken),
        "broken_family": family,
        "broken_state": broken_state,
        "consequence": "is refused" if refused else "waits until its connect timeout",
        "refused": refused,
        "silent": not refused,
        "listen_fix": listen_fix,
        "firewall_cmd": f"{tool} -I INPUT -p tcp --dport {obs.port} -j ACCEPT",
        "record": "AAAA" if family == "IPv6" else "A",
        "owner": "server operator" if refused else "network admin",
    }


def loop_routers(obs: Observations, offender: str) -> list[str]:
    """The routers a loop bounces between, from the trace: the addresses between the first
    one that comes back and its return; without a trace, the one that said so."""
    seen: list[str] = []
    for hop in obs.trace.hops if obs.trace is not None else ():
        if hop.address is None:
            continue
        if hop.address in seen:
            return seen[seen.index(hop.address) :]
        seen.append(hop.address)
    return [offender, "the router it sends the packets back to"]


def unpublished_hint(obs: Observations) -> dict[str, Any]:
    """A container that listens while no host port is published to it (no ``-p``)."""
    for space in obs.unpublished:
        ports = sorted({s.port for s in space.listeners if not s.loopback})
        address = next((a for a in space.addresses if not a.startswith("127.")), "?")
        if not ports:
            continue
        wanted = 8080 if 8080 in ports else ports[0]
        who = f" ({space.process})" if space.process else ""
        what = "a container" if space.runtime else "a network namespace"
        return {
            "container_hint": f"{what} at {address}{who} listens on "
            f"{', '.join(map(str, ports))}, but no host port is published to it: "
            f"docker run -p {obs.port}:{wanted} ...",
            "container": space.to_json(),
        }
    return {}


def container_silent(obs: Observations) -> dict[str, Any] | None:
    """When the port is published into a container and nothing answers inside: the facts."""
    mapping, space = obs.mapping, obs.container
    if mapping is None or mapping.target_ip is None or space is None:
        return None
    target_ip, target_port = mapping.target_ip, mapping.target_port
    if space.reachable_on(target_ip, target_port):
        return None
    loopback = [s for s in space.on_port(target_port) if s.loopback]
    others = sorted({s.port for s in space.listeners if not s.loopback})
    inside_port = 8080 if 8080 in others else (others[0] if others else None)
    host_bind = f"{mapping.host_ip}:" if mapping.host_ip else ""
    return {
        "mapping_text": f"{mapping.source} publishes "
        f"{host_port(mapping.host_ip or '*', mapping.host_port)} to the container's "
        f"{host_port(target_ip, target_port)}",
        "container_port": target_port,
        "inside": space.describe_listeners(),
        "loopback_only": ", ".join(str(s) for s in loopback) or None,
        "inside_port": inside_port if not loopback else None,
        "host_bind": host_bind,
        "host_port": mapping.host_port,
        "container": space.to_json(),
        "mapping": mapping.to_json(),
    }
