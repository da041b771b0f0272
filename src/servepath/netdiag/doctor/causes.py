"""The doctor's fixed vocabulary of causes: what each means in plain words, who usually broke
it, the fix as concrete commands, and — for readers — which evidence outranks which.

A fix line may begin with ``?name:``: it is written only when the run knows ``name`` (a
request id, a port where the service answers instead). Every other ``{name}`` must be known:
a cause is explained with the facts of the run or not at all, never with a placeholder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from servepath.net.endpoints import host_port

log = logging.getLogger(__name__)

Cause = Literal[
    "ok",
    "dns_nxdomain",
    "dns_no_answer",
    "dns_timeout",
    "dns_disagree",
    "private_address",
    "routing_loop",
    "no_route",
    "ipv4_unreachable",
    "ipv6_unreachable",
    "port_filtered",
    "port_rejected",
    "port_closed",
    "service_on_other_port",
    "tls_handshake_failed",
    "tls_untrusted",
    "tls_chain_incomplete",
    "tls_expired",
    "tls_not_yet_valid",
    "clock_skew",
    "tls_hostname_mismatch",
    "tls_on_plain_port",
    "plain_http_on_tls_port",
    "not_http",
    "proxy_failed",
    "proxy_denied",
    "virtual_host",
    "upstream_error",
    "upstream_timeout",
    "overloaded",
    "no_response",
    "http_error",
    "unauthorized",
    "route_not_found",
    "bad_payload",
    "redirected",
    "intermittent",
    "mtu_blackhole",
    "packet_loss",
    "slow_server",
    "slow_network",
    "not_listening",
    "bound_to_loopback",
    "container_not_listening",
    "conntrack_full",
    "accept_queue_overflow",
    "published_past_firewall",
]

CAUSES: tuple[Cause, ...] = Cause.__args__  # type: ignore[attr-defined]

Owner = Literal[
    "nobody",
    "caller",
    "dns admin",
    "network admin",
    "firewall (network or cloud admin)",
    "proxy admin",
    "server operator",
    "app developer",
]


# --- which evidence outranks which -------------------------------------------------------
#
# The doctor looks at the asked port and at its neighbours at once, and at several HTTP
# answers; more than one finding can hold. The verdict is the strongest finding; a weaker
# one that still helps (another port answers) becomes a hint in the fix. These tables are
# the order written out for readers, strongest first: the code that applies it is
# diagnose.transport_verdict (ports) and the HTTP stages' checks (diagnose._http_failure and
# the stages before it), which the tables do not drive. docs/doctor.md prints them (a test
# checks it lists them in this order), and test_diagnose.py has a hand-built case per cause
# and per pair of findings that can meet, which is what holds the code to this order.

#: Evidence about the asked port, strongest first: (evidence, cause it leads to, why).
PORT_EVIDENCE: tuple[tuple[str, Cause, str], ...] = (
    (
        "a router or firewall on the way refuses (ICMP admin-prohibited, host-prohibited)",
        "port_rejected",
        "an explicit refusal names the hop and the rule: proof, not a hint",
    ),
    (
        "the target's own firewall refuses (ICMP port-unreachable or prohibited from it)",
        "port_rejected",
        "a REJECT rule on the target: the port may well have a listener behind the rule",
    ),
    (
        "a router says the packets' time ran out in transit (ICMP TTL exceeded)",
        "routing_loop",
        "two routers hand the packets back and forth: the trace names both",
    ),
    (
        "the name's other address family answers on the port where the asked address does not",
        "ipv4_unreachable",
        "a caller that dials the other family gets through: the family, not the service",
    ),
    (
        "a private address reached only through the default gateway, and silence or a "
        "router's no-route answer",
        "private_address",
        "the address is not on any network this machine can reach: a route is not the fix",
    ),
    (
        "a router says there is no route (ICMP host/net unreachable from a hop)",
        "no_route",
        "the packets cannot get there at all",
    ),
    (
        "many connections opened in a burst: some are answered, a share of them lose their "
        "first packet, and so do routers before the target",
        "packet_loss",
        "the port answers when its packets get through: a lost SYN is retried before the port "
        "is called filtered, and the loss outranks the slowness and failures it causes",
    ),
    (
        "no answer at all (DROP)",
        "port_filtered",
        "something drops the packets; a listener may be behind it",
    ),
    (
        "the target itself resets (RST), and the service answers on another port",
        "service_on_other_port",
        "nothing is in the way: the caller dials the wrong port",
    ),
    (
        "the target itself resets (RST)",
        "port_closed",
        "nothing listens on the port",
    ),
    (
        "the asked address answers, and every IPv6 address of the name refuses or is silent",
        "ipv6_unreachable",
        "a caller that tries IPv6 first (most do) hangs or is refused: only the name's AAAA "
        "answers fail",
    ),
)

#: Evidence from HTTP answers, strongest first.
HTTP_EVIDENCE: tuple[tuple[str, Cause, str], ...] = (
    (
        "the forward proxy cannot be reached",
        "proxy_failed",
        "nothing behind the proxy was even tried",
    ),
    (
        "the forward proxy answers with its own refusal (403/407/5xx page, refused CONNECT)",
        "proxy_denied",
        "its page, not the service's: the service never saw the request",
    ),
    (
        "the port answers TLS on an http:// URL",
        "tls_on_plain_port",
        "the first bytes are a TLS record",
    ),
    (
        "this machine publishes the port into a container, and nothing answers there inside",
        "container_not_listening",
        "docker-proxy accepts and closes: the container's own namespace says why",
    ),
    (
        "the port speaks another protocol (Redis, PostgreSQL, SSH ...)",
        "not_http",
        "the first bytes name the protocol",
    ),
    (
        "connected, and nothing answers within the timeout",
        "no_response",
        "the process is stuck or saturated; no answer means no status to read",
    ),
    (
        "a reverse proxy answers 504",
        "upstream_timeout",
        "the proxy gave up waiting for the app behind it",
    ),
    (
        "429, or 503 with Retry-After (from anyone)",
        "overloaded",
        "the answerer says it is busy and when to come back",
    ),
    (
        "a reverse proxy answers 502, or 503 without Retry-After",
        "upstream_error",
        "the proxy has no healthy app behind it",
    ),
    (
        "a web server that is not servepath answers (its default site: 404, 421, an HTML page)",
        "virtual_host",
        "only servepath sends its headers; another server's 404 is not servepath's router",
    ),
    (
        "servepath answers 401, or any server with a Bearer challenge",
        "unauthorized",
        "the request reached the app; only its key is missing or wrong",
    ),
    (
        "servepath answers 404",
        "route_not_found",
        "servepath's own router lists its routes",
    ),
    (
        "servepath answers 400/415/422 to the example",
        "bad_payload",
        "the body, not the path",
    ),
    (
        "the predict route answers 301/302/303 (or redirects in a loop)",
        "redirected",
        "clients that follow turn the POST into a GET; 307/308 keep it and only warn",
    ),
    (
        "the same request, repeated over fresh and reused connections, sometimes fails",
        "intermittent",
        "one probe cannot see a 1-in-N failure; counted, it outranks the answer of a single try",
    ),
    (
        "small requests pass, a large one stalls",
        "mtu_blackhole",
        "found only after the small request passed",
    ),
)

#: What ``doctor --local`` reads on the server's machine, strongest first: the stages run in
#: the order a caller's packet meets them, and the first that fails is the verdict; a
#: warning (the last row, and a drop the namespace counted elsewhere) never outranks one.
LOCAL_EVIDENCE: tuple[tuple[str, Cause, str], ...] = (
    (
        "no socket listens on the port",
        "not_listening",
        "nothing else on the machine can matter",
    ),
    (
        "every socket on the port is bound to a loopback address",
        "bound_to_loopback",
        "other hosts are refused whatever the kernel's tables hold",
    ),
    (
        "the connection-tracking table of this namespace is at 90% of its maximum or more, or "
        "dropped new connections while the doctor watched",
        "conntrack_full",
        "netfilter drops the first packet before any socket sees it",
    ),
    (
        "the port's own listening socket has as many connections waiting as its backlog",
        "accept_queue_overflow",
        "the kernel drops handshakes at that socket: the port's own evidence, not a counter "
        "of the namespace",
    ),
    (
        "the health route does not answer 200",
        "http_error",
        "the packet reached the process, which answered badly or not at all",
    ),
    (
        "Docker publishes the port on every address while the INPUT chain closes it (a warning)",
        "published_past_firewall",
        "the path works; the firewall's rules say something that is not true",
    ),
)


@dataclass(frozen=True)
class Explanation:
    cause: Cause
    meaning: str  # the cause in plain words
    owner: Owner  # who usually broke it, and so who fixes it
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
        if key == "serve_host":  # the --host that reaches this address family
            return "::" if ":" in str(self.get("address", "")) else "0.0.0.0"
        raise KeyError(key)


#: One address family answers and the other does not: the same words for either, the family
#: and the evidence (a reset from the target, or silence) filled in.
_ONE_FAMILY: tuple[str, Owner, tuple[str, ...]] = (
    "{host} resolves to IPv4 and IPv6; port {port} answers on {working} but {broken_state} "
    "on {broken}: a caller that dials {broken_family} first {consequence}",
    "server operator",
    (
        "?refused:the server listens on {working_family} only: {listen_fix}",
        "?silent:the {broken_family} path to {broken} drops or refuses tcp:{port} (a "
        "firewall rule, a security group, or no {broken_family} route): open it for "
        "{broken_family} too ({firewall_cmd})",
        "or, on the DNS side, remove the {record} record of {host} until "
        "{broken_family} works; callers then dial {working_family} only",
    ),
)


_TEXT: dict[Cause, tuple[str, Owner, tuple[str, ...]]] = {
    "ok": ("every stage of the path answered", "nobody", ()),
    "dns_nxdomain": (
        "the name {host} does not exist in DNS (NXDOMAIN)",
        "dns admin",
        (
            "check the spelling of {host}, or create the record at your DNS provider:",
            "  an A record {host} -> the server's external IP",
            "servepath dns {host} --resolver <your DNS server>  # confirm once it is created",
        ),
    ),
    "dns_no_answer": (
        "{host} exists in DNS but has no address record of the asked type",
        "dns admin",
        (
            "add an A (IPv4) or AAAA (IPv6) record for {host}; a CNAME must end in one",
            "servepath dns {host} --type A",
        ),
    ),
    "dns_timeout": (
        "no DNS server answered for {host} in time",
        "dns admin",
        (
            "check /etc/resolv.conf and that the resolvers ({resolvers}) are reachable",
            "servepath dns {host} --resolver <another resolver>",
        ),
    ),
    "dns_disagree": (
        "resolvers give different answers for {host}: {disagreement}",
        "dns admin",
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
        "there is no route to {address}: {detail} (said by {offender})",
        "network admin",
        (
            "?other_port:the service is up — it answers on {other_port} ({other_url}): the "
            "route to port {port} is what fails; or call {other_url}",
            "check the address, and the routes on this machine (ip route get {address}) and "
            "on the router {offender}",
        ),
    ),
    "routing_loop": (
        "packets to {address} go round in a routing loop between {routers}: their time to "
        "live runs out in transit (ICMP TTL exceeded from {offender})",
        "network admin",
        (
            "?other_port:the service is up — it answers on {other_port} ({other_url}): only "
            "the route for port {port}'s packets loops; or call {other_url}",
            "each of {routers} sends {address} to the other: fix the route for it on one of "
            "them (ip route get {address} on each; a route onward, or a default route that "
            "does not point back)",
        ),
    ),
    "ipv4_unreachable": _ONE_FAMILY,
    "ipv6_unreachable": _ONE_FAMILY,
    "port_filtered": (
        "nothing answered on {endpoint}: packets are dropped silently, typically by a "
        "firewall (cloud firewall rule, security group, iptables DROP)",
        "firewall (network or cloud admin)",
        (
            "?other_port:the service is up — it answers on {other_port} ({other_url}); "
            "something drops tcp:{port}: open it, or call {other_url}",
            "open tcp:{port} to the callers, e.g. on Google Cloud:",
            "  gcloud compute firewall-rules create allow-{port} --allow=tcp:{port} "
            "--source-ranges=<caller range> --target-tags=<vm tag>",
            "on the host itself: iptables -I INPUT -p tcp --dport {port} -j ACCEPT",
        ),
    ),
    "port_rejected": (
        "{offender_role} {offender} rejects connections to port {port} ({detail}): a firewall "
        "rule that REJECTs, not a closed port",
        "firewall (network or cloud admin)",
        (
            "?other_port:the service is up — it answers on {other_port} ({other_url}); the "
            "firewall at {offender} blocks tcp:{port}: open it, or call {other_url}",
            "find the REJECT rule on {offender} (iptables -S | grep -i reject; "
            "nft list ruleset) and allow tcp:{port} from the callers",
        ),
    ),
    "port_closed": (
        "{address} answers, but nothing listens on port {port} (connection refused)",
        "server operator",
        (
            "start the service on port {port}: servepath serve --host {serve_host} --port {port}",
            "if it runs in a container, publish the port: docker run -p {port}:8080 ...",
            "if it does run, it may be bound to 127.0.0.1 only: on the server run "
            "servepath doctor --local {port}",
            "?container_hint:{container_hint}",
        ),
    ),
    "service_on_other_port": (
        "{address} refuses port {port} itself (nothing listens there), but the service "
        "answers on port {other_port}",
        "caller",
        (
            "call {other_url} instead, or map the port: docker run -p {port}:{other_port} ...",
            "or start something on port {port} if the callers must use it",
            "?container_hint:{container_hint}",
        ),
    ),
    "tls_handshake_failed": (
        "the TLS handshake with {host_endpoint} failed: {detail}",
        "server operator",
        ("check the server's TLS configuration: servepath tls {host_endpoint}",),
    ),
    "tls_untrusted": (
        "the certificate of {host_endpoint} is not trusted ({detail})",
        "server operator",
        (
            "?missing:the server sends no certificate for its issuer {missing}: if that is an "
            "intermediate CA, the chain is incomplete — serve the full chain (nginx: "
            "ssl_certificate fullchain.pem)",
            "serve a certificate from a public CA (e.g. Let's Encrypt) with its full chain, "
            "or give the client the CA: servepath doctor {url} --cafile ca.pem",
        ),
    ),
    "tls_chain_incomplete": (
        "{host_endpoint} sends its certificate without the CA certificate that issued it "
        "({missing}): browsers fill the gap themselves, other clients (curl, Python, Go, "
        "Java) cannot verify it",
        "server operator",
        (
            "serve the full chain: the certificate followed by {missing}'s (nginx: "
            "ssl_certificate fullchain.pem, not cert.pem; certbot writes fullchain.pem)",
            "?issuer_url:the missing certificate is at {issuer_url} (the certificate's AIA URL)",
            "check: openssl s_client -connect {endpoint} -servername {host} -showcerts lists "
            "more than one certificate once it is fixed",
        ),
    ),
    "tls_expired": (
        "the certificate of {host_endpoint} has expired ({detail})",
        "server operator",
        ("renew the certificate (certbot renew, or your load balancer's managed cert)",),
    ),
    "tls_not_yet_valid": (
        "the certificate of {host_endpoint} is not valid yet: {detail}{clocks_text}",
        "server operator",
        (
            "the certificate was issued with a start date in the future: reissue it valid "
            "from now (certbot renew --force-renewal, or your load balancer's managed cert), "
            "or serve the previous one until then",
        ),
    ),
    "clock_skew": (
        "this machine's clock is {skew_text} the server's (its Date: {server_date}): the "
        "certificate of {host_endpoint}, valid {validity}, {looks} only by this clock",
        "caller",
        (
            "set this machine's clock: timedatectl set-ntp true (or chronyc makestep), then "
            "date -u should agree with the server's Date",
            "in a VM or container, the host's clock: check the hypervisor's time sync",
        ),
    ),
    "tls_hostname_mismatch": (
        "the certificate of {host_endpoint} is not valid for the name {host} ({detail})",
        "server operator",
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
    "not_http": (
        "{endpoint} speaks {protocol}, not HTTP: {evidence}",
        "caller",
        (
            "this is not the model service's port: {protocol} listens here",
            "find the service's port on the server (servepath listen, or ss -ltnp), or "
            "scan the usual ones: servepath ports {address} 80,443,8080,8000,8443",
        ),
    ),
    "proxy_failed": (
        "the forward proxy {proxy} failed: {detail}",
        "proxy admin",
        (
            "check that the proxy runs and accepts this machine ({proxy}); or bypass it for "
            "this host: export NO_PROXY={host}",
        ),
    ),
    "proxy_denied": (
        "the forward proxy {proxy} refused to carry the request to {host_endpoint} "
        "({status}: {detail}); the service never saw it",
        "proxy admin",
        (
            "?auth:the proxy asks for credentials ({auth}): put them in the proxy URL, "
            "export HTTPS_PROXY=http://USER:PASS@{proxy_endpoint}",
            "ask the proxy's admin to allow {host_endpoint} (its ACL or filter list), or "
            "bypass the proxy for this host if the network allows it: export NO_PROXY={host}",
        ),
    ),
    "virtual_host": (
        "something answers on {endpoint}, but not the model service: {server} answered "
        "{status} for the name {host_header} — a web server that routes by name, and its "
        "default site answered",
        "caller",
        (
            "?working_name:servepath answers when asked for the name {working_name}: "
            "call http://{working_endpoint}{path}, or without DNS: curl --resolve "
            "{working_name}:{port}:{address} http://{working_endpoint}{path}",
            "?candidates:names that may work (from {candidate_sources}): {candidates}",
            "try a name against this address: servepath doctor {url} --host-header NAME, "
            "or curl --resolve NAME:{port}:{address} http://NAME:{port}{path}",
            "or give the service a site of its own for this address on that server "
            "(nginx: a server block with listen {port} default_server)",
        ),
    ),
    "upstream_error": (
        "the reverse proxy in front of the app ({server}) answered {status}: it could not "
        "reach a healthy app behind it",
        "server operator",
        (
            "start or fix the app behind the proxy; on the server: servepath doctor --local "
            "8080, and check the proxy's upstream (nginx: proxy_pass / upstream block)",
        ),
    ),
    "upstream_timeout": (
        "the reverse proxy in front of the app ({server}) answered 504 on {route} after "
        "{total_ms} ms: it gave up waiting for the app behind it",
        "server operator",
        (
            "the app is slow or stuck: on the server, servepath doctor --local 8080, and "
            "look at Server-Timing of a request sent to the app directly",
            "or raise the proxy's timeout if the model is legitimately slow (nginx: "
            "proxy_read_timeout; a load balancer: its backend timeout)",
        ),
    ),
    "overloaded": (
        "{who} answered {status} on {route}: it is overloaded and sheds requests{retry_text}",
        "server operator",
        (
            "?retry_after:retry after {retry_after} s, with back-off (clients should honour "
            "Retry-After)",
            "add replicas or capacity: servepath load {url} --find-max tells how many "
            "requests one replica serves",
        ),
    ),
    "no_response": (
        "{endpoint} accepted the connection, but nothing answered {method_route} within "
        "{waited_s} s: the process is stuck or saturated",
        "server operator",
        (
            "on the server: servepath doctor --local {port} (is it the process you expect?), "
            "and look at its CPU and threads (top, py-spy dump --pid PID)",
            "if it is only slow, wait longer: servepath doctor {url} --http-timeout 30",
        ),
    ),
    "http_error": (
        "{who} answered {status} on {route}: {detail}",
        "app developer",
        (
            "?proxy_answered:{proxy_answered} answered, not the app: read its error log (for "
            "a large body, nginx's client_max_body_size and client_body_buffer_size)",
            "?request_id:read the server's log for request id {request_id}",
            "?no_request_id:read the server's log at the time of this request (it sent no "
            "request id)",
        ),
    ),
    "unauthorized": (
        "the server wants an API key for {method} {route} (401){key_text}",
        "caller",
        (
            "?no_key:pass the key: servepath doctor {url} --api-key KEY (or set "
            "SERVEPATH_API_KEY); a caller sends it as Authorization: Bearer KEY or X-API-Key: KEY",
            "?key_sent:the key sent is not one the server knows: compare it with the server's "
            "--api-key-file (the server's log names the key a request used, never the key)",
        ),
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
    "redirected": (
        "{method} {route} is answered {status} with a redirect to {target}: {consequence}",
        "caller",
        (
            "?loop:the redirects go round in a loop ({loop}): fix the redirect rule on the "
            "server (the proxy's return/rewrite, the app's HTTPS redirect)",
            "?direct:call the URL the redirect names directly: {target} (servepath doctor "
            "{target})",
            "?cross_host:the redirect leaves {host} for another host, {target_host}: make sure "
            "it is the service you mean to call, and that your key may go there",
            "?keeps_post:a client that must follow it keeps the POST only with 307/308 "
            "(curl: -L --post301 --post302 --post303)",
        ),
    ),
    "intermittent": (
        "the service fails now and then: {how} ({cluster})",
        "server operator",
        (
            "?keepalive:the failures come on reused connections only: the keep-alive race — "
            "the server closes an idle connection that the proxy or client still reuses; make "
            "the server's keep-alive timeout longer than the proxy's (servepath serve "
            "--keepalive-timeout, nginx keepalive_timeout in the upstream block), or retry "
            "idempotent requests",
            "?replica:one replica or upstream behind {answerer} fails while the others answer: "
            "find it (nginx: each server of the upstream block; on each, servepath doctor "
            "--local PORT) and take it out of the pool until it is fixed",
            "measure the fraction more closely: servepath doctor {url} --repeat 50",
        ),
    ),
    "mtu_blackhole": (
        "small requests pass but a {large_kb} KB request stalls: packets over {mtu_text} "
        "are lost on the way and the ICMP that should say so never comes back (an MTU "
        "black hole{hop_text})",
        "network admin",
        (
            "?hop:the link after {hop} has a smaller MTU than the ends; let ICMP "
            "fragmentation-needed (IPv6: packet-too-big) through on it, or raise its MTU",
            "clamp the TCP MSS on the router in front of the small link: iptables -t mangle "
            "-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
            "?mtu:or, on the caller or the server, lower the interface MTU to {mtu}: ip link "
            "set dev IFACE mtu {mtu}",
        ),
    ),
    "packet_loss": (
        "the path to {endpoint} loses packets: {missed} of {sent} connections opened in a burst "
        "lost their first packet ({loss_pct}%){start_text}; each lost packet costs a "
        "retransmission (a second for a SYN), so requests are slow, time out, and come and go",
        "network admin",
        (
            "?start_hop:the loss starts at {start_hop}: the link into it, or that router, drops "
            "packets (a saturated or faulty link, a policer); its owner can read the drop and "
            "error counters there (ip -s link, ethtool -S IFACE)",
            "watch it over time from this machine: mtr -T -P {port} {address} (or servepath "
            "trace {address} --port {port} --queries 10)",
            "if the loss is on this machine's own side (Wi-Fi, a VPN), compare from another "
            "network",
        ),
    ),
    "slow_server": (
        "the request took {total_ms} ms and the server spent {server_ms} ms of it "
        "({server_share}%): the model or the app is slow",
        "app developer",
        (
            "look at Server-Timing (cache, model) and the model's cost per call; enable the "
            "cache, batch, or add replicas (servepath load {url} --find-max)",
        ),
    ),
    "slow_network": (
        "the request took {total_ms} ms but the server spent only {server_ms} ms: "
        "{network_ms} ms went to the network and proxies (connect alone {connect_ms} ms)",
        "network admin",
        (
            "place the service nearer its callers (servepath regions place --callers ...), "
            "or find the slow hop: servepath trace {host} --port {port}",
            "?jump:{jump}",
        ),
    ),
    "container_not_listening": (
        "{mapping_text}, but nothing in the container answers on port {container_port}: "
        "inside, {inside}",
        "server operator",
        (
            "?loopback_only:the service in the container listens on {loopback_only} only: "
            "bind every interface (servepath serve --host 0.0.0.0, which the image does "
            "unless SERVEPATH_HOST says otherwise)",
            "?inside_port:the service listens on {inside_port} inside: publish that port, "
            "docker run -p {host_bind}{host_port}:{inside_port} ...",
            "check inside the container: docker exec CONTAINER servepath doctor --local "
            "{container_port}",
        ),
    ),
    "not_listening": (
        "nothing listens on port {port} on this machine",
        "server operator",
        ("start it: servepath serve --host 0.0.0.0 --port {port}",),
    ),
    "bound_to_loopback": (
        "{process} listens on port {port} only on {bound}: {reach}",
        "server operator",
        (
            "?publish:{process} is Docker's port publisher: the container was started with "
            "-p {bound}:{port}:{container_port}; publish on every interface instead: docker "
            "run -p {port}:{container_port} ... (the service inside needs no change)",
            "?serve_fix:bind every interface: servepath serve --host 0.0.0.0 --port {port} "
            "(--host :: for IPv6 too; for uvicorn: --host 0.0.0.0)",
        ),
    ),
    "conntrack_full": (
        "the connection-tracking table {where} is full ({evidence}): the kernel drops the "
        "first packet of new connections before any server sees it; callers' connects time "
        "out and pass on a retry, and no server logs a thing",
        "network admin",
        (
            "raise the limit: sysctl -w net.netfilter.nf_conntrack_max={suggested_max}, kept "
            "in a file of /etc/sysctl.d/ (the hash table grows with it: "
            "/sys/module/nf_conntrack/parameters/hashsize, a quarter of the maximum or more)",
            "?container:the limit is the host's (read-only inside a container's namespace): "
            "set it on the host",
            "or keep fewer entries: shorter timeouts for finished connections "
            "(sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=30), and callers "
            "that keep their connections alive instead of opening one per request",
            "or leave the service's port untracked where nothing NATs it: iptables -t raw -A "
            "PREROUTING -p tcp --dport {port} -j NOTRACK; iptables -t raw -A OUTPUT -p tcp "
            "--sport {port} -j NOTRACK (rules that accept by --ctstate must then accept "
            "UNTRACKED too)",
            "watch it: conntrack -S (drop, insert_failed), or cat "
            "/proc/sys/net/netfilter/nf_conntrack_count",
        ),
    ),
    "accept_queue_overflow": (
        "{queue_text}: the kernel drops new connections ({dropped_text}) and callers wait "
        "for their SYN to be sent again (1 s, 3 s, 7 s ...): {slow_text}",
        "server operator",
        (
            "take connections faster: more worker processes (servepath serve --workers N, one "
            "per core; uvicorn --workers, gunicorn -w), or more replicas behind the load "
            "balancer; servepath load URL --find-max says what one replica bears",
            "a longer queue absorbs bursts, not a lasting excess: servepath serve --backlog "
            "{suggested_backlog} (uvicorn --backlog, gunicorn --backlog; now {backlog})",
            "?capped:the kernel caps every backlog at net.core.somaxconn (now {somaxconn}): "
            "raise it too, sysctl -w net.core.somaxconn={suggested_backlog}, kept in a file "
            "of /etc/sysctl.d/",
            "a queue that stays full while the CPU idles is a server that stopped calling "
            "accept(): look at its threads (py-spy dump --pid PID)",
            "?elsewhere:find the listener whose Recv-Q reaches its Send-Q: ss -ltnp (run it "
            "while the drops happen)",
            "watch it: ss -ltn 'sport = :{port}' (Recv-Q against Send-Q), nstat -az "
            "TcpExtListenOverflows",
        ),
    ),
    "published_past_firewall": (
        "Docker publishes port {port} on every address ({mapping_text}), but this machine's "
        "firewall closes it ({decision}: {rule}): Docker's DNAT rewrites the packets before "
        "the INPUT chain sees them, so other hosts reach the container whatever the rule says",
        "server operator",
        (
            "if only this machine should reach it, publish on loopback: docker run -p "
            '127.0.0.1:{port}:{container_port} ... (compose: "127.0.0.1:{port}:{container_port}")',
            "if some hosts should reach it, filter where Docker's packets pass, the "
            "DOCKER-USER chain: iptables -I DOCKER-USER -p tcp -m conntrack --ctorigdstport "
            "{port} ! -s <allowed range> -j DROP",
            "?ufw:ufw's rules (ufw deny {port}) filter INPUT only; ufw route deny proto tcp "
            "from any to any port {container_port} filters Docker's forwarded packets",
            "if the port is meant to be open, allow it in the firewall too, so that its rules "
            "say what is true",
        ),
    ),
}


def _render(template: str, ctx: _Ctx) -> str | None:
    if template.startswith("?"):
        key, _, template = template[1:].partition(":")
        if not ctx.get(key):
            return None
    return template.format_map(ctx)


def explain(cause: Cause, context: Mapping[str, Any], *, strict: bool = False) -> Explanation:
    """The explanation of ``cause``, with the run's facts filled in.

    A fact the text needs and the run lacks is a bug: ``strict`` (the tests) raises
    KeyError; otherwise the line says "(unknown)" and the bug is logged.
    """
    meaning, owner, fix = _TEXT[cause]
    # a few causes are owned by whoever the evidence names (a refusal: the server's
    # operator; silence: the network's admin)
    owner = context.get("owner") or owner
    ctx = _Ctx(context)

    def render(template: str) -> str | None:
        try:
            return _render(template, ctx)
        except KeyError as exc:
            if strict:
                raise
            log.warning("doctor: the text of %s needs %s, which the run lacks", cause, exc)
            return _render(template, _Lenient(ctx))

    lines = tuple(line for line in (render(f) for f in fix) if line is not None)
    return Explanation(cause=cause, meaning=render(meaning) or "", owner=owner, fix=lines)


class _Lenient(_Ctx):
    def __missing__(self, key: str) -> str:
        try:
            return super().__missing__(key)
        except KeyError:
            return "(unknown)"
