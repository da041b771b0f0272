"""The image on a real Docker engine: built from deploy/Dockerfile on a Debian base made with
debootstrap, run with published ports (on 127.0.0.1 only), stopped under load, configured the
way Vertex AI configures it, and misconfigured the ways the lecture warns about — each
diagnosed by the doctor from the host.

Every container a test starts is removed, also when the test fails; the project image and its
build stage are removed at the end of the session; the Debian base image is kept (tagged by its
inputs), so the next run on this machine does not debootstrap again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.images import (
    ImageError,
    base_image,
    build_project_image,
    docker,
    engine_answers,
    image_size,
    remove_project_image,
)
from tests.helpers.waiting import wait_until_answers
from tests.support import free_port, need

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

VERTEX_ROUTE = "/v1/endpoints/7/deployedModels/8"


def example(base: str) -> dict[str, Any]:
    """The instance the server documents for its predict route (its own OpenAPI example)."""
    from servepath.contract import ServerContract, example_for

    spec = httpx.get(base + "/openapi.json", timeout=10, trust_env=False).json()
    value = example_for(spec, ServerContract.from_spec(spec).predict_route)
    assert isinstance(value, dict)
    return value


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    need(engine_answers(), "no Docker engine answers (install docker.io and start dockerd)")
    try:
        base = base_image()
        tag, seconds = build_project_image(f"servepath-test:{uuid.uuid4().hex[:10]}", base)
    except ImageError as exc:
        pytest.fail(str(exc))
    print(
        f"\nimage {tag}: built in {seconds:.1f} s, {image_size(tag) / 1e6:.0f} MB", file=sys.stderr
    )
    yield tag
    remove_project_image(tag)


Run = Callable[..., str]


@pytest.fixture
def run(image: str) -> Iterator[Run]:
    """Start a container of the image (detached); every one is removed at the end."""
    started: list[str] = []

    def start(*options: str, command: tuple[str, ...] = ()) -> str:
        name = f"servepath-test-{uuid.uuid4().hex[:10]}"
        docker("run", "-d", "--name", name, *options, image, *command, timeout=60)
        started.append(name)
        return name

    yield start
    for name in started:
        docker("rm", "-f", name, check=False, timeout=60)


def wait_listening_inside(name: str, port: int, timeout: float = 90) -> None:
    """Until the container's own namespace has a listener on ``port`` (whatever address)."""
    pid = docker("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
    deadline = time.monotonic() + timeout
    hexport = f":{port:04X} "
    while time.monotonic() < deadline:
        text = ""
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{pid}/net/{table}") as f:
                    text += f.read()
            except OSError:
                pass
        if any(hexport in line and " 0A " in line for line in text.splitlines()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port} inside {name}")


def doctor(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "servepath", "doctor", *args, "--json", "--timeout", "1"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "NO_PROXY": "*"},
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def test_published_port_serves_and_the_doctor_sees_the_container_and_the_mapping(run: Run) -> None:
    host = free_port()
    name = run("-p", f"127.0.0.1:{host}:8080")
    url = f"http://127.0.0.1:{host}"
    wait_until_answers(url + "/", timeout=90, interval=0.2)
    answer = httpx.post(url + "/decisions", json=example(url), timeout=10, trust_env=False)
    assert answer.status_code == 200 and answer.json()["decision"] in ("approve", "decline")
    report = doctor(f"{url}/decisions")
    assert report["ok"], (report["cause"], report["explanation"])
    view = stage(report, "server view")
    assert view["data"]["echo"]["container"]["in_container"] is True
    assert view["data"]["between"]["nat"] is True  # dialled 127.0.0.1:H, served on :8080
    assert f"dialled 127.0.0.1:{host}, the server socket is" in view["summary"]
    assert view["summary"].rstrip().endswith(":8080")
    local = docker("exec", name, "servepath", "doctor", "--local", "8080", "--json", check=False)
    inside = json.loads(local.stdout)
    assert inside["ok"], inside
    container = next(s for s in inside["stages"] if s["name"] == "container")
    assert container["data"]["in_container"] is True and container["data"]["runtime"] == "docker"


def test_healthcheck_user_and_a_read_only_root(run: Run) -> None:
    host = free_port()
    name = run(
        "-p", f"127.0.0.1:{host}:8080", "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/var/lib/servepath:uid=10001,gid=10001",
        "--health-interval", "1s", "--health-start-period", "60s",
    )  # fmt: skip
    wait_until_answers(f"http://127.0.0.1:{host}/", timeout=90, interval=0.2)
    assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        if status == "healthy":
            break
        time.sleep(0.5)
    assert status == "healthy"
    base = f"http://127.0.0.1:{host}"
    answer = httpx.post(f"{base}/decisions", json=example(base), timeout=10, trust_env=False)
    assert answer.status_code == 200  # the prediction log writes to the tmpfs data directory


def test_docker_stop_under_load_drains_and_exits_zero(run: Run) -> None:
    host = free_port()
    name = run("-p", f"127.0.0.1:{host}:8080", "--stop-timeout", "25")
    url = f"http://127.0.0.1:{host}/decisions"
    wait_until_answers(f"http://127.0.0.1:{host}/", timeout=90, interval=0.2)
    instance = example(f"http://127.0.0.1:{host}")
    number = next(k for k, v in instance.items() if isinstance(v, float))
    records: list[tuple[float, str]] = []  # (when the request was sent, its outcome)
    lock = threading.Lock()
    stop_at = time.monotonic() + 12  # bounded: at most 12 s of requests

    def caller(index: int) -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                body = {**instance, number: instance[number] + index * 1000 + n}
                sent = time.monotonic()
                try:
                    status = client.post(url, json=body).status_code
                    outcome = "ok" if status == 200 else f"status {status}"
                except httpx.ConnectError:
                    outcome = "refused"
                    time.sleep(0.05)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                    time.sleep(0.05)
                with lock:
                    records.append((sent, outcome))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    started = time.monotonic()
    docker("stop", name, timeout=60)
    stopped_in = time.monotonic() - started
    for t in threads:
        t.join()
    state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
    # Sent before `docker stop`: in flight when SIGTERM came, or answered before it.
    before = [o for sent, o in records if sent < started]
    after = [o for sent, o in records if sent >= started]
    failed_in_flight = [o for o in before if o != "ok"]
    print(
        f"\ndocker stop under load: {len(before)} requests sent before the stop, "
        f"{len(failed_in_flight)} of them failed {sorted(set(failed_in_flight))}; "
        f"{len(after)} sent after it ({after.count('ok')} answered); "
        f"stopped in {stopped_in:.2f} s",
        file=sys.stderr,
    )
    assert state["ExitCode"] == 0, state
    assert stopped_in < 20  # well inside the 25 s grace: SIGTERM reached PID 1 and it drained
    assert before.count("ok") > 0
    assert failed_in_flight == [], failed_in_flight


def test_vertex_ai_environment_in_the_real_container(run: Run) -> None:
    host = free_port()
    name = run(
        "-p", f"127.0.0.1:{host}:8081",
        "-e", "AIP_HTTP_PORT=8081", "-e", f"AIP_HEALTH_ROUTE={VERTEX_ROUTE}",
        "-e", f"AIP_PREDICT_ROUTE={VERTEX_ROUTE}:predict", "-e", "AIP_MODE=PREDICTION",
        "--health-interval", "1s",
    )  # fmt: skip
    base = f"http://127.0.0.1:{host}"
    wait_until_answers(base + VERTEX_ROUTE, timeout=90, interval=0.2)
    spec = httpx.get(base + "/openapi.json", timeout=10, trust_env=False).json()
    from servepath.contract import example_for

    instance = example_for(spec, f"{VERTEX_ROUTE}:predict")
    answer = httpx.post(
        f"{base}{VERTEX_ROUTE}:predict", json={"instances": [instance, instance]}, timeout=10,
        trust_env=False,
    )  # fmt: skip
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        if status == "healthy":
            break
        time.sleep(0.5)
    assert status == "healthy"  # the HEALTHCHECK follows AIP_HTTP_PORT and AIP_HEALTH_ROUTE


def test_service_on_loopback_inside_behind_a_published_port(run: Run) -> None:
    host = free_port()
    name = run("-p", f"127.0.0.1:{host}:8080", "-e", "SERVEPATH_HOST=127.0.0.1")
    wait_listening_inside(name, 8080)
    report = doctor(f"http://127.0.0.1:{host}/decisions")
    assert report["cause"] == "container_not_listening", (report["cause"], report["explanation"])
    assert "127.0.0.1:8080 (loopback only)" in report["explanation"]
    assert "--host 0.0.0.0" in " ".join(report["fix"])


def test_published_to_port_80_while_the_service_listens_on_8080(run: Run) -> None:
    host = free_port()
    name = run("-p", f"127.0.0.1:{host}:80")
    wait_listening_inside(name, 8080)
    report = doctor(f"http://127.0.0.1:{host}/decisions")
    assert report["cause"] == "container_not_listening", (report["cause"], report["explanation"])
    assert ":80" in report["explanation"]
    assert f"docker run -p 127.0.0.1:{host}:8080" in " ".join(report["fix"])


def test_no_published_port_names_the_containers_8080(run: Run) -> None:
    host = free_port()
    name = run()
    wait_listening_inside(name, 8080)
    report = doctor(f"http://127.0.0.1:{host}/decisions")
    # port_closed; or service_on_other_port where this machine runs a service on 8080 too
    assert report["cause"] in ("port_closed", "service_on_other_port"), report["cause"]
    fix = " ".join(report["fix"])
    assert "listens on 8080, but no host port is published to it" in fix
    assert f"docker run -p {host}:8080" in fix
