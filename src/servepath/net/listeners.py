"""Who listens on which local port, bound to which address, and whether others can reach it.

Like ``ss -ltnup`` joined with ``ps aux``: the listening TCP sockets and bound UDP sockets
(psutil), each with its process. A service bound to loopback only is unreachable from other
machines and from outside its container; container port-forwarders (docker-proxy and friends)
are recognised, and the host-port-to-container-port mappings are read from docker-proxy's
arguments and from the NAT table (``iptables-save -t nat``). Parsing and judging are pure
functions; the driver only reads psutil and runs iptables-save.

``servepath listen`` prints it, the doctor reads it, and the server asks it who holds a port
it cannot bind: a primitive, not a probe of the path.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

from servepath.net import endpoints
from servepath.net.addresses import AddressKind, classify_address

__all__ = [
    "ListenReport",
    "Listener",
    "PortListenReport",
    "PortMapping",
    "ProcessInfo",
    "SocketInfo",
    "build_listeners",
    "docker_proxy_mapping",
    "forwarder_kind",
    "inspect_port",
    "kubectl_port_forward_mappings",
    "list_listeners",
    "listing_warnings",
    "loopback_warnings",
    "parse_iptables_nat",
    "port_report",
    "read_nat_rules",
]

log = logging.getLogger(__name__)

TransportName = Literal["tcp", "udp"]
MappingSource = Literal["docker-proxy", "iptables", "kubectl"]

# Processes that listen on a host port on behalf of a container (or a cluster service),
# by the name the kernel knows them by (15 characters at most, hence the prefixes).
_FORWARDERS: tuple[tuple[str, str], ...] = (
    ("docker-proxy", "docker-proxy"),
    ("rootlessport", "rootlessport"),
    ("rootlesskit", "rootlesskit"),
    ("slirp4netns", "slirp4netns"),
    ("pasta", "pasta"),
    ("passt", "passt"),
    ("gvproxy", "gvproxy"),
    ("vpnkit", "vpnkit"),
    ("com.docker.back", "docker-desktop"),
    ("kube-proxy", "kube-proxy"),
    ("containerd-shim", "containerd-shim"),
    ("conmon", "conmon"),
)


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SocketInfo:
    """One listening (TCP) or bound, unconnected (UDP) socket, as the kernel lists it."""

    protocol: TransportName
    address: str
    port: int
    pid: int | None


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str | None
    user: str | None
    cmdline: tuple[str, ...]


@dataclass(frozen=True)
class PortMapping:
    """Traffic to ``host_ip:host_port`` goes to ``target_ip:target_port``."""

    source: MappingSource
    protocol: TransportName
    host_port: int
    target_port: int
    host_ip: str | None = None  # None: any local address
    target_ip: str | None = None  # None: this machine (REDIRECT, or a forwarder's own peer)
    host_port_end: int | None = None  # a range: host_port..host_port_end
    chain: str | None = None
    interface: str | None = None  # "!docker0" when the rule excludes an interface

    def covers(self, port: int) -> bool:
        return self.host_port <= port <= (self.host_port_end or self.host_port)

    def describe(self) -> str:
        ports = f"{self.host_port}-{self.host_port_end}" if self.host_port_end else self.host_port
        host = endpoints.host_port(self.host_ip or "*", ports)
        target = endpoints.host_port(self.target_ip or "this host", self.target_port)
        return f"{self.protocol} {host} → {target} ({self.source})"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "protocol": self.protocol,
            "host_ip": self.host_ip,
            "host_port": self.host_port,
            "host_port_end": self.host_port_end,
            "target_ip": self.target_ip,
            "target_port": self.target_port,
            "chain": self.chain,
            "interface": self.interface,
        }


@dataclass(frozen=True)
class Listener:
    protocol: TransportName
    address: str
    port: int
    address_kind: AddressKind
    pid: int | None = None
    user: str | None = None
    process: str | None = None
    cmdline: tuple[str, ...] = ()
    forwarder: str | None = None  # a container port-forwarder: docker-proxy, rootlessport, ...

    @property
    def loopback(self) -> bool:
        return self.address_kind == "loopback"

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "address": self.address,
            "port": self.port,
            "address_kind": self.address_kind,
            "pid": self.pid,
            "user": self.user,
            "process": self.process,
            "cmdline": list(self.cmdline),
            "forwarder": self.forwarder,
        }


@dataclass(frozen=True)
class PortListenReport:
    """Everything about one port: who listens, where, whether outsiders can reach it."""

    port: int
    listeners: tuple[Listener, ...]
    mappings: tuple[PortMapping, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def listening(self) -> bool:
        return bool(self.listeners)

    @property
    def loopback_only(self) -> bool:
        return bool(self.listeners) and all(x.loopback for x in self.listeners)

    @property
    def reachable(self) -> bool:
        """Something listens on an address other hosts (or containers) can connect to."""
        return any(not x.loopback for x in self.listeners)

    @property
    def bind_addresses(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(x.address for x in self.listeners))

    @property
    def forwarder(self) -> str | None:
        return next((x.forwarder for x in self.listeners if x.forwarder), None)

    @property
    def processes(self) -> tuple[str, ...]:
        seen = {f"{x.process or '?'} (pid {x.pid})" for x in self.listeners if x.pid}
        return tuple(sorted(seen))

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "listening": self.listening,
            "reachable": self.reachable,
            "loopback_only": self.loopback_only,
            "bind_addresses": list(self.bind_addresses),
            "forwarder": self.forwarder,
            "processes": list(self.processes),
            "listeners": [x.to_json() for x in self.listeners],
            "mappings": [m.to_json() for m in self.mappings],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ListenReport:
    listeners: tuple[Listener, ...]
    mappings: tuple[PortMapping, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "listeners": [x.to_json() for x in self.listeners],
            "mappings": [m.to_json() for m in self.mappings],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


# --- pure: processes, forwarders, NAT rules ---------------------------------------------------


def forwarder_kind(name: str | None, cmdline: Sequence[str]) -> str | None:
    """Which container or cluster port-forwarder a process is, if it is one."""
    base = os.path.basename(cmdline[0]) if cmdline else ""
    for candidate in (name or "", base):
        for prefix, kind in _FORWARDERS:
            if candidate.startswith(prefix):
                return kind
    if (base == "kubectl" or name == "kubectl") and "port-forward" in cmdline:
        return "kubectl port-forward"
    return None


def _flags(cmdline: Sequence[str]) -> dict[str, str]:
    """``-name value`` and ``--name=value`` pairs (Go's flag package accepts both)."""
    flags: dict[str, str] = {}
    args = list(cmdline[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and len(arg) > 1:
            key, sep, value = arg.lstrip("-").partition("=")
            if sep:
                flags[key] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                flags[key] = args[i + 1]
                i += 1
            else:
                flags[key] = "true"
        i += 1
    return flags


def docker_proxy_mapping(cmdline: Sequence[str]) -> PortMapping | None:
    """The mapping a docker-proxy process forwards (``-host-port 8080 -container-port 80``)."""
    flags = _flags(cmdline)
    try:
        host_port = int(flags["host-port"])
        target_port = int(flags["container-port"])
    except (KeyError, ValueError):
        return None
    proto = flags.get("proto", "tcp")
    host_ip = flags.get("host-ip")
    return PortMapping(
        source="docker-proxy",
        protocol="udp" if proto.startswith("udp") else "tcp",
        host_port=host_port,
        target_port=target_port,
        host_ip=None if host_ip in (None, "0.0.0.0", "::") else host_ip,
        target_ip=flags.get("container-ip"),
    )


def kubectl_port_forward_mappings(cmdline: Sequence[str]) -> tuple[PortMapping, ...]:
    """``kubectl port-forward svc/api 8080:80 9090`` forwards local 8080 to the pod's 80."""
    if "port-forward" not in cmdline:
        return ()
    after = cmdline[cmdline.index("port-forward") + 1 :]
    flags = _flags(["kubectl", *after])
    address = flags.get("address", "127.0.0.1").split(",")[0]
    target = next((a for a in after if not a.startswith("-") and "/" in a), None)
    found: list[PortMapping] = []
    for arg in after:
        local, sep, remote = arg.partition(":")
        local = local or remote
        if not (local.isdigit() and (not sep or remote.isdigit())):
            continue
        found.append(
            PortMapping(
                source="kubectl",
                protocol="tcp",
                host_port=int(local),
                target_port=int(remote or local),
                host_ip=None if address in ("0.0.0.0", "::") else address,
                target_ip=target,
            )
        )
    return tuple(found)


def _split_destination(text: str) -> tuple[str | None, int | None, int | None]:
    """``172.17.0.2:80``, ``172.17.0.2``, ``[fd00::2]:80``, ``10.0.0.5:8000-8010``."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        ports = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, ports = text.partition(":")
    else:
        host, ports = text, ""
    host = host.split("-", 1)[0]  # an address range: the first one
    if not ports:
        return host or None, None, None
    low, _, high = ports.partition("-")
    return host or None, int(low), int(high) if high else None


def _port_range(text: str) -> tuple[int, int | None]:
    low, _, high = text.replace("-", ":").partition(":")
    return int(low), int(high) if high else None


def parse_iptables_nat(text: str) -> tuple[PortMapping, ...]:
    """Port mappings in ``iptables-save -t nat`` output: DNAT and REDIRECT rules that match a
    destination port. Rules without a port match (Kubernetes' per-endpoint chains) are left
    out, since they do not say which port they serve."""
    mappings: list[PortMapping] = []
    table = "nat"
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        if table != "nat" or not line.startswith("-A "):
            continue
        try:
            tokens = shlex.split(line)
        except ValueError:
            continue
        chain = tokens[1]
        proto: str | None = None
        dport: tuple[int, int | None] | None = None
        dest: str | None = None
        interface: str | None = None
        target: str | None = None
        to_destination: str | None = None
        to_ports: str | None = None
        negate = False
        i = 2
        while i < len(tokens):
            tok = tokens[i]
            value = tokens[i + 1] if i + 1 < len(tokens) else ""
            if tok == "!":
                negate = True
                i += 1
                continue
            if tok == "-p":
                proto = None if negate else value
            elif tok == "--dport" and not negate:
                try:
                    dport = _port_range(value)
                except ValueError:
                    dport = None
            elif tok == "-d" and not negate:
                dest = value.split("/", 1)[0]
            elif tok == "-i":
                interface = f"!{value}" if negate else value
            elif tok == "-j":
                target = value
            elif tok == "--to-destination" and to_destination is None:
                to_destination = value
            elif tok == "--to-ports":
                to_ports = value
            else:
                negate = False
                i += 1
                continue
            negate = False
            i += 2
        if dport is None or proto not in ("tcp", "udp"):
            continue
        low, high = dport
        if target == "DNAT" and to_destination:
            try:
                to_ip, to_low, _ = _split_destination(to_destination)
            except ValueError:
                continue
            target_ip, target_port = to_ip, to_low if to_low is not None else low
        elif target == "REDIRECT":
            target_ip = None
            try:
                target_port = _port_range(to_ports)[0] if to_ports else low
            except ValueError:
                continue
        else:
            continue
        mappings.append(
            PortMapping(
                source="iptables",
                protocol="tcp" if proto == "tcp" else "udp",
                host_port=low,
                host_port_end=high,
                target_port=target_port,
                host_ip=dest,
                target_ip=target_ip,
                chain=chain,
                interface=interface,
            )
        )
    return tuple(dict.fromkeys(mappings))  # PREROUTING and OUTPUT often repeat a mapping


def _normal_address(address: str) -> str:
    # psutil reports IPv4 sockets of dual-stack listeners as ::ffff:a.b.c.d at times.
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return address


def build_listeners(
    sockets: Iterable[SocketInfo], processes: dict[int, ProcessInfo]
) -> tuple[Listener, ...]:
    """Join sockets with their processes, sorted by port, protocol and address."""
    found: list[Listener] = []
    for s in sockets:
        info = processes.get(s.pid) if s.pid is not None else None
        address = _normal_address(s.address)
        found.append(
            Listener(
                protocol=s.protocol,
                address=address,
                port=s.port,
                address_kind=classify_address(address).kind,
                pid=s.pid,
                user=info.user if info else None,
                process=info.name if info else None,
                cmdline=info.cmdline if info else (),
                forwarder=forwarder_kind(info.name, info.cmdline) if info else None,
            )
        )
    unique = dict.fromkeys(found)
    return tuple(sorted(unique, key=lambda x: (x.port, x.protocol, x.address, x.pid or 0)))


def forwarder_mappings(listeners: Iterable[Listener]) -> tuple[PortMapping, ...]:
    """The mappings the forwarder processes among ``listeners`` state in their arguments."""
    found: list[PortMapping] = []
    for x in listeners:
        if x.forwarder == "docker-proxy":
            mapping = docker_proxy_mapping(x.cmdline)
            if mapping:
                found.append(mapping)
        elif x.forwarder == "kubectl port-forward":
            found.extend(kubectl_port_forward_mappings(x.cmdline))
    return tuple(dict.fromkeys(found))


def _who(listeners: Sequence[Listener]) -> str:
    names = sorted({f"{x.process or 'unknown process'}, pid {x.pid}" for x in listeners if x.pid})
    return f" ({'; '.join(names)})" if names else ""


def loopback_warnings(listeners: Sequence[Listener]) -> tuple[str, ...]:
    """One warning per port whose every socket is bound to a loopback address."""
    groups: dict[tuple[TransportName, int], list[Listener]] = {}
    for x in listeners:
        groups.setdefault((x.protocol, x.port), []).append(x)
    warnings = []
    for (proto, port), group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if all(x.loopback for x in group):
            where = ", ".join(dict.fromkeys(x.address for x in group))
            warnings.append(
                f"{port}/{proto}{_who(group)} listens on {where} only: unreachable from other "
                "machines and containers (bind 0.0.0.0 or :: to accept them)"
            )
    return tuple(warnings)


def is_servepath(listener: Listener) -> bool:
    """Whether a servepath process holds the socket (``servepath serve``, ``python -m
    servepath``, a container's entry point)."""
    return any(os.path.basename(arg) == "servepath" for arg in listener.cmdline[:4])


def listing_warnings(listeners: Sequence[Listener]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The warnings and notes of a listing of every port: a loopback-only servepath is
    warned of; the machine's other loopback-only services (a database, a desktop's daemons,
    usually meant so) are counted in one note, each row showing its reach."""
    warnings = loopback_warnings([x for x in listeners if is_servepath(x)])
    others = loopback_warnings([x for x in listeners if not is_servepath(x)])
    if not others:
        return warnings, ()
    count = "1 other port listens" if len(others) == 1 else f"{len(others)} other ports listen"
    note = f"{count} on loopback only (reach: loopback); to check one: servepath listen PORT"
    return warnings, (note,)


def port_report(
    port: int,
    listeners: Sequence[Listener],
    mappings: Sequence[PortMapping] = (),
    notes: Sequence[str] = (),
) -> PortListenReport:
    """What is known about ``port``: its listeners, and the mappings into or out of it."""
    mine = tuple(x for x in listeners if x.port == port)
    related = tuple(m for m in mappings if m.covers(port) or m.target_port == port)
    warnings = list(loopback_warnings(mine))
    if not mine:
        warnings.append(f"nothing listens on port {port}")
    loopback_only = bool(mine) and all(x.loopback for x in mine)
    for m in related:
        if m.target_port == port and m.target_ip is None and loopback_only:
            warnings.append(
                f"{m.describe()} redirects here, but port {port} listens on loopback only: "
                "redirected connections arrive on the interface address and are refused"
            )
        if m.covers(port) and m.target_port != port and not mine:
            warnings.append(f"port {port} is forwarded elsewhere: {m.describe()}")
    return PortListenReport(port, mine, related, tuple(dict.fromkeys(warnings)), tuple(notes))


# --- the driver ------------------------------------------------------------------------------


def _sockets(udp: bool) -> list[SocketInfo]:
    found: list[SocketInfo] = []
    for conn in psutil.net_connections(kind="inet"):
        if not conn.laddr:
            continue
        if conn.type == socket.SOCK_STREAM:
            if conn.status != psutil.CONN_LISTEN:
                continue
            proto: TransportName = "tcp"
        elif conn.type == socket.SOCK_DGRAM and udp:
            if conn.raddr:  # a connected UDP socket is a client, not a service
                continue
            proto = "udp"
        else:
            continue
        found.append(SocketInfo(proto, conn.laddr.ip, conn.laddr.port, conn.pid))
    return found


def _process(pid: int) -> ProcessInfo | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = proc.name()
            try:
                user: str | None = proc.username()
            except (psutil.AccessDenied, KeyError):
                user = None
            try:
                cmdline = tuple(proc.cmdline())
            except psutil.AccessDenied:
                cmdline = ()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return ProcessInfo(pid, None, None, ())
    return ProcessInfo(pid, name, user, cmdline)


def read_nat_rules(timeout: float = 5.0) -> tuple[str, tuple[str, ...]]:
    """The NAT tables as ``iptables-save`` (and ``ip6tables-save``) print them, and notes on
    what could not be read."""
    texts: list[str] = []
    notes: list[str] = []
    for tool in ("iptables-save", "ip6tables-save"):
        path = shutil.which(tool) or next(
            (p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.path.exists(p)), None
        )
        if path is None:
            notes.append(f"{tool} is not installed: NAT port mappings not read")
            continue
        try:
            proc = subprocess.run(
                [path, "-t", "nat"], capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{tool} failed: {exc}")
            continue
        if proc.returncode != 0:
            reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
            if os.geteuid() != 0:
                reason = "needs root"
            notes.append(f"{tool} -t nat: {reason}; NAT port mappings not read")
            continue
        texts.append(proc.stdout)
    return "\n".join(texts), tuple(notes)


def _owner_notes(listeners: Sequence[Listener]) -> list[str]:
    if not any(x.pid is None for x in listeners):
        return []
    if os.geteuid() != 0:
        return ["some sockets belong to other users: run as root to see their processes"]
    return [
        "some sockets belong to processes outside this PID namespace (the host, or a container "
        "runtime): their process is not visible from here"
    ]


def _collect(
    udp: bool, nat: bool
) -> tuple[tuple[Listener, ...], tuple[PortMapping, ...], list[str]]:
    sockets = _sockets(udp)
    processes: dict[int, ProcessInfo] = {}
    for pid in {s.pid for s in sockets if s.pid is not None}:
        info = _process(pid)
        if info is not None:
            processes[pid] = info
    listeners = build_listeners(sockets, processes)
    mappings = list(forwarder_mappings(listeners))
    notes: list[str] = []
    if nat:
        text, nat_notes = read_nat_rules()
        mappings += parse_iptables_nat(text)
        notes += nat_notes
    return listeners, tuple(dict.fromkeys(mappings)), notes


def list_listeners(*, udp: bool = True, nat: bool = True) -> ListenReport:
    """Every listening socket on this machine (in this network namespace) with its process."""
    listeners, mappings, notes = _collect(udp, nat)
    warnings, quiet = listing_warnings(listeners)
    notes = _owner_notes(listeners) + notes + list(quiet)
    return ListenReport(listeners, mappings, warnings, tuple(notes))


def inspect_port(port: int, *, udp: bool = True, nat: bool = True) -> PortListenReport:
    """Who listens on ``port``, on which addresses, whether only on loopback, through which
    container forwarder, and the port mappings into it."""
    listeners, mappings, notes = _collect(udp, nat)
    notes = _owner_notes([x for x in listeners if x.port == port]) + notes
    return port_report(port, listeners, mappings, notes)
