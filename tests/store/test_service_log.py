"""The service's predictions in the log: every one recorded, readable back, and none lost
when the server is stopped by SIGTERM in the middle of a burst."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from tests.store.conftest import Backend
from tests.support import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(backend: Backend, example_model: LoadedModel) -> AsyncIterator[ServepathApp]:
    app = ServepathApp(Settings(), model=example_model, cache=NoCache(), store=backend.log())
    await app.startup()
    yield app


async def test_every_prediction_is_recorded_with_its_request_and_caller(
    app: ServepathApp, backend: Backend
) -> None:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51515))
    async with httpx.AsyncClient(transport=transport, base_url="http://servepath") as client:
        single = await client.post(
            "/decisions",
            json=EXAMPLE_APPLICANT,
            headers={"x-request-id": "req-single", "x-forwarded-for": "198.51.100.23"},
        )
        batch = await client.post(
            "/decisions",
            json={"instances": [{**EXAMPLE_APPLICANT, "age": age} for age in (25, 45, 65)]},
            headers={"x-request-id": "req-vertex"},
        )
    assert single.status_code == batch.status_code == 200
    await app.shutdown()  # flushes the log

    rows = {(r.request_id, r.index): r for r in backend.rows()}
    assert sorted(rows) == [
        ("req-single", 0),
        ("req-vertex", 0),
        ("req-vertex", 1),
        ("req-vertex", 2),
    ]
    one = rows[("req-single", 0)]
    assert one.route == "decisions"
    assert one.instance == EXAMPLE_APPLICANT
    assert one.output["decision"] == single.json()["decision"]
    assert one.client_addr == "203.0.113.7:51515"
    assert one.forwarded is not None and "198.51.100.23" in one.forwarded
    assert app.plane.model is not None and one.model_version == app.plane.model.version
    predictions = batch.json()["predictions"]
    for i in range(3):
        row = rows[("req-vertex", i)]
        assert row.route == "vertex" and row.instance["age"] == (25, 45, 65)[i]
        assert row.output["decision"] == predictions[i]["decision"]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_sigterm_during_a_burst_loses_no_answered_prediction(
    store: str, tmp_path: Path, example_model_path: Path, request: pytest.FixtureRequest
) -> None:
    url = "sqlite" if store == "sqlite" else request.getfixturevalue("pg_url")
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with serve(
        tmp_path, model=example_model_path, args=["--store", url, "--cache", "off"]
    ) as server:

        def client(worker: int) -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                i = 0
                while not stop.is_set():
                    request_id = f"burst-{worker}-{i}"
                    i += 1
                    try:
                        r = http.post(
                            "/decisions",
                            json={**EXAMPLE_APPLICANT, "age": 21 + i % 50},
                            headers={"x-request-id": request_id},
                        )
                    except httpx.HTTPError:
                        return  # the server stopped accepting
                    if r.status_code == 200:
                        with lock:
                            answered.append(request_id)

        threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        # SIGTERM lands in the middle of the burst: once enough answers are in, however long
        # that takes on a busy machine.
        deadline = time.monotonic() + 60
        while len(answered) <= 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        stop.set()
        for t in threads:
            t.join(10)
        data_dir = server.data_dir

    assert len(answered) > 50
    location = str(data_dir / "predictions.sqlite3") if store == "sqlite" else url
    logged = {r.request_id for r in Backend(store, location, data_dir / "spool").rows()}
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} answered predictions missing from the log"
