"""Trusted proxies on real sockets: a spoofed Forwarded / X-Forwarded-For is a claim, and
only a proxy in --forwarded-allow-ips (a real nginx here) can vouch for the client.

Every address is loopback. The caller dials from 127.0.0.2 (all of 127/8 is loopback on
Linux), so that the caller, nginx (127.0.0.1) and the server are told apart by address.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.store.reader import SQLiteReader
from tests.helpers.nginx import nginx_in_front
from tests.service.live import live_server
from tests.support import serve

pytestmark = pytest.mark.timeout(120)

CALLER = "127.0.0.2"
SPOOF = "198.51.100.66"


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        store_url=f"sqlite://{tmp_path / 'log.sqlite3'}",
        durable=True,  # an answered prediction is in the log: the test reads it at once
        cache_url="memory",
        **changes,
    )


def client_from(address: str, base_url: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(transport=transport, base_url=base_url, timeout=30, trust_env=False)


def logged(tmp_path: Path, request_id: str) -> list[Any]:
    with SQLiteReader(tmp_path / "log.sqlite3") as reader:
        return reader.recent(limit=100, request_id=request_id)


def test_a_spoof_sent_directly_is_claimed_never_the_client(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    with (
        live_server(settings_for(tmp_path), example_model) as live,
        client_from(CALLER, live.url) as client,
    ):
        echo = client.get(
            "/_path",
            headers={"X-Forwarded-For": SPOOF, "Forwarded": f'for="{SPOOF}";proto=https'},
        ).json()
        r = client.post(
            "/decisions",
            json=EXAMPLE_APPLICANT,
            headers={"X-Forwarded-For": SPOOF, "X-Request-ID": "direct-spoof"},
        )
        assert r.status_code == 200, r.text
    assert echo["client"] == {"address": CALLER, "port": echo["peer"]["port"],
                              "kind": "loopback", "source": "peer"}  # fmt: skip
    assert echo["original_client"] == CALLER
    assert [hop["entry"] for hop in echo["claimed"]] == [SPOOF, SPOOF]
    assert echo["forwarded_trust"]["trusted"] is False
    assert "not a trusted proxy" in echo["forwarded_trust"]["reason"]
    [record] = logged(tmp_path, "direct-spoof")
    assert record.client_ip == CALLER and record.client_addr.startswith(f"{CALLER}:")
    assert record.forwarded == SPOOF  # kept, as a claim


def test_trusting_loopback_does_not_trust_another_caller(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    settings = settings_for(tmp_path, forwarded_allow_ips="127.0.0.1, ::1")
    with live_server(settings, example_model) as live, client_from(CALLER, live.url) as client:
        echo = client.get("/_path", headers={"X-Forwarded-For": SPOOF}).json()
    assert echo["client"]["address"] == CALLER
    assert echo["claimed"][0]["address"] == SPOOF


@pytest.fixture
def behind_nginx(tmp_path: Path, example_model: LoadedModel) -> Iterator[httpx.Client]:
    settings = settings_for(tmp_path, forwarded_allow_ips="127.0.0.1")
    with (
        live_server(settings, example_model) as live,
        nginx_in_front(tmp_path, live.port) as url,
        client_from(CALLER, url) as client,
    ):
        yield client


def test_behind_a_trusted_nginx_the_client_is_the_address_nginx_saw(
    behind_nginx: httpx.Client, tmp_path: Path
) -> None:
    echo = behind_nginx.get("/_path").json()
    assert echo["peer"]["address"] == "127.0.0.1"  # the TCP peer is nginx
    assert echo["client"]["address"] == CALLER
    assert echo["client"]["source"] == "x-forwarded-for"
    assert echo["forwarded_trust"]["trusted"] is True
    assert echo["forwarded_trust"]["proxies"] == ["127.0.0.1"]
    assert echo["claimed"] == []
    r = behind_nginx.post("/decisions", json=EXAMPLE_APPLICANT, headers={"X-Request-ID": "via"})
    assert r.status_code == 200, r.text
    [record] = logged(tmp_path, "via")
    assert record.client_ip == CALLER and record.forwarded is None
    assert record.client_addr.startswith("127.0.0.1:")


def test_a_spoof_sent_through_a_trusted_nginx_stays_claimed(
    behind_nginx: httpx.Client, tmp_path: Path
) -> None:
    echo = behind_nginx.get("/_path", headers={"X-Forwarded-For": SPOOF}).json()
    assert echo["x_forwarded_for"] == f"{SPOOF}, {CALLER}"  # nginx appended what it saw
    assert echo["client"]["address"] == CALLER
    assert [hop["entry"] for hop in echo["claimed"]] == [SPOOF]
    r = behind_nginx.post(
        "/decisions",
        json={"instances": [EXAMPLE_APPLICANT, EXAMPLE_APPLICANT]},
        headers={"X-Forwarded-For": f"10.9.8.7, {SPOOF}", "X-Request-ID": "spoof-via"},
    )
    assert r.status_code == 200, r.text
    records = logged(tmp_path, "spoof-via")
    assert len(records) == 2
    assert {(x.client_ip, x.forwarded) for x in records} == {(CALLER, f"10.9.8.7, {SPOOF}")}


def test_a_forwarded_spoof_through_nginx_is_never_the_client(
    behind_nginx: httpx.Client,
) -> None:
    # nginx passes a caller's Forwarded header on untouched and appends to X-Forwarded-For:
    # without --trust-forwarded only X-Forwarded-For is walked, and Forwarded is a claim.
    echo = behind_nginx.get("/_path", headers={"Forwarded": f"for={SPOOF}"}).json()
    assert echo["client"]["address"] == CALLER
    assert echo["client"]["source"] == "x-forwarded-for"
    assert SPOOF in [hop["entry"] for hop in echo["claimed"]]
    assert "not read" in echo["forwarded_trust"]["reason"]


def test_serve_takes_the_allow_list_from_its_flag(tmp_path: Path, example_model_path: Path) -> None:
    args = ["--store", "off", "--forwarded-allow-ips", "127.0.0.0/8, ::1"]
    with serve(tmp_path, model=example_model_path, args=args) as server:
        echo = httpx.get(
            server.url + "/_path", headers={"X-Forwarded-For": SPOOF}, trust_env=False
        ).json()
    # Loopback is trusted now, so this caller (on loopback) vouches for the address it names.
    assert echo["client"]["address"] == SPOOF and echo["forwarded_trust"]["trusted"] is True


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--forwarded-allow-ips", "nginx"], {}),
        ([], {"SERVEPATH_FORWARDED_ALLOW_IPS": "10.0.0.0/40"}),
    ],
)
def test_an_allow_list_entry_that_is_no_address_is_a_usage_error(
    tmp_path: Path, argv: list[str], env: dict[str, str]
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEPATH_", "AIP_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "servepath", "serve", "--port", "1", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "SERVEPATH_DATA_DIR": str(tmp_path), **env},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "forwarded-allow-ips" in proc.stderr
