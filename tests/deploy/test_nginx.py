"""deploy/nginx/servepath.conf run by the real nginx in front of two real `servepath serve`.

The shipped file is used as it is, except for the three things that must differ on a test
machine: the upstream servers become loopback ports, the listen port a free one, the log paths
a temporary directory.

`servepath doctor` run through the stack names the reverse proxy and the forwarded chain.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from servepath.config import DEFAULT_MAX_BODY_BYTES
from tests.deploy.artifacts import VERTEX, NginxConfig, render_nginx
from tests.helpers.slowmodel import write_slow_model
from tests.helpers.waiting import wait_until_answers
from tests.support import TESTS_DIR, ServerProcess, free_port, need_binary, serve

pytestmark = pytest.mark.timeout(120)

REQUEST = json.loads((VERTEX / "request.json").read_text())
#: The operator routes' allow list keeps this one loopback address: the tests call from it
#: as the operator, and from STRANGER (loopback too) as a stranger.
OPERATOR = "127.0.0.1"
STRANGER = "127.0.0.2"


@dataclass
class Stack:
    url: str
    servers: list[ServerProcess]
    nginx: subprocess.Popen[bytes]
    logs: Path

    def error_log(self) -> str:
        return (self.logs / "error.log").read_text(errors="replace")

    def access_log(self) -> str:
        return (self.logs / "access.log").read_text(errors="replace")


@contextlib.contextmanager
def nginx_stack(
    tmp_path: Path, model: Path, extra_pythonpath: Sequence[Path] = ()
) -> Iterator[Stack]:
    nginx = need_binary("nginx")
    config = NginxConfig.read()
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                serve(
                    tmp_path,
                    model=model,
                    args=["--store", "off", "--cache", "off"],
                    wait=False,
                    extra_pythonpath=extra_pythonpath,
                )
            )
            for _ in config.upstream_servers
        ]
        for server in servers:  # started together, waited for together
            wait_until_answers(server.url + "/", timeout=60, process=server.process)
        workdir = tmp_path / "nginx"
        workdir.mkdir()
        port = free_port()
        main = render_nginx(
            config,
            upstream_ports=[s.port for s in servers],
            listen_port=port,
            workdir=workdir,
            operator=OPERATOR,
        )
        base = [nginx, "-p", str(workdir), "-e", str(workdir / "logs" / "startup.log")]
        check = subprocess.run(
            [*base, "-t", "-c", str(main)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stderr
        with (workdir / "logs" / "stderr.log").open("wb") as out:
            process = subprocess.Popen(
                [*base, "-c", str(main), "-g", "daemon off;"], stdout=out, stderr=out
            )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        stack.callback(stop)
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(url + "/_nginx/health", timeout=10)
        yield Stack(url, servers, process, workdir / "logs")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, example_model_path: Path) -> Iterator[Stack]:
    with nginx_stack(tmp_path_factory.mktemp("nginx-stack"), example_model_path) as running:
        yield running


def client_from(address: str, url: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, transport=transport, trust_env=False, timeout=10)


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with client_from(OPERATOR, stack.url) as c:
        yield c


@pytest.fixture
def stranger(stack: Stack) -> Iterator[httpx.Client]:
    with client_from(STRANGER, stack.url) as c:
        yield c


# Targets servepath takes for an operator route (it decodes %XX and drops trailing slashes),
# each of which must meet the operator routes' guard in nginx.
BYPASSES = [
    "/metrics", "/metrics/", "/metrics//", "/metrics%2F", "/metrics%2f", "/metrics/%2F",
    "//metrics", "/%6detrics", "/%6D%65trics", "/metrics?x=1", "/metrics/?x=1",
    "/./metrics", "/x/../metrics", "/metrics%2F%2F", "/%2Fmetrics",
    "/_path", "/_path/", "/_path%2F", "/%5fpath", "/_ui", "/_ui/", "/_ui/data", "/_ui//data",
    "/_ui%2Fdata", "/_ui/data/", "/%5fui/data", "/docs", "/docs/", "/docs%2F",
    "/openapi.json", "/openapi.json/", "/openapi%2Ejson", "/openapi.json%2F",
    "http://t/metrics/", "http://t/%6detrics", "/metrics%00", "/metrics/%00",
    "/_ui/data%2F%2F", "/docs/oauth2-redirect", "/metrics%2F..%2F",
]  # fmt: skip


def raw_get(url: str, target: str, source: str) -> int:
    """The status of ``GET target`` sent as written (no client normalises it), from
    ``source``."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0)) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("target", BYPASSES)
