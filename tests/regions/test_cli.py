"""`servepath regions …` through the real command line (typer's CliRunner)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.regions.catalogue import regions_of

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["regions", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_every_region_of_a_provider_as_json() -> None:
    code, out, _ = invoke("list", "--provider", "gcp", "--json")
    assert code == 0
    data = json.loads(out)
    assert [r["id"] for r in data] == [r.id for r in regions_of("gcp")]
    assert {r["provider"] for r in data} == {"gcp"}


def test_list_prints_a_table_with_cities() -> None:
    code, out, _ = invoke("list", "--provider", "azure")
    assert code == 0
    assert "polandcentral" in out and "Warsaw" in out
    assert "europe-central2" not in out


def test_list_rejects_an_unknown_provider_as_usage_error() -> None:
    code, _, err = invoke("list", "--provider", "oracle")
    assert code == 2
    assert "oracle" in err


def test_matrix_json_holds_the_calibration_points() -> None:
    code, out, _ = invoke(
        "matrix", "--regions", "europe-central2,europe-west1,us-central1", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["regions"] == ["europe-central2", "europe-west1", "us-central1"]
    assert data["rtt_ms"][0][0] < 1
    assert data["rtt_ms"][0][1] == pytest.approx(20, rel=0.25)
    assert data["rtt_ms"][0][2] == pytest.approx(100, rel=0.25)
    assert data["model"]["stretch"] > 1


def test_matrix_table_states_the_model() -> None:
    code, out, _ = invoke("matrix", "--regions", "europe-central2,europe-west1")
    assert code == 0
    assert "20.0" in out and "0.5" in out
    assert "model: RTT ≈ 5.7 ms" in out


def test_matrix_plot_is_a_valid_png_heatmap(tmp_path: Path) -> None:
    import matplotlib.image

    path = tmp_path / "plots" / "heatmap.png"
    ids = "europe-central2,europe-west1,us-central1,us-east1,asia-northeast1"
    code, out, _ = invoke("matrix", "--regions", ids, "--plot", str(path), "--json")
    assert code == 0
    assert json.loads(out)["plot"] == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(str(path))
    height, width = pixels.shape[:2]
    assert width > 300 and height > 300
    assert pixels.std() > 0.05  # not a blank canvas


def test_an_unknown_region_is_a_usage_error_with_close_matches() -> None:
    code, out, err = invoke("matrix", "--regions", "europe-west1,europe-centrl2")
    assert code == 2
    assert out == ""
    assert "unknown region 'europe-centrl2'" in err
    assert "europe-central2" in err


def test_place_ranks_warsaw_first_for_mostly_warsaw_callers() -> None:
    code, out, _ = invoke(
        "place",
        "--callers", "europe-central2=70,us-east1=30",
        "--candidates", "asia-northeast1,us-east1,europe-central2",
        "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert [p["region"] for p in data["ranking"]] == [
        "europe-central2",
        "us-east1",
        "asia-northeast1",
    ]
    assert data["callers"] == {"europe-central2": 70.0, "us-east1": 30.0}
    assert data["ranking"][0]["worst_caller"] == "us-east1"


def test_place_by_worst_caller_and_provider_filter() -> None:
    code, out, _ = invoke(
        "place", "--callers", "europe-central2=70,us-east1=30",
        "--provider", "aws", "--by", "worst", "--top", "3", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert len(data["ranking"]) == 3 and data["candidates"] == len(regions_of("aws"))
    assert all(p["provider"] == "aws" for p in data["ranking"])
    worst = [p["worst_rtt_ms"] for p in data["ranking"]]
    assert worst == sorted(worst)


def test_place_table_shows_the_best_region_first() -> None:
    code, out, _ = invoke("place", "--callers", "us-west1", "--provider", "gcp", "--top", "2")
    assert code == 0
    rows = [line.split() for line in out.splitlines() if "us-west" in line]
    assert [row[:2] for row in rows] == [["1", "us-west1"], ["2", "us-west3"]]


@pytest.mark.parametrize(
    ("callers", "message"),
    [
        ("europe-central2=lots", "is not a number"),
        ("europe-central2=0", "add up to 0"),
        ("warsaw=1", "did you mean europe-central2"),
    ],
)
def test_place_with_bad_callers_is_a_usage_error(callers: str, message: str) -> None:
    code, _, err = invoke("place", "--callers", callers)
    assert code == 2
    assert message in err


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue

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
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_measure_loopback_with_estimate_exits_0(listener: int, closed_port: int) -> None:
    code, out, _ = invoke(
        "measure", f"127.0.0.1:{listener}@europe-west1", f"127.0.0.1:{closed_port}",
        "--from", "europe-central2", "-n", "3", "--interval", "0", "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    ok, refused = data["targets"]
    assert ok["status"] == "ok" and ok["sent"] == 3 and ok["estimate_ms"] == 20.0
    assert ok["median_ms"] < ok["estimate_ms"]
    assert refused["status"] == "refused" and refused["estimate_ms"] is None
    assert len(ok["samples"]) == 3


def test_measure_table_names_the_failure(listener: int, closed_port: int) -> None:
    code, out, _ = invoke(
        "measure", f"127.0.0.1:{listener}", f"127.0.0.1:{closed_port}", "-n", "2",
        "--interval", "0",
    )  # fmt: skip
    assert code == 0
    assert "refused" in out and f"127.0.0.1:{closed_port}: Connection refused (×2)" in out


def test_measure_exits_1_when_no_target_answers(closed_port: int) -> None:
    code, out, _ = invoke("measure", f"127.0.0.1:{closed_port}", "-n", "2", "--json")
    assert code == 1
    assert json.loads(out)["targets"][0]["status"] == "refused"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["host:99999"], "is not a number from 1 to 65535"),
        (["127.0.0.1:1@nowhere-1"], "unknown region 'nowhere-1'"),
        (["127.0.0.1:1", "--from", "europe-centrl2"], "did you mean europe-central2"),
    ],
)
def test_measure_usage_errors_exit_2_before_sending_anything(args: list[str], message: str) -> None:
    code, out, err = invoke("measure", *args)
    assert code == 2
    assert message in err and out == ""
