"""Measurement: the pure statistics and verdicts, then real handshakes on loopback and across
network namespaces (a dropped port, a refusing one, an unreachable one, a lossy one, and a
link with a real 20 ms round trip)."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from servepath.errors import BadTarget, UsageError
from servepath.regions.catalogue import get_region
from servepath.regions.measure import (
    MeasureReport,
    MeasureTarget,
    Sample,
    classify_errno,
    measure,
    parse_measure_target,
    percentile,
    summarize,
    target_status,
)
from servepath.regions.model import DEFAULT_MODEL
from tests.regions.delayline import delay_link
from tests.support import need, need_binary, need_root
from tests.topology.topology import Network, Rule, Topology, drop, reject


def ms(value: float | None) -> float:
    """An RTT figure that must be present."""
    assert value is not None
    return value


# ---- targets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("api.example.com", MeasureTarget("api.example.com", 443)),
        ("api.example.com:8080", MeasureTarget("api.example.com", 8080)),
        ("10.0.0.5@europe-west1", MeasureTarget("10.0.0.5", 443, "europe-west1")),
        ("10.0.0.5:80@europe-west1", MeasureTarget("10.0.0.5", 80, "europe-west1")),
        ("[2001:db8::1]:8443@us-east1", MeasureTarget("2001:db8::1", 8443, "us-east1")),
        ("[::1]", MeasureTarget("::1", 443)),
        ("::1", MeasureTarget("::1", 443)),
        (" host:1 ", MeasureTarget("host", 1)),
    ],
)
def test_targets_parse_host_port_and_region(spec: str, expected: MeasureTarget) -> None:
    assert parse_measure_target(spec) == expected


def test_the_default_port_applies_only_when_none_is_given() -> None:
    assert parse_measure_target("h", default_port=8080).port == 8080
    assert parse_measure_target("h:81", default_port=8080).port == 81


@pytest.mark.parametrize(
    "spec",
    ["", "host:0", "host:65536", "host:http", ":80", "host@", "[::1", "[::1]x", "1:2:3:80"],
)
def test_malformed_targets_are_refused(spec: str) -> None:
    with pytest.raises(BadTarget) as info:
        parse_measure_target(spec)
    assert isinstance(info.value, UsageError)


def test_target_labels_bracket_ipv6() -> None:
    assert MeasureTarget("::1", 80).label == "[::1]:80"
    assert MeasureTarget("h", 80).label == "h:80"


# ---- statistics and verdicts ---------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 1.0, 4.0, 3.0, 2.0]
    assert percentile(values, 0) == 1
    assert percentile(values, 50) == 3
    assert percentile(values, 100) == 10
    assert percentile(values, 90) == pytest.approx(4 + 0.6 * 6)  # numpy's "linear"
    assert percentile([7.0], 90) == 7
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_counts_loss_apart_from_refusals() -> None:
    samples = [
        Sample("ok", 2.0),
        Sample("ok", 4.0),
        Sample("timeout"),
        Sample("refused"),
    ]
    stats = summarize(samples)
    assert (stats.sent, stats.ok, stats.lost, stats.failed) == (4, 2, 1, 1)
    assert stats.loss_pct == 25
    assert (stats.min_ms, stats.median_ms, stats.max_ms) == (2, 3, 4)


def test_summary_of_no_connection_has_counts_but_no_rtt() -> None:
    stats = summarize([Sample("timeout")] * 3)
    assert stats.loss_pct == 100 and stats.median_ms is None and stats.p90_ms is None
    assert summarize([]).loss_pct == 0


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        (["ok", "ok"], "ok"),
        (["ok", "timeout"], "lossy"),
        (["ok", "refused"], "lossy"),
        (["timeout", "timeout", "refused"], "lost"),
        (["timeout", "refused"], "refused"),
        (["unreachable", "timeout"], "unreachable"),
        (["error"], "error"),
        ([], "error"),
    ],
)
def test_target_status_names_the_dominant_failure(outcomes: list[str], status: str) -> None:
    samples = [Sample(o, 1.0 if o == "ok" else None) for o in outcomes]  # type: ignore[arg-type]
    assert target_status(samples) == status


def test_connect_errnos_map_to_what_they_say_about_the_path() -> None:
    assert classify_errno(errno.ECONNREFUSED) == "refused"
    assert classify_errno(errno.EHOSTUNREACH) == "unreachable"
    assert classify_errno(errno.ENETUNREACH) == "unreachable"
    assert classify_errno(errno.ETIMEDOUT) == "timeout"
    assert classify_errno(errno.EPERM) == "error"
    assert classify_errno(None) == "error"


# ---- loopback ------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts and closes; yields its port."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound (so nothing else takes it) but not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_a_loopback_listener_answers_every_handshake_fast(listener: int) -> None:
    report = measure([MeasureTarget("127.0.0.1", listener)], samples=8, interval=0.01)
    (result,) = report.targets
    assert result.status == "ok"
    assert result.address == "127.0.0.1"
    stats = result.stats
    assert (stats.sent, stats.ok, stats.lost) == (8, 8, 0)
    assert 0 < ms(stats.min_ms) <= ms(stats.median_ms) <= ms(stats.p90_ms) <= ms(stats.max_ms)
    assert ms(stats.median_ms) < 20
    assert not report.all_failed


def test_a_closed_loopback_port_is_refused_not_lost(closed_port: int) -> None:
    (result,) = measure([MeasureTarget("127.0.0.1", closed_port)], samples=3, interval=0).targets
    assert result.status == "refused"
    assert result.stats.loss_pct == 0 and result.stats.failed == 3
    assert result.detail == "Connection refused (×3)"


def test_ipv6_loopback_is_measured_too(listener: int) -> None:
    server = socket.socket(socket.AF_INET6)
    try:
        server.bind(("::1", 0))
    except OSError:
        server.close()
        need(False, "no IPv6 loopback (::1) on this machine")
    server.listen(16)
    try:
        port = server.getsockname()[1]
        (result,) = measure([MeasureTarget("::1", port)], samples=3, interval=0).targets
    finally:
        server.close()
    assert result.status == "ok" and result.address == "::1"


def test_targets_are_measured_together_and_each_one_is_paced(
    listener: int, closed_port: int
) -> None:
    targets = [MeasureTarget("127.0.0.1", listener), MeasureTarget("127.0.0.1", closed_port)] * 2
    started = time.monotonic()
    report = measure(targets, samples=5, interval=0.1)
    elapsed = time.monotonic() - started
    # One after another this would take 4 × 0.4 s; together it takes one target's 0.4 s.
    assert 0.4 <= elapsed < 1.2
    # MeasureTarget k's sample i has the slot k × 25 ms + i × 100 ms and never leaves before it, so
    # the targets are staggered instead of firing together, and each is paced.
    for k, result in enumerate(report.targets):
        sent = [s.at_ms for s in result.samples]
        assert sent == sorted(sent)
        for i, at in enumerate(sent):
            assert at >= k * 25 + i * 100 - 0.5, (k, sent)
    assert report.targets[-1].samples[-1].at_ms < 1000


def test_names_that_do_not_resolve_are_reported_and_never_sampled(listener: int) -> None:
    def resolve(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, ("127.0.0.1", port))]

    report = measure(
        [MeasureTarget("nowhere.test", 80), MeasureTarget("here.test", listener)],
        samples=2,
        interval=0,
        resolve=resolve,
    )
    missing, found = report.targets
    assert missing.status == "unresolved" and missing.samples == () and missing.address is None
    assert "cannot resolve nowhere.test" in (missing.detail or "")
    assert found.status == "ok" and found.address == "127.0.0.1"


def test_a_known_region_gets_the_models_estimate_beside_the_measurement(listener: int) -> None:
    warsaw, belgium = get_region("europe-central2"), get_region("europe-west1")
    report = measure(
        [
            MeasureTarget("127.0.0.1", listener, "europe-west1"),
            MeasureTarget("127.0.0.1", listener),
        ],
        samples=2,
        interval=0,
        from_region=warsaw,
        regions={"europe-west1": belgium},
    )
    with_region, without = report.targets
    assert with_region.estimate_ms == pytest.approx(DEFAULT_MODEL.rtt_ms(warsaw, belgium))
    assert with_region.vs_estimate is not None and with_region.vs_estimate < 1
    assert without.estimate_ms is None and without.vs_estimate is None
    data = report.to_json()
    assert data["from_region"] == "europe-central2"
    assert data["targets"][0]["estimate_ms"] == 20.0  # type: ignore[index]


def test_every_target_failing_is_a_problem(closed_port: int) -> None:
    report = measure([MeasureTarget("127.0.0.1", closed_port)], samples=1)
    assert report.all_failed


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        measure([MeasureTarget("127.0.0.1", 1)], samples=0)
    with pytest.raises(ValueError):
        measure([MeasureTarget("127.0.0.1", 1)], timeout=0)


# ---- across network namespaces --------------------------------------------------------------

CLIENT, SERVER = "10.250.1.1", "10.250.1.2"
FAR_CLIENT, FAR_SERVER = "10.250.2.1", "10.250.2.2"  # the delayed link
OPEN, DROPPED, HALF_DROPPED, PROHIBITED, CLOSED = 8080, 8081, 8082, 8083, 8084


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    need_root()
    for binary in ("ip", "iptables", "ss"):
        need_binary(binary)
    topo = Topology()
    topo.host("client")
    topo.host("server")
    topo.link("client", f"{CLIENT}/30", "server", f"{SERVER}/30")
    topo.rule("server", drop(port=DROPPED))
    # Every other SYN is dropped; counting SYNs only keeps the ACKs and FINs out of the count.
    syn = ("-p", "tcp", "--syn", "--dport", str(HALF_DROPPED))
    every_other = ("-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "0")
    topo.rule("server", Rule("INPUT", (*syn, *every_other), ("-j", "DROP")))
    topo.rule("server", reject("icmp-host-unreachable", port=PROHIBITED))
    with (
        topo.build() as network,
        network.listen("server", "0.0.0.0", [OPEN, DROPPED, HALF_DROPPED, PROHIBITED]),
    ):
        yield network


def _measure_in(
    net: Network, node: str, targets: list[MeasureTarget], **kwargs: float
) -> MeasureReport:
    """Run ``measure`` in-process with its sockets in ``node``'s namespace."""
    return net.call(node, measure, targets, **kwargs)


