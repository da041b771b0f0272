"""The doctor's fixed vocabulary of causes: what each means in plain words, who usually broke
it, and the fix as concrete commands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from servepath.netdiag.addresses import host_port

Cause = Literal[
    "ok",
    "dns_nxdomain",
    "dns_no_answer",
    "dns_timeout",
    "dns_disagree",
    "private_address",
    "no_route",
    "port_filtered",
    "port_rejected",
    "port_closed",
    "service_on_other_port",
    "tls_handshake_failed",
    "tls_untrusted",
    "tls_expired",
    "tls_hostname_mismatch",
    "tls_on_plain_port",
    "plain_http_on_tls_port",
    "proxy_failed",
    "upstream_error",
    "http_error",
    "route_not_found",
    "bad_payload",
    "slow_server",
    "slow_network",
    "not_listening",
    "bound_to_loopback",
]

CAUSES: tuple[Cause, ...] = Cause.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Explanation:
    cause: Cause
    meaning: str  # the cause in plain words
    owner: str  # who usually broke it: caller, dns, network, firewall, server, app, proxy
    fix: tuple[str, ...]  # what to do: sentences and commands, in order

    def to_json(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "meaning": self.meaning,
            "owner": self.owner,
            "fix": list(self.fix),
        }


class _Ctx(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        # "endpoint" and "host_endpoint": address:port and host:port, IPv6 in brackets.
        names = {"endpoint": "address", "host_endpoint": "host"}
        if key in names:
            return host_port(str(self[names[key]]), self["port"])
        return f"<{key}>"


_TEXT: dict[Cause, tuple[str, str, tuple[str, ...]]] = {
    "ok": ("every stage of the path answered", "nobody", ()),
    "dns_nxdomain": (
        "the name {host} does not exist in DNS (NXDOMAIN)",
        "dns",
        (
            "check the spelling of {host}, or create the record at your DNS provider:",
            "  an A record {host} -> the server's external IP",
            "servepath dns {host} --resolver <your DNS server>  # confirm once it is created",
        ),
    ),
    "dns_no_answer": (
        "{host} exists in DNS but has no address record of the asked type",
        "dns",
        (
            "add an A (IPv4) or AAAA (IPv6) record for {host}; a CNAME must end in one",
            "servepath dns {host} --type A",
        ),
    ),
    "dns_timeout": (
        "no DNS server answered for {host} in time",
        "dns",
        (
            "check /etc/resolv.conf and that the resolvers ({resolvers}) are reachable",
            "servepath dns {host} --resolver <another resolver>",
        ),
    ),
    "dns_disagree": (
        "resolvers give different answers for {host}: {disagreement}",
        "dns",
        (
            "a record was changed recently (wait for its TTL), or a split-horizon/internal "
            "zone answers differently; make every resolver agree on {host}",
            "servepath dns {host} --resolver <each resolver>",
        ),
    ),
    "private_address": (
        "{address} is a private (internal) address and this machine reaches it only through "
        "its default gateway {gateway}: it is not on this network, so it cannot be reached",
        "caller",
        (
            "call the server's external (public) IP instead of its internal one; on a cloud "
            "VM the external IP is on the instance page (gcloud compute instances describe "
            "VM --format='get(networkInterfaces[0].accessConfigs[0].natIP)')",
            "or run the caller inside the same network (VPC, VPN, or an SSH tunnel: "
            "ssh -L {port}:{endpoint} <bastion>)",
        ),
    ),
    "no_route": (
        "there is no route to {address}: {detail}",
        "network",
        (
            "check the address, and the routes on this machine (ip route get {address}) and "
            "on the router {offender}",
        ),
    ),
    "port_filtered": (
        "nothing answered on {endpoint}: packets are dropped silently, typically by a "
        "firewall (cloud firewall rule, security group, iptables DROP)",
        "firewall",
        (
            "open tcp:{port} to the callers, e.g. on Google Cloud:",
            "  gcloud compute firewall-rules create allow-{port} --allow=tcp:{port} "
            "--source-ranges=<caller range> --target-tags=<vm tag>",
            "on the host itself: iptables -I INPUT -p tcp --dport {port} -j ACCEPT",
        ),
    ),
    "port_rejected": (
        "{offender_role} {offender} rejects connections to port {port} ({detail}): a firewall "
        "rule that REJECTs, not a closed port",
        "firewall",
        (
            "find the REJECT rule on {offender} (iptables -S | grep -i reject; "
            "nft list ruleset) and allow tcp:{port} from the callers",
        ),
    ),
    "port_closed": (
        "{address} answers, but nothing listens on port {port} (connection refused)",
        "server",
        (
            "start the service on port {port}: servepath serve --host 0.0.0.0 --port {port}",
            "if it runs in a container, publish the port: docker run -p {port}:8080 ...",
            "if it does run, it may be bound to 127.0.0.1 only: on the server run "
            "servepath doctor --local {port}",
        ),
    ),
    "service_on_other_port": (
        "port {port} does not answer ({port_state}), but the service answers on port {other_port}",
        "caller",
        (
            "call {other_url} instead, or map the port: docker run -p {port}:{other_port} ...",
            "or open the firewall for tcp:{port} if something is meant to listen there",
        ),
    ),
    "tls_handshake_failed": (
        "the TLS handshake with {host_endpoint} failed: {detail}",
        "server",
        ("check the server's TLS configuration: servepath tls {host_endpoint}",),
    ),
    "tls_untrusted": (
        "the certificate of {host_endpoint} is not trusted ({detail})",
        "server",
        (
            "serve a certificate from a public CA (e.g. Let's Encrypt) with its full chain, "
            "or give the client the CA: servepath doctor {url} --cafile ca.pem",
        ),
    ),
    "tls_expired": (
        "the certificate of {host_endpoint} has expired ({detail})",
        "server",
        ("renew the certificate (certbot renew, or your load balancer's managed cert)",),
    ),
    "tls_hostname_mismatch": (
        "the certificate of {host_endpoint} is not valid for the name {host} ({detail})",
        "server",
        ("issue a certificate whose SAN covers {host}, or call the name the certificate names",),
    ),
    "tls_on_plain_port": (
        "port {port} speaks TLS, but the URL says http://",
        "caller",
        ("use https://{host_endpoint}{path}",),
    ),
    "plain_http_on_tls_port": (
        "port {port} speaks plain HTTP, but the URL says https://",
        "caller",
        (
            "use http://{host_endpoint}{path}, or put TLS in front of the service (a reverse "
            "proxy or load balancer with a certificate)",
        ),
    ),
    "proxy_failed": (
        "the forward proxy {proxy} failed: {detail}",
        "proxy",
        (
            "check that the proxy runs and accepts this machine ({proxy}); or bypass it for "
            "this host: export NO_PROXY={host}",
        ),
    ),
    "upstream_error": (
        "the reverse proxy in front of the app answered {status}: it could not reach a "
        "healthy app behind it",
        "server",
        (
            "start or fix the app behind the proxy; on the server: servepath doctor --local "
            "8080, and check the proxy's upstream (nginx: proxy_pass / upstream block)",
        ),
    ),
    "http_error": (
        "the server answered {status} on {route}: {detail}",
        "app",
        ("read the server's log for request id {request_id}",),
    ),
    "route_not_found": (
        "the server has no route {method} {route} (404)",
        "caller",
        ("use one of the routes the server exposes: {routes}",),
    ),
    "bad_payload": (
        "the server rejected the request body ({status}): {detail}",
        "caller",
        (
            "send an instance that matches the model's schema: GET {origin}/openapi.json has "
            "the schema and an example",
        ),
    ),
    "slow_server": (
        "the request took {total_ms} ms and the server spent {server_ms} ms of it "
        "({server_share}%): the model or the app is slow",
        "app",
        (
            "look at Server-Timing (cache, model) and the model's cost per call; enable the "
            "cache, batch, or add replicas (servepath load {url} --find-max)",
        ),
    ),
    "slow_network": (
        "the request took {total_ms} ms but the server spent only {server_ms} ms: "
        "{network_ms} ms went to the network and proxies (connect alone {connect_ms} ms)",
        "network",
        (
            "place the service nearer its callers (servepath regions place --callers ...), "
            "or find the slow hop: servepath trace {host} --port {port}",
        ),
    ),
    "not_listening": (
        "nothing listens on port {port} on this machine",
        "server",
        ("start it: servepath serve --host 0.0.0.0 --port {port}",),
    ),
    "bound_to_loopback": (
        "{process} listens on port {port} only on {bound}: reachable from this machine "
        "only, not from other hosts or from outside the container",
        "server",
        (
            "bind every interface: servepath serve --host 0.0.0.0 --port {port} "
            "(for uvicorn: --host 0.0.0.0)",
        ),
    ),
}


def explain(cause: Cause, context: Mapping[str, Any]) -> Explanation:
    """The explanation of ``cause``, with the run's facts filled in."""
    meaning, owner, fix = _TEXT[cause]
    ctx = _Ctx(context)
    return Explanation(
        cause=cause,
        meaning=meaning.format_map(ctx),
        owner=owner,
        fix=tuple(line.format_map(ctx) for line in fix),
    )
