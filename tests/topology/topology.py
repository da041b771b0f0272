"""Throwaway network topologies in Linux network namespaces, for tests that cross a network.

Declare hosts, routers, links, firewall rules, NAT and a DNS server; ``build()`` makes them
with ``ip netns``, veth pairs, static routes and iptables, and tears everything down when the
``with`` block ends, whatever happened inside it. Needs root, iproute2 and iptables (dnsmasq
for ``dns``). Namespaces are named ``sp-<pid>-<n>-<node>``, so parallel runs never collide,
and namespaces left by a run that died are removed by the next one.

    from tests.topology.topology import Topology, drop, reject, silent_time_exceeded, dnat

    topo = Topology()
    topo.host("client")
    topo.router("r1")
    topo.host("server", nameservers=["10.9.3.53"])
    topo.link("client", "10.9.1.2/24", "r1", "10.9.1.1/24")
    topo.link("r1", "10.9.2.1/24", "server", "10.9.2.2/24")
    topo.link("r1", "10.9.3.1/24", "dns", "10.9.3.53/24")  # a node named first here is a host
    topo.rule("server", reject("icmp-admin-prohibited", port=81))  # on the host, INPUT
    topo.rule("r1", drop(chain="FORWARD", port=82))                # on the router
    topo.rule("r1", silent_time_exceeded())                       # a hop that says nothing
    topo.rules("server", dnat(80, 8080))                          # docker run -p 80:8080
    topo.dns("dns", "10.9.3.53", records={"api.test": "10.9.2.2"})

    with topo.build() as net:
        with net.listen("server", "10.9.2.2", [8080]):             # returns once listening
            out = net.run("client", ["nc", "-zvw1", "10.9.2.2", "80"], check=False)
            with net.rule("server", reject(port=8080)):           # removed again on exit
                ...
            result = net.call("client", some_function, arg)       # in-process, in the netns

Routes: unless ``Topology(auto_routes=False)``, every node gets a static route to every
subnet it is not on, along the shortest path of links, so nothing needs a default route. Add
more with ``topo.route(node, destination, via)``.

ICMP rate limits: Linux rate-limits the ICMP errors a node sends (``net.ipv4.icmp_ratemask``),
which makes a test that provokes many errors at once flaky. Every node is built with the
limit off unless ``Topology(icmp_rate_limit=True)``.

Unprivileged commands: ``net.run(node, argv, user="nobody")`` runs argv without root and
without capabilities. When the interpreter or the project sits under a directory that user
cannot enter (``/root`` on a pyenv install), that directory is shadowed, in a private mount
namespace of that one command, by a tmpfs that exposes only the paths the command needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = [
    "Network",
    "Rule",
    "Topology",
    "TopologyError",
    "dnat",
    "drop",
    "reject",
    "silent_time_exceeded",
]

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
_CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)
_PREFIX_RE = re.compile(r"^sp-(\d+)-\d+-")


class TopologyError(RuntimeError):
    """Building or driving a topology failed; the message holds the command and its stderr."""


# ---- declarations ------------------------------------------------------------------------

Kind = Literal["host", "router"]


@dataclass
class _Node:
    name: str
    kind: Kind
    nameservers: list[str] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)
    interfaces: list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = field(
        default_factory=list
    )
    links: int = 0


_Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class _Link:
    a: str
    a_addresses: tuple[_Iface, ...]
    b: str
    b_addresses: tuple[_Iface, ...]


@dataclass(frozen=True)
class Rule:
    """One iptables rule: ``table``/``chain``, the match, and the target (``-j ...``)."""

    chain: str
    match: tuple[str, ...]
    target: tuple[str, ...]
    table: str = "filter"
    ipv6: bool = False

    def argv(self, operation: str = "-A") -> list[str]:
        tool = "ip6tables" if self.ipv6 else "iptables"
        return [tool, "-w", "-t", self.table, operation, self.chain, *self.match, *self.target]


def _match(
    proto: str | None,
    port: int | str | None,
    source: str | None,
    destination: str | None,
) -> tuple[str, ...]:
    parts: list[str] = []
    if proto:
        parts += ["-p", proto]
    if source:
        parts += ["-s", source]
    if destination:
        parts += ["-d", destination]
    if port is not None:
        if not proto:
            raise ValueError("a port match needs a protocol")
        parts += ["--dport", str(port)]
    return tuple(parts)


def drop(
    *,
    chain: str = "INPUT",
    proto: str | None = "tcp",
    port: int | str | None = None,
    source: str | None = None,
    destination: str | None = None,
    ipv6: bool = False,
) -> Rule:
    """Silently discard matching packets (``port`` may be ``"8000:8100"``)."""
    return Rule(chain, _match(proto, port, source, destination), ("-j", "DROP"), ipv6=ipv6)


def reject(
    reject_with: str = "icmp-port-unreachable",
    *,
    chain: str = "INPUT",
    proto: str | None = "tcp",
    port: int | str | None = None,
    source: str | None = None,
    destination: str | None = None,
    ipv6: bool = False,
) -> Rule:
    """Refuse matching packets with ``reject_with``: icmp-port-unreachable (iptables' default),
    icmp-admin-prohibited, icmp-host-unreachable, icmp-net-unreachable, icmp-host-prohibited,
    tcp-reset; for IPv6 icmp6-port-unreachable, icmp6-adm-prohibited, icmp6-addr-unreachable.
    """
    return Rule(
        chain,
        _match(proto, port, source, destination),
        ("-j", "REJECT", "--reject-with", reject_with),
        ipv6=ipv6,
    )


def silent_time_exceeded(*, ipv6: bool = False) -> Rule:
    """Make a router forward as usual but never answer a traceroute (a ``*`` hop)."""
    if ipv6:
        match = ("-p", "icmpv6", "--icmpv6-type", "time-exceeded")
    else:
        match = ("-p", "icmp", "--icmp-type", "time-exceeded")
    return Rule("OUTPUT", match, ("-j", "DROP"), ipv6=ipv6)


def dnat(
    port: int,
    to_port: int,
    *,
    to_address: str | None = None,
    proto: str = "tcp",
    destination: str | None = None,
) -> list[Rule]:
    """Forward ``port`` to ``to_port`` the way ``docker run -p PORT:TO_PORT`` does.

    Without ``to_address`` the node redirects to itself (REDIRECT: the node's own connections
    land on 127.0.0.1, so the service must listen on the wildcard address, as a container's
    does); with it (a container, or a server behind a router acting as a cloud's NAT) it
    rewrites the destination. PREROUTING catches traffic from other nodes, OUTPUT the node's
    own connections.
    """
    where: tuple[str, ...] = ("-d", destination) if destination else ()
    match = ("-p", proto, *where, "--dport", str(port))
    local = ("-m", "addrtype", "--dst-type", "LOCAL") if not destination else ()
    if to_address is None:
        target: tuple[str, ...] = ("-j", "REDIRECT", "--to-ports", str(to_port))
    else:
        host = f"[{to_address}]" if ":" in to_address else to_address
        target = ("-j", "DNAT", "--to-destination", f"{host}:{to_port}")
    ipv6 = to_address is not None and ":" in to_address
    return [
        Rule("PREROUTING", match, target, table="nat", ipv6=ipv6),
        Rule("OUTPUT", (*local, *match), target, table="nat", ipv6=ipv6),
    ]


@dataclass(frozen=True)
class _Dns:
    node: str
    listen: str
    records: dict[str, list[str]]
    cnames: dict[str, str]
    extra_args: tuple[str, ...]


class Topology:
    """A declaration of nodes, links, routes, rules and DNS; ``build()`` makes it real."""

    def __init__(self, *, auto_routes: bool = True, icmp_rate_limit: bool = False) -> None:
        self.auto_routes = auto_routes
        self.icmp_rate_limit = icmp_rate_limit
        self._nodes: dict[str, _Node] = {}
        self._links: list[_Link] = []
        self._routes: list[tuple[str, str, str]] = []
        self._rules: list[tuple[str, Rule]] = []
        self._sysctls: list[tuple[str, str, str]] = []
        self._dns: list[_Dns] = []

    # nodes
    def host(
        self,
        name: str,
        *,
        nameservers: Sequence[str] = (),
        hosts: dict[str, str] | None = None,
    ) -> str:
        """A host; ``nameservers`` and ``hosts`` become its /etc/resolv.conf and /etc/hosts."""
        return self._add(_Node(name, "host", list(nameservers), dict(hosts or {})))

    def router(self, name: str) -> str:
        """A node that forwards between its links (ip_forward on)."""
        return self._add(_Node(name, "router"))

    def _add(self, node: _Node) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", node.name):
            raise ValueError(f"node name {node.name!r}: use 1-12 lower-case letters and digits")
        if node.name in self._nodes:
            raise ValueError(f"node {node.name!r} declared twice")
        self._nodes[node.name] = node
        return node.name

    @property
    def nodes(self) -> list[str]:
        return list(self._nodes)

    # wiring
    def link(self, a: str, a_address: str, b: str, b_address: str) -> None:
        """A veth pair between ``a`` and ``b``; addresses in CIDR form, comma-separated for
        dual stack ("10.9.1.2/24,fd09:1::2/64"). A node named here first becomes a host.
        """
        for name in (a, b):
            if name not in self._nodes:
                self.host(name)
        ia = tuple(ipaddress.ip_interface(x.strip()) for x in a_address.split(","))
        ib = tuple(ipaddress.ip_interface(x.strip()) for x in b_address.split(","))
        if sorted(str(i.network) for i in ia) != sorted(str(i.network) for i in ib):
            raise ValueError(f"{a_address} and {b_address} are not on the same subnets")
        self._links.append(_Link(a, ia, b, ib))
        for name, addresses in ((a, ia), (b, ib)):
            node = self._nodes[name]
            ifname = f"eth{node.links}"
            node.links += 1
            node.interfaces += [(ifname, address) for address in addresses]

    def route(self, node: str, destination: str, via: str) -> None:
        self._routes.append((node, destination, via))

    def rule(self, node: str, rule: Rule) -> None:
        self._rules.append((node, rule))

    def rules(self, node: str, rules: Iterable[Rule]) -> None:
        for rule in rules:
            self.rule(node, rule)

    def sysctl(self, node: str, key: str, value: str) -> None:
        self._sysctls.append((node, key, value))

    def dns(
        self,
        node: str,
        listen: str,
        records: dict[str, str | list[str]],
        *,
        cnames: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """A dnsmasq on ``node`` at ``listen``:53 answering A/AAAA (and PTR) for ``records``."""
        normalised = {k: [v] if isinstance(v, str) else list(v) for k, v in records.items()}
        self._dns.append(_Dns(node, listen, normalised, dict(cnames or {}), tuple(extra_args)))

    # building
    def computed_routes(self) -> list[tuple[str, str, str]]:
        """(node, destination subnet, next hop) for every subnet a node is not on."""
        adjacency: dict[str, list[tuple[str, dict[int, str]]]] = {n: [] for n in self._nodes}
        subnets: dict[str, set[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {
            n: set() for n in self._nodes
        }
        for link in self._links:
            adjacency[link.a].append((link.b, {i.version: str(i.ip) for i in link.b_addresses}))
            adjacency[link.b].append((link.a, {i.version: str(i.ip) for i in link.a_addresses}))
            subnets[link.a].update(i.network for i in link.a_addresses)
            subnets[link.b].update(i.network for i in link.b_addresses)
        routes: list[tuple[str, str, str]] = []
        for start in self._nodes:
            # Breadth-first: every node inherits the first hop of the path that found it.
            first_hop: dict[str, dict[int, str]] = {}
            queue, seen = deque([start]), {start}
            while queue:
                current = queue.popleft()
                for neighbour, hop in adjacency[current]:
                    if neighbour not in seen:
                        seen.add(neighbour)
                        first_hop[neighbour] = hop if current == start else first_hop[current]
                        queue.append(neighbour)
            added = set(subnets[start])
            for node, hop in first_hop.items():
                for subnet in sorted(subnets[node] - added, key=str):
                    if subnet.version in hop:
                        added.add(subnet)
                        routes.append((start, str(subnet), hop[subnet.version]))
        return routes

    @contextlib.contextmanager
    def build(self) -> Iterator[Network]:
        """Make the topology; everything is removed when the block ends, even on error."""
        _remove_stale_namespaces()
        net = Network(self, f"sp-{os.getpid()}-{next(_counter)}")
        try:
            net._build()
            yield net
        finally:
            net.close()


# ---- running ----------------------------------------------------------------------------


def _has_link_local(ip_addr_output: str) -> bool:
    """Whether every interface but lo in ``ip -6 -o addr`` output has an fe80:: address."""
    interfaces: dict[str, bool] = {}
    for line in ip_addr_output.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1] == "lo":
            continue
        interfaces[fields[1]] = interfaces.get(fields[1], False) or fields[3].startswith("fe80:")
    return all(interfaces.values())


def _check(argv: Sequence[str], *, timeout: float = 30.0) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise TopologyError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _remove_stale_namespaces() -> None:
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        found = _PREFIX_RE.match(entry.name)
        if not found:
            continue
        pid = int(found.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        subprocess.run(["ip", "netns", "del", entry.name], capture_output=True)
        shutil.rmtree(NETNS_ETC / entry.name, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_LISTENER = r"""
import selectors, socket, sys
address, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
family = socket.AF_INET6 if ":" in address else socket.AF_INET
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(1024)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        try:
            conn, _ = key.fileobj.accept()
        except OSError:
            continue
        conn.close()
"""


class Network:
    """A built topology: run commands and processes in its nodes, change its rules."""

    def __init__(self, topology: Topology, prefix: str) -> None:
        self.topology = topology
        self.prefix = prefix
        self._created: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))

    # names and addresses
    def ns(self, node: str) -> str:
        """The namespace name of ``node`` (for ``ip netns exec``)."""
        if node not in self.topology._nodes:
            raise KeyError(f"no node {node!r} in this topology")
        return f"{self.prefix}-{node}"

    def addresses(self, node: str, version: int | None = None) -> list[str]:
        return [
            str(iface.ip)
            for _, iface in self.topology._nodes[node].interfaces
            if version is None or iface.version == version
        ]

    def address(self, node: str, version: int = 4) -> str:
        """The first address of ``node`` of that IP version."""
        found = self.addresses(node, version)
        if not found:
            raise KeyError(f"{node} has no IPv{version} address")
        return found[0]

    # commands
    def argv(self, node: str, argv: Sequence[str], *, user: str | None = None) -> list[str]:
        """The command line that runs ``argv`` inside ``node`` (as ``user`` if given)."""
        inner = list(argv) if user is None else self._unprivileged(argv, user)
        return ["ip", "netns", "exec", self.ns(node), *inner]

    def run(
        self,
        node: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        user: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(node, argv, user=user),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and proc.returncode != 0:
            raise TopologyError(
                f"[{node}] {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def spawn(
        self, node: str, argv: Sequence[str], *, user: str | None = None, **popen: Any
    ) -> subprocess.Popen[Any]:
        """Start a background process in ``node``; it is stopped at teardown at the latest."""
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            self.argv(node, argv, user=user), start_new_session=True, **popen
        )
        self._processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=3)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if proc in self._processes:
            self._processes.remove(proc)

    def call(self, node: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in this process, in a thread that has entered ``node``'s namespace.

        Sockets that ``fn`` opens belong to the node. Threads ``fn`` starts do not inherit the
        namespace, so name lookups done in a thread pool happen outside it.
        """
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(NETNS_DIR / self.ns(node), os.O_RDONLY)
                try:
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns into {self.ns(node)}: {os.strerror(err)}")
                finally:
                    os.close(fd)
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"netns-{node}")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    # servers
    @contextlib.contextmanager
    def listen(self, node: str, address: str, ports: Sequence[int]) -> Iterator[None]:
        """TCP listeners on ``address`` at ``ports`` that accept and close; ready on entry."""
        proc = self.spawn(
            node,
            [sys.executable, "-c", _LISTENER, address, *map(str, ports)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the listener says "ready" only after listen()
            if line.strip() != "ready":
                proc.wait(timeout=5)
                assert proc.stderr is not None
                raise TopologyError(f"listener on {node} failed: {proc.stderr.read().strip()}")
            yield
        finally:
            self.stop(proc)

    def wait_for_socket(
        self, node: str, port: int, *, proto: Literal["tcp", "udp"] = "tcp", timeout: float = 10
    ) -> None:
        """Return once something in ``node`` has a socket bound (UDP) or listening (TCP) on port."""
        flag = "-Hltn" if proto == "tcp" else "-Huan"
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(node, ["ss", flag, f"sport = :{port}"]).stdout
            if out.strip():
                return
            if time.monotonic() > deadline:
                raise TopologyError(f"nothing on {proto} port {port} in {node} after {timeout}s")
            time.sleep(0.02)

    # rules and settings
    def iptables(self, node: str, rule: Rule, operation: str = "-A") -> None:
        self.run(node, rule.argv(operation))

    @contextlib.contextmanager
    def rule(self, node: str, rule: Rule) -> Iterator[None]:
        """Add ``rule`` first in its chain for the duration of the block."""
        self.iptables(node, rule, "-I")
        try:
            yield
        finally:
            self.iptables(node, rule, "-D")

    def sysctl(self, node: str, key: str, value: str) -> None:
        self.run(node, ["sysctl", "-q", "-w", f"{key}={value}"])

    # lifecycle
    def _build(self) -> None:
        topo = self.topology
        for name, node in topo._nodes.items():
            ns = self.ns(name)
            _check(["ip", "netns", "add", ns])
            self._created.append(ns)
            _check(["ip", "-n", ns, "link", "set", "lo", "up"])
            settings = []
            if not topo.icmp_rate_limit:
                # Routers answer every probe: two tools tracing the same path back to back
                # must not find the second one's time-exceeded errors rate-limited away.
                settings += [("net.ipv4.icmp_ratemask", "0"), ("net.ipv6.icmp.ratemask", "")]
            # No duplicate address detection: interfaces made after this (the veths) take
            # "default", and their link-local addresses must work at once, not after DAD.
            settings += [
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
            ]
            if node.kind == "router":
                settings += [
                    ("net.ipv4.ip_forward", "1"),
                    ("net.ipv6.conf.all.forwarding", "1"),
                ]
            for key, value in settings:
                self.sysctl(name, key, value)
            if node.nameservers or node.hosts:
                self._write_etc(name, node)
        counters: dict[str, int] = {n: 0 for n in topo._nodes}
        for link in topo._links:
            a_if, b_if = f"eth{counters[link.a]}", f"eth{counters[link.b]}"
            counters[link.a] += 1
            counters[link.b] += 1
            veth = ["ip", "link", "add", a_if, "netns", self.ns(link.a), "type", "veth"]
            _check([*veth, "peer", "name", b_if, "netns", self.ns(link.b)])
            for node_name, ifname, addresses in (
                (link.a, a_if, link.a_addresses),
                (link.b, b_if, link.b_addresses),
            ):
                ns = self.ns(node_name)
                for address in addresses:
                    extra = ["nodad"] if address.version == 6 else []
                    _check(["ip", "-n", ns, "addr", "add", str(address), "dev", ifname, *extra])
                _check(["ip", "-n", ns, "link", "set", ifname, "up"])
        self._wait_for_links(list(topo._nodes))
        routes = topo.computed_routes() if topo.auto_routes else []
        for node_name, destination, via in [*routes, *topo._routes]:
            _check(["ip", "-n", self.ns(node_name), "route", "add", destination, "via", via])
        for node_name, key, value in topo._sysctls:
            self.sysctl(node_name, key, value)
        for node_name, rule in topo._rules:
            self.iptables(node_name, rule)
        for dns in topo._dns:
            self._start_dns(dns)

    def _wait_for_links(self, names: list[str], timeout: float = 10.0) -> None:
        """Wait until every veth has carrier and no IPv6 address is still tentative.

        The kernel reports a veth's carrier through linkwatch, up to a second after both ends
        are up; until then the link drops what is sent and has no IPv6 link-local address,
        so the first probes of a test would vanish.
        """
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            pending = [
                name
                for name in pending
                if "NO-CARRIER" in _check(["ip", "-n", self.ns(name), "-o", "link", "show"])
                or _check(["ip", "-n", self.ns(name), "-6", "-o", "addr", "show", "tentative"])
                or not _has_link_local(_check(["ip", "-n", self.ns(name), "-6", "-o", "addr"]))
            ]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"links in {', '.join(pending)} did not come up in {timeout}s")
            if pending:
                time.sleep(0.05)

    def _write_etc(self, name: str, node: _Node) -> None:
        # `ip netns exec` bind-mounts /etc/netns/NS/* over /etc/* for the command it runs.
        etc = NETNS_ETC / self.ns(name)
        etc.mkdir(parents=True, exist_ok=True)
        if node.nameservers:
            text = "".join(f"nameserver {ns}\n" for ns in node.nameservers)
            (etc / "resolv.conf").write_text(text + "options timeout:1 attempts:1\n")
        if node.hosts or node.nameservers:
            lines = ["127.0.0.1 localhost", "::1 localhost"]
            lines += [f"{address} {hostname}" for hostname, address in node.hosts.items()]
            (etc / "hosts").write_text("\n".join(lines) + "\n")

    def _start_dns(self, dns: _Dns) -> None:
        argv = [
            "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
            "--pid-file=", "--port=53", f"--listen-address={dns.listen}", "--bind-interfaces",
            "--user=root", "--log-facility=-",
        ]  # fmt: skip
        for name, addresses in dns.records.items():
            argv.append(f"--host-record={name},{','.join(addresses)}")
        for alias, target in dns.cnames.items():
            argv.append(f"--cname={alias},{target}")
        argv += dns.extra_args
        log = (self._tmp / f"dnsmasq-{dns.node}.log").open("w")
        proc = self.spawn(dns.node, argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self.wait_for_socket(dns.node, 53, proto="udp")
        except TopologyError:
            proc.poll()
            raise TopologyError(
                f"dnsmasq on {dns.node} did not start (exit {proc.returncode}): "
                + (self._tmp / f"dnsmasq-{dns.node}.log").read_text()
            ) from None

    def close(self) -> None:
        for proc in list(self._processes):
            with contextlib.suppress(Exception):
                self.stop(proc)
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        self._created.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # unprivileged execution
    def _unprivileged(self, argv: Sequence[str], user: str) -> list[str]:
        needed = {
            os.path.realpath(sys.executable),
            sys.base_prefix,
            sys.prefix,
            str(Path(__file__).resolve().parents[2]),
        }
        needed |= {p for p in sys.path if p and os.path.isdir(p)}
        blocked: dict[str, set[str]] = {}
        for path in needed:
            top = _first_closed_ancestor(path)
            if top is not None:
                below = Path(path).relative_to(top).parts
                if below:
                    blocked.setdefault(top, set()).add(below[0])
        script = ["set -e"]
        stash_root = self._tmp / "expose"
        for index, (top, children) in enumerate(sorted(blocked.items())):
            stash = stash_root / str(index)
            stash.mkdir(parents=True, exist_ok=True)
            script.append(f"mount --bind {_q(top)} {_q(str(stash))}")
            script.append(f"mount -t tmpfs -o mode=0755,size=1m servepath-expose {_q(top)}")
            for child in sorted(children):
                source, target = f"{stash}/{child}", f"{top}/{child}"
                make = "mkdir" if os.path.isdir(os.path.join(top, child)) else "touch"
                script.append(f"{make} {_q(target)}")
                script.append(f"mount --bind {_q(source)} {_q(target)}")
        script.append(
            f"exec setpriv --reuid={_q(user)} --regid={_q(_group_of(user))} --clear-groups "
            '--inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"'
        )
        if not blocked:
            return ["sh", "-c", "\n".join(script), "sh", *argv]
        return [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", "\n".join(script), "sh", *argv,
        ]  # fmt: skip


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _group_of(user: str) -> str:
    import grp
    import pwd

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def _first_closed_ancestor(path: str) -> str | None:
    """The outermost directory on the way to ``path`` that other users cannot enter."""
    current = Path("/")
    for part in Path(path).parts[1:]:
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return str(current)
        current = current / part
    return None