@pytest.mark.net
def test_a_namespace_host_is_measured_with_each_failure_named(net: Network) -> None:
    targets = [
        MeasureTarget(SERVER, port) for port in (OPEN, DROPPED, HALF_DROPPED, PROHIBITED, CLOSED)
    ]
    # An open port answers in a millisecond; the timeout has to outlast a machine busy with
    # other work (0.3 s once read a slow handshake as a lost one), and end before the kernel
    # retransmits a dropped SYN at 1 s (the retransmission would shift the every-other-SYN
    # drop onto the next sample).
    report = _measure_in(net, "client", targets, samples=6, timeout=0.6, interval=0.05)
    by_port = {r.target.port: r for r in report.targets}

    assert by_port[OPEN].status == "ok"
    assert ms(by_port[OPEN].stats.median_ms) < 10

    dropped = by_port[DROPPED]
    assert dropped.status == "lost"
    assert dropped.stats.loss_pct == 100 and dropped.stats.median_ms is None
    assert dropped.detail == "no answer within 0.6s (×6)"

    half = by_port[HALF_DROPPED]
    assert half.status == "lossy"
    assert (half.stats.ok, half.stats.lost) == (3, 3)
    assert half.stats.loss_pct == 50
    assert [s.outcome for s in half.samples] == ["timeout", "ok"] * 3

    assert by_port[PROHIBITED].status == "unreachable"
    assert by_port[PROHIBITED].stats.loss_pct == 0

    closed = by_port[CLOSED]
    assert closed.status == "refused" and closed.detail == "Connection refused (×6)"
    assert not report.all_failed