def test_no_spelling_of_an_operator_route_passes_the_guard(stack: Stack, target: str) -> None:
    # 403 from the guard, 400 from nginx's parser; a 404 is a spelling that normalises to
    # no route on either side (/metrics%2F..%2F is / to nginx and no route to servepath).
    assert raw_get(stack.url, target, STRANGER) in (400, 403, 404), target


def test_the_spellings_are_operator_routes_to_servepath(stack: Stack) -> None:
    # Straight to a replica, the spellings the guard refuses do reach an operator route: the
    # list above is the real attack surface, not 404s.
    reaching = [t for t in BYPASSES if raw_get(stack.servers[0].url, t, STRANGER) == 200]
    for target in ("/metrics/", "/metrics//", "/metrics%2F", "/%6detrics", "/_ui%2Fdata"):
        assert target in reaching, reaching


def test_the_operator_still_reaches_them_and_strangers_get_json(
    stack: Stack, stranger: httpx.Client
) -> None:
    for target in ("/metrics", "/metrics/", "/_path", "/openapi.json"):
        assert raw_get(stack.url, target, OPERATOR) == 200, target
    refused = stranger.get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert stranger.post("/decisions", json=REQUEST).status_code == 200


def test_requests_are_spread_over_both_replicas(stack: Stack, client: httpx.Client) -> None:
    # Told apart by the port each replica listens on: the pid is for insiders only, and a
    # caller behind an nginx the replicas do not trust is none (docs/security.md).
    ports = [client.get("/_path").json()["server"]["port"] for _ in range(40)]
    counts = {server.port: ports.count(server.port) for server in stack.servers}
    assert sum(counts.values()) == 40, f"answers from unknown replicas: {set(ports)}"
    assert all(n >= 16 for n in counts.values()), counts


def test_predictions_pass_through_with_request_id_and_timing(client: httpx.Client) -> None:
    response = client.post("/decisions", json=REQUEST)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(REQUEST["instances"])
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert "total;dur=" in response.headers["server-timing"]


def test_forwarded_chain_and_request_id_reach_the_replica(client: httpx.Client) -> None:
    response = client.get(
        "/_path",
        headers={
            "X-Forwarded-For": "198.51.100.7",
            "Via": "1.1 laptop-proxy",
            "X-Request-ID": "deploy-test-42",
        },
    )
    echo = response.json()
    assert echo["x_forwarded_for"] == "198.51.100.7, 127.0.0.1"
    assert echo["chain"] == ["198.51.100.7", "127.0.0.1"]
    # The replicas trust no proxy (no --forwarded-allow-ips): the chain is only claimed.
    assert echo["original_client"] == "127.0.0.1"
    assert [hop["entry"] for hop in echo["claimed"]] == ["198.51.100.7", "127.0.0.1"]
    assert echo["via"] == ["1.1 laptop-proxy", f"1.1 {socket.gethostname()}"]
    assert echo["x_forwarded_proto"] == "http"
    host = client.base_url.host
    assert echo["x_forwarded_host"] == f"{host}:{client.base_url.port}"
    assert echo["x_real_ip"] == "127.0.0.1"
    assert echo["peer"]["address"] == "127.0.0.1"  # the replica's TCP peer is nginx
    assert echo["request_id"] == "deploy-test-42"
    assert response.headers["x-request-id"] == "deploy-test-42"


