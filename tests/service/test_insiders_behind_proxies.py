"""Who is "this machine" when a proxy runs on it: forwarded headers never make a stranger an
insider (the data directory, hostname and pid of health and the path echo).

nginx on the same host is the TCP peer of every caller (127.0.0.1). It passes a caller's own
``Forwarded`` on untouched and appends the caller's address to ``X-Forwarded-For``; each
request below is what such an nginx sends on for a stranger at 198.51.100.9.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store import open_log

pytestmark = pytest.mark.anyio
STRANGER = "198.51.100.9"

Open = Callable[..., Any]


@pytest.fixture
def served(tmp_path: Path, example_model: LoadedModel) -> Open:
    @asynccontextmanager
    async def open_app(peer: str, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(data_dir=tmp_path / "secret-data-dir", store_url="off", **changes)
        app = ServepathApp(settings, model=example_model, cache=NoCache(),
                           store=open_log(settings))  # fmt: skip
        await app.startup()
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client
        finally:
            await app.shutdown()

    return open_app


def insider(echo: dict[str, Any]) -> bool:
    return echo["pid"] is not None


# (name, settings, headers as nginx passes them on): none of them is an insider.
ATTACKS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("Forwarded names loopback, nginx trusted", {"forwarded_allow_ips": "127.0.0.1"},
     {"Forwarded": "for=127.0.0.1", "X-Forwarded-For": STRANGER}),
    ("Forwarded names loopback, read and conflicting",
     {"forwarded_allow_ips": "127.0.0.1", "trust_forwarded": True},
     {"Forwarded": "for=127.0.0.1", "X-Forwarded-For": STRANGER}),
    ("Forwarded names a mapped loopback, read",
     {"forwarded_allow_ips": "127.0.0.1", "trust_forwarded": True},
     {"Forwarded": 'for="[::ffff:127.0.0.1]"', "X-Forwarded-For": STRANGER}),
    ("Forwarded names IPv6 loopback, read",
     {"forwarded_allow_ips": "127.0.0.1", "trust_forwarded": True},
     {"Forwarded": 'for="[::1]"', "X-Forwarded-For": STRANGER}),
    ("Forwarded for=unknown, read", {"forwarded_allow_ips": "127.0.0.1", "trust_forwarded": True},
     {"Forwarded": "for=unknown", "X-Forwarded-For": STRANGER}),
    ("Forwarded for=_hidden, read, no XFF",
     {"forwarded_allow_ips": "127.0.0.1", "trust_forwarded": True},
     {"Forwarded": "for=_hidden"}),
    ("XFF entry nginx appended is junk", {"forwarded_allow_ips": "127.0.0.1"},
     {"X-Forwarded-For": "127.0.0.1, not-an-ip"}),
    ("XFF names the proxy itself", {"forwarded_allow_ips": "127.0.0.1"},
     {"X-Forwarded-For": "127.0.0.1"}),
    ("XFF names the proxy twice", {"forwarded_allow_ips": "127.0.0.0/8"},
     {"X-Forwarded-For": "127.0.0.1, 127.0.0.1"}),
    ("nginx not configured as a proxy", {},
     {"X-Forwarded-For": STRANGER}),
    ("nginx not configured, a caller-sent Forwarded", {},
     {"Forwarded": "for=127.0.0.1", "X-Forwarded-For": f"127.0.0.1, {STRANGER}"}),
    ("a request from the trusted proxy with no chain", {"forwarded_allow_ips": "127.0.0.1"},
     {}),
    ("every address trusted", {"forwarded_allow_ips": "*"},
     {"X-Forwarded-For": f"127.0.0.1, {STRANGER}"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "headers"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
async def test_no_forwarded_header_makes_a_stranger_behind_local_nginx_an_insider(
    served: Open, settings: dict[str, Any], headers: dict[str, str]
) -> None:
    async with served("127.0.0.1", **settings) as client:
        echo = (await client.get("/_path", headers=headers)).json()
        health = (await client.get("/", headers=headers)).json()
    assert not insider(echo), echo["forwarded_trust"]
    assert "secret-data-dir" not in str(health)


async def test_a_conflict_records_the_address_nginx_saw_not_the_proxy(served: Open) -> None:
    settings = {"forwarded_allow_ips": "127.0.0.1", "trust_forwarded": True}
    async with served("127.0.0.1", **settings) as client:
        echo = (
            await client.get(
                "/_path", headers={"Forwarded": "for=127.0.0.1", "X-Forwarded-For": STRANGER}
            )
        ).json()
    assert echo["client"]["address"] == STRANGER
    assert echo["forwarded_trust"]["trusted"] is False
    assert "neither is believed" in echo["forwarded_trust"]["reason"]


async def test_forwarded_is_not_read_unless_configured(served: Open) -> None:
    async with served("127.0.0.1", forwarded_allow_ips="127.0.0.1") as client:
        echo = (await client.get("/_path", headers={"Forwarded": "for=203.0.113.4"})).json()
    assert echo["client"]["address"] is None
    assert [hop["entry"] for hop in echo["claimed"]] == ["203.0.113.4"]
    async with served("127.0.0.1", forwarded_allow_ips="127.0.0.1", trust_forwarded=True) as c:
        echo = (await c.get("/_path", headers={"Forwarded": "for=203.0.113.4"})).json()
    assert echo["client"]["address"] == "203.0.113.4"


async def test_a_local_caller_without_a_proxy_is_still_an_insider(served: Open) -> None:
    async with served("127.0.0.1") as client:
        assert insider((await client.get("/_path")).json())
    async with served("127.0.0.1", forwarded_allow_ips="10.0.0.0/8") as client:
        echo = (await client.get("/_path")).json()
    assert insider(echo)


async def test_a_local_caller_through_a_trusted_proxy_is_an_insider(served: Open) -> None:
    # nginx on 127.0.0.1 saw a caller on 127.0.0.2: that caller is on this machine.
    async with served("127.0.0.1", forwarded_allow_ips="127.0.0.1") as client:
        echo = (await client.get("/_path", headers={"X-Forwarded-For": "127.0.0.2"})).json()
    assert echo["client"]["address"] == "127.0.0.2" and insider(echo)


def test_the_setting_comes_from_the_environment() -> None:
    assert Settings.from_env({"SERVEPATH_TRUST_FORWARDED": "1"}).trusted_proxies.forwarded
    assert not Settings.from_env({}).trusted_proxies.forwarded