@pytest.fixture(scope="module")
def far(net: Network) -> Iterator[Network]:
    """A second link between the same two hosts that holds every packet 10 ms each way."""
    need(os.path.exists("/dev/net/tun"), "no /dev/net/tun for the delay link")
    with delay_link(net, "client", FAR_CLIENT, "server", FAR_SERVER, rtt_ms=20):
        yield net


@pytest.mark.net
def test_measured_rtt_moves_with_a_real_delay_on_the_path(far: Network) -> None:
    targets = [MeasureTarget(SERVER, OPEN), MeasureTarget(FAR_SERVER, OPEN)]
    report = _measure_in(far, "client", targets, samples=10, timeout=1.0, interval=0.02)
    near, delayed = report.targets
    assert near.status == delayed.status == "ok"
    assert ms(near.stats.median_ms) < 5
    # The handshake cannot beat the delay, and counts it once: two round trips would be 40 ms
    # at the least. The best sample is the one a busy machine delays least (the delay is a
    # user-space relay, scheduled like everything else).
    assert 19.5 <= ms(delayed.stats.min_ms) < 38
    assert ms(delayed.stats.median_ms) >= 19.5
    assert ms(delayed.stats.median_ms) - ms(near.stats.median_ms) >= 18


@pytest.mark.net
def test_the_cli_inside_a_namespace_sets_a_warsaw_belgium_sized_delay_beside_the_model(
    far: Network,
) -> None:
    argv = [
        sys.executable, "-m", "servepath", "regions", "measure",
        f"{FAR_SERVER}:{OPEN}@europe-west1", f"{SERVER}:{CLOSED}",
        "--from", "europe-central2", "-n", "5", "--interval", "0.02", "--json",
    ]  # fmt: skip
    proc = far.run("client", argv, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    delayed, closed = data["targets"]
    assert delayed["status"] == "ok" and delayed["estimate_ms"] == 20.0
    # The link is as slow as the model says Warsaw to Belgium is: never faster, and its best
    # sample within one round trip of it however busy the machine (see above).
    assert delayed["vs_estimate"] >= 0.95
    assert 19.5 <= delayed["min_ms"] < 38
    assert closed["status"] == "refused"


@pytest.mark.net
def test_the_cli_exits_1_when_every_target_is_lost_or_refused(net: Network) -> None:
    argv = [
        sys.executable, "-m", "servepath", "regions", "measure",
        f"{SERVER}:{DROPPED}", f"{SERVER}:{CLOSED}", "-n", "2", "--timeout", "0.2",
    ]  # fmt: skip
    proc = net.run("client", argv, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "lost" in proc.stdout and "refused" in proc.stdout
    assert "no answer within 0.2s" in proc.stdout