def test_without_a_request_id_nginx_makes_one_the_replica_uses(client: httpx.Client) -> None:
    for sent in ({}, {"X-Request-ID": "has spaces, so servepath would refuse it"}):
        response = client.get("/_path", headers=sent)
        made = response.json()["request_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), made
        assert response.headers["x-request-id"] == made


def test_body_limit_is_the_services_limit_to_the_byte(client: httpx.Client) -> None:
    payload = json.dumps(REQUEST).encode()
    at_limit = payload + b" " * (DEFAULT_MAX_BODY_BYTES - len(payload))
    headers = {"Content-Type": "application/json"}
    accepted = client.post("/decisions", content=at_limit, headers=headers)
    assert accepted.status_code == 200, accepted.text
    over = client.post("/decisions", content=at_limit + b" ", headers=headers)
    assert over.status_code == 413
    assert over.headers["content-type"] == "application/json"
    assert over.json()["request_id"] == over.headers["x-request-id"]


def test_metrics_are_served_to_private_and_loopback_callers(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "servepath" in response.text


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    killed_at: float | None = None
    failures: list[str] = field(default_factory=list)
    ports_after_kill: list[int] = field(default_factory=list)


def test_a_replica_killed_with_requests_in_flight_fails_no_request(tmp_path: Path) -> None:
    # Each prediction takes 50 ms, so the replica dies with POSTs in flight on it: nginx retries
    # them on the other replica (non_idempotent), and new requests fail over at connect.
    model = tmp_path / "slow.joblib"
    write_slow_model(model, delay=0.05)
    body = {"instances": [{"x": 0.5, "y": 1.5}]}
    total, kill_after, concurrency = 300, 100, 6
    with nginx_stack(tmp_path, model, extra_pythonpath=[TESTS_DIR.parent]) as running:
        victim, survivor = running.servers
        tally = Tally()
        local = threading.local()
        clients: list[httpx.Client] = []

        def client() -> httpx.Client:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=running.url, trust_env=False, timeout=10)
                with tally.lock:
                    clients.append(local.client)
            c: httpx.Client = local.client
            return c

        def one(i: int) -> None:
            started = time.monotonic()
            try:
                if i % 4 == 1:
                    response = client().get("/_path")
                else:
                    response = client().post("/decisions", json=body)
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.failures.append(f"request {i}: {exc!r}")
                return
            with tally.lock:
                if response.status_code != 200:
                    tally.failures.append(f"request {i}: {response.status_code} {response.text}")
                elif i % 4 == 1 and tally.killed_at is not None and started > tally.killed_at:
                    # The replica that answered, by its own port (its pid is an insider's).
                    tally.ports_after_kill.append(response.json()["server"]["port"])
                tally.done += 1
                if tally.done == kill_after:
                    victim.process.kill()
                    victim.process.wait(10)
                    tally.killed_at = time.monotonic()

        try:
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(total)))
        finally:
            for c in clients:
                c.close()

        assert tally.killed_at is not None
        assert tally.failures == [], tally.failures[:5]
        assert tally.done == total
        assert tally.ports_after_kill, "no path echo answered after the kill"
        assert set(tally.ports_after_kill) == {survivor.port}
        # The failover happened, and nginx retried on the survivor instead of failing.
        victim_addr = f"127.0.0.1:{victim.port}"
        survivor_addr = f"127.0.0.1:{survivor.port}"
        errors = running.error_log()
        assert victim_addr in errors
        cut = [
            line
            for line in errors.splitlines()
            if victim_addr in line
            and "[error]" in line
            and "while reading response header from upstream" in line
            and '"POST /decisions' in line
        ]
        assert cut, "no POST was in flight on the killed replica:\n" + errors[-3000:]
        retried = running.access_log().count(f"upstream={victim_addr}, {survivor_addr} ")
        assert retried >= 1, running.access_log()[-2000:]
        print(
            f"\nfailover: {total} requests, 0 failed, {retried} retried on the survivor, "
            f"{len(cut)} of them POSTs cut mid-flight by the kill"
        )

        # With no replica left, nginx's own answer is JSON with the request id.
        survivor.process.kill()
        survivor.process.wait(10)
        with httpx.Client(base_url=running.url, trust_env=False, timeout=10) as c:
            gone = c.get("/")
        assert gone.status_code == 502
        assert gone.json()["request_id"] == gone.headers["x-request-id"]
        assert "no servepath replica answered" in gone.json()["error"]


def test_doctor_through_the_stack_names_one_reverse_proxy_and_the_chain(stack: Stack) -> None:
    from servepath.netdiag.doctor import DoctorOptions, run_doctor

    report = run_doctor(stack.url + "/decisions", DoctorOptions(timeout=1.0))
    assert report.ok, (report.cause, report.explanation.meaning)
    view = next(s for s in report.stages if s.name == "server view")
    assert view.data["between"]["reverse_proxies"] == 1
    assert view.data["echo"]["chain"] == ["127.0.0.1"]
    assert "1 reverse proxy" in view.summary
