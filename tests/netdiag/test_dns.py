"""`servepath dns`: outcomes, agreement between resolvers, and agreement with `dig`.

Real nameservers on loopback: dnsmasq instances serving a test zone, a small dnspython server
that answers SERVFAIL, and a UDP socket that never answers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.errors import ResolverSpecError, UsageError
from servepath.netdiag.dns import (
    Nameserver,
    ResolverAnswer,
    agreement,
    answer_from_addrinfo,
    answer_from_response,
    parse_nameserver,
    probe_dns,
    query_nameserver,
)
from tests.support import need_binary, need_root

pytestmark = pytest.mark.timeout(60)

ZONE_A = [
    "--host-record=svc.test,10.1.2.3",
    "--host-record=svc.test,10.1.2.4",
    "--host-record=v6.svc.test,fd00::53",
    "--cname=www.svc.test,svc.test",
    "--txt-record=svc.test,hello world",
    "--mx-host=svc.test,mail.svc.test,10",
    "--local-ttl=300",
]
ZONE_B = ["--host-record=svc.test,10.9.9.9", "--cname=www.svc.test,svc.test", "--local-ttl=60"]


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((address, 0))
        port = int(udp.getsockname()[1])
    with socket.socket() as tcp:  # dnsmasq binds TCP on the same port
        tcp.bind((address, port))
    return port


def _wait_answering(server: Nameserver, proc: subprocess.Popen[bytes], log: Path) -> None:
    query = dns.message.make_query("svc.test", "A")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {log.read_text()}")
        with contextlib.suppress(Exception):
            dns.query.udp(query, server.address, timeout=0.2, port=server.port)
            return
        time.sleep(0.05)
    raise RuntimeError(f"dnsmasq did not answer: {log.read_text()}")


StartDnsmasq = Callable[[str, list[str]], Nameserver]


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[StartDnsmasq]:
    """Start dnsmasq instances on loopback addresses; all are stopped when the test ends."""
    binary = need_binary("dnsmasq")
    procs: list[subprocess.Popen[bytes]] = []

    def start(address: str, zone: list[str]) -> Nameserver:
        port = _free_udp_port(address)
        log = tmp_path / f"dnsmasq-{address}-{port}.log"
        argv = [
            binary, "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
            "--pid-file=", f"--listen-address={address}", f"--port={port}", "--bind-interfaces",
            "--local=/test/", "--log-facility=-", *zone,
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        server = Nameserver(address, port)
        _wait_answering(server, proc, log)
        return server

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def rcode_server(rcode: dns.rcode.Rcode) -> Iterator[Nameserver]:
    """A nameserver that answers every query with ``rcode`` (a real UDP server, in a thread)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            response.set_rcode(rcode)
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Nameserver("127.0.0.1", sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        sock.close()


@contextlib.contextmanager
def silent_server() -> Iterator[Nameserver]:
    """A bound UDP port that reads nothing and answers nothing: the resolver is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield Nameserver("127.0.0.1", sock.getsockname()[1])


def dig_short(server: Nameserver, name: str, rrtype: str) -> list[str]:
    dig = need_binary("dig")
    argv = [dig, "+short", "+time=2", "+tries=1", f"@{server.address}", "-p", str(server.port)]
    proc = subprocess.run([*argv, name, rrtype], capture_output=True, text=True, timeout=10)
    return [line for line in proc.stdout.splitlines() if line]


def dig_status_and_ttl(server: Nameserver, name: str, rrtype: str) -> tuple[str, list[int]]:
    dig = need_binary("dig")
    argv = [dig, "+noall", "+comments", "+answer", f"@{server.address}", "-p", str(server.port)]
    out = subprocess.run([*argv, name, rrtype], capture_output=True, text=True, timeout=10).stdout
    status = out.split("status: ", 1)[1].split(",", 1)[0]
    ttls = [
        int(line.split()[1])
        for line in out.splitlines()
        if line and not line.startswith(";") and line.split()[3] == rrtype
    ]
    return status, ttls


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["dns", *args])
    return result.exit_code, result.output


# --- against real nameservers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rrtype"),
    [
        ("svc.test", "A"),
        ("www.svc.test", "A"),
        ("v6.svc.test", "AAAA"),
        ("svc.test", "MX"),
        ("svc.test", "TXT"),
        ("www.svc.test", "CNAME"),
    ],
)
def test_answers_match_dig_short(dnsmasq: StartDnsmasq, name: str, rrtype: str) -> None:
    server = dnsmasq("127.0.0.2", ZONE_A)
    report = probe_dns(name, rrtype, resolvers=[server], system=False)
    (answer,) = report.answers
    assert answer.outcome == "ok"
    # dig +short prints the CNAME targets it followed, then the answers.
    ours = {f"{n}." for n in answer.cname_chain[1:]} | set(answer.values)
    assert ours == set(dig_short(server, name, rrtype))


def test_ttl_and_cname_chain_are_what_the_server_sent(dnsmasq: StartDnsmasq) -> None:
    server = dnsmasq("127.0.0.2", ZONE_A)
    (answer,) = probe_dns("www.svc.test", resolvers=[server], system=False).answers
    status, ttls = dig_status_and_ttl(server, "www.svc.test", "A")
    assert status == "NOERROR"
    assert answer.ttl == min(ttls) == 300
    assert answer.cname_chain == ("www.svc.test", "svc.test")
    assert [(r.name, r.type) for r in answer.records] == [
        ("www.svc.test", "CNAME"),
        ("svc.test", "A"),
        ("svc.test", "A"),
    ]


@pytest.mark.parametrize(
    ("name", "rrtype", "outcome", "dig_status"),
    [
        ("nope.svc.test", "A", "nxdomain", "NXDOMAIN"),
        ("svc.test", "AAAA", "no_answer", "NOERROR"),
        ("api.example", "A", "refused", "REFUSED"),  # outside its zone, and no upstream
    ],
)
def test_nxdomain_no_answer_and_refused_are_distinct_and_agree_with_dig(
    dnsmasq: StartDnsmasq, name: str, rrtype: str, outcome: str, dig_status: str
) -> None:
    server = dnsmasq("127.0.0.2", ZONE_A)
    (answer,) = probe_dns(name, rrtype, resolvers=[server], system=False).answers
    assert answer.outcome == outcome
    assert answer.values == ()
    status, ttls = dig_status_and_ttl(server, name, rrtype)
    assert (status, ttls) == (dig_status, [])


def test_servfail_is_its_own_outcome() -> None:
    with rcode_server(dns.rcode.SERVFAIL) as server:
        report = probe_dns("svc.test", resolvers=[server], system=False)
    assert report.answers[0].outcome == "servfail"
    assert not report.ok


def test_refused_from_a_server_is_not_confused_with_a_closed_port() -> None:
    with rcode_server(dns.rcode.REFUSED) as server:
        refused = probe_dns("svc.test", resolvers=[server], system=False).answers[0]
    closed = probe_dns("svc.test", resolvers=[server], system=False).answers[0]
    assert refused.outcome == "refused"
    assert closed.outcome == "error"
    assert "port unreachable" in closed.detail


def test_a_resolver_that_never_answers_times_out_after_the_timeout() -> None:
    with silent_server() as server:
        start = time.perf_counter()
        (answer,) = probe_dns("svc.test", resolvers=[server], system=False, timeout=0.3).answers
        elapsed = time.perf_counter() - start
    assert answer.outcome == "timeout"
    assert 0.29 <= elapsed < 1.0
    assert answer.elapsed_ms >= 290


def test_resolvers_are_asked_concurrently(dnsmasq: StartDnsmasq) -> None:
    good = dnsmasq("127.0.0.2", ZONE_A)
    with silent_server() as silent1, silent_server() as silent2:
        start = time.perf_counter()
        report = probe_dns("svc.test", resolvers=[silent1, good, silent2], system=False,
                           timeout=0.5)  # fmt: skip
        elapsed = time.perf_counter() - start
    assert [a.outcome for a in report.answers] == ["timeout", "ok", "timeout"]
    assert elapsed < 0.9  # one timeout, not two


def test_resolvers_that_disagree_are_named_and_exit_1(dnsmasq: StartDnsmasq) -> None:
    a = dnsmasq("127.0.0.2", ZONE_A)
    b = dnsmasq("127.0.0.3", ZONE_B)
    report = probe_dns("www.svc.test", resolvers=[a, b], system=False)
    assert not report.agree
    assert [x.values for x in report.answers] == [("10.1.2.3", "10.1.2.4"), ("10.9.9.9",)]
    assert [x.ttl for x in report.answers] == [300, 60]
    assert a.label in report.verdict and b.label in report.verdict
    code, output = run_cli("www.svc.test", "--no-system", "-r", a.label, "-r", b.label)
    assert code == 1
    assert "resolvers disagree" in output


def test_resolvers_that_agree_exit_0_with_the_documented_json(dnsmasq: StartDnsmasq) -> None:
    a = dnsmasq("127.0.0.2", ZONE_A)
    b = dnsmasq("127.0.0.3", ZONE_A)
    code, output = run_cli("www.svc.test", "--no-system", "-r", a.label, "-r", b.label, "--json")
    assert code == 0
    data = json.loads(output)
    assert data["ok"] and data["agree"]
    assert data["type"] == "A"
    assert [x["resolver"] for x in data["answers"]] == [a.label, b.label]
    first = data["answers"][0]
    assert first["outcome"] == "ok"
    assert first["values"] == ["10.1.2.3", "10.1.2.4"]
    assert first["cname_chain"] == ["www.svc.test", "svc.test"]
    assert first["ttl"] == 300
    assert first["elapsed_ms"] > 0


def test_consistent_nxdomain_is_an_answer_so_exit_0(dnsmasq: StartDnsmasq) -> None:
    a = dnsmasq("127.0.0.2", ZONE_A)
    code, output = run_cli("nope.svc.test", "--no-system", "-r", a.label)
    assert code == 0
    assert "nxdomain" in output


def test_table_shows_each_resolver_and_the_cname_chain(dnsmasq: StartDnsmasq) -> None:
    a = dnsmasq("127.0.0.2", ZONE_A)
    with silent_server() as silent:
        code, output = run_cli(
            "www.svc.test", "--no-system", "-r", a.label, "-r", silent.label, "--timeout", "0.2"
        )
    assert code == 1
    assert "CNAME chain: www.svc.test → svc.test" in output
    assert f"{silent.label}: no answer in 0.2s" in output
    assert "10.1.2.3" in output


def _name_in_etc_hosts() -> str:
    """A loopback name of /etc/hosts other than localhost (answered from the file, so no
    query leaves the machine); localhost itself is never sent to a nameserver."""
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0].startswith("127."):
            for name in fields[1:]:
                if name != "localhost" and not name.endswith(".localhost"):
                    return name
    pytest.skip("/etc/hosts names no loopback host besides localhost")


def test_resolv_conf_nameservers_are_each_asked(tmp_path: Path, dnsmasq: StartDnsmasq) -> None:
    # resolv.conf has no port syntax, so the nameservers listed are asked on port 53; a
    # nameserver that is not running there shows up as its own failing row.
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.9\nnameserver ::1\nsearch svc.test\n")
    report = probe_dns(_name_in_etc_hosts(), resolv_conf=conf, timeout=0.5)
    rows = {(a.resolver, a.source) for a in report.answers}
    assert rows == {
        ("system (getaddrinfo)", "getaddrinfo"),
        ("127.0.0.9", "resolv.conf"),
        ("::1", "resolv.conf"),
    }
    gai = next(a for a in report.answers if a.source == "getaddrinfo")
    assert gai.outcome == "ok" and gai.values[0].startswith("127.")  # from /etc/hosts
    assert report.search == ("svc.test",)
    assert not report.ok


def test_localhost_is_answered_locally_and_never_sent_to_a_nameserver(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.9\n")  # nothing listens there: asking it would fail
    for name in ("localhost", "LOCALHOST.", "api.localhost"):
        report = probe_dns(name, resolv_conf=conf, timeout=0.5)
        assert report.ok and report.agree, report.verdict
        assert {a.source for a in report.answers} <= {"getaddrinfo", "rfc6761"}
        assert report.answers[0].values[0] in ("127.0.0.1", "::1")
        assert "RFC 6761" in report.notes[0]
    aaaa = probe_dns("api.localhost", "AAAA", resolv_conf=conf, timeout=0.5)
    assert aaaa.ok and aaaa.answers[0].values == ("::1",)
    assert aaaa.answers[0].source == "rfc6761"  # a name under .localhost: not even getaddrinfo
    asked = probe_dns("localhost", resolvers=[Nameserver("127.0.0.9")], resolv_conf=conf,
                      timeout=0.5)  # fmt: skip
    assert asked.ok  # a named resolver that fails is shown, and does not count
    assert any(a.resolver == "127.0.0.9" for a in asked.answers)


@pytest.mark.parametrize("literal", ["10.1.2.3", "::1", "fe80::1%lo"])
def test_an_ip_literal_is_not_resolved(literal: str) -> None:
    start = time.perf_counter()
    report = probe_dns(literal, resolvers=[Nameserver("127.0.0.1", 9)], timeout=5)
    assert time.perf_counter() - start < 0.5
    assert report.literal and report.ok and report.answers == ()
    assert "nothing to resolve" in report.verdict
    code, output = run_cli(literal, "--no-system", "-r", "127.0.0.1:9")
    assert code == 0 and "nothing to resolve" in output


@pytest.mark.parametrize(
    "args",
    [["svc.test", "-r", "not-an-ip"], ["svc.test", "-t", "BOGUS", "--no-system", "-r", "::1"]],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    code, _ = run_cli(*args)
    assert code == 2


def test_query_nameserver_falls_back_to_tcp_for_a_truncated_answer(
    dnsmasq: StartDnsmasq,
) -> None:
    many = [f"--host-record=big.test,10.2.{i // 250}.{i % 250 + 1}" for i in range(120)]
    server = dnsmasq("127.0.0.2", many)
    answer = query_nameserver(server, dns.name.from_text("big.test"), dns.rdatatype.A, timeout=2)
    assert answer.outcome == "ok"
    assert len(answer.values) == 120
    assert set(answer.values) == set(dig_short(server, "big.test", "A"))


# --- the system resolver, in a namespace of its own -------------------------------------


@pytest.mark.net
def test_system_resolver_rows_and_etc_hosts_disagreement_unprivileged() -> None:
    """getaddrinfo reads /etc/hosts before DNS: a pinned address shows up as a disagreement."""
    need_binary("dnsmasq")
    from tests.topology.topology import Topology

    need_root()
    for tool in ("ip", "iptables", "ss", "setpriv", "unshare"):
        need_binary(tool)
    topo = Topology()
    topo.host("client", nameservers=["10.77.1.53"], hosts={"pinned.test": "10.77.9.9"})
    topo.link("client", "10.77.1.2/24", "dns", "10.77.1.53/24")
    topo.dns("dns", "10.77.1.53", {"svc.test": "10.77.2.2", "pinned.test": "10.77.2.3"},
             extra_args=["--local=/test/"])  # fmt: skip
    with topo.build() as net:
        argv = [sys.executable, "-m", "servepath", "dns", "--json", "--timeout", "1"]
        agree = net.run("client", [*argv, "svc.test"], check=False, user="nobody")
        pinned = net.run("client", [*argv, "pinned.test"], check=False, user="nobody")
    assert agree.returncode == 0, agree.stderr
    data = json.loads(agree.stdout)
    assert {(a["resolver"], a["outcome"], tuple(a["values"])) for a in data["answers"]} == {
        ("system (getaddrinfo)", "ok", ("10.77.2.2",)),
        ("10.77.1.53", "ok", ("10.77.2.2",)),
    }
    assert pinned.returncode == 1, pinned.stderr
    data = json.loads(pinned.stdout)
    values = {a["source"]: a["values"] for a in data["answers"]}
    assert values == {"getaddrinfo": ["10.77.9.9"], "resolv.conf": ["10.77.2.3"]}
    assert "/etc/hosts" in data["verdict"]


# --- pure: responses to outcomes ---------------------------------------------------------


def _response(rcode: str, answer: str = "", qname: str = "www.svc.test.") -> dns.message.Message:
    return dns.message.from_text(
        f"id 1\nopcode QUERY\nrcode {rcode}\nflags QR RD RA\n"
        f";QUESTION\n{qname} IN A\n;ANSWER\n{answer}\n"
    )


def _answer(response: dns.message.Message, rdtype: str = "A") -> ResolverAnswer:
    qname = response.question[0].name
    return answer_from_response("r", "named", response, qname, dns.rdatatype.from_text(rdtype), 1.0)


def test_a_chain_of_cnames_is_followed_to_the_addresses() -> None:
    response = _response(
        "NOERROR",
        "www.svc.test. 30 IN CNAME edge.cdn.test.\n"
        "edge.cdn.test. 20 IN CNAME pop1.cdn.test.\n"
        "pop1.cdn.test. 10 IN A 10.0.0.2\n"
        "pop1.cdn.test. 10 IN A 10.0.0.1\n",
    )
    answer = _answer(response)
    assert answer.outcome == "ok"
    assert answer.cname_chain == ("www.svc.test", "edge.cdn.test", "pop1.cdn.test")
    assert answer.values == ("10.0.0.1", "10.0.0.2")
    assert answer.ttl == 10


def test_nxdomain_at_the_end_of_a_cname_chain_names_the_missing_target() -> None:
    response = _response("NXDOMAIN", "www.svc.test. 30 IN CNAME gone.cdn.test.\n")
    answer = _answer(response)
    assert answer.outcome == "nxdomain"
    assert answer.cname_chain == ("www.svc.test", "gone.cdn.test")
    assert "gone.cdn.test" in answer.detail


def test_a_cname_without_the_asked_type_at_its_end_is_no_answer() -> None:
    answer = _answer(_response("NOERROR", "www.svc.test. 30 IN CNAME svc.test.\n"), "A")
    assert answer.outcome == "no_answer"
    assert answer.cname_chain == ("www.svc.test", "svc.test")


def test_a_cname_loop_ends_without_an_answer() -> None:
    response = _response(
        "NOERROR", "www.svc.test. 30 IN CNAME b.test.\nb.test. 30 IN CNAME www.svc.test.\n"
    )
    assert _answer(response).outcome == "no_answer"


def test_records_for_other_names_are_not_taken_as_the_answer() -> None:
    answer = _answer(_response("NOERROR", "other.test. 30 IN A 10.0.0.9\n"))
    assert answer.outcome == "no_answer"
    assert answer.values == ()


@pytest.mark.parametrize(
    ("rcode", "outcome"),
    [("SERVFAIL", "servfail"), ("REFUSED", "refused"), ("FORMERR", "error"),
     ("NOTIMP", "error")],
)  # fmt: skip
def test_rcodes_map_to_outcomes(rcode: str, outcome: str) -> None:
    answer = _answer(_response(rcode))
    assert answer.outcome == outcome
    if outcome == "error":
        assert rcode in answer.detail


def _ok(resolver: str, *values: str) -> ResolverAnswer:
    return ResolverAnswer(resolver, "named", "ok", values=tuple(sorted(values)))


def test_agreement_ignores_order_and_ttl() -> None:
    a = ResolverAnswer("a", "named", "ok", values=("10.0.0.1", "10.0.0.2"), ttl=300)
    b = ResolverAnswer("b", "named", "ok", values=("10.0.0.1", "10.0.0.2"), ttl=12)
    agree, verdict = agreement([a, b])
    assert agree
    assert verdict == "all 2 resolvers agree: 10.0.0.1, 10.0.0.2"


def test_agreement_fails_when_any_resolver_failed_even_if_the_rest_agree() -> None:
    timeout = ResolverAnswer("c", "named", "timeout")
    agree, verdict = agreement([_ok("a", "10.0.0.1"), _ok("b", "10.0.0.1"), timeout])
    assert not agree
    assert verdict == "not every resolver answered: c (timeout)"


def test_disagreement_groups_resolvers_by_answer() -> None:
    nx = ResolverAnswer("c", "named", "nxdomain")
    agree, verdict = agreement([_ok("a", "10.0.0.1"), _ok("b", "10.0.0.1"), nx])
    assert not agree
    assert verdict == "resolvers disagree: a + b say 10.0.0.1; c says nxdomain"


def test_consistent_nxdomain_agrees() -> None:
    nx = [ResolverAnswer(r, "named", "nxdomain") for r in ("a", "b")]
    assert agreement(nx) == (True, "all 2 resolvers agree: the name does not exist (NXDOMAIN)")


def test_getaddrinfo_errors_map_to_the_same_outcomes() -> None:
    a = dns.rdatatype.A
    nonamed = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    nodata = socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert answer_from_addrinfo(nonamed, a, None, "x.test", 1).outcome == "nxdomain"
    assert answer_from_addrinfo(nodata, a, None, "x.test", 1).outcome == "no_answer"
    failed = answer_from_addrinfo(again, a, None, "x.test", 1)
    assert failed.outcome == "error" and "SERVFAIL" in failed.detail


def test_getaddrinfo_results_keep_the_asked_family_and_the_canonical_name() -> None:
    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "svc.test", ("10.0.0.2", 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 0)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::1", 0, 0, 0)),
    ]
    answer = answer_from_addrinfo(infos, dns.rdatatype.A, "svc.test", "www.svc.test", 1)
    assert answer.values == ("10.0.0.1", "10.0.0.2")
    assert answer.cname_chain == ("www.svc.test", "svc.test")
    assert answer.ttl is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.2", Nameserver("127.0.0.2", 53)),
        ("127.0.0.2:5353", Nameserver("127.0.0.2", 5353)),
        ("::1", Nameserver("::1", 53)),
        ("[::1]:5353", Nameserver("::1", 5353)),
        ("[fd00::53]", Nameserver("fd00::53", 53)),
    ],
)
def test_resolver_specs_parse(spec: str, expected: Nameserver) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize(
    "spec", ["dns.test", "127.0.0.2:0", "127.0.0.2:99999", "127.0.0.2:x", "[::1", "[::1]5353"]
)
def test_bad_resolver_specs_are_refused(spec: str) -> None:
    with pytest.raises(ResolverSpecError) as info:
        parse_nameserver(spec)
    assert isinstance(info.value, UsageError)
    assert str(info.value).startswith(f"bad resolver {spec!r}: ")


def test_labels_omit_the_default_port_and_bracket_ipv6() -> None:
    assert Nameserver("127.0.0.2").label == "127.0.0.2"
    assert Nameserver("::1", 5353).label == "[::1]:5353"
