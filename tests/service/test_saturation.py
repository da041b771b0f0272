"""The scaling signal and 429 shedding on a real `servepath serve --workers 2`: past the bound
a prediction is refused 429 with Retry-After (`--shed-status 429`), `servepath_saturation`
reads 1 while a worker sheds, whichever worker answers the scrape, and falls back to 0 once
the building empties with no request coming to recompute it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from servepath.config import Settings
from servepath.model.loaded import load_model
from servepath.service.app import create_app
from tests.helpers.slowmodel import HOLD_X, write_holding_model
from tests.service.live import connect, live_server, read_response, read_until_closed, status_of
from tests.support import TESTS_DIR, ServerProcess, serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

#: Requests in each worker's building: the bound that sheds, whatever the expected wait.
IN_FLIGHT = 2
PREDICT = (
    b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: 20\r\n\r\n" + orjson.dumps({"x": HOLD_X, "y": 2.0}).ljust(20)
)
SATURATION = re.compile(r"^servepath_saturation (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Held:
    """A model whose calls for ``HOLD_X`` rows wait until ``release`` exists."""

    model: Path
    release: Path


def holding_model(directory: Path) -> Held:
    held = Held(directory / "holding.joblib", directory / "release")
    write_holding_model(held.model, held.release)
    return held


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Held:
    return holding_model(tmp_path_factory.mktemp("saturation"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, held: Held) -> Iterator[ServerProcess]:
    args = [
        "--workers", "2", "--store", "off", "--cache", "off",
        "--max-in-flight", str(IN_FLIGHT), "--max-queue-wait", "30", "--shed-status", "429",
    ]  # fmt: skip
    tmp = tmp_path_factory.mktemp("saturation-server")
    env = {"SERVEPATH_MAX_BATCH": "1"}
    with serve(
        tmp,
        model=held.model,
        args=args,
        env=env,
        extra_pythonpath=[TESTS_DIR.parent / "src", TESTS_DIR.parent],
    ) as s:
        yield s


def saturation(url: str) -> float:
    """One scrape on a connection of its own (so that either worker may answer it)."""
    with httpx.Client(timeout=10, trust_env=False) as client:
        text = client.get(url + "/metrics").text
    found = SATURATION.findall(text)
    assert len(found) == 1, "one series across workers, not one per worker"
    return float(found[0])


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(30):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers, body


async def until(predicate_url: str, want: float, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (value := await asyncio.to_thread(saturation, predicate_url)) != want:
        assert time.monotonic() < deadline, f"saturation stayed {value}, not {want}"
        await asyncio.sleep(0.05)


def both_workers_answer(url: str) -> None:
    """Until each worker has answered once (a worker starts accepting once its model is
    loaded): a burst then meets both."""
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2:
        assert time.monotonic() < deadline, pids
        with httpx.Client(timeout=10, trust_env=False) as client:  # a connection each time
            pids.add(client.get(url + "/_path").json()["pid"])


async def test_two_workers_shed_429_and_the_signal_is_their_maximum_on_every_scrape(
    server: ServerProcess, held: Held
) -> None:
    await asyncio.to_thread(both_workers_answer, server.url)
    await until(server.url, 0.0)
    # More than both buildings hold: each worker admits IN_FLIGHT and sheds the rest on the
    # head (the HTTP layer's fast refusal); the admitted ones hold it until released.
    burst = [asyncio.ensure_future(exchange(server.port, PREDICT)) for _ in range(12)]
    try:
        for answer in asyncio.as_completed(burst):
            first = await answer
            if first[0] != 200:
                break  # shedding has started
        # Every scrape, whichever worker answers it, reads the busiest worker's 1.
        readings = [await asyncio.to_thread(saturation, server.url) for _ in range(6)]
    finally:
        held.release.touch()  # the admitted requests are answered, whatever happened above
    results = await asyncio.gather(*burst)
    assert first[0] == 429, first
    assert readings == [1.0] * 6, readings
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= IN_FLIGHT and set(statuses) == {200, 429}, statuses
    for status, headers, body in results:
        if status == 429:
            assert int(headers["retry-after"]) >= 1
            assert orjson.loads(body)["reason"] == "overloaded"
    # Nothing comes any more: the signal goes back to 0 by itself, the same on every scrape.
    await until(server.url, 0.0)
    assert [await asyncio.to_thread(saturation, server.url) for _ in range(4)] == [0.0] * 4
    with httpx.Client(timeout=10, trust_env=False) as client:
        text = client.get(server.url + "/metrics").text
    shed = re.findall(r"^servepath_requests_shed_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    assert sum(float(v) for v in shed) == statuses.count(429), "a 429 is counted as shed"


# --- the app's own refusal (a request the HTTP layer did not decide on its head) ------------


async def test_the_apps_own_refusal_answers_the_shed_status_with_retry_after(
    tmp_path: Path,
) -> None:
    held = holding_model(tmp_path)
    settings = Settings(store_url="off", cache_url="off", max_in_flight=1, shed_status=429)
    app = create_app(settings, model=load_model(held.model))
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            body = {"x": HOLD_X, "y": 2.0}
            first = asyncio.ensure_future(client.post("/decisions", json=body))
            try:
                deadline = time.monotonic() + 30
                while app.plane.admission.in_flight == 0:
                    assert time.monotonic() < deadline and not first.done()
                    await asyncio.sleep(0.01)
                refused = await client.post("/decisions", json=body)
            finally:
                held.release.touch()
            assert (await first).status_code == 200
            health = await client.get("/")
    finally:
        await app.shutdown()
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["reason"] == "overloaded"
    # Shedding is not readiness: a busy server stays ready.
    assert health.status_code == 200


def test_past_the_connection_limit_a_new_connection_gets_the_shed_status(tmp_path: Path) -> None:
    held = holding_model(tmp_path)
    settings = Settings(store_url="off", cache_url="off", max_connections=2, shed_status=429)
    with live_server(settings, load_model(held.model)) as live:
        first, second = connect(live.port), connect(live.port)
        try:
            for s in (first, second):  # each answered (keep-alive): both stay open
                s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
                assert read_response(s)[0] == 200
            with connect(live.port) as extra:
                data = read_until_closed(extra)
        finally:
            first.close()
            second.close()
    assert status_of(data) == 429, data
    assert b"retry-after: 1" in data
