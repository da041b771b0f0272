"""`doctor --local` against a real server on loopback: it reads the server's idle timeout
from its health document and warns when a known proxy in front keeps connections longer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servepath.config import Settings
from servepath.model.loaded import load_model
from servepath.netdiag.doctor.local import proxy_in_front, run_local_doctor
from tests.helpers.slowmodel import write_holding_model
from tests.service.live import LiveServer, live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # A small model of the test helpers: no training, so the server is up in a moment.
    path = tmp_path_factory.mktemp("doctor-local") / "model.joblib"
    write_holding_model(path, path.with_name("release"))
    settings = Settings(store_url="off", cache_url="off")
    with live_server(settings, load_model(path)) as live:
        yield live


def test_the_doctor_reads_a_real_servers_idle_timeout_and_warns_behind_an_ingress(
    server: LiveServer,
) -> None:
    report = run_local_doctor(
        server.port, front=proxy_in_front(on_vertex=False, in_kubernetes=True)
    )
    stage = report.stage("keep-alive")
    assert stage is not None and stage.status == "warn", report.to_json()
    assert stage.data["server_idle_timeout_s"] == 5.0
    assert report.stage("health").status == "ok"  # type: ignore[union-attr]
